//! ElevenLabs TTS fake: `POST /v1/text-to-speech/{voice_id}/stream` (and
//! `/stream/with-timestamps`) and the `stream-input` WebSocket, strict like the service.
//!
//! Audio is the deterministic [`speech_waveform`] of the text, in the requested PCM or μ-law
//! format. MP3, Opus and A-law formats are valid but answered with 400 "unsupported by fake".
//! Stricter than the service on purpose: an `output_format` in the JSON body (the service
//! silently ignores it, so a client putting it there never gets the format it asked for) and
//! unknown body fields are rejected.

use crate::openai_speech::pacing::{BodyEvent, Pacing, paced_body};
use crate::openai_speech::speech_waveform;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use voxpipe_core::audio::g711;

const BODY_FIELDS: &[&str] = &[
    "text",
    "model_id",
    "language_code",
    "voice_settings",
    "pronunciation_dictionary_locators",
    "seed",
    "previous_text",
    "next_text",
    "previous_request_ids",
    "next_request_ids",
    "use_pvc_as_ivc",
    "apply_text_normalization",
    "apply_language_text_normalization",
];
const VOICE_SETTINGS: &[&str] = &["stability", "similarity_boost", "style", "use_speaker_boost", "speed"];
const KNOWN_FORMATS: &[&str] = &[
    "mp3_22050_32",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_44100",
    "pcm_48000",
    "ulaw_8000",
    "alaw_8000",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
];
const DEFAULT_SCHEDULE: [usize; 4] = [120, 160, 250, 290];

/// Knobs of the ElevenLabs fake.
#[derive(Clone, Debug)]
pub struct ElevenLabsFakeConfig {
    /// The accepted `xi-api-key`. Default: `xi-test`.
    pub api_key: String,
    /// Voices that exist; `None` accepts any id. Default: `None`.
    pub voice_ids: Option<Vec<String>>,
    /// Audio per character, ms. Default: 60.
    pub ms_per_char: u64,
    /// Delay before the first audio of each generation, ms. Default: 0.
    pub time_to_first_byte_ms: u64,
    /// Audio seconds sent per wall second; 0 = as fast as possible. Default: 5.0.
    pub real_time_factor: f64,
    /// HTTP body chunk sizes, bytes, cycled (odd sizes split samples). Default: `[4801, 1999]`.
    pub chunk_bytes: Vec<usize>,
    /// Audio per WebSocket audio message, ms. Default: 250.
    pub ws_message_ms: u64,
    /// Fault: answer HTTP request `n` (0-based) with this status.
    pub fail_requests: Vec<(usize, u16)>,
    /// Faults by HTTP request index (0-based), of the kinds in [`SUPPORTED_HTTP_FAULTS`]; a
    /// chunk is one piece of the audio body.
    pub faults: crate::fault::Faults,
    /// Faults by `stream-input` WebSocket connection (0-based, in upgrade order), of the
    /// kinds in [`SUPPORTED_WS_FAULTS`]; a chunk is one audio message. `status` refuses the
    /// upgrade; `cut-after` drops the TCP connection without a close frame.
    pub ws_faults: crate::fault::Faults,
}

/// The fault kinds the HTTP stream implements (its body is raw audio: nothing to malform).
pub const SUPPORTED_HTTP_FAULTS: &[&str] =
    &["status", "stall-after", "cut-after", "slow", "wrong-content-type"];
/// The fault kinds the `stream-input` WebSocket implements.
pub const SUPPORTED_WS_FAULTS: &[&str] =
    &["status", "stall-after", "cut-after", "malformed", "unknown-event", "slow", "oversize"];

impl Default for ElevenLabsFakeConfig {
    fn default() -> Self {
        Self {
            api_key: "xi-test".into(),
            voice_ids: None,
            ms_per_char: 60,
            time_to_first_byte_ms: 0,
            real_time_factor: 5.0,
            chunk_bytes: vec![4801, 1999],
            ws_message_ms: 250,
            fail_requests: Vec::new(),
            faults: Default::default(),
            ws_faults: Default::default(),
        }
    }
}

