//! `voxpipe serve` end to end on loopback: the server, the in-process provider fakes and the
//! Twilio-shaped fake carrier (signed webhook, media stream in real time, marks echoed once
//! played, REST API for hang-up and transfer). Real clock: calls last a few seconds.

use futures_util::SinkExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voxpipe_e2e::*;
use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig, ScriptedResponse};
use voxpipe_twilio::carrier::{CallReport, CallerOptions, Carrier, place_call};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-auth-token";
const API_KEY: &str = "op-key-123";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Server {
    app: Arc<voxpipe_serve::App>,
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    carrier: Carrier,
    dir: tempfile::TempDir,
}

impl Server {
    fn webhook(&self) -> String {
        format!("{}/twilio/voice", self.url)
    }
    /// `/metrics`, with the operator key.
    async fn metrics(&self) -> String {
        let r = reqwest::Client::new().get(format!("{}/metrics", self.url)).bearer_auth(API_KEY).send().await;
        r.unwrap().text().await.unwrap()
    }
    fn calls_dir(&self) -> PathBuf {
        self.dir.path().join("calls")
    }
    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

/// Serves `pipelines` (name, pipeline TOML) with `extra` serve settings.
async fn start_server(pipelines: &[(&str, String)], extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let carrier = Carrier::new(ACCOUNT, TOKEN);
    let rest = carrier.serve_rest("127.0.0.1:0".parse().unwrap(), CancellationToken::new()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"{url}\"\nrecordings_dir = \"{}\"\n{extra}\n\
         [auth]\napi_keys_env = [\"VOXPIPE_API_KEY\"]\n[twilio]\napi_base_url = \"http://{rest}\"\n",
        dir.path().join("calls").display()
    );
    let path = write_serve_file(dir.path(), serve, pipelines);
    let loaded = voxpipe_serve::config::load(&path, &[]).unwrap();
    let env = voxpipe_config::Env::from_vars([
        ("TWILIO_ACCOUNT_SID".to_string(), ACCOUNT.to_string()),
        ("TWILIO_AUTH_TOKEN".into(), TOKEN.into()),
        ("VOXPIPE_API_KEY".into(), API_KEY.into()),
        ("OPENAI_API_KEY".into(), "sk-test".into()),
        ("FAKE_API_KEY".into(), "sk-test".into()),
        ("VOXPIPE_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()),
    ]);
    let app = voxpipe_serve::App::new(loaded, env).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(voxpipe_serve::serve_on(app.clone(), listener, stop.clone(), None));
    Server { app, url, stop, task, carrier, dir }
}

/// A native pipeline on the Realtime fake: μ-law end to end, with the call-control tools.
fn native_pipeline(fake: &RealtimeFake) -> String {
    format!(
        r#"name = "native-phone"
[input]
kind = "wav"
path = "unused.wav"
[output]
kind = "wav"
path = "unused-reply.wav"
[[stages]]
kind = "realtime.openai"
url = "{}"
api_key_env = "OPENAI_API_KEY"
audio_format = "pcmu"
transcription = {{ model = "gpt-4o-mini-transcribe" }}
[tools.end_call]
description = "End the call after saying goodbye."
handler = {{ kind = "end_call" }}
[tools.transfer_to_human]
description = "Transfer the caller to a human."
parameters = {{ type = "object", properties = {{ reason = {{ type = "string" }} }} }}
handler = {{ kind = "transfer", target = "+15557654321" }}
"#,
        fake.url()
    )
}

/// Caller audio: speech-like tone bursts at 8 kHz.
fn caller_audio(turns: &[(u64, u64)], total_ms: u64) -> Arc<Vec<i16>> {
    let rate = 8000;
    let mut s = Vec::new();
    let mut at = 0;
    for &(start, len) in turns {
        s.extend(silence(rate, start - at));
        s.extend(tone(rate, 300.0, len, 0.3));
        at = start + len;
    }
    s.extend(silence(rate, total_ms.saturating_sub(at)));
    Arc::new(s)
}

fn caller(server: &Server, audio: Arc<Vec<i16>>, name: &str) -> CallerOptions {
    let out = server.dir.path().join("caller");
    std::fs::create_dir_all(&out).unwrap();
    CallerOptions {
        webhook: server.webhook(),
        from: "+15550100".into(),
        to: "+15550199".into(),
        audio,
        linger: Duration::from_millis(1500),
        dtmf: vec![],
        heard_wav: Some(out.join(format!("{name}.wav"))),
        timing_log: Some(out.join(format!("{name}.jsonl"))),
        sign_with: None,
        fault: None,
    }
}

/// The only call directory under `calls/`.
fn call_dir(server: &Server, report: &CallReport) -> PathBuf {
    server.calls_dir().join(&report.call_sid)
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("call.json")).unwrap()).unwrap()
}

