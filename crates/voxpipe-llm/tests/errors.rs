//! Failure handling against the chat-completions fake: auth, rate limits, 5xx, stalls, cuts.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::{Harness, provider_errors};
use voxpipe_core::{EventKind, Frame, NoTools, ResponseStatus, Secret};
use voxpipe_fakes::openai_chat::{ChatFake, ChatFakeConfig, Fault, Knobs, ScriptedReply};
use voxpipe_llm::{HttpConfig, OpenAiChat, OpenAiChatConfig, SpokenFallback};

async fn fake_with(faults: BTreeMap<usize, Fault>) -> ChatFake {
    let knobs = Knobs { faults, ..Knobs::default() };
    let replies = vec![ScriptedReply::text("Hello again, friend.")];
    ChatFake::start(ChatFakeConfig { api_key: Some("sk-right".into()), replies, knobs }).await.unwrap()
}

fn stage(fake: &ChatFake, key: &str, stall_timeout_ms: u64) -> Box<OpenAiChat> {
    let config = OpenAiChatConfig {
        base_url: fake.base_url(),
        http: HttpConfig { retry_backoff_ms: 20, stall_timeout_ms, ..HttpConfig::default() },
        ..OpenAiChatConfig::default()
    };
    Box::new(OpenAiChat::new(config, Some(Secret::new(key))).unwrap())
}

#[tokio::test]
async fn http_401_is_a_fatal_error_naming_the_env_var() {
    let fake = fake_with(BTreeMap::new()).await;
    let mut h = Harness::start(stage(&fake, "sk-wrong", 10_000), Arc::new(NoTools));
    h.say("Hello?").await;
    let turn = h.turn().await;
    assert_eq!(turn.done().status, ResponseStatus::Failed);
    let err = tokio::time::timeout(Duration::from_secs(5), h.task).await.unwrap().unwrap().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("llm.openai") && msg.contains("401") && msg.contains("check OPENAI_API_KEY"),
        "{msg}"
    );
    assert!(msg.contains("invalid_api_key"), "body excerpt: {msg}");
    assert!(!msg.contains("sk-wrong"), "never the key");
    assert_eq!(fake.requests().len(), 1, "no retry on 401");
}

