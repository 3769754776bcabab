//! The voice page in a real browser: Debian's headless Chromium, its fake microphone fed from a
//! WAV of espeak-ng speech, talking over WebRTC to `voxpipe serve` and the in-process provider
//! fakes. Driven through the Chrome DevTools Protocol (a WebSocket; no driver to install):
//! the page starts the call itself (`#autostart=1`), the test reads the page's state
//! (`window.voxpipe`) and the server's event log, ends the call from the page, and keeps a
//! screenshot (`target/browser-artifacts/`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voxpipe_e2e::chromium::{Browser, Cdp};
use voxpipe_e2e::*;

const API_KEY: &str = "op-key-123";

struct Server {
    app: Arc<voxpipe_serve::App>,
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    dir: tempfile::TempDir,
}

impl Server {
    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

async fn start_server(pipelines: &[(&str, String)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"{url}\"\nrecordings_dir = \"{}\"\n\
         [auth]\napi_keys_env = [\"VOXPIPE_API_KEY\"]\n[web]\nmint_per_minute = 3\n",
        dir.path().join("calls").display()
    );
    let path = write_serve_file(dir.path(), serve, pipelines);
    let loaded = voxpipe_serve::config::load(&path, &[]).unwrap();
    let env = voxpipe_config::Env::from_vars([
        ("TWILIO_ACCOUNT_SID".to_string(), "AC0".to_string()),
        ("TWILIO_AUTH_TOKEN".into(), "unused".into()),
        ("VOXPIPE_API_KEY".into(), API_KEY.into()),
        ("FAKE_API_KEY".into(), "sk-test".into()),
    ]);
    let app = voxpipe_serve::App::new(loaded, env).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(voxpipe_serve::serve_on(app.clone(), listener, stop.clone(), None));
    Server { app, url, stop, task, dir }
}

fn cascade_pipeline(asr: &str, llm: &str, tts: &str) -> String {
    fake_cascade_pipeline("cascade-web", asr, llm, tts)
}

/// A native pipeline on the Realtime fake (its server VAD decides turns).
fn native_pipeline(url: &str) -> String {
    format!(
        r#"name = "native-web"
[input]
kind = "wav"
path = "unused.wav"
[output]
kind = "wav"
path = "unused-reply.wav"
[[stages]]
kind = "realtime.openai"
url = "{url}"
api_key_env = "FAKE_API_KEY"
transcription = {{ model = "gpt-4o-mini-transcribe" }}
"#
    )
}

/// Mints a session token as an app's backend would, and opens the page on `pipeline` with
/// `call` (written to the server's directory) as the microphone; the page starts the call
/// itself.
async fn open_page(server: &Server, pipeline: &str, call: &Call, extra: &str) -> (Browser, Cdp) {
    let wav = server.dir.path().join("caller.wav");
    call.write(&wav);
    let session: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/web/session", server.url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap();
    let url = format!("{}/#token={token}&pipeline={pipeline}&autostart=1{extra}", server.url);
    let microphone = [
        "--autoplay-policy=no-user-gesture-required".to_string(),
        "--use-fake-ui-for-media-stream".to_string(),
        "--use-fake-device-for-media-stream".to_string(),
        "--allow-loopback-in-peer-connection".to_string(),
        format!("--use-file-for-fake-audio-capture={}%noloop", wav.display()),
    ];
    let browser = Browser::launch(&url, &microphone).await;
    let page = browser.page().await;
    (browser, page)
}

/// Keeps a screenshot of the page as a test artifact and checks it is not blank.
async fn screenshot(page: &mut Cdp, name: &str) {
    use base64::Engine;
    let shot = page.call("Page.captureScreenshot", serde_json::json!({ "format": "png" })).await;
    let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
    let path = artifacts().join(name);
    std::fs::write(&path, &png).unwrap();
    // A blank 1280×900 page compresses to a few KB; the call's page is far richer.
    assert!(png.len() > 20_000, "screenshot of {} bytes looks blank ({})", png.len(), path.display());
}

/// The one call's summary and event log, once the server has written them.
async fn call_record(server: &Server) -> (serde_json::Value, Vec<serde_json::Value>) {
    let calls = server.dir.path().join("calls");
    for _ in 0..150 {
        if let Some(dir) = std::fs::read_dir(&calls).ok().and_then(|mut d| d.next()).and_then(Result::ok)
            && let Ok(bytes) = std::fs::read(dir.path().join("call.json"))
        {
            return (serde_json::from_slice(&bytes).unwrap(), read_events(&dir.path().join("events.jsonl")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no call summary under {}", calls.display());
}

fn artifacts() -> PathBuf {
    let d = repo_path("target/browser-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What the Realtime fake heard on its first connection (24 kHz PCM16, as appended or decoded
/// from the WebRTC track) and the client events other than audio, for a failing test to print.
fn fake_view(fake: &voxpipe_fakes::realtime::RealtimeFake) -> String {
    let pcm: Vec<i16> =
        fake.input_audio(1).chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let heard = active_regions(&pcm, 24_000, 300, 200);
    let events: Vec<String> = fake
        .client_events()
        .iter()
        .filter(|e| e.json["type"] != "input_audio_buffer.append")
        .map(|e| format!("{:?} {}", e.at, e.json["type"]))
        .collect();
    format!("the fake heard sound at (ms) {heard:?}\nthe client sent {events:?}")
}

/// Polls the page's state until `done` holds (or 40 s pass) and returns the last state.
async fn wait_page(
    cdp: &mut Cdp,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    try_wait_page(cdp, done).await.unwrap_or_else(|last| panic!("{what}: the page never got there: {last}"))
}

/// [`wait_page`] that hands back the last state instead of panicking, so a test can add what
/// the other side saw before it fails.
async fn try_wait_page(
    cdp: &mut Cdp,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, serde_json::Value> {
    let mut last = serde_json::Value::Null;
    for _ in 0..400 {
        let s = cdp.eval("JSON.stringify(window.voxpipe || null)").await;
        last = serde_json::from_str(s.as_str().unwrap_or("null")).unwrap_or_default();
        if done(&last) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_call_from_the_page_over_webrtc_captions_both_sides_and_plays_the_reply() {
    cascade_call("", "cascade-call.png").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_fallback_carries_the_same_call_without_udp() {
    cascade_call("&transport=ws", "cascade-call-websocket.png").await;
}

/// A cascade call from the page, over WebRTC or (with `&transport=ws`) the fallback socket.
async fn cascade_call(extra: &str, shot: &str) {
    use voxpipe_fakes::{openai_chat, openai_speech, transcription};
    let asr = transcription::TranscriptionFake::start(transcription::TranscriptionFakeConfig {
        transcripts: vec!["Where is my order?".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let llm = openai_chat::ChatFake::start(openai_chat::ChatFakeConfig {
        replies: vec![openai_chat::ScriptedReply::text("Your order ships tomorrow morning.")],
        ..Default::default()
    })
    .await
    .unwrap();
    let tts = openai_speech::SpeechFake::start(openai_speech::SpeechFakeConfig::default()).await.unwrap();
    let server =
        start_server(&[("cascade", cascade_pipeline(&asr.base_url(), &llm.base_url(), &tts.base_url()))])
            .await;

    // The caller: silence while the page connects, a question, then quiet for the reply.
    let call = Call::default().silence(2500).say("question", "Where is my order?").silence(12_000);
    let (browser, mut page) = open_page(&server, "cascade", &call, extra).await;

    let state = wait_page(&mut page, "a reply caption and audio", |s| {
        let captions = s["captions"].as_array().map(Vec::as_slice).unwrap_or_default();
        captions.iter().any(|c| c["who"] == "assistant")
            && s["bytesReceived"].as_u64().unwrap_or(0) > 4000
            && s["turns"]["1"]["voice_to_voice_ms"].is_u64()
            && s["interims"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert_eq!(state["status"], "live", "{state}");
    let captions = state["captions"].as_array().unwrap();
    assert_eq!(captions[0], serde_json::json!({ "who": "user", "text": "Where is my order?" }), "{state}");
    assert!(
        captions.iter().any(|c| c["who"] == "assistant" && c["text"] == "Your order ships tomorrow morning."),
        "{state}"
    );
    // Live (interim) captions came before the finals.
    assert!(state["interims"].as_u64().unwrap_or(0) > 0, "{state}");
    // The per-turn latency readout got its number.
    assert!(state["turns"]["1"]["voice_to_voice_ms"].as_u64().is_some(), "{state}");
    // The transcriber heard the browser's audio (Opus decoded at 16 kHz).
    let heard = asr.requests()[0].wav.clone().unwrap();
    assert_eq!(heard.sample_rate, 16_000);

    // Let the reply finish, keep a screenshot, then hang up from the page.
    tokio::time::sleep(Duration::from_secs(3)).await;
    screenshot(&mut page, shot).await;
    page.eval("document.getElementById('end').click()").await;

    // The server's record of the call: ended by the page, both sides in the log.
    let (summary, _) = call_record(&server).await;
    assert_eq!(summary["outcome"], "hangup", "{summary}");
    assert!(summary["call_sid"].as_str().unwrap().starts_with("WR"), "{summary}");
    let t = summary["transcript"].as_array().unwrap();
    assert!(t.contains(&"user: Where is my order?".into()), "{summary}");
    assert!(t.contains(&"assistant: Your order ships tomorrow morning.".into()), "{summary}");
    // The recording: the caller on the left as received, the agent on the right as sent.
    let path = summary["recording"].as_str().unwrap_or_else(|| panic!("no recording: {summary}"));
    let mut wav = hound::WavReader::open(path).unwrap();
    assert_eq!((wav.spec().channels, wav.spec().sample_rate), (2, 16_000));
    let samples: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
    let loud = |ch: usize| samples.iter().skip(ch).step_by(2).filter(|s| s.unsigned_abs() > 1000).count();
    assert!(loud(0) > 1600 && loud(1) > 1600, "caller {} / agent {} loud samples", loud(0), loud(1));
    assert!(samples.len() / 2 > 5 * 16_000, "the whole call: {} samples", samples.len() / 2);
    assert_eq!(server.app.active_calls(), 0);
    drop(browser);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_call_from_the_page_is_interrupted_by_the_caller_and_truncated() {
    use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig, ScriptedResponse};
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![
            ScriptedResponse {
                audio_ms: Some(9000),
                user_transcript: Some("Where is my order?".into()),
                ..ScriptedResponse::say(
                    "Let me tell you a long story about your order and its journey to you.",
                )
            },
            ScriptedResponse {
                user_transcript: Some("Wait, stop.".into()),
                ..ScriptedResponse::say("Sure, go ahead.")
            },
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let server = start_server(&[("native", native_pipeline(&fake.url()))]).await;
    // The question, then the caller speaks over the nine-second reply. The barge-in lands
    // about four seconds into the reply: Chromium's echo canceller (the page asks for it, as a
    // real page must) damps the microphone hard while it converges in the first seconds of
    // playout, which a barge-in at two seconds hit on a slow CI machine.
    let call = Call::default()
        .silence(2500)
        .say("question", "Where is my order?")
        .silence(5000)
        .say("barge", "Wait, stop, please wait a moment.")
        .silence(6000);
    let (browser, mut page) = open_page(&server, "native", &call, "").await;

    let state = try_wait_page(&mut page, |s| {
        let captions = s["captions"].as_array().map(Vec::as_slice).unwrap_or_default();
        captions.iter().any(|c| c["text"] == "Sure, go ahead.") && s["interims"].as_u64().unwrap_or(0) > 0
    })
    .await
    .unwrap_or_else(|last| {
        panic!("the barge-in and the second reply: the page never got there: {last}\n{}", fake_view(&fake))
    });
    let captions = state["captions"].as_array().unwrap();
    assert_eq!(captions[0], serde_json::json!({ "who": "user", "text": "Where is my order?" }), "{state}");
    assert!(captions.iter().any(|c| c["who"] == "user" && c["text"] == "Wait, stop."), "{state}");
    assert!(state["bytesReceived"].as_u64().unwrap() > 4000, "reply audio reached the browser: {state}");
    assert!(state["interims"].as_u64().unwrap_or(0) > 0, "live captions: {state}");
    screenshot(&mut page, "native-call.png").await;
    page.eval("document.getElementById('end').click()").await;

    let (summary, events) = call_record(&server).await;
    assert_eq!(summary["outcome"], "hangup", "{summary}");
    // The long reply was cut where the caller stopped hearing it: after it started, well
    // before its nine seconds.
    let truncate = events_of(&events, "truncate");
    assert_eq!(truncate.len(), 1, "{events:?}");
    let audio_end = truncate[0]["audio_end_ms"].as_u64().unwrap();
    assert!((300..8000).contains(&audio_end), "truncated at {audio_end} ms");
    let finished = events_of(&events, "playout_finished");
    assert!(finished.iter().any(|e| e["interrupted"] == true), "{finished:?}");
    // Playout truth: the page reported what it was playing; the server knows the ear's lag.
    let delay = &summary["playout_delay_ms"];
    assert!(delay["reports"].as_u64().unwrap_or(0) > 5, "{summary}");
    assert!(delay["p95_ms"].as_u64().unwrap() < 2000, "{summary}");
    eprintln!(
        "WebRTC playout delay (server send -> page playout): p50 {} ms, p95 {} ms over {} reports; browser jitter buffer {} ms",
        delay["p50_ms"], delay["p95_ms"], delay["reports"], state["jitterBufferMs"]
    );
    drop(browser);
    server.stop().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_endpoints_refuse_bad_tokens_origins_and_offers_and_limit_minting() {
    let server = start_server(&[(
        "cascade",
        cascade_pipeline("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1"),
    )])
    .await;
    let http = reqwest::Client::new();
    let offer_url = format!("{}/webrtc/offer", server.url);
    // The page itself is public and carries no secret.
    let page = http.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("RTCPeerConnection"));

    // Minting needs the operator key, and is limited per address (3 a minute here).
    let r = http.post(format!("{}/web/session", server.url)).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let r = http.post(format!("{}/web/session", server.url)).bearer_auth(API_KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        tokens.push(r.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_string());
    }
    let r = http.post(format!("{}/web/session", server.url)).bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let token = &tokens[0];

    // No token, a forged one, the operator key instead of a session token.
    let body = serde_json::json!({ "sdp": "v=0", "pipeline": "cascade" });
    for bearer in [None, Some("v1.9999999999.bm9uY2U.forged"), Some(API_KEY)] {
        let mut req = http.post(&offer_url).json(&body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{bearer:?}");
    }
    // A page of another origin.
    let r = http
        .post(&offer_url)
        .bearer_auth(token)
        .header("Origin", "https://evil.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A malformed offer, an unknown pipeline, a body that is not an offer: clear 4xx errors.
    let r = http.post(&offer_url).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let e = r.json::<serde_json::Value>().await.unwrap();
    assert!(e["error"].as_str().unwrap().starts_with("malformed SDP offer"), "{e}");
    let r = http
        .post(&offer_url)
        .bearer_auth(token)
        .json(&serde_json::json!({ "sdp": "v=0", "pipeline": "nope" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http.post(&offer_url).bearer_auth(token).body("{\"hello\": 1}").send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Nothing was started, nothing is held.
    assert_eq!(server.app.active_calls(), 0);
    let config: serde_json::Value = http
        .get(format!("{}/web/config", server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["pipelines"][0]["name"], "cascade", "{config}");
    server.stop().await;
}

/// A native pipeline that can go browser-direct, with a tool the server runs.
fn direct_pipeline(url: &str) -> String {
    format!(
        r#"{}
[tools.get_order_status]
description = "Look up the delivery status of an order by its number."
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string" }} }}, required = ["order_id"] }}
handler = {{ kind = "command", program = "{}" }}
"#,
        native_pipeline(url),
        repo_path("scripts/tools/order-status.sh").display()
    )
}

/// The Realtime fake for the direct path: a tool call, a long answer to interrupt, a short one.
async fn direct_fake() -> voxpipe_fakes::realtime::RealtimeFake {
    use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig, ScriptedFunctionCall, ScriptedResponse};
    RealtimeFake::start(RealtimeFakeConfig {
        api_key: Some(voxpipe_fakes::realtime::FakeApiKey("sk-test".into())),
        responses: vec![
            ScriptedResponse {
                user_transcript: Some("Where is my order A1?".into()),
                function_call: Some(ScriptedFunctionCall {
                    name: "get_order_status".into(),
                    arguments: r#"{"order_id":"A1"}"#.into(),
                    call_id: None,
                }),
                ..ScriptedResponse::say("Let me check.")
            },
            ScriptedResponse {
                audio_ms: Some(9000),
                ..ScriptedResponse::say(
                    "Your order A1 shipped with UPS and arrives tomorrow; here is the whole route it took.",
                )
            },
            ScriptedResponse {
                user_transcript: Some("Wait, stop.".into()),
                ..ScriptedResponse::say("Sure, go ahead.")
            },
            // Chromium's echo canceller can chop the barge-in, spoken over the reply, into two
            // bursts the provider's VAD hears as two turns (a real one would too): the second
            // gets the same answer rather than the script starting over.
            ScriptedResponse {
                user_transcript: Some("Please wait a moment.".into()),
                ..ScriptedResponse::say("Sure, go ahead.")
            },
        ],
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_pipeline_goes_browser_direct_with_an_ephemeral_key_and_its_tools_run_on_the_server() {
    let fake = direct_fake().await;
    let server = start_server(&[("native", direct_pipeline(&fake.url()))]).await;
    let call = Call::default()
        .silence(2500)
        .say("question", "Where is my order A1?")
        .silence(5500)
        .say("barge", "Wait, stop, please wait a moment.")
        .silence(6000);
    let (browser, mut page) = open_page(&server, "native", &call, "&mode=direct").await;

    let state = try_wait_page(&mut page, |s| {
        let captions = s["captions"].as_array().map(Vec::as_slice).unwrap_or_default();
        captions.iter().any(|c| c["text"] == "Sure, go ahead.")
    })
    .await
    .unwrap_or_else(|last| {
        panic!(
            "the tool, the barge-in and the last reply: the page never got there: {last}\n{}",
            fake_view(&fake)
        )
    });
    assert_eq!(state["transport"], "direct", "{state}");
    assert_eq!(state["status"], "live", "{state}");
    assert!(state["error"].is_null(), "{state}");
    let captions = state["captions"].as_array().unwrap();
    assert_eq!(captions[0], serde_json::json!({ "who": "user", "text": "Where is my order A1?" }), "{state}");
    assert!(captions.iter().any(|c| c["who"] == "assistant" && c["text"] == "Let me check."), "{state}");
    assert!(captions.iter().any(|c| c["who"] == "user" && c["text"] == "Wait, stop."), "{state}");
    // The tool ran on the server, with the pipeline's runtime, and its output went to the model.
    let tools = state["tools"].as_array().unwrap();
    assert!(
        tools.iter().any(|t| t["name"] == "get_order_status"
            && t["result"].as_str().is_some_and(|r| r.contains("shipped"))),
        "{state}"
    );
    let outputs: Vec<_> = fake
        .client_events()
        .into_iter()
        .filter(|e| {
            e.json["type"] == "conversation.item.create" && e.json["item"]["type"] == "function_call_output"
        })
        .collect();
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert!(outputs[0].json["item"]["output"].as_str().unwrap().contains("\"status\":\"shipped\""));
    // The session came preset from the client secret: the page sent no session.update.
    assert!(!fake.client_events().iter().any(|e| e.json["type"] == "session.update"));
    // Reply audio reached the browser over the provider's track; the barge-in cleared the
    // provider's output buffer and truncated the long answer there.
    assert!(state["bytesReceived"].as_u64().unwrap() > 4000, "{state}");
    let rt = state["rtEvents"].as_array().unwrap();
    for ty in ["output_audio_buffer.started", "output_audio_buffer.cleared", "conversation.item.truncated"] {
        assert!(rt.iter().any(|t| t == ty), "{ty} missing: {state}");
    }
    assert!(state["turns"]["1"]["voice_to_voice_ms"].is_u64(), "{state}");
    // The page never held the API key.
    let leaked = page.eval("document.documentElement.outerHTML.includes('sk-test') || JSON.stringify(window.voxpipe).includes('sk-test')").await;
    assert_eq!(leaked, false);
    screenshot(&mut page, "direct-call.png").await;
    page.eval("document.getElementById('end').click()").await;
    // No call ran through voxpipe's media path.
    assert_eq!(server.app.active_calls(), 0);
    drop(browser);
    server.stop().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_path_refuses_expired_secrets_foreign_tokens_and_bad_offers() {
    let fake = direct_fake().await;
    let server = start_server(&[
        ("native", direct_pipeline(&fake.url())),
        (
            "cascade",
            cascade_pipeline("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1"),
        ),
    ])
    .await;
    let http = reqwest::Client::new();
    let mint = || async {
        let r = http.post(format!("{}/web/session", server.url)).bearer_auth(API_KEY).send().await.unwrap();
        r.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_string()
    };
    let (mine, theirs) = (mint().await, mint().await);
    let session_url = format!("{}/web/realtime/session", server.url);
    let open = |token: String, pipeline: &'static str| {
        http.post(&session_url).bearer_auth(token).json(&serde_json::json!({ "pipeline": pipeline })).send()
    };

    // The page's view of the direct session: a client secret, never the key.
    let r = open(mine.clone(), "native").await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("sk-test"), "{text}");
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    let secret = s["client_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("ek_"), "{s}");
    assert_eq!(s["calls_url"], format!("{}/realtime/calls", fake.http_url()));
    let config: serde_json::Value = http
        .get(format!("{}/web/config", server.url))
        .bearer_auth(&mine)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["pipelines"][0]["direct"], true, "{config}");
    assert_eq!(config["pipelines"][1]["direct"], false, "{config}");
    // A cascade cannot go direct; no token, no session.
    let r = open(mine.clone(), "cascade").await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("cannot go browser-direct"));
    let r = http.post(&session_url).json(&serde_json::json!({ "pipeline": "native" })).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // The tool relay: only the token that opened the session, only the pipeline's tools.
    let tool_url = format!("{}/web/realtime/tool", server.url);
    let call = |token: &str, name: &str| {
        http.post(&tool_url).bearer_auth(token).json(&serde_json::json!({
            "session_id": s["session_id"], "call_id": "call_1", "name": name, "arguments": "{\"order_id\":\"B2\"}",
        }))
        .send()
    };
    let r = call(&theirs, "get_order_status").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("another token"));
    let r = call(&mine, "rm_rf").await.unwrap();
    assert_eq!(r.status(), 404);
    let r = call(&mine, "get_order_status").await.unwrap();
    assert_eq!(r.status(), 200);
    let out: serde_json::Value = r.json().await.unwrap();
    assert!(out["output"].as_str().unwrap().contains("B2"), "{out}");
    assert_eq!(out["is_error"], false);

    // The provider's side: a malformed offer, a standard key where an ephemeral one belongs, an
    // ephemeral key where a standard one belongs, then the secret past its expiry.
    let calls_url = s["calls_url"].as_str().unwrap();
    let post_offer = |key: &str, sdp: &str| {
        http.post(calls_url)
            .bearer_auth(key)
            .header("Content-Type", "application/sdp")
            .body(sdp.to_string())
            .send()
    };
    let r = post_offer(&secret, "v=0").await.unwrap();
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains("Invalid SDP offer"), "{e}");
    assert_eq!(post_offer("sk-test", "v=0").await.unwrap().status(), 400);
    // The multipart form takes a standard key and a session of its own; its parts are checked.
    let multipart = |key: &str, session: &str| {
        let body = format!(
            "--b0\r\nContent-Disposition: form-data; name=\"sdp\"\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\
             --b0\r\nContent-Disposition: form-data; name=\"session\"\r\nContent-Type: application/json\r\n\r\n{session}\r\n--b0--\r\n"
        );
        http.post(calls_url)
            .bearer_auth(key)
            .header("Content-Type", "multipart/form-data; boundary=b0")
            .body(body)
            .send()
    };
    let r = multipart("sk-test", r#"{"type":"realtime","model":"gpt-realtime"}"#).await.unwrap();
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains("Invalid SDP offer"), "{e}");
    let r = multipart("sk-test", r#"{"type":"realtime","voice":42}"#).await.unwrap();
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"]["param"].as_str().unwrap().starts_with("session."), "{e}");
    assert_eq!(multipart(&secret, "{}").await.unwrap().status(), 401);
    let r = http
        .post(format!("{}/realtime/client_secrets", fake.http_url()))
        .bearer_auth(&secret)
        .json(&serde_json::json!({ "session": { "type": "realtime" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{}/realtime/client_secrets", fake.http_url()))
        .bearer_auth("sk-test")
        .json(&serde_json::json!({ "expires_after": { "anchor": "created_at", "seconds": 5 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["param"], "expires_after.seconds", "{e}");
    // CORS: the page's origin may call the provider's endpoints.
    let r = http
        .request(reqwest::Method::OPTIONS, calls_url)
        .header("Origin", &server.url)
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    fake.advance_secret_clock(61);
    let r = post_offer(&secret, "v=0").await.unwrap();
    assert_eq!(r.status(), 401);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "ephemeral_key_expired", "{e}");
    // An expired secret opens no WebSocket either.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "{}?model=gpt-realtime",
        fake.url()
    ))
    .unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {secret}").parse().unwrap());
    let e = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    assert_eq!(fake.live_calls(), 0);
    assert_eq!(server.app.active_calls(), 0);
    server.stop().await;
    fake.shutdown().await;
}
