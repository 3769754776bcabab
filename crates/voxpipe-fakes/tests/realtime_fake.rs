//! Drives the Realtime fake with a raw WebSocket client and checks it behaves like the real
//! service (PROTOCOLS.md section 1).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig, ScriptedFunctionCall, ScriptedResponse};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const KEY: &str = "sk-test-key";

fn config(responses: Vec<ScriptedResponse>) -> RealtimeFakeConfig {
    RealtimeFakeConfig {
        api_key: Some(KEY.into()),
        responses,
        first_audio_delay_ms: 20,
        delta_ms: 100,
        pace: 25.0,
        ..RealtimeFakeConfig::default()
    }
}

async fn connect_with(fake: &RealtimeFake, key: Option<&str>, beta: bool) -> Result<Ws, WsError> {
    let mut req = format!("{}?model=gpt-realtime", fake.url()).into_client_request()?;
    if let Some(k) = key {
        req.headers_mut().insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    if beta {
        req.headers_mut().insert("openai-beta", "realtime=v1".parse().unwrap());
    }
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

async fn connect(fake: &RealtimeFake, beta: bool) -> Ws {
    let mut ws = connect_with(fake, Some(KEY), beta).await.expect("connect");
    let created = recv(&mut ws).await;
    assert_eq!(created["type"], "session.created");
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("no event within 5 s");
        match msg.expect("stream ended").expect("read") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("server sent JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads events up to and including the first of type `until`.
async fn recv_until(ws: &mut Ws, until: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let v = recv(ws).await;
        let done = v["type"] == until;
        out.push(v);
        if done {
            return out;
        }
    }
}

/// Asserts nothing arrives for `ms`.
async fn expect_silence(ws: &mut Ws, ms: u64) {
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(ms), ws.next()).await {
        panic!("expected no event, got {m:?}");
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// `types` with consecutive runs of delta events collapsed to one entry.
fn shape(events: &[Value]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for t in types(events) {
        let t = if t.ends_with("audio.delta") || t.ends_with("transcript.delta") { "<deltas>" } else { t };
        if out.last() != Some(&t) || t != "<deltas>" {
            out.push(t);
        }
    }
    out
}

fn pcm_b64(samples: &[i16]) -> String {
    B64.encode(samples.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>())
}

/// 20 ms appends of `ms` of silence (amplitude 0) or a 300 Hz tone at -10 dBFS RMS.
async fn append_signal(ws: &mut Ws, ms: u64, tone: bool, offset: &mut usize) {
    let amp = 10f64.powf(-10.0 / 20.0) * 2f64.sqrt() * 32767.0;
    for _ in 0..ms / 20 {
        let chunk: Vec<i16> = (0..480)
            .map(|i| {
                let n = (*offset + i) as f64;
                if tone {
                    (amp * (2.0 * std::f64::consts::PI * 300.0 * n / 24_000.0).sin()) as i16
                } else {
                    0
                }
            })
            .collect();
        *offset += 480;
        send(ws, json!({"type": "input_audio_buffer.append", "audio": pcm_b64(&chunk)})).await;
    }
}

async fn manual_turns(ws: &mut Ws) {
    let update = json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": null}}}});
    send(ws, update).await;
    let updated = recv(ws).await;
    assert_eq!(updated["type"], "session.updated");
    assert!(updated["session"]["audio"]["input"]["turn_detection"].is_null());
}

async fn user_text(ws: &mut Ws, text: &str) {
    let item = json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]});
    send(ws, json!({"type": "conversation.item.create", "item": item})).await;
    assert_eq!(
        types(&recv_until(ws, "conversation.item.done").await),
        ["conversation.item.added", "conversation.item.done"]
    );
}

#[tokio::test]
async fn upgrade_without_the_right_key_is_refused_with_401_and_an_openai_error_body() {
    let fake = RealtimeFake::start(config(vec![])).await.unwrap();
    for key in [None, Some("sk-wrong")] {
        let Err(WsError::Http(resp)) = connect_with(&fake, key, false).await else {
            panic!("upgrade should fail")
        };
        assert_eq!(resp.status(), 401);
        let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert!(!body["error"]["message"].as_str().unwrap().contains("sk-wrong"));
    }
    assert_eq!(fake.connections(), 0);
    let rejecting =
        RealtimeFake::start(RealtimeFakeConfig { reject_with_status: Some(503), ..config(vec![]) })
            .await
            .unwrap();
    let Err(WsError::Http(resp)) = connect_with(&rejecting, Some(KEY), false).await else {
        panic!("should fail")
    };
    assert_eq!(resp.status(), 503);
    fake.shutdown().await;
    rejecting.shutdown().await;
}

#[tokio::test]
async fn ga_session_has_the_ga_shape_and_updates_are_validated_strictly() {
    let fake = RealtimeFake::start(config(vec![])).await.unwrap();
    let mut ws = connect_with(&fake, Some(KEY), false).await.unwrap();
    let created = recv(&mut ws).await;
    let s = &created["session"];
    assert_eq!(s["type"], "realtime");
    assert_eq!(s["output_modalities"], json!(["audio"]));
    assert_eq!(s["audio"]["input"]["format"], json!({"type": "audio/pcm", "rate": 24000}));
    assert_eq!(s["audio"]["input"]["turn_detection"]["type"], "server_vad");
    assert_eq!(s["audio"]["input"]["turn_detection"]["silence_duration_ms"], 200);
    assert!(s["audio"]["output"]["voice"].is_string());
    assert!(s.get("modalities").is_none() && s.get("voice").is_none());

    let cases = [
        (json!({"type": "realtime", "bogus": 1}), "unknown_parameter", "session.bogus"),
        (json!({"instructions": "x"}), "missing_required_parameter", "session.type"),
        (json!({"type": "realtime", "voice": "alloy"}), "unknown_parameter", "session.voice"),
        (
            json!({"type": "realtime", "output_modalities": ["audio", "text"]}),
            "invalid_value",
            "session.output_modalities",
        ),
        (
            json!({"type": "realtime", "audio": {"output": {"voice": "nobody"}}}),
            "invalid_value",
            "session.audio.output.voice",
        ),
        (
            json!({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}),
            "integer_out_of_range",
            "session.audio.input.format.rate",
        ),
    ];
    for (i, (session, code, param)) in cases.into_iter().enumerate() {
        let event_id = format!("evt_{i}");
        send(&mut ws, json!({"type": "session.update", "event_id": event_id, "session": session})).await;
        let err = recv(&mut ws).await;
        assert_eq!(err["type"], "error", "case {i}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert_eq!(err["error"]["code"], code, "case {i}: {err}");
        assert_eq!(err["error"]["param"], param, "case {i}");
        assert_eq!(err["error"]["event_id"], event_id.as_str());
    }
    let update = json!({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 700}}}});
    send(&mut ws, json!({"type": "session.update", "session": update})).await;
    let updated = recv(&mut ws).await;
    assert_eq!(updated["type"], "session.updated");
    let input = &updated["session"]["audio"]["input"];
    assert_eq!(input["format"], json!({"type": "audio/pcmu"}));
    assert_eq!(input["turn_detection"]["silence_duration_ms"], 700);
    assert_eq!(input["turn_detection"]["prefix_padding_ms"], 300, "omitted fields keep defaults");
    assert_eq!(updated["session"]["output_modalities"], json!(["audio"]), "partial merge keeps the rest");
    fake.shutdown().await;
}

