//! A Twilio-shaped fake carrier, as strict as Twilio where voxpipe meets it.
//!
//! - [`place_call`]: one caller. It signs its voice-webhook POST like Twilio, follows the
//!   TwiML, opens the media stream (signed upgrade), sends `connected` and `start`, streams a
//!   WAV in real time as 20 ms μ-law frames (then silence), plays what it receives on a 1x
//!   clock, echoes each `mark` only once the audio before it has played, honours `clear`
//!   (echoing the marks it dropped, as Twilio does), sends key presses, and writes what it
//!   heard plus a timing log. One task and a 20 ms tick per call: hundreds fit in a process.
//! - [`RestApi`]: `POST /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json` with Basic auth,
//!   acting on the live calls of this carrier: `Status=completed` hangs up, `Twiml=` runs new
//!   TwiML (a `<Dial>` transfers); either ends the media stream with `stop`.

use crate::media::{Inbound, MarkName, MediaFormat, Outbound, StartInfo};
use crate::signature;
use crate::twiml::{self, Verb};
use axum::extract::{Path as AxPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use voxpipe_core::audio::g711;

/// What the REST API asks of a live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `Status=completed`.
    HangUp,
    /// `Twiml=…`.
    Twiml(String),
}

/// One REST update as received (for tests and the log).
#[derive(Debug, Clone, Serialize)]
pub struct Update {
    /// The call.
    pub call_sid: String,
    /// The form fields.
    pub form: Vec<(String, String)>,
}

/// The carrier's account and its live calls.
#[derive(Debug, Clone)]
pub struct Carrier {
    /// `AC` + 32 hex.
    pub account_sid: String,
    /// The auth token: signs webhooks, authenticates REST calls.
    pub auth_token: String,
    calls: Arc<Mutex<HashMap<String, mpsc::Sender<Command>>>>,
    updates: Arc<Mutex<Vec<Update>>>,
}

impl Carrier {
    /// A carrier for `account_sid` with `auth_token`.
    pub fn new(account_sid: &str, auth_token: &str) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            calls: Default::default(),
            updates: Default::default(),
        }
    }

    /// Every REST update received so far.
    pub fn updates(&self) -> Vec<Update> {
        self.updates.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves the REST API on `addr` until `stop`; returns the bound address.
    pub async fn serve_rest(
        &self,
        addr: std::net::SocketAddr,
        stop: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<std::net::SocketAddr> {
        let router = axum::Router::new()
            .route("/2010-04-01/Accounts/{account}/Calls/{call}", axum::routing::post(update_call))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            tokio::select! {
                _ = axum::serve(listener, router) => {}
                () = stop.cancelled() => {}
            }
        });
        Ok(addr)
    }
}

/// A random SID: `prefix` + 32 lowercase hex digits.
pub fn sid(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut s = String::from(prefix);
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        s += &format!("{:016x}", h.finish());
    }
    s
}

fn is_sid(s: &str, prefix: &str) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn api_error(status: StatusCode, code: u64, message: &str) -> Response {
    let body = serde_json::json!({
        "code": code, "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16(),
    });
    (status, axum::Json(body)).into_response()
}

