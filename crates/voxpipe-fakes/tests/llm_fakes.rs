//! The chat-completions and Messages fakes, spoken to with raw HTTP: they must reject what the
//! real services reject and stream the shapes of the recorded fixtures.

use futures_util::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use voxpipe_fakes::anthropic::{AnthropicFake, AnthropicFakeConfig};
use voxpipe_fakes::openai_chat::{ChatFake, ChatFakeConfig, Fault, Knobs, ScriptedReply, ScriptedToolCall};

fn chat_body(messages: Value) -> Value {
    json!({"model": "gpt-4o-mini", "messages": messages, "stream": true, "stream_options": {"include_usage": true}})
}

async fn post_chat(fake: &ChatFake, key: Option<&str>, body: &Value) -> (u16, String) {
    let mut req = reqwest::Client::new().post(format!("{}/chat/completions", fake.base_url())).json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn data_lines(sse: &str) -> Vec<String> {
    sse.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_string).collect()
}

#[tokio::test]
async fn chat_fake_answers_auth_failures_in_the_openai_error_shape() {
    let fake =
        ChatFake::start(ChatFakeConfig { api_key: Some("sk-right".into()), ..ChatFakeConfig::default() })
            .await
            .unwrap();
    let body = chat_body(json!([{"role": "user", "content": "hi"}]));
    let (status, text) = post_chat(&fake, None, &body).await;
    assert_eq!(status, 401);
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(err["error"].as_object().unwrap().keys().eq(["code", "message", "param", "type"].iter()));
    let (status, text) = post_chat(&fake, Some("sk-wrong"), &body).await;
    assert_eq!(status, 401);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["code"], "invalid_api_key");
    assert_eq!(fake.requests()[1].header("authorization"), Some("[redacted]"));
}

