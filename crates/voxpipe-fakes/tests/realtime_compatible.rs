//! The Realtime fake's other servers: Azure OpenAI's URL shapes and auth, and an independent
//! OpenAI-compatible server (`compatible`), driven with a raw WebSocket client.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voxpipe_fakes::realtime::{CompatibleConfig, RealtimeFake, RealtimeFakeConfig, ScriptedResponse};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const KEY: &str = "azure-test-key";

fn config() -> RealtimeFakeConfig {
    RealtimeFakeConfig {
        api_key: Some(KEY.into()),
        first_audio_delay_ms: 20,
        pace: 25.0,
        ..RealtimeFakeConfig::default()
    }
}

async fn upgrade(fake: &RealtimeFake, path_and_query: &str, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
    let mut req = format!("ws://{}{path_and_query}", fake.addr()).into_client_request()?;
    for (k, v) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

async fn refused(fake: &RealtimeFake, path_and_query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let Err(WsError::Http(resp)) = upgrade(fake, path_and_query, headers).await else {
        panic!("{path_and_query}: the upgrade should be refused")
    };
    let body = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
    (resp.status().as_u16(), body)
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

/// 20 ms appends of `ms` of silence or a 300 Hz tone at -10 dBFS RMS.
async fn append_signal(ws: &mut Ws, ms: u64, tone: bool, offset: &mut usize) {
    let amp = 10f64.powf(-10.0 / 20.0) * 2f64.sqrt() * 32767.0;
    for _ in 0..ms / 20 {
        let chunk: Vec<u8> = (0..480)
            .flat_map(|i| {
                let n = (*offset + i) as f64;
                let s = if tone {
                    (amp * (2.0 * std::f64::consts::PI * 300.0 * n / 24_000.0).sin()) as i16
                } else {
                    0
                };
                s.to_le_bytes()
            })
            .collect();
        *offset += 480;
        send(ws, json!({"type": "input_audio_buffer.append", "audio": B64.encode(chunk)})).await;
    }
}

#[tokio::test]
async fn azure_paths_take_the_api_key_header_and_refuse_like_azure() {
    let fake = RealtimeFake::start(config()).await.unwrap();
    let preview = "/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-realtime-mini";

    // The preview API speaks beta: the flat session shape, without any OpenAI-Beta header.
    let mut ws = upgrade(&fake, preview, &[("api-key", KEY)]).await.expect("api-key accepted");
    let created = recv(&mut ws).await;
    assert_eq!(created["type"], "session.created");
    assert_eq!(created["session"]["model"], "gpt-realtime-mini");
    assert!(created["session"]["voice"].is_string(), "beta shape: {created}");
    drop(ws);

    // v1: the GA API, the deployment as `model`; an Entra token in Authorization works too.
    let mut ws = upgrade(
        &fake,
        "/openai/v1/realtime?model=my-deployment",
        &[("authorization", &format!("Bearer {KEY}"))],
    )
    .await
    .expect("bearer accepted");
    let created = recv(&mut ws).await;
    assert_eq!(created["session"]["type"], "realtime", "GA shape: {created}");
    drop(ws);

    for headers in [&[][..], &[("api-key", "wrong")][..]] {
        let (status, body) = refused(&fake, preview, headers).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "401");
        assert!(body["error"]["message"].as_str().unwrap().starts_with("Access denied"));
        assert!(body["error"].get("type").is_none(), "Azure's shape, not OpenAI's: {body}");
    }
    let (status, body) =
        refused(&fake, "/openai/realtime?deployment=gpt-realtime-mini", &[("api-key", KEY)]).await;
    assert_eq!((status, &body["error"]["message"]), (404, &json!("Resource not found")));
    let (status, body) =
        refused(&fake, "/openai/realtime?api-version=2025-04-01-preview", &[("api-key", KEY)]).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("DeploymentNotFound")));
    // OpenAI's path still wants OpenAI's auth.
    let (status, _) = refused(&fake, "/v1/realtime?model=gpt-realtime", &[("api-key", KEY)]).await;
    assert_eq!(status, 401);
    assert_eq!(fake.connections(), 2);
    fake.shutdown().await;
}

fn compatible(responses: Vec<ScriptedResponse>) -> RealtimeFakeConfig {
    RealtimeFakeConfig { responses, compatible: Some(CompatibleConfig::default()), ..config() }
}

async fn connect_compatible(fake: &RealtimeFake) -> Ws {
    let auth = format!("Bearer {KEY}");
    let mut ws = upgrade(fake, "/v1/realtime?model=local", &[("authorization", &auth)]).await.unwrap();
    assert_eq!(recv(&mut ws).await["type"], "session.created");
    ws
}

