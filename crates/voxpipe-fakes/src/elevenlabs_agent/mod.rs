//! A local fake of the ElevenLabs Conversational AI agent WebSocket
//! (`wss://api.elevenlabs.io/v1/convai/conversation`), as strict as ElevenLabs
//! (`shared/specs/elevenlabs/convai-websocket.asyncapi.yml`; the spec wins over the digest).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use voxpipe_fakes::elevenlabs_agent::{ElevenLabsAgentFake, ElevenLabsAgentFakeConfig};
//! let fake = ElevenLabsAgentFake::start(ElevenLabsAgentFakeConfig::default()).await?;
//! let public = fake.conversation_url("agent_fake"); // ws://127.0.0.1:PORT/v1/convai/conversation?agent_id=…
//! let signed = format!("{}/v1/convai/conversation/get-signed-url?agent_id=agent_fake_private", fake.http_url());
//! # let _ = (public, signed);
//! fake.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! What it does:
//! - **Connect**: `GET /v1/convai/conversation?agent_id=…` upgrades for a public agent. A
//!   private agent needs the `conversation_signature` of a signed URL (single use, valid for
//!   [`ElevenLabsAgentFakeConfig::signature_ttl_ms`]) or a valid `xi-api-key` header.
//!   Refusals after the upgrade are close frames: 1008 with the reason (unknown or missing
//!   agent, no or a used/expired/foreign signature, a wrong key).
//! - **Signed URLs**: `GET /v1/convai/conversation/get-signed-url?agent_id=` (and the
//!   deprecated `get_signed_url`) with `xi-api-key` → `{"signed_url": "ws://…"}`; errors in
//!   ElevenLabs' `{"detail": {"status", "message"}}` shape (401 `needs_authorization` /
//!   `invalid_api_key`, 404 `agent_not_found`, 422 for a missing `agent_id`).
//! - **Initiation**: `conversation_initiation_client_data` first (anything else first is
//!   refused); overrides the agent does not allow ([`AgentConfig::allow_overrides`]) are refused
//!   with "Override for field '…' is not allowed by config."; `{{var}}` placeholders in the
//!   prompt and first message take `dynamic_variables` (a missing one is refused). Answer:
//!   `conversation_initiation_metadata`, then the first message spoken.
//! - **Turns**: `user_audio_chunk` in the agent's input format; the Realtime fake's energy VAD
//!   ends the turn after [`ElevenLabsAgentFakeConfig::turn_silence_ms`] (`vad_score` at each
//!   onset and end); `user_transcript`, `internal_tentative_agent_response`,
//!   `agent_response`, then paced `audio` (the fakes' tone) with sequential `event_id`s;
//!   `user_message` is a typed turn; `contextual_update` joins the conversation silently.
//! - **Tools**: a scripted `client_tool_call` waits for the `client_tool_result` with its id
//!   (an unknown id is refused) for [`ElevenLabsAgentFakeConfig::tool_timeout_ms`], then the
//!   next scripted reply.
//! - **Barge-in**: caller speech (or a typed message) while the agent speaks sends
//!   `interruption` with the last audio `event_id` (later audio has higher ids), stops the
//!   audio, and `agent_response_correction` with the words heard.
//! - **Pings**: `ping` every [`ElevenLabsAgentFakeConfig::ping_interval_ms`] with the last
//!   round trip in `ping_ms` (left out until one is measured); an unanswered ping closes the socket (1008) after
//!   [`ElevenLabsAgentFakeConfig::pong_timeout_ms`].
//! - **Faults** ([`SUPPORTED_FAULTS`], by connection): a refused upgrade, a reply cut or
//!   stalled, a malformed, unknown or oversize message, a slow drip.
//!
//! Every client message is recorded ([`ElevenLabsAgentFake::client_messages`], audio replaced
//! by its length) with each connection's close and conversation.
//!
//! Spec and digest: the turn order and message shapes agree. Where they differ the fake
//! follows the spec: `ping_ms` is an integer in the spec (the digest: "may be null"), so it is
//! left out, not null, before a round trip is measured; the SDK-only messages the digest lists
//! (`multimodal_message`, `feedback`, `agent_chat_response_part`, `audio_event.alignment`) are
//! not in the spec, so the first two are refused as unknown types and the others never sent;
//! the spec lists `contextual_update` server to client too, which the fake does not echo. The spec
//! documents no close codes, no ping timeout and no override permissions; those (and the
//! refusal of unknown fields and of messages before the initiation) are this fake's strict
//! reading, worded after ElevenLabs' docs where they have words. `source_info` and `user_id`
//! (sent by the SDKs, not in the spec) are accepted in the initiation.

