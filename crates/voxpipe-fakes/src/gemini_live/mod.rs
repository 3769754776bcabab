//! A local fake of the Gemini Live API (`BidiGenerateContent` over WebSocket), as strict as
//! Google's server (`shared/specs/google/DIGEST.md` section 3; the protos win where they
//! disagree).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use voxpipe_fakes::gemini_live::{GeminiLiveFake, GeminiLiveFakeConfig};
//! let fake = GeminiLiveFake::start(GeminiLiveFakeConfig::default()).await?;
//! let url = format!("{}?key=fake-key", fake.url()); // or the `x-goog-api-key` header
//! # let _ = url;
//! fake.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! What it does:
//! - **Handshake**: path `/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent`
//!   (or `v1alpha`), anything else gets HTTP 404. The key comes in `?key=` or
//!   `x-goog-api-key`; a missing key is closed with 1008, a wrong one
//!   ([`GeminiLiveFakeConfig::api_key`]) with 1007 "API key not valid…", right after the
//!   upgrade. Live has no JSON error message: every refusal is a close frame with a code and a
//!   reason (1007 bad payload, 1008 policy, 1011 aborted).
//! - **Setup**: `setup` first and only once; proto3 JSON (lowerCamel or snake_case, unknown
//!   names refused) of `BidiGenerateContentSetup`: `model` (`models/…`, optionally one of
//!   [`GeminiLiveFakeConfig::models`]), `generationConfig` (one response modality; the fields
//!   Live does not support refused), text-only `systemInstruction`, `tools`
//!   (`functionDeclarations` with valid names and descriptions), `realtimeInputConfig`,
//!   `sessionResumption`, `contextWindowCompression`, `input/outputAudioTranscription`
//!   (empty objects). Answer: `setupComplete: {}`.
//! - **Input**: `realtimeInput` with exactly one of `audio` (`audio/pcm;rate=16000`, base64
//!   PCM16; other rates and types refused), `text`, `video`, `audioStreamEnd`,
//!   `activityStart`/`activityEnd` (only with automatic activity detection disabled; the
//!   others only with it on; audio outside an activity is taken and not answered);
//!   `clientContent` turns (interrupting the model; answered when `turnComplete`);
//!   `toolResponse` matched to pending `toolCall` ids (an unknown id closes the session).
//!   Client JSON may come in text or binary frames; a frame that is not JSON closes with 1007.
//! - **Turns**: an energy VAD (shared with the Realtime fake) ends the caller's turn after
//!   `silenceDurationMs` (500 ms by default, 1000 with `END_SENSITIVITY_LOW`); the answer is
//!   a scripted turn ([`GeminiLiveFakeConfig::responses`]): `inputTranscription`, then paced
//!   `modelTurn` audio (`audio/pcm;rate=24000`, the fakes' tone; text parts in a TEXT session) with
//!   `outputTranscription` words, then `generationComplete`, and `turnComplete` with
//!   `usageMetadata` once the audio has had time to play; or a `toolCall`, and after its
//!   `toolResponse` the next scripted turn.
//! - **Barge-in**: caller speech (or text, or content) while the model's turn is open sends
//!   `interrupted: true` then `turnComplete` (no `generationComplete`) and stops the audio; the
//!   conversation keeps the words heard so far. Calls not yet answered get
//!   `toolCallCancellation`. `NO_INTERRUPTION` turns barge-in off.
//! - **Resumption**: with `sessionResumption` set, a `sessionResumptionUpdate` follows
//!   `setupComplete` and every `turnComplete` (`resumable: false` and no handle while a call
//!   is pending); a new connection whose setup names a handle continues that conversation;
//!   an unknown handle is closed with 1008. `goAway` (`go_away_after_ms`) announces
//!   `timeLeft`, after which the connection is closed with 1011.
//! - **Faults** ([`SUPPORTED_FAULTS`], by connection): refused upgrade, cut or stalled turn,
//!   a malformed or unknown message, a slow drip.
//!
//! Every client message is recorded ([`GeminiLiveFake::client_messages`]) with audio replaced
//! by its length, with the close each connection got and each conversation's turns. Server
//! messages go out in binary frames, as Google's do (`text_frames` for text frames); client
//! JSON is read from either.
//!
//! Where the digest (and the SDK it quotes) and the proto disagree, the fake follows the proto:
//! `setupComplete` is `{}` (no `sessionId`); transcriptions carry `text` only (no `finished`);
//! `proactivity` and `generationConfig.enableAffectiveDialog` are unknown names, as are the
//! Vertex-only `sessionResumption.transparent` and `explicitVadSignal`; no `voiceActivity` or
//! `voiceActivityDetectionSignal` messages. Stricter than Google by choice: input audio must be
//! `audio/pcm;rate=16000` (Google resamples other `rate=`s), and a `FunctionDeclaration` needs
//! its `description` (REQUIRED in the proto). The close codes and reasons of refusals are the
//! fake's own wording (Google documents none; 1007/1008/1011 are the ones seen in the field).

