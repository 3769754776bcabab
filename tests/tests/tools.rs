//! The shared tool runtime end to end: one `[tools]` declaration run through the Realtime fake,
//! the chat-completions fake and the Anthropic fake against the in-process tool server, on a
//! virtual clock. The cascade is transcription fake -> LLM fake -> speech fake, with voxpipe's
//! local turn controller on the tone "voice" of the input.

use std::path::Path;
use voxpipe_cli::{RunArgs, run_pipeline};
use voxpipe_core::RunOptions;
use voxpipe_e2e::*;
use voxpipe_fakes::anthropic::{AnthropicFake, AnthropicFakeConfig};
use voxpipe_fakes::openai_chat::{
    ChatFake, ChatFakeConfig, RecordedRequest, ScriptedReply, ScriptedToolCall,
};
use voxpipe_fakes::openai_speech::{SpeechFake, SpeechFakeConfig};
use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig, ScriptedResponse};
use voxpipe_fakes::tool_server::{ToolServer, ToolServerConfig};
use voxpipe_fakes::transcription::{TranscriptionFake, TranscriptionFakeConfig};

const KEY: &str = "sk-test";
const FILLER: &str = "One moment while I look that up.";

/// The tools, declared once. `orders` and `bookings` are tool-server base URLs (two servers,
/// so one can be slow and the other fast).
fn tools_toml(orders: &str, bookings: &str) -> String {
    format!(
        r#"
[tools.get_order_status]
description = "Look up the status of an order by its number."
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string", description = "e.g. A-1001" }} }}, required = ["order_id"], additionalProperties = false }}
handler = {{ kind = "http", url = "{orders}/orders/status" }}
idempotent = true
timeout_ms = 8000
filler = "{FILLER}"
filler_after_ms = 1000

[tools.book_appointment]
description = "Book an appointment."
parameters = {{ type = "object", properties = {{ date = {{ type = "string" }}, time = {{ type = "string" }}, name = {{ type = "string" }} }}, required = ["date", "time", "name"] }}
handler = {{ kind = "http", url = "{bookings}/appointments/book" }}
timeout_ms = 15000
filler = "Let me book that for you."
filler_after_ms = 1000

[tools.transfer_to_human]
description = "Transfer the caller to a human agent."
parameters = {{ type = "object", properties = {{ reason = {{ type = "string" }} }}, required = ["reason"] }}
handler = {{ kind = "transfer", target = "support-queue" }}

[tools.end_call]
description = "End the call after saying goodbye."
handler = {{ kind = "end_call" }}
"#
    )
}

fn order_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": { "order_id": { "type": "string", "description": "e.g. A-1001" } },
        "required": ["order_id"],
        "additionalProperties": false
    })
}

fn native_toml(realtime_url: &str, tools: &str) -> String {
    format!(
        r#"
name = "tools-native"
[[stages]]
kind = "realtime.openai"
url = "{realtime_url}"
api_key_env = "FAKE_KEY"
instructions = "You are a customer-service agent."
[stages.turn_detection]
type = "server_vad"
silence_duration_ms = 500
[stages.transcription]
model = "gpt-4o-mini-transcribe"
{tools}"#
    )
}

/// The LLM fake of a cascade: its kind and base URL.
struct Llm<'a> {
    kind: &'a str,
    base_url: String,
}

fn cascade_toml(asr: &str, llm: &Llm, tts: &str, tools: &str) -> String {
    format!(
        r#"
name = "tools-cascade"
[turn]
mode = "local"
vad = "energy"
min_silence_ms = 500
[[stages]]
kind = "asr.openai"
base_url = "{asr}"
api_key_env = "FAKE_KEY"
[[stages]]
kind = "{kind}"
base_url = "{llm}"
api_key_env = "FAKE_KEY"
instructions = "You are a customer-service agent."
[[stages]]
kind = "tts.openai"
base_url = "{tts}"
api_key_env = "FAKE_KEY"
{tools}"#,
        kind = llm.kind,
        llm = llm.base_url,
    )
}

