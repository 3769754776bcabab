//! A local fake of the OpenAI Realtime API over WebSocket, as strict as the real service
//! (PROTOCOLS.md section 1), in both dialects: GA, and beta when the upgrade carries
//! `OpenAI-Beta: realtime=v1`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig};
//! let fake = RealtimeFake::start(RealtimeFakeConfig::default()).await?;
//! let url = format!("{}?model=gpt-realtime", fake.url()); // connect with `Authorization: Bearer …`
//! # let _ = url;
//! fake.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! What it does:
//! - **Handshake**: path `/v1/realtime` with a `model` query parameter; `Authorization: Bearer`
//!   (or the browser sub-protocol `openai-insecure-api-key.<key>`) checked against
//!   [`RealtimeFakeConfig::api_key`]; failures get HTTP 401/400/404 with an OpenAI error body.
//! - **Azure OpenAI's URL shapes** on the same port: `/openai/realtime?api-version=…&deployment=…`
//!   (the preview API: beta dialect) and `/openai/v1/realtime?model=…` (GA), authenticated by an
//!   `api-key` header (or `Authorization: Bearer`, standing for an Entra token); a missing or
//!   wrong key, or a missing `api-version` or deployment, gets Azure's error shape
//!   (`{"error": {"code", "message"}}`).
//! - **Compatible servers** ([`RealtimeFakeConfig::compatible`]): behaves like an independent
//!   server that speaks the beta dialect (per-turn timestamps, no truncation, warnings on
//!   unsupported fields, audio in bursts, late caller transcripts).
//! - **Session**: `session.created` first; `session.update` is validated field by field for the
//!   dialect (unknown, mistyped or out-of-range fields give `error` events naming the `param`)
//!   and merged partially; `session.updated` carries the full session.
//! - **Input audio**: base64 appends (max 15 MiB decoded each) in PCM16 24 kHz, μ-law or A-law;
//!   an energy VAD in 20 ms windows honours `threshold`, `prefix_padding_ms`,
//!   `silence_duration_ms` (server VAD) or `eagerness` (semantic VAD: high/medium/low end the
//!   turn after 300/800/1500 ms of silence). Timestamps are on the input-audio timeline.
//! - **Responses**: scripted ([`RealtimeFakeConfig::responses`], cycled per connection), with
//!   the exact event order of PROTOCOLS.md 1.6, paced audio (a 220 Hz tone) and interleaved
//!   transcript deltas, function calls with ~5-character argument fragments, barge-in
//!   cancellation, `response.cancel`, `conversation.item.truncate` checks and `usage`. An
//!   out-of-band response (`conversation: "none"`) says the text quoted in its `instructions`
//!   (or all of them), adds nothing to the conversation and does not use up a scripted one.
//!
//! - **Client secrets and WebRTC** (on the same port, see `calls`): `POST
//!   /v1/realtime/client_secrets` mints `ek_…` keys carrying a preset session (also accepted by
//!   the WebSocket); `POST /v1/realtime/calls` takes an SDP offer with one (or, as
//!   `multipart/form-data`, an offer and a session with a standard key) and runs the same
//!   session over WebRTC (with the `webrtc` feature): events on the `oai-events` data channel,
//!   Opus audio both ways, the server-owned output buffer (`output_audio_buffer.started`,
//!   `.stopped`, `.cleared`) and truncation by the server on a barge-in.
//!
//! Knobs: pacing (`first_audio_delay_ms`, `delta_ms`, `pace`), VAD level (`vad`), and faults
//! (`close_after_audio_deltas` drops the TCP connection mid-response, on the connections listed
//! in `fault_connections` or on all; `reject_with_status`
//! fails every upgrade). Not modelled: `idle_timeout_ms`, transcription-only sessions, SIP,
//! audio bytes in `conversation.item.retrieved`.

mod audio;
mod azure;
mod calls;
mod config;
mod conn;
mod conversation;
mod items;
mod response;
#[cfg(feature = "webrtc")]
mod rtc;
pub(crate) mod session;
mod validate;

use crate::vad;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{
    CompatibleConfig, FakeApiKey, RealtimeFakeConfig, SUPPORTED_FAULTS, ScriptedFunctionCall,
    ScriptedResponse, VadConfig,
};

use conn::Conn;
use session::Dialect;

