//! Drives the ElevenLabs agent fake with a raw WebSocket client (and reqwest for signed URLs)
//! and checks it behaves like ElevenLabs' `/v1/convai/conversation`
//! (shared/specs/elevenlabs/convai-websocket.asyncapi.yml).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voxpipe_fakes::elevenlabs_agent::{
    AgentConfig, AgentScriptedResponse, AgentToolCall, ElevenLabsAgentFake, ElevenLabsAgentFakeConfig,
};
use voxpipe_fakes::fault::Fault;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const KEY: &str = "fake-xi-key";

fn config(responses: Vec<AgentScriptedResponse>) -> ElevenLabsAgentFakeConfig {
    let mut public = AgentConfig::public("agent_pub");
    public.first_message = "Hi {{user_name}}.".into();
    public.allow_overrides = vec!["prompt".into()];
    ElevenLabsAgentFakeConfig {
        api_key: Some(KEY.into()),
        agents: vec![public, AgentConfig::private("agent_priv")],
        responses,
        first_audio_delay_ms: 20,
        delta_ms: 100,
        pace: 4.0,
        ping_interval_ms: 0,
        ..ElevenLabsAgentFakeConfig::default()
    }
}

async fn connect(url: &str) -> Ws {
    let req = url.into_client_request().unwrap();
    tokio_tungstenite::connect_async_with_config(req, None, true).await.expect("connect").0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next server message or the close (as `{"close": code, "reason": …}`).
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg =
            tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("no message within 30 s");
        match msg {
            None => return json!({"ended": true}),
            Some(Err(_)) => return json!({"ended": true}),
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).expect("server sent JSON"),
            Some(Ok(Message::Close(Some(f)))) => {
                return json!({"close": u16::from(f.code), "reason": f.reason.as_str()});
            }
            Some(Ok(Message::Close(None))) => return json!({"close": 1005}),
            Some(Ok(_)) => {}
        }
    }
}

/// The next message of type `kind` (others skipped), or panics on a close.
async fn expect(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = recv(ws).await;
        if v["type"] == kind {
            return v;
        }
        assert!(v.get("close").is_none() && v.get("ended").is_none(), "waiting for {kind}, got {v}");
    }
}

/// Reads until a close frame and returns its code and reason.
async fn closed(ws: &mut Ws) -> (u16, String) {
    loop {
        let v = recv(ws).await;
        if let Some(code) = v["close"].as_u64() {
            return (code as u16, v["reason"].as_str().unwrap_or_default().to_string());
        }
        assert!(v.get("ended").is_none(), "ended without a close frame");
    }
}

fn init() -> Value {
    json!({"type": "conversation_initiation_client_data", "dynamic_variables": {"user_name": "John"}})
}

/// `ms` of 16 kHz PCM16: a loud tone (speech to the VAD) or silence.
fn audio(ms: usize, loud: bool) -> Value {
    let n = ms * 16;
    let mut bytes = Vec::with_capacity(n * 2);
    for i in 0..n {
        let s = if loud { ((i as f64 * 0.12).sin() * 8000.0) as i16 } else { 0 };
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    json!({"user_audio_chunk": B64.encode(bytes)})
}

/// Says something: 400 ms of speech then 700 ms of silence, in 100 ms chunks.
async fn speak(ws: &mut Ws) {
    for _ in 0..4 {
        send(ws, audio(100, true)).await;
    }
    for _ in 0..7 {
        send(ws, audio(100, false)).await;
    }
}

/// Reads the reply's audio to its end (no more audio for a second), returning the event ids.
async fn drain_audio(ws: &mut Ws) -> Vec<i64> {
    let mut ids = Vec::new();
    while let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["type"] == "audio" {
            ids.push(v["audio_event"]["event_id"].as_i64().unwrap());
        }
    }
    ids
}

