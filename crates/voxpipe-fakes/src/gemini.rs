//! Gemini API fake: `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`
//! (`shared/specs/google/DIGEST.md` §2, `generative_service.proto`, `content.proto`).
//!
//! Strict like the service: the key in `x-goog-api-key` (or `?key=`), refused as Google does
//! (403 `PERMISSION_DENIED` without one, 400 `INVALID_ARGUMENT` with `ErrorInfo.reason`
//! `API_KEY_INVALID` for a wrong one); other paths, methods and models are 404s; the body is
//! proto3 JSON (lowerCamel or snake_case names, unknown names refused), with roles `user` and
//! `model` only, one data field per part, a conversation that ends with the user, and each
//! function-response turn answering the function calls of the model turn just before it, one
//! response per call, by name and (when the call had one) by `id`. Function calls of the
//! current turn must come back with the `thoughtSignature` the fake gave them (as Gemini 3
//! requires). Errors are Google's pretty-printed `{"error":{"code","message","status"}}`.
//!
//! The stream is the recorded fixtures' shape: `data: <GenerateContentResponse>` events
//! separated by CRLF blank lines, cumulative `usageMetadata` on every chunk, text in
//! token-sized chunks, parallel function calls as several `functionCall` parts of one chunk
//! (the first carrying a `thoughtSignature`), `finishReason` on the last chunk, no end event.
//! Per request, a prompt can be blocked (`promptFeedback.blockReason`) or the answer stopped
//! with another `finishReason`. Scripting, pacing, faults and recording are shared with
//! [`crate::openai_chat`].

use crate::openai_chat::{Knobs, RecordedRequest, ScriptedReply, Shared, split_tokens};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

mod check;

/// Every fault kind of [`crate::fault`] is implemented.
pub const SUPPORTED_FAULTS: &[&str] = crate::fault::ALL_KINDS;

/// Configuration of a [`GeminiFake`].
#[derive(Clone, Debug, Default)]
pub struct GeminiFakeConfig {
    /// The key to require; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// Replies, in order, cycling. Empty means [`ScriptedReply::Echo`].
    pub replies: Vec<ScriptedReply>,
    /// Pacing and faults.
    pub knobs: Knobs,
    /// Give each function call an `id` (newer models and Live do); the recorded Developer API
    /// streams have none. Default: false.
    pub function_call_ids: bool,
    /// Requests (by index) whose prompt is blocked with this `blockReason` (`SAFETY`,
    /// `BLOCKLIST`, `PROHIBITED_CONTENT`, `OTHER`): one chunk with `promptFeedback` only.
    pub block_reasons: BTreeMap<usize, String>,
    /// Requests (by index) whose answer ends with this `finishReason` instead of `STOP`
    /// (`SAFETY`, `RECITATION`, `MALFORMED_FUNCTION_CALL`…), in a last chunk of its own.
    pub finish_reasons: BTreeMap<usize, String>,
}

/// A running Gemini fake. Stops when dropped.
#[derive(Debug)]
pub struct GeminiFake {
    server: crate::server::Running,
    shared: Arc<Shared<GeminiFakeConfig>>,
    urls: Arc<Mutex<Vec<String>>>,
}

type St = (Arc<Shared<GeminiFakeConfig>>, Arc<Mutex<Vec<String>>>);

impl GeminiFake {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start(config: GeminiFakeConfig) -> std::io::Result<Self> {
        Self::start_on(crate::server::any_port(), config).await
    }

    /// Starts the fake on `addr`.
    pub async fn start_on(addr: SocketAddr, config: GeminiFakeConfig) -> std::io::Result<Self> {
        let shutdown = CancellationToken::new();
        let knobs = config.knobs.clone();
        let shared = Arc::new(Shared {
            config,
            knobs,
            requests: Mutex::new(Vec::new()),
            next_request: AtomicUsize::new(0),
            next_reply: AtomicUsize::new(0),
            shutdown: shutdown.clone(),
        });
        let urls = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new()
            .route("/v1beta/models/{call}", any(handle))
            .fallback(|| async { not_found("Method not found.") })
            .with_state((shared.clone(), urls.clone()));
        let server = crate::server::Running::start(addr, router, shutdown).await?;
        Ok(Self { server, shared, urls })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The base URL to configure clients with: `http://127.0.0.1:<port>/v1beta`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1beta", self.server.addr())
    }