async fn update_call(
    State(c): State<Carrier>,
    AxPath((account, call)): AxPath<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let authorized = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .is_some_and(|d| {
            use subtle::ConstantTimeEq;
            let expected = format!("{}:{}", c.account_sid, c.auth_token);
            bool::from(d.ct_eq(expected.as_bytes()))
        });
    if !authorized {
        return api_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let Some(call) = call.strip_suffix(".json") else {
        return api_error(StatusCode::NOT_FOUND, 20404, "The requested resource was not found");
    };
    if account != c.account_sid || !is_sid(&account, "AC") || !is_sid(call, "CA") {
        return api_error(StatusCode::NOT_FOUND, 20404, "The requested resource was not found");
    }
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return api_error(
            StatusCode::BAD_REQUEST,
            20001,
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return api_error(StatusCode::BAD_REQUEST, 20001, "Malformed form body");
    };
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let command = match (get("Status"), get("Twiml"), get("Url")) {
        (_, Some(_), Some(_)) => {
            return api_error(StatusCode::BAD_REQUEST, 21220, "Twiml and Url are mutually exclusive");
        }
        (Some("completed"), _, _) => Command::HangUp,
        (Some("canceled"), _, _) => {
            return api_error(StatusCode::BAD_REQUEST, 21220, "Call is not queued or ringing: cannot cancel");
        }
        (Some(other), _, _) => {
            return api_error(StatusCode::BAD_REQUEST, 20001, &format!("Invalid Status: {other}"));
        }
        (None, Some(t), None) if t.len() > crate::rest::MAX_INLINE_TWIML => {
            return api_error(StatusCode::BAD_REQUEST, 32018, "Twiml is larger than 4000 characters");
        }
        (None, Some(t), None) => {
            if twiml::parse(t).is_err() {
                return api_error(StatusCode::BAD_REQUEST, 12100, "Document parse failure");
            }
            Command::Twiml(t.to_string())
        }
        (None, None, Some(_)) => {
            return api_error(StatusCode::BAD_REQUEST, 20001, "Url is not supported by this fake");
        }
        (None, None, None) => return api_error(StatusCode::BAD_REQUEST, 20001, "Nothing to update"),
    };
    c.updates
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Update { call_sid: call.into(), form: form.clone() });
    let live = c.calls.lock().unwrap_or_else(|e| e.into_inner()).get(call).cloned();
    match live {
        // A call takes one command (it ends on it): a full queue means one is already pending.
        Some(tx) if !matches!(tx.try_send(command), Err(mpsc::error::TrySendError::Closed(_))) => {
            let status = if get("Status").is_some() { "completed" } else { "in-progress" };
            axum::Json(serde_json::json!({
                "sid": call, "account_sid": c.account_sid, "status": status, "direction": "inbound",
                "api_version": "2010-04-01",
                "uri": format!("/2010-04-01/Accounts/{}/Calls/{call}.json", c.account_sid),
            }))
            .into_response()
        }
        Some(_) => api_error(StatusCode::BAD_REQUEST, 21220, "Call is not in-progress. Cannot redirect."),
        None => api_error(StatusCode::NOT_FOUND, 20404, "The requested resource was not found"),
    }
}

/// One caller's settings.
#[derive(Debug, Clone)]
pub struct CallerOptions {
    /// The voice webhook URL (what a Twilio number's "A call comes in" points at).
    pub webhook: String,
    /// The caller's number.
    pub from: String,
    /// The number called.
    pub to: String,
    /// The caller's audio, 8 kHz mono (shared by every caller of a run).
    pub audio: Arc<Vec<i16>>,
    /// Hang up this long after the audio ends (unless the server ends the call first).
    pub linger: Duration,
    /// Key presses: (ms into the call, digit).
    pub dtmf: Vec<(u64, String)>,
    /// Where to write what the caller heard (8 kHz mono WAV), if anywhere.
    pub heard_wav: Option<PathBuf>,
    /// Where to write the timing log (JSONL), if anywhere.
    pub timing_log: Option<PathBuf>,
    /// Sign with this token instead of the carrier's (to test forged requests).
    pub sign_with: Option<String>,
    /// Misbehave as a bad line or a broken client would. Default: none.
    pub fault: Option<CallerFault>,
}

/// An inbound `media` message, written directly (one per 20 ms frame: no `Value` on the way).
fn media_message(seq: &str, stream_sid: &str, chunk: u64, timestamp: u64, payload: &str) -> String {
    format!(
        r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"{stream_sid}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{timestamp}","payload":"{payload}"}}}}"#
    )
}

