//! `llm.openai` against the chat-completions fake: streaming, tools, interruption.

mod support;

use serde_json::json;
use std::time::Duration;
use support::{Harness, RecordingTools};
use voxpipe_core::{
    Control, EventKind, Frame, InterruptReason, ItemId, NoTools, PlayedItem, ResponseStatus, Secret,
};
use voxpipe_fakes::openai_chat::{ChatFake, ChatFakeConfig, Knobs, ScriptedReply, ScriptedToolCall};
use voxpipe_llm::{HttpConfig, OpenAiChat, OpenAiChatConfig};

fn stage(fake: &ChatFake) -> Box<OpenAiChat> {
    let config = OpenAiChatConfig {
        base_url: fake.base_url(),
        instructions: "You are a test.".into(),
        http: HttpConfig { retry_backoff_ms: 20, ..HttpConfig::default() },
        ..OpenAiChatConfig::default()
    };
    Box::new(OpenAiChat::new(config, Some(Secret::new("sk-test"))).unwrap())
}

fn fake_config(replies: Vec<ScriptedReply>) -> ChatFakeConfig {
    ChatFakeConfig { api_key: Some("sk-test".into()), replies, knobs: Knobs::default() }
}

#[tokio::test]
async fn a_user_transcript_streams_text_deltas_then_the_final_transcript_and_usage() {
    let fake = ChatFake::start(fake_config(vec![ScriptedReply::text("Hello there, how can I help?")]))
        .await
        .unwrap();
    let mut h = Harness::start(stage(&fake), std::sync::Arc::new(NoTools));
    h.say("Hi!").await;
    let turn = h.turn().await;
    assert_eq!(turn.kinds()[..2], ["user_transcript", "response_started"]);
    assert_eq!(turn.deltas(), ["Hello", " there", ",", " how", " can", " I", " help", "?"]);
    assert_eq!(turn.transcript().as_deref(), Some("Hello there, how can I help?"));
    let done = turn.done();
    assert_eq!(done.status, ResponseStatus::Completed);
    let usage = done.usage.as_ref().expect("include_usage was requested");
    assert_eq!(usage.output_tokens, 8);
    assert!(usage.input_tokens > 0);

    let req = &fake.requests()[0];
    assert_eq!(req.header("authorization"), Some("[redacted]"));
    assert_eq!(req.body["model"], "gpt-4o-mini");
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        req.body["messages"],
        json!([{"role": "system", "content": "You are a test."}, {"role": "user", "content": "Hi!"}])
    );
    assert!(req.body.get("tools").is_none(), "no tools offered when the runtime has none");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn a_tool_call_streamed_in_fragments_runs_the_tool_and_the_answer_follows() {
    let replies =
        vec![ScriptedReply::tool_call("get_weather", json!({"city": "Paris"})), ScriptedReply::Echo];
    let fake = ChatFake::start(fake_config(replies)).await.unwrap();
    let tools = RecordingTools::new(Duration::from_millis(10));
    let mut h = Harness::start(stage(&fake), tools.clone());
    h.say("Weather in Paris?").await;
    let turn = h.turn().await;

    let calls = turn.tool_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].name.as_str(), calls[0].arguments.as_str()), ("get_weather", r#"{"city":"Paris"}"#));
    assert_eq!(tools.runs().len(), 1);
    let output = RecordingTools::output_for(&calls[0]);
    assert_eq!(turn.tool_results()[0].output, output);
    assert_eq!(turn.transcript(), Some(format!("Tool said: {output}")), "the answer follows the tool result");
    assert_eq!(turn.done().status, ResponseStatus::Completed);

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let offered = &requests[0].body["tools"][0];
    assert_eq!(offered["type"], "function");
    assert_eq!(offered["function"]["name"], "get_weather");
    assert_eq!(offered["function"]["parameters"]["required"], json!(["city"]));
    assert_eq!(requests[0].body["tool_choice"], "auto");
    let messages = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(
        messages[2],
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": calls[0].call_id, "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]})
    );
    assert_eq!(messages[3], json!({"role": "tool", "tool_call_id": calls[0].call_id, "content": output}));
    h.finish().await.unwrap();
}