/// One HTTP request as the fake saw it (times from the fake's start, tokio clock).
#[derive(Clone, Debug)]
pub struct HttpRecord {
    /// Arrival time.
    pub at: Duration,
    /// Request path.
    pub path: String,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// The `xi-api-key` header, if sent.
    pub api_key: Option<String>,
    /// JSON body (`Null` if not JSON).
    pub body: Value,
    /// Response status.
    pub status: u16,
    /// Whether the client dropped the body before the end.
    pub dropped: bool,
}

/// One WebSocket session as the fake saw it.
#[derive(Clone, Debug, Default)]
pub struct WsRecord {
    /// Voice id from the path.
    pub voice_id: String,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// Whether the key came in the `xi-api-key` header.
    pub header_auth: bool,
    /// Client messages with their arrival times.
    pub messages: Vec<(Duration, Value)>,
    /// Audio messages sent.
    pub audio_messages: usize,
    /// How the session ended: `final`, `client_dropped`, `inactivity`, or a protocol error.
    pub ended: Option<String>,
}

#[derive(Debug)]
struct Shared {
    config: ElevenLabsFakeConfig,
    start: Instant,
    http: Mutex<Vec<HttpRecord>>,
    ws: Mutex<Vec<WsRecord>>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn ws_update(&self, i: usize, f: impl FnOnce(&mut WsRecord)) {
        if let Some(r) = self.ws.lock().unwrap_or_else(|e| e.into_inner()).get_mut(i) {
            f(r);
        }
    }
}

/// A running ElevenLabs fake; stops when dropped.
#[derive(Debug)]
pub struct ElevenLabsFake {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl ElevenLabsFake {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start(config: ElevenLabsFakeConfig) -> std::io::Result<Self> {
        Self::start_on(crate::server::any_port(), config).await
    }

    /// Starts the fake on `addr`.
    pub async fn start_on(addr: std::net::SocketAddr, config: ElevenLabsFakeConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            start: Instant::now(),
            http: Mutex::new(Vec::new()),
            ws: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/text-to-speech/{voice_id}/stream", post(http_stream))
            .route("/v1/text-to-speech/{voice_id}/stream/with-timestamps", post(http_stream))
            .route("/v1/text-to-speech/{voice_id}/stream-input", any(ws_upgrade))
            .with_state(shared.clone());
        let server = crate::server::Running::start(addr, app, CancellationToken::new()).await?;
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:port/v1`, the client's `base_url`.
    pub fn base_url(&self) -> String {
        self.server.v1_url()
    }

    /// `ws://127.0.0.1:port/v1`, the client's `ws_url`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1", self.server.addr())
    }

