//! The TTS fakes (OpenAI speech, ElevenLabs) on the wire: what they reject, how they stream.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use voxpipe_core::audio::pcm::decode_pcm16le;
use voxpipe_fakes::elevenlabs::{ElevenLabsFake, ElevenLabsFakeConfig};
use voxpipe_fakes::openai_speech::{PCM_RATE, SpeechFake, SpeechFakeConfig, StreamOutcome, speech_waveform};

async fn post_speech(fake: &SpeechFake, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{}/audio/speech", fake.base_url())).json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn speech_fake_rejects_what_openai_rejects_with_openai_error_bodies() {
    let fake = SpeechFake::start(SpeechFakeConfig::default()).await.unwrap();
    let ok = json!({ "model": "gpt-4o-mini-tts", "input": "Hi", "voice": "alloy", "response_format": "pcm" });
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let (s, b) = post_speech(&fake, None, ok.clone()).await;
    assert_eq!(s, 401);
    assert!(b["error"]["message"].as_str().unwrap().contains("didn't provide an API key"));
    let (s, b) = post_speech(&fake, Some("sk-wrong"), ok.clone()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    let cases = [
        (with("voice", json!("robot")), 400, "voice"),
        (with("input", json!("")), 400, "input"),
        (with("input", json!("a".repeat(4097))), 400, "input"),
        (with("speed", json!(5.0)), 400, "speed"),
        (with("response_format", json!("mp3")), 400, "response_format"),
        (with("output_format", json!("pcm")), 400, "output_format"),
        (
            json!({ "model": "tts-1", "input": "Hi", "voice": "alloy", "response_format": "pcm", "instructions": "x" }),
            400,
            "instructions",
        ),
        (json!({ "input": "Hi", "voice": "alloy" }), 400, "model"),
    ];
    for (body, status, param) in cases {
        let (s, b) = post_speech(&fake, Some("sk-test"), body.clone()).await;
        assert_eq!(s, status, "{body}");
        assert_eq!(b["error"]["param"], param, "{b}");
        assert_eq!(b["error"]["type"], "invalid_request_error");
    }
    let (s, b) = post_speech(&fake, Some("sk-test"), with("model", json!("tts-9"))).await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("model_not_found")));
    let (s, _) = post_speech(&fake, Some("sk-test"), with("voice", json!({ "id": "voice_1234" }))).await;
    assert_eq!(s, 200, "custom voices are objects with an id");
    assert!(fake.requests().iter().filter(|r| matches!(r.outcome, StreamOutcome::Rejected(_))).count() >= 10);
}

#[tokio::test]
async fn speech_fake_streams_the_waveform_in_odd_sized_chunks_after_the_first_byte_delay() {
    let config = SpeechFakeConfig { time_to_first_byte_ms: 150, real_time_factor: 0.0, ..Default::default() };
    let fake = SpeechFake::start(config).await.unwrap();
    let body = json!({ "model": "tts-1", "input": "Odd chunks.", "voice": "nova", "response_format": "pcm" });
    let resp = reqwest::Client::new()
        .post(format!("{}/audio/speech", fake.base_url()))
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap();
    let mut samples = Vec::new();
    decode_pcm16le(&bytes, &mut samples);
    assert_eq!(samples, speech_waveform("Odd chunks.", 60, PCM_RATE));
    assert_eq!(samples.len(), 11 * 60 * 24, "60 ms per character");
    let r = &fake.requests()[0];
    assert_eq!(r.outcome, StreamOutcome::Completed);
    assert_eq!(r.bytes_sent, bytes.len());
    assert!(r.first_byte_at.unwrap() - r.at >= Duration::from_millis(150));
}