/// A call: tone "speech" at each `(start ms, length ms)`, `total_ms` long, 16 kHz.
fn write_call(path: &Path, turns: &[(u64, u64)], total_ms: u64) {
    let rate = 16_000;
    let mut s = Vec::new();
    let mut at = 0;
    for &(start, len) in turns {
        s.extend(silence(rate, start - at));
        s.extend(tone(rate, 300.0, len, 0.3));
        at = start + len;
    }
    s.extend(silence(rate, total_ms - at));
    write_wav(path, rate, &s);
}

/// Runs `pipeline_toml` (written into `dir`) on `input`; returns the events and the summary's
/// end reason.
async fn run(dir: &Path, pipeline_toml: &str, input: &Path) -> (Vec<serde_json::Value>, Option<String>) {
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(&pipeline, pipeline_toml).unwrap();
    let args = RunArgs {
        pipeline,
        input: Some(input.to_path_buf()),
        output: Some(dir.join("reply.wav")),
        events: Some(dir.join("events.jsonl")),
        profile: None,
        sets: Vec::new(),
        quiet: true,
    };
    let env = vec![("FAKE_KEY".to_string(), KEY.to_string())];
    let (_, summary) = run_pipeline(&args, env, RunOptions::default()).await.unwrap();
    (read_events(&dir.join("events.jsonl")), summary.end_reason)
}

/// The cascade's non-LLM fakes.
struct CascadeFakes {
    asr: TranscriptionFake,
    tts: SpeechFake,
}

async fn cascade_fakes(transcripts: &[&str]) -> CascadeFakes {
    let asr = TranscriptionFake::start(TranscriptionFakeConfig {
        api_key: KEY.into(),
        transcripts: transcripts.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    let tts =
        SpeechFake::start(SpeechFakeConfig { api_key: KEY.into(), ..Default::default() }).await.unwrap();
    CascadeFakes { asr, tts }
}

fn t_ms(e: &serde_json::Value) -> u64 {
    e["t_ms"].as_u64().unwrap()
}

fn texts(events: &[serde_json::Value], kind: &str) -> Vec<String> {
    events_of(events, kind).iter().map(|e| e["text"].as_str().unwrap().to_string()).collect()
}

/// The first `playout_started` of an item whose id starts with `prefix`, after `after_ms`.
fn playout_after(events: &[serde_json::Value], prefix: &str, after_ms: u64) -> Option<u64> {
    events_of(events, "playout_started")
        .iter()
        .filter(|e| e["item"].as_str().unwrap().starts_with(prefix))
        .map(|e| t_ms(e))
        .find(|t| *t >= after_ms)
}

/// Asserts the order lookup happened once against the tool server, its result is in the
/// events, and assistant audio (`reply_…` or the Realtime item) played after it, in the WAV too.
fn assert_answer_follows_result(
    dir: &Path,
    events: &[serde_json::Value],
    server: &ToolServer,
    answer_item: &str,
) {
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].uri, "/orders/status");
    assert_eq!(requests[0].body, serde_json::json!({"order_id": "A-1001"}));
    let result = events_of(events, "tool_result")[0];
    assert_eq!(result["is_error"], false, "{result}");
    let output: serde_json::Value = serde_json::from_str(result["output"].as_str().unwrap()).unwrap();
    assert_eq!(output["status"], "shipped");
    let result_at = t_ms(result);
    let played = playout_after(events, answer_item, result_at).expect("the answer played after the result");
    let (samples, rate) = read_wav(&dir.join("reply.wav"));
    let regions = active_regions(&samples, rate, 500, 150);
    assert!(regions.iter().any(|(start, _)| *start >= result_at), "audio after the result: {regions:?}");
    assert!(played >= result_at);
}

/// The Chat Completions request that carried the tool result, and its tool message.
fn chat_tool_message(requests: &[RecordedRequest]) -> (usize, serde_json::Value) {
    requests
        .iter()
        .enumerate()
        .find_map(|(i, r)| {
            r.body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["role"] == "tool")
                .map(|m| (i, m.clone()))
        })
        .expect("a request carries the tool result")
}