    /// Every HTTP request so far.
    pub fn http_requests(&self) -> Vec<HttpRecord> {
        self.shared.http.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every WebSocket session so far.
    pub fn ws_sessions(&self) -> Vec<WsRecord> {
        self.shared.ws.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// An ElevenLabs-style error: `{"detail":{"status":…,"message":…}}`.
fn detail_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "detail": { "status": code, "message": message } });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Audio format the fake can produce: (rate, μ-law?).
fn format_of(name: &str) -> Result<(u32, bool), String> {
    match name {
        "ulaw_8000" => Ok((8_000, true)),
        n if n.starts_with("pcm_") && KNOWN_FORMATS.contains(&n) => {
            Ok((n[4..].parse().expect("known pcm formats end in a rate"), false))
        }
        n if KNOWN_FORMATS.contains(&n) => Err(format!("output_format {n} is unsupported by fake")),
        n => Err(format!("invalid output_format {n:?}")),
    }
}

/// The fake's audio for `text` in `format`, as wire bytes.
fn encode(text: &str, ms_per_char: u64, (rate, ulaw): (u32, bool)) -> Vec<u8> {
    let samples = speech_waveform(text, ms_per_char, rate);
    let mut out = Vec::with_capacity(samples.len() * 2);
    if ulaw {
        g711::encode_ulaw(&samples, &mut out);
    } else {
        voxpipe_core::audio::pcm::encode_pcm16le(&samples, &mut out);
    }
    out
}

#[allow(clippy::result_large_err, reason = "fake request path: the error is the HTTP response to send")]
fn check_voice(config: &ElevenLabsFakeConfig, voice_id: &str) -> Result<(), Response> {
    match &config.voice_ids {
        Some(ids) if !ids.iter().any(|v| v == voice_id) => Err(detail_error(
            StatusCode::NOT_FOUND,
            "voice_not_found",
            &format!("A voice with the voice_id {voice_id} was not found."),
        )),
        _ => Ok(()),
    }
}

#[allow(clippy::result_large_err, reason = "fake request path: the error is the HTTP response to send")]
fn check_body(body: &Value) -> Result<String, Response> {
    let Some(obj) = body.as_object() else {
        return Err(detail_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be a JSON object",
        ));
    };
    if obj.contains_key("output_format") {
        let msg = "output_format is a query parameter, not a body field (the service ignores it in the body)";
        return Err(detail_error(StatusCode::BAD_REQUEST, "invalid_request", msg));
    }
    let field_error = |loc: &str, msg: &str, kind: &str| {
        let body = json!({ "detail": [{ "loc": ["body", loc], "msg": msg, "type": kind }] });
        (StatusCode::UNPROCESSABLE_ENTITY, [(header::CONTENT_TYPE, "application/json")], body.to_string())
            .into_response()
    };
    if let Some(extra) = obj.keys().find(|k| !BODY_FIELDS.contains(&k.as_str())) {
        return Err(field_error(extra, "extra fields not permitted", "value_error.extra"));
    }
    if let Some(vs) = obj.get("voice_settings").filter(|v| !v.is_null()) {
        let ok = vs.as_object().is_some_and(|o| o.keys().all(|k| VOICE_SETTINGS.contains(&k.as_str())));
        if !ok {
            return Err(field_error("voice_settings", "invalid voice settings", "value_error"));
        }
    }
    match obj.get("text") {
        Some(Value::String(t)) if !t.trim().is_empty() => Ok(t.clone()),
        Some(Value::String(_)) => Err(field_error("text", "text must not be empty", "value_error")),
        _ => Err(field_error("text", "field required", "value_error.missing")),
    }
}

async fn http_stream(
    State(shared): State<Arc<Shared>>,
    Path(voice_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let api_key = headers.get("xi-api-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let index = {
        let mut http = shared.http.lock().unwrap_or_else(|e| e.into_inner());
        http.push(HttpRecord {
            at: shared.now(),
            path: uri.path().to_string(),
            query: query.clone(),
            api_key: api_key.clone(),
            body: json.clone(),
            status: 200,
            dropped: false,
        });
        http.len() - 1
    };
    let result = answer_http(&shared, index, &voice_id, &query, api_key.as_deref(), &json, uri.path());
    let resp = result.unwrap_or_else(|r| r);
    let status = resp.status().as_u16();
    if let Some(r) = shared.http.lock().unwrap_or_else(|e| e.into_inner()).get_mut(index) {
        r.status = status;
    }
    resp
}

#[allow(clippy::result_large_err, reason = "fake request path: the error is the HTTP response to send")]
fn answer_http(
    shared: &Arc<Shared>,
    index: usize,
    voice_id: &str,
    query: &HashMap<String, String>,
    api_key: Option<&str>,
    json: &Value,
    path: &str,
) -> Result<Response, Response> {
    let config = &shared.config;
    if api_key != Some(config.api_key.as_str()) {
        let msg = "Invalid API key";
        return Err(detail_error(StatusCode::UNAUTHORIZED, "invalid_api_key", msg));
    }
    let fault = config.faults.get(&index);
    let status_fault = match fault {
        Some(crate::fault::Fault::Status { status, retry_after_s }) => Some((*status, *retry_after_s)),
        _ => config.fail_requests.iter().find(|(n, _)| *n == index).map(|&(_, s)| (s, None)),
    };
    if let Some((status, retry_after)) = status_fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (code, msg) = match status.as_u16() {
            429 => ("too_many_concurrent_requests", "Too many concurrent requests (injected fault)"),
            _ => ("internal_error", "injected fault"),
        };
        let mut resp = detail_error(status, code, msg);
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        return Err(resp);
    }
    if fault == Some(&crate::fault::Fault::WrongContentType) {
        return Ok(crate::fault::html_response());
    }
    check_voice(config, voice_id)?;
    let format = format_of(query.get("output_format").map_or("mp3_44100_128", String::as_str))
        .map_err(|m| detail_error(StatusCode::BAD_REQUEST, "invalid_output_format", &m))?;
    let text = check_body(json)?;
    let bytes_per_sec = format.0 as f64 * if format.1 { 1.0 } else { 2.0 };
    let pacing = Pacing {
        chunk_bytes: config.chunk_bytes.clone(),
        bytes_per_sec,
        ttfb: Duration::from_millis(config.time_to_first_byte_ms),
        real_time_factor: config.real_time_factor,
        cut_after: None,
        fault: fault.cloned(),
    };
    let on = {
        let shared = shared.clone();
        move |ev| {
            if let BodyEvent::Dropped = ev
                && let Some(r) = shared.http.lock().unwrap_or_else(|e| e.into_inner()).get_mut(index)
            {
                r.dropped = true;
            }
        }
    };
    if path.ends_with("/with-timestamps") {
        let lines = timestamp_lines(&text, config.ms_per_char, format, config.ws_message_ms);
        let pacing = Pacing { chunk_bytes: vec![usize::MAX], real_time_factor: 0.0, ..pacing };
        let body = paced_body(lines.into_bytes(), pacing, on);
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], Body::from_stream(body))
            .into_response());
    }
    let body = paced_body(encode(&text, config.ms_per_char, format), pacing, on);
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "audio/mpeg")], Body::from_stream(body)).into_response())
}

