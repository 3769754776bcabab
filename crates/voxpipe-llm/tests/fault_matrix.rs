//! Fault matrix rows for `llm.openai`, `llm.anthropic` and `llm.gemini`: each test injects one fault of
//! `voxpipe_fakes::fault` into the first request and checks that the turn recovers (retry) or
//! fails cleanly with a reported provider error, and that the next turn of the call works.
//! (429, 5xx, stall and cut for the chat stage are in `errors.rs`.)

mod support;

use std::sync::Arc;
use support::{Harness, Turn, provider_errors};
use voxpipe_core::{NoTools, ResponseStatus, Secret};
use voxpipe_fakes::anthropic::{AnthropicFake, AnthropicFakeConfig};
use voxpipe_fakes::fault::{Fault, FaultSpec};
use voxpipe_fakes::gemini::{GeminiFake, GeminiFakeConfig};
use voxpipe_fakes::openai_chat::{ChatFake, ChatFakeConfig, Knobs, RecordedRequest, ScriptedReply};
use voxpipe_llm::{
    Anthropic, AnthropicConfig, Gemini, GeminiConfig, HttpConfig, OpenAiChat, OpenAiChatConfig,
};

const REPLY: &str = "Hello again, friend.";

fn knobs(spec: &str) -> Knobs {
    let spec: FaultSpec = spec.parse().unwrap();
    Knobs { faults: [(spec.index, spec.fault)].into(), ..Knobs::default() }
}

fn http() -> HttpConfig {
    HttpConfig { retry_backoff_ms: 20, stall_timeout_ms: 2_000, ..HttpConfig::default() }
}

/// What a call saw: the faulted turn, its provider error codes, the next turn, the requests.
struct Seen {
    first: Turn,
    errors: Vec<String>,
    second: Turn,
    requests: Vec<RecordedRequest>,
}

async fn two_turns(mut h: Harness, requests: impl Fn() -> Vec<RecordedRequest>) -> Seen {
    h.say("Hello?").await;
    let first = h.turn().await;
    let errors = provider_errors(&h.drain_events());
    h.say("Still there?").await;
    let second = h.turn().await;
    h.finish().await.expect("the call goes on: no fatal error");
    Seen { first, errors, second, requests: requests() }
}

async fn chat(spec: &str) -> Seen {
    let replies = vec![ScriptedReply::text(REPLY)];
    let config = ChatFakeConfig { api_key: None, replies, knobs: knobs(spec) };
    let fake = ChatFake::start(config).await.unwrap();
    let stage = OpenAiChatConfig { base_url: fake.base_url(), http: http(), ..OpenAiChatConfig::default() };
    let stage = Box::new(OpenAiChat::new(stage, Some(Secret::new("sk-test"))).unwrap());
    two_turns(Harness::start(stage, Arc::new(NoTools)), || fake.requests()).await
}

async fn anthropic(spec: &str) -> Seen {
    let replies = vec![ScriptedReply::text(REPLY)];
    let config = AnthropicFakeConfig { api_key: None, replies, knobs: knobs(spec) };
    let fake = AnthropicFake::start(config).await.unwrap();
    let stage = AnthropicConfig { base_url: fake.base_url(), http: http(), ..AnthropicConfig::default() };
    let stage = Box::new(Anthropic::new(stage, Secret::new("sk-ant-test")).unwrap());
    two_turns(Harness::start(stage, Arc::new(NoTools)), || fake.requests()).await
}

async fn gemini(spec: &str) -> Seen {
    let replies = vec![ScriptedReply::text(REPLY)];
    let config = GeminiFakeConfig { replies, knobs: knobs(spec), ..GeminiFakeConfig::default() };
    let fake = GeminiFake::start(config).await.unwrap();
    let stage = GeminiConfig { base_url: fake.base_url(), http: http(), ..GeminiConfig::default() };
    let stage = Box::new(Gemini::new(stage, Secret::new("AIza-test")).unwrap());
    two_turns(Harness::start(stage, Arc::new(NoTools)), || fake.requests()).await
}

/// The faulted turn failed with `code` reported, without a retry, and the next one answered.
fn failed_cleanly(seen: &Seen, code: &str) {
    assert_eq!(seen.first.done().status, ResponseStatus::Failed, "{:?}", seen.first.done());
    assert_eq!(seen.errors, [code]);
    assert_eq!(seen.second.done().status, ResponseStatus::Completed);
    assert_eq!(seen.second.transcript().as_deref(), Some(REPLY));
    assert_eq!(seen.requests.len(), 2, "no retry once the body started");
}

/// The faulted turn answered in full, nothing reported, no retry.
fn answered(seen: &Seen) {
    assert_eq!(seen.first.done().status, ResponseStatus::Completed, "{:?}", seen.first.done());
    assert_eq!(seen.first.transcript().as_deref(), Some(REPLY));
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert_eq!(seen.second.transcript().as_deref(), Some(REPLY));
    assert_eq!(seen.requests.len(), 2);
}

/// The faulted request was retried and the turn answered.
fn retried(seen: &Seen, status: u16) {
    assert_eq!(seen.first.done().status, ResponseStatus::Completed, "{:?}", seen.first.done());
    assert_eq!(seen.first.transcript().as_deref(), Some(REPLY));
    assert_eq!(seen.requests.iter().map(|r| r.status).collect::<Vec<_>>(), [status, 200, 200]);
}

#[tokio::test]
async fn chat_malformed_chunk_fails_the_turn_with_invalid_chunk_and_the_call_goes_on() {
    let seen = chat("0=malformed:2").await;
    failed_cleanly(&seen, "invalid_chunk");
    assert_eq!(seen.first.transcript().as_deref(), Some("Hello"), "what came before is kept");
}