#[tokio::test]
async fn a_compatible_server_warns_about_unsupported_fields_and_still_updates_the_session() {
    let fake = RealtimeFake::start(compatible(vec![])).await.unwrap();
    let mut ws = connect_compatible(&fake).await;
    let session = json!({"voice": "joe", "input_audio_format": "pcm16", "output_audio_format": "pcm16",
        "instructions": "Be brief.",
        "turn_detection": {"type": "server_vad", "prefix_padding_ms": 300, "silence_duration_ms": 400}});
    send(&mut ws, json!({"type": "session.update", "session": session})).await;
    let events = recv_until(&mut ws, "session.updated").await;
    let errors: Vec<&Value> = events.iter().filter(|e| e["type"] == "error").collect();
    assert_eq!(errors.len(), 3, "{events:?}");
    for (e, field) in errors.iter().zip([
        "session.input_audio_format",
        "session.output_audio_format",
        "session.turn_detection.prefix_padding_ms",
    ]) {
        assert!(e["error"]["code"].is_null(), "no code, as such servers send: {e}");
        assert!(e["error"]["message"].as_str().unwrap().contains(&format!("`{field}`")), "{e}");
    }
    let updated = events.last().unwrap();
    assert_eq!(updated["session"]["voice"], "joe");
    assert_eq!(updated["session"]["instructions"], "Be brief.");
    assert_eq!(updated["session"]["turn_detection"]["silence_duration_ms"], 400);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_compatible_server_counts_timestamps_per_turn_and_does_not_truncate() {
    let mut script = ScriptedResponse::say("Hello there, my friend, how are you?");
    script.user_transcript = Some("Hi.".into());
    let fake = RealtimeFake::start(compatible(vec![script])).await.unwrap();
    let mut ws = connect_compatible(&fake).await;
    let session = json!({"input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 200}});
    send(&mut ws, json!({"type": "session.update", "session": session})).await;
    recv_until(&mut ws, "session.updated").await;
    let mut offset = 0;
    let mut turns = Vec::new();
    for _ in 0..2 {
        append_signal(&mut ws, 1000, false, &mut offset).await;
        append_signal(&mut ws, 1000, true, &mut offset).await;
        append_signal(&mut ws, 400, false, &mut offset).await;
        let events = recv_until(&mut ws, "conversation.item.input_audio_transcription.completed").await;
        let at = |ty: &str, key: &str| {
            events.iter().find(|e| e["type"] == ty).unwrap_or_else(|| panic!("{ty} in {events:?}"))[key]
                .as_u64()
                .unwrap()
        };
        turns.push((
            at("input_audio_buffer.speech_started", "audio_start_ms"),
            at("input_audio_buffer.speech_stopped", "audio_end_ms"),
        ));
        // The caller's transcript comes after the reply to it.
        let done = events.iter().position(|e| e["type"] == "response.done").expect("the reply");
        let transcript = events.len() - 1;
        assert!(done < transcript, "{:?}", events.iter().map(|e| &e["type"]).collect::<Vec<_>>());
    }
    // Speech runs 1000..2000 ms and 3400..4400 ms of the session (onsets padded by the
    // default 300 ms). Turn 2 is reported from the start of its own buffer (the commit at
    // 2200 ms), and each end is where speech ended, without the silence after it.
    assert_eq!(turns.len(), 2);
    let close = |(a, b): (u64, u64), (x, y): (u64, u64)| a.abs_diff(x) <= 20 && b.abs_diff(y) <= 20;
    assert!(close(turns[0], (700, 2000)), "turn 1: {turns:?}");
    assert!(close(turns[1], (900, 2200)), "turn 2 counts from its own buffer: {turns:?}");

    let item = json!({"type": "conversation.item.truncate", "item_id": "item_x", "content_index": 0, "audio_end_ms": 10});
    send(&mut ws, item).await;
    let error = recv(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert!(error["error"]["message"].as_str().unwrap().contains("not supported"), "{error}");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_compatible_server_sends_a_reply_in_bursts_with_gaps() {
    let mut script = ScriptedResponse::say("A long reply.");
    script.audio_ms = Some(2500);
    let cfg = RealtimeFakeConfig { delta_ms: 100, pace: 4.0, ..compatible(vec![script]) };
    let fake = RealtimeFake::start(cfg).await.unwrap();
    let mut ws = connect_compatible(&fake).await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let mut arrivals = Vec::new();
    let t0 = tokio::time::Instant::now();
    loop {
        let e = recv(&mut ws).await;
        if e["type"] == "response.audio.delta" {
            arrivals.push(t0.elapsed().as_millis() as u64);
        }
        if e["type"] == "response.done" {
            break;
        }
    }
    assert_eq!(arrivals.len(), 25);
    // Bursts of 1000 ms of audio (10 deltas); each next one 1000 + 600 ms after the last began.
    let gaps: Vec<u64> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    let long: Vec<usize> = gaps.iter().enumerate().filter(|(_, g)| **g > 200).map(|(i, _)| i + 1).collect();
    assert_eq!(long, [10, 20], "bursts start at deltas 10 and 20: {gaps:?}");
    assert!(arrivals[10].abs_diff(arrivals[0] + 1600) <= 30, "{arrivals:?}");
    fake.shutdown().await;
}

#[test]
fn the_shipped_compatible_config_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines/fakes/realtime-compatible.toml");
    let config: RealtimeFakeConfig = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let compatible = config.compatible.expect("[compatible]");
    assert_eq!((compatible.burst_ms, compatible.burst_gap_ms), (1000, 600));
    assert_eq!(config.responses.len(), 2);
}