/// How a caller misbehaves (`voxpipe call twilio --fault …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerFault {
    /// Drop the connection without `stop` once the agent has been heard for `after_ms`
    /// (a caller hanging up over the reply, or a line going dead).
    HangUpMidReply {
        /// Agent audio heard first, ms.
        after_ms: u64,
    },
    /// At `at_ms` into the call, send a media message whose payload is not base64.
    MalformedMedia {
        /// When, ms into the call.
        at_ms: u64,
    },
    /// At `at_ms`, send one media message of `bytes` bytes of payload.
    OversizeMedia {
        /// When, ms into the call.
        at_ms: u64,
        /// Payload size (base64 text), bytes.
        bytes: usize,
    },
    /// From `at_ms` on, send no more media (the socket stays open until the caller hangs up).
    Silence {
        /// When, ms into the call.
        at_ms: u64,
    },
}

impl std::str::FromStr for CallerFault {
    type Err = String;

    /// `hangup-mid-reply[:MS]`, `malformed-media@MS`, `oversize-media@MS:BYTES`, `silence@MS`.
    fn from_str(spec: &str) -> Result<Self, String> {
        let expected =
            "expected hangup-mid-reply[:MS], malformed-media@MS, oversize-media@MS:BYTES or silence@MS";
        let num =
            |v: &str| v.parse::<u64>().map_err(|_| format!("`{spec}`: `{v}` is not a number; {expected}"));
        let (kind, rest) = spec.split_once(['@', ':']).map_or((spec, None), |(k, r)| (k, Some(r)));
        Ok(match (kind, rest) {
            ("hangup-mid-reply", None) => CallerFault::HangUpMidReply { after_ms: 500 },
            ("hangup-mid-reply", Some(ms)) => CallerFault::HangUpMidReply { after_ms: num(ms)? },
            ("malformed-media", Some(ms)) => CallerFault::MalformedMedia { at_ms: num(ms)? },
            ("silence", Some(ms)) => CallerFault::Silence { at_ms: num(ms)? },
            ("oversize-media", Some(r)) => {
                let (ms, bytes) = r.split_once(':').ok_or_else(|| format!("`{spec}`: {expected}"))?;
                CallerFault::OversizeMedia { at_ms: num(ms)?, bytes: num(bytes)? as usize }
            }
            _ => return Err(format!("`{spec}`: {expected}")),
        })
    }
}

/// How a call went, from the caller's side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallReport {
    /// The call.
    pub call_sid: String,
    /// `completed`, `rejected`, `failed`.
    pub status: String,
    /// Who ended it: `caller`, `server` (REST hang-up), `transfer`, `socket` (the server closed the stream).
    pub ended_by: String,
    /// The `<Dial>` target of a transfer.
    pub transferred_to: Option<String>,
    /// What the TwiML said when the call was refused, or why it failed.
    pub detail: Option<String>,
    /// Agent audio played to the caller, ms.
    pub heard_ms: u64,
    /// Marks echoed.
    pub marks: u64,
    /// `clear`s received.
    pub clears: u64,
    /// Call time of the first agent audio, ms.
    pub first_audio_ms: Option<u64>,
    /// Length of the call, ms.
    pub duration_ms: u64,
    /// Each time the caller started speaking while the agent was playing, and how long the
    /// agent took to stop.
    pub barge_ins: Vec<BargeIn>,
}

/// The caller spoke over the agent: from the caller's speech onset (a 20 ms frame above
/// -40 dBFS after at least [`BargeIn::QUIET_MS`] of quiet, sent while agent audio played) to
/// the server's `clear` and to the last agent audio the caller heard.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BargeIn {
    /// Call time of the onset, ms.
    pub onset_ms: u64,
    /// Onset → `clear` received, ms (`None`: no `clear`, the reply played to its end).
    pub clear_ms: Option<u64>,
    /// Onset → the caller heard silence (the play queue ran dry, by `clear` or by the reply's
    /// end), ms.
    pub silent_ms: Option<u64>,
}