    /// Every request received so far (`x-goog-api-key` reads `[redacted]`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The path and query of every request so far, in order (a `key` parameter's value reads
    /// `[redacted]`).
    pub fn urls(&self) -> Vec<String> {
        self.urls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the server (hanging streams end) and waits for it.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// A Google error response: `{"error":{"code","message","status"}}` (pretty-printed, as
/// Google sends it), with `details` when given.
fn error(code: u16, status: &str, message: &str, details: Option<Value>) -> Response {
    // Written out by hand to keep Google's order (code, message, status, details): a client
    // that shows the start of the body shows the message.
    let quote = |s: &str| Value::String(s.to_string()).to_string();
    let mut text = format!(
        "{{\n  \"error\": {{\n    \"code\": {code},\n    \"message\": {},\n    \"status\": {}",
        quote(message),
        quote(status)
    );
    if let Some(d) = details {
        let d = serde_json::to_string_pretty(&d).expect("a JSON value serialises").replace('\n', "\n    ");
        text.push_str(&format!(",\n    \"details\": {d}"));
    }
    text.push_str("\n  }\n}\n");
    let http = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (http, [(header::CONTENT_TYPE, "application/json; charset=UTF-8")], text).into_response()
}

fn invalid(message: impl AsRef<str>) -> Box<Response> {
    Box::new(error(400, "INVALID_ARGUMENT", message.as_ref(), None))
}

fn not_found(message: &str) -> Response {
    error(404, "NOT_FOUND", message, None)
}

async fn handle(
    State((s, urls)): State<St>,
    method: Method,
    Path(call): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = s.record(&headers, &body);
    let params: Vec<(String, String)> = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or((p.to_string(), String::new()), |(k, v)| (k.into(), v.into())))
        .collect();
    let shown: Vec<String> = params
        .iter()
        .map(|(k, v)| if k == "key" { format!("{k}=[redacted]") } else { format!("{k}={v}") })
        .collect();
    let url = format!("/v1beta/models/{call}{}{}", if shown.is_empty() { "" } else { "?" }, shown.join("&"));
    urls.lock().unwrap_or_else(|e| e.into_inner()).push(url);
    let response = answer(&s, index, &method, &call, &params, &headers, &body);
    s.set_status(index, response.status().as_u16());
    response
}

fn answer(
    s: &Arc<Shared<GeminiFakeConfig>>,
    index: usize,
    method: &Method,
    call: &str,
    params: &[(String, String)],
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (model, rpc) = call.split_once(':').unwrap_or((call, ""));
    if *method != Method::POST || rpc != "streamGenerateContent" {
        return not_found("Method not found.");
    }
    if let Err(r) = authenticate(headers, param("key"), s.config.api_key.as_deref()) {
        return *r;
    }
    if !(model.starts_with("gemini-") || model.starts_with("gemma-")) {
        return not_found(&format!(
            "models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
        ));
    }
    if param("alt") != Some("sse") {
        return *invalid(
            "this fake streams Server-Sent Events only: add ?alt=sse (without it the service answers one JSON array)",
        );
    }
    if let Some(r) = status_fault(s, index) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return *invalid("Invalid JSON payload received. Unexpected token.");
    };
    if let Err(r) = check::request(&req) {
        return *r;
    }
    let events = match s.config.block_reasons.get(&index) {
        Some(reason) => vec![chunk(&blocked(reason, model))],
        None => {
            let reply = s.next_reply(&s.config.replies);
            let finish = s.config.finish_reasons.get(&index).map(String::as_str);
            reply_chunks(index, model, &req, &reply, s.config.function_call_ids, finish)
        }
    };
    s.sse(index, events, |what| injected(model, what))
}

/// The answer of a status fault, in Google's shape; a 429 with `Retry-After` also says the
/// delay in `RetryInfo`, as Google's quota errors do.
fn status_fault(s: &Shared<GeminiFakeConfig>, index: usize) -> Option<Response> {
    let (code, retry_after) = s.status_fault(index)?;
    let mut r = match code {
        401 => error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", None),
        403 => error(403, "PERMISSION_DENIED", "The caller does not have permission", None),
        429 => {
            let details = retry_after.map(|secs| {
                json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{secs}s")}])
            });
            error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                details,
            )
        }
        503 => error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.", None),
        504 => error(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.", None),
        c if c >= 500 => error(
            c,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            None,
        ),
        c => error(c, "INVALID_ARGUMENT", "Injected fault.", None),
    };
    if let Some(secs) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
    Some(r)
}

/// The key from `x-goog-api-key` (the SDK's way) or `?key=`, checked against `want`.
fn authenticate(
    headers: &HeaderMap,
    query_key: Option<&str>,
    want: Option<&str>,
) -> Result<(), Box<Response>> {
    let header_key = headers.get("x-goog-api-key").and_then(|v| v.to_str().ok());
    let Some(got) = header_key.or(query_key).filter(|k| !k.is_empty()) else {
        return Err(Box::new(error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            None,
        )));
    };
    if want.is_some_and(|w| w != got) {
        let details = json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
            "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]);
        return Err(Box::new(error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            Some(details),
        )));
    }
    Ok(())
}

/// One SSE event, CRLF-framed like the recorded streams.
fn chunk(v: &Value) -> String {
    format!("data: {v}\r\n\r\n")
}

