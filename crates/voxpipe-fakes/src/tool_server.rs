//! A tiny in-memory HTTP tool server for the example pipelines (`voxpipe fake tools`): order
//! status, appointment booking and human handoff, strict about its JSON bodies, recording
//! every request (headers included) for tests.
//!
//! - `POST /orders/status` `{"order_id"}` → `{"order_id","status","carrier","eta"}`; 404
//!   `{"error":"unknown order","order_id"}` for ids other than `A-1001`…`A-1005` and the
//!   orders of the shipped A/B scenarios (`A-1234`, `B-5678`, `C-9012`, `D-3456`).
//! - `POST /appointments/book` `{"date":"YYYY-MM-DD","time":"HH:MM","name"}` →
//!   `{"confirmation":"APT-1001","date","time","name"}`; 409 `{"error":"slot taken"}` when the
//!   slot is already booked.
//! - `POST /handoff` `{"reason"?, "transcript"?}` → `{"queued":true,"position":n}`.
//!
//! Bodies must be JSON objects sent as `application/json` (415 otherwise) with only the listed
//! fields (400 `{"error":"…"}` otherwise).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The orders the server knows: id, status, carrier, eta.
pub const ORDERS: &[(&str, &str, &str, &str)] = &[
    ("A-1001", "shipped", "UPS", "2026-03-14"),
    ("A-1002", "processing", "not yet assigned", "2026-03-18"),
    ("A-1003", "delivered", "DHL", "2026-03-02"),
    ("A-1004", "out_for_delivery", "FedEx", "2026-03-10"),
    ("A-1005", "cancelled", "none", "none"),
    // The orders the scenarios under `scenarios/` ask about.
    ("A-1234", "shipped", "UPS", "2026-03-12"),
    ("B-5678", "shipped", "DHL", "2026-03-13"),
    ("C-9012", "shipped", "UPS", "2026-03-12"),
    ("D-3456", "out_for_delivery", "FedEx", "2026-03-11"),
];

/// Knobs of the tool server.
#[derive(Clone, Debug, Default)]
pub struct ToolServerConfig {
    /// Delay before every answer, ms. Default: 0.
    pub latency_ms: u64,
    /// When set, requests must carry exactly this `Authorization` header (401 otherwise).
    /// Default: none (no auth).
    pub required_authorization: Option<String>,
    /// Fault: answer request number `n` (0-based, all paths) with this status and
    /// `{"error":"injected fault"}`.
    pub fail_requests: Vec<(usize, u16)>,
    /// Faults by request index (0-based, all paths); every kind is implemented. The answer is
    /// one JSON body: a chunk is [`crate::fault::BODY_CHUNK_BYTES`] bytes of it.
    pub faults: crate::fault::Faults,
}