mod config;
mod conversation;
mod reply;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{
    AgentConfig, AgentScriptedResponse, AgentToolCall, ElevenLabsAgentFakeConfig, FakeApiKey,
    SUPPORTED_FAULTS, VadConfig,
};

use wire::Refusal;

/// The conversation WebSocket path.
pub const PATH: &str = "/v1/convai/conversation";
/// The signed-URL path.
pub const SIGNED_URL_PATH: &str = "/v1/convai/conversation/get-signed-url";

/// One client message as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedMessage {
    /// When it arrived, since the server started (tokio clock).
    pub at: Duration,
    /// Which connection sent it (1-based, in accept order).
    pub connection: usize,
    /// The message as received; `user_audio_chunk` is replaced by `{"bytes": N}` (its decoded
    /// length). A frame that was not JSON is kept as a string.
    pub json: Value,
}

/// One turn of a conversation as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTurn {
    /// `system` (the prompt), `agent`, `user`, `context` (a contextual update) or `tool` (a
    /// result, as `name: result`, or `name: error: result`).
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

/// State shared by the server and its connections.
#[derive(Debug)]
pub(crate) struct Shared {
    config: Arc<ElevenLabsAgentFakeConfig>,
    addr: Mutex<Option<SocketAddr>>,
    started: Instant,
    messages: Mutex<Vec<RecordedMessage>>,
    closes: Mutex<Vec<RecordedClose>>,
    histories: Mutex<HashMap<usize, Vec<AgentTurn>>>,
    /// Signature → (agent id, valid until).
    signatures: Mutex<HashMap<String, (String, Instant)>>,
    next_signature: AtomicUsize,
    connections: AtomicUsize,
    /// WebSocket upgrades attempted (the index `faults` are chosen by).
    attempts: AtomicUsize,
    stop: CancellationToken,
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

    pub(crate) fn set_history(&self, connection: usize, history: &[AgentTurn]) {
        lock(&self.histories).insert(connection, history.to_vec());
    }
}

/// A running ElevenLabs agent fake. Stop it with [`ElevenLabsAgentFake::shutdown`]; dropping it
/// also stops it.
#[derive(Debug)]
pub struct ElevenLabsAgentFake {
    running: crate::server::Running,
    shared: Arc<Shared>,
}

impl ElevenLabsAgentFake {
    /// Starts the fake on `127.0.0.1` with an OS-chosen port.
    pub async fn start(config: ElevenLabsAgentFakeConfig) -> std::io::Result<ElevenLabsAgentFake> {
        Self::bind(crate::server::any_port(), config).await
    }

    /// Starts the fake on `addr`.
    pub async fn bind(
        addr: SocketAddr,
        config: ElevenLabsAgentFakeConfig,
    ) -> std::io::Result<ElevenLabsAgentFake> {
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            config: Arc::new(config),
            addr: Mutex::new(None),
            started: Instant::now(),
            messages: Mutex::default(),
            closes: Mutex::default(),
            histories: Mutex::default(),
            signatures: Mutex::default(),
            next_signature: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
            stop: stop.clone(),
        });
        let app = Router::new()
            .route(PATH, get(ws_upgrade))
            .route(SIGNED_URL_PATH, get(signed_url))
            .route("/v1/convai/conversation/get_signed_url", get(signed_url))
            .with_state(shared.clone());
        let running = crate::server::Running::start(addr, app, stop).await?;
        *lock(&shared.addr) = Some(running.addr());
        tracing::info!(addr = %running.addr(), "elevenlabs agent fake listening");
        Ok(ElevenLabsAgentFake { running, shared })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    /// `http://127.0.0.1:PORT` (where `get-signed-url` is).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The WebSocket URL without query: `ws://127.0.0.1:PORT/v1/convai/conversation`.
    pub fn url(&self) -> String {
        format!("ws://{}{PATH}", self.addr())
    }

    /// The URL of a public agent's conversation.
    pub fn conversation_url(&self, agent_id: &str) -> String {
        format!("{}?agent_id={agent_id}", self.url())
    }

    /// Every client message received so far, over all connections, in arrival order.
    pub fn client_messages(&self) -> Vec<RecordedMessage> {
        lock(&self.shared.messages).clone()
    }

    /// The closes the fake sent (or the drops a fault made), in order.
    pub fn closes(&self) -> Vec<RecordedClose> {
        lock(&self.shared.closes).clone()
    }

    /// The conversation of connection `connection` (1-based) as it stands.
    pub fn conversation(&self, connection: usize) -> Vec<AgentTurn> {
        lock(&self.shared.histories).get(&connection).cloned().unwrap_or_default()
    }

    /// Number of WebSocket connections accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Stops serving and closes every connection.
    pub async fn shutdown(self) {
        self.running.stop().await;
    }
}

