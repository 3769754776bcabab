//! The browser side of `voxpipe serve`: the voice page, page session tokens, and calls over
//! WebRTC.
//!
//! # Endpoints
//! - `GET /`: the page (plain HTML and JS shipped in the binary; no CDN, no build step).
//! - `POST /web/session` (bearer: an operator API key): mints a page session token, at most
//!   `web.mint_per_minute` per client address. An app's backend calls it for its users; `voxpipe
//!   serve` also prints a page link carrying one.
//! - `GET /web/config` (bearer: a session token): the pipelines and the ICE servers.
//! - `POST /webrtc/offer` (bearer: a session token; `Origin` the server's own or allowed):
//!   `{"sdp": offer, "pipeline": name}` → `{"sdp": answer, "call_id": id}`; the call runs
//!   until the page ends it or the connection goes.
//! - `GET /web/socket?pipeline=NAME` (WebSocket, sub-protocols `voxpipe-pcm16` and
//!   `bearer.<session token>`, since a browser cannot set headers on a WebSocket): the same
//!   call over one socket, PCM16 at 16 kHz, for networks without UDP.
//!
//! A session token is `v1.<expiry>.<nonce>.<HMAC-SHA256>`: short-lived, signed with
//! `web.token_secret_env` (or a key made at start), and never the operator's key.

use crate::call::{Carrier, Leg, open_files, run_leg};
use crate::{App, metrics};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};
use voxpipe_core::Secret;

/// The page, shipped in the binary.
const PAGE: &str = include_str!("../assets/index.html");

/// The largest offer body accepted.
const MAX_OFFER_BODY: usize = voxpipe_webrtc::MAX_OFFER_BYTES + 1024;