/// The fault kinds the tool server implements.
pub const SUPPORTED_FAULTS: &[&str] = crate::fault::ALL_KINDS;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct ToolServerRequest {
    /// Arrival, from the server's start (tokio clock).
    pub at: Duration,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers (lower-case names), in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Null` if it was not JSON).
    pub body: Value,
    /// The status answered (0 while in flight).
    pub status: u16,
}

#[derive(Debug)]
struct Shared {
    config: ToolServerConfig,
    start: Instant,
    requests: Mutex<Vec<ToolServerRequest>>,
    booked: Mutex<BTreeSet<(String, String)>>,
    handoffs: Mutex<u32>,
}

/// A running tool server; stops when dropped.
#[derive(Debug)]
pub struct ToolServer {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl ToolServer {
    /// Starts on `127.0.0.1:0` with default knobs.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(crate::server::any_port(), ToolServerConfig::default()).await
    }

    /// Starts on `addr` (e.g. `127.0.0.1:8793` for the example pipelines) with default knobs.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(addr, ToolServerConfig::default()).await
    }

    /// Starts on `addr` with `config`.
    pub async fn start_with(addr: SocketAddr, config: ToolServerConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            start: Instant::now(),
            requests: Mutex::new(Vec::new()),
            booked: Mutex::new(BTreeSet::new()),
            handoffs: Mutex::new(0),
        });
        let app = Router::new()
            .route("/orders/status", post(handle))
            .route("/appointments/book", post(handle))
            .route("/handoff", post(handle))
            .with_state(shared.clone());
        let server = crate::server::Running::start(addr, app, CancellationToken::new()).await?;
        Ok(Self { server, shared })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<ToolServerRequest> {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops serving (also done on drop).
    pub fn stop(&self) {
        self.server.cancel();
    }
}

fn error(status: StatusCode, message: &str) -> (StatusCode, Value) {
    (status, json!({ "error": message }))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let index = {
        let mut reqs = shared.requests.lock().unwrap_or_else(|e| e.into_inner());
        reqs.push(ToolServerRequest {
            at: shared.start.elapsed(),
            method: method.to_string(),
            uri: uri.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body: parsed.clone(),
            status: 0,
        });
        reqs.len() - 1
    };
    if shared.config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.config.latency_ms)).await;
    }
    let fault = shared.config.faults.get(&index);
    let (status, body) = match fault {
        Some(crate::fault::Fault::Status { status, .. }) => error(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "injected fault",
        ),
        _ => answer(&shared, index, uri.path(), &headers, &body, parsed),
    };
    if let Some(r) = shared.requests.lock().unwrap_or_else(|e| e.into_inner()).get_mut(index) {
        r.status = status.as_u16();
    }
    let mut resp = crate::fault::json_response(status, body, fault);
    if let Some(crate::fault::Fault::Status { retry_after_s: Some(secs), .. }) = fault {
        resp.headers_mut().insert(header::RETRY_AFTER, (*secs).into());
    }
    resp
}

fn answer(
    shared: &Shared,
    index: usize,
    path: &str,
    headers: &HeaderMap,
    raw: &[u8],
    body: Value,
) -> (StatusCode, Value) {
    if let Some(&(_, code)) = shared.config.fail_requests.iter().find(|(n, _)| *n == index) {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, "injected fault");
    }
    if let Some(want) = &shared.config.required_authorization {
        let got = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if got != Some(want.as_bytes()) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong Authorization header");
        }
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/json") {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected Content-Type: application/json");
    }
    let Value::Object(obj) = body else {
        let what = if serde_json::from_slice::<Value>(raw).is_ok() { "a JSON object" } else { "valid JSON" };
        return error(StatusCode::BAD_REQUEST, &format!("the body must be {what}"));
    };
    match path {
        "/orders/status" => order_status(&obj),
        "/appointments/book" => book(shared, &obj),
        _ => handoff(shared, &obj),
    }
}

/// The string field `key`, or a 400 answer.
fn string_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, (StatusCode, Value)> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(error(StatusCode::BAD_REQUEST, &format!("`{key}` must not be empty"))),
        Some(_) => Err(error(StatusCode::BAD_REQUEST, &format!("`{key}` must be a string"))),
        None => Err(error(StatusCode::BAD_REQUEST, &format!("`{key}` is required"))),
    }
}

fn only_fields(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), (StatusCode, Value)> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(error(StatusCode::BAD_REQUEST, &format!("unknown field `{k}`"))),
        None => Ok(()),
    }
}

fn order_status(obj: &Map<String, Value>) -> (StatusCode, Value) {
    let id = match only_fields(obj, &["order_id"]).and_then(|()| string_field(obj, "order_id")) {
        Ok(id) => id.trim(),
        Err(e) => return e,
    };
    match ORDERS.iter().find(|(known, ..)| known.eq_ignore_ascii_case(id)) {
        Some((id, status, carrier, eta)) => {
            (StatusCode::OK, json!({ "order_id": id, "status": status, "carrier": carrier, "eta": eta }))
        }
        None => (StatusCode::NOT_FOUND, json!({ "error": "unknown order", "order_id": id })),
    }
}

fn valid_date(d: &str) -> bool {
    let p: Vec<&str> = d.split('-').collect();
    let num = |s: &str, len: usize, lo: u32, hi: u32| {
        s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) && (lo..=hi).contains(&s.parse().unwrap_or(0))
    };
    p.len() == 3 && num(p[0], 4, 1900, 2999) && num(p[1], 2, 1, 12) && num(p[2], 2, 1, 31)
}

fn valid_time(t: &str) -> bool {
    let p: Vec<&str> = t.split(':').collect();
    let num = |s: &str, hi: u32| {
        s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u32>().is_ok_and(|v| v <= hi)
    };
    p.len() == 2 && num(p[0], 23) && num(p[1], 59)
}

fn book(shared: &Shared, obj: &Map<String, Value>) -> (StatusCode, Value) {
    let fields = only_fields(obj, &["date", "time", "name"]).and_then(|()| {
        Ok((string_field(obj, "date")?, string_field(obj, "time")?, string_field(obj, "name")?))
    });
    let (date, time, name) = match fields {
        Ok(f) => f,
        Err(e) => return e,
    };
    if !valid_date(date) {
        return error(StatusCode::BAD_REQUEST, "`date` must be YYYY-MM-DD");
    }
    if !valid_time(time) {
        return error(StatusCode::BAD_REQUEST, "`time` must be HH:MM (24-hour)");
    }
    let mut booked = shared.booked.lock().unwrap_or_else(|e| e.into_inner());
    if !booked.insert((date.to_string(), time.to_string())) {
        return error(StatusCode::CONFLICT, "slot taken");
    }
    let confirmation = format!("APT-{}", 1000 + booked.len());
    (StatusCode::OK, json!({ "confirmation": confirmation, "date": date, "time": time, "name": name }))
}

fn handoff(shared: &Shared, obj: &Map<String, Value>) -> (StatusCode, Value) {
    if let Err(e) = only_fields(obj, &["reason", "transcript", "target"]) {
        return e;
    }
    let mut n = shared.handoffs.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    (StatusCode::OK, json!({ "queued": true, "position": *n }))
}