#[cfg(feature = "webrtc")]
pub(crate) use rtc::Media;

/// Without the `webrtc` feature there is no WebRTC session, so no output buffer.
#[cfg(not(feature = "webrtc"))]
#[derive(Debug)]
pub(crate) enum Media {}

#[cfg(not(feature = "webrtc"))]
impl Media {
    pub(crate) fn push(&mut self, _: &str, _: &str, _: &[i16]) -> bool {
        match *self {}
    }
    pub(crate) fn playing(&self) -> bool {
        match *self {}
    }
    pub(crate) fn clear(&mut self) -> Option<(String, String, u64)> {
        match *self {}
    }
}

/// How long a client may take to complete the WebSocket upgrade.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One client event as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    /// When it arrived, since the server started (tokio clock).
    pub at: Duration,
    /// Which connection sent it (1-based, in accept order).
    pub connection: usize,
    /// The event as received; for `input_audio_buffer.append` the `audio` payload is replaced
    /// by `audio_bytes` (its decoded length). Text that was not JSON is kept as a string.
    pub json: Value,
}

/// State shared by the server and its connections.
#[derive(Debug)]
pub(crate) struct Shared {
    started: Instant,
    events: Mutex<Vec<RecordedEvent>>,
    connections: AtomicUsize,
    /// WebSocket upgrades attempted (the index `faults` are chosen by).
    attempts: AtomicUsize,
    /// The first [`INPUT_AUDIO_KEPT`] bytes of wire audio each connection appended.
    input_audio: Mutex<std::collections::HashMap<usize, Vec<u8>>>,
    /// Client secrets minted (ephemeral keys).
    pub(crate) secrets: calls::Secrets,
    /// WebRTC calls in progress, by call id: hanging up cancels the token.
    pub(crate) calls: Mutex<std::collections::HashMap<String, CancellationToken>>,
    /// The address WebRTC calls announce as their host candidate.
    #[cfg_attr(not(feature = "webrtc"), allow(dead_code))]
    pub(crate) webrtc_host: std::net::IpAddr,
}

/// Input audio kept per connection for inspection (a minute of 24 kHz PCM16).
const INPUT_AUDIO_KEPT: usize = 2_880_000;

impl Shared {
    pub(crate) fn record(&self, connection: usize, json: Value) {
        let at = self.started.elapsed();
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(RecordedEvent { at, connection, json });
    }

    pub(crate) fn record_audio(&self, connection: usize, wire: &[u8]) {
        let mut all = self.input_audio.lock().unwrap_or_else(|e| e.into_inner());
        let kept = all.entry(connection).or_default();
        let n = wire.len().min(INPUT_AUDIO_KEPT.saturating_sub(kept.len()));
        kept.extend_from_slice(&wire[..n]);
    }

    /// Decoded caller audio of a WebRTC call, kept as PCM16 little-endian like a WebSocket's.
    #[cfg_attr(not(feature = "webrtc"), allow(dead_code))]
    pub(crate) fn record_pcm(&self, connection: usize, pcm: &[i16]) {
        let mut all = self.input_audio.lock().unwrap_or_else(|e| e.into_inner());
        let kept = all.entry(connection).or_default();
        let n = pcm.len().min(INPUT_AUDIO_KEPT.saturating_sub(kept.len()) / 2);
        kept.extend(pcm[..n].iter().flat_map(|s| s.to_le_bytes()));
    }
}