/// Signs and checks page session tokens.
pub struct Tokens {
    key: Secret,
    ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this server's shape.
    #[error("malformed session token")]
    Malformed,
    /// Signed by another key, or altered.
    #[error("session token signature does not match")]
    Signature,
    /// Past its expiry.
    #[error("session token expired")]
    Expired,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Tokens {
    /// Tokens signed with `key`, valid for `ttl`.
    pub fn new(key: Secret, ttl: Duration) -> Self {
        Self { key, ttl }
    }

    /// A random signing key (tokens die with the process).
    pub fn random_key() -> Secret {
        let bytes: [u8; 32] = rand::random();
        Secret::new(B64.encode(bytes))
    }

    fn sign(&self, payload: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes()).expect("HMAC takes any key length");
        mac.update(b"voxpipe-web-session.");
        mac.update(payload.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    /// A new token and its expiry (Unix seconds).
    pub fn mint(&self) -> (String, u64) {
        let exp = unix_now() + self.ttl.as_secs();
        let nonce: [u8; 12] = rand::random();
        let payload = format!("v1.{exp}.{}", B64.encode(nonce));
        let sig = self.sign(&payload);
        (format!("{payload}.{sig}"), exp)
    }

    /// Checks a token: its shape, its signature (in constant time), its expiry. Returns its
    /// nonce, which names the page session.
    pub fn verify(&self, token: &str) -> Result<String, TokenError> {
        use subtle::ConstantTimeEq;
        let (payload, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let mut parts = payload.split('.');
        let (Some("v1"), Some(exp), Some(nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let exp: u64 = exp.parse().map_err(|_| TokenError::Malformed)?;
        if !bool::from(self.sign(payload).as_bytes().ct_eq(sig.as_bytes())) {
            return Err(TokenError::Signature);
        }
        if exp < unix_now() {
            return Err(TokenError::Expired);
        }
        Ok(nonce.to_string())
    }
}

/// Counts session tokens minted per client address in the current minute.
#[derive(Debug, Default)]
pub struct MintLimiter {
    windows: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl MintLimiter {
    /// True when `ip` may have another token this minute (and counts it).
    pub fn allow(&self, ip: IpAddr, per_minute: u32) -> bool {
        let minute = unix_now() / 60;
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() > 10_000 {
            w.retain(|_, (m, _)| *m == minute);
        }
        let entry = w.entry(ip).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1 <= per_minute
    }
}

/// Everything the browser endpoints share.
#[derive(Debug)]
pub struct Web {
    /// Session tokens.
    pub tokens: Tokens,
    /// Minting rate limit.
    pub limiter: MintLimiter,
    /// ICE servers as the page's `RTCPeerConnection` takes them (credentials resolved).
    ice_servers: serde_json::Value,
    next_call: std::sync::atomic::AtomicU64,
}

impl Web {
    /// A new browser call's id: `WR`, random hex, a process-wide sequence number.
    pub fn call_id(&self) -> String {
        let n = self.next_call.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nonce: u32 = rand::random();
        format!("WR{nonce:08x}{n:06}")
    }

    /// From the serve file's `[web]`, reading its secrets from `env`.
    pub fn new(c: &crate::config::WebConfig, env: &voxpipe_config::Env) -> anyhow::Result<Self> {
        let key = match &c.token_secret_env {
            Some(var) => Secret::new(env.var(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                anyhow::anyhow!("key `web.token_secret_env`: environment variable {var} is not set")
            })?),
            None => Tokens::random_key(),
        };
        let mut ice = Vec::new();
        for (i, s) in c.ice_servers.iter().enumerate() {
            let mut v = serde_json::json!({ "urls": s.urls });
            if let Some(u) = &s.username {
                v["username"] = u.clone().into();
            }
            if let Some(var) = &s.credential_env {
                let cred = env.var(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    anyhow::anyhow!(
                        "key `web.ice_servers[{i}].credential_env`: environment variable {var} is not set"
                    )
                })?;
                v["credential"] = cred.into();
            }
            ice.push(v);
        }
        Ok(Self {
            tokens: Tokens::new(key, Duration::from_secs(c.token_ttl_secs.max(1))),
            limiter: MintLimiter::default(),
            ice_servers: serde_json::Value::Array(ice),
            next_call: std::sync::atomic::AtomicU64::new(1),
        })
    }
}

pub(crate) fn refuse(app: &App, kind: &str, status: StatusCode, why: &str) -> Response {
    warn!(endpoint = kind, reason = why, "request refused");
    app.metrics.auth_failures_total.get_or_create(&metrics::KindLabel { kind: kind.into() }).inc();
    (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The page's session token, checked; its nonce.
#[allow(clippy::result_large_err, reason = "the error is the response to send")]
pub(crate) fn session(app: &App, headers: &HeaderMap, kind: &str) -> Result<String, Response> {
    let Some(token) = bearer(headers) else {
        return Err(refuse(app, kind, StatusCode::UNAUTHORIZED, "a session token is required"));
    };
    app.web.tokens.verify(token).map_err(|e| refuse(app, kind, StatusCode::UNAUTHORIZED, &e.to_string()))
}

/// A browser request's `Origin` is the server's own (same host) or an allowed one. Requests
/// without one (not from a page) pass: the token is what authenticates.
fn origin_ok(app: &App, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(http::header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let own = headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).is_some_and(|host| {
        origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
    });
    own || app.loaded.config.web.allowed_origins.iter().any(|a| a.trim_end_matches('/') == origin)
}

/// `GET /`.
pub async fn page(State(app): State<Arc<App>>) -> Response {
    if !app.loaded.config.web.enabled {
        return (StatusCode::NOT_FOUND, "the web page is disabled").into_response();
    }
    // The page may reach the Realtime APIs of browser-direct pipelines, and nothing else.
    let mut connect = vec!["'self'".to_string()];
    if app.loaded.config.web.direct {
        for (_, p) in &app.loaded.pipelines {
            let origin = crate::direct::direct_stage(p)
                .and_then(|s| crate::direct::rest_base(&s.url))
                .and_then(|b| crate::direct::origin_of(&b));
            if let Some(o) = origin.filter(|o| !connect.contains(o)) {
                connect.push(o);
            }
        }
    }
    let csp = format!(
        "default-src 'self'; script-src 'unsafe-inline' 'self' blob:; style-src 'unsafe-inline' 'self'; media-src 'self' blob:; connect-src {}",
        connect.join(" ")
    );
    let mut r = Html(PAGE).into_response();
    let h = r.headers_mut();
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    if let Ok(v) = http::HeaderValue::from_str(&csp) {
        h.insert(http::header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert("referrer-policy", http::HeaderValue::from_static("no-referrer"));
    r
}

/// `POST /web/session`.
pub async fn mint(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !app.authorized(&headers, false) {
        return refuse(&app, "web/session", StatusCode::FORBIDDEN, "missing or wrong bearer key");
    }
    if !app.web.limiter.allow(peer.ip(), app.loaded.config.web.mint_per_minute) {
        return refuse(
            &app,
            "web/session",
            StatusCode::TOO_MANY_REQUESTS,
            "too many session tokens from this address",
        );
    }
    let (token, expires_at) = app.web.tokens.mint();
    axum::Json(serde_json::json!({ "token": token, "expires_at": expires_at })).into_response()
}

/// `GET /web/config`.
pub async fn config(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = session(&app, &headers, "web/config") {
        return r;
    }
    let direct = app.loaded.config.web.direct;
    let pipelines: Vec<_> = app
        .loaded
        .pipelines
        .iter()
        .map(|(e, p)| {
            let native = p.stages.iter().any(|s| s.kind().starts_with("realtime."));
            serde_json::json!({
                "name": e.name,
                "kind": if native { "native" } else { "cascade" },
                "direct": direct && crate::direct::direct_stage(p).is_some(),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "pipelines": pipelines, "ice_servers": app.web.ice_servers }))
        .into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Offer {
    sdp: String,
    #[serde(default)]
    pipeline: Option<String>,
    #[serde(default, rename = "type")]
    _kind: Option<String>,
}

/// The checks every browser-call endpoint makes first: calls are enabled, and a page asking
/// comes from an allowed origin.
#[allow(clippy::result_large_err, reason = "the error is the response to send")]
pub(crate) fn admit(app: &App, headers: &HeaderMap, kind: &str) -> Result<(), Response> {
    if !app.loaded.config.web.enabled {
        return Err((StatusCode::NOT_FOUND, "browser calls are disabled").into_response());
    }
    if !origin_ok(app, headers) {
        return Err(refuse(app, kind, StatusCode::FORBIDDEN, "origin not allowed"));
    }
    Ok(())
}

pub(crate) fn json_error(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
}

/// A browser call's transport, over WebRTC or the fallback socket.
struct BrowserCall {
    source: voxpipe_webrtc::WebRtcSource,
    sink: voxpipe_webrtc::WebRtcSink,
    state: Arc<voxpipe_webrtc::CallState>,
    page: voxpipe_webrtc::PageEvents,
    close: tokio_util::sync::CancellationToken,
}

/// Starts a browser call on its own task (its files, its pipeline, its summary); returns its id
/// and the task.
fn spawn_call(
    app: &Arc<App>,
    slot: crate::Slot,
    pick: crate::routing::Pick,
    peer: SocketAddr,
    call: BrowserCall,
) -> (String, tokio::task::JoinHandle<()>) {
    let call_id = app.web.call_id();
    info!(%call_id, pipeline = %pick.pipeline, client = %peer.ip(), "browser call answered");
    let files = open_files(app, &call_id, &pick.pipeline, &pick.by, Some(voxpipe_webrtc::INPUT_RATE));
    let mut call = call;
    if let Some(r) = &files.recorder {
        voxpipe_webrtc::record_to(&mut call.source, &mut call.sink, r.clone());
    }
    let leg = Leg {
        id: call_id.clone(),
        pipeline: pick.pipeline,
        assigned_by: pick.by,
        from: format!("browser:{}", peer.ip()),
        source: Box::new(call.source),
        sink: Box::new(call.sink),
        carrier: Carrier::Browser { state: call.state, page: call.page, close: call.close },
    };
    (call_id, tokio::spawn(run_leg(app.clone(), slot, leg, files)))
}

/// `POST /webrtc/offer`.
pub async fn offer(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    const KIND: &str = "webrtc/offer";
    if let Err(r) = admit(&app, &headers, KIND) {
        return r;
    }
    if let Err(r) = session(&app, &headers, KIND) {
        return r;
    }
    if body.len() > MAX_OFFER_BODY {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, "offer too large");
    }
    let offer: Offer = match serde_json::from_slice(&body) {
        Ok(o) => o,
        Err(e) => {
            let error = format!("expected {{\"sdp\": \"...\", \"pipeline\": \"...\"}}: {e}");
            return json_error(StatusCode::BAD_REQUEST, &error);
        }
    };
    let Some(pick) = app.router.pick(offer.pipeline.as_deref(), "") else {
        let error = format!("no pipeline `{}` on this server", offer.pipeline.unwrap_or_default());
        return json_error(StatusCode::NOT_FOUND, &error);
    };
    let Some(slot) = app.reserve() else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "busy");
    };
    let call = match voxpipe_webrtc::accept(&offer.sdp, &app.loaded.config.web.webrtc).await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "WebRTC offer refused");
            app.metrics.error("webrtc_offer");
            return json_error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let answer = call.answer;
    let parts = BrowserCall {
        source: call.source,
        sink: call.sink,
        state: call.state,
        page: call.page,
        close: call.close,
    };
    let (call_id, _) = spawn_call(&app, slot, pick, peer, parts);
    axum::Json(serde_json::json!({ "type": "answer", "sdp": answer, "call_id": call_id })).into_response()
}

/// The fallback socket's sub-protocol.
const SOCKET_PROTOCOL: &str = "voxpipe-pcm16";

/// `GET /web/socket` query.
#[derive(Debug, serde::Deserialize)]
pub struct SocketQuery {
    /// The pipeline to talk to.
    #[serde(default)]
    pub pipeline: Option<String>,
}

/// `GET /web/socket`.
pub async fn socket(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Query(q): axum::extract::Query<SocketQuery>,
    headers: HeaderMap,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    use axum::extract::ws::Message;
    use futures_util::{SinkExt, StreamExt};
    const KIND: &str = "web/socket";
    if let Err(r) = admit(&app, &headers, KIND) {
        return r;
    }
    let offered: Vec<&str> = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(str::trim))
        .collect();
    let Some(token) = offered.iter().find_map(|p| p.strip_prefix("bearer.")) else {
        return refuse(&app, KIND, StatusCode::UNAUTHORIZED, "a session token is required");
    };
    if let Err(e) = app.web.tokens.verify(token) {
        return refuse(&app, KIND, StatusCode::UNAUTHORIZED, &e.to_string());
    }
    if !offered.contains(&SOCKET_PROTOCOL) {
        return (StatusCode::BAD_REQUEST, "expected the voxpipe-pcm16 sub-protocol").into_response();
    }
    let Some(pick) = app.router.pick(q.pipeline.as_deref(), "") else {
        return (StatusCode::NOT_FOUND, "no such pipeline").into_response();
    };
    let Some(slot) = app.reserve() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    };
    let max = app.loaded.config.limits.max_message_bytes.max(voxpipe_webrtc::socket::MAX_AUDIO_BYTES + 1);
    ws.protocols([SOCKET_PROTOCOL]).max_message_size(max).max_frame_size(max).on_upgrade(move |socket| async move {
        let call = voxpipe_webrtc::socket::accept_socket();
        let close = tokio_util::sync::CancellationToken::new();
        let page = call.page.clone();
        let parts =
            BrowserCall { source: call.source, sink: call.sink, state: call.state, page: call.page, close: close.clone() };
        let (call_id, run) = spawn_call(&app, slot, pick, peer, parts);
        page.send(serde_json::json!({ "type": "call_started", "call_id": call_id }).to_string());
        let (mut tx, mut rx) = socket.split();
        let mut io = call.io;
        let idle = Duration::from_secs(app.loaded.config.limits.idle_timeout_secs);
        let end = loop {
            tokio::select! {
                () = close.cancelled() => break None,
                out = io.next() => match out {
                    Some(voxpipe_webrtc::socket::SocketOut::Audio(pcm)) => {
                        if tx.send(Message::Binary(axum::body::Bytes::from_owner(pcm))).await.is_err() {
                            break Some(voxpipe_webrtc::CallEnd::Disconnected);
                        }
                    }
                    Some(voxpipe_webrtc::socket::SocketOut::Text(t)) => {
                        if tx.send(Message::Text(t.into())).await.is_err() {
                            break Some(voxpipe_webrtc::CallEnd::Disconnected);
                        }
                    }
                    None => break None,
                },
                msg = tokio::time::timeout(idle, rx.next()) => match msg {
                    Err(_) => break Some(voxpipe_webrtc::CallEnd::Failed(format!("nothing from the page for {} s", idle.as_secs()))),
                    Ok(Some(Ok(Message::Binary(b)))) => { if !io.audio(&b).await { break None } }
                    Ok(Some(Ok(Message::Text(t)))) => { if !io.text(t.to_string()).await { break None } }
                    Ok(Some(Ok(Message::Close(_)))) | Ok(None) => break Some(voxpipe_webrtc::CallEnd::Disconnected),
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(e))) => break Some(voxpipe_webrtc::CallEnd::Failed(e.to_string())),
                },
            }
        };
        if let Some(end) = end {
            io.closed(end);
        } else {
            // The call ended on the server: flush what is left for the page, then close.
            while let Ok(Some(out)) = tokio::time::timeout(Duration::from_millis(300), io.next()).await {
                if let voxpipe_webrtc::socket::SocketOut::Text(t) = out {
                    let _ = tx.send(Message::Text(t.into())).await;
                }
            }
            let _ = tx.send(Message::Close(None)).await;
            drop(io);
        }
        let _ = run.await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_refuse_forgery_tampering_and_expiry() {
        let t = Tokens::new(Secret::new("k1"), Duration::from_secs(60));
        let (token, exp) = t.mint();
        assert!(exp > unix_now());
        let nonce = t.verify(&token).unwrap();
        assert!(token.contains(&format!(".{nonce}.")), "the nonce names the session");
        let other = Tokens::new(Secret::new("k2"), Duration::from_secs(60));
        assert_eq!(other.verify(&token), Err(TokenError::Signature));
        let tampered = token.replacen(&format!("v1.{exp}"), &format!("v1.{}", exp + 1000), 1);
        assert_eq!(t.verify(&tampered), Err(TokenError::Signature));
        assert_eq!(t.verify("garbage"), Err(TokenError::Malformed));
        assert_eq!(t.verify("v1.x.y.z"), Err(TokenError::Malformed));
        let payload = format!("v1.{}.bm9uY2U", unix_now() - 10);
        let expired = format!("{payload}.{}", t.sign(&payload));
        assert_eq!(t.verify(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn minting_is_limited_per_address() {
        let l = MintLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!((0..3).all(|_| l.allow(a, 3)));
        assert!(!l.allow(a, 3));
        assert!(l.allow(b, 3), "another address has its own budget");
    }
}
