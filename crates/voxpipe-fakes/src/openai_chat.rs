//! OpenAI Chat Completions fake (`POST /v1/chat/completions`, streaming SSE, PROTOCOLS.md §2).
//!
//! Validates requests like the real service (Bearer auth, `model`, roles, tool-call pairing,
//! tool shapes, `stream`) and answers with OpenAI-shaped error bodies. Replies are scripted and
//! cycle: text (split into token-like pieces), "echo", or tool calls whose arguments arrive in
//! fragments of a few characters, in the chunk shapes of the recorded fixtures. Knobs: time to
//! first token, interval between chunks, and per-request faults ([`Fault`]). Every request is
//! recorded ([`RecordedRequest`]).
//!
//! The scripting, pacing and recording types here are shared with [`crate::anthropic`].

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::fault::Fault;

/// One scripted reply; replies are used in order and cycle.
#[derive(Clone, Debug, PartialEq)]
pub enum ScriptedReply {
    /// Say this text.
    Text(String),
    /// Say "You said: <last user text>", or "Tool said: <results>" after tool results.
    Echo,
    /// Optionally say `text`, then call these tools (in parallel when several).
    ToolCalls {
        /// Text before the calls.
        text: Option<String>,
        /// The calls.
        calls: Vec<ScriptedToolCall>,
    },
}

impl ScriptedReply {
    /// A text reply.
    pub fn text(t: impl Into<String>) -> Self {
        Self::Text(t.into())
    }
    /// One tool call.
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        Self::ToolCalls { text: None, calls: vec![ScriptedToolCall { name: name.into(), arguments }] }
    }
}

/// A scripted tool call.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptedToolCall {
    /// Tool name.
    pub name: String,
    /// Arguments object (sent as a JSON string, in fragments).
    pub arguments: Value,
}

/// A scripted reply as files write it: `text` and/or `tool = { name, arguments }` (the
/// `[[replies]]` of `voxpipe fake llm --replies FILE`, a scenario's `[[fakes.llm]]`).
///
/// ```toml
/// [[replies]]
/// text = "Let me check."
/// tool = { name = "get_order_status", arguments = { order_id = "A12" } }
/// ```
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplySpec {
    /// Text to say (before the tool call, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A tool call to make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolCallSpec>,
}

/// The tool call of a [`ReplySpec`].
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCallSpec {
    /// Tool name.
    pub name: String,
    /// Arguments object. Default: `{}`.
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl From<&ReplySpec> for ScriptedReply {
    fn from(r: &ReplySpec) -> Self {
        match &r.tool {
            Some(t) => Self::ToolCalls {
                text: r.text.clone(),
                calls: vec![ScriptedToolCall { name: t.name.clone(), arguments: t.arguments.clone() }],
            },
            None => Self::Text(r.text.clone().unwrap_or_default()),
        }
    }
}

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// 0 for the first request.
    pub index: usize,
    /// When it arrived, on the tokio clock.
    pub received_at: Instant,
    /// Headers (lower-case names); credential values read `[redacted]`.
    pub headers: Vec<(String, String)>,
    /// The JSON body (a string when it was not JSON).
    pub body: Value,
    /// The status answered.
    pub status: u16,
    /// When the last byte of a complete stream was handed to the connection.
    pub stream_finished_at: Option<Instant>,
}

impl RecordedRequest {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Pacing and faults shared by the LLM fakes.
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    /// Delay before the first SSE event, ms.
    pub time_to_first_token_ms: u64,
    /// Delay between later SSE events, ms (e.g. 50 for 20 tokens/s).
    pub token_interval_ms: u64,
    /// Faults by request index.
    pub faults: BTreeMap<usize, Fault>,
    /// Characters per tool-argument fragment (splits inside keys). 0 means 3.
    pub fragment_chars: usize,
}