/// Waits for the call's summary (written after the call ends on the server side).
async fn wait_summary(dir: &Path) -> serde_json::Value {
    for _ in 0..200 {
        if dir.join("call.json").exists() {
            return summary(dir);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no call.json in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_pcmu_call_end_to_end_with_no_transcoding() {
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![
            ScriptedResponse {
                user_transcript: Some("Where is my order?".into()),
                ..ScriptedResponse::say("It ships tomorrow.")
            },
            ScriptedResponse {
                user_transcript: Some("Thanks.".into()),
                ..ScriptedResponse::say("You are welcome.")
            },
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let server = start_server(&[("native", native_pipeline(&fake))], "").await;
    let audio = caller_audio(&[(500, 1200), (4500, 800)], 7000);
    let report = place_call(&server.carrier, &caller(&server, audio.clone(), "native")).await;
    assert_eq!(report.status, "completed", "{report:?}");
    assert_eq!(report.ended_by, "caller");
    assert!(report.marks > 5, "marks echoed: {report:?}");
    let dir = call_dir(&server, &report);
    let s = wait_summary(&dir).await;
    assert_eq!(s["outcome"], "hangup");
    assert_eq!(s["pipeline"], "native");
    let t: Vec<String> =
        s["transcript"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(
        t,
        [
            "user: Where is my order?",
            "assistant: It ships tomorrow.",
            "user: Thanks.",
            "assistant: You are welcome."
        ]
    );

    // The caller heard two replies, each after its turn.
    let (heard, rate) = read_wav(&server.dir.path().join("caller/native.wav"));
    assert_eq!(rate, 8000);
    let regions = active_regions(&heard, rate, 500, 150);
    assert_eq!(regions.len(), 2, "two replies heard: {regions:?}");
    assert!(regions[0].0 > 1700 && regions[1].0 > 5300, "{regions:?}");

    // Every event carries the assignment.
    let events = read_events(&dir.join("events.jsonl"));
    assert!(events.iter().all(|e| e["call_sid"] == report.call_sid.as_str() && e["pipeline"] == "native"));
    assert!(events.iter().any(|e| e["type"] == "metric" && e["name"] == "voice_to_voice_ms"));

    // The stereo recording: the caller left, the agent right.
    let mut r = hound::WavReader::open(dir.join("recording.wav")).unwrap();
    assert_eq!((r.spec().channels, r.spec().sample_rate), (2, 8000));
    let st: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
    let (left, right): (Vec<i16>, Vec<i16>) = st.chunks(2).map(|c| (c[0], c[1])).unzip();
    assert_eq!(active_regions(&left, 8000, 500, 150).len(), 2, "caller's two turns");
    assert_eq!(active_regions(&right, 8000, 500, 150).len(), 2, "agent's two replies");

    // No transcoding: the μ-law the fake received is the μ-law the caller sent, byte for byte.
    let update = fake.client_events().into_iter().find(|e| e.json["type"] == "session.update").unwrap();
    assert_eq!(update.json["session"]["audio"]["input"]["format"]["type"], "audio/pcmu");
    let received = fake.input_audio(1);
    let mut sent = Vec::new();
    voxpipe_core::audio::g711::encode_ulaw(&audio, &mut sent);
    assert!(received.len() >= sent.len() - 1600, "received {} of {} bytes", received.len(), sent.len());
    assert_eq!(&received[..sent.len().min(received.len())], &sent[..sent.len().min(received.len())]);

    // Metrics need a key; they count the call.
    let http = reqwest::Client::new();
    let m = http.get(format!("{}/metrics", server.url)).send().await.unwrap();
    assert_eq!(m.status(), 403);
    let m = server.metrics().await;
    assert!(m.contains(r#"voxpipe_calls_total{pipeline="native",outcome="hangup"} 1"#), "{m}");
    assert!(m.contains("voxpipe_turn_latency_seconds_bucket"), "{m}");
    assert_eq!(http.get(format!("{}/readyz", server.url)).send().await.unwrap().status(), 200);
    server.stop().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_call_whose_realtime_session_drops_mid_reply_reconnects_and_is_answered() {
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![
            ScriptedResponse {
                user_transcript: Some("Where is my order?".into()),
                ..ScriptedResponse::say("It ships tomorrow morning, first thing.")
            },
            ScriptedResponse {
                user_transcript: Some("Thanks.".into()),
                ..ScriptedResponse::say("You are welcome.")
            },
        ],
        // The first session dies without a close frame two audio deltas into the first reply.
        close_after_audio_deltas: Some(2),
        fault_connections: vec![1],
        ..Default::default()
    })
    .await
    .unwrap();
    let server = start_server(&[("native", native_pipeline(&fake))], "").await;
    let audio = caller_audio(&[(500, 1200), (6500, 800)], 9500);
    let report = place_call(&server.carrier, &caller(&server, audio, "reconnect")).await;
    assert_eq!(report.status, "completed", "{report:?}");
    assert_eq!(report.ended_by, "caller");
    let dir = call_dir(&server, &report);
    let s = wait_summary(&dir).await;
    assert_eq!(s["outcome"], "hangup", "{s}");
    let t: Vec<String> =
        s["transcript"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert!(t.contains(&"assistant: You are welcome.".to_string()), "the second turn was answered: {t:?}");
    let events = read_events(&dir.join("events.jsonl"));
    assert_eq!(events_of(&events, "reconnected").len(), 1, "{events:?}");
    assert!(events_of(&events, "error").is_empty(), "{events:?}");
    assert_eq!(fake.connections(), 2);
    // The caller heard the restored reply and the second one.
    let (heard, rate) = read_wav(&server.dir.path().join("caller/reconnect.wav"));
    assert!(active_regions(&heard, rate, 500, 150).len() >= 2);
    let m = server.metrics().await;
    assert!(m.contains(r#"voxpipe_recoveries_total{kind="reconnect:realtime.openai"} 1"#), "{m}");
    assert!(m.contains("voxpipe_recovery_seconds_count 1"), "{m}");
    server.stop().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_call_hangs_up_through_the_rest_api_after_the_goodbye_has_played() {
    let goodbye = "Thank you for calling, goodbye!";
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![ScriptedResponse::call("end_call", "{}"), ScriptedResponse::say(goodbye)],
        ..Default::default()
    })
    .await
    .unwrap();
    let server = start_server(&[("native", native_pipeline(&fake))], "").await;
    let mut opts = caller(&server, caller_audio(&[(500, 1000)], 2000), "end");
    opts.linger = Duration::from_secs(20);
    let report = place_call(&server.carrier, &opts).await;
    assert_eq!((report.status.as_str(), report.ended_by.as_str()), ("completed", "server"), "{report:?}");
    let updates = server.carrier.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].call_sid, report.call_sid);
    assert!(updates[0].form.contains(&("Status".into(), "completed".into())));
    // The goodbye was heard to its end before the hang-up.
    let timing = read_events(&server.dir.path().join("caller/end.jsonl"));
    let hung = timing.iter().find(|e| e["event"] == "server").unwrap();
    let dir = call_dir(&server, &report);
    let s = wait_summary(&dir).await;
    assert_eq!(s["outcome"], "end_call");
    let events = read_events(&dir.join("events.jsonl"));
    let finished = events_of(&events, "playout_finished");
    let played = finished.last().unwrap()["played_ms"].as_u64().unwrap();
    assert!(played > 1000, "the goodbye played {played} ms");
    assert!(
        hung["heard_ms"].as_u64().unwrap() >= played,
        "hung up after {} ms heard of {played}",
        hung["heard_ms"]
    );
    server.stop().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_redirects_the_live_call_with_dial() {
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![
            ScriptedResponse::call("transfer_to_human", r#"{"reason":"asked for a person"}"#),
            ScriptedResponse::say("Putting you through now."),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let server = start_server(&[("native", native_pipeline(&fake))], "").await;
    let mut opts = caller(&server, caller_audio(&[(500, 1000)], 2000), "transfer");
    opts.linger = Duration::from_secs(20);
    let report = place_call(&server.carrier, &opts).await;
    assert_eq!(report.ended_by, "transfer", "{report:?}");
    assert_eq!(report.transferred_to.as_deref(), Some("+15557654321"));
    let twiml = &server.carrier.updates()[0].form;
    let (_, xml) = twiml.iter().find(|(k, _)| k == "Twiml").unwrap();
    assert!(xml.contains("<Dial><Number>+15557654321</Number></Dial>"), "{xml}");
    let s = wait_summary(&call_dir(&server, &report)).await;
    assert_eq!(s["outcome"], "transferred");
    assert!(report.heard_ms > 800, "the words before the transfer were heard: {report:?}");
    server.stop().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_sends_clear_and_truncates_to_what_the_marks_confirmed() {
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![
            ScriptedResponse {
                audio_ms: Some(5000),
                ..ScriptedResponse::say("Let me tell you a long story about your order and its journey.")
            },
            ScriptedResponse::say("Yes?"),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let server = start_server(&[("native", native_pipeline(&fake))], "").await;
    // Turn 1 ends at 1.5 s; the reply starts ~2.2 s; the caller speaks over it at 3.6 s.
    let report = place_call(
        &server.carrier,
        &caller(&server, caller_audio(&[(500, 1000), (3600, 1000)], 6000), "barge"),
    )
    .await;
    assert_eq!(report.status, "completed", "{report:?}");
    assert!(report.clears >= 1, "a clear was sent: {report:?}");
    // The caller timed its barge-in (the first turn, spoken over silence, is none): from its
    // onset to the clear, and to the silence it heard after it.
    assert_eq!(report.barge_ins.len(), 1, "{report:?}");
    let b = &report.barge_ins[0];
    assert!(b.onset_ms >= 3580, "{b:?}");
    let (clear, silent) = (b.clear_ms.expect("cleared"), b.silent_ms.expect("silence heard"));
    assert!(silent >= clear, "{b:?}");
    let dir = call_dir(&server, &report);
    wait_summary(&dir).await;
    let events = read_events(&dir.join("events.jsonl"));
    let truncate = events_of(&events, "truncate");
    assert_eq!(truncate.len(), 1, "{events:?}");
    let audio_end = truncate[0]["audio_end_ms"].as_u64().unwrap();
    // What the caller's marks confirmed before the clear.
    let timing = read_events(&server.dir.path().join("caller/barge.jsonl"));
    let clear_at = timing.iter().position(|e| e["event"] == "clear").unwrap();
    let confirmed =
        timing[..clear_at].iter().rev().find(|e| e["event"] == "mark").unwrap()["heard_ms"].as_u64().unwrap();
    assert!(
        audio_end.abs_diff(confirmed) <= 20,
        "truncated at {audio_end} ms, marks confirmed {confirmed} ms"
    );
    assert!((800..3000).contains(&audio_end), "{audio_end}");
    server.stop().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_requests_are_refused_and_a_full_server_says_so_politely() {
    let fake = RealtimeFake::start(RealtimeFakeConfig::default()).await.unwrap();
    let server = start_server(&[("native", native_pipeline(&fake))], "[limits]\nmax_calls = 1\n").await;
    let http = reqwest::Client::new();
    // Unsigned and badly signed webhooks: 403, and nothing answered.
    let form = [("CallSid", "CA1"), ("From", "+1555")];
    let r = http.post(server.webhook()).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(server.webhook())
        .header("X-Twilio-Signature", voxpipe_twilio::signature::compute("wrong", &server.webhook(), &[]))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let mut forged = caller(&server, caller_audio(&[], 500), "forged");
    forged.sign_with = Some("not-the-token".into());
    let report = place_call(&server.carrier, &forged).await;
    assert_eq!(report.status, "failed", "{report:?}");
    // An unsigned media upgrade: 403.
    let ws_url = format!("{}/twilio/media", server.url.replace("http://", "ws://"));
    let e = tokio_tungstenite::connect_async(&ws_url).await.unwrap_err().to_string();
    assert!(e.contains("403"), "{e}");
    // One call at a time: a second caller hears the busy message.
    let long = tokio::spawn({
        let carrier = server.carrier.clone();
        let opts = caller(&server, caller_audio(&[], 3000), "long");
        async move { place_call(&carrier, &opts).await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let busy = place_call(&server.carrier, &caller(&server, caller_audio(&[], 500), "busy")).await;
    assert_eq!(busy.status, "rejected", "{busy:?}");
    assert!(busy.detail.unwrap().contains("busy"));
    assert_eq!(long.await.unwrap().status, "completed");
    let m = server.metrics().await;
    assert!(m.contains(r#"outcome="rejected_busy"} 1"#), "{m}");
    assert!(m.contains(r#"voxpipe_auth_failures_total{kind="twilio/voice"} 3"#), "{m}");
    server.stop().await;
    fake.shutdown().await;
}

/// A carrier that misbehaves: garbage JSON, bad base64, an oversize payload, then the socket
/// is cut mid-call. The call ends cleanly with its recording and log, and a concurrent call
/// is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_media_and_a_cut_socket_end_one_call_cleanly_and_not_the_other() {
    let fake = RealtimeFake::start(RealtimeFakeConfig::default()).await.unwrap();
    let server = start_server(&[("native", native_pipeline(&fake))], "").await;
    let good = tokio::spawn({
        let carrier = server.carrier.clone();
        let opts = caller(&server, caller_audio(&[(500, 1000)], 4000), "good");
        async move { place_call(&carrier, &opts).await }
    });
    // The bad carrier: answer the webhook ourselves, then misbehave on the stream.
    let ws_url = format!("{}/twilio/media", server.url.replace("http://", "ws://"));
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws_url.as_str())
            .unwrap();
    let sig = voxpipe_twilio::signature::compute(TOKEN, &ws_url, &[]);
    req.headers_mut().insert("X-Twilio-Signature", sig.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    use tokio_tungstenite::tungstenite::Message;
    let start = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZbad","start":{"accountSid":"AC0123456789abcdef0123456789abcdef","streamSid":"MZbad","callSid":"CAbad0000000000000000000000000000","tracks":["inbound"],"customParameters":{"pipeline":"native"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
    ws.send(Message::Text(start.into())).await.unwrap();
    let media = |payload: &str| {
        format!(
            r#"{{"event":"media","sequenceNumber":"2","streamSid":"MZbad","media":{{"track":"inbound","chunk":"1","timestamp":"0","payload":"{payload}"}}}}"#
        )
    };
    for _ in 0..25 {
        ws.send(Message::Text(media(&"/".repeat(212)).into())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ws.send(Message::Text("{not json".into())).await.unwrap();
    ws.send(Message::Text(media("@@@ not base64 @@@").into())).await.unwrap();
    ws.send(Message::Text(media(&"A".repeat(20_000)).into())).await.unwrap();
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(ws); // cut, no stop, no close handshake
    let dir = server.calls_dir().join("CAbad0000000000000000000000000000");
    let s = wait_summary(&dir).await;
    assert_eq!(s["outcome"], "socket_lost", "{s}");
    assert!(s["bad_messages"].as_u64().unwrap() >= 4, "{s}");
    let r = hound::WavReader::open(dir.join("recording.wav")).unwrap();
    assert!(r.duration() >= 8000 * 4 / 10, "the caller's half second is recorded: {}", r.duration());
    let events = read_events(&dir.join("events.jsonl"));
    assert_eq!(events.last().unwrap()["type"], "call_ended");
    let good = good.await.unwrap();
    assert_eq!((good.status.as_str(), good.ended_by.as_str()), ("completed", "caller"), "{good:?}");
    assert!(good.first_audio_ms.is_some(), "the other call was answered: {good:?}");
    server.stop().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_misbehave_get_answered_or_end_cleanly_each_on_its_own() {
    use voxpipe_twilio::carrier::CallerFault;
    let fake = RealtimeFake::start(RealtimeFakeConfig::default()).await.unwrap();
    let server = start_server(&[("native", native_pipeline(&fake))], "").await;
    let audio = caller_audio(&[(500, 1000)], 4500);
    let with = |name: &str, fault: &str| CallerOptions {
        fault: Some(fault.parse::<CallerFault>().unwrap()),
        ..caller(&server, audio.clone(), name)
    };
    let calls = [
        with("malformed", "malformed-media@300"),
        with("oversize", "oversize-media@300:40000"),
        with("dropped", "hangup-mid-reply:300"),
        with("silent", "silence@2000"),
    ];
    let reports = futures_util::future::join_all(calls.iter().map(|o| place_call(&server.carrier, o))).await;
    let mut summaries = Vec::new();
    for r in &reports {
        summaries.push(wait_summary(&call_dir(&server, r)).await);
    }
    let by_name = |i: usize| (&reports[i], summaries[i].clone());
    // A malformed and an oversize media message are counted and skipped: the call is answered.
    for i in [0, 1] {
        let (r, s) = by_name(i);
        assert_eq!((r.status.as_str(), r.ended_by.as_str()), ("completed", "caller"), "{r:?}");
        assert!(r.first_audio_ms.is_some(), "answered despite the bad message: {r:?}");
        assert_eq!(s["outcome"], "hangup", "{s}");
        assert!(s["bad_messages"].as_u64().unwrap() >= 1, "{s}");
    }
    // A line that drops mid-reply: the call ends as lost, its files flushed.
    let (r, s) = by_name(2);
    assert_eq!(r.ended_by, "caller_dropped", "{r:?}");
    assert_eq!(s["outcome"], "socket_lost", "{s}");
    let dir = call_dir(&server, &reports[2]);
    assert!(
        hound::WavReader::open(dir.join("recording.wav")).unwrap().duration() > 8000,
        "recording flushed"
    );
    assert_eq!(read_events(&dir.join("events.jsonl")).last().unwrap()["type"], "call_ended");
    // A line that goes quiet but stays up: answered before, ended by the caller's hang-up.
    let (r, s) = by_name(3);
    assert!(r.first_audio_ms.is_some(), "{r:?}");
    assert_eq!(s["outcome"], "hangup", "{s}");
    assert_eq!(server.app.active_calls(), 0);
    server.stop().await;
    fake.shutdown().await;
}

/// A drain during live calls: readiness turns off at once, new calls hear the busy message,
/// and every live call finishes on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_during_live_calls_loses_none() {
    const CALLS: usize = 50;
    let fake = RealtimeFake::start(RealtimeFakeConfig::default()).await.unwrap();
    let server = start_server(&[("native", native_pipeline(&fake))], "[limits]\nmax_calls = 200\n").await;
    let audio = caller_audio(&[(300, 800)], 3000);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..CALLS {
        let carrier = server.carrier.clone();
        let mut opts = caller(&server, audio.clone(), "drain");
        opts.heard_wav = None;
        opts.timing_log = None;
        calls.spawn(async move { place_call(&carrier, &opts).await });
    }
    for _ in 0..100 {
        if server.app.active_calls() == CALLS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.app.active_calls(), CALLS);
    let app = server.app.clone();
    let drain = tokio::spawn(async move { app.drain().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{}/readyz", server.url)).send().await.unwrap().status(), 503);
    let late = place_call(&server.carrier, &caller(&server, caller_audio(&[], 500), "late")).await;
    assert_eq!(late.status, "rejected");
    let mut ok = 0;
    while let Some(r) = calls.join_next().await {
        let r = r.unwrap();
        assert_eq!((r.status.as_str(), r.ended_by.as_str()), ("completed", "caller"), "{r:?}");
        assert!(r.first_audio_ms.is_some(), "answered: {r:?}");
        ok += 1;
    }
    assert_eq!(ok, CALLS);
    tokio::time::timeout(Duration::from_secs(20), drain).await.unwrap().unwrap();
    assert_eq!(server.app.active_calls(), 0);
    let mut outcomes = Vec::new();
    for d in std::fs::read_dir(server.calls_dir()).unwrap() {
        let d = d.unwrap().path();
        let o = summary(&d)["outcome"].as_str().unwrap().to_string();
        if o != "hangup" {
            let log = std::fs::read_to_string(d.join("events.jsonl")).unwrap();
            let tail: Vec<&str> = log.lines().rev().take(4).collect();
            eprintln!("{o}: {tail:?}");
        }
        outcomes.push(o);
    }
    assert_eq!(outcomes.len(), CALLS);
    assert!(outcomes.iter().all(|o| o == "hangup"), "{outcomes:?}");
    server.stop().await;
    fake.shutdown().await;
}

fn cascade_pipeline(asr: &str, llm: &str, tts: &str) -> String {
    fake_cascade_pipeline("cascade-phone", asr, llm, tts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_call_answers_speech_and_keypad_digits_reach_the_llm() {
    use voxpipe_fakes::{openai_chat, openai_speech, transcription};
    let asr = transcription::TranscriptionFake::start(transcription::TranscriptionFakeConfig {
        transcripts: vec!["Where is my order?".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let llm = openai_chat::ChatFake::start(openai_chat::ChatFakeConfig::default()).await.unwrap();
    let tts = openai_speech::SpeechFake::start(openai_speech::SpeechFakeConfig::default()).await.unwrap();
    let server =
        start_server(&[("cascade", cascade_pipeline(&asr.base_url(), &llm.base_url(), &tts.base_url()))], "")
            .await;
    let mut opts = caller(&server, caller_audio(&[(500, 1200)], 9000), "cascade");
    opts.dtmf = ["1", "2", "3", "4", "#"]
        .iter()
        .enumerate()
        .map(|(i, d)| (5000 + i as u64 * 150, d.to_string()))
        .collect();
    let report = place_call(&server.carrier, &opts).await;
    assert_eq!(report.status, "completed", "{report:?}");
    let s = wait_summary(&call_dir(&server, &report)).await;
    assert_eq!(s["outcome"], "hangup");
    let t: Vec<&str> = s["transcript"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(t.contains(&"user: Where is my order?"), "{t:?}");
    assert!(t.contains(&"user: (The caller typed on the keypad: 1234)"), "{t:?}");
    // Both reached the LLM, in order.
    let bodies: Vec<String> = llm.requests().iter().map(|r| r.body.to_string()).collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies[1].contains("(The caller typed on the keypad: 1234)"), "{}", bodies[1]);
    // The phone's 8 kHz audio was resampled for the transcriber, and the replies were heard.
    let wav = asr.requests()[0].wav.clone().unwrap();
    assert_eq!(wav.sample_rate, 16_000, "{wav:?}");
    let (heard, rate) = read_wav(&server.dir.path().join("caller/cascade.wav"));
    assert_eq!(active_regions(&heard, rate, 300, 300).len(), 2, "two replies heard");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keypad_digits_reach_the_native_model_as_a_user_message() {
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![ScriptedResponse::say("You pressed seven.")],
        ..Default::default()
    })
    .await
    .unwrap();
    let server = start_server(&[("native", native_pipeline(&fake))], "").await;
    let mut opts = caller(&server, caller_audio(&[], 3500), "keypad");
    opts.dtmf = vec![(500, "7".into()), (700, "#".into())];
    let report = place_call(&server.carrier, &opts).await;
    assert!(report.first_audio_ms.is_some(), "the answer was heard: {report:?}");
    let items: Vec<serde_json::Value> = fake
        .client_events()
        .into_iter()
        .filter(|e| e.json["type"] == "conversation.item.create")
        .map(|e| e.json)
        .collect();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["item"]["content"][0]["text"], "(The caller typed on the keypad: 7)");
    let s = wait_summary(&call_dir(&server, &report)).await;
    let t: Vec<&str> = s["transcript"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(t, ["user: (The caller typed on the keypad: 7)", "assistant: You pressed seven."]);
    server.stop().await;
    fake.shutdown().await;
}

/// The post-call webhook: signed per Standard Webhooks, retried after a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_post_call_webhook_is_signed_and_retried() {
    use axum::http::HeaderMap;
    type Got = Arc<std::sync::Mutex<Vec<(HeaderMap, String)>>>;
    let got: Got = Arc::default();
    let receiver =
        axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |axum::extract::State(got): axum::extract::State<Got>,
                     headers: HeaderMap,
                     body: String| async move {
                        let mut g = got.lock().unwrap();
                        g.push((headers, body));
                        // The first delivery fails: the sender must retry.
                        if g.len() == 1 {
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            axum::http::StatusCode::NO_CONTENT
                        }
                    },
                ),
            )
            .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let fake = RealtimeFake::start(RealtimeFakeConfig::default()).await.unwrap();
    let extra = format!("[webhook]\nurl = \"{hook}\"\nsecret_env = \"VOXPIPE_WEBHOOK_SECRET\"\n");
    let server = start_server(&[("native", native_pipeline(&fake))], &extra).await;
    let report =
        place_call(&server.carrier, &caller(&server, caller_audio(&[(300, 800)], 2500), "hook")).await;
    assert_eq!(report.status, "completed");
    for _ in 0..100 {
        if got.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one failure, one retry");
    let key = voxpipe_serve::webhook::key_of(WEBHOOK_SECRET);
    for (headers, body) in &got {
        let h = |k: &str| headers.get(k).unwrap().to_str().unwrap().to_string();
        let ts: u64 = h("webhook-timestamp").parse().unwrap();
        assert!(voxpipe_serve::webhook::verify(&key, &h("webhook-id"), ts, body, &h("webhook-signature")));
        assert!(!voxpipe_serve::webhook::verify(
            &key,
            &h("webhook-id"),
            ts,
            &body.replace("hangup", "x"),
            &h("webhook-signature")
        ));
    }
    assert_eq!(got[0].0.get("webhook-id"), got[1].0.get("webhook-id"), "a retry keeps its id");
    let payload: serde_json::Value = serde_json::from_str(&got[1].1).unwrap();
    assert_eq!(payload["type"], "call.ended");
    assert_eq!(payload["data"]["call_sid"], report.call_sid.as_str());
    assert_eq!(payload["data"]["outcome"], "hangup");
    server.stop().await;
    fake.shutdown().await;
}

/// The caller hangs up in the middle of a reply: the call ends at once, cleanly, with its
/// recording and log complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_up_mid_reply_ends_the_call_cleanly() {
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![ScriptedResponse {
            audio_ms: Some(6000),
            ..ScriptedResponse::say("A very long answer.")
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let server = start_server(&[("native", native_pipeline(&fake))], "").await;
    let mut opts = caller(&server, caller_audio(&[(300, 800)], 3000), "midreply");
    opts.linger = Duration::ZERO;
    let report = place_call(&server.carrier, &opts).await;
    assert_eq!((report.status.as_str(), report.ended_by.as_str()), ("completed", "caller"));
    assert!(report.heard_ms > 300 && report.heard_ms < 3000, "hung up mid-reply: {report:?}");
    let dir = call_dir(&server, &report);
    let s = wait_summary(&dir).await;
    assert_eq!(s["outcome"], "hangup");
    let events = read_events(&dir.join("events.jsonl"));
    assert!(events_of(&events, "error").is_empty(), "{events:?}");
    assert_eq!(events.last().unwrap()["type"], "call_ended");
    let r = hound::WavReader::open(dir.join("recording.wav")).unwrap();
    assert!(r.duration() >= 8000 * 29 / 10, "the whole call is recorded: {} samples", r.duration());
    server.stop().await;
    fake.shutdown().await;
}
