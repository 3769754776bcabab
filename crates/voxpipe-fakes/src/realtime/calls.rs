//! The Realtime API's HTTP side, on the same port as the WebSocket: client secrets (ephemeral
//! keys, `POST /v1/realtime/client_secrets`) and calls over WebRTC (`POST /v1/realtime/calls`
//! with an SDP offer, `POST /v1/realtime/calls/{id}/hangup`), with the CORS answers a browser
//! needs to call them from a page.
//!
//! A call posted as `multipart/form-data` with a standard key carries its session in a `session`
//! part, validated the same way.
//!
//! Client secrets follow PROTOCOLS.md 1.1 and the GA OpenAPI: `expires_after.anchor` must be
//! `created_at`, `seconds` runs from 10 to 7200 (default 600), the session is validated like a
//! `session.update` and becomes the preset of every session opened with the secret. A secret
//! may open several sessions until it expires (OpenAI documents no single use); expiry is
//! enforced on the wall clock, which [`RealtimeFake::advance_secret_clock`] moves for tests.
//!
//! [`RealtimeFake::advance_secret_clock`]: super::RealtimeFake::advance_secret_clock

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Shared;
use super::config::RealtimeFakeConfig;
use super::session::{Dialect, Session};
use crate::server::openai_error;

/// Bounds of `expires_after.seconds`, and its default.
const TTL_SECS: (u64, u64, u64) = (10, 7200, 600);
/// Secrets kept at most (expired ones are pruned first).
const MAX_SECRETS: usize = 10_000;
/// The largest SDP offer accepted.
const MAX_SDP_BYTES: usize = 64 * 1024;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// A minted client secret.
#[derive(Debug, Clone)]
pub(crate) struct ClientSecret {
    /// Unix seconds (on the secrets' clock).
    pub expires_at: u64,
    /// The validated session request: the preset of sessions opened with the secret.
    pub session: Value,
    /// The session's model.
    pub model: String,
}

/// Why an ephemeral key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretError {
    Unknown,
    Expired,
}

impl SecretError {
    /// The 401 response, in OpenAI's error shape.
    pub(crate) fn message(self) -> &'static str {
        match self {
            SecretError::Unknown => "Invalid ephemeral key provided.",
            SecretError::Expired => "The ephemeral key has expired. Create a new client secret.",
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            SecretError::Unknown => "invalid_api_key",
            SecretError::Expired => "ephemeral_key_expired",
        }
    }
}

/// The minted secrets and the clock they expire on.
#[derive(Debug, Default)]
pub(crate) struct Secrets {
    map: Mutex<HashMap<String, ClientSecret>>,
    /// Seconds added to the wall clock (tests move time forward).
    skew: AtomicU64,
}

impl Secrets {
    pub(crate) fn now(&self) -> u64 {
        unix_now() + self.skew.load(Ordering::Relaxed)
    }

    pub(crate) fn advance(&self, secs: u64) {
        self.skew.fetch_add(secs, Ordering::Relaxed);
    }

    fn insert(&self, secret: ClientSecret) -> String {
        let bytes: [u8; 16] = std::array::from_fn(|_| rand_byte());
        let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let value = format!("ek_{value}");
        let now = self.now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SECRETS {
            map.retain(|_, s| s.expires_at > now);
        }
        map.insert(value.clone(), secret);
        value
    }

    /// The secret `key` names, if it exists and has not expired.
    pub(crate) fn check(&self, key: &str) -> Result<ClientSecret, SecretError> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let secret = map.get(key).ok_or(SecretError::Unknown)?;
        if secret.expires_at <= self.now() {
            return Err(SecretError::Expired);
        }
        Ok(secret.clone())
    }
}

/// A random byte from the standard library's randomly keyed hasher (no rand crate here).
fn rand_byte() -> u8 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0u8) as u8
}

/// What the HTTP handlers share.
#[derive(Debug)]
pub(crate) struct Http {
    pub cfg: Arc<RealtimeFakeConfig>,
    pub shared: Arc<Shared>,
    #[cfg_attr(not(feature = "webrtc"), allow(dead_code))]
    pub stop: CancellationToken,
    #[cfg_attr(not(feature = "webrtc"), allow(dead_code))]
    pub tasks: TaskTracker,
}