/// Configuration of a [`ChatFake`].
#[derive(Clone, Debug)]
pub struct ChatFakeConfig {
    /// The key to require as `Authorization: Bearer <key>`; `None` accepts any Bearer token.
    pub api_key: Option<String>,
    /// Replies, in order, cycling. Empty means [`ScriptedReply::Echo`].
    pub replies: Vec<ScriptedReply>,
    /// Pacing and faults.
    pub knobs: Knobs,
}

impl Default for ChatFakeConfig {
    fn default() -> Self {
        Self { api_key: None, replies: vec![ScriptedReply::Echo], knobs: Knobs::default() }
    }
}

/// State shared by a fake's handlers.
#[derive(Debug)]
pub(crate) struct Shared<C> {
    pub config: C,
    pub knobs: Knobs,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub next_request: AtomicUsize,
    pub next_reply: AtomicUsize,
    pub shutdown: CancellationToken,
}

impl<C> Shared<C> {
    /// Records a request and returns its index.
    pub fn record(&self, headers: &HeaderMap, body: &Bytes) -> usize {
        let index = self.next_request.fetch_add(1, Ordering::SeqCst);
        let headers = headers
            .iter()
            .map(|(n, v)| {
                let secret = matches!(n.as_str(), "authorization" | "x-api-key" | "x-goog-api-key");
                let v = if secret {
                    "[redacted]".to_string()
                } else {
                    v.to_str().unwrap_or("(binary)").to_string()
                };
                (n.as_str().to_string(), v)
            })
            .collect();
        let body = serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()));
        let rec = RecordedRequest {
            index,
            received_at: Instant::now(),
            headers,
            body,
            status: 200,
            stream_finished_at: None,
        };
        self.lock().push(rec);
        index
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the answered status of request `index`.
    pub fn set_status(&self, index: usize, status: u16) {
        if let Some(r) = self.lock().iter_mut().find(|r| r.index == index) {
            r.status = status;
        }
    }

    fn finished(&self, index: usize) {
        if let Some(r) = self.lock().iter_mut().find(|r| r.index == index) {
            r.stream_finished_at = Some(Instant::now());
        }
    }

    /// The next scripted reply (cycling; echo when there are none).
    pub fn next_reply(&self, replies: &[ScriptedReply]) -> ScriptedReply {
        if replies.is_empty() {
            return ScriptedReply::Echo;
        }
        replies[self.next_reply.fetch_add(1, Ordering::SeqCst) % replies.len()].clone()
    }

    /// The status fault of request `index`, if any.
    pub fn status_fault(&self, index: usize) -> Option<(u16, Option<u64>)> {
        match self.knobs.faults.get(&index) {
            Some(Fault::Status { status, retry_after_s }) => Some((*status, *retry_after_s)),
            _ => None,
        }
    }

    /// A streaming SSE response of `events` (each already framed), paced by the knobs, with
    /// request `index`'s fault applied: stall, cut, slow drip, wrong content type, or a chunk
    /// `make` frames for a malformed, unknown or oversize event.
    pub fn sse(
        self: &Arc<Self>,
        index: usize,
        mut events: Vec<String>,
        make: impl FnOnce(crate::fault::Injection) -> String,
    ) -> Response
    where
        C: Send + Sync + 'static,
    {
        let fault = self.knobs.faults.get(&index);
        if fault == Some(&Fault::WrongContentType) {
            return crate::fault::html_response();
        }
        crate::fault::inject(&mut events, fault, make);
        let pace = crate::fault::Pace {
            first: Duration::from_millis(self.knobs.time_to_first_token_ms),
            interval: Duration::from_millis(self.knobs.token_interval_ms),
        };
        let shared = self.clone();
        let chunks = events.into_iter().map(Bytes::from).collect();
        let stream =
            crate::fault::stream(chunks, pace, fault, self.shutdown.clone(), move || shared.finished(index));
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from_stream(stream))
            .expect("static response parts are valid")
    }
}

/// Splits text into token-like pieces: words with their leading space, punctuation apart.
pub fn split_tokens(text: &str) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        let boundary = !cur.is_empty()
            && (c.is_whitespace() && !cur.ends_with(char::is_whitespace)
                || c.is_ascii_punctuation() && c != '\''
                || cur.ends_with(|p: char| p.is_ascii_punctuation() && p != '\'') && !c.is_whitespace());
        if boundary {
            pieces.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    pieces
}