#[tokio::test]
async fn chat_unknown_field_is_ignored_and_the_reply_is_whole() {
    answered(&chat("0=unknown-event:2").await);
}

#[tokio::test(start_paused = true)]
async fn chat_slow_drip_under_the_stall_timeout_is_answered_in_full() {
    let seen = chat("0=slow:1500").await;
    answered(&seen);
}

#[tokio::test]
async fn chat_oversize_event_fails_the_turn_with_too_large_and_the_call_goes_on() {
    failed_cleanly(&chat("0=oversize:5m:1").await, "too_large");
}

#[tokio::test]
async fn chat_wrong_content_type_fails_the_turn_and_the_call_goes_on() {
    let seen = chat("0=wrong-content-type").await;
    assert_eq!(seen.first.done().status, ResponseStatus::Failed, "{:?}", seen.first.done());
    assert!(seen.first.transcript().unwrap_or_default().is_empty(), "nothing of the HTML is spoken");
    assert_eq!(seen.errors.len(), 1, "{:?}", seen.errors);
    assert_eq!(seen.second.transcript().as_deref(), Some(REPLY));
}

#[tokio::test]
async fn anthropic_429_with_retry_after_is_retried_and_answered() {
    retried(&anthropic("0=status:429:retry-after=1").await, 429);
}

#[tokio::test]
async fn anthropic_529_overloaded_is_retried_and_answered() {
    retried(&anthropic("0=status:529").await, 529);
}

#[tokio::test]
async fn anthropic_stall_past_the_stall_timeout_fails_the_turn_and_the_call_goes_on() {
    failed_cleanly(&anthropic("0=stall-after:3").await, "stalled");
}

#[tokio::test]
async fn anthropic_cut_mid_event_fails_the_turn_with_stream_broken_and_the_call_goes_on() {
    failed_cleanly(&anthropic("0=cut-after:5").await, "stream_broken");
}

#[tokio::test]
async fn anthropic_malformed_event_fails_the_turn_and_the_call_goes_on() {
    let seen = anthropic("0=malformed:5").await;
    assert_eq!(seen.first.done().status, ResponseStatus::Failed);
    assert_eq!(seen.errors.len(), 1, "{:?}", seen.errors);
    assert_eq!(seen.second.transcript().as_deref(), Some(REPLY));
    assert_eq!(seen.requests.len(), 2);
}

#[tokio::test]
async fn anthropic_unknown_event_type_is_ignored_and_the_reply_is_whole() {
    answered(&anthropic("0=unknown-event:3").await);
}

#[tokio::test(start_paused = true)]
async fn anthropic_slow_drip_under_the_stall_timeout_is_answered_in_full() {
    answered(&anthropic("0=slow:1500").await);
}

#[tokio::test]
async fn anthropic_oversize_event_fails_the_turn_with_too_large_and_the_call_goes_on() {
    failed_cleanly(&anthropic("0=oversize:5m:1").await, "too_large");
}

#[tokio::test]
async fn anthropic_wrong_content_type_fails_the_turn_and_the_call_goes_on() {
    let seen = anthropic("0=wrong-content-type").await;
    assert_eq!(seen.first.done().status, ResponseStatus::Failed, "{:?}", seen.first.done());
    assert!(seen.first.transcript().unwrap_or_default().is_empty(), "nothing of the HTML is spoken");
    assert_eq!(seen.errors.len(), 1, "{:?}", seen.errors);
    assert_eq!(seen.second.transcript().as_deref(), Some(REPLY));
}

#[tokio::test]
async fn gemini_429_with_retry_after_is_retried_and_answered() {
    retried(&gemini("0=status:429:retry-after=1").await, 429);
}

#[tokio::test]
async fn gemini_503_overloaded_is_retried_and_answered() {
    retried(&gemini("0=status:503").await, 503);
}

#[tokio::test]
async fn gemini_stall_past_the_stall_timeout_fails_the_turn_and_the_call_goes_on() {
    failed_cleanly(&gemini("0=stall-after:3").await, "stalled");
}

#[tokio::test]
async fn gemini_cut_mid_event_fails_the_turn_with_stream_broken_and_the_call_goes_on() {
    let seen = gemini("0=cut-after:2").await;
    failed_cleanly(&seen, "stream_broken");
    assert_eq!(seen.first.transcript().as_deref(), Some("Hello again"), "what came before is kept");
}

#[tokio::test]
async fn gemini_malformed_event_fails_the_turn_with_invalid_event_and_the_call_goes_on() {
    failed_cleanly(&gemini("0=malformed:2").await, "invalid_event");
}

#[tokio::test]
async fn gemini_unknown_field_is_ignored_and_the_reply_is_whole() {
    answered(&gemini("0=unknown-event:2").await);
}

#[tokio::test(start_paused = true)]
async fn gemini_slow_drip_under_the_stall_timeout_is_answered_in_full() {
    answered(&gemini("0=slow:1500").await);
}

#[tokio::test]
async fn gemini_oversize_event_fails_the_turn_with_too_large_and_the_call_goes_on() {
    failed_cleanly(&gemini("0=oversize:5m:1").await, "too_large");
}

#[tokio::test]
async fn gemini_wrong_content_type_fails_the_turn_and_the_call_goes_on() {
    let seen = gemini("0=wrong-content-type").await;
    failed_cleanly(&seen, "stream_broken");
    assert!(seen.first.transcript().unwrap_or_default().is_empty(), "nothing of the HTML is spoken");
}

#[test]
fn the_specs_used_here_are_the_faults_meant() {
    let spec: FaultSpec = "0=oversize:5m:1".parse().unwrap();
    assert_eq!(spec.fault, Fault::Oversize { bytes: 5 << 20, after: 1 });
}