#[tokio::test]
async fn beta_session_is_flat_and_ga_fields_are_unknown_in_beta() {
    let fake = RealtimeFake::start(config(vec![])).await.unwrap();
    let mut ws = connect_with(&fake, Some(KEY), true).await.unwrap();
    let created = recv(&mut ws).await;
    let s = &created["session"];
    assert_eq!(s["input_audio_format"], "pcm16");
    assert!(s["modalities"].as_array().unwrap().contains(&json!("audio")));
    assert!(s["voice"].is_string());
    assert!(s.get("audio").is_none() && s.get("type").is_none());
    send(
        &mut ws,
        json!({"type": "session.update", "event_id": "e1", "session": {"output_modalities": ["text"]}}),
    )
    .await;
    let err = recv(&mut ws).await;
    assert_eq!(err["error"]["code"], "unknown_parameter");
    assert_eq!(err["error"]["param"], "session.output_modalities");
    send(&mut ws, json!({"type": "session.update", "session": {"input_audio_format": "audio/pcmu"}})).await;
    assert_eq!(recv(&mut ws).await["error"]["code"], "invalid_value");
    send(
        &mut ws,
        json!({"type": "session.update", "session": {"output_audio_format": "g711_alaw", "voice": "sage"}}),
    )
    .await;
    let updated = recv(&mut ws).await;
    assert_eq!(updated["session"]["output_audio_format"], "g711_alaw");
    assert_eq!(updated["session"]["voice"], "sage");
    fake.shutdown().await;
}