/// Splits `s` into pieces of `n` characters (the last may be shorter).
pub fn split_fragments(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

/// A running chat-completions fake. Stops when dropped.
#[derive(Debug)]
pub struct ChatFake {
    server: crate::server::Running,
    shared: Arc<Shared<ChatFakeConfig>>,
}

impl ChatFake {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start(config: ChatFakeConfig) -> std::io::Result<Self> {
        Self::start_on(crate::server::any_port(), config).await
    }

    /// Starts the fake on `addr`.
    pub async fn start_on(addr: SocketAddr, config: ChatFakeConfig) -> std::io::Result<Self> {
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
        let router = Router::new().route("/v1/chat/completions", post(handle)).with_state(shared.clone());
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
        self.shared.lock().clone()
    }

    /// Stops the server (hanging streams end) and waits for it.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// An OpenAI error response.
fn error(status: u16, kind: &str, message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    crate::server::openai_error(status, message, kind, param, code)
}

fn invalid(message: impl AsRef<str>, param: Option<&str>) -> Response {
    error(400, "invalid_request_error", message.as_ref(), param, None)
}

async fn handle(State(s): State<Arc<Shared<ChatFakeConfig>>>, headers: HeaderMap, body: Bytes) -> Response {
    let index = s.record(&headers, &body);
    let response = answer(&s, index, &headers, &body);
    s.set_status(index, response.status().as_u16());
    response
}

fn answer(s: &Arc<Shared<ChatFakeConfig>>, index: usize, headers: &HeaderMap, body: &Bytes) -> Response {
    if let Err(refused) = crate::server::openai_bearer(headers, s.config.api_key.as_deref()) {
        return refused;
    }
    if let Some((status, retry_after)) = s.status_fault(index) {
        let mut r = match status {
            401 => error(
                401,
                "invalid_request_error",
                "Incorrect API key provided.",
                None,
                Some("invalid_api_key"),
            ),
            429 => error(
                429,
                "requests",
                "Rate limit reached for requests. Please try again later.",
                None,
                Some("rate_limit_exceeded"),
            ),
            s if s >= 500 => error(
                s,
                "server_error",
                "The server had an error while processing your request. Sorry about that!",
                None,
                None,
            ),
            s => error(s, "invalid_request_error", "Injected fault.", None, None),
        };
        if let Some(secs) = retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            None,
        );
    };
    if let Err(r) = validate(&req) {
        return *r;
    }
    let reply = s.next_reply(&s.config.replies);
    s.sse(index, chat_events(index, &req, &reply, s.knobs.fragment_chars), |what| injected(index, &req, what))
}

/// The chunk a fault injects, framed as a chat-completions SSE event.
fn injected(index: usize, req: &Value, what: crate::fault::Injection) -> String {
    use crate::fault::Injection;
    let model = req["model"].as_str().unwrap_or_default();
    let mut chunk = json!({"id": format!("chatcmpl-fake{index}"), "object": "chat.completion.chunk",
        "created": 1_727_346_178, "model": model, "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": null}]});
    match what {
        Injection::Malformed => {
            "data: {\"id\":\"chatcmpl-fake\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"unterminated\n\n".into()
        }
        Injection::Unknown => {
            chunk["x_fake_unknown"] = json!({"note": "a field this API does not define"});
            chunk["choices"][0]["delta"]["x_fake_unknown_delta"] = json!(true);
            format!("data: {chunk}\n\n")
        }
        Injection::Oversize(bytes) => {
            chunk["x_fake_padding"] = json!(crate::fault::padding(bytes));
            format!("data: {chunk}\n\n")
        }
    }
}