impl BargeIn {
    /// Quiet before an onset, ms: shorter gaps are pauses inside one utterance.
    pub const QUIET_MS: u64 = 300;
    /// A frame's RMS level above this is speech (about -40 dBFS).
    const LEVEL: f64 = 328.0;

    fn loud(frame: &[i16]) -> bool {
        if frame.is_empty() {
            return false;
        }
        let sum: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (sum / frame.len() as f64).sqrt() > Self::LEVEL
    }
}

#[derive(Serialize)]
struct Timing<'a> {
    /// Call time, ms (`clock`: its zero as Unix time in ms, in `name`).
    t_ms: u64,
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// Agent audio played so far, ms.
    heard_ms: u64,
}

/// Places one call through the webhook and runs it to its end.
pub async fn place_call(carrier: &Carrier, opts: &CallerOptions) -> CallReport {
    let call_sid = sid("CA");
    let mut report = CallReport { call_sid: call_sid.clone(), ..Default::default() };
    let (tx, rx) = mpsc::channel(4);
    carrier.calls.lock().unwrap_or_else(|e| e.into_inner()).insert(call_sid.clone(), tx);
    let result = run_call(carrier, opts, &call_sid, rx, &mut report).await;
    carrier.calls.lock().unwrap_or_else(|e| e.into_inner()).remove(&call_sid);
    if let Err(e) = result {
        report.status = "failed".into();
        report.detail = Some(e.to_string());
    }
    report
}

