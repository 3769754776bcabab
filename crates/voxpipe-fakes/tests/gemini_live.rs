//! Drives the Gemini Live fake with a raw WebSocket client and checks it behaves like Google's
//! `BidiGenerateContent` server (shared/specs/google/DIGEST.md section 3, the protos).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voxpipe_fakes::fault::Fault;
use voxpipe_fakes::gemini_live::{GeminiLiveFake, GeminiLiveFakeConfig, LiveScriptedResponse, LiveTurn};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const KEY: &str = "fake-gemini-key";
const MODEL: &str = "models/gemini-live-2.5-flash-preview";

fn config(responses: Vec<LiveScriptedResponse>) -> GeminiLiveFakeConfig {
    GeminiLiveFakeConfig {
        api_key: Some(KEY.into()),
        responses,
        first_audio_delay_ms: 20,
        delta_ms: 100,
        pace: 4.0,
        ..GeminiLiveFakeConfig::default()
    }
}

/// Connects with the key in `?key=` (or in `x-goog-api-key` when `header`).
async fn connect_with(fake: &GeminiLiveFake, key: Option<&str>, header: bool) -> Ws {
    let url = match key {
        Some(k) if !header => format!("{}?key={k}", fake.url()),
        _ => fake.url(),
    };
    let mut req = url.into_client_request().unwrap();
    if let (Some(k), true) = (key, header) {
        req.headers_mut().insert("x-goog-api-key", k.parse().unwrap());
    }
    // No Nagle: on a paused clock, a write held back for an ACK lets time jump past it.
    tokio_tungstenite::connect_async_with_config(req, None, true).await.expect("connect").0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next server message (Google sends JSON in binary frames).
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg =
            tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("no message within 30 s");
        match msg.expect("stream ended").expect("read") {
            Message::Binary(b) => return serde_json::from_slice(&b).expect("server sent JSON"),
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("server sent JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads until the close frame: its code and reason.
async fn recv_close(ws: &mut Ws) -> (u16, String) {
    loop {
        let msg =
            tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("no close within 30 s");
        match msg {
            Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("read failed before the close frame: {e}"),
        }
    }
}

/// Reads messages up to and including the first one for which `last` holds.
async fn recv_until(ws: &mut Ws, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let v = recv(ws).await;
        let done = last(&v);
        out.push(v);
        if done {
            return out;
        }
    }
}

fn turn_complete(v: &Value) -> bool {
    v["serverContent"]["turnComplete"] == true
}

async fn connect_setup(fake: &GeminiLiveFake, setup: Value) -> Ws {
    let mut ws = connect_with(fake, Some(KEY), false).await;
    send(&mut ws, json!({ "setup": setup })).await;
    assert_eq!(recv(&mut ws).await, json!({"setupComplete": {}}));
    ws
}

fn audio_setup() -> Value {
    json!({
        "model": MODEL,
        "generationConfig": {"responseModalities": ["AUDIO"],
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Puck"}}}},
        "systemInstruction": {"parts": [{"text": "You are a test."}]},
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
    })
}

/// Sends `ms` of caller audio in 20 ms messages: a loud 16 kHz tone, or silence.
async fn speak(ws: &mut Ws, ms: u64, loud: bool) {
    for chunk in 0..ms / 20 {
        let samples: Vec<i16> = (0..320)
            .map(|i| if loud { ((((chunk * 320 + i) as f64) * 0.19).sin() * 12_000.0) as i16 } else { 0 })
            .collect();
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let audio = json!({"mimeType": "audio/pcm;rate=16000", "data": B64.encode(bytes)});
        send(ws, json!({"realtimeInput": {"audio": audio}})).await;
    }
}

/// A spoken caller turn: speech, then enough silence to end it.
async fn say(ws: &mut Ws) {
    speak(ws, 400, true).await;
    speak(ws, 700, false).await;
}

fn audio_bytes(msgs: &[Value]) -> usize {
    msgs.iter()
        .filter_map(|m| m["serverContent"]["modelTurn"]["parts"][0]["inlineData"].as_object())
        .map(|d| {
            assert_eq!(d["mimeType"], "audio/pcm;rate=24000");
            B64.decode(d["data"].as_str().unwrap()).unwrap().len()
        })
        .sum()
}

fn output_transcript(msgs: &[Value]) -> String {
    msgs.iter().filter_map(|m| m["serverContent"]["outputTranscription"]["text"].as_str()).collect()
}

fn position(msgs: &[Value], key: &str) -> Option<usize> {
    msgs.iter().position(|m| m["serverContent"][key] == true)
}

#[tokio::test(start_paused = true)]
async fn setup_is_answered_with_setup_complete_and_the_key_is_read_from_query_or_header() {
    let fake = GeminiLiveFake::start(config(vec![])).await.unwrap();
    for header in [false, true] {
        let mut ws = connect_with(&fake, Some(KEY), header).await;
        send(&mut ws, json!({"setup": {"model": MODEL}})).await;
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        assert!(matches!(&msg, Message::Binary(_)), "Google sends JSON in binary frames: {msg:?}");
        assert_eq!(serde_json::from_slice::<Value>(&msg.into_data()).unwrap(), json!({"setupComplete": {}}));
    }
    assert_eq!(fake.client_messages()[0].json, json!({"setup": {"model": MODEL}}));
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_missing_or_wrong_key_closes_the_socket_and_a_wrong_path_is_not_found() {
    let fake = GeminiLiveFake::start(config(vec![])).await.unwrap();
    let mut ws = connect_with(&fake, None, false).await;
    let (code, reason) = recv_close(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("unregistered callers"), "{reason}");
    let mut ws = connect_with(&fake, Some("wrong"), true).await;
    assert_eq!(recv_close(&mut ws).await, (1007, "API key not valid. Please pass a valid API key.".into()));
    let closes: Vec<(usize, u16)> = fake.closes().iter().map(|c| (c.connection, c.code)).collect();
    assert_eq!(closes, vec![(1, 1008), (2, 1007)], "the fake records what it closed with");

    let url = format!(
        "ws://{}/ws/google.ai.generativelanguage.v1beta.GenerativeService.Nope?key={KEY}",
        fake.addr()
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("expected HTTP 404, got {other:?}"),
    }
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn setup_comes_first_and_only_once() {
    let fake = GeminiLiveFake::start(config(vec![])).await.unwrap();
    let mut ws = connect_with(&fake, Some(KEY), false).await;
    send(&mut ws, json!({"realtimeInput": {"text": "hi"}})).await;
    let (code, reason) = recv_close(&mut ws).await;
    assert_eq!(code, 1007);
    assert!(reason.contains("first message must be setup"), "{reason}");

    let mut ws = connect_setup(&fake, json!({"model": MODEL})).await;
    send(&mut ws, json!({"setup": {"model": MODEL}})).await;
    let (code, reason) = recv_close(&mut ws).await;
    assert_eq!(code, 1007);
    assert!(reason.contains("only be sent once"), "{reason}");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn setup_fields_are_checked_like_proto3_json() {
    let fake = GeminiLiveFake::start(config(vec![])).await.unwrap();
    // snake_case names are proto3 JSON too.
    let snake = json!({"model": MODEL, "generation_config": {"response_modalities": ["AUDIO"]},
        "realtime_input_config": {"automatic_activity_detection": {"disabled": true}},
        "output_audio_transcription": {}});
    drop(connect_setup(&fake, snake).await);
    for (setup, want) in [
        (
            json!({"model": MODEL, "proactivity": {"proactiveAudio": true}}),
            "Unknown name \"proactivity\" at 'setup'",
        ),
        (json!({"generationConfig": {}}), "model is required"),
        (json!({"model": "gemini-live-2.5-flash-preview"}), "expected models/{model}"),
        (
            json!({"model": MODEL, "generationConfig": {"responseMimeType": "application/json"}}),
            "not supported in the Live API",
        ),
        (
            json!({"model": MODEL, "generationConfig": {"responseModalities": ["TEXT", "AUDIO"]}}),
            "one modality",
        ),
        (json!({"model": MODEL, "generationConfig": {"temperature": 3}}), "temperature"),
        (
            json!({"model": MODEL, "systemInstruction": {"parts": [{"inlineData": {"mimeType": "image/png", "data": ""}}]}}),
            "may only be text",
        ),
        (
            json!({"model": MODEL, "tools": [{"functionDeclarations": [{"name": "1bad", "description": "x"}]}]}),
            "Invalid function name",
        ),
        (
            json!({"model": MODEL, "realtimeInputConfig": {"activityHandling": "SOMETIMES"}}),
            "ActivityHandling",
        ),
        (
            json!({"model": MODEL, "inputAudioTranscription": {"languageCodes": ["en"]}}),
            "Unknown name \"languageCodes\"",
        ),
        (json!({"model": MODEL, "sessionResumption": {"transparent": true}}), "Unknown name \"transparent\""),
    ] {
        let mut ws = connect_with(&fake, Some(KEY), false).await;
        send(&mut ws, json!({ "setup": setup })).await;
        let (code, reason) = recv_close(&mut ws).await;
        assert_eq!(code, 1007, "{setup}: {reason}");
        assert!(reason.contains(want), "{setup}: {reason}");
    }
    let mut ws = connect_with(&fake, Some(KEY), false).await;
    send(&mut ws, json!({"setup": {"model": MODEL}, "clientContent": {"turns": []}})).await;
    assert!(recv_close(&mut ws).await.1.contains("Oneof field"));
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn input_audio_must_be_pcm_at_16_khz() {
    let fake = GeminiLiveFake::start(config(vec![])).await.unwrap();
    for mime in ["audio/pcm;rate=24000", "audio/wav", "audio/pcm"] {
        let mut ws = connect_setup(&fake, audio_setup()).await;
        send(&mut ws, json!({"realtimeInput": {"audio": {"mimeType": mime, "data": "AAAA"}}})).await;
        let (code, reason) = recv_close(&mut ws).await;
        assert_eq!(code, 1007, "{mime}");
        assert!(reason.contains("audio/pcm;rate=16000"), "{mime}: {reason}");
    }
    let mut ws = connect_setup(&fake, audio_setup()).await;
    send(
        &mut ws,
        json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "not base64!"}}}),
    )
    .await;
    assert!(recv_close(&mut ws).await.1.contains("Base64 decoding failed"));
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn two_spoken_turns_get_audio_and_both_transcriptions() {
    let script = vec![
        LiveScriptedResponse::say("Hello there, how can I help?").heard("Hi"),
        LiveScriptedResponse::say("It is sunny in Paris.").heard("What's the weather in Paris?"),
    ];
    let fake = GeminiLiveFake::start(config(script)).await.unwrap();
    let mut ws = connect_setup(&fake, audio_setup()).await;
    for (heard, answer) in
        [("Hi", "Hello there, how can I help?"), ("What's the weather in Paris?", "It is sunny in Paris.")]
    {
        say(&mut ws).await;
        let msgs = recv_until(&mut ws, turn_complete).await;
        let input: Vec<&Value> =
            msgs.iter().filter_map(|m| m["serverContent"].get("inputTranscription")).collect();
        assert_eq!(input, vec![&json!({"text": heard})]);
        assert_eq!(output_transcript(&msgs), answer);
        let ms = (answer.chars().count() as u64 * 65).max(300);
        assert_eq!(audio_bytes(&msgs), (24 * ms * 2) as usize);
        let (generated, done) = (position(&msgs, "generationComplete").unwrap(), msgs.len() - 1);
        let last_audio = msgs.iter().rposition(|m| m["serverContent"].get("modelTurn").is_some()).unwrap();
        let last_text =
            msgs.iter().rposition(|m| m["serverContent"].get("outputTranscription").is_some()).unwrap();
        assert!(last_audio < generated && last_text < generated && generated < done, "{msgs:#?}");
        let usage = &msgs[done]["usageMetadata"];
        assert!(usage["totalTokenCount"].as_u64().unwrap() > 0, "{usage}");
        assert!(position(&msgs, "interrupted").is_none());
    }
    let roles: Vec<(String, String)> =
        fake.conversation(1).into_iter().map(|LiveTurn { role, text }| (role, text)).collect();
    assert_eq!(roles[0], ("system".into(), "You are a test.".into()));
    assert_eq!(roles[3], ("user".into(), "What's the weather in Paris?".into()));
    assert_eq!(roles[4], ("model".into(), "It is sunny in Paris.".into()));
    let audio = &fake.client_messages()[1].json["realtimeInput"]["audio"];
    assert_eq!(audio["data"], json!({"bytes": 640}), "recorded with its length, not its data");
    fake.shutdown().await;
}

fn tool_setup(manual: bool) -> Value {
    let mut s = audio_setup();
    s["tools"] = json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather by city",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}]);
    if manual {
        s["realtimeInputConfig"] = json!({"automaticActivityDetection": {"disabled": true}});
    }
    s
}

#[tokio::test(start_paused = true)]
async fn a_tool_call_round_trip_goes_on_with_the_next_scripted_turn() {
    let script = vec![
        LiveScriptedResponse::call("get_weather", json!({"city": "Paris"})),
        LiveScriptedResponse::say("It is 18 degrees."),
    ];
    let fake = GeminiLiveFake::start(config(script)).await.unwrap();
    let mut ws = connect_setup(&fake, tool_setup(false)).await;
    let turn =
        json!({"turns": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}], "turnComplete": true});
    send(&mut ws, json!({ "clientContent": turn })).await;
    let msgs = recv_until(&mut ws, |m| m.get("toolCall").is_some()).await;
    assert!(msgs.iter().all(|m| m["serverContent"].get("turnComplete").is_none()));
    let call = &msgs.last().unwrap()["toolCall"]["functionCalls"][0];
    assert_eq!((&call["name"], &call["args"]), (&json!("get_weather"), &json!({"city": "Paris"})));
    let id = call["id"].as_str().unwrap().to_string();
    let response = json!({"id": id, "name": "get_weather", "response": {"temp_c": 18}});
    send(&mut ws, json!({"toolResponse": {"functionResponses": [response]}})).await;
    let msgs = recv_until(&mut ws, turn_complete).await;
    assert_eq!(output_transcript(&msgs), "It is 18 degrees.");
    assert!(position(&msgs, "generationComplete").is_some());
    assert_eq!(fake.conversation(1)[2].text, "get_weather: {\"temp_c\":18}");

    // An id the server did not issue closes the session.
    let unknown = json!({"id": "fc_nope", "name": "get_weather", "response": {}});
    send(&mut ws, json!({"toolResponse": {"functionResponses": [unknown]}})).await;
    let (code, reason) = recv_close(&mut ws).await;
    assert_eq!(code, 1007);
    assert!(reason.contains("\"fc_nope\" does not match a pending function call"), "{reason}");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn barge_in_during_a_pending_call_cancels_it_and_its_late_answer_is_refused() {
    let script = vec![
        LiveScriptedResponse::call("get_weather", json!({"city": "Rome"})),
        LiveScriptedResponse::say("Sure."),
    ];
    let fake = GeminiLiveFake::start(config(script)).await.unwrap();
    let mut ws = connect_setup(&fake, tool_setup(true)).await;
    // Manual activity detection: the caller's turn is what lies between the signals.
    send(&mut ws, json!({"realtimeInput": {"activityStart": {}}})).await;
    speak(&mut ws, 300, true).await;
    send(&mut ws, json!({"realtimeInput": {"activityEnd": {}}})).await;
    let msgs = recv_until(&mut ws, |m| m.get("toolCall").is_some()).await;
    let id = msgs.last().unwrap()["toolCall"]["functionCalls"][0]["id"].as_str().unwrap().to_string();
    send(&mut ws, json!({"realtimeInput": {"activityStart": {}}})).await;
    assert_eq!(recv(&mut ws).await, json!({"toolCallCancellation": {"ids": [id]}}));
    let late = json!({"id": id, "name": "get_weather", "response": {"temp_c": 20}});
    send(&mut ws, json!({"toolResponse": {"functionResponses": [late]}})).await;
    assert_eq!(recv_close(&mut ws).await.0, 1007);

    // The signals belong to manual detection only, and audioStreamEnd to automatic.
    let mut ws = connect_setup(&fake, audio_setup()).await;
    send(&mut ws, json!({"realtimeInput": {"activityStart": {}}})).await;
    assert!(recv_close(&mut ws).await.1.contains("automatic activity detection is disabled"));
    let mut ws = connect_setup(&fake, tool_setup(true)).await;
    send(&mut ws, json!({"realtimeInput": {"audioStreamEnd": true}})).await;
    assert!(recv_close(&mut ws).await.1.contains("automatic activity detection is enabled"));
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn caller_speech_during_model_audio_interrupts_it() {
    let long = LiveScriptedResponse {
        audio_ms: Some(4000),
        ..LiveScriptedResponse::say("A long answer that goes on and on and on.")
    };
    let fake = GeminiLiveFake::start(GeminiLiveFakeConfig { pace: 1.0, ..config(vec![long]) }).await.unwrap();
    let mut ws = connect_setup(&fake, audio_setup()).await;
    say(&mut ws).await;
    recv_until(&mut ws, |m| m["serverContent"].get("modelTurn").is_some()).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    speak(&mut ws, 100, true).await;
    let msgs = recv_until(&mut ws, turn_complete).await;
    let interrupted = position(&msgs, "interrupted").expect("interrupted");
    assert_eq!(interrupted, msgs.len() - 2, "interrupted, then turnComplete: {msgs:#?}");
    assert!(position(&msgs, "generationComplete").is_none());
    assert!(audio_bytes(&msgs) < 24 * 4000 * 2 / 2, "the audio stopped");
    let model = fake.conversation(1).into_iter().rfind(|t| t.role == "model").unwrap();
    assert!(!model.text.is_empty() && model.text.len() < 20, "cut where the caller was: {model:?}");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn go_away_and_a_resumption_handle_restore_the_conversation() {
    let script =
        vec![LiveScriptedResponse::say("First answer."), LiveScriptedResponse::say("Second answer.")];
    let cfg =
        GeminiLiveFakeConfig { go_away_after_ms: Some(5_000), go_away_time_left_ms: 1_500, ..config(script) };
    let fake = GeminiLiveFake::start(cfg).await.unwrap();
    let mut setup = json!({"model": MODEL, "generationConfig": {"responseModalities": ["TEXT"]}, "sessionResumption": {}});
    let mut ws = connect_setup(&fake, setup.clone()).await;
    let first = recv(&mut ws).await;
    assert_eq!(first["sessionResumptionUpdate"]["resumable"], true);
    send(&mut ws, json!({"realtimeInput": {"text": "Hello"}})).await;
    let msgs = recv_until(&mut ws, turn_complete).await;
    let text: String =
        msgs.iter().filter_map(|m| m["serverContent"]["modelTurn"]["parts"][0]["text"].as_str()).collect();
    assert_eq!(text, "First answer.");
    let update = recv(&mut ws).await;
    let handle = update["sessionResumptionUpdate"]["newHandle"].as_str().unwrap().to_string();
    assert!(!handle.is_empty() && update["sessionResumptionUpdate"]["resumable"] == true);
    assert_eq!(recv(&mut ws).await, json!({"goAway": {"timeLeft": "1.5s"}}));

    setup["sessionResumption"] = json!({"handle": handle});
    let mut ws2 = connect_setup(&fake, setup.clone()).await;
    assert_eq!(fake.conversation(2), fake.conversation(1), "the conversation is restored");
    recv(&mut ws2).await; // its own resumption update
    send(&mut ws2, json!({"realtimeInput": {"text": "And then?"}})).await;
    let msgs = recv_until(&mut ws2, turn_complete).await;
    let text: String =
        msgs.iter().filter_map(|m| m["serverContent"]["modelTurn"]["parts"][0]["text"].as_str()).collect();
    assert_eq!(text, "Second answer.", "the script goes on where the session stopped");
    assert_eq!(fake.conversation(2).len(), 4);

    // The first connection is dropped once its time is up.
    assert_eq!(recv_close(&mut ws).await.0, 1011);
    setup["sessionResumption"] = json!({"handle": "no-such-handle"});
    let mut ws3 = connect_with(&fake, Some(KEY), false).await;
    send(&mut ws3, json!({ "setup": setup })).await;
    assert_eq!(recv_close(&mut ws3).await, (1008, "Invalid session resumption handle.".into()));
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn faults_cut_a_turn_or_malform_a_message() {
    let mut cfg = config(vec![LiveScriptedResponse::say("Some words to say out loud.")]);
    cfg.faults.insert(0, Fault::CutAfter { chunks: 2 });
    cfg.faults.insert(1, Fault::Malformed { after: 1 });
    cfg.faults.insert(2, Fault::Status { status: 429, retry_after_s: None });
    let fake = GeminiLiveFake::start(cfg).await.unwrap();

    let mut ws = connect_setup(&fake, audio_setup()).await;
    say(&mut ws).await;
    let mut audio = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => {
                let v: Value = serde_json::from_slice(&b).unwrap();
                audio += usize::from(v["serverContent"].get("modelTurn").is_some());
            }
            Some(Ok(Message::Close(_))) => panic!("a cut has no close frame"),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert_eq!(audio, 2);

    let mut ws = connect_setup(&fake, audio_setup()).await;
    say(&mut ws).await;
    let mut bad = None;
    for _ in 0..20 {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.unwrap().unwrap().unwrap();
        if serde_json::from_slice::<Value>(&msg.clone().into_data()).is_err() {
            bad = Some(msg);
            break;
        }
    }
    assert!(bad.is_some(), "a malformed message arrives");

    let url = format!("{}?key={KEY}", fake.url());
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 429);
            let body: Value = serde_json::from_slice(r.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
        }
        other => panic!("expected HTTP 429, got {other:?}"),
    }
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn audio_stream_end_closes_the_turn_and_no_interruption_lets_the_model_finish() {
    let script =
        vec![LiveScriptedResponse::say("One two three four five six."), LiveScriptedResponse::say("Seven.")];
    let fake = GeminiLiveFake::start(GeminiLiveFakeConfig { pace: 1.0, ..config(script) }).await.unwrap();
    let mut setup = audio_setup();
    setup["realtimeInputConfig"] = json!({"activityHandling": "NO_INTERRUPTION",
        "automaticActivityDetection": {"silenceDurationMs": 5000, "startOfSpeechSensitivity": "START_SENSITIVITY_LOW"}});
    let mut ws = connect_setup(&fake, setup).await;
    // 5 s of silence would be needed; the microphone going off ends the turn at once.
    speak(&mut ws, 400, true).await;
    send(&mut ws, json!({"realtimeInput": {"audioStreamEnd": true}})).await;
    recv_until(&mut ws, |m| m["serverContent"].get("modelTurn").is_some()).await;
    speak(&mut ws, 400, true).await;
    let msgs = recv_until(&mut ws, turn_complete).await;
    assert!(position(&msgs, "interrupted").is_none(), "no barge-in: {msgs:#?}");
    assert!(position(&msgs, "generationComplete").is_some());
    assert_eq!(fake.conversation(1).iter().filter(|t| t.role == "model").count(), 1);
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stall_fault_stops_the_turn_with_the_socket_open() {
    let mut cfg = config(vec![LiveScriptedResponse::say("Some words to say out loud.")]);
    cfg.faults.insert(0, Fault::StallAfter { chunks: 1 });
    let fake = GeminiLiveFake::start(cfg).await.unwrap();
    let mut ws = connect_setup(&fake, json!({"model": MODEL})).await;
    send(&mut ws, json!({"realtimeInput": {"text": "Hi"}})).await;
    let first = recv(&mut ws).await;
    assert!(first["serverContent"]["modelTurn"]["parts"][0]["text"].is_string(), "{first}");
    let next = tokio::time::timeout(Duration::from_secs(60), ws.next()).await;
    assert!(next.is_err(), "nothing after the stall, and no close: {next:?}");
    assert!(fake.closes().is_empty());
    fake.shutdown().await;
}