#[tokio::test]
async fn malformed_events_get_errors_echoing_event_id_and_the_socket_stays_open() {
    let fake = RealtimeFake::start(config(vec![])).await.unwrap();
    let mut ws = connect(&fake, false).await;
    ws.send(Message::text(r#"{"event_id": "evt_bad", "type": "session.update", "session": {"#))
        .await
        .unwrap();
    let err = recv(&mut ws).await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["event_id"], "evt_bad");
    send(&mut ws, json!({"event_id": "evt_2"})).await;
    let err = recv(&mut ws).await;
    assert_eq!(err["error"]["message"], "The 'type' field is missing.");
    assert_eq!(err["error"]["event_id"], "evt_2");
    send(&mut ws, json!({"type": "response.explode", "event_id": "evt_3"})).await;
    assert_eq!(recv(&mut ws).await["error"]["param"], "type");
    send(&mut ws, json!({"type": "conversation.item.delete", "event_id": "evt_4"})).await;
    let err = recv(&mut ws).await;
    assert_eq!(err["error"]["code"], "missing_required_parameter");
    assert_eq!(err["error"]["param"], "item_id");
    send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
    assert_eq!(recv(&mut ws).await["type"], "input_audio_buffer.cleared", "socket still serves events");
    assert_eq!(fake.client_events().len(), 5);
    fake.shutdown().await;
}

#[tokio::test]
async fn server_vad_turn_has_padded_timestamps_and_is_followed_by_a_full_response_in_order() {
    let mut script = ScriptedResponse::say("Hello there, friend.");
    script.user_transcript = Some("What is the weather?".into());
    let fake = RealtimeFake::start(config(vec![script])).await.unwrap();
    let mut ws = connect(&fake, false).await;
    let update = json!({"type": "realtime", "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}}});
    send(&mut ws, json!({"type": "session.update", "session": update})).await;
    assert_eq!(recv(&mut ws).await["type"], "session.updated");
    let mut offset = 0;
    append_signal(&mut ws, 1000, false, &mut offset).await;
    append_signal(&mut ws, 1000, true, &mut offset).await;
    append_signal(&mut ws, 1000, false, &mut offset).await;

    let events = recv_until(&mut ws, "response.done").await;
    let started = &events[0];
    assert_eq!(started["type"], "input_audio_buffer.speech_started");
    let start = started["audio_start_ms"].as_i64().unwrap();
    assert!((start - 700).abs() <= 20, "audio_start_ms {start} should be 1000 - 300 ms padding");
    let stopped = &events[1];
    assert_eq!(stopped["type"], "input_audio_buffer.speech_stopped");
    let end = stopped["audio_end_ms"].as_i64().unwrap();
    assert!((end - 2200).abs() <= 20, "audio_end_ms {end} should be 2000 + 200 ms silence");
    assert_eq!(started["item_id"], stopped["item_id"]);
    assert_eq!(events[2]["item_id"], started["item_id"]);
    assert_eq!(
        shape(&events),
        [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.completed",
            "response.created",
            "rate_limits.updated",
            "response.output_item.added",
            "conversation.item.added",
            "response.content_part.added",
            "<deltas>",
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    let transcript =
        events.iter().find(|e| e["type"] == "conversation.item.input_audio_transcription.completed").unwrap();
    assert_eq!(transcript["transcript"], "What is the weather?");
    let audio: usize = events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .map(|e| B64.decode(e["delta"].as_str().unwrap()).unwrap().len())
        .sum();
    assert_eq!(audio, 20 * 65 * 48, "65 ms per character of PCM16 at 24 kHz");
    let words: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_audio_transcript.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(words, "Hello there, friend.");
    let first_audio = types(&events).iter().position(|t| *t == "response.output_audio.delta").unwrap();
    let first_text =
        types(&events).iter().position(|t| *t == "response.output_audio_transcript.delta").unwrap();
    let last_audio = types(&events).iter().rposition(|t| *t == "response.output_audio.delta").unwrap();
    assert!(first_audio < first_text && first_text < last_audio, "transcript interleaves with audio");
    let done = &events.last().unwrap()["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["transcript"], "Hello there, friend.");
    let usage = &done["usage"];
    assert_eq!(usage["output_token_details"]["audio_tokens"], 1300 / 50);
    assert_eq!(usage["input_token_details"]["audio_tokens"], (end - start) / 100);
    assert_eq!(
        usage["total_tokens"],
        usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
    );
    let appends =
        fake.client_events().iter().filter(|e| e.json["type"] == "input_audio_buffer.append").count();
    assert_eq!(appends, 150);
    assert_eq!(fake.client_events()[1].json["audio_bytes"], 960);
    fake.shutdown().await;
}

#[tokio::test]
async fn speech_during_a_response_cancels_it_with_turn_detected() {
    let slow = RealtimeFakeConfig {
        pace: 1.0,
        ..config(vec![ScriptedResponse::say("A long answer that keeps going for a while.")])
    };
    let fake = RealtimeFake::start(slow).await.unwrap();
    let mut ws = connect(&fake, false).await;
    let mut offset = 0;
    append_signal(&mut ws, 400, true, &mut offset).await;
    append_signal(&mut ws, 300, false, &mut offset).await;
    let events = recv_until(&mut ws, "response.output_audio.delta").await;
    assert!(types(&events).contains(&"response.created"));
    append_signal(&mut ws, 100, true, &mut offset).await;
    let events = recv_until(&mut ws, "response.done").await;
    let t = types(&events);
    let started = t.iter().position(|t| *t == "input_audio_buffer.speech_started").unwrap();
    assert!(started < t.iter().position(|t| *t == "response.output_audio.done").unwrap());
    let done = &events.last().unwrap()["response"];
    assert_eq!(done["status"], "cancelled");
    assert_eq!(done["status_details"], json!({"type": "cancelled", "reason": "turn_detected"}));
    assert_eq!(done["output"][0]["status"], "incomplete");
    fake.shutdown().await;
}

#[tokio::test]
async fn truncate_rejects_audio_beyond_the_item_and_removes_the_transcript() {
    let fake =
        RealtimeFake::start(config(vec![ScriptedResponse::say("Twenty characters!!!")])).await.unwrap();
    let mut ws = connect(&fake, false).await;
    manual_turns(&mut ws).await;
    user_text(&mut ws, "hi").await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = recv_until(&mut ws, "response.done").await;
    let item = events.last().unwrap()["response"]["output"][0]["id"].as_str().unwrap().to_string();
    let user_id =
        events[..].iter().find(|e| e["type"] == "conversation.item.added").unwrap()["previous_item_id"]
            .clone();

    let truncate = |id: Value, ms: u64, eid: &str| json!({"type": "conversation.item.truncate", "event_id": eid, "item_id": id, "content_index": 0, "audio_end_ms": ms});
    send(&mut ws, truncate(json!(item), 1301, "t1")).await;
    let err = recv(&mut ws).await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["param"], "audio_end_ms");
    assert_eq!(err["error"]["event_id"], "t1");
    send(&mut ws, truncate(json!("item_nope"), 10, "t2")).await;
    assert_eq!(recv(&mut ws).await["error"]["event_id"], "t2");
    send(&mut ws, truncate(user_id, 10, "t3")).await;
    assert_eq!(recv(&mut ws).await["error"]["event_id"], "t3");

    send(&mut ws, truncate(json!(item), 500, "t4")).await;
    let ok = recv(&mut ws).await;
    assert_eq!(
        ok,
        json!({"type": "conversation.item.truncated", "event_id": ok["event_id"], "item_id": item,
        "content_index": 0, "audio_end_ms": 500})
    );
    send(&mut ws, json!({"type": "conversation.item.retrieve", "item_id": item})).await;
    let got = recv(&mut ws).await;
    assert_eq!(got["type"], "conversation.item.retrieved");
    assert_eq!(got["item"]["content"][0]["transcript"], "");
    send(&mut ws, truncate(json!(item), 600, "t5")).await;
    assert_eq!(recv(&mut ws).await["error"]["event_id"], "t5", "the item is now 500 ms long");
    send(&mut ws, json!({"type": "conversation.item.delete", "item_id": item})).await;
    assert_eq!(recv(&mut ws).await["type"], "conversation.item.deleted");
    send(&mut ws, json!({"type": "conversation.item.retrieve", "item_id": item, "event_id": "r"})).await;
    assert_eq!(recv(&mut ws).await["error"]["event_id"], "r");
    fake.shutdown().await;
}

#[tokio::test]
async fn commit_needs_at_least_100_ms_of_audio() {
    let fake = RealtimeFake::start(config(vec![])).await.unwrap();
    let mut ws = connect(&fake, false).await;
    manual_turns(&mut ws).await;
    let mut offset = 0;
    append_signal(&mut ws, 60, true, &mut offset).await;
    send(&mut ws, json!({"type": "input_audio_buffer.commit", "event_id": "c1"})).await;
    let err = recv(&mut ws).await;
    assert_eq!(err["error"]["code"], "input_audio_buffer_commit_empty");
    assert_eq!(err["error"]["event_id"], "c1");
    append_signal(&mut ws, 60, true, &mut offset).await;
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    let events = recv_until(&mut ws, "conversation.item.done").await;
    assert_eq!(
        types(&events),
        ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    );
    assert_eq!(events[2]["item"]["content"][0]["type"], "input_audio");
    expect_silence(&mut ws, 150).await; // commit never starts a response
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    assert_eq!(
        recv(&mut ws).await["error"]["code"],
        "input_audio_buffer_commit_empty",
        "the buffer was emptied"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn response_cancel_needs_an_active_response_and_reports_client_cancelled() {
    let slow = RealtimeFakeConfig { pace: 1.0, ..config(vec![]) };
    let fake = RealtimeFake::start(slow).await.unwrap();
    let mut ws = connect(&fake, false).await;
    manual_turns(&mut ws).await;
    send(&mut ws, json!({"type": "response.cancel", "event_id": "x1"})).await;
    let err = recv(&mut ws).await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["event_id"], "x1");
    send(&mut ws, json!({"type": "response.create"})).await;
    recv_until(&mut ws, "response.output_audio.delta").await;
    send(&mut ws, json!({"type": "response.create", "event_id": "x2"})).await;
    let events = recv_until(&mut ws, "error").await;
    assert_eq!(events.last().unwrap()["error"]["code"], "conversation_already_has_active_response");
    send(&mut ws, json!({"type": "response.cancel"})).await;
    let events = recv_until(&mut ws, "response.done").await;
    let tail: Vec<&str> = shape(&events).into_iter().filter(|t| *t != "<deltas>").collect();
    assert_eq!(
        tail,
        [
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done"
        ]
    );
    let done = &events.last().unwrap()["response"];
    assert_eq!(done["status"], "cancelled");
    assert_eq!(done["status_details"]["reason"], "client_cancelled");
    expect_silence(&mut ws, 200).await;
    fake.shutdown().await;
}

fn weather_script() -> Vec<ScriptedResponse> {
    let call = ScriptedFunctionCall {
        name: "get_weather".into(),
        arguments: r#"{"city":"Paris"}"#.into(),
        call_id: None,
    };
    vec![
        ScriptedResponse {
            text: String::new(),
            audio_ms: None,
            function_call: Some(call),
            user_transcript: None,
        },
        ScriptedResponse::say("Sunny."),
    ]
}

#[tokio::test]
async fn function_call_round_trip_streams_fragments_and_waits_for_response_create() {
    let fake = RealtimeFake::start(config(weather_script())).await.unwrap();
    let mut ws = connect(&fake, false).await;
    manual_turns(&mut ws).await;
    user_text(&mut ws, "Weather in Paris?").await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = recv_until(&mut ws, "response.done").await;
    let mut expected = vec![
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
    ];
    expected.extend(["response.function_call_arguments.delta"; 4]);
    expected.extend([
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]);
    assert_eq!(types(&events), expected);
    let added = &events[2]["item"];
    assert_eq!(
        (added["type"].as_str(), added["status"].as_str(), added["arguments"].as_str()),
        (Some("function_call"), Some("in_progress"), Some(""))
    );
    let fragments: Vec<&str> = events[4..8].iter().map(|e| e["delta"].as_str().unwrap()).collect();
    assert_eq!(fragments, [r#"{"cit"#, r#"y":"P"#, r#"aris""#, "}"]);
    let done = &events[8];
    assert_eq!(done["name"], "get_weather");
    assert_eq!(done["arguments"], r#"{"city":"Paris"}"#);
    let call_id = done["call_id"].as_str().unwrap().to_string();
    assert_eq!(events.last().unwrap()["response"]["output"][0]["type"], "function_call");

    let output = |id: &str| {
        json!({"type": "conversation.item.create", "event_id": "o",
        "item": {"type": "function_call_output", "call_id": id, "output": "{\"temp_c\":18}"}})
    };
    send(&mut ws, output("call_unknown")).await;
    assert_eq!(recv(&mut ws).await["error"]["param"], "item.call_id");
    send(&mut ws, output(&call_id)).await;
    assert_eq!(
        types(&recv_until(&mut ws, "conversation.item.done").await),
        ["conversation.item.added", "conversation.item.done"]
    );
    expect_silence(&mut ws, 200).await; // the model does not resume by itself
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = recv_until(&mut ws, "response.done").await;
    assert_eq!(events.last().unwrap()["response"]["output"][0]["content"][0]["transcript"], "Sunny.");
    fake.shutdown().await;
}

#[tokio::test]
async fn beta_function_call_uses_beta_names_and_omits_name_in_arguments_done() {
    let fake = RealtimeFake::start(config(weather_script())).await.unwrap();
    let mut ws = connect(&fake, true).await;
    send(&mut ws, json!({"type": "session.update", "session": {"turn_detection": null}})).await;
    assert_eq!(recv(&mut ws).await["type"], "session.updated");
    let item = json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]});
    send(&mut ws, json!({"type": "conversation.item.create", "item": item})).await;
    assert_eq!(recv(&mut ws).await["type"], "conversation.item.created");
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = recv_until(&mut ws, "response.done").await;
    let done = events.iter().find(|e| e["type"] == "response.function_call_arguments.done").unwrap();
    assert!(done.get("name").is_none());
    assert!(!types(&events).contains(&"conversation.item.added"));
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = recv_until(&mut ws, "response.done").await;
    assert!(types(&events).contains(&"response.audio.delta"));
    assert!(types(&events).contains(&"response.audio_transcript.done"));
    let part = &events.iter().find(|e| e["type"] == "response.content_part.added").unwrap()["part"];
    assert_eq!(part["type"], "audio");
    fake.shutdown().await;
}

#[tokio::test]
async fn the_fault_knob_drops_the_connection_without_a_close_frame_after_n_audio_deltas() {
    let faulty = RealtimeFakeConfig { close_after_audio_deltas: Some(3), ..config(vec![]) };
    let fake = RealtimeFake::start(faulty).await.unwrap();
    let mut ws = connect(&fake, false).await;
    manual_turns(&mut ws).await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let mut deltas = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("timely close") {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_ne!(v["type"], "response.done");
                deltas += usize::from(v["type"] == "response.output_audio.delta");
            }
            Some(Ok(Message::Close(_))) => panic!("a clean close frame was sent"),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                assert!(matches!(e, WsError::Protocol(_) | WsError::Io(_)), "{e:?}");
                break;
            }
            None => break,
        }
    }
    assert_eq!(deltas, 3);
    fake.shutdown().await;
}

#[test]
fn config_loads_from_json_with_defaults_and_rejects_unknown_keys() {
    let cfg: RealtimeFakeConfig = serde_json::from_value(json!({
        "api_key": "sk-x", "pace": 2.0,
        "responses": [{"text": "hi", "function_call": {"name": "f", "arguments": "{}"}}],
        "vad": {"threshold_dbfs": -35.0}
    }))
    .unwrap();
    assert_eq!(cfg.pace, 2.0);
    assert_eq!(cfg.delta_ms, 100);
    assert_eq!(cfg.vad.min_speech_windows, 2);
    assert_eq!(format!("{:?}", cfg.api_key), "Some([redacted])");
    assert!(serde_json::from_value::<RealtimeFakeConfig>(json!({"pase": 2.0})).is_err());
    assert!(serde_json::from_value::<RealtimeFakeConfig>(json!({"responses": [{"txt": "x"}]})).is_err());
}

#[tokio::test]
async fn g711_sessions_get_8_khz_output_and_their_input_is_decoded_for_vad() {
    let fake =
        RealtimeFake::start(config(vec![ScriptedResponse::say("Twenty characters!!!")])).await.unwrap();
    let mut ws = connect(&fake, false).await;
    let update = json!({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}},
        "output": {"format": {"type": "audio/pcma"}}}});
    send(&mut ws, json!({"type": "session.update", "session": update})).await;
    assert_eq!(recv(&mut ws).await["type"], "session.updated");
    // 400 ms of loud μ-law (alternating ±16000), then 400 ms of μ-law silence (0xFF), 20 ms appends.
    let loud: Vec<u8> = (0..160).map(|i| if i % 2 == 0 { 0x8F } else { 0x0F }).collect();
    for chunk in std::iter::repeat_n(&loud, 20).chain(std::iter::repeat_n(&vec![0xFFu8; 160], 20)) {
        send(&mut ws, json!({"type": "input_audio_buffer.append", "audio": B64.encode(chunk)})).await;
    }
    let events = recv_until(&mut ws, "response.done").await;
    assert_eq!(events[0]["type"], "input_audio_buffer.speech_started");
    assert_eq!(events[0]["audio_start_ms"], 0);
    assert_eq!(events[1]["audio_end_ms"], 600);
    let audio: usize = events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .map(|e| B64.decode(e["delta"].as_str().unwrap()).unwrap().len())
        .sum();
    assert_eq!(audio, 1300 * 8, "G.711 at 8 kHz is 8 bytes per ms");
    assert_eq!(
        events.last().unwrap()["response"]["audio"]["output"]["format"],
        json!({"type": "audio/pcma"})
    );
    fake.shutdown().await;
}