/// `/stream/with-timestamps`: one JSON object per line, snake_case, times in seconds.
fn timestamp_lines(text: &str, ms_per_char: u64, format: (u32, bool), piece_ms: u64) -> String {
    let mut out = String::new();
    for (audio, chars, starts) in generation_pieces(text, ms_per_char, format, piece_ms) {
        let start_s: Vec<f64> = starts.iter().map(|&ms| ms as f64 / 1000.0).collect();
        let end_s: Vec<f64> = starts.iter().map(|&ms| (ms + ms_per_char) as f64 / 1000.0).collect();
        let al = json!({ "characters": chars, "character_start_times_seconds": start_s, "character_end_times_seconds": end_s });
        let b64 = base64::engine::general_purpose::STANDARD.encode(audio);
        out.push_str(
            &json!({ "audio_base64": b64, "alignment": al, "normalized_alignment": al }).to_string(),
        );
        out.push('\n');
    }
    out
}

/// Splits the audio of `text` into pieces of `piece_ms`, each with the characters starting in
/// it and their start times relative to the piece.
fn generation_pieces(
    text: &str,
    ms_per_char: u64,
    format: (u32, bool),
    piece_ms: u64,
) -> Vec<(Vec<u8>, Vec<String>, Vec<u64>)> {
    let bytes = encode(text, ms_per_char, format);
    let bytes_per_ms = (format.0 as u64 / 1000) * if format.1 { 1 } else { 2 };
    let piece_bytes = (piece_ms.max(1) * bytes_per_ms).max(2) as usize;
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    for (i, audio) in bytes.chunks(piece_bytes).enumerate() {
        let from = i as u64 * piece_ms;
        let to = from + piece_ms;
        let (mut cs, mut starts) = (Vec::new(), Vec::new());
        for (k, c) in chars.iter().enumerate() {
            let at = k as u64 * ms_per_char;
            if at >= from && at < to {
                cs.push(c.to_string());
                starts.push(at - from);
            }
        }
        out.push((audio.to_vec(), cs, starts));
    }
    out
}