/// Strict request validation, in the order the real API reports problems.
fn validate(req: &Value) -> Result<(), Box<Response>> {
    let fail = |m: String, p: &str| Err(Box::new(invalid(m, Some(p))));
    if !req.is_object() {
        return fail("Invalid type for request body: expected an object".into(), "body");
    }
    if !req.get("model").is_some_and(Value::is_string) {
        return Err(Box::new(invalid("you must provide a model parameter", None)));
    }
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return fail("Missing required parameter: 'messages'.".into(), "messages");
    };
    if messages.is_empty() {
        return fail("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.".into(), "messages");
    }
    let mut open_calls: HashSet<String> = HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "tool" && !open_calls.is_empty() {
            let ids: Vec<_> = open_calls.iter().cloned().collect();
            return fail(
                format!(
                    "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                    ids.join(", ")
                ),
                &format!("messages.[{i}].role"),
            );
        }
        match role {
            "system" | "developer" | "user" => {
                if !m.get("content").is_some_and(|c| c.is_string() || c.is_array()) {
                    return fail(
                        format!(
                            "Invalid value for 'content': expected a string, got {}.",
                            m.get("content").unwrap_or(&Value::Null)
                        ),
                        &format!("messages.[{i}].content"),
                    );
                }
            }
            "assistant" => {
                let calls = m.get("tool_calls").and_then(Value::as_array);
                let content = m.get("content").unwrap_or(&Value::Null);
                if content.is_null() && calls.is_none_or(|c| c.is_empty()) {
                    return fail(
                        "Invalid value for 'content': expected a string, got null.".into(),
                        &format!("messages.[{i}].content"),
                    );
                }
                for (j, c) in calls.into_iter().flatten().enumerate() {
                    let ok = c.get("id").is_some_and(Value::is_string)
                        && c.get("type").and_then(Value::as_str) == Some("function")
                        && c.pointer("/function/name").is_some_and(Value::is_string)
                        && c.pointer("/function/arguments").is_some_and(Value::is_string);
                    if !ok {
                        return fail("Missing required parameter: 'id', 'type', 'function.name' or 'function.arguments' (a string).".into(), &format!("messages.[{i}].tool_calls.[{j}]"));
                    }
                    open_calls.insert(c["id"].as_str().unwrap_or_default().to_string());
                }
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                if !open_calls.remove(id) {
                    return fail("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.".into(), &format!("messages.[{i}].role"));
                }
                if !m.get("content").is_some_and(|c| c.is_string() || c.is_array()) {
                    return fail(
                        "Invalid value for 'content': expected a string.".into(),
                        &format!("messages.[{i}].content"),
                    );
                }
            }
            other => {
                return fail(
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'tool', 'function', and 'developer'."
                    ),
                    &format!("messages.[{i}].role"),
                );
            }
        }
    }
    if !open_calls.is_empty() {
        let ids: Vec<_> = open_calls.into_iter().collect();
        return fail(
            format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                ids.join(", ")
            ),
            "messages",
        );
    }
    validate_options(req)
}