/// The HTTP routes, with CORS for pages.
pub(crate) fn router(state: Arc<Http>) -> Router {
    Router::new()
        .route("/v1/realtime/client_secrets", post(client_secrets).options(preflight))
        .route("/v1/realtime/calls", post(create_call).options(preflight))
        .route("/v1/realtime/calls/{id}/hangup", post(hangup).options(preflight))
        .fallback(not_found)
        .layer(axum::middleware::map_response(cors))
        .with_state(state)
}

/// Connections the accept loop found to be plain HTTP, served by axum.
#[derive(Debug)]
pub(crate) struct HandedOver {
    pub rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    pub addr: SocketAddr,
}

impl axum::serve::Listener for HandedOver {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop has stopped: so has the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// True when the request waiting on `tcp` is a WebSocket upgrade (peeking at its head).
pub(crate) async fn is_upgrade(tcp: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = tcp.peek(&mut buf).await else { return false };
        let head = &buf[..n];
        let complete = head.windows(4).any(|w| w == b"\r\n\r\n");
        if n == 0 || complete || n == buf.len() {
            let head = String::from_utf8_lossy(head).to_ascii_lowercase();
            return head.lines().any(|l| {
                l.split_once(':').is_some_and(|(k, v)| k.trim() == "upgrade" && v.trim() == "websocket")
            });
        }
        // Part of the head has arrived: wait for the rest (the caller bounds the wait).
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

async fn cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Location"));
    r
}

async fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, openai-beta"),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    r
}

async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let msg = format!("Invalid URL ({method} {})", uri.path());
    openai_error(StatusCode::NOT_FOUND, &msg, "invalid_request_error", None, None)
}