#[tokio::test(start_paused = true)]
async fn one_declaration_works_through_realtime_chat_and_anthropic_in_each_wire_shape() {
    let input_dir = tempfile::tempdir().unwrap();
    let input = input_dir.path().join("call.wav");
    write_call(&input, &[(500, 1500)], 9000);

    // Native: the Realtime fake sees the flat function shape and gets a function_call_output.
    {
        let dir = tempfile::tempdir().unwrap();
        let server = ToolServer::start().await.unwrap();
        let fake = RealtimeFake::start(RealtimeFakeConfig {
            responses: vec![
                ScriptedResponse {
                    user_transcript: Some("Where is my order A-1001?".into()),
                    ..ScriptedResponse::call("get_order_status", r#"{"order_id":"A-1001"}"#)
                        .with_call_id("call_rt_1")
                },
                ScriptedResponse::say("Your order A-1001 has shipped with UPS."),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
        let tools = tools_toml(&server.base_url(), &server.base_url());
        let (events, _) = run(dir.path(), &native_toml(&fake.url(), &tools), &input).await;
        let client: Vec<_> = fake.client_events().into_iter().map(|e| e.json).collect();
        let update = client.iter().find(|e| e["type"] == "session.update").unwrap();
        let declared = update["session"]["tools"].as_array().unwrap();
        assert_eq!(declared.len(), 4);
        let order = declared.iter().find(|t| t["name"] == "get_order_status").unwrap();
        assert_eq!(
            order,
            &serde_json::json!({"type": "function", "name": "get_order_status",
                "description": "Look up the status of an order by its number.", "parameters": order_schema()})
        );
        let output = client
            .iter()
            .find(|e| e["type"] == "conversation.item.create" && e["item"]["type"] == "function_call_output")
            .unwrap();
        assert_eq!(output["item"]["call_id"], "call_rt_1");
        let result: serde_json::Value =
            serde_json::from_str(output["item"]["output"].as_str().unwrap()).unwrap();
        assert_eq!((result["status"].as_str(), result["carrier"].as_str()), (Some("shipped"), Some("UPS")));
        assert_eq!(texts(&events, "assistant_transcript"), ["Your order A-1001 has shipped with UPS."]);
        let answer_item = events_of(&events, "assistant_transcript")[0]["item"].as_str().unwrap().to_string();
        assert_answer_follows_result(dir.path(), &events, &server, &answer_item);
        assert!(events_of(&events, "provider_error").is_empty());
        fake.shutdown().await;
    }

    // Cascade with Chat Completions: `{"type":"function","function":{…}}`, a `tool` message back.
    {
        let dir = tempfile::tempdir().unwrap();
        let server = ToolServer::start().await.unwrap();
        let fakes = cascade_fakes(&["Where is my order A-1001?"]).await;
        let chat = ChatFake::start(ChatFakeConfig {
            api_key: Some(KEY.into()),
            replies: vec![
                ScriptedReply::tool_call("get_order_status", serde_json::json!({"order_id": "A-1001"})),
                ScriptedReply::Echo, // "Tool said: <result>"
            ],
            ..Default::default()
        })
        .await
        .unwrap();
        let llm = Llm { kind: "llm.openai", base_url: chat.base_url() };
        let tools = tools_toml(&server.base_url(), &server.base_url());
        let toml = cascade_toml(&fakes.asr.base_url(), &llm, &fakes.tts.base_url(), &tools);
        let (events, _) = run(dir.path(), &toml, &input).await;
        let requests = chat.requests();
        assert_eq!(requests.len(), 2, "the call, then the answer");
        let order = requests[0].body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["function"]["name"] == "get_order_status")
            .unwrap()
            .clone();
        assert_eq!(
            order,
            serde_json::json!({"type": "function", "function": {"name": "get_order_status",
                "description": "Look up the status of an order by its number.", "parameters": order_schema()}})
        );
        let (i, tool_msg) = chat_tool_message(&requests);
        assert_eq!(i, 1);
        let call_id = events_of(&events, "tool_call")[0]["call_id"].as_str().unwrap().to_string();
        assert_eq!(tool_msg["tool_call_id"], call_id.as_str());
        assert!(tool_msg["content"].as_str().unwrap().contains("\"shipped\""), "{tool_msg}");
        let replies = texts(&events, "assistant_transcript");
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert!(replies[0].starts_with("Tool said:") && replies[0].contains("shipped"), "{replies:?}");
        let spoken: Vec<String> =
            fakes.tts.requests().iter().map(|r| r.body["input"].as_str().unwrap().to_string()).collect();
        assert!(spoken.iter().any(|s| s.contains("shipped")), "{spoken:?}");
        assert_answer_follows_result(dir.path(), &events, &server, "reply_");
        assert!(events_of(&events, "provider_error").is_empty());
        chat.stop().await;
    }

    // Cascade with Anthropic: `input_schema`, a `tool_result` block back.
    {
        let dir = tempfile::tempdir().unwrap();
        let server = ToolServer::start().await.unwrap();
        let fakes = cascade_fakes(&["Where is my order A-1001?"]).await;
        let anthropic = AnthropicFake::start(AnthropicFakeConfig {
            api_key: Some(KEY.into()),
            replies: vec![
                ScriptedReply::tool_call("get_order_status", serde_json::json!({"order_id": "A-1001"})),
                ScriptedReply::Echo,
            ],
            ..Default::default()
        })
        .await
        .unwrap();
        let llm = Llm { kind: "llm.anthropic", base_url: anthropic.base_url() };
        let tools = tools_toml(&server.base_url(), &server.base_url());
        let toml = cascade_toml(&fakes.asr.base_url(), &llm, &fakes.tts.base_url(), &tools);
        let (events, _) = run(dir.path(), &toml, &input).await;
        let requests = anthropic.requests();
        assert_eq!(requests.len(), 2);
        let order = requests[0].body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "get_order_status")
            .unwrap()
            .clone();
        assert_eq!(
            order,
            serde_json::json!({"name": "get_order_status",
                "description": "Look up the status of an order by its number.", "input_schema": order_schema()})
        );
        let messages = requests[1].body["messages"].as_array().unwrap();
        let last = messages.last().unwrap();
        assert_eq!(last["role"], "user");
        let block = &last["content"][0];
        assert_eq!(block["type"], "tool_result");
        let call_id = events_of(&events, "tool_call")[0]["call_id"].as_str().unwrap().to_string();
        assert_eq!(block["tool_use_id"], call_id.as_str());
        assert!(block.to_string().contains("shipped"), "{block}");
        let assistant = &messages[messages.len() - 2];
        assert_eq!(assistant["content"][0]["type"], "tool_use");
        assert_eq!(assistant["content"][0]["input"], serde_json::json!({"order_id": "A-1001"}));
        let replies = texts(&events, "assistant_transcript");
        assert!(replies.len() == 1 && replies[0].contains("shipped"), "{replies:?}");
        assert_answer_follows_result(dir.path(), &events, &server, "reply_");
        assert!(events_of(&events, "provider_error").is_empty());
        anthropic.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn end_call_ends_the_run_cleanly_after_the_goodbye_has_played() {
    let input_dir = tempfile::tempdir().unwrap();
    let input = input_dir.path().join("call.wav");
    // One turn, then 20 s of silence the call never reaches.
    write_call(&input, &[(500, 1200)], 21_700);
    let goodbye = "Thank you for calling, goodbye!";

    // Cascade.
    let dir = tempfile::tempdir().unwrap();
    let server = ToolServer::start().await.unwrap();
    let fakes = cascade_fakes(&["That's all, thanks."]).await;
    let chat = ChatFake::start(ChatFakeConfig {
        api_key: Some(KEY.into()),
        replies: vec![
            ScriptedReply::tool_call("end_call", serde_json::json!({})),
            ScriptedReply::text(goodbye),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let llm = Llm { kind: "llm.openai", base_url: chat.base_url() };
    let tools = tools_toml(&server.base_url(), &server.base_url());
    let toml = cascade_toml(&fakes.asr.base_url(), &llm, &fakes.tts.base_url(), &tools);
    let (events, reason) = run(dir.path(), &toml, &input).await;
    assert_goodbye_then_end(dir.path(), &events, reason, goodbye);
    chat.stop().await;

    // Native.
    let dir = tempfile::tempdir().unwrap();
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![ScriptedResponse::call("end_call", "{}"), ScriptedResponse::say(goodbye)],
        ..Default::default()
    })
    .await
    .unwrap();
    let (events, reason) = run(dir.path(), &native_toml(&fake.url(), &tools), &input).await;
    assert_goodbye_then_end(dir.path(), &events, reason, goodbye);
    fake.shutdown().await;
}

fn assert_goodbye_then_end(dir: &Path, events: &[serde_json::Value], reason: Option<String>, goodbye: &str) {
    assert_eq!(reason.as_deref(), Some("end_call"));
    let ended = events.last().unwrap();
    assert_eq!((ended["type"].as_str(), ended["reason"].as_str()), (Some("call_ended"), Some("end_call")));
    assert!(t_ms(ended) < 15_000, "the call ended early, at {} ms", t_ms(ended));
    assert!(texts(events, "assistant_transcript").iter().any(|t| t == goodbye));
    assert!(events_of(events, "error").is_empty(), "{events:?}");
    // The goodbye played to its end, and the call ended after it.
    let finished = events_of(events, "playout_finished");
    let last = finished.last().expect("the goodbye played");
    assert_eq!(last["interrupted"], false, "{last}");
    // Both fakes make about 60 ms of audio per character.
    let played = last["played_ms"].as_u64().unwrap();
    assert!(played >= goodbye.len() as u64 * 55, "played {played} ms of the goodbye");
    assert!(t_ms(last) <= t_ms(ended));
    let (samples, rate) = read_wav(&dir.join("reply.wav"));
    let regions = active_regions(&samples, rate, 500, 150);
    let (start, end) = *regions.last().expect("goodbye audio in the WAV");
    assert!(end - start >= 1000, "the goodbye is in the WAV: {regions:?}");
    assert!(end <= t_ms(ended) + 40, "audio ends {end} ms, call ended {} ms", t_ms(ended));
}

#[tokio::test(start_paused = true)]
async fn transfer_writes_the_handoff_event_with_the_transcript_in_cascade_and_native() {
    let input_dir = tempfile::tempdir().unwrap();
    let input = input_dir.path().join("call.wav");
    write_call(&input, &[(500, 1200), (5000, 1200)], 10_000);
    let server = ToolServer::start().await.unwrap();
    let tools = tools_toml(&server.base_url(), &server.base_url());
    let transfer = || ScriptedToolCall {
        name: "transfer_to_human".into(),
        arguments: serde_json::json!({"reason": "caller asked for a human"}),
    };

    // Cascade.
    let dir = tempfile::tempdir().unwrap();
    let fakes = cascade_fakes(&["Hi, I have a question.", "I want to talk to a human."]).await;
    let chat = ChatFake::start(ChatFakeConfig {
        api_key: Some(KEY.into()),
        replies: vec![
            ScriptedReply::text("Sure, how can I help?"),
            ScriptedReply::ToolCalls { text: None, calls: vec![transfer()] },
            ScriptedReply::text("I'm transferring you to a colleague now."),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let llm = Llm { kind: "llm.openai", base_url: chat.base_url() };
    let toml = cascade_toml(&fakes.asr.base_url(), &llm, &fakes.tts.base_url(), &tools);
    let (events, _) = run(dir.path(), &toml, &input).await;
    let handoffs = events_of(&events, "handoff");
    assert_eq!(handoffs.len(), 1, "{events:?}");
    assert_eq!(handoffs[0]["reason"], "caller asked for a human");
    assert_eq!(handoffs[0]["target"], "support-queue");
    assert_eq!(
        handoffs[0]["transcript"],
        serde_json::json!([
            "user: Hi, I have a question.",
            "assistant: Sure, how can I help?",
            "user: I want to talk to a human."
        ])
    );
    assert!(
        texts(&events, "assistant_transcript")
            .contains(&"I'm transferring you to a colleague now.".to_string())
    );
    chat.stop().await;

    // Native.
    let dir = tempfile::tempdir().unwrap();
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![
            ScriptedResponse {
                user_transcript: Some("Hi, I have a question.".into()),
                ..ScriptedResponse::say("Sure, how can I help?")
            },
            ScriptedResponse {
                user_transcript: Some("I want to talk to a human.".into()),
                ..ScriptedResponse::call("transfer_to_human", r#"{"reason":"caller asked for a human"}"#)
            },
            ScriptedResponse::say("I'm transferring you to a colleague now."),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let (events, _) = run(dir.path(), &native_toml(&fake.url(), &tools), &input).await;
    let handoffs = events_of(&events, "handoff");
    assert_eq!(handoffs.len(), 1, "{events:?}");
    assert_eq!(handoffs[0]["reason"], "caller asked for a human");
    assert_eq!(handoffs[0]["target"], "support-queue");
    assert_eq!(
        handoffs[0]["transcript"],
        serde_json::json!([
            "user: Hi, I have a question.",
            "assistant: Sure, how can I help?",
            "user: I want to talk to a human."
        ])
    );
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_barge_in_during_a_slow_booking_keeps_its_single_result_in_history() {
    let input_dir = tempfile::tempdir().unwrap();
    let input = input_dir.path().join("call.wav");
    // Turn 1 ends at 2.0 s; the booking (8 s) starts ~2.3 s; its filler plays from ~3.3 s; the
    // caller talks over it from 4.4 s, while the booking is still running.
    write_call(&input, &[(500, 1500), (4400, 1500)], 16_000);
    let slow = ToolServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        ToolServerConfig { latency_ms: 8000, ..Default::default() },
    )
    .await
    .unwrap();
    let tools = tools_toml(&slow.base_url(), &slow.base_url());
    let dir = tempfile::tempdir().unwrap();
    let fakes =
        cascade_fakes(&["Book me for March 3rd at ten, name Ada Lovelace.", "Hello? Are you there?"]).await;
    let booking = serde_json::json!({"date": "2026-03-03", "time": "10:00", "name": "Ada Lovelace"});
    let chat = ChatFake::start(ChatFakeConfig {
        api_key: Some(KEY.into()),
        replies: vec![
            ScriptedReply::tool_call("book_appointment", booking.clone()),
            ScriptedReply::text("Yes, I'm here. You're booked for March 3rd at ten."),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let llm = Llm { kind: "llm.openai", base_url: chat.base_url() };
    let toml = cascade_toml(&fakes.asr.base_url(), &llm, &fakes.tts.base_url(), &tools);
    let (events, _) = run(dir.path(), &toml, &input).await;
    let log: Vec<String> = events.iter().map(|e| e.to_string().chars().take(240).collect()).collect();

    let interrupts = events_of(&events, "interrupt");
    assert_eq!(interrupts.len(), 1, "the caller barged in: {log:#?}");
    let results = events_of(&events, "tool_result");
    assert_eq!(results.len(), 1, "one result: {log:#?}");
    assert!(
        t_ms(interrupts[0]) < t_ms(results[0]),
        "the booking was still running at the barge-in: {log:#?}"
    );
    assert_eq!(events_of(&events, "tool_call").len(), 1, "no duplicate call");
    let bookings: Vec<_> = slow.requests().into_iter().filter(|r| r.uri == "/appointments/book").collect();
    assert_eq!(bookings.len(), 1, "booked once");
    assert_eq!(bookings[0].body, booking);
    assert_eq!(events_of(&events, "response_done")[0]["status"], "cancelled");

    // The next request holds the call and its result, then the caller's new words.
    let requests = chat.requests();
    assert_eq!(requests.len(), 2, "no answer request for the interrupted response: {log:#?}");
    let messages = requests[1].body["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"], "{messages:?}");
    assert_eq!(messages[2]["tool_calls"][0]["function"]["name"], "book_appointment");
    let tool: serde_json::Value = serde_json::from_str(messages[3]["content"].as_str().unwrap()).unwrap();
    assert_eq!(tool["confirmation"], "APT-1001", "{tool}");
    assert_eq!(messages[4]["content"], "Hello? Are you there?");
    assert!(texts(&events, "assistant_transcript").iter().any(|t| t.starts_with("Yes, I'm here")));
    chat.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_filler_is_spoken_for_a_slow_tool_and_not_for_a_fast_one() {
    let input_dir = tempfile::tempdir().unwrap();
    let input = input_dir.path().join("call.wav");
    write_call(&input, &[(500, 1200), (9000, 1200)], 16_000);
    let slow = ToolServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        ToolServerConfig { latency_ms: 3000, ..Default::default() },
    )
    .await
    .unwrap();
    let fast = ToolServer::start().await.unwrap();
    // Orders are slow (filler after 1 s), bookings fast (same filler delay).
    let tools = tools_toml(&slow.base_url(), &fast.base_url());
    let dir = tempfile::tempdir().unwrap();
    let fakes = cascade_fakes(&["Where is my order A-1001?", "Book me for March 3rd at ten, Ada."]).await;
    let chat = ChatFake::start(ChatFakeConfig {
        api_key: Some(KEY.into()),
        replies: vec![
            ScriptedReply::tool_call("get_order_status", serde_json::json!({"order_id": "A-1001"})),
            ScriptedReply::text("It has shipped."),
            ScriptedReply::tool_call(
                "book_appointment",
                serde_json::json!({"date": "2026-03-03", "time": "10:00", "name": "Ada"}),
            ),
            ScriptedReply::text("You are booked."),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let llm = Llm { kind: "llm.openai", base_url: chat.base_url() };
    let toml = cascade_toml(&fakes.asr.base_url(), &llm, &fakes.tts.base_url(), &tools);
    let (events, _) = run(dir.path(), &toml, &input).await;

    let fillers: Vec<_> = events_of(&events, "assistant_transcript")
        .into_iter()
        .filter(|e| e["item"].as_str().unwrap().starts_with("filler_"))
        .collect();
    assert_eq!(fillers.len(), 1, "one filler, for the slow lookup: {fillers:?}");
    assert_eq!((fillers[0]["item"].as_str(), fillers[0]["text"].as_str()), (Some("filler_1"), Some(FILLER)));
    let calls = events_of(&events, "tool_call");
    let results = events_of(&events, "tool_result");
    assert_eq!((calls.len(), results.len()), (2, 2));
    // Spoken about 1 s into the 3 s lookup, and audible before its result came back.
    let delay = t_ms(fillers[0]) - t_ms(calls[0]);
    assert!((1000..1300).contains(&delay), "filler {delay} ms after the call");
    let played = playout_after(&events, "filler_1", 0).expect("the filler played");
    assert!(played < t_ms(results[0]), "filler at {played} ms, result at {} ms", t_ms(results[0]));
    // The speech fake spoke it once; the fast booking got none.
    let spoken: Vec<String> =
        fakes.tts.requests().iter().map(|r| r.body["input"].as_str().unwrap().to_string()).collect();
    assert_eq!(spoken.iter().filter(|s| s.contains("One moment")).count(), 1, "{spoken:?}");
    assert!(!spoken.iter().any(|s| s.contains("Let me book")), "{spoken:?}");
    assert!(texts(&events, "assistant_transcript").contains(&"You are booked.".to_string()));
    chat.stop().await;
}
