//! `llm.gemini` against the Gemini fake on 127.0.0.1: turns, a parallel tool round trip,
//! barge-in, refusals, HTTP errors and the key kept out of logs.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Harness, RecordingTools, provider_errors};
use voxpipe_core::{Control, Frame, InterruptReason, NoTools, PlayedItem, ResponseStatus, Secret};
use voxpipe_fakes::fault::Fault;
use voxpipe_fakes::gemini::{GeminiFake, GeminiFakeConfig, thought_signature};
use voxpipe_fakes::openai_chat::{Knobs, ScriptedReply, ScriptedToolCall};
use voxpipe_llm::{Gemini, GeminiConfig, HttpConfig, SpokenFallback};

const KEY: &str = "AIzaSy-test-key-0123456789";

fn config(replies: Vec<ScriptedReply>) -> GeminiFakeConfig {
    GeminiFakeConfig { api_key: Some(KEY.into()), replies, ..GeminiFakeConfig::default() }
}

fn with_faults(replies: Vec<ScriptedReply>, faults: BTreeMap<usize, Fault>) -> GeminiFakeConfig {
    GeminiFakeConfig { knobs: Knobs { faults, ..Knobs::default() }, ..config(replies) }
}

fn stage_with(fake: &GeminiFake, key: &str, spoken: SpokenFallback) -> Box<Gemini> {
    let config = GeminiConfig {
        base_url: fake.base_url(),
        instructions: "Be brief.".into(),
        http: HttpConfig { retry_backoff_ms: 20, ..HttpConfig::default() },
        spoken_fallback: spoken,
        ..GeminiConfig::default()
    };
    Box::new(Gemini::new(config, Secret::new(key)).unwrap())
}

fn stage(fake: &GeminiFake) -> Box<Gemini> {
    stage_with(fake, KEY, SpokenFallback::default())
}

fn user(text: &str) -> Value {
    json!({"role": "user", "parts": [{"text": text}]})
}