#[tokio::test(start_paused = true)]
async fn initiation_gets_metadata_then_the_first_message_with_dynamic_variables() {
    let fake = ElevenLabsAgentFake::start(config(vec![])).await.unwrap();
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    let mut first = init();
    first["conversation_config_override"] =
        json!({"agent": {"prompt": {"prompt": "Be brief, {{user_name}}."}}});
    send(&mut ws, first).await;
    let meta = recv(&mut ws).await;
    assert_eq!(meta["type"], "conversation_initiation_metadata");
    let m = &meta["conversation_initiation_metadata_event"];
    assert!(m["conversation_id"].as_str().unwrap().starts_with("conv_"));
    assert_eq!(m["agent_output_audio_format"], "pcm_16000");
    assert_eq!(m["user_input_audio_format"], "pcm_16000");
    let said = recv(&mut ws).await;
    assert_eq!(
        said,
        json!({"type": "agent_response", "agent_response_event": {"agent_response": "Hi John."}})
    );
    let ids = drain_audio(&mut ws).await;
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>());
    assert!(ids.len() >= 3);
    assert_eq!(fake.conversation(1)[0].text, "Be brief, John.");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn refusals_are_close_frames_as_strict_as_elevenlabs() {
    let fake = ElevenLabsAgentFake::start(config(vec![])).await.unwrap();
    let mut ws = connect(&fake.conversation_url("agent_nope")).await;
    assert_eq!(closed(&mut ws).await.0, 1008);
    let mut ws = connect(&fake.conversation_url("agent_priv")).await;
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("signed URL"), "{reason}");
    // A message before the initiation, an override the agent does not allow, a malformed one.
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    send(&mut ws, json!({"type": "user_activity"})).await;
    assert_eq!(closed(&mut ws).await.0, 1008);
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    let mut bad = init();
    bad["conversation_config_override"] = json!({"agent": {"first_message": "Yo"}});
    send(&mut ws, bad).await;
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "Override for field 'first_message' is not allowed by config.")
    );
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    send(&mut ws, json!({"type": "conversation_initiation_client_data"})).await;
    let mut ws = {
        // Missing dynamic variable in the first message.
        let (code, reason) = closed(&mut ws).await;
        assert_eq!(code, 1008);
        assert!(reason.contains("user_name"), "{reason}");
        connect(&fake.conversation_url("agent_pub")).await
    };
    send(&mut ws, init()).await;
    expect(&mut ws, "conversation_initiation_metadata").await;
    send(&mut ws, json!({"type": "client_tool_result", "tool_call_id": "t", "result": {"not": "a string"}}))
        .await;
    assert_eq!(closed(&mut ws).await.0, 1008);
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(closed(&mut ws).await.0, 1007);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_private_agent_takes_a_signed_url_once() {
    let mut cfg = config(vec![]);
    cfg.signature_ttl_ms = 60_000;
    let fake = ElevenLabsAgentFake::start(cfg).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/convai/conversation/get-signed-url?agent_id=agent_priv", fake.http_url());
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["detail"]["status"], "needs_authorization");
    let r = http.get(&url).header("xi-api-key", "wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["detail"]["status"], "invalid_api_key");
    let other = url.replace("agent_priv", "agent_nope");
    let r = http.get(&other).header("xi-api-key", KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http.get(&url).header("xi-api-key", KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let signed = r.json::<Value>().await.unwrap()["signed_url"].as_str().unwrap().to_string();
    assert!(
        signed.starts_with(&format!("{}?agent_id=agent_priv&conversation_signature=", fake.url())),
        "{signed}"
    );
    let mut ws = connect(&signed).await;
    send(&mut ws, init()).await;
    expect(&mut ws, "conversation_initiation_metadata").await;
    // Used once: refused the second time.
    let mut again = connect(&signed).await;
    let (code, reason) = closed(&mut again).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("already used"), "{reason}");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_expired_signature_is_refused() {
    let mut cfg = config(vec![]);
    cfg.signature_ttl_ms = 1_000;
    cfg.api_key = None;
    let fake = ElevenLabsAgentFake::start(cfg).await.unwrap();
    let url = format!("{}/v1/convai/conversation/get-signed-url?agent_id=agent_priv", fake.http_url());
    let r = reqwest::Client::new().get(&url).header("xi-api-key", "any").send().await.unwrap();
    let signed = r.json::<Value>().await.unwrap()["signed_url"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ws = connect(&signed).await;
    let (code, reason) = closed(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "Conversation signature expired."));
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn two_spoken_turns_get_transcripts_and_responses() {
    let replies = vec![
        AgentScriptedResponse::say("First answer.").heard("hello there"),
        AgentScriptedResponse::say("Second answer.").heard("and again"),
    ];
    let fake = ElevenLabsAgentFake::start(config(replies)).await.unwrap();
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    send(&mut ws, init()).await;
    expect(&mut ws, "conversation_initiation_metadata").await;
    let greeting = drain_audio(&mut ws).await;
    for (heard, said) in [("hello there", "First answer."), ("and again", "Second answer.")] {
        speak(&mut ws).await;
        let v = expect(&mut ws, "user_transcript").await;
        assert_eq!(v["user_transcription_event"]["user_transcript"], heard);
        let v = recv(&mut ws).await;
        assert_eq!(v["tentative_agent_response_internal_event"]["tentative_agent_response"], said);
        let v = recv(&mut ws).await;
        assert_eq!(v["agent_response_event"]["agent_response"], said);
        let ids = drain_audio(&mut ws).await;
        assert!(ids[0] > *greeting.last().unwrap());
    }
    let roles: Vec<String> = fake.conversation(1).iter().map(|t| format!("{}:{}", t.role, t.text)).collect();
    assert_eq!(
        roles,
        [
            "system:You are a helpful voice assistant.",
            "agent:Hi John.",
            "user:hello there",
            "agent:First answer.",
            "user:and again",
            "agent:Second answer."
        ]
    );
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_tool_round_trip_goes_on_with_the_next_reply() {
    let call = AgentScriptedResponse {
        when: Some("weather".into()),
        tool_call: Some(AgentToolCall {
            tool_name: "get_weather".into(),
            parameters: json!({"city": "Paris"}),
            tool_call_id: None,
        }),
        ..AgentScriptedResponse::say("")
    };
    let fake = ElevenLabsAgentFake::start(config(vec![call, AgentScriptedResponse::say("It is sunny.")]))
        .await
        .unwrap();
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    send(&mut ws, init()).await;
    drain_audio(&mut ws).await;
    send(&mut ws, json!({"type": "contextual_update", "text": "User is on the weather page"})).await;
    send(&mut ws, json!({"type": "user_message", "text": "What's the weather?"})).await;
    let v = expect(&mut ws, "client_tool_call").await;
    let c = &v["client_tool_call"];
    assert_eq!((c["tool_name"].as_str(), &c["parameters"]), (Some("get_weather"), &json!({"city": "Paris"})));
    let id = c["tool_call_id"].as_str().unwrap().to_string();
    send(
        &mut ws,
        json!({"type": "client_tool_result", "tool_call_id": id, "result": "sunny, 21 C", "is_error": false}),
    )
    .await;
    let v = expect(&mut ws, "agent_response").await;
    assert_eq!(v["agent_response_event"]["agent_response"], "It is sunny.");
    drain_audio(&mut ws).await;
    let turns = fake.conversation(1);
    assert!(turns.iter().any(|t| t.role == "context" && t.text == "User is on the weather page"));
    assert!(turns.iter().any(|t| t.role == "tool" && t.text == "get_weather: sunny, 21 C"));
    // An id the agent never gave is refused.
    send(&mut ws, json!({"type": "client_tool_result", "tool_call_id": id, "result": "again"})).await;
    assert_eq!(closed(&mut ws).await.0, 1008);
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn barge_in_interrupts_and_corrects_the_response_to_the_words_heard() {
    let long = "This is a long answer that goes on and on for quite a while, long enough to interrupt.";
    let mut cfg = config(vec![AgentScriptedResponse::say(long), AgentScriptedResponse::say("Sure.")]);
    cfg.pace = 1.0;
    cfg.agents[0].first_message = String::new();
    let fake = ElevenLabsAgentFake::start(cfg).await.unwrap();
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    send(&mut ws, init()).await;
    expect(&mut ws, "conversation_initiation_metadata").await;
    send(&mut ws, json!({"type": "user_message", "text": "Tell me everything"})).await;
    expect(&mut ws, "agent_response").await;
    let mut last = 0;
    for _ in 0..10 {
        last = expect(&mut ws, "audio").await["audio_event"]["event_id"].as_i64().unwrap();
    }
    for _ in 0..4 {
        send(&mut ws, audio(100, true)).await;
    }
    let v = expect(&mut ws, "interruption").await;
    let interrupted = v["interruption_event"]["event_id"].as_i64().unwrap();
    assert!(interrupted >= last);
    let v = expect(&mut ws, "agent_response_correction").await;
    let c = &v["agent_response_correction_event"];
    assert_eq!(c["original_agent_response"], long);
    let corrected = c["corrected_agent_response"].as_str().unwrap();
    assert!(
        !corrected.is_empty() && long.starts_with(corrected) && corrected.len() < long.len(),
        "{corrected}"
    );
    for _ in 0..7 {
        send(&mut ws, audio(100, false)).await;
    }
    let v = expect(&mut ws, "agent_response").await;
    assert_eq!(v["agent_response_event"]["agent_response"], "Sure.");
    let ids = drain_audio(&mut ws).await;
    assert!(ids.iter().all(|id| *id > interrupted), "{ids:?} after {interrupted}");
    assert!(fake.conversation(1).iter().any(|t| t.role == "agent" && t.text == corrected));
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pings_want_pongs_and_the_socket_closes_without_them() {
    let mut cfg = config(vec![]);
    cfg.ping_interval_ms = 1_000;
    cfg.pong_timeout_ms = 3_000;
    cfg.agents[0].first_message = String::new();
    let fake = ElevenLabsAgentFake::start(cfg).await.unwrap();
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    send(&mut ws, init()).await;
    expect(&mut ws, "conversation_initiation_metadata").await;
    let ping = expect(&mut ws, "ping").await;
    assert!(ping["ping_event"].get("ping_ms").is_none(), "{ping}");
    let id = ping["ping_event"]["event_id"].clone();
    send(&mut ws, json!({"type": "pong", "event_id": id})).await;
    let ping = expect(&mut ws, "ping").await;
    assert!(ping["ping_event"]["ping_ms"].is_u64(), "{ping}");
    // No more pongs: closed once the oldest ping has waited 3 s.
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("pong"), "{reason}");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_cut_fault_drops_the_connection_mid_reply() {
    let mut cfg = config(vec![]);
    cfg.faults.insert(0, Fault::CutAfter { chunks: 2 });
    let fake = ElevenLabsAgentFake::start(cfg).await.unwrap();
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    send(&mut ws, init()).await;
    expect(&mut ws, "conversation_initiation_metadata").await;
    let mut audio = 0;
    loop {
        let v = recv(&mut ws).await;
        if v.get("ended").is_some() {
            break;
        }
        assert!(v.get("close").is_none(), "a cut sends no close frame: {v}");
        audio += usize::from(v["type"] == "audio");
    }
    assert_eq!(audio, 2);
    assert_eq!(fake.closes()[0].code, 1006);
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_tool_call_times_out_and_the_agent_goes_on() {
    let mut cfg = config(vec![
        AgentScriptedResponse::call("lookup", json!({})),
        AgentScriptedResponse::say("Moving on."),
    ]);
    cfg.tool_timeout_ms = 2_000;
    cfg.agents[0].first_message = String::new();
    let fake = ElevenLabsAgentFake::start(cfg).await.unwrap();
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    send(&mut ws, init()).await;
    expect(&mut ws, "conversation_initiation_metadata").await;
    send(&mut ws, json!({"type": "user_message", "text": "Look it up"})).await;
    expect(&mut ws, "client_tool_call").await;
    let v = expect(&mut ws, "agent_response").await;
    assert_eq!(v["agent_response_event"]["agent_response"], "Moving on.");
    let turns = fake.conversation(1);
    assert!(turns.iter().any(|t| t.role == "tool" && t.text.starts_with("lookup: error:")), "{turns:?}");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn malformed_and_stall_faults_hit_the_reply() {
    let mut cfg = config(vec![]);
    cfg.faults.insert(0, Fault::Malformed { after: 1 });
    cfg.faults.insert(1, Fault::StallAfter { chunks: 1 });
    let fake = ElevenLabsAgentFake::start(cfg).await.unwrap();
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    send(&mut ws, init()).await;
    expect(&mut ws, "conversation_initiation_metadata").await;
    expect(&mut ws, "audio").await;
    let raw = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => break t.to_string(),
            _ => continue,
        }
    };
    assert!(serde_json::from_str::<Value>(&raw).is_err(), "{raw}");
    let mut ws = connect(&fake.conversation_url("agent_pub")).await;
    send(&mut ws, init()).await;
    expect(&mut ws, "conversation_initiation_metadata").await;
    assert_eq!(drain_audio(&mut ws).await.len(), 1);
    fake.shutdown().await;
}