fn bad_request(message: &str, param: Option<&str>, code: &str) -> Response {
    openai_error(StatusCode::BAD_REQUEST, message, "invalid_request_error", param, Some(code))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// A standard API key (not an ephemeral one), as the fake is configured to expect.
#[allow(clippy::result_large_err, reason = "fake request path: the error is the HTTP response to send")]
fn api_key(headers: &HeaderMap, cfg: &RealtimeFakeConfig) -> Result<(), Response> {
    if bearer(headers).is_some_and(|k| k.starts_with("ek_")) {
        let msg = "Ephemeral keys cannot be used for this endpoint.";
        return Err(openai_error(
            StatusCode::UNAUTHORIZED,
            msg,
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ));
    }
    crate::server::openai_bearer(headers, cfg.api_key.as_ref().map(|k| k.0.as_str()))
}

fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

/// `POST /v1/realtime/client_secrets`.
async fn client_secrets(State(st): State<Arc<Http>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = api_key(&headers, &st.cfg) {
        return r;
    }
    if !content_type_is(&headers, "application/json") {
        return bad_request(
            "Expected a JSON body (Content-Type: application/json).",
            None,
            "invalid_request",
        );
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return bad_request("The request body must be a JSON object.", None, "invalid_json"),
        Err(e) => {
            return bad_request(
                &format!("We could not parse the JSON body of your request: {e}"),
                None,
                "invalid_json",
            );
        }
    };
    if let Some(k) = req
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .find(|k| *k != "expires_after" && *k != "session")
    {
        return bad_request(&format!("Unknown parameter: '{k}'."), Some(k), "unknown_parameter");
    }
    let ttl = match ttl_of(req.get("expires_after")) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let preset = req.get("session").cloned().unwrap_or_else(|| json!({"type": "realtime"}));
    let id = format!("sess_fakesecret{:06}", st.shared.connections.load(Ordering::Relaxed));
    let (session, model) = match session_of(&preset, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let expires_at = st.shared.secrets.now() + ttl;
    let value = st.shared.secrets.insert(ClientSecret { expires_at, session: preset, model });
    tracing::debug!(expires_at, "realtime fake: client secret minted");
    let body = json!({ "value": value, "expires_at": expires_at, "session": session.json() });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// A session request (`session` of a client secret or of a multipart call), validated like a
/// `session.update`; the session it makes and its model.
#[allow(clippy::result_large_err, reason = "fake request path: the error is the HTTP response to send")]
fn session_of(preset: &Value, id: &str) -> Result<(Session, String), Response> {
    match preset.get("type").and_then(Value::as_str) {
        Some("realtime") => {}
        Some("transcription") => {
            return Err(bad_request(
                "Transcription sessions are not supported by this fake.",
                Some("session.type"),
                "invalid_value",
            ));
        }
        _ => {
            return Err(bad_request(
                "Invalid value for 'session.type': expected 'realtime' or 'transcription'.",
                Some("session.type"),
                "invalid_value",
            ));
        }
    }
    let model = preset.get("model").and_then(Value::as_str).unwrap_or("gpt-realtime").to_string();
    let mut session = Session::new(Dialect::Ga, id, &model);
    if let Err(e) = session.update(preset, false) {
        let param = e.param.as_deref().map(|p| format!("session.{p}"));
        return Err(bad_request(&e.message, param.as_deref(), e.code));
    }
    Ok((session, model))
}

#[allow(clippy::result_large_err, reason = "fake request path: the error is the HTTP response to send")]
fn ttl_of(v: Option<&Value>) -> Result<u64, Response> {
    let Some(v) = v else { return Ok(TTL_SECS.2) };
    let Some(o) = v.as_object() else {
        return Err(bad_request(
            "Invalid type for 'expires_after': expected an object.",
            Some("expires_after"),
            "invalid_type",
        ));
    };
    if let Some(k) = o.keys().find(|k| *k != "anchor" && *k != "seconds") {
        let p = format!("expires_after.{k}");
        return Err(bad_request(&format!("Unknown parameter: '{p}'."), Some(&p), "unknown_parameter"));
    }
    if o.get("anchor").and_then(Value::as_str) != Some("created_at") {
        return Err(bad_request(
            "Invalid value for 'expires_after.anchor': expected 'created_at'.",
            Some("expires_after.anchor"),
            "invalid_value",
        ));
    }
    match o.get("seconds") {
        None => Ok(TTL_SECS.2),
        Some(s) => match s.as_u64() {
            Some(n) if (TTL_SECS.0..=TTL_SECS.1).contains(&n) => Ok(n),
            _ => Err(bad_request(
                &format!(
                    "Invalid 'expires_after.seconds': expected an integer from {} to {}, got {s}.",
                    TTL_SECS.0, TTL_SECS.1
                ),
                Some("expires_after.seconds"),
                "invalid_value",
            )),
        },
    }
}

/// `POST /v1/realtime/calls` with `Content-Type: application/sdp` and an ephemeral key.
async fn create_call(State(st): State<Arc<Http>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(key) = bearer(&headers) else {
        return openai_error(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            None,
            None,
        );
    };
    if content_type_is(&headers, "multipart/form-data") {
        return st.multipart_call(&headers, body).await;
    }
    if !content_type_is(&headers, "application/sdp") {
        return bad_request(
            "Expected Content-Type: application/sdp with the SDP offer as the body.",
            None,
            "invalid_request",
        );
    }
    if !key.starts_with("ek_") {
        return bad_request(
            "An SDP-only request must be authenticated with an ephemeral key (a client secret); with a standard API key send multipart/form-data with `sdp` and `session`.",
            None,
            "invalid_request",
        );
    }
    let secret = match st.shared.secrets.check(key) {
        Ok(s) => s,
        Err(e) => {
            return openai_error(
                StatusCode::UNAUTHORIZED,
                e.message(),
                "invalid_request_error",
                None,
                Some(e.code()),
            );
        }
    };
    if body.len() > MAX_SDP_BYTES {
        return bad_request(
            &format!("The SDP offer is {} bytes; at most {MAX_SDP_BYTES}.", body.len()),
            None,
            "invalid_offer",
        );
    }
    let Ok(offer) = std::str::from_utf8(&body) else {
        return bad_request("The SDP offer is not UTF-8 text.", None, "invalid_offer");
    };
    st.start_call(offer, secret).await
}

/// `POST /v1/realtime/calls/{id}/hangup` (standard API key).
async fn hangup(State(st): State<Arc<Http>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = api_key(&headers, &st.cfg) {
        return r;
    }
    let call = st.shared.calls.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    match call {
        Some(close) => {
            close.cancel();
            StatusCode::OK.into_response()
        }
        None => openai_error(
            StatusCode::NOT_FOUND,
            &format!("Call '{id}' not found."),
            "invalid_request_error",
            Some("call_id"),
            Some("call_not_found"),
        ),
    }
}

impl Http {
    /// `POST /v1/realtime/calls` as `multipart/form-data` with a standard API key: the offer in
    /// the `sdp` part, the session in the `session` part (JSON).
    async fn multipart_call(&self, headers: &HeaderMap, body: Bytes) -> Response {
        if let Err(r) = api_key(headers, &self.cfg) {
            return r;
        }
        let boundary = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| multer::parse_boundary(ct).ok());
        let Some(boundary) = boundary else {
            return bad_request("The multipart body has no boundary.", None, "invalid_request");
        };
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
        let mut form = multer::Multipart::new(stream, boundary);
        let (mut sdp, mut session) = (None, None);
        loop {
            let field = match form.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    return bad_request(&format!("Malformed multipart body: {e}."), None, "invalid_request");
                }
            };
            let name = field.name().unwrap_or_default().to_string();
            let text = match field.text().await {
                Ok(t) => t,
                Err(e) => {
                    return bad_request(
                        &format!("Malformed multipart part '{name}': {e}."),
                        Some(&name),
                        "invalid_request",
                    );
                }
            };
            match name.as_str() {
                "sdp" => sdp = Some(text),
                "session" => match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => session = Some(v),
                    _ => {
                        return bad_request(
                            "The 'session' part must be a JSON object.",
                            Some("session"),
                            "invalid_json",
                        );
                    }
                },
                other => {
                    return bad_request(
                        &format!("Unknown parameter: '{other}'."),
                        Some(other),
                        "unknown_parameter",
                    );
                }
            }
        }
        let Some(sdp) = sdp else {
            return bad_request(
                "Missing required parameter: 'sdp'.",
                Some("sdp"),
                "missing_required_parameter",
            );
        };
        if sdp.len() > MAX_SDP_BYTES {
            return bad_request(
                &format!("The SDP offer is {} bytes; at most {MAX_SDP_BYTES}.", sdp.len()),
                None,
                "invalid_offer",
            );
        }
        let preset = session.unwrap_or_else(|| json!({"type": "realtime"}));
        let (_, model) = match session_of(&preset, "sess_fakecall") {
            Ok(s) => s,
            Err(r) => return r,
        };
        self.start_call(&sdp, ClientSecret { expires_at: u64::MAX, session: preset, model }).await
    }

    #[cfg(feature = "webrtc")]
    async fn start_call(&self, offer: &str, secret: ClientSecret) -> Response {
        let opts = voxpipe_webrtc::WebRtcOptions { host: self.shared.webrtc_host, ..Default::default() };
        let peer = match voxpipe_webrtc::answer(offer, &opts).await {
            Ok(p) => p,
            Err(e) => return bad_request(&format!("Invalid SDP offer: {e}"), None, "invalid_offer"),
        };
        let id = self.shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let call_id = format!("rtc_fake{id:06}");
        let answer = peer.answer.clone();
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(call_id.clone(), peer.close.clone());
        let (cfg, shared, stop) = (self.cfg.clone(), self.shared.clone(), self.stop.clone());
        let calls = self.shared.clone();
        let name = call_id.clone();
        self.tasks.spawn(async move {
            super::rtc::run(peer, id, secret, cfg, shared, stop).await;
            calls.calls.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
        });
        tracing::info!(%call_id, "realtime fake: WebRTC call answered");
        let mut r = (StatusCode::CREATED, answer).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
        if let Ok(v) = HeaderValue::from_str(&format!("/v1/realtime/calls/{call_id}")) {
            h.insert(header::LOCATION, v);
        }
        r
    }

    #[cfg(not(feature = "webrtc"))]
    async fn start_call(&self, _offer: &str, _secret: ClientSecret) -> Response {
        openai_error(
            StatusCode::NOT_IMPLEMENTED,
            "This build of the fake has no WebRTC (build voxpipe-fakes with the `webrtc` feature).",
            "server_error",
            None,
            None,
        )
    }
}
