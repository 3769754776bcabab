//! The tool-runtime contract: stages that let a model call tools (the Realtime stage, every
//! cascade LLM) hand each call to a [`ToolRuntime`] and feed the [`ToolResult`] back.
//!
//! The shared implementation lives in `voxpipe-tools`; [`NoTools`] is the empty runtime.

use async_trait::async_trait;
use serde::Serialize;
use std::time::Duration;

/// A tool the model may call: name, description and JSON Schema of its arguments (the Chat
/// Completions `function.parameters` shape; each stage converts it to its wire shape).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolSpec {
    /// Function name.
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// One call the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolCall {
    /// Provider call id (`call_…`, `toolu_…`).
    pub call_id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as the raw JSON string the model produced (possibly malformed).
    pub arguments: String,
}

/// Something a tool asks the call to do besides returning a result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ToolAction {
    /// End the call once the assistant's current reply has played.
    EndCall,
    /// Hand the caller over to a human or another pipeline.
    Handoff {
        /// Why, as the model put it.
        reason: String,
        /// Where to, when the tool names a destination.
        target: Option<String>,
    },
}

/// The outcome of a tool call, as returned to the model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolResult {
    /// The call this answers.
    pub call_id: String,
    /// Tool name.
    pub name: String,
    /// The result text given to the model (usually JSON).
    pub output: String,
    /// True when the call failed; `output` then describes the error for the model.
    pub is_error: bool,
    /// How long the handler ran.
    #[serde(rename = "duration_ms", serialize_with = "ser_ms")]
    pub duration: Duration,
    /// A side effect on the call, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<ToolAction>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl ToolResult {
    /// An error result for `call` with a JSON body `{"error": message}` the model can read.
    pub fn error(call: &ToolCall, message: impl Into<String>, duration: Duration) -> Self {
        let body = serde_json::json!({ "error": message.into() });
        Self {
            call_id: call.call_id.clone(),
            name: call.name.clone(),
            output: body.to_string(),
            is_error: true,
            duration,
            action: None,
        }
    }
}

/// Runs tool calls for a stage.
///
/// # Errors
/// A runtime never fails a call outright: handler errors, panics, timeouts and invalid arguments
/// all come back as a [`ToolResult`] with `is_error` set, so the conversation goes on.
///
/// # Cancellation
/// `call` may be dropped when the caller hangs up; the tool's side effect may or may not have
/// happened. A barge-in does not cancel a running call: its result is kept in history.
#[async_trait]
pub trait ToolRuntime: Send + Sync + std::fmt::Debug {
    /// The tools offered to the model.
    fn specs(&self) -> &[ToolSpec];
    /// Runs one call.
    async fn call(&self, call: &ToolCall) -> ToolResult;
    /// Filler speech for tool `name`: what the assistant says if a call of it is still running
    /// after the returned delay ("One moment while I check."), so the caller does not sit in
    /// silence. Default: none.
    fn filler(&self, name: &str) -> Option<(String, Duration)> {
        let _ = name;
        None
    }
}

/// A runtime with no tools; any call is answered with an "unknown tool" error.
#[derive(Debug, Default)]
pub struct NoTools;

#[async_trait]
impl ToolRuntime for NoTools {
    fn specs(&self) -> &[ToolSpec] {
        &[]
    }
    async fn call(&self, call: &ToolCall) -> ToolResult {
        ToolResult::error(call, format!("unknown tool `{}`", call.name), Duration::ZERO)
    }
}
