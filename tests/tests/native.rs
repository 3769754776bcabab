//! The native pipeline end to end against the in-process Realtime fake, on a virtual clock.

use std::path::{Path, PathBuf};
use voxpipe_cli::{RunArgs, run_pipeline};
use voxpipe_core::RunOptions;
use voxpipe_e2e::*;
use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig, ScriptedResponse};

fn args(dir: &Path, input: PathBuf, fake: &RealtimeFake, extra: &[&str]) -> RunArgs {
    let mut a = run_args(dir, repo_path("pipelines/native-fake.toml"), input);
    a.sets = vec![format!("stages[0].url={}", fake.url())];
    a.sets.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn env() -> Vec<(String, String)> {
    vec![("OPENAI_API_KEY".into(), "sk-test-key".into())]
}

fn client_events_of(fake: &RealtimeFake, kind: &str) -> Vec<serde_json::Value> {
    fake.client_events().into_iter().filter(|e| e.json["type"] == kind).map(|e| e.json).collect()
}

#[tokio::test(start_paused = true)]
async fn two_spoken_turns_get_two_replies_at_the_right_places() {
    let dir = tempfile::tempdir().unwrap();
    let config = RealtimeFakeConfig { responses: two_turn_script(), ..Default::default() };
    let fake = RealtimeFake::start(config).await.unwrap();
    let a = args(dir.path(), repo_path("samples/two-turns.wav"), &fake, &[]);
    let (_, summary) = run_pipeline(&a, env(), RunOptions::default()).await.unwrap();

    let events = read_events(&dir.path().join("events.jsonl"));
    let users: Vec<_> = events_of(&events, "user_transcript")
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(users, ["I would like to check my order.", "Book an appointment tomorrow."]);
    let assistants: Vec<_> = events_of(&events, "assistant_transcript")
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(assistants, ["Sure, what is the order number?", "Done, see you tomorrow morning."]);
    let done = events_of(&events, "response_done");
    assert_eq!(done.len(), 2);
    for d in &done {
        assert_eq!(d["status"], "completed");
        assert!(d["usage"]["output_audio_tokens"].as_u64().unwrap() > 0, "usage recorded: {d}");
    }
    assert_eq!(events.last().unwrap()["type"], "call_ended");
    assert_eq!(summary.end_reason.as_deref(), Some("end_of_input"));

    // The reply WAV holds exactly two assistant replies, each starting after the caller's turn
    // ended (speech_stopped) and before the next turn began.
    let stops: Vec<u64> =
        events_of(&events, "speech_stopped").iter().map(|e| e["at_ms"].as_u64().unwrap()).collect();
    let starts: Vec<u64> =
        events_of(&events, "speech_started").iter().map(|e| e["at_ms"].as_u64().unwrap()).collect();
    assert_eq!((starts.len(), stops.len()), (2, 2));
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    assert_eq!(rate, 24_000);
    let regions = active_regions(&samples, rate, 500, 150);
    assert_eq!(regions.len(), 2, "two replies in the output: {regions:?}");
    for (i, (start, end)) in regions.iter().enumerate() {
        assert!(*start > stops[i], "reply {i} starts at {start} ms, after the turn ended at {} ms", stops[i]);
        assert!(*start < stops[i] + 1500, "reply {i} starts promptly: {start} ms vs {} ms", stops[i]);
        if i == 0 {
            assert!(*end < starts[1], "the first reply ends before the second turn");
        }
    }
    let v2v: Vec<u64> = summary.metrics.iter().filter(|m| m.1 == "voice_to_voice_ms").map(|m| m.2).collect();
    assert_eq!(v2v.len(), 2);
    // The fake answers 500 ms of silence + 200 ms to first audio after speech ends; appends of
    // 100 ms add up to 100 ms more. The harness must measure exactly that.
    for ms in v2v {
        assert!((700..=900).contains(&ms), "voice-to-voice {ms} ms");
    }

    // What went over the wire.
    let update = &client_events_of(&fake, "session.update")[0];
    assert_eq!(update["session"]["type"], "realtime");
    assert_eq!(update["session"]["audio"]["input"]["format"]["rate"], 24000);
    assert_eq!(update["session"]["tools"][0]["name"], "get_order_status");
    assert!(client_events_of(&fake, "input_audio_buffer.append").len() > 100);
    fake.shutdown().await;
}

/// Turn 1, then a reply of 4 s; the caller speaks again 1.2 s into it.
fn barge_in_call(path: &Path) {
    let rate = 16_000;
    let mut s = silence(rate, 500);
    s.extend(tone(rate, 300.0, 1500, 0.3)); // turn 1: 0.5..2.0 s
    s.extend(silence(rate, 2000)); // reply starts ~2.7 s
    s.extend(tone(rate, 300.0, 1000, 0.3)); // barge-in: 4.0..5.0 s
    s.extend(silence(rate, 500));
    write_wav(path, rate, &s);
}

#[tokio::test(start_paused = true)]
async fn barge_in_stops_the_sink_and_truncates_to_what_was_played() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("barge.wav");
    barge_in_call(&input);
    let config = RealtimeFakeConfig {
        responses: vec![
            ScriptedResponse {
                audio_ms: Some(4000),
                ..ScriptedResponse::say("Let me tell you a long story about your order and its journey.")
            },
            ScriptedResponse::say("Yes?"),
        ],
        ..Default::default()
    };
    let fake = RealtimeFake::start(config).await.unwrap();
    let a = args(dir.path(), input, &fake, &[]);
    run_pipeline(&a, env(), RunOptions::default()).await.unwrap();

    let events = read_events(&dir.path().join("events.jsonl"));
    let interrupt = events_of(&events, "interrupt")[0].clone();
    let truncates = client_events_of(&fake, "conversation.item.truncate");
    assert_eq!(truncates.len(), 1, "exactly one truncate");
    let truncate = &truncates[0];
    assert_eq!(truncate["content_index"], 0);
    assert_eq!(truncate["item_id"], interrupt["item"]);

    // What the sink actually played of the first reply, measured in the output WAV.
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    let regions = active_regions(&samples, rate, 500, 150);
    let (start, end) = regions[0];
    let played_in_wav = end - start;
    let audio_end_ms = truncate["audio_end_ms"].as_u64().unwrap();
    assert!(
        audio_end_ms.abs_diff(played_in_wav) <= 20,
        "truncate at {audio_end_ms} ms, played {played_in_wav} ms"
    );
    assert!(audio_end_ms < 4000, "the reply was cut short");
    // The sink went silent within one 20 ms frame of the interrupt decision.
    let decided = interrupt["t_ms"].as_u64().unwrap();
    assert!(end.abs_diff(decided) <= 20, "sink stopped at {end} ms, interrupt decided at {decided} ms");
    let finished = events_of(&events, "playout_finished");
    assert_eq!(finished[0]["interrupted"], true);
    assert!(events_of(&events, "metric").iter().any(|m| m["name"] == "interruption_latency_ms"));
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn function_call_round_trip_sends_output_then_response_create_after_done() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("one-turn.wav");
    let mut s = silence(16_000, 500);
    s.extend(tone(16_000, 300.0, 1200, 0.3));
    s.extend(silence(16_000, 6000));
    write_wav(&input, 16_000, &s);
    let config = RealtimeFakeConfig {
        responses: vec![
            ScriptedResponse::call("get_order_status", r#"{"order_id":"A-1234"}"#)
                .with_call_id("call_order_1"),
            ScriptedResponse::say("Your order has shipped and arrives tomorrow."),
        ],
        ..Default::default()
    };
    let fake = RealtimeFake::start(config).await.unwrap();
    let tool = repo_path("scripts/tools/order-status.sh");
    let a = args(
        dir.path(),
        input,
        &fake,
        &[&format!("tools.get_order_status.handler.program={}", tool.display())],
    );
    run_pipeline(&a, env(), RunOptions::default()).await.unwrap();

    let client = fake.client_events();
    let pos = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        client.iter().position(|e| pred(&e.json)).expect("event sent")
    };
    let output_at =
        pos(&|e| e["type"] == "conversation.item.create" && e["item"]["type"] == "function_call_output");
    let output = &client[output_at].json["item"];
    assert_eq!(output["call_id"], "call_order_1");
    let result: serde_json::Value = serde_json::from_str(output["output"].as_str().unwrap()).unwrap();
    assert_eq!(result["order_id"], "A-1234");
    assert_eq!(result["status"], "shipped");
    let create_at = pos(&|e| e["type"] == "response.create");
    assert!(create_at > output_at, "response.create follows the function output");

    let events = read_events(&dir.path().join("events.jsonl"));
    assert!(
        events_of(&events, "provider_error").is_empty(),
        "the fake accepted every event (response.create only after response.done)"
    );
    let call = events_of(&events, "tool_call")[0];
    assert_eq!(call["arguments"], r#"{"order_id":"A-1234"}"#);
    let result = events_of(&events, "tool_result")[0];
    assert_eq!(result["is_error"], false);
    let spoken: Vec<_> = events_of(&events, "assistant_transcript")
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(spoken, ["Your order has shipped and arrives tomorrow."]);
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_beta_dialect_holds_the_same_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![ScriptedResponse::say("Hello from the beta API.")],
        ..Default::default()
    })
    .await
    .unwrap();
    let a = args(
        dir.path(),
        repo_path("samples/two-turns.wav"),
        &fake,
        &["stages[0].protocol=beta", "stages[0].model=gpt-4o-realtime-preview-2024-12-17"],
    );
    run_pipeline(&a, env(), RunOptions::default()).await.unwrap();
    let update = &client_events_of(&fake, "session.update")[0];
    assert_eq!(update["session"]["input_audio_format"], "pcm16");
    assert!(update["session"].get("type").is_none());
    let events = read_events(&dir.path().join("events.jsonl"));
    assert_eq!(events_of(&events, "assistant_transcript").len(), 2);
    assert_eq!(events_of(&events, "response_done").len(), 2);
    assert!(events_of(&events, "provider_error").is_empty());
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    assert_eq!(active_regions(&samples, rate, 500, 150).len(), 2);
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn telephony_pcmu_round_trips_through_g711() {
    let dir = tempfile::tempdir().unwrap();
    let fake = RealtimeFake::start(RealtimeFakeConfig::default()).await.unwrap();
    let a = args(dir.path(), repo_path("samples/two-turns.wav"), &fake, &["stages[0].audio_format=pcmu"]);
    run_pipeline(&a, env(), RunOptions::default()).await.unwrap();
    let update = &client_events_of(&fake, "session.update")[0];
    assert_eq!(update["session"]["audio"]["output"]["format"]["type"], "audio/pcmu");
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    assert_eq!(
        active_regions(&samples, rate, 500, 150).len(),
        2,
        "8 kHz G.711 replies resampled into the 24 kHz output"
    );
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_socket_closed_mid_response_ends_the_run_with_a_clear_error_and_keeps_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let fake =
        RealtimeFake::start(RealtimeFakeConfig { close_after_audio_deltas: Some(3), ..Default::default() })
            .await
            .unwrap();
    let a = args(dir.path(), repo_path("samples/two-turns.wav"), &fake, &[]);
    let err = run_pipeline(&a, env(), RunOptions::default()).await.unwrap_err().to_string();
    assert!(err.contains("realtime.openai") && err.contains("closed"), "{err}");
    let events = read_events(&dir.path().join("events.jsonl"));
    assert_eq!(events[0]["type"], "call_started");
    assert!(!events_of(&events, "response_started").is_empty(), "events up to the cut are on disk");
    assert!(events_of(&events, "error").iter().any(|e| e["stage"] == "realtime.openai"));
    assert_eq!(events.last().unwrap()["reason"], "error");
    // The reply WAV is a valid file holding what was played.
    let (_, rate) = read_wav(&dir.path().join("reply.wav"));
    assert_eq!(rate, 24_000);
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_socket_dropped_mid_reply_reconnects_restores_the_conversation_and_the_call_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: two_turn_script(),
        // The first session drops (no close frame) three audio deltas into the first reply.
        close_after_audio_deltas: Some(3),
        fault_connections: vec![1],
        ..Default::default()
    })
    .await
    .unwrap();
    let a = args(dir.path(), repo_path("samples/two-turns.wav"), &fake, &[]);
    let (_, summary) = run_pipeline(&a, env(), RunOptions::default()).await.unwrap();
    assert_eq!(summary.end_reason.as_deref(), Some("end_of_input"));

    let events = read_events(&dir.path().join("events.jsonl"));
    let reconnected = events_of(&events, "reconnected");
    assert_eq!(reconnected.len(), 1, "{events:?}");
    assert_eq!(reconnected[0]["attempts"], 1);
    assert!(reconnected[0]["reason"].as_str().unwrap().contains("abruptly"), "{}", reconnected[0]);
    assert!(events_of(&events, "error").is_empty(), "{events:?}");
    // The cut reply is closed as failed; the new session answered both turns.
    let done = events_of(&events, "response_done");
    assert_eq!(
        (done[0]["status"].as_str(), done[0]["reason"].as_str()),
        (Some("failed"), Some("disconnected"))
    );
    let assistants: Vec<_> = events_of(&events, "assistant_transcript")
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(assistants, ["Sure, what is the order number?", "Done, see you tomorrow morning."]);

    // The second session was set up like the first and given the conversation so far, then
    // asked for the reply that was cut.
    assert_eq!(fake.connections(), 2);
    let second: Vec<_> =
        fake.client_events().into_iter().filter(|e| e.connection == 2).map(|e| e.json).collect();
    let first_update = client_events_of(&fake, "session.update").remove(0);
    assert_eq!(second[0], first_update, "the same session.update");
    let created: Vec<_> = second.iter().filter(|e| e["type"] == "conversation.item.create").collect();
    let user = &created[0]["item"];
    assert_eq!(
        (user["role"].as_str(), user["content"][0]["type"].as_str()),
        (Some("user"), Some("input_text"))
    );
    assert_eq!(user["content"][0]["text"], "I would like to check my order.");
    // What had arrived of the cut reply is in the history as assistant text, never more.
    if let Some(partial) = created.iter().find(|e| e["item"]["role"] == "assistant") {
        let text = partial["item"]["content"][0]["text"].as_str().unwrap();
        assert_eq!(partial["item"]["content"][0]["type"], "output_text");
        assert!("Sure, what is the order number?".starts_with(text), "{text}");
    }
    let last_create = second.iter().rposition(|e| e["type"] == "conversation.item.create").unwrap();
    assert_eq!(second[last_create + 1]["type"], "response.create", "{second:?}");
    // Both replies reached the output.
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    assert!(active_regions(&samples, rate, 500, 150).len() >= 2);
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_malformed_response_done_ends_its_response_and_is_reported() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    // A server that speaks just enough of the protocol, then sends a `response.done` whose
    // `response` lacks its id: the stage must not wait for the drain timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/realtime", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let send = |v: serde_json::Value| Message::Text(v.to_string().into());
        ws.send(send(serde_json::json!({"type": "session.created", "session": {}}))).await.unwrap();
        let mut answered = false;
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(t) = msg else { continue };
            let ev: serde_json::Value = serde_json::from_str(&t).unwrap();
            match ev["type"].as_str() {
                Some("session.update") => {
                    ws.send(send(serde_json::json!({"type": "session.updated", "session": {}})))
                        .await
                        .unwrap();
                }
                Some("input_audio_buffer.append") if !answered => {
                    answered = true;
                    for ev in [
                        serde_json::json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u1"}),
                        serde_json::json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 600, "item_id": "u1"}),
                        serde_json::json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}),
                        serde_json::json!({"type": "response.done", "response": {"status": 7}}),
                    ] {
                        ws.send(send(ev)).await.unwrap();
                    }
                }
                _ => {}
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut a =
        run_args(dir.path(), repo_path("pipelines/native-fake.toml"), repo_path("samples/two-turns.wav"));
    a.sets = vec![format!("stages[0].url={url}"), "stages[0].drain_timeout_ms=600000".into()];
    let started = tokio::time::Instant::now();
    run_pipeline(&a, env(), RunOptions::default()).await.unwrap();
    // Virtual time: the run ended with its input, not at the (ten-minute) drain timeout.
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
    let events = read_events(&dir.path().join("events.jsonl"));
    let errors = events_of(&events, "provider_error");
    assert!(
        errors
            .iter()
            .any(|e| e["code"] == "malformed_event"
                && e["message"].as_str().unwrap().contains("response.done")),
        "{errors:?}"
    );
    let done = events_of(&events, "response_done");
    assert_eq!(
        (done[0]["response_id"].as_str(), done[0]["status"].as_str()),
        (Some("resp_1"), Some("failed"))
    );
    server.abort();
}