/// `tools`, `tool_choice`, `stream` and `stream_options`.
fn validate_options(req: &Value) -> Result<(), Box<Response>> {
    let fail = |m: String, p: &str| Err(Box::new(invalid(m, Some(p))));
    if let Some(tools) = req.get("tools") {
        for (i, t) in tools.as_array().into_iter().flatten().enumerate() {
            let name_ok = t.pointer("/function/name").and_then(Value::as_str).is_some_and(|n| {
                !n.is_empty()
                    && n.len() <= 64
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
            if t.get("type").and_then(Value::as_str) != Some("function") || !name_ok {
                return fail(
                    format!(
                        "Invalid 'tools[{i}]': expected {{\"type\": \"function\", \"function\": {{\"name\": ...}}}} with a name matching ^[a-zA-Z0-9_-]{{1,64}}$."
                    ),
                    &format!("tools[{i}]"),
                );
            }
            if !t.pointer("/function/parameters").is_some_and(Value::is_object) {
                return fail(
                    format!("Invalid 'tools[{i}].function.parameters': expected an object."),
                    &format!("tools[{i}].function.parameters"),
                );
            }
        }
        if !tools.is_array() {
            return fail("Invalid type for 'tools': expected an array.".into(), "tools");
        }
    }
    if let Some(choice) = req.get("tool_choice") {
        let ok = matches!(choice.as_str(), Some("auto" | "none" | "required"))
            || choice.pointer("/function/name").is_some_and(Value::is_string);
        if !ok {
            return fail(format!("Invalid value for 'tool_choice': {choice}."), "tool_choice");
        }
        if req.get("tools").is_none() {
            return fail(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
                    .into(),
                "tool_choice",
            );
        }
    }
    if req.get("stream") != Some(&Value::Bool(true)) {
        return fail("This fake serves streaming requests only: set 'stream' to true.".into(), "stream");
    }
    if let Some(opts) = req.get("stream_options")
        && !opts.is_object()
    {
        return fail("Invalid type for 'stream_options': expected an object.".into(), "stream_options");
    }
    Ok(())
}

/// Text of the echo reply: the last user text, or the tool results that came after it.
fn echo_text(messages: &[Value]) -> String {
    let tail: Vec<&str> = messages
        .iter()
        .rev()
        .take_while(|m| m["role"] == "tool")
        .filter_map(|m| m["content"].as_str())
        .collect();
    if !tail.is_empty() {
        return format!("Tool said: {}", tail.into_iter().rev().collect::<Vec<_>>().join("; "));
    }
    let last =
        messages.iter().rev().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()).unwrap_or("");
    format!("You said: {last}")
}

/// The SSE events of one reply, shaped like the recorded fixtures.
fn chat_events(index: usize, req: &Value, reply: &ScriptedReply, fragment_chars: usize) -> Vec<String> {
    let id = format!("chatcmpl-fake{index}");
    let model = req["model"].as_str().unwrap_or_default().to_string();
    let chunk = |delta: Value, finish: Option<&str>| {
        let c = json!({"id": id, "object": "chat.completion.chunk", "created": 1_727_346_178, "model": model,
            "system_fingerprint": "fp_fake", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    let (text, calls) = match reply {
        ScriptedReply::Text(t) => (Some(t.clone()), Vec::new()),
        ScriptedReply::Echo => (Some(echo_text(&messages)), Vec::new()),
        ScriptedReply::ToolCalls { text, calls } => (text.clone(), calls.clone()),
    };
    let mut events = Vec::new();
    let mut completion_tokens = 0;
    let content = if text.is_some() || calls.is_empty() { json!("") } else { Value::Null };
    events.push(chunk(json!({"role": "assistant", "content": content, "refusal": null}), None));
    for piece in split_tokens(text.as_deref().unwrap_or("")) {
        completion_tokens += 1;
        events.push(chunk(json!({"content": piece}), None));
    }
    for (i, call) in calls.iter().enumerate() {
        let call_id = format!("call_fake{index}x{i}");
        let first = json!({"tool_calls": [{"index": i, "id": call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}]});
        events.push(chunk(first, None));
        for frag in
            split_fragments(&call.arguments.to_string(), if fragment_chars == 0 { 3 } else { fragment_chars })
        {
            completion_tokens += 1;
            events.push(chunk(json!({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}), None));
        }
    }
    let finish = if calls.is_empty() { "stop" } else { "tool_calls" };
    events.push(chunk(json!({}), Some(finish)));
    if req.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)) {
        let prompt_tokens = (req["messages"].to_string().len() / 4).max(1);
        let usage = json!({"id": id, "object": "chat.completion.chunk", "created": 1_727_346_178, "model": model,
            "system_fingerprint": "fp_fake", "choices": [], "usage": {"prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}});
        events.push(format!("data: {usage}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_spaces_and_split_punctuation() {
        assert_eq!(split_tokens("Hello there! It's 5."), ["Hello", " there", "!", " It's", " 5", "."]);
        assert_eq!(split_fragments("{\"city\":1}", 3), ["{\"c", "ity", "\":1", "}"]);
    }
}