/// A running Realtime fake. Stop it with [`RealtimeFake::shutdown`]; dropping it also stops
/// accepting and closes connections.
#[derive(Debug)]
pub struct RealtimeFake {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl RealtimeFake {
    /// Starts the fake on `127.0.0.1` with an OS-chosen port.
    pub async fn start(config: RealtimeFakeConfig) -> std::io::Result<RealtimeFake> {
        Self::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts the fake on `addr`.
    pub async fn bind(addr: SocketAddr, config: RealtimeFakeConfig) -> std::io::Result<RealtimeFake> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            started: Instant::now(),
            events: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
            input_audio: Mutex::default(),
            secrets: calls::Secrets::default(),
            calls: Mutex::default(),
            webrtc_host: if addr.ip().is_unspecified() { Ipv4Addr::LOCALHOST.into() } else { addr.ip() },
        });
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let cfg = Arc::new(config);
        // Plain HTTP requests (client secrets, WebRTC calls) are handed to axum on this port.
        let (http_tx, rx) = tokio::sync::mpsc::channel(64);
        let http = Arc::new(calls::Http {
            cfg: cfg.clone(),
            shared: shared.clone(),
            stop: stop.clone(),
            tasks: tasks.clone(),
        });
        let router = calls::router(http);
        let (http_stop, listener_http) = (stop.clone(), calls::HandedOver { rx, addr });
        tasks.spawn(async move {
            tokio::select! {
                _ = axum::serve(listener_http, router) => {}
                () = http_stop.cancelled() => {}
            }
        });
        tasks.spawn(accept_loop(listener, cfg, shared.clone(), stop.clone(), tasks.clone(), http_tx));
        tracing::info!(%addr, "realtime fake listening");
        Ok(RealtimeFake { addr, shared, stop, tasks })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL without query: `ws://127.0.0.1:PORT/v1/realtime`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// The HTTP base: `http://127.0.0.1:PORT/v1` (client secrets, WebRTC calls).
    pub fn http_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Moves the clock client secrets expire on forward by `secs` (to test expiry without
    /// waiting: the shortest lifetime OpenAI allows is 10 s).
    pub fn advance_secret_clock(&self, secs: u64) {
        self.shared.secrets.advance(secs);
    }

    /// WebRTC calls in progress.
    pub fn live_calls(&self) -> usize {
        self.shared.calls.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The wire audio (as sent: PCM16, μ-law or A-law bytes) that connection `connection`
    /// (1-based) appended, up to its first minute; for a WebRTC call, its track decoded to
    /// 24 kHz PCM16.
    pub fn input_audio(&self, connection: usize) -> Vec<u8> {
        self.shared
            .input_audio
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&connection)
            .cloned()
            .unwrap_or_default()
    }

    /// Every client event received so far, over all connections, in arrival order.
    pub fn client_events(&self) -> Vec<RecordedEvent> {
        self.shared.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Number of WebSocket connections accepted (upgrades that succeeded).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes every connection and waits for their tasks.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for RealtimeFake {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    cfg: Arc<RealtimeFakeConfig>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
    http: tokio::sync::mpsc::Sender<(TcpStream, SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                tracing::debug!(%peer, "realtime fake: connection");
                let (cfg, shared, stop, http) = (cfg.clone(), shared.clone(), stop.clone(), http.clone());
                tasks.spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, calls::is_upgrade(&tcp)).await {
                        Ok(true) => serve(tcp, cfg, shared, stop).await,
                        Ok(false) => {
                            let _ = http.send((tcp, peer)).await;
                        }
                        Err(_) => tracing::debug!("realtime fake: request head timed out"),
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "realtime fake: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the upgrade request asked for.
#[derive(Debug)]
struct Upgrade {
    dialect: Dialect,
    model: String,
    /// The session of the client secret used as the key, if one was.
    preset: Option<Value>,
}

#[expect(
    clippy::result_large_err,
    reason = "tungstenite's header callback returns its ErrorResponse by value"
)]
async fn serve(tcp: TcpStream, cfg: Arc<RealtimeFakeConfig>, shared: Arc<Shared>, stop: CancellationToken) {
    let _ = tcp.set_nodelay(true);
    let mut upgrade = None;
    let fault = cfg.faults.get(&shared.attempts.fetch_add(1, Ordering::SeqCst)).cloned();
    let callback = |req: &Request, resp: Response| {
        if let Some(crate::fault::Fault::Status { status, retry_after_s }) = &fault {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let (kind, msg) = match *status {
                429 => {
                    ("requests", "Rate limit reached for requests. Please try again later. (injected fault)")
                }
                s if s >= 500 => (
                    "server_error",
                    "The server had an error while processing your request. (injected fault)",
                ),
                _ => ("invalid_request_error", "Injected fault."),
            };
            let mut r = reject(code, msg, kind, None, None);
            if let Some(secs) = retry_after_s {
                r.headers_mut().insert(http::header::RETRY_AFTER, (*secs).into());
            }
            return Err(r);
        }
        check_upgrade(req, resp, &cfg, &shared.secrets).map(|(resp, u)| {
            upgrade = Some(u);
            resp
        })
    };
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::accept_hdr_async(tcp, callback))
        .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return tracing::debug!(error = %e, "realtime fake: upgrade refused or failed"),
        Err(_) => return tracing::debug!("realtime fake: handshake timed out"),
    };
    let Some(Upgrade { dialect, model, preset }) = upgrade else { return };
    let id = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
    Conn::run(ws, id, dialect, model, preset, cfg, shared, stop, fault).await;
    tracing::debug!(connection = id, "realtime fake: connection ended");
}

/// Checks path, model, auth and fault knobs; picks the dialect.
#[expect(
    clippy::result_large_err,
    reason = "tungstenite's header callback returns its ErrorResponse by value"
)]
fn check_upgrade(
    req: &Request,
    mut resp: Response,
    cfg: &RealtimeFakeConfig,
    secrets: &calls::Secrets,
) -> Result<(Response, Upgrade), ErrorResponse> {
    if let Some(status) = cfg.reject_with_status {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let kind = if code.is_server_error() { "server_error" } else { "invalid_request_error" };
        let msg = format!("The fake was configured to reject connections with HTTP {status}.");
        return Err(reject(code, &msg, kind, None, None));
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let azure = match req.uri().path() {
        "/v1/realtime" => None,
        "/openai/realtime" => Some(azure::Shape::Preview),
        "/openai/v1/realtime" => Some(azure::Shape::V1),
        path => {
            let msg = format!("Invalid URL (GET {path})");
            return Err(reject(StatusCode::NOT_FOUND, &msg, "invalid_request_error", None, None));
        }
    };
    if let Some(shape) = azure {
        let (upgrade, compat) = (azure::check(req, shape, cfg)?, cfg.compatible.is_some());
        let dialect = if compat { Dialect::Beta } else { upgrade.dialect };
        return Ok((resp, Upgrade { dialect, ..upgrade }));
    }
    let model = query_param(req, "model").map(str::to_string);
    let protocols: Vec<&str> = header("sec-websocket-protocol").split(',').map(str::trim).collect();
    let bearer = header("authorization").strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty());
    let sub_key = protocols.iter().find_map(|p| p.strip_prefix("openai-insecure-api-key."));
    let key = bearer.or(sub_key);
    // An ephemeral key (client secret) stands for the API key and presets the session.
    let mut preset = None;
    if let Some(k) = key.filter(|k| k.starts_with("ek_")) {
        let secret = secrets.check(k).map_err(|e| {
            reject(StatusCode::UNAUTHORIZED, e.message(), "invalid_request_error", Some(e.code()), None)
        })?;
        preset = Some((secret.session, secret.model));
    }
    let ok = match (key, &cfg.api_key) {
        (Some(_), _) if preset.is_some() => true,
        (None, _) => {
            let msg = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";
            return Err(reject(
                StatusCode::UNAUTHORIZED,
                msg,
                "invalid_request_error",
                Some("invalid_api_key"),
                None,
            ));
        }
        (Some(k), Some(expected)) => k == expected.0,
        (Some(_), None) => true,
    };
    if !ok {
        let msg = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.";
        return Err(reject(
            StatusCode::UNAUTHORIZED,
            msg,
            "invalid_request_error",
            Some("invalid_api_key"),
            None,
        ));
    }
    let beta = header("openai-beta").split(',').any(|v| v.trim() == "realtime=v1")
        || protocols.contains(&"openai-beta.realtime-v1");
    if protocols.contains(&"realtime") {
        resp.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("realtime"));
    }
    // An independent server speaks the beta dialect whatever the client asks for.
    let dialect = if beta || cfg.compatible.is_some() { Dialect::Beta } else { Dialect::Ga };
    let (preset, preset_model) = preset.unzip();
    let model = model.or(preset_model);
    let Some(model) = model else {
        let msg = "Missing required parameter: 'model'.";
        return Err(reject(
            StatusCode::BAD_REQUEST,
            msg,
            "invalid_request_error",
            Some("missing_required_parameter"),
            Some("model"),
        ));
    };
    Ok((resp, Upgrade { dialect, model, preset }))
}

/// The value of query parameter `name` (not percent-decoded), when present and not empty.
fn query_param<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

fn reject(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
) -> ErrorResponse {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    let mut resp = ErrorResponse::new(Some(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