mod config;
mod session;
mod setup;
mod wire;

use std::collections::HashMap;
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
    FakeApiKey, GeminiLiveFakeConfig, LiveFunctionCall, LiveScriptedResponse, SUPPORTED_FAULTS, VadConfig,
};

use wire::Refusal;

/// The WebSocket path of the Live API (v1beta).
pub const PATH: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
/// The same method on v1alpha.
const PATH_ALPHA: &str = "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent";
/// How long a client may take to complete the WebSocket upgrade.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One client message as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedMessage {
    /// When it arrived, since the server started (tokio clock).
    pub at: Duration,
    /// Which connection sent it (1-based, in accept order).
    pub connection: usize,
    /// The message as received; audio and video `data` is replaced by `{"bytes": N}` (its
    /// decoded length). A frame that was not JSON is kept as a string.
    pub json: Value,
}

/// One turn of a conversation as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTurn {
    /// `system` (the setup's system instruction), `user`, `model` or `tool` (a function
    /// response, as `name: response`).
    pub role: String,
    /// The words (the transcript for audio; what the caller heard of an interrupted turn).
    pub text: String,
}

/// The close a connection got from the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedClose {
    /// Which connection (1-based).
    pub connection: usize,
    /// The close code (1006: dropped without a close frame, by a fault).
    pub code: u16,
    /// The reason sent.
    pub reason: String,
}

/// What a resumption handle restores.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub history: Vec<LiveTurn>,
    pub ordered_used: usize,
}

/// State shared by the server and its connections.
#[derive(Debug)]
pub(crate) struct Shared {
    started: Instant,
    messages: Mutex<Vec<RecordedMessage>>,
    closes: Mutex<Vec<RecordedClose>>,
    histories: Mutex<HashMap<usize, Vec<LiveTurn>>>,
    handles: Mutex<HashMap<String, Snapshot>>,
    next_handle: AtomicUsize,
    connections: AtomicUsize,
    /// WebSocket upgrades attempted (the index `faults` are chosen by).
    attempts: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn record(&self, connection: usize, json: Value) {
        let at = self.started.elapsed();
        lock(&self.messages).push(RecordedMessage { at, connection, json });
    }

    pub(crate) fn record_close(&self, connection: usize, code: u16, reason: &str) {
        lock(&self.closes).push(RecordedClose { connection, code, reason: reason.to_string() });
    }

    pub(crate) fn set_history(&self, connection: usize, history: &[LiveTurn]) {
        lock(&self.histories).insert(connection, history.to_vec());
    }

    /// Stores a snapshot under a new handle.
    pub(crate) fn store(&self, snap: Snapshot) -> String {
        let n = self.next_handle.fetch_add(1, Ordering::SeqCst) + 1;
        let handle = format!("fake-resume-{n:06}");
        lock(&self.handles).insert(handle.clone(), snap);
        handle
    }

    pub(crate) fn resume(&self, handle: &str) -> Option<Snapshot> {
        lock(&self.handles).get(handle).cloned()
    }
}