#[tokio::test]
async fn http_429_with_retry_after_is_retried_once_then_succeeds() {
    let faults = BTreeMap::from([(0, Fault::Status { status: 429, retry_after_s: Some(1) })]);
    let fake = fake_with(faults).await;
    let mut h = Harness::start(stage(&fake, "sk-right", 10_000), Arc::new(NoTools));
    h.say("Hello?").await;
    let turn = h.turn().await;
    assert_eq!(turn.transcript().as_deref(), Some("Hello again, friend."));
    let r = fake.requests();
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
    assert!(r[1].received_at - r[0].received_at >= Duration::from_secs(1), "Retry-After honoured");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn http_500_twice_then_success_is_retried() {
    let e500 = Fault::Status { status: 500, retry_after_s: None };
    let fake = fake_with(BTreeMap::from([(0, e500.clone()), (1, e500)])).await;
    let mut h = Harness::start(stage(&fake, "sk-right", 10_000), Arc::new(NoTools));
    h.say("Hello?").await;
    let turn = h.turn().await;
    assert_eq!(turn.done().status, ResponseStatus::Completed);
    assert_eq!(fake.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [500, 500, 200]);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn http_500_past_max_retries_is_a_reported_error_and_the_call_goes_on() {
    let e500 = Fault::Status { status: 500, retry_after_s: None };
    let faults = (0..3).map(|i| (i, e500.clone())).collect();
    let fake = fake_with(faults).await;
    let mut h = Harness::start(stage(&fake, "sk-right", 10_000), Arc::new(NoTools));
    h.say("Hello?").await;
    assert_eq!(h.turn().await.done().status, ResponseStatus::Failed);
    assert_eq!(provider_errors(&h.drain_events()), ["http_500"]);
    h.say("Again?").await;
    assert_eq!(h.turn().await.done().status, ResponseStatus::Completed);
    assert_eq!(fake.requests().len(), 4, "1 + max_retries (2), then the next turn");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn a_stall_past_the_stall_timeout_is_a_provider_error_and_the_next_turn_works() {
    let fake = fake_with(BTreeMap::from([(0, Fault::StallAfter { chunks: 2 })])).await;
    let mut h = Harness::start(stage(&fake, "sk-right", 300), Arc::new(NoTools));
    h.say("Hello?").await;
    let turn = h.turn().await;
    assert_eq!(turn.done().status, ResponseStatus::Failed);
    assert_eq!(turn.done().reason.as_deref(), Some("stalled"));
    assert_eq!(turn.deltas(), ["Hello"], "role chunk and one text chunk arrived before the stall");
    assert_eq!(turn.transcript().as_deref(), Some("Hello"), "what was received is the reply");
    assert_eq!(provider_errors(&h.drain_events()), ["stalled"]);

    h.say("Still there?").await;
    let next = h.turn().await;
    assert_eq!(next.transcript().as_deref(), Some("Hello again, friend."));
    let r = fake.requests();
    assert_eq!(r.len(), 2, "the stalled request was not retried");
    assert_eq!(r[1].body["messages"][1]["content"], "Hello", "history holds the partial reply");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn a_stream_cut_mid_event_is_a_provider_error_without_retry() {
    let fake = fake_with(BTreeMap::from([(0, Fault::CutAfter { chunks: 3 })])).await;
    let mut h = Harness::start(stage(&fake, "sk-right", 10_000), Arc::new(NoTools));
    h.say("Hello?").await;
    let turn = h.turn().await;
    assert_eq!(turn.done().status, ResponseStatus::Failed);
    assert_eq!(turn.deltas(), ["Hello", " again"]);
    assert_eq!(turn.transcript().as_deref(), Some("Hello again"));
    assert_eq!(provider_errors(&h.drain_events()), ["stream_broken"]);
    assert_eq!(fake.requests().len(), 1, "no retry: it would repeat speech");

    h.say("And now?").await;
    assert_eq!(h.turn().await.done().status, ResponseStatus::Completed);
    assert_eq!(fake.requests().len(), 2);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn a_missing_server_is_retried_then_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let http = HttpConfig { retry_backoff_ms: 10, ..HttpConfig::default() };
    let config = OpenAiChatConfig { base_url, http, api_key_env: None, ..OpenAiChatConfig::default() };
    let mut h = Harness::start(Box::new(OpenAiChat::new(config, None).unwrap()), Arc::new(NoTools));
    h.say("Anyone?").await;
    assert_eq!(h.turn().await.done().reason.as_deref(), Some("connect"));
    assert_eq!(provider_errors(&h.drain_events()), ["connect"]);
    h.finish().await.unwrap();
}

fn with_spoken_fallback(fake: &ChatFake, spoken: SpokenFallback) -> Box<OpenAiChat> {
    let config = OpenAiChatConfig {
        base_url: fake.base_url(),
        http: HttpConfig { retry_backoff_ms: 20, ..HttpConfig::default() },
        spoken_fallback: spoken,
        ..OpenAiChatConfig::default()
    };
    Box::new(OpenAiChat::new(config, Some(Secret::new("sk-right"))).unwrap())
}

/// Text of each item of a turn, in order: (item, text) of every delta.
fn items(turn: &support::Turn) -> Vec<(String, String)> {
    turn.frames
        .iter()
        .filter_map(|(_, f)| match f {
            Frame::TextDelta(d) => Some((d.item.to_string(), d.text.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_provider_slow_to_answer_gets_the_slow_line_spoken_first_and_it_stays_in_history() {
    // The first request is refused for 5 s (Retry-After); the line is due after 1 s.
    let faults = BTreeMap::from([(0, Fault::Status { status: 429, retry_after_s: Some(5) })]);
    let fake = fake_with(faults).await;
    let spoken = SpokenFallback {
        slow: Some("One moment, please.".into()),
        slow_after_ms: 1000,
        ..SpokenFallback::default()
    };
    let mut h = Harness::start(with_spoken_fallback(&fake, spoken), Arc::new(NoTools));
    h.say("Hello?").await;
    let turn = h.turn().await;
    let said = items(&turn);
    assert_eq!(said[0], ("wait_1".to_string(), "One moment, please.".to_string()), "{said:?}");
    assert!(said[1..].iter().all(|(item, _)| item == "reply_1"), "{said:?}");
    assert_eq!(turn.transcript().as_deref(), Some("One moment, please."), "its own final transcript");
    assert_eq!(turn.done().status, ResponseStatus::Completed);
    // Said at 1 s, while the retry waited for its 5 s.
    let asked = fake.requests()[0].received_at;
    let line_at = turn.first_delta_at().unwrap();
    assert_eq!((line_at - asked).as_millis() / 100, 10, "{:?}", line_at - asked);
    // The next request's history holds the line before the reply, as the caller heard it.
    h.say("Thanks.").await;
    let _ = h.turn().await;
    let messages = fake.requests().last().unwrap().body["messages"].clone();
    let assistant = messages.as_array().unwrap().iter().find(|m| m["role"] == "assistant").unwrap().clone();
    assert_eq!(assistant["content"], "One moment, please. Hello again, friend.", "{messages}");
    h.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_quick_provider_gets_no_slow_line() {
    let fake = fake_with(BTreeMap::new()).await;
    let spoken = SpokenFallback { slow: Some("One moment, please.".into()), ..SpokenFallback::default() };
    let mut h = Harness::start(with_spoken_fallback(&fake, spoken), Arc::new(NoTools));
    h.say("Hello?").await;
    let turn = h.turn().await;
    assert!(items(&turn).iter().all(|(item, _)| item == "reply_1"), "{:?}", items(&turn));
    h.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_turn_gets_the_failure_line_and_the_call_goes_on() {
    // Every attempt of the first turn fails (1 + 2 retries); the second turn is answered.
    let e503 = Fault::Status { status: 503, retry_after_s: None };
    let fake = fake_with(BTreeMap::from([(0, e503.clone()), (1, e503.clone()), (2, e503)])).await;
    let line = "Sorry, I'm having trouble right now. Could you say that again?";
    let spoken = SpokenFallback { failed: Some(line.into()), ..SpokenFallback::default() };
    let mut h = Harness::start(with_spoken_fallback(&fake, spoken), Arc::new(NoTools));
    h.say("Hello?").await;
    let turn = h.turn().await;
    assert_eq!(items(&turn), [("failed_1".to_string(), line.to_string())]);
    assert_eq!(turn.done().status, ResponseStatus::Failed);
    assert_eq!(provider_errors(&h.drain_events()).len(), 1);
    h.say("Hello again?").await;
    let turn = h.turn().await;
    assert_eq!(turn.done().status, ResponseStatus::Completed);
    // The model is told what the caller heard.
    let messages = fake.requests().last().unwrap().body["messages"].clone();
    assert!(
        messages.as_array().unwrap().iter().any(|m| m["role"] == "assistant" && m["content"] == line),
        "{messages}"
    );
    h.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_primary_fails_over_to_the_next_provider_for_the_rest_of_the_call() {
    use voxpipe_fakes::anthropic::{AnthropicFake, AnthropicFakeConfig};
    use voxpipe_llm::{AnthropicConfig, Fallback, FallbackConfig};
    // The primary answers 503 to every attempt of the first turn (1 + 2 retries).
    let e503 = Fault::Status { status: 503, retry_after_s: None };
    let primary = fake_with(BTreeMap::from([(0, e503.clone()), (1, e503.clone()), (2, e503)])).await;
    let backup = AnthropicFake::start(AnthropicFakeConfig {
        api_key: Some("sk-ant-backup".into()),
        replies: vec![ScriptedReply::text("Backup here.")],
        knobs: Knobs::default(),
    })
    .await
    .unwrap();
    let fallback = FallbackConfig::Anthropic(AnthropicConfig {
        base_url: backup.base_url(),
        model: "claude-haiku-4-5".into(),
        ..AnthropicConfig::default()
    });
    let stage = (*stage(&primary, "sk-right", 10_000))
        .with_fallback(Fallback::new(&fallback, Some(Secret::new("sk-ant-backup"))).unwrap());
    let mut h = Harness::start(Box::new(stage), Arc::new(NoTools));
    h.say("Hello?").await;
    let turn = h.turn().await;
    // The caller got an answer in the same turn.
    assert_eq!(turn.done().status, ResponseStatus::Completed);
    assert_eq!(turn.transcript().as_deref(), Some("Backup here."));
    let events = h.drain_events();
    let failover: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::Failover { from, to, reason, .. } => Some((from.clone(), to.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failover.len(), 1, "{events:?}");
    assert_eq!(failover[0].0, "llm.openai gpt-4o-mini");
    assert_eq!(failover[0].1, "llm.anthropic claude-haiku-4-5");
    assert!(failover[0].2.contains("503"), "{}", failover[0].2);
    assert!(provider_errors(&events).is_empty(), "recovered: no provider_error");
    // The next turn goes straight to the backup, with the whole conversation.
    h.say("Still there?").await;
    let turn = h.turn().await;
    assert_eq!(turn.transcript().as_deref(), Some("Backup here."));
    assert_eq!(primary.requests().len(), 3);
    let last = backup.requests().last().unwrap().body["messages"].clone();
    assert_eq!(last.as_array().unwrap().len(), 3, "user, assistant, user: {last}");
    h.finish().await.unwrap();
}

#[test]
fn a_fallback_with_fallbacks_of_its_own_is_refused() {
    use voxpipe_llm::{Fallback, FallbackConfig};
    let inner = FallbackConfig::OpenAi(OpenAiChatConfig::default());
    let outer =
        FallbackConfig::OpenAi(OpenAiChatConfig { fallback: vec![inner], ..OpenAiChatConfig::default() });
    let err = Fallback::new(&outer, Some(Secret::new("k"))).unwrap_err().to_string();
    assert!(err.contains("fallbacks of its own"), "{err}");
}