#[tokio::test]
async fn elevenlabs_http_requires_the_key_and_the_format_in_the_query() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default()).await.unwrap();
    let url = |q: &str| format!("{}/text-to-speech/v1/stream{q}", fake.base_url());
    let client = reqwest::Client::new();
    let post =
        |u: String, key: &str, body: Value| client.post(u).header("xi-api-key", key).json(&body).send();
    let resp = post(url("?output_format=pcm_16000"), "nope", json!({ "text": "Hi" })).await.unwrap();
    assert_eq!(resp.status(), 401);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["detail"]["status"], "invalid_api_key");
    let body = json!({ "text": "Hi", "output_format": "pcm_16000" });
    let resp = post(url("?output_format=pcm_16000"), "xi-test", body).await.unwrap();
    assert_eq!(resp.status(), 400, "output_format in the body is a client bug");
    let resp = post(url(""), "xi-test", json!({ "text": "Hi" })).await.unwrap();
    assert_eq!(resp.status(), 400, "the default mp3 is unsupported by the fake");
    let resp =
        post(url("?output_format=pcm_16000"), "xi-test", json!({ "text": "Hi", "foo": 1 })).await.unwrap();
    assert_eq!(resp.status(), 422);
    let resp = post(url("?output_format=pcm_16000"), "xi-test", json!({ "text": "Hello" })).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), 5 * 60 * 16 * 2);
    let resp = post(url("?output_format=ulaw_8000"), "xi-test", json!({ "text": "Hello" })).await.unwrap();
    assert_eq!(resp.bytes().await.unwrap().len(), 5 * 60 * 8, "one byte per mu-law sample");
}

async fn ws_connect(
    fake: &ElevenLabsFake,
    key: Option<&str>,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!(
        "{}/text-to-speech/v1/stream-input?model_id=eleven_flash_v2_5&output_format=pcm_16000&sync_alignment=true",
        fake.ws_url()
    );
    let mut req = url.into_client_request().unwrap();
    if let Some(k) = key {
        req.headers_mut().insert("xi-api-key", k.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn close_reason(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> (u16, String) {
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Close(Some(f)) = m {
            return (u16::from(f.code), f.reason.to_string());
        }
    }
    panic!("no close frame");
}

#[tokio::test]
async fn elevenlabs_ws_closes_when_the_first_message_is_not_a_single_space_or_the_key_is_wrong() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default()).await.unwrap();
    let mut ws = ws_connect(&fake, Some("xi-test")).await;
    ws.send(Message::text(json!({ "text": "Hello " }).to_string())).await.unwrap();
    let (code, reason) = close_reason(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("single space"), "{reason}");

    let mut ws = ws_connect(&fake, None).await;
    ws.send(Message::text(json!({ "text": " ", "xi_api_key": "wrong" }).to_string())).await.unwrap();
    let (code, reason) = close_reason(&mut ws).await;
    assert_eq!((code, reason.contains("invalid_api_key")), (1008, true));
}

#[tokio::test]
async fn elevenlabs_ws_buffers_until_flush_and_ends_with_is_final() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default()).await.unwrap();
    let mut ws = ws_connect(&fake, None).await;
    let init = json!({ "text": " ", "xi_api_key": "xi-test", "generation_config": { "chunk_length_schedule": [50] } });
    ws.send(Message::text(init.to_string())).await.unwrap();
    ws.send(Message::text(json!({ "text": "Short text. " }).to_string())).await.unwrap();
    // Below the 50-character schedule: nothing is generated until the flush.
    assert!(tokio::time::timeout(Duration::from_millis(200), ws.next()).await.is_err());
    ws.send(Message::text(json!({ "text": "Now go. ", "flush": true }).to_string())).await.unwrap();
    ws.send(Message::text(json!({ "text": "" }).to_string())).await.unwrap();
    let (mut chars, mut audio_bytes, mut final_seen) = (String::new(), 0usize, false);
    while let Some(Ok(m)) = ws.next().await {
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["isFinal"] == json!(true) {
            final_seen = true;
            continue;
        }
        use base64::Engine;
        audio_bytes +=
            base64::engine::general_purpose::STANDARD.decode(v["audio"].as_str().unwrap()).unwrap().len();
        let al = &v["alignment"];
        assert_eq!(al["chars"].as_array().unwrap().len(), al["charStartTimesMs"].as_array().unwrap().len());
        chars.extend(al["chars"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()));
    }
    assert!(final_seen);
    assert_eq!(chars, "Short text. Now go. ");
    assert_eq!(audio_bytes, 20 * 60 * 16 * 2);
    let s = &fake.ws_sessions()[0];
    assert_eq!(s.ended.as_deref(), Some("final"));
    assert_eq!(s.messages.len(), 4);
}