#[tokio::test]
async fn two_parallel_tool_calls_run_concurrently_and_both_results_go_back() {
    let calls = vec![
        ScriptedToolCall { name: "get_weather".into(), arguments: json!({"city": "Oslo"}) },
        ScriptedToolCall { name: "get_time".into(), arguments: json!({"city": "Lima"}) },
    ];
    let replies = vec![ScriptedReply::ToolCalls { text: None, calls }, ScriptedReply::text("Done.")];
    let fake = ChatFake::start(fake_config(replies)).await.unwrap();
    let tools = RecordingTools::new(Duration::from_millis(300));
    let mut h = Harness::start(stage(&fake), tools.clone());
    h.say("Weather in Oslo and time in Lima?").await;
    let turn = h.turn().await;
    assert_eq!(turn.transcript().as_deref(), Some("Done."));

    let runs = tools.runs();
    assert_eq!(runs.len(), 2);
    let last_start = runs.iter().map(|r| r.started).max().unwrap();
    let first_end = runs.iter().map(|r| r.ended).min().unwrap();
    assert!(last_start < first_end, "both calls ran at the same time");

    let messages = fake.requests()[1].body["messages"].as_array().unwrap().clone();
    let tool_calls = messages[2]["tool_calls"].as_array().unwrap();
    assert_eq!(tool_calls.len(), 2);
    for (i, call) in turn.tool_calls().iter().enumerate() {
        assert_eq!(tool_calls[i]["id"], call.call_id.as_str());
        assert_eq!(messages[3 + i]["tool_call_id"], call.call_id.as_str());
        assert_eq!(messages[3 + i]["content"], RecordingTools::output_for(call));
    }
    h.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_first_text_delta_arrives_before_the_fake_finished_streaming() {
    let mut config =
        fake_config(vec![ScriptedReply::text("One two three four five six seven eight nine ten.")]);
    config.knobs.token_interval_ms = 50;
    let fake = ChatFake::start(config).await.unwrap();
    let mut h = Harness::start(stage(&fake), std::sync::Arc::new(NoTools));
    h.say("Count.").await;
    let turn = h.turn().await;
    let first = turn.first_delta_at().unwrap();
    let finished = fake.requests()[0].stream_finished_at.expect("the stream completed");
    assert!(first < finished, "first delta {first:?} before stream end {finished:?}");
    assert!(finished - first >= Duration::from_millis(400), "about 10 more chunks at 50 ms followed it");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn an_interrupt_mid_stream_cancels_it_and_history_keeps_only_the_words_heard() {
    let full = "This is a rather long answer that the caller will not wait to hear in full.";
    let mut config = fake_config(vec![ScriptedReply::text(full), ScriptedReply::text("Sure.")]);
    config.knobs.token_interval_ms = 80;
    let fake = ChatFake::start(config).await.unwrap();
    let mut h = Harness::start(stage(&fake), std::sync::Arc::new(NoTools));
    h.say("Tell me something.").await;
    let mut heard = String::new();
    loop {
        if let (_, Frame::TextDelta(d)) = h.next().await {
            heard.push_str(&d.text);
            if heard.len() > 10 {
                break;
            }
        }
    }
    // The sink had played the first three words of this reply when the caller spoke.
    let played = PlayedItem { item: "reply_1".into(), played_ms: 900, heard: "This is a".into() };
    h.ctx.control.send(Control::Interrupt {
        reason: InterruptReason::BargeIn,
        onset: None,
        played: Some(played),
    });
    let turn = h.turn().await;
    assert_eq!(turn.done().status, ResponseStatus::Cancelled);
    assert!(turn.transcript().is_none(), "no final transcript for a cancelled reply");

    h.say("Stop, just say sure.").await;
    let next = h.turn().await;
    assert_eq!(next.transcript().as_deref(), Some("Sure."));
    let requests = fake.requests();
    assert!(requests[0].stream_finished_at.is_none(), "the first stream was dropped before its end");
    let messages = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(messages[2]["role"], "assistant");
    assert!(heard.len() > "This is a".len(), "more was generated than heard");
    assert_eq!(messages[2]["content"].as_str().unwrap(), "This is a", "only the heard words are kept");
    assert_eq!(messages[3], json!({"role": "user", "content": "Stop, just say sure."}));
    h.finish().await.unwrap();
}

#[tokio::test]
async fn an_end_call_tool_result_ends_the_call_after_the_reply() {
    let replies = vec![
        ScriptedReply::ToolCalls {
            text: Some("Goodbye!".into()),
            calls: vec![ScriptedToolCall { name: "end_call".into(), arguments: json!({}) }],
        },
        ScriptedReply::text("Bye."),
    ];
    let fake = ChatFake::start(fake_config(replies)).await.unwrap();
    let mut h = Harness::start(stage(&fake), RecordingTools::new(Duration::ZERO));
    let mut control = h.ctx.control.subscribe();
    h.say("That's all, thanks.").await;
    let turn = h.turn().await;
    assert_eq!(turn.transcript().as_deref(), Some("Goodbye!Bye."));
    // The call ends once the goodbye plays, not while it is still on its way to TTS.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(control.try_recv().is_err(), "no EndCall before the goodbye starts playing");
    let reply: ItemId = "reply_1".into();
    assert!(h.ctx.playout.record_played(&reply, h.ctx.playout.epoch(), 480, 24_000));
    let msg = tokio::time::timeout(Duration::from_secs(2), control.recv()).await.unwrap().unwrap();
    assert_eq!(msg, Control::EndCall);
    // The chat shape keeps the text beside the tool calls.
    let messages = fake.requests()[1].body["messages"].clone();
    assert_eq!(messages[2]["content"], "Goodbye!");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn tool_rounds_are_capped_and_the_last_request_forbids_tools() {
    let replies = vec![ScriptedReply::tool_call("get_weather", json!({"city": "Rome"}))];
    let fake = ChatFake::start(fake_config(replies)).await.unwrap();
    let config =
        OpenAiChatConfig { base_url: fake.base_url(), max_tool_rounds: 2, ..OpenAiChatConfig::default() };
    let stage = OpenAiChat::new(config, Some(Secret::new("sk-test"))).unwrap();
    let tools = RecordingTools::new(Duration::ZERO);
    let mut h = Harness::start(Box::new(stage), tools.clone());
    h.say("Loop forever.").await;
    let turn = h.turn().await;
    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "two tool rounds, then one request without tools");
    assert_eq!(requests[2].body["tool_choice"], "none");
    assert_eq!(tools.runs().len(), 2, "calls made past the cap are answered without running");
    assert!(turn.tool_results().last().unwrap().is_error);
    assert_eq!(turn.done().status, ResponseStatus::Incomplete);
    h.finish().await.unwrap();
}

/// The frames of `turn` for item `item`: (text deltas joined, final transcript).
fn item_text(turn: &support::Turn, item: &str) -> (String, Option<String>) {
    let mut deltas = String::new();
    let mut fin = None;
    for (_, f) in &turn.frames {
        match f {
            Frame::TextDelta(d) if &*d.item == item => deltas.push_str(&d.text),
            Frame::AssistantTranscript(t) if t.is_final && t.item.as_deref() == Some(item) => {
                fin = Some(t.text.clone())
            }
            _ => {}
        }
    }
    (deltas, fin)
}

#[tokio::test(start_paused = true)]
async fn a_slow_tool_gets_its_filler_spoken_before_its_result_and_the_filler_is_in_history() {
    let replies =
        vec![ScriptedReply::tool_call("get_weather", json!({"city": "Rome"})), ScriptedReply::text("Sunny.")];
    let fake = ChatFake::start(fake_config(replies)).await.unwrap();
    let tools = RecordingTools::with_filler(
        Duration::from_millis(600),
        "One moment please.",
        Duration::from_millis(150),
    );
    let mut h = Harness::start(stage(&fake), tools);
    h.say("Weather in Rome?").await;
    let turn = h.turn().await;
    assert_eq!(
        item_text(&turn, "filler_1"),
        ("One moment please.".into(), Some("One moment please.".into()))
    );
    assert_eq!(item_text(&turn, "reply_1").1.as_deref(), Some("Sunny."));
    let pos = |pred: &dyn Fn(&Frame) -> bool| turn.frames.iter().position(|(_, f)| pred(f)).unwrap();
    let filler_at = pos(&|f| matches!(f, Frame::TextDelta(d) if &*d.item == "filler_1"));
    let call_at = pos(&|f| matches!(f, Frame::ToolCall(_)));
    let result_at = pos(&|f| matches!(f, Frame::ToolResult(_)));
    assert!(call_at < filler_at && filler_at < result_at, "{:?}", turn.kinds());
    // Spoken 150 ms into the 600 ms call.
    let started = turn.frames[call_at].0;
    let spoken = turn.frames[filler_at].0 - started;
    assert!(spoken >= Duration::from_millis(140) && spoken < Duration::from_millis(500), "{spoken:?}");
    // The model is told it said it, beside its tool call.
    let messages = fake.requests()[1].body["messages"].clone();
    assert_eq!(messages[2]["content"], "One moment please.");
    assert_eq!(messages[2]["tool_calls"][0]["function"]["name"], "get_weather");
    let events = h.drain_events();
    let first_token: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::Metric { name, turn, value_ms } if name == "llm_first_token_ms" => {
                Some((*turn, *value_ms))
            }
            _ => None,
        })
        .collect();
    assert_eq!(first_token.len(), 1, "one time to first token per turn: {first_token:?}");
    assert_eq!(first_token[0].0, 1);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn a_fast_tool_gets_no_filler() {
    let replies =
        vec![ScriptedReply::tool_call("get_weather", json!({"city": "Rome"})), ScriptedReply::text("Sunny.")];
    let fake = ChatFake::start(fake_config(replies)).await.unwrap();
    let tools = RecordingTools::with_filler(
        Duration::from_millis(20),
        "One moment please.",
        Duration::from_millis(300),
    );
    let mut h = Harness::start(stage(&fake), tools);
    h.say("Weather in Rome?").await;
    let turn = h.turn().await;
    assert_eq!(item_text(&turn, "filler_1"), (String::new(), None), "{:?}", turn.kinds());
    assert_eq!(turn.transcript().as_deref(), Some("Sunny."));
    let messages = fake.requests()[1].body["messages"].clone();
    assert!(messages[2]["content"].is_null(), "nothing was said beside the call: {}", messages[2]);
    h.finish().await.unwrap();
}

#[tokio::test]
async fn a_transfer_logs_the_handoff_with_the_transcript_so_far() {
    let replies = vec![
        ScriptedReply::text("I can help with orders."),
        ScriptedReply::ToolCalls {
            text: Some("Let me transfer you.".into()),
            calls: vec![ScriptedToolCall {
                name: "transfer".into(),
                arguments: json!({"reason": "wants a human"}),
            }],
        },
        ScriptedReply::text("Transferring now."),
    ];
    let fake = ChatFake::start(fake_config(replies)).await.unwrap();
    let mut h = Harness::start(stage(&fake), RecordingTools::new(Duration::ZERO));
    h.say("Hello.").await;
    h.turn().await;
    h.say("I want a human.").await;
    h.turn().await;
    let handoffs: Vec<_> = h
        .drain_events()
        .into_iter()
        .filter_map(|e| match e {
            EventKind::Handoff { reason, target, transcript } => Some((reason, target, transcript)),
            _ => None,
        })
        .collect();
    assert_eq!(handoffs.len(), 1);
    let (reason, target, transcript) = &handoffs[0];
    assert_eq!(reason, "wants a human");
    assert_eq!(target.as_deref(), Some("support"));
    assert_eq!(
        transcript,
        &[
            "user: Hello.",
            "assistant: I can help with orders.",
            "user: I want a human.",
            "assistant: Let me transfer you.",
        ]
    );
    h.finish().await.unwrap();
}