async fn ws_upgrade(
    State(shared): State<Arc<Shared>>,
    Path(voice_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let config = &shared.config;
    let header_key = headers.get("xi-api-key").and_then(|v| v.to_str().ok());
    if header_key.is_some_and(|k| k != config.api_key) {
        return detail_error(StatusCode::UNAUTHORIZED, "invalid_api_key", "Invalid API key");
    }
    if let Err(resp) = check_voice(config, &voice_id) {
        return resp;
    }
    let format = match format_of(query.get("output_format").map_or("mp3_44100_128", String::as_str)) {
        Ok(f) => f,
        Err(m) => return detail_error(StatusCode::BAD_REQUEST, "invalid_output_format", &m),
    };
    let inactivity_s: u64 = query.get("inactivity_timeout").and_then(|v| v.parse().ok()).unwrap_or(20);
    let attempt = shared.ws.lock().unwrap_or_else(|e| e.into_inner()).len();
    let fault = config.ws_faults.get(&attempt).cloned();
    if let Some(crate::fault::Fault::Status { status, retry_after_s }) = fault {
        shared.ws.lock().unwrap_or_else(|e| e.into_inner()).push(WsRecord {
            voice_id,
            query,
            ended: Some(format!("rejected {status}")),
            ..Default::default()
        });
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = detail_error(code, "internal_error", "injected fault");
        if let Some(secs) = retry_after_s {
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        return resp;
    }
    if inactivity_s > 180 {
        return detail_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "inactivity_timeout must be at most 180",
        );
    }
    let index = {
        let mut all = shared.ws.lock().unwrap_or_else(|e| e.into_inner());
        all.push(WsRecord {
            voice_id,
            query: query.clone(),
            header_auth: header_key.is_some(),
            ..Default::default()
        });
        all.len() - 1
    };
    let session = WsSession {
        shared: shared.clone(),
        index,
        format,
        authed: header_key.is_some(),
        alignment: query.get("sync_alignment").is_some_and(|v| v == "true"),
        inactivity: Duration::from_secs(inactivity_s),
        buffer: String::new(),
        schedule: DEFAULT_SCHEDULE.to_vec(),
        generations: 0,
        first: None,
        outgoing: VecDeque::new(),
        next_send: None,
        input_ended: false,
        fault,
        sent: 0,
        stalled: false,
    };
    ws.on_upgrade(move |socket| session.run(socket))
}

/// One `stream-input` socket.
struct WsSession {
    shared: Arc<Shared>,
    index: usize,
    format: (u32, bool),
    authed: bool,
    alignment: bool,
    inactivity: Duration,
    buffer: String,
    schedule: Vec<usize>,
    generations: usize,
    /// `voice_settings` and `generation_config` of the first message: later ones must match.
    first: Option<(Value, Value)>,
    /// Audio messages waiting to go out, with their audio length.
    outgoing: VecDeque<(String, Duration)>,
    next_send: Option<Instant>,
    input_ended: bool,
    /// This connection's fault, if any.
    fault: Option<crate::fault::Fault>,
    /// Messages sent so far (audio and injected).
    sent: usize,
    /// A stall fault struck: nothing more is sent.
    stalled: bool,
}

/// What a connection's fault does before the next audio message.
enum FaultStep {
    /// Send it.
    Go,
    /// Send nothing more.
    Stall,
    /// Drop the connection without a close frame.
    Drop,
    /// Sending an injected message failed.
    ClientGone,
}

impl WsSession {
    async fn run(mut self, mut socket: WebSocket) {
        let mut last_input = Instant::now();
        let ended = loop {
            let idle_at = last_input + self.inactivity;
            let send_at = self.next_send;
            tokio::select! {
                msg = socket.recv() => match msg {
                    None | Some(Err(_)) => break "client_dropped".to_string(),
                    Some(Ok(Message::Text(t))) => {
                        last_input = Instant::now();
                        if let Err(reason) = self.on_text(t.as_str()) {
                            let frame = CloseFrame { code: 1008, reason: reason.clone().into() };
                            let _ = socket.send(Message::Close(Some(frame))).await;
                            break reason;
                        }
                    }
                    Some(Ok(Message::Close(_))) => break "client_closed".to_string(),
                    Some(Ok(Message::Binary(_))) => {
                        let reason = "binary frames are not accepted; send JSON text".to_string();
                        let frame = CloseFrame { code: 1003, reason: reason.clone().into() };
                        let _ = socket.send(Message::Close(Some(frame))).await;
                        break reason;
                    }
                    Some(Ok(_)) => {}
                },
                () = async { tokio::time::sleep_until(send_at.expect("guarded")).await }, if send_at.is_some() => {
                    match self.fault_before_send(&mut socket).await {
                        FaultStep::Go => {}
                        FaultStep::Stall => {
                            // Stop sending for good; keep reading until the client leaves.
                            self.next_send = None;
                            self.outgoing.clear();
                            self.stalled = true;
                            continue;
                        }
                        FaultStep::Drop => break "fault_cut".to_string(),
                        FaultStep::ClientGone => break "client_dropped".to_string(),
                    }
                    let (msg, audio) = self.outgoing.pop_front().expect("next_send implies a queued message");
                    if socket.send(Message::Text(msg.into())).await.is_err() {
                        break "client_dropped".to_string();
                    }
                    self.sent += 1;
                    self.shared.ws_update(self.index, |r| r.audio_messages += 1);
                    let rtf = self.shared.config.real_time_factor;
                    let mut pace = if rtf > 0.0 { audio.div_f64(rtf) } else { Duration::ZERO };
                    if let Some(crate::fault::Fault::Slow { interval_ms }) = self.fault {
                        pace = pace.max(Duration::from_millis(interval_ms));
                    }
                    self.next_send = (!self.outgoing.is_empty()).then(|| send_at.expect("guarded") + pace);
                }
                () = tokio::time::sleep_until(idle_at), if !self.input_ended => {
                    let reason = format!("no text received within the inactivity timeout of {}s", self.inactivity.as_secs());
                    let frame = CloseFrame { code: 1008, reason: reason.clone().into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    break "inactivity".to_string();
                }
            }
            if self.input_ended && self.outgoing.is_empty() && !self.stalled {
                let _ = socket.send(Message::Text(json!({ "isFinal": true }).to_string().into())).await;
                let _ = socket.send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
                break "final".to_string();
            }
        };
        self.shared.ws_update(self.index, |r| r.ended = Some(ended));
    }

    /// Applies the connection's fault before the next audio message: injects a malformed,
    /// unknown or oversize message once `sent` reaches its position, or stalls or cuts.
    async fn fault_before_send(&mut self, socket: &mut WebSocket) -> FaultStep {
        use crate::fault::{Fault, Injection};
        let Some(fault) = self.fault.clone() else { return FaultStep::Go };
        match fault {
            Fault::StallAfter { chunks } if self.sent >= chunks => return FaultStep::Stall,
            Fault::CutAfter { chunks } if self.sent >= chunks => return FaultStep::Drop,
            _ => {}
        }
        let Some((after, what)) = fault.injection() else { return FaultStep::Go };
        if self.sent != after {
            return FaultStep::Go;
        }
        let text = match what {
            Injection::Malformed => "{\"audio\":\"AAAA\",\"isFinal\":nul".to_string(),
            Injection::Unknown => {
                json!({ "fakeUnknownField": "a message this API does not define" }).to_string()
            }
            Injection::Oversize(bytes) => {
                // Well-formed audio (silence), as large as asked.
                let audio = vec![0u8; bytes / 4 * 3];
                json!({ "audio": base64::engine::general_purpose::STANDARD.encode(audio), "isFinal": null })
                    .to_string()
            }
        };
        self.sent += 1;
        if socket.send(Message::Text(text.into())).await.is_err() {
            return FaultStep::ClientGone;
        }
        FaultStep::Go
    }

    /// Handles one client message; `Err` is the reason the socket is closed with.
    fn on_text(&mut self, text: &str) -> Result<(), String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON message: {e}"))?;
        let now = self.shared.now();
        self.shared.ws_update(self.index, |r| r.messages.push((now, v.clone())));
        let obj = v.as_object().ok_or("messages must be JSON objects")?;
        let text = obj.get("text").and_then(Value::as_str).ok_or("the text field is required")?;
        let vs = obj.get("voice_settings").cloned().unwrap_or(Value::Null);
        let gc = obj.get("generation_config").cloned().unwrap_or(Value::Null);
        let Some((first_vs, first_gc)) = &self.first else {
            if text != " " {
                return Err(format!("the first message must have text \" \" (a single space), got {text:?}"));
            }
            if !self.authed {
                let key = obj.get("xi_api_key").or_else(|| obj.get("xi-api-key")).and_then(Value::as_str);
                let bearer =
                    obj.get("authorization").and_then(Value::as_str).and_then(|a| a.strip_prefix("Bearer "));
                if key.or(bearer) != Some(self.shared.config.api_key.as_str()) {
                    return Err("invalid_api_key: Invalid API key".into());
                }
                self.authed = true;
            }
            if let Some(s) = gc.get("chunk_length_schedule") {
                let list: Option<Vec<usize>> = s.as_array().and_then(|a| {
                    a.iter()
                        .map(|n| n.as_f64().filter(|n| (50.0..=500.0).contains(n)).map(|n| n as usize))
                        .collect()
                });
                self.schedule =
                    list.filter(|l| !l.is_empty()).ok_or("chunk_length_schedule: 50 to 500 each")?;
            }
            self.first = Some((vs, gc));
            return Ok(());
        };
        for key in ["xi_api_key", "xi-api-key", "authorization", "pronunciation_dictionary_locators"] {
            if obj.contains_key(key) {
                return Err(format!("{key} may only be sent in the first message"));
            }
        }
        if (!vs.is_null() && &vs != first_vs) || (!gc.is_null() && &gc != first_gc) {
            return Err("voice_settings and generation_config may not change after the first message".into());
        }
        if text.is_empty() {
            self.input_ended = true;
            let rest = std::mem::take(&mut self.buffer);
            self.generate(&rest);
            return Ok(());
        }
        self.buffer.push_str(text);
        if obj.get("flush").and_then(Value::as_bool) == Some(true) {
            let all = std::mem::take(&mut self.buffer);
            self.generate(&all);
            return Ok(());
        }
        let threshold = self.schedule[self.generations.min(self.schedule.len() - 1)];
        if self.buffer.chars().count() >= threshold
            && let Some(cut) = self.buffer.rfind(' ')
        {
            let rest = self.buffer.split_off(cut + 1);
            let now = std::mem::replace(&mut self.buffer, rest);
            self.generate(&now);
        }
        Ok(())
    }

    /// Queues the audio messages of one generation.
    fn generate(&mut self, text: &str) {
        if text.trim().is_empty() {
            return;
        }
        self.generations += 1;
        let config = &self.shared.config;
        let bytes_per_sec = self.format.0 as f64 * if self.format.1 { 1.0 } else { 2.0 };
        for (audio, chars, starts) in
            generation_pieces(text, config.ms_per_char, self.format, config.ws_message_ms)
        {
            let duration = Duration::from_secs_f64(audio.len() as f64 / bytes_per_sec);
            let mut msg =
                json!({ "audio": base64::engine::general_purpose::STANDARD.encode(&audio), "isFinal": null });
            if self.alignment {
                let durations = vec![config.ms_per_char; chars.len()];
                let al = json!({ "chars": chars, "charStartTimesMs": starts, "charsDurationsMs": durations });
                msg["alignment"] = al.clone();
                msg["normalizedAlignment"] = al;
            }
            self.outgoing.push_back((msg.to_string(), duration));
        }
        if self.next_send.is_none() && !self.outgoing.is_empty() {
            self.next_send = Some(Instant::now() + Duration::from_millis(config.time_to_first_byte_ms));
        }
    }
}
