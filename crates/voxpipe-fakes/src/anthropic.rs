//! Anthropic Messages fake (`POST /v1/messages`, streaming SSE, PROTOCOLS.md §6).
//!
//! Requires a key (`x-api-key`, or `Authorization: Bearer` as the SDK's `auth_token` sends
//! it), `anthropic-version` and `max_tokens`; checks roles, content blocks and
//! that every `tool_result` answers a `tool_use` of the preceding assistant turn (and every
//! `tool_use` is answered); answers errors in Anthropic's shape. Streams `event:` + `data:`
//! lines like the recorded fixtures: `message_start`, `content_block_start`, `ping`,
//! `content_block_delta`…, `content_block_stop`, `message_delta` (cumulative usage),
//! `message_stop`. Scripting, pacing, faults and recording are shared with
//! [`crate::openai_chat`].

use crate::openai_chat::{Knobs, RecordedRequest, ScriptedReply, Shared, split_fragments, split_tokens};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Configuration of an [`AnthropicFake`].
#[derive(Clone, Debug)]
pub struct AnthropicFakeConfig {
    /// The key to require in `x-api-key` or `Authorization: Bearer`; `None` accepts any
    /// non-empty key.
    pub api_key: Option<String>,
    /// Replies, in order, cycling. Empty means [`ScriptedReply::Echo`].
    pub replies: Vec<ScriptedReply>,
    /// Pacing and faults.
    pub knobs: Knobs,
}

impl Default for AnthropicFakeConfig {
    fn default() -> Self {
        Self { api_key: None, replies: vec![ScriptedReply::Echo], knobs: Knobs::default() }
    }
}

/// A running Messages fake. Stops when dropped.
#[derive(Debug)]
pub struct AnthropicFake {
    server: crate::server::Running,
    shared: Arc<Shared<AnthropicFakeConfig>>,
}

impl AnthropicFake {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start(config: AnthropicFakeConfig) -> std::io::Result<Self> {
        Self::start_on(crate::server::any_port(), config).await
    }