#[tokio::test]
async fn chat_fake_rejects_unpaired_tool_messages_and_bad_tools() {
    let fake = ChatFake::start(ChatFakeConfig::default()).await.unwrap();
    let orphan = chat_body(
        json!([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_x", "content": "1"}]),
    );
    let (status, text) = post_chat(&fake, Some("k"), &orphan).await;
    assert_eq!(status, 400, "{text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"]["param"], "messages.[1].role");
    assert!(err["error"]["message"].as_str().unwrap().contains("must be a response to a preceeding message"));

    let unanswered = chat_body(
        json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": null,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]),
    );
    let (status, text) = post_chat(&fake, Some("k"), &unanswered).await;
    assert_eq!(status, 400);
    assert!(text.contains("did not have response messages: call_1"), "{text}");

    let mut bad_tools = chat_body(json!([{"role": "user", "content": "hi"}]));
    bad_tools["tools"] = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    assert_eq!(post_chat(&fake, Some("k"), &bad_tools).await.0, 400);
    let mut not_streaming = chat_body(json!([{"role": "user", "content": "hi"}]));
    not_streaming["stream"] = json!(false);
    assert_eq!(post_chat(&fake, Some("k"), &not_streaming).await.0, 400);
    assert_eq!(post_chat(&fake, Some("k"), &chat_body(json!([]))).await.0, 400);
}

#[tokio::test]
async fn chat_fake_streams_parallel_tool_calls_in_the_fixture_shapes() {
    let calls = vec![
        ScriptedToolCall { name: "get_weather".into(), arguments: json!({"city": "Edinburgh"}) },
        ScriptedToolCall { name: "get_stock_price".into(), arguments: json!({"ticker": "AAPL"}) },
    ];
    let config = ChatFakeConfig {
        replies: vec![ScriptedReply::ToolCalls { text: None, calls }],
        ..ChatFakeConfig::default()
    };
    let fake = ChatFake::start(config).await.unwrap();
    let (status, sse) =
        post_chat(&fake, Some("k"), &chat_body(json!([{"role": "user", "content": "hi"}]))).await;
    assert_eq!(status, 200);
    let lines = data_lines(&sse);
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        lines[..lines.len() - 1].iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let fixture =
        include_str!("../../voxpipe-llm/fixtures/openai/chat-completions-stream-parallel-tool-calls.sse");
    let recorded: Vec<Value> = data_lines(fixture)
        .iter()
        .filter(|l| *l != "[DONE]")
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&chunks[0]), keys(&recorded[0]), "chunk fields as recorded");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["content"],
        Value::Null,
        "content null when tool calls follow"
    );

    let mut args: BTreeMap<u64, String> = BTreeMap::new();
    for c in &chunks[1..chunks.len() - 2] {
        let frag = &c["choices"][0]["delta"]["tool_calls"][0];
        let index = frag["index"].as_u64().unwrap();
        if frag.get("id").is_some() {
            assert_eq!(frag["type"], "function");
            assert_eq!(frag["function"]["arguments"], "", "the opening fragment carries no arguments");
        } else {
            assert_eq!(keys(frag), ["function", "index"], "later fragments carry only index and arguments");
        }
        args.entry(index).or_default().push_str(frag["function"]["arguments"].as_str().unwrap());
    }
    assert_eq!(args[&0], r#"{"city":"Edinburgh"}"#);
    assert_eq!(args[&1], r#"{"ticker":"AAPL"}"#);
    assert!(chunks.len() > 12, "arguments arrive in fragments of a few characters");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn chat_fake_sends_no_usage_chunk_without_include_usage() {
    let fake = ChatFake::start(ChatFakeConfig {
        replies: vec![ScriptedReply::text("Hi.")],
        ..ChatFakeConfig::default()
    })
    .await
    .unwrap();
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let (_, sse) = post_chat(&fake, Some("k"), &body).await;
    assert!(!sse.contains("\"usage\""), "{sse}");
    assert_eq!(data_lines(&sse).len(), 5, "role, 'Hi', '.', finish, [DONE]");
}

#[tokio::test]
async fn chat_fake_cuts_and_stalls_streams_on_request() {
    let faults = BTreeMap::from([(0, Fault::CutAfter { chunks: 2 }), (1, Fault::StallAfter { chunks: 1 })]);
    let knobs = Knobs { faults, ..Knobs::default() };
    let fake = ChatFake::start(ChatFakeConfig {
        replies: vec![ScriptedReply::text("a b c d")],
        knobs,
        ..ChatFakeConfig::default()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", fake.base_url());
    let body = chat_body(json!([{"role": "user", "content": "hi"}]));
    let cut = client.post(&url).bearer_auth("k").json(&body).send().await.unwrap();
    assert!(cut.bytes().await.is_err(), "the connection drops mid-body");

    let stalled = client.post(&url).bearer_auth("k").json(&body).send().await.unwrap();
    let mut stream = stalled.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next()).await.is_err(),
        "nothing more comes"
    );
    assert!(fake.requests()[1].stream_finished_at.is_none());
    fake.stop().await;
}

async fn post_messages(fake: &AnthropicFake, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{}/messages", fake.base_url())).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

const ANT: [(&str, &str); 2] = [("x-api-key", "sk-ant"), ("anthropic-version", "2023-06-01")];

#[tokio::test]
async fn anthropic_fake_requires_key_version_and_max_tokens() {
    let fake = AnthropicFake::start(AnthropicFakeConfig::default()).await.unwrap();
    let body = json!({"model": "claude", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (status, err) = post_messages(&fake, &[("anthropic-version", "2023-06-01")], &body).await;
    assert_eq!(status, 401);
    assert_eq!(
        err,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "x-api-key header is required"}})
    );
    let (status, err) = post_messages(&fake, &[("x-api-key", "k")], &body).await;
    assert_eq!((status, err["error"]["type"].as_str()), (400, Some("invalid_request_error")));
    let mut no_max = body.clone();
    no_max.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(post_messages(&fake, &ANT, &no_max).await.0, 400);
    let mut chat_tools = body.clone();
    chat_tools["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    assert_eq!(post_messages(&fake, &ANT, &chat_tools).await.0, 400);
}

/// The `anthropic` SDK sends `x-api-key` with `api_key` and `Authorization: Bearer` with
/// `auth_token`: the fake takes either, checks it against the configured key, and still wants
/// `anthropic-version`.
#[tokio::test]
async fn anthropic_fake_takes_the_key_as_x_api_key_or_bearer_and_checks_it() {
    let config = AnthropicFakeConfig { api_key: Some("sk-ant".into()), ..AnthropicFakeConfig::default() };
    let fake = AnthropicFake::start(config).await.unwrap();
    let body = json!({"model": "claude", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let version = ("anthropic-version", "2023-06-01");
    let status = |r: (u16, Value)| (r.0, r.1["error"]["type"].as_str().map(str::to_string));
    let auth_error = (401, Some("authentication_error".to_string()));
    assert_eq!(post_messages(&fake, &ANT, &body).await.0, 200);
    assert_eq!(post_messages(&fake, &[("authorization", "Bearer sk-ant"), version], &body).await.0, 200);
    for bad in [
        vec![("authorization", "Bearer sk-other"), version],
        vec![("authorization", "Bearer "), version],
        vec![("authorization", "Basic c2stYW50"), version],
        vec![("x-api-key", "sk-other"), version],
        vec![version],
    ] {
        assert_eq!(status(post_messages(&fake, &bad, &body).await), auth_error, "{bad:?}");
    }
    let no_version = status(post_messages(&fake, &[("authorization", "Bearer sk-ant")], &body).await);
    assert_eq!(no_version, (400, Some("invalid_request_error".to_string())));
    fake.stop().await;
}

#[tokio::test]
async fn anthropic_fake_rejects_a_tool_result_without_its_tool_use() {
    let fake = AnthropicFake::start(AnthropicFakeConfig::default()).await.unwrap();
    let tools = json!([{"name": "f", "description": "", "input_schema": {"type": "object"}}]);
    let orphan = json!({"model": "c", "max_tokens": 64, "stream": true, "tools": tools, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}]}]});
    let (status, err) = post_messages(&fake, &ANT, &orphan).await;
    assert_eq!(status, 400);
    assert!(err["error"]["message"].as_str().unwrap().contains("toolu_x"));

    let answered = json!({"model": "c", "max_tokens": 64, "stream": true, "tools": tools, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "1", "is_error": false}]}]});
    assert_eq!(post_messages(&fake, &ANT, &answered).await.0, 200);
    let mut no_tools = answered.clone();
    no_tools.as_object_mut().unwrap().remove("tools");
    assert_eq!(post_messages(&fake, &ANT, &no_tools).await.0, 400, "tool blocks need tools defined");
}