async fn run_call(
    carrier: &Carrier,
    opts: &CallerOptions,
    call_sid: &str,
    mut commands: mpsc::Receiver<Command>,
    report: &mut CallReport,
) -> anyhow::Result<()> {
    let token = opts.sign_with.as_deref().unwrap_or(&carrier.auth_token);
    let params: Vec<(String, String)> = [
        ("AccountSid", carrier.account_sid.as_str()),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid),
        ("CallStatus", "ringing"),
        ("Called", opts.to.as_str()),
        ("Caller", opts.from.as_str()),
        ("Direction", "inbound"),
        ("From", opts.from.as_str()),
        ("To", opts.to.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let signature = signature::compute(token, &opts.webhook, &params);
    let http = reqwest::Client::new();
    let resp = http
        .post(&opts.webhook)
        .header(signature::HEADER, signature)
        .form(&params)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("webhook: {}", e.without_url()))?;
    let status = resp.status();
    let body = resp.text().await?;
    if !status.is_success() {
        anyhow::bail!("webhook answered HTTP {status}");
    }
    let verbs = twiml::parse(&body)?;
    let (url, stream_params) = match verbs.first() {
        Some(Verb::ConnectStream { url, params }) => (url.clone(), params.clone()),
        other => {
            report.status = "rejected".into();
            report.detail = Some(match other {
                Some(Verb::Say(s)) => s.clone(),
                Some(v) => format!("{v:?}"),
                None => "empty TwiML".into(),
            });
            return Ok(());
        }
    };
    let mut request = url.as_str().into_client_request()?;
    let sig = signature::compute(token, &url, &[]);
    request.headers_mut().insert(signature::HEADER, sig.parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    let (mut ws_tx, mut ws_rx) = ws.split();
    let stream_sid = sid("MZ");
    let clock = Instant::now();
    // The call clock's zero on the wall clock, so a bench can join the timing log with other
    // processes' logs.
    let clock_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let mut seq = 0u64;
    let mut next_seq = || {
        seq += 1;
        seq.to_string()
    };
    let send = |m: &Inbound| Message::Text(serde_json::to_string(m).unwrap_or_default().into());
    ws_tx.send(send(&Inbound::Connected { protocol: "Call".into(), version: "1.0.0".into() })).await?;
    let start = StartInfo {
        stream_sid: stream_sid.clone(),
        account_sid: carrier.account_sid.clone(),
        call_sid: call_sid.into(),
        tracks: vec!["inbound".into()],
        custom_parameters: stream_params.into_iter().collect(),
        media_format: MediaFormat::mulaw_8k(),
    };
    ws_tx
        .send(send(&Inbound::Start { sequence_number: next_seq(), stream_sid: stream_sid.clone(), start }))
        .await?;

    let mut timing = match &opts.timing_log {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => None,
    };
    let mut log = |t: &Timing<'_>| {
        if let Some(w) = timing.as_mut() {
            use std::io::Write;
            let _ = serde_json::to_writer(&mut *w, t);
            let _ = w.write_all(b"\n");
        }
    };
    log(&Timing { t_ms: 0, event: "clock", name: Some(&format!("{clock_unix_ms:.3}")), heard_ms: 0 });
    // The 1x player: received audio, and marks placed at the point of the queue they follow.
    let mut playback: VecDeque<i16> = VecDeque::new();
    let mut marks: VecDeque<(usize, String)> = VecDeque::new(); // (samples still ahead, name)
    let mut heard: Vec<i16> = Vec::new();
    let keep_heard = opts.heard_wav.is_some();
    let mut played: u64 = 0;
    let mut sent: usize = 0;
    let mut chunk = 0u64;
    let mut dtmf: VecDeque<(u64, String)> = opts.dtmf.iter().cloned().collect();
    let hang_up_at = clock + Duration::from_millis(opts.audio.len() as u64 / 8) + opts.linger;
    let mut tick = tokio::time::interval_at(clock, Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut mulaw = Vec::with_capacity(160);
    let mut b64 = String::new();
    let now_ms = || clock.elapsed().as_millis() as u64;
    let mut fault = opts.fault.clone();
    // Barge-in timing: quiet time before this frame, and the barge-in still being timed.
    let mut quiet_ms = BargeIn::QUIET_MS;
    let mut barging: Option<BargeIn> = None;
    let mut played_last_tick = false;
    let ended_by;
    loop {
        tokio::select! {
            // The API's commands first: a hang-up request is answered before the server closes
            // the stream behind it, as at Twilio, where the REST call ends the stream.
            biased;
            cmd = commands.recv() => {
                match cmd {
                    Some(Command::HangUp) | None => { ended_by = "server"; }
                    Some(Command::Twiml(xml)) => {
                        ended_by = "transfer";
                        if let Ok(verbs) = twiml::parse(&xml) {
                            report.transferred_to = verbs.into_iter().find_map(|v| match v { Verb::Dial { target } => Some(target), _ => None });
                        }
                    }
                }
                log(&Timing { t_ms: now_ms(), event: ended_by, name: None, heard_ms: played / 8 });
                break;
            }
            _ = tick.tick() => {
                let t = now_ms();
                match &fault {
                    Some(CallerFault::HangUpMidReply { after_ms }) if played / 8 >= *after_ms => {
                        log(&Timing { t_ms: t, event: "fault_hang_up", name: None, heard_ms: played / 8 });
                        report.ended_by = "caller_dropped".into();
                        report.status = "completed".into();
                        report.heard_ms = played / 8;
                        report.duration_ms = t;
                        // Gone without `stop` or a close handshake, as a dead line is.
                        return Ok(());
                    }
                    Some(CallerFault::MalformedMedia { at_ms }) if t >= *at_ms => {
                        let bad = media_message(&next_seq(), &stream_sid, chunk, t, "%%not base64%%");
                        let _ = ws_tx.send(Message::Text(bad.into())).await;
                        log(&Timing { t_ms: t, event: "fault_malformed_media", name: None, heard_ms: played / 8 });
                        fault = None;
                    }
                    Some(CallerFault::OversizeMedia { at_ms, bytes }) if t >= *at_ms => {
                        let payload = "A".repeat(*bytes / 4 * 4);
                        let big = media_message(&next_seq(), &stream_sid, chunk, t, &payload);
                        let _ = ws_tx.send(Message::Text(big.into())).await;
                        log(&Timing { t_ms: t, event: "fault_oversize_media", name: None, heard_ms: played / 8 });
                        fault = None;
                    }
                    _ => {}
                }
                let silent = matches!(fault, Some(CallerFault::Silence { at_ms }) if t >= at_ms);
                // Caller audio: the WAV, then silence (a live line).
                let end = (sent + 160).min(opts.audio.len());
                let speaking = BargeIn::loud(&opts.audio[sent..end]);
                if speaking && quiet_ms >= BargeIn::QUIET_MS && !playback.is_empty() && barging.is_none() {
                    barging = Some(BargeIn { onset_ms: t, ..Default::default() });
                    log(&Timing { t_ms: t, event: "barge_in", name: None, heard_ms: played / 8 });
                }
                quiet_ms = if speaking { 0 } else { quiet_ms + 20 };
                mulaw.clear();
                if sent < end {
                    g711::encode_ulaw(&opts.audio[sent..end], &mut mulaw);
                }
                mulaw.resize(160, 0xff);
                sent = end;
                chunk += 1;
                b64.clear();
                base64::engine::general_purpose::STANDARD.encode_string(&mulaw, &mut b64);
                let media = media_message(&next_seq(), &stream_sid, chunk, (chunk - 1) * 20, &b64);
                if !silent && ws_tx.send(Message::Text(media.into())).await.is_err() {
                    ended_by = "socket";
                    break;
                }
                while dtmf.front().is_some_and(|(at, _)| *at <= t) {
                    let (_, digit) = dtmf.pop_front().unwrap_or_default();
                    let m = Inbound::Dtmf { sequence_number: next_seq(), stream_sid: stream_sid.clone(), dtmf: crate::media::Dtmf { track: "inbound_track".into(), digit: digit.clone() } };
                    let _ = ws_tx.send(send(&m)).await;
                    log(&Timing { t_ms: t, event: "dtmf", name: Some(&digit), heard_ms: played / 8 });
                }
                // Agent audio: play 20 ms, then echo the marks that playing reached.
                let n = playback.len().min(160);
                if n > 0 && report.first_audio_ms.is_none() {
                    report.first_audio_ms = Some(t);
                    log(&Timing { t_ms: t, event: "first_audio", name: None, heard_ms: 0 });
                }
                if keep_heard {
                    heard.extend(playback.drain(..n));
                    heard.resize(heard.len() + 160 - n, 0);
                } else {
                    playback.drain(..n);
                }
                played += n as u64;
                played_last_tick = n > 0;
                if playback.is_empty() && let Some(mut b) = barging.take() {
                    b.silent_ms = Some(t.saturating_sub(b.onset_ms));
                    report.barge_ins.push(b);
                }
                // Marks count down the samples ahead of them, each relative to the one before.
                let mut consumed = n;
                for m in marks.iter_mut() {
                    let c = m.0.min(consumed);
                    m.0 -= c;
                    consumed -= c;
                    if consumed == 0 {
                        break;
                    }
                }
                while marks.front().is_some_and(|m| m.0 == 0) {
                    let (_, name) = marks.pop_front().unwrap_or_default();
                    report.marks += 1;
                    log(&Timing { t_ms: t, event: "mark", name: Some(&name), heard_ms: played / 8 });
                    let m = Inbound::Mark { sequence_number: next_seq(), stream_sid: stream_sid.clone(), mark: MarkName { name } };
                    let _ = ws_tx.send(send(&m)).await;
                }
                if Instant::now() >= hang_up_at {
                    ended_by = "caller";
                    break;
                }
            }
            msg = ws_rx.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => { ended_by = "socket"; break; }
                    Some(Ok(_)) => anyhow::bail!("the server sent a non-text message (Twilio error 31924)"),
                };
                match serde_json::from_str::<Outbound>(&text) {
                    Ok(Outbound::Media { media, .. }) => {
                        let bytes = base64::engine::general_purpose::STANDARD.decode(media.payload.as_bytes())
                            .map_err(|e| anyhow::anyhow!("the server sent a media payload that is not base64: {e}"))?;
                        let mut pcm = Vec::with_capacity(bytes.len());
                        g711::decode_ulaw(&bytes, &mut pcm);
                        if playback.is_empty() && !played_last_tick {
                            // Agent audio after silence: a reply starts (benches join it with
                            // the end of the caller's speech).
                            log(&Timing { t_ms: now_ms(), event: "audio_start", name: None, heard_ms: played / 8 });
                        }
                        playback.extend(pcm);
                    }
                    Ok(Outbound::Mark { mark, .. }) => {
                        // Samples between the previous mark (or the play head) and this one.
                        let before: usize = marks.iter().map(|m| m.0).sum();
                        marks.push_back((playback.len().saturating_sub(before), mark.name));
                    }
                    Ok(Outbound::Clear { .. }) => {
                        report.clears += 1;
                        if let Some(b) = barging.as_mut().filter(|b| b.clear_ms.is_none()) {
                            b.clear_ms = Some(now_ms().saturating_sub(b.onset_ms));
                        }
                        playback.clear();
                        log(&Timing { t_ms: now_ms(), event: "clear", name: None, heard_ms: played / 8 });
                        // Twilio echoes the marks it dropped at once.
                        while let Some((_, name)) = marks.pop_front() {
                            let m = Inbound::Mark { sequence_number: next_seq(), stream_sid: stream_sid.clone(), mark: MarkName { name } };
                            let _ = ws_tx.send(send(&m)).await;
                        }
                    }
                    Err(e) => anyhow::bail!("the server sent a message Twilio would reject: {e}"),
                }
            }
        }
    }
    if ended_by != "socket" {
        let m = Inbound::Stop {
            sequence_number: next_seq(),
            stream_sid: stream_sid.clone(),
            stop: crate::media::StopInfo {
                account_sid: carrier.account_sid.clone(),
                call_sid: call_sid.into(),
            },
        };
        let _ = ws_tx.send(send(&m)).await;
        let _ = ws_tx.send(Message::Close(None)).await;
        // A proper close handshake: read until the server closes. Dropping a socket with
        // unread data makes the kernel send RST, and the server would lose the `stop`.
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while let Some(Ok(m)) = ws_rx.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    report.ended_by = ended_by.into();
    report.status = "completed".into();
    report.heard_ms = played / 8;
    report.duration_ms = now_ms();
    log(&Timing { t_ms: report.duration_ms, event: "end", name: Some(ended_by), heard_ms: played / 8 });
    if let Some(p) = &opts.heard_wav {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(p, spec)?;
        for s in heard {
            w.write_sample(s)?;
        }
        w.finalize()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::CallerFault;

    #[test]
    fn caller_fault_specs_parse_and_bad_ones_say_the_expected_form() {
        assert_eq!("hangup-mid-reply".parse(), Ok(CallerFault::HangUpMidReply { after_ms: 500 }));
        assert_eq!("hangup-mid-reply:80".parse(), Ok(CallerFault::HangUpMidReply { after_ms: 80 }));
        assert_eq!("malformed-media@300".parse(), Ok(CallerFault::MalformedMedia { at_ms: 300 }));
        assert_eq!("silence@2000".parse(), Ok(CallerFault::Silence { at_ms: 2000 }));
        assert_eq!(
            "oversize-media@300:40000".parse(),
            Ok(CallerFault::OversizeMedia { at_ms: 300, bytes: 40_000 })
        );
        for bad in ["", "silence", "silence@soon", "oversize-media@300", "explode@1"] {
            let e = bad.parse::<CallerFault>().unwrap_err();
            assert!(e.contains("expected hangup-mid-reply"), "{bad}: {e}");
        }
    }
}