    /// Starts the fake on `addr`.
    pub async fn start_on(addr: std::net::SocketAddr, config: AnthropicFakeConfig) -> std::io::Result<Self> {
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
        let router = Router::new().route("/v1/messages", post(handle)).with_state(shared.clone());
        let server = crate::server::Running::start(addr, router, shutdown).await?;
        Ok(Self { server, shared })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The base URL to configure clients with: `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        self.server.v1_url()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the server (hanging streams end) and waits for it.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// An Anthropic error response.
fn error(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn invalid(message: impl AsRef<str>) -> Box<Response> {
    Box::new(error(400, "invalid_request_error", message.as_ref()))
}

async fn handle(
    State(s): State<Arc<Shared<AnthropicFakeConfig>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = s.record(&headers, &body);
    let response = answer(&s, index, &headers, &body);
    s.set_status(index, response.status().as_u16());
    response
}

fn answer(s: &Arc<Shared<AnthropicFakeConfig>>, index: usize, headers: &HeaderMap, body: &Bytes) -> Response {
    if let Err(r) = authenticate(headers, s.config.api_key.as_deref()) {
        return *r;
    }
    if headers.get("anthropic-version").is_none() {
        return error(400, "invalid_request_error", "anthropic-version: header is required");
    }
    if let Some((status, retry_after)) = s.status_fault(index) {
        let mut r = match status {
            401 => error(401, "authentication_error", "invalid x-api-key"),
            429 => error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            ),
            529 => error(529, "overloaded_error", "Overloaded"),
            s if s >= 500 => error(s, "api_error", "Internal server error"),
            s => error(s, "invalid_request_error", "Injected fault."),
        };
        if let Some(secs) = retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return error(400, "invalid_request_error", "Request body is not valid JSON");
    };
    if let Err(r) = validate(&req) {
        return *r;
    }
    let reply = s.next_reply(&s.config.replies);
    s.sse(index, message_events(index, &req, &reply, s.knobs.fragment_chars), injected)
}

/// The event a fault injects, framed as a Messages SSE event.
fn injected(what: crate::fault::Injection) -> String {
    use crate::fault::Injection;
    match what {
        Injection::Malformed => "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"unterminated\n\n".into(),
        // The API reference: "we may occasionally add new event types, and your code should
        // handle unknown event types gracefully".
        Injection::Unknown => event("fake_unknown_event", json!({"type": "fake_unknown_event", "note": "an event type this API does not define"})),
        Injection::Oversize(bytes) => event("ping", json!({"type": "ping", "x_fake_padding": crate::fault::padding(bytes)})),
    }
}

/// The key, from `x-api-key` (the SDK's `api_key`) or `Authorization: Bearer` (its
/// `auth_token`); `x-api-key` wins when both are sent. Checked against `want` when set.
fn authenticate(headers: &HeaderMap, want: Option<&str>) -> Result<(), Box<Response>> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let x_api_key = header("x-api-key").filter(|k| !k.is_empty());
    let bearer = header("authorization").and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    let (got, what) = match (x_api_key, bearer) {
        (Some(k), _) => (k, "x-api-key"),
        (None, Some(t)) if !t.is_empty() => (t, "bearer token"),
        _ => return Err(Box::new(error(401, "authentication_error", "x-api-key header is required"))),
    };
    if want.is_some_and(|w| w != got) {
        return Err(Box::new(error(401, "authentication_error", &format!("invalid {what}"))));
    }
    Ok(())
}

/// Strict request validation.
fn validate(req: &Value) -> Result<(), Box<Response>> {
    if !req.get("model").is_some_and(Value::is_string) {
        return Err(invalid("model: Field required"));
    }
    if req.get("max_tokens").and_then(Value::as_u64).is_none_or(|n| n < 1) {
        return Err(invalid("max_tokens: Field required (an integer of at least 1)"));
    }
    let Some(messages) = req.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty()) else {
        return Err(invalid("messages: Field required (at least one message)"));
    };
    if let Some(system) = req.get("system")
        && !(system.is_string() || system.is_array())
    {
        return Err(invalid("system: Input should be a valid string or list of text blocks"));
    }
    let mut uses_tools = false;
    let mut open: HashSet<String> = HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if i == 0 && role != "user" {
            return Err(invalid("messages: first message must use the \"user\" role"));
        }
        let blocks: Vec<Value> = match m.get("content") {
            Some(Value::String(t)) => vec![json!({"type": "text", "text": t})],
            Some(Value::Array(b)) if !b.is_empty() => b.clone(),
            _ => {
                return Err(invalid(format!(
                    "messages.{i}.content: Input should be a string or a non-empty list of content blocks"
                )));
            }
        };
        match role {
            "user" => {
                let mut seen_other = false;
                let mut answered = HashSet::new();
                for (j, b) in blocks.iter().enumerate() {
                    if b["type"] == "tool_result" {
                        uses_tools = true;
                        let id = b["tool_use_id"].as_str().unwrap_or("");
                        if seen_other {
                            return Err(invalid(format!(
                                "messages.{i}.content.{j}: tool_result blocks must come first in the user message content"
                            )));
                        }
                        if !open.contains(id) {
                            return Err(invalid(format!(
                                "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                            )));
                        }
                        answered.insert(id.to_string());
                    } else {
                        seen_other = true;
                        check_block(b, i, j)?;
                    }
                }
                if let Some(missing) = open.iter().find(|id| !answered.contains(*id)) {
                    return Err(invalid(format!(
                        "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."
                    )));
                }
                open.clear();
            }
            "assistant" => {
                if let Some(missing) = open.iter().next() {
                    return Err(invalid(format!(
                        "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}."
                    )));
                }
                for (j, b) in blocks.iter().enumerate() {
                    if b["type"] == "tool_use" {
                        uses_tools = true;
                        let ok = b["id"].is_string() && b["name"].is_string() && b["input"].is_object();
                        if !ok {
                            return Err(invalid(format!(
                                "messages.{i}.content.{j}.tool_use: `id`, `name` and an object `input` are required"
                            )));
                        }
                        open.insert(b["id"].as_str().unwrap_or_default().to_string());
                    } else {
                        check_block(b, i, j)?;
                    }
                }
            }
            other => {
                return Err(invalid(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant', got '{other}'"
                )));
            }
        }
    }
    validate_tools(req, uses_tools)?;
    if req.get("stream") != Some(&Value::Bool(true)) {
        return Err(invalid("stream: this fake serves streaming requests only (set stream to true)"));
    }
    Ok(())
}

/// A non-tool content block: text must be non-empty; other known types pass.
fn check_block(b: &Value, i: usize, j: usize) -> Result<(), Box<Response>> {
    match b["type"].as_str() {
        Some("text") => match b["text"].as_str() {
            Some(t) if !t.trim().is_empty() => Ok(()),
            _ => Err(invalid(format!(
                "messages.{i}.content.{j}: text content blocks must contain non-whitespace text"
            ))),
        },
        Some("image" | "document" | "thinking" | "redacted_thinking") => Ok(()),
        other => Err(invalid(format!("messages.{i}.content.{j}.type: unknown content block type {other:?}"))),
    }
}

fn validate_tools(req: &Value, uses_tools: bool) -> Result<(), Box<Response>> {
    let tools = req.get("tools").and_then(Value::as_array);
    if uses_tools && tools.is_none_or(|t| t.is_empty()) {
        return Err(invalid("Requests which include `tool_use` or `tool_result` blocks must define tools."));
    }
    for (i, t) in tools.into_iter().flatten().enumerate() {
        if !t["name"].as_str().is_some_and(|n| !n.is_empty() && n.len() <= 64) {
            return Err(invalid(format!("tools.{i}.name: Field required")));
        }
        if t["input_schema"]["type"] != "object" {
            return Err(invalid(format!("tools.{i}.input_schema: Input schema must have type \"object\"")));
        }
        if t.get("parameters").is_some() || t.get("function").is_some() {
            return Err(invalid(format!(
                "tools.{i}: Extra inputs are not permitted (this is the Messages API: use name, description, input_schema)"
            )));
        }
    }
    if let Some(choice) = req.get("tool_choice") {
        let ok = match choice["type"].as_str() {
            Some("auto" | "any" | "none") => true,
            Some("tool") => choice["name"].is_string(),
            _ => false,
        };
        if !ok {
            return Err(invalid(
                "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'",
            ));
        }
    }
    Ok(())
}

/// The echo reply: the tool results of the last user message, or its text.
fn echo_text(messages: &[Value]) -> String {
    let Some(last) = messages.iter().rev().find(|m| m["role"] == "user") else {
        return "You said: ".into();
    };
    let blocks: Vec<Value> = match &last["content"] {
        Value::String(t) => return format!("You said: {t}"),
        Value::Array(b) => b.clone(),
        _ => Vec::new(),
    };
    let results: Vec<String> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| match &b["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    if !results.is_empty() {
        return format!("Tool said: {}", results.join("; "));
    }
    let text: Vec<&str> = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
    format!("You said: {}", text.join(" "))
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The SSE events of one reply, shaped like the recorded fixtures.
fn message_events(index: usize, req: &Value, reply: &ScriptedReply, fragment_chars: usize) -> Vec<String> {
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    let (text, calls) = match reply {
        ScriptedReply::Text(t) => (Some(t.clone()), Vec::new()),
        ScriptedReply::Echo => (Some(echo_text(&messages)), Vec::new()),
        ScriptedReply::ToolCalls { text, calls } => (text.clone(), calls.clone()),
    };
    let input_tokens = (req["messages"].to_string().len() / 4).max(1);
    let message = json!({"id": format!("msg_fake{index}"), "type": "message", "role": "assistant",
        "model": req["model"], "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": 1, "service_tier": "standard"}});
    let mut events = vec![event("message_start", json!({"type": "message_start", "message": message}))];
    let mut output_tokens = 1;
    let mut block = 0;
    let mut pinged = false;
    let mut ping = |events: &mut Vec<String>| {
        if !std::mem::replace(&mut pinged, true) {
            events.push(event("ping", json!({"type": "ping"})));
        }
    };
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        events.push(event("content_block_start", json!({"type": "content_block_start", "index": block, "content_block": {"type": "text", "text": ""}})));
        ping(&mut events);
        for piece in split_tokens(&text) {
            output_tokens += 1;
            let delta = json!({"type": "content_block_delta", "index": block, "delta": {"type": "text_delta", "text": piece}});
            events.push(event("content_block_delta", delta));
        }
        events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": block})));
        block += 1;
    }
    for (i, call) in calls.iter().enumerate() {
        let start = json!({"type": "content_block_start", "index": block, "content_block": {"type": "tool_use",
            "id": format!("toolu_fake{index}x{i}"), "name": call.name, "input": {}}});
        events.push(event("content_block_start", start));
        ping(&mut events);
        let mut fragments = vec![String::new()];
        fragments.extend(split_fragments(
            &call.arguments.to_string(),
            if fragment_chars == 0 { 3 } else { fragment_chars },
        ));
        for frag in fragments {
            output_tokens += 1;
            let delta = json!({"type": "content_block_delta", "index": block, "delta": {"type": "input_json_delta", "partial_json": frag}});
            events.push(event("content_block_delta", delta));
        }
        events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": block})));
        block += 1;
    }
    let stop_reason = if calls.is_empty() { "end_turn" } else { "tool_use" };
    let delta = json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": output_tokens}});
    events.push(event("message_delta", delta));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    events
}