/// One turn whose answer needs `get_order_status` from a tool server answering after
/// `latency_ms`, with a filler line after 1 s.
async fn run_with_tool_latency(dir: &Path, latency_ms: u64) -> (RealtimeFake, Vec<serde_json::Value>) {
    let input = dir.join("one-turn.wav");
    let mut s = silence(16_000, 500);
    s.extend(tone(16_000, 300.0, 1200, 0.3));
    s.extend(silence(16_000, 7000));
    write_wav(&input, 16_000, &s);
    let tools = voxpipe_fakes::tool_server::ToolServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        voxpipe_fakes::tool_server::ToolServerConfig { latency_ms, ..Default::default() },
    )
    .await
    .unwrap();
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![
            ScriptedResponse::call("get_order_status", r#"{"order_id":"A-1001"}"#).with_call_id("call_1"),
            ScriptedResponse::say("Your order has shipped."),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let pipeline = dir.join("filler.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
name = "native-filler"
[input]
kind = "wav"
path = "unused.wav"
[output]
kind = "wav"
path = "unused.wav"
[[stages]]
kind = "realtime.openai"
model = "gpt-realtime-mini"
url = "{url}"
api_key_env = "OPENAI_API_KEY"
[tools.get_order_status]
description = "Look up an order."
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string" }} }}, required = ["order_id"] }}
handler = {{ kind = "http", url = "{tools}/orders/status" }}
timeout_ms = 8000
filler = "One moment while I look that up."
filler_after_ms = 1000
"#,
            url = fake.url(),
            tools = tools.base_url()
        ),
    )
    .unwrap();
    run_pipeline(&run_args(dir, pipeline, input), env(), RunOptions::default()).await.unwrap();
    (fake, read_events(&dir.join("events.jsonl")))
}