/// The chunk a fault injects.
fn injected(model: &str, what: crate::fault::Injection) -> String {
    use crate::fault::Injection;
    match what {
        Injection::Malformed => {
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"unterminated\r\n\r\n".into()
        }
        // Google adds response fields over time; clients must ignore names they do not know.
        Injection::Unknown => chunk(
            &json!({"xFakeUnknownField": {"note": "a field this API does not define"}, "modelVersion": model}),
        ),
        Injection::Oversize(bytes) => chunk(&json!({"modelVersion": crate::fault::padding(bytes)})),
    }
}

fn blocked(reason: &str, model: &str) -> Value {
    let rating =
        |category: &str, probability: &str| json!({"category": category, "probability": probability});
    json!({"promptFeedback": {"blockReason": reason, "safetyRatings": [
        rating("HARM_CATEGORY_SEXUALLY_EXPLICIT", "NEGLIGIBLE"),
        rating("HARM_CATEGORY_HATE_SPEECH", "HIGH"),
        rating("HARM_CATEGORY_HARASSMENT", "NEGLIGIBLE"),
        rating("HARM_CATEGORY_DANGEROUS_CONTENT", "NEGLIGIBLE"),
    ]}, "modelVersion": model})
}

/// The echo reply: the function responses of the last user turn, or its text.
fn echo_text(contents: &[Value]) -> String {
    let Some(last) = contents.last() else { return "You said: ".into() };
    let parts = last["parts"].as_array().cloned().unwrap_or_default();
    let responses: Vec<String> = parts
        .iter()
        .filter_map(|p| p.get("functionResponse").or_else(|| p.get("function_response")))
        .map(|r| {
            let response = &r["response"];
            match response.get("output").or_else(|| response.get("error")).unwrap_or(response) {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        })
        .collect();
    if !responses.is_empty() {
        return format!("Tool said: {}", responses.join("; "));
    }
    let text: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
    format!("You said: {}", text.join(" "))
}

/// The fake's thought signature of call `i` of request `index` (base64, as `bytes` are).
pub fn thought_signature(index: usize, i: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("fake-thought-signature/{index}/{i}"))
}

/// The SSE events of one reply, shaped like the recorded fixtures.
fn reply_chunks(
    index: usize,
    model: &str,
    req: &Value,
    reply: &ScriptedReply,
    ids: bool,
    finish: Option<&str>,
) -> Vec<String> {
    let contents = req["contents"].as_array().cloned().unwrap_or_default();
    let (text, calls) = match reply {
        ScriptedReply::Text(t) => (Some(t.clone()), Vec::new()),
        ScriptedReply::Echo => (Some(echo_text(&contents)), Vec::new()),
        ScriptedReply::ToolCalls { text, calls } => (text.clone(), calls.clone()),
    };
    let prompt_tokens = (req["contents"].to_string().len() / 4).max(1);
    let response_id = format!("fakeResponse{index}");
    let mut output_tokens = 0;
    let response = |parts: Vec<Value>, finish: Option<&str>, output_tokens: usize| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        let mut usage = json!({"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens + output_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}]});
        if let Some(reason) = finish {
            candidate["finishReason"] = json!(reason);
            usage["candidatesTokenCount"] = json!(output_tokens);
        }
        json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": response_id})
    };
    let pieces = text.filter(|t| !t.is_empty()).map(|t| split_tokens(&t)).unwrap_or_default();
    let mut chunks: Vec<Vec<Value>> = pieces.into_iter().map(|p| vec![json!({"text": p})]).collect();
    let call_parts: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut fc = json!({"name": c.name, "args": c.arguments});
            if ids {
                fc["id"] = json!(format!("fc_{index}_{i}"));
            }
            let mut part = json!({"functionCall": fc});
            // Parallel calls: only the first carries the signature.
            if i == 0 {
                part["thoughtSignature"] = json!(thought_signature(index, i));
            }
            part
        })
        .collect();
    if !call_parts.is_empty() {
        chunks.push(call_parts);
    }
    let mut events = Vec::new();
    let last = chunks.len().saturating_sub(1);
    let normal_end = finish.is_none();
    for (i, parts) in chunks.into_iter().enumerate() {
        output_tokens += parts.len();
        let end = (normal_end && i == last).then_some("STOP");
        events.push(chunk(&response(parts, end, output_tokens)));
    }
    if events.is_empty() || !normal_end {
        let reason = finish.unwrap_or("STOP");
        let mut v = response(vec![json!({"text": ""})], Some(reason), output_tokens);
        if reason == "SAFETY" {
            v["candidates"][0]["safetyRatings"] =
                json!([{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": true}]);
        } else if reason != "STOP" {
            v["candidates"][0]["finishMessage"] = json!(format!("Fake finish: {reason}"));
        }
        events.push(chunk(&v));
    }
    events
}
