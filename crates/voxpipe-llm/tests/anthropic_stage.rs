//! `llm.anthropic` against the Messages fake: streaming, tool round trips, auth, interruption.

mod support;

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::{Harness, RecordingTools};
use voxpipe_core::{Control, Frame, InterruptReason, NoTools, ResponseStatus, Secret};
use voxpipe_fakes::anthropic::{AnthropicFake, AnthropicFakeConfig};
use voxpipe_fakes::openai_chat::{Knobs, ScriptedReply, ScriptedToolCall};
use voxpipe_llm::{Anthropic, AnthropicConfig, HttpConfig};

async fn fake(replies: Vec<ScriptedReply>, knobs: Knobs) -> AnthropicFake {
    AnthropicFake::start(AnthropicFakeConfig { api_key: Some("sk-ant-test".into()), replies, knobs })
        .await
        .unwrap()
}

fn stage(fake: &AnthropicFake, key: &str) -> Box<Anthropic> {
    let config = AnthropicConfig {
        base_url: fake.base_url(),
        instructions: "Be brief.".into(),
        http: HttpConfig { retry_backoff_ms: 20, ..HttpConfig::default() },
        ..AnthropicConfig::default()
    };
    Box::new(Anthropic::new(config, Secret::new(key)).unwrap())
}

#[tokio::test]
async fn a_text_reply_streams_deltas_with_cumulative_usage() {
    let fake = fake(vec![ScriptedReply::text("Hello there!")], Knobs::default()).await;
    let mut h = Harness::start(stage(&fake, "sk-ant-test"), Arc::new(NoTools));
    h.say("Hi").await;
    let turn = h.turn().await;
    assert_eq!(turn.deltas(), ["Hello", " there", "!"]);
    assert_eq!(turn.transcript().as_deref(), Some("Hello there!"));
    let usage = turn.done().usage.clone().unwrap();
    assert_eq!(usage.output_tokens, 4, "message_delta's cumulative count, not 1 + 4");
    let req = &fake.requests()[0];
    assert_eq!(req.header("x-api-key"), Some("[redacted]"));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.body["max_tokens"], 1024);
    assert_eq!(req.body["system"], "Be brief.");
    assert_eq!(req.body["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]));
    h.finish().await.unwrap();
}

#[tokio::test]
async fn a_tool_round_trip_sends_input_schema_and_tool_result_blocks() {
    let replies = vec![
        ScriptedReply::ToolCalls {
            text: Some("Let me check.".into()),
            calls: vec![
                ScriptedToolCall { name: "get_weather".into(), arguments: json!({"city": "Paris"}) },
                ScriptedToolCall { name: "get_time".into(), arguments: json!({"city": "Paris"}) },
            ],
        },
        ScriptedReply::Echo,
    ];
    let fake = fake(replies, Knobs { fragment_chars: 2, ..Knobs::default() }).await;
    let tools = RecordingTools::new(Duration::from_millis(200));
    let mut h = Harness::start(stage(&fake, "sk-ant-test"), tools.clone());
    h.say("Weather and time in Paris?").await;
    let turn = h.turn().await;
    let calls = turn.tool_calls();
    assert_eq!(calls.iter().map(|c| c.arguments.as_str()).collect::<Vec<_>>(), [r#"{"city":"Paris"}"#; 2]);
    let runs = tools.runs();
    assert!(runs.iter().map(|r| r.started).max() < runs.iter().map(|r| r.ended).min(), "concurrent");
    let outputs: Vec<String> = calls.iter().map(RecordingTools::output_for).collect();
    let expected = format!("Let me check.Tool said: {}", outputs.join("; "));
    assert_eq!(turn.transcript(), Some(expected));

    let requests = fake.requests();
    let tool = &requests[0].body["tools"][0];
    assert_eq!(tool["name"], "get_weather");
    assert_eq!(tool["input_schema"]["required"], json!(["city"]));
    assert!(tool.get("parameters").is_none());
    assert_eq!(requests[0].body["tool_choice"], json!({"type": "auto"}));
    let messages = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": calls[0].call_id, "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": calls[1].call_id, "name": "get_time", "input": {"city": "Paris"}},
        ]})
    );
    assert_eq!(
        messages[2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": calls[0].call_id, "content": outputs[0], "is_error": false},
            {"type": "tool_result", "tool_use_id": calls[1].call_id, "content": outputs[1], "is_error": false},
        ]})
    );
    h.finish().await.unwrap();
}

#[tokio::test]
async fn http_401_is_a_fatal_error_naming_the_env_var() {
    let fake = fake(vec![ScriptedReply::Echo], Knobs::default()).await;
    let mut h = Harness::start(stage(&fake, "sk-ant-wrong"), Arc::new(NoTools));
    h.say("Hello?").await;
    assert_eq!(h.turn().await.done().status, ResponseStatus::Failed);
    let err = tokio::time::timeout(Duration::from_secs(5), h.task).await.unwrap().unwrap().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("anthropic") && msg.contains("401") && msg.contains("check ANTHROPIC_API_KEY"),
        "{msg}"
    );
    assert!(msg.contains("authentication_error"), "{msg}");
}

#[tokio::test]
async fn an_overloaded_529_is_retried() {
    let faults = [(0, voxpipe_fakes::openai_chat::Fault::Status { status: 529, retry_after_s: None })].into();
    let fake = fake(vec![ScriptedReply::text("Back.")], Knobs { faults, ..Knobs::default() }).await;
    let mut h = Harness::start(stage(&fake, "sk-ant-test"), Arc::new(NoTools));
    h.say("Hello?").await;
    assert_eq!(h.turn().await.transcript().as_deref(), Some("Back."));
    assert_eq!(fake.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [529, 200]);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn an_interrupt_before_any_audio_played_drops_the_reply_and_the_next_request_is_valid() {
    let full = "One two three four five six seven eight nine ten eleven twelve.";
    let knobs = Knobs { token_interval_ms: 80, ..Knobs::default() };
    let fake = fake(vec![ScriptedReply::text(full), ScriptedReply::Echo], knobs).await;
    let mut h = Harness::start(stage(&fake, "sk-ant-test"), Arc::new(NoTools));
    h.say("Count.").await;
    let mut heard = String::new();
    while heard.len() < 8 {
        if let (_, Frame::TextDelta(d)) = h.next().await {
            heard.push_str(&d.text);
        }
    }
    h.ctx.control.send(Control::Interrupt { reason: InterruptReason::BargeIn, onset: None, played: None });
    assert_eq!(h.turn().await.done().status, ResponseStatus::Cancelled);
    h.say("Enough.").await;
    // Nothing of the reply was played, so history holds no assistant turn: the two user turns
    // are merged into one valid user message.
    assert_eq!(h.turn().await.transcript().as_deref(), Some("You said: Count. Enough."));
    let messages = fake.requests()[1].body["messages"].clone();
    assert_eq!(messages.as_array().unwrap().len(), 1, "{messages}");
    assert!(!heard.is_empty() && full.starts_with(&heard));
    h.finish().await.unwrap();
}