#[tokio::test(start_paused = true)]
async fn a_slow_tool_gets_an_out_of_band_filler_and_the_answer_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, events) = run_with_tool_latency(dir.path(), 3000).await;
    assert!(events_of(&events, "provider_error").is_empty(), "the fake accepted every event: {events:?}");
    let spoken: Vec<&str> =
        events_of(&events, "assistant_transcript").iter().map(|e| e["text"].as_str().unwrap()).collect();
    assert_eq!(spoken, ["One moment while I look that up.", "Your order has shipped."]);

    let client = fake.client_events();
    let creates: Vec<_> = client.iter().filter(|e| e.json["type"] == "response.create").collect();
    assert_eq!(creates.len(), 2, "the filler and the answer");
    let filler = &creates[0].json["response"];
    assert_eq!(filler["conversation"], "none", "the filler stays out of the model's history");
    assert_eq!(filler["output_modalities"], serde_json::json!(["audio"]));
    let call_at = t_ms(events_of(&events, "tool_call")[0]);
    let filler_at = creates[0].at.as_millis() as u64;
    assert!(filler_at.abs_diff(call_at + 1000) <= 40, "filler asked at {filler_at} ms, call at {call_at} ms");
    let output_at = client
        .iter()
        .find(|e| e.json["item"]["type"] == "function_call_output")
        .map(|e| e.at.as_millis() as u64)
        .unwrap();
    assert!(output_at >= call_at + 3000, "the result goes to the model when the tool answers");

    // Both were heard, one after the other: the filler item, then the answer's.
    let started = events_of(&events, "playout_started");
    let finished = events_of(&events, "playout_finished");
    assert_eq!((started.len(), finished.len()), (2, 2), "{started:?}");
    assert_ne!(started[0]["item"], started[1]["item"]);
    assert!(t_ms(started[0]) > filler_at && t_ms(started[0]) < filler_at + 400, "the filler plays at once");
    assert_eq!(finished[0]["interrupted"], false, "the whole filler is heard");
    assert!(t_ms(started[1]) >= t_ms(finished[0]), "the answer follows the filler");
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    let heard: u64 = active_regions(&samples, rate, 500, 150).iter().map(|(a, b)| b - a).sum();
    let played: u64 = finished.iter().map(|f| f["played_ms"].as_u64().unwrap()).sum();
    assert!(heard.abs_diff(played) <= 40, "the WAV holds both: {heard} ms vs {played} ms");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_fast_tool_gets_no_filler() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, events) = run_with_tool_latency(dir.path(), 200).await;
    let spoken: Vec<&str> =
        events_of(&events, "assistant_transcript").iter().map(|e| e["text"].as_str().unwrap()).collect();
    assert_eq!(spoken, ["Your order has shipped."]);
    assert!(fake.client_events().iter().all(|e| e.json["response"]["conversation"] != "none"));
    fake.shutdown().await;
}

fn t_ms(e: &serde_json::Value) -> u64 {
    e["t_ms"].as_u64().unwrap()
}