#[tokio::test]
async fn two_turns_stream_text_and_the_second_request_holds_the_first_exchange() {
    let replies = vec![ScriptedReply::text("Hello there!"), ScriptedReply::Echo];
    let fake = GeminiFake::start(config(replies)).await.unwrap();
    let mut h = Harness::start(stage(&fake), Arc::new(NoTools));
    h.say("Hi").await;
    let turn = h.turn().await;
    assert_eq!(turn.deltas(), ["Hello", " there", "!"]);
    assert_eq!(turn.transcript().as_deref(), Some("Hello there!"));
    assert_eq!(turn.done().status, ResponseStatus::Completed);
    assert_eq!(turn.done().usage.as_ref().unwrap().output_tokens, 3, "the last chunk's cumulative count");
    h.say("And again").await;
    assert_eq!(h.turn().await.transcript().as_deref(), Some("You said: And again"));

    let requests = fake.requests();
    assert_eq!(requests[0].header("x-goog-api-key"), Some("[redacted]"));
    assert_eq!(requests[0].body["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
    assert_eq!(requests[0].body["contents"], json!([user("Hi")]));
    assert_eq!(
        requests[1].body["contents"],
        json!([user("Hi"), {"role": "model", "parts": [{"text": "Hello there!"}]}, user("And again")])
    );
    assert!(requests[1].body.get("tools").is_none());
    let urls = fake.urls();
    assert_eq!(urls[0], "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "no key in the URL");
    h.finish().await.unwrap();
}

fn weather_and_time() -> ScriptedReply {
    ScriptedReply::ToolCalls {
        text: Some("Let me check.".into()),
        calls: vec![
            ScriptedToolCall { name: "get_weather".into(), arguments: json!({"city": "Paris"}) },
            ScriptedToolCall { name: "get_time".into(), arguments: json!({"city": "Paris"}) },
        ],
    }
}

#[tokio::test]
async fn two_parallel_function_calls_run_together_and_go_back_as_function_responses_in_a_user_turn() {
    let fake = GeminiFake::start(config(vec![weather_and_time(), ScriptedReply::Echo])).await.unwrap();
    let tools = RecordingTools::new(Duration::from_millis(200));
    let mut h = Harness::start(stage(&fake), tools.clone());
    h.say("Weather and time in Paris?").await;
    let turn = h.turn().await;
    let calls = turn.tool_calls();
    assert_eq!(calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["get_weather", "get_time"]);
    assert_ne!(calls[0].call_id, calls[1].call_id);
    assert_eq!(calls[0].arguments, r#"{"city":"Paris"}"#);
    let runs = tools.runs();
    assert!(runs.iter().map(|r| r.started).max() < runs.iter().map(|r| r.ended).min(), "concurrent");
    let outputs: Vec<String> = calls.iter().map(RecordingTools::output_for).collect();
    assert_eq!(turn.transcript(), Some(format!("Let me check.Tool said: {}", outputs.join("; "))));

    let requests = fake.requests();
    let declared = &requests[0].body["tools"][0]["functionDeclarations"][0];
    assert_eq!(declared["name"], "get_weather");
    assert_eq!(declared["parametersJsonSchema"]["required"], json!(["city"]));
    assert_eq!(requests[0].body["toolConfig"], json!({"functionCallingConfig": {"mode": "AUTO"}}));
    let contents = requests[1].body["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "{contents:?}");
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [
            {"text": "Let me check."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": thought_signature(0, 0)},
            {"functionCall": {"name": "get_time", "args": {"city": "Paris"}}},
        ]}),
        "the model turn goes back whole, the signature where it was, no ids Gemini did not give"
    );
    let output = |i: usize| serde_json::from_str::<Value>(&outputs[i]).unwrap();
    assert_eq!(
        contents[2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": output(0)}}},
            {"functionResponse": {"name": "get_time", "response": {"output": output(1)}}},
        ]})
    );
    h.finish().await.unwrap();
}

#[tokio::test]
async fn calls_with_ids_are_answered_by_id() {
    let fake = GeminiFake::start(GeminiFakeConfig {
        function_call_ids: true,
        ..config(vec![weather_and_time(), ScriptedReply::text("Sunny, and it is noon.")])
    })
    .await
    .unwrap();
    let mut h = Harness::start(stage(&fake), RecordingTools::new(Duration::ZERO));
    h.say("Weather and time in Paris?").await;
    let turn = h.turn().await;
    let ids: Vec<String> = turn.tool_calls().into_iter().map(|c| c.call_id).collect();
    assert_eq!(ids, ["fc_0_0", "fc_0_1"]);
    assert_eq!(turn.done().status, ResponseStatus::Completed);
    let contents = fake.requests()[1].body["contents"].clone();
    assert_eq!(contents[1]["parts"][2]["functionCall"]["id"], "fc_0_1");
    let ids_back: Vec<&Value> = (0..2).map(|i| &contents[2]["parts"][i]["functionResponse"]["id"]).collect();
    assert_eq!(ids_back, [&json!("fc_0_0"), &json!("fc_0_1")]);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn a_barge_in_keeps_only_the_words_heard_in_the_next_request() {
    let full = "This is a rather long answer that the caller will not wait to hear in full.";
    let mut cfg = config(vec![ScriptedReply::text(full), ScriptedReply::text("Sure.")]);
    cfg.knobs.token_interval_ms = 80;
    let fake = GeminiFake::start(cfg).await.unwrap();
    let mut h = Harness::start(stage(&fake), Arc::new(NoTools));
    h.say("Tell me something.").await;
    let mut streamed = String::new();
    while streamed.len() <= 10 {
        if let (_, Frame::TextDelta(d)) = h.next().await {
            streamed.push_str(&d.text);
        }
    }
    let played = PlayedItem { item: "reply_1".into(), played_ms: 900, heard: "This is a".into() };
    h.ctx.control.send(Control::Interrupt {
        reason: InterruptReason::BargeIn,
        onset: None,
        played: Some(played),
    });
    let turn = h.turn().await;
    assert_eq!(turn.done().status, ResponseStatus::Cancelled);
    h.say("Stop, just say sure.").await;
    assert_eq!(h.turn().await.transcript().as_deref(), Some("Sure."));
    let requests = fake.requests();
    assert!(requests[0].stream_finished_at.is_none(), "the first stream was dropped before its end");
    assert!(streamed.len() > "This is a".len(), "more was streamed than heard");
    assert_eq!(
        requests[1].body["contents"],
        json!([user("Tell me something."), {"role": "model", "parts": [{"text": "This is a"}]}, user("Stop, just say sure.")])
    );
    h.finish().await.unwrap();
}

#[tokio::test]
async fn a_blocked_prompt_and_a_safety_stop_fail_their_turns_with_clear_errors_and_the_call_goes_on() {
    let line = "Sorry, I can't help with that.";
    let fake = GeminiFake::start(GeminiFakeConfig {
        block_reasons: [(0, "SAFETY".to_string())].into(),
        finish_reasons: [(1, "SAFETY".to_string())].into(),
        ..config(vec![ScriptedReply::text("Well, here is the thing.")])
    })
    .await
    .unwrap();
    let spoken = SpokenFallback { failed: Some(line.into()), ..SpokenFallback::default() };
    let mut h = Harness::start(stage_with(&fake, KEY, spoken), Arc::new(NoTools));
    h.say("Something rude.").await;
    let blocked = h.turn().await;
    assert_eq!(blocked.done().status, ResponseStatus::Failed);
    assert_eq!(blocked.done().reason.as_deref(), Some("prompt_blocked_safety"));
    assert_eq!(blocked.deltas(), [line], "only the failure line is spoken");
    let events = h.drain_events();
    assert_eq!(provider_errors(&events), ["prompt_blocked_safety"]);
    let message = events
        .iter()
        .find_map(|e| match e {
            voxpipe_core::EventKind::ProviderError { message, .. } => Some(message.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(message, "gemini: the prompt was blocked (SAFETY): HARM_CATEGORY_HATE_SPEECH: HIGH");

    h.say("Something else.").await;
    let stopped = h.turn().await;
    assert_eq!(stopped.done().reason.as_deref(), Some("finish_safety"));
    assert_eq!(stopped.deltas().concat(), format!("Well, here is the thing.{line}"), "what streamed is kept");
    assert_eq!(fake.requests().len(), 2, "a refusal is not retried");
    h.say("Hello?").await;
    assert_eq!(h.turn().await.done().status, ResponseStatus::Completed);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn a_wrong_key_is_a_fatal_error_naming_the_env_var_and_never_the_key() {
    let fake = GeminiFake::start(config(vec![ScriptedReply::Echo])).await.unwrap();
    let mut h =
        Harness::start(stage_with(&fake, "AIza-wrong-key", SpokenFallback::default()), Arc::new(NoTools));
    h.say("Hello?").await;
    assert_eq!(h.turn().await.done().status, ResponseStatus::Failed);
    let err = tokio::time::timeout(Duration::from_secs(5), h.task).await.unwrap().unwrap().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("llm.gemini") && msg.contains("HTTP 400") && msg.contains("check GEMINI_API_KEY"),
        "{msg}"
    );
    assert!(msg.contains("API key not valid"), "{msg}");
    assert!(!msg.contains("AIza-wrong-key"), "{msg}");
    assert_eq!(fake.requests().len(), 1, "not retried");
}

#[tokio::test]
async fn http_403_is_fatal_and_400_fails_the_turn_without_a_retry() {
    let e403 = Fault::Status { status: 403, retry_after_s: None };
    let fake = GeminiFake::start(with_faults(vec![ScriptedReply::Echo], [(0, e403)].into())).await.unwrap();
    let mut h = Harness::start(stage(&fake), Arc::new(NoTools));
    h.say("Hello?").await;
    h.turn().await;
    let err = tokio::time::timeout(Duration::from_secs(5), h.task).await.unwrap().unwrap().unwrap_err();
    assert!(err.to_string().contains("PERMISSION_DENIED"), "{err}");

    let e400 = Fault::Status { status: 400, retry_after_s: None };
    let fake =
        GeminiFake::start(with_faults(vec![ScriptedReply::text("Fine.")], [(0, e400)].into())).await.unwrap();
    let mut h = Harness::start(stage(&fake), Arc::new(NoTools));
    h.say("Hello?").await;
    assert_eq!(h.turn().await.done().status, ResponseStatus::Failed);
    assert_eq!(provider_errors(&h.drain_events()), ["http_400"]);
    h.say("Hello?").await;
    assert_eq!(h.turn().await.transcript().as_deref(), Some("Fine."));
    assert_eq!(fake.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [400, 200]);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn http_429_waits_for_retry_after_and_500_is_retried() {
    let faults = [
        (0, Fault::Status { status: 429, retry_after_s: Some(1) }),
        (2, Fault::Status { status: 500, retry_after_s: None }),
    ];
    let fake =
        GeminiFake::start(with_faults(vec![ScriptedReply::text("Back.")], faults.into())).await.unwrap();
    let mut h = Harness::start(stage(&fake), Arc::new(NoTools));
    h.say("Hello?").await;
    assert_eq!(h.turn().await.transcript().as_deref(), Some("Back."));
    h.say("Again?").await;
    assert_eq!(h.turn().await.transcript().as_deref(), Some("Back."));
    let r = fake.requests();
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200, 500, 200]);
    assert!(r[1].received_at - r[0].received_at >= Duration::from_secs(1), "Retry-After honoured");
    h.finish().await.unwrap();
}

/// Every log line's message and fields, as text.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<String>>);

struct Fields<'a>(&'a Mutex<String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let mut s = self.0.lock().unwrap();
        s.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl tracing::Subscriber for Logs {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        span.record(&mut Fields(&self.0));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Fields(&self.0));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        event.record(&mut Fields(&self.0));
        self.0.lock().unwrap().push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn the_key_is_never_logged_whatever_happens() {
    let logs = Logs::default();
    let _guard = tracing::subscriber::set_default(logs.clone());
    let faults =
        [(0, Fault::Status { status: 503, retry_after_s: None }), (2, Fault::CutAfter { chunks: 1 })];
    let fake = GeminiFake::start(with_faults(vec![ScriptedReply::text("One two three.")], faults.into()))
        .await
        .unwrap();
    let mut h = Harness::start(stage(&fake), Arc::new(NoTools));
    for _ in 0..2 {
        h.say("Hello?").await;
        h.turn().await;
    }
    let events = format!("{:?}", h.drain_events());
    h.finish().await.unwrap();
    let mut h =
        Harness::start(stage_with(&fake, "AIza-wrong-key", SpokenFallback::default()), Arc::new(NoTools));
    h.say("Hello?").await;
    h.turn().await;
    let err = h.task.await.unwrap().unwrap_err().to_string();
    let logs = logs.0.lock().unwrap().clone();
    assert!(
        logs.contains("retrying") && logs.contains("response failed"),
        "the failures were logged:\n{logs}"
    );
    for text in [&logs, &events, &err, &format!("{:?}", stage(&fake))] {
        assert!(!text.contains(KEY) && !text.contains("AIza-wrong-key"), "a key leaked:\n{text}");
    }
}