/// The official `openai` SDK types `response.content_part.added/done`'s `part.type` as
/// `audio`/`text` in both dialects; `output_audio`/`output_text` is only for GA item content.
#[tokio::test]
async fn content_parts_say_audio_or_text_in_both_dialects_and_ga_item_content_says_output() {
    for beta in [false, true] {
        let fake = RealtimeFake::start(config(vec![ScriptedResponse::say("Sunny.")])).await.unwrap();
        let mut ws = connect(&fake, beta).await;
        let off = if beta {
            json!({"type": "session.update", "session": {"turn_detection": null}})
        } else {
            json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": null}}}})
        };
        send(&mut ws, off).await;
        assert_eq!(recv(&mut ws).await["type"], "session.updated");
        for (modality, part_type) in [("audio", "audio"), ("text", "text")] {
            let response = if beta {
                let m = if modality == "audio" { json!(["text", "audio"]) } else { json!(["text"]) };
                json!({"modalities": m})
            } else {
                json!({"output_modalities": [modality]})
            };
            send(&mut ws, json!({"type": "response.create", "response": response})).await;
            let events = recv_until(&mut ws, "response.done").await;
            for ty in ["response.content_part.added", "response.content_part.done"] {
                let ev = events.iter().find(|e| e["type"] == ty).unwrap_or_else(|| panic!("no {ty}"));
                assert_eq!(ev["part"]["type"], part_type, "{ty} (beta: {beta}): {ev}");
            }
            let done = events.iter().find(|e| e["type"] == "response.output_item.done").unwrap();
            let item_type = if beta { part_type.to_string() } else { format!("output_{part_type}") };
            assert_eq!(done["item"]["content"][0]["type"], item_type.as_str(), "beta: {beta}: {done}");
            let response = &events.last().unwrap()["response"];
            assert_eq!(response["output"][0]["content"][0]["type"], item_type.as_str());
        }
        fake.shutdown().await;
    }
}