/// A running Gemini Live fake. Stop it with [`GeminiLiveFake::shutdown`]; dropping it also
/// stops accepting and closes connections.
#[derive(Debug)]
pub struct GeminiLiveFake {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl GeminiLiveFake {
    /// Starts the fake on `127.0.0.1` with an OS-chosen port.
    pub async fn start(config: GeminiLiveFakeConfig) -> std::io::Result<GeminiLiveFake> {
        Self::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts the fake on `addr`.
    pub async fn bind(addr: SocketAddr, config: GeminiLiveFakeConfig) -> std::io::Result<GeminiLiveFake> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            started: Instant::now(),
            messages: Mutex::default(),
            closes: Mutex::default(),
            histories: Mutex::default(),
            handles: Mutex::default(),
            next_handle: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
        });
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        tasks.spawn(accept_loop(listener, Arc::new(config), shared.clone(), stop.clone(), tasks.clone()));
        tracing::info!(%addr, "gemini live fake listening");
        Ok(GeminiLiveFake { addr, shared, stop, tasks })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL without query: `ws://127.0.0.1:PORT/ws/google.ai.…BidiGenerateContent`.
    pub fn url(&self) -> String {
        format!("ws://{}{PATH}", self.addr)
    }

    /// Every client message received so far, over all connections, in arrival order.
    pub fn client_messages(&self) -> Vec<RecordedMessage> {
        lock(&self.shared.messages).clone()
    }

    /// The closes the fake sent (or the drops a fault made), in order.
    pub fn closes(&self) -> Vec<RecordedClose> {
        lock(&self.shared.closes).clone()
    }

    /// The conversation of connection `connection` (1-based) as it stands (a resumed one
    /// starts with the turns it restored).
    pub fn conversation(&self, connection: usize) -> Vec<LiveTurn> {
        lock(&self.shared.histories).get(&connection).cloned().unwrap_or_default()
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

impl Drop for GeminiLiveFake {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    cfg: Arc<GeminiLiveFakeConfig>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                tracing::debug!(%peer, "gemini live fake: connection");
                tasks.spawn(serve(tcp, cfg.clone(), shared.clone(), stop.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "gemini live fake: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[expect(
    clippy::result_large_err,
    reason = "tungstenite's header callback returns its ErrorResponse by value"
)]
async fn serve(tcp: TcpStream, cfg: Arc<GeminiLiveFakeConfig>, shared: Arc<Shared>, stop: CancellationToken) {
    let _ = tcp.set_nodelay(true);
    let fault = cfg.faults.get(&shared.attempts.fetch_add(1, Ordering::SeqCst)).cloned();
    let mut refusal = None;
    let callback = |req: &Request, resp: Response| {
        if let Some(crate::fault::Fault::Status { status, retry_after_s }) = &fault {
            let mut r = google_error(*status, "Injected fault.");
            if let Some(secs) = retry_after_s {
                r.headers_mut().insert(http::header::RETRY_AFTER, (*secs).into());
            }
            return Err(r);
        }
        if !matches!(req.uri().path(), PATH | PATH_ALPHA) {
            let msg = format!("The requested URL {} was not found on this server.", req.uri().path());
            return Err(google_error(404, &msg));
        }
        refusal = check_key(req, &cfg);
        Ok(resp)
    };
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::accept_hdr_async(tcp, callback))
        .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return tracing::debug!(error = %e, "gemini live fake: upgrade refused or failed"),
        Err(_) => return tracing::debug!("gemini live fake: handshake timed out"),
    };
    let id = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
    session::Session::run(ws, id, cfg, shared, stop, fault, refusal).await;
    tracing::debug!(connection = id, "gemini live fake: connection ended");
}

/// The refusal for the request's key, if it is missing or wrong.
fn check_key(req: &Request, cfg: &GeminiLiveFakeConfig) -> Option<Refusal> {
    let header = req.headers().get("x-goog-api-key").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty());
    let query = req
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("key="))
        .filter(|k| !k.is_empty());
    match (header.or(query), &cfg.api_key) {
        (None, _) => Some(Refusal::policy(
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key.",
        )),
        (Some(k), Some(want)) if k != want.0 => {
            Some(Refusal::invalid("API key not valid. Please pass a valid API key."))
        }
        _ => None,
    }
}

/// Google's error body (`{"error": {"code", "message", "status"}}`) with `status`.
fn google_error(status: u16, message: &str) -> ErrorResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let name = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    let body = json!({"error": {"code": status, "message": message, "status": name}});
    let mut resp = ErrorResponse::new(Some(body.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    resp
}