/// An ElevenLabs error: `{"detail": {"status": …, "message": …}}`.
fn detail_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"detail": {"status": code, "message": message}});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// FastAPI's 422 for a missing query parameter.
fn missing_query(name: &str) -> Response {
    let body = json!({"detail": [{"loc": ["query", name], "msg": "Field required", "type": "missing"}]});
    (StatusCode::UNPROCESSABLE_ENTITY, [(header::CONTENT_TYPE, "application/json")], body.to_string())
        .into_response()
}

/// Checks `xi-api-key`: `None` when it is accepted.
fn check_key(headers: &HeaderMap, cfg: &ElevenLabsAgentFakeConfig) -> Option<Response> {
    let key = headers.get("xi-api-key").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty());
    match (key, &cfg.api_key) {
        (None, _) => Some(detail_error(
            StatusCode::UNAUTHORIZED,
            "needs_authorization",
            "Neither authorization header nor xi-api-key received, please provide one.",
        )),
        (Some(k), Some(want)) if k != want.0 => {
            Some(detail_error(StatusCode::UNAUTHORIZED, "invalid_api_key", "Invalid API key"))
        }
        _ => None,
    }
}

async fn signed_url(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let cfg = &shared.config;
    if let Some(refused) = check_key(&headers, cfg) {
        return refused;
    }
    let Some(agent_id) = query.get("agent_id") else { return missing_query("agent_id") };
    if cfg.agent(agent_id).is_none() {
        let msg = format!("Agent with id {agent_id} not found");
        return detail_error(StatusCode::NOT_FOUND, "agent_not_found", &msg);
    }
    let n = shared.next_signature.fetch_add(1, Ordering::SeqCst) + 1;
    let signature = format!("fake_sig_{n:08}_{:016x}", shared.started.elapsed().as_nanos() as u64 ^ 0x5eed);
    let until = Instant::now() + Duration::from_millis(cfg.signature_ttl_ms);
    lock(&shared.signatures).insert(signature.clone(), (agent_id.clone(), until));
    let addr = lock(&shared.addr).expect("the address is set before serving");
    let url = format!("ws://{addr}{PATH}?agent_id={agent_id}&conversation_signature={signature}");
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], json!({"signed_url": url}).to_string())
        .into_response()
}

/// Why a connection to `agent_id` is refused, if it is.
fn admit(
    shared: &Shared,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<AgentConfig, Refusal> {
    let cfg = &shared.config;
    let Some(agent_id) = query.get("agent_id").filter(|a| !a.is_empty()) else {
        return Err(Refusal::policy("Missing agent_id query parameter."));
    };
    let Some(agent) = cfg.agent(agent_id) else {
        return Err(Refusal::policy(format!("Agent {agent_id} not found.")));
    };
    if let Some(sig) = query.get("conversation_signature") {
        // Single use: a signature is spent whether or not it was still valid.
        return match lock(&shared.signatures).remove(sig) {
            None => Err(Refusal::policy("Invalid conversation signature (unknown or already used).")),
            Some((_, until)) if until <= Instant::now() => {
                Err(Refusal::policy("Conversation signature expired."))
            }
            Some((signed_for, _)) if signed_for != *agent_id => {
                Err(Refusal::policy("Conversation signature was issued for another agent."))
            }
            Some(_) => Ok(agent.clone()),
        };
    }
    if headers.contains_key("xi-api-key") {
        return match check_key(headers, cfg) {
            None => Ok(agent.clone()),
            Some(_) => Err(Refusal::policy("Invalid API key.")),
        };
    }
    if agent.private {
        return Err(Refusal::policy(
            "This agent requires authentication: connect with a signed URL or an xi-api-key.",
        ));
    }
    Ok(agent.clone())
}

async fn ws_upgrade(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let attempt = shared.attempts.fetch_add(1, Ordering::SeqCst);
    let fault = shared.config.faults.get(&attempt).cloned();
    if let Some(crate::fault::Fault::Status { status, retry_after_s }) = fault {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = detail_error(code, "internal_error", "Injected fault.");
        if let Some(secs) = retry_after_s {
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        return resp;
    }
    let admitted = admit(&shared, &query, &headers);
    let id = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let stop = shared.stop.clone();
    ws.on_upgrade(move |socket| conversation::Conversation::run(socket, id, shared, stop, fault, admitted))
}