#[tokio::test]
async fn anthropic_fake_streams_events_in_the_fixture_order() {
    let reply = ScriptedReply::ToolCalls {
        text: Some("I'll check.".into()),
        calls: vec![ScriptedToolCall { name: "get_weather".into(), arguments: json!({"location": "Paris"}) }],
    };
    let fake =
        AnthropicFake::start(AnthropicFakeConfig { replies: vec![reply], ..AnthropicFakeConfig::default() })
            .await
            .unwrap();
    let body = json!({"model": "c", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (status, sse) = post_messages(&fake, &ANT, &body).await;
    assert_eq!(status, 200);
    let sse = sse.as_str().expect("an SSE body, not JSON").to_string();
    let mut names = Vec::new();
    let mut json_parts = String::new();
    for pair in sse.split("\n\n").filter(|s| !s.is_empty()) {
        let (event, data) = pair.split_once('\n').unwrap();
        let name = event.strip_prefix("event: ").unwrap();
        let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], name);
        if data["delta"]["type"] == "input_json_delta" {
            json_parts.push_str(data["delta"]["partial_json"].as_str().unwrap());
        }
        if names.last() != Some(&name.to_string()) {
            names.push(name.to_string());
        }
    }
    let fixture = include_str!("../../voxpipe-llm/fixtures/anthropic/messages-stream-text-then-tool-use.sse");
    let mut expected: Vec<String> = Vec::new();
    for name in fixture.lines().filter_map(|l| l.strip_prefix("event: ")) {
        if expected.last().map(String::as_str) != Some(name) {
            expected.push(name.to_string());
        }
    }
    assert_eq!(names, expected);
    assert_eq!(serde_json::from_str::<Value>(&json_parts).unwrap(), json!({"location": "Paris"}));
}
