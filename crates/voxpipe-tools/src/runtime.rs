//! The runtime: a [`ToolRuntime`] over configured and code-registered handlers.

use crate::config::{HandlerConfig, ToolConfig};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use voxpipe_core::{ToolAction, ToolCall, ToolResult, ToolRuntime, ToolSpec};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Results longer than this are cut (models pay per token, and callers wait for them).
const MAX_RESULT_BYTES: usize = 16 * 1024;

/// What a handler returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// The result text for the model (usually JSON).
    pub output: String,
    /// A side effect on the call.
    pub action: Option<ToolAction>,
}

impl From<String> for ToolOutput {
    fn from(output: String) -> Self {
        Self { output, action: None }
    }
}

/// A tool implemented in Rust, for embedders.
///
/// # Errors
/// Return `Err(message)` for a failure the model should hear about; panics are caught too.
#[async_trait]
pub trait ToolHandler: Send + Sync + std::fmt::Debug {
    /// Runs the tool with parsed arguments.
    async fn call(&self, arguments: serde_json::Value) -> Result<ToolOutput, String>;
}

#[derive(Debug, Clone)]
enum Handler {
    Config(HandlerConfig),
    Code(Arc<dyn ToolHandler>),
}

#[derive(Debug, Clone)]
struct Entry {
    handler: Handler,
    timeout: Duration,
}

/// The tools of one pipeline.
#[derive(Debug, Default, Clone)]
pub struct Tools {
    specs: Vec<ToolSpec>,
    entries: BTreeMap<String, Entry>,
}

impl Tools {
    /// Tools from the pipeline file's `[tools]` table.
    pub fn from_config(tools: &BTreeMap<String, ToolConfig>) -> Self {
        let mut t = Self::default();
        for (name, c) in tools {
            t.insert(
                ToolSpec {
                    name: name.clone(),
                    description: c.description.clone(),
                    parameters: c.parameters.clone(),
                },
                Handler::Config(c.handler.clone()),
                c.timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT),
            );
        }
        t
    }

    /// Registers a Rust handler (replacing a tool of the same name).
    pub fn register(&mut self, spec: ToolSpec, handler: Arc<dyn ToolHandler>, timeout: Duration) {
        self.insert(spec, Handler::Code(handler), timeout);
    }

    fn insert(&mut self, spec: ToolSpec, handler: Handler, timeout: Duration) {
        self.specs.retain(|s| s.name != spec.name);
        self.entries.insert(spec.name.clone(), Entry { handler, timeout });
        self.specs.push(spec);
    }

    async fn run(entry: Entry, args: serde_json::Value) -> Result<ToolOutput, String> {
        match entry.handler {
            Handler::Code(h) => h.call(args).await,
            Handler::Config(HandlerConfig::EndCall {}) => Ok(ToolOutput {
                output: r#"{"ok":true,"note":"say goodbye; the call ends after your reply"}"#.into(),
                action: Some(ToolAction::EndCall),
            }),
            Handler::Config(HandlerConfig::Transfer { target }) => {
                let reason =
                    args.get("reason").and_then(|r| r.as_str()).unwrap_or("transfer requested").to_string();
                Ok(ToolOutput {
                    output: serde_json::json!({ "ok": true, "transferred_to": target }).to_string(),
                    action: Some(ToolAction::Handoff { reason, target }),
                })
            }
            Handler::Config(HandlerConfig::Command(c)) => {
                let mut child = tokio::process::Command::new(&c.program)
                    .args(&c.args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", c.program.display()))?;
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(args.to_string().as_bytes()).await;
                }
                let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
                if !out.status.success() {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    return Err(format!(
                        "{} exited with {}: {}",
                        c.program.display(),
                        out.status,
                        stderr.trim()
                    ));
                }
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_string().into())
            }
        }
    }
}

#[async_trait]
impl ToolRuntime for Tools {
    fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    async fn call(&self, call: &ToolCall) -> ToolResult {
        let start = Instant::now();
        let Some(entry) = self.entries.get(&call.name).cloned() else {
            return ToolResult::error(call, format!("unknown tool `{}`", call.name), start.elapsed());
        };
        let args_text = if call.arguments.trim().is_empty() { "{}" } else { call.arguments.as_str() };
        let args: serde_json::Value = match serde_json::from_str(args_text) {
            Ok(v) => v,
            Err(e) => {
                return ToolResult::error(
                    call,
                    format!("arguments are not valid JSON: {e}"),
                    start.elapsed(),
                );
            }
        };
        let timeout = entry.timeout;
        // A separate task, so a panicking handler becomes an error result, not a dead call.
        let task = tokio::spawn(Self::run(entry, args));
        let abort = task.abort_handle();
        let outcome = tokio::time::timeout(timeout, task).await;
        let elapsed = start.elapsed();
        match outcome {
            Err(_) => {
                abort.abort();
                ToolResult::error(call, format!("tool timed out after {} ms", timeout.as_millis()), elapsed)
            }
            Ok(Err(join)) if join.is_panic() => ToolResult::error(call, "tool handler panicked", elapsed),
            Ok(Err(join)) => ToolResult::error(call, format!("tool handler failed: {join}"), elapsed),
            Ok(Ok(Err(message))) => ToolResult::error(call, message, elapsed),
            Ok(Ok(Ok(mut out))) => {
                if out.output.len() > MAX_RESULT_BYTES {
                    let mut cut = MAX_RESULT_BYTES;
                    while !out.output.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    out.output.truncate(cut);
                }
                ToolResult {
                    call_id: call.call_id.clone(),
                    name: call.name.clone(),
                    output: out.output,
                    is_error: false,
                    duration: elapsed,
                    action: out.action,
                }
            }
        }
    }
}