/// The official SDK types require `usage` on `input_audio_transcription.completed` in both
/// dialects (PROTOCOLS.md 1.6 lists it without a dialect).
#[tokio::test]
async fn transcription_completed_carries_usage_in_both_dialects() {
    for beta in [false, true] {
        let fake = RealtimeFake::start(config(vec![ScriptedResponse::say("Hi.")])).await.unwrap();
        let mut ws = connect(&fake, beta).await;
        let session = if beta {
            json!({"input_audio_transcription": {"model": "whisper-1"}})
        } else {
            json!({"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}})
        };
        send(&mut ws, json!({"type": "session.update", "session": session})).await;
        assert_eq!(recv(&mut ws).await["type"], "session.updated");
        let mut offset = 0;
        append_signal(&mut ws, 1000, true, &mut offset).await;
        append_signal(&mut ws, 1000, false, &mut offset).await;
        let events = recv_until(&mut ws, "conversation.item.input_audio_transcription.completed").await;
        let usage = &events.last().unwrap()["usage"];
        assert_eq!(usage["type"], "tokens", "beta: {beta}: {usage}");
        let (input, output) =
            (usage["input_tokens"].as_u64().unwrap(), usage["output_tokens"].as_u64().unwrap());
        assert!(input > 0 && output > 0, "beta: {beta}: {usage}");
        assert_eq!(usage["total_tokens"].as_u64(), Some(input + output));
        fake.shutdown().await;
    }
}
