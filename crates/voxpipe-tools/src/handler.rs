//! Handlers: what runs for a call. Built-ins (`end_call`, `transfer`, `hold`) live here; the
//! `http` and `command` handlers have their own modules; [`ToolHandler`] is for Rust code.

use crate::Error;
use crate::command::CommandHandler;
use crate::config::HoldHandlerConfig;
use crate::http::HttpHandler;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use voxpipe_core::ToolAction;

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
/// Return `Err(message)` for a failure the model should hear about; panics are caught too and
/// become a `handler_panicked` error result.
///
/// # Cancellation
/// The future is dropped when the tool's timeout passes or the call hangs up.
#[async_trait]
pub trait ToolHandler: Send + Sync + std::fmt::Debug {
    /// Runs the tool with arguments that already match the tool's schema.
    async fn call(&self, arguments: serde_json::Value) -> Result<ToolOutput, String>;
}

/// A handler ready to run.
#[derive(Debug)]
pub(crate) enum Handler {
    Http(HttpHandler),
    Command(CommandHandler),
    EndCall,
    Transfer {
        target: Option<String>,
    },
    Hold(HoldHandlerConfig),
    Code(Arc<dyn ToolHandler>),
    /// Built from a broken configuration; answers every call with this error.
    Unavailable(String),
}

impl Handler {
    /// Whether a repeated identical call could have a second effect worth guarding against
    /// (built-ins are safe to repeat).
    pub(crate) fn has_external_effects(&self) -> bool {
        matches!(self, Handler::Http(_) | Handler::Command(_) | Handler::Code(_))
    }

    pub(crate) async fn run(&self, args: serde_json::Value) -> Result<ToolOutput, Error> {
        match self {
            Handler::Http(h) => h.call(&args).await.map(ToolOutput::from),
            Handler::Command(c) => c.call(&args).await.map(ToolOutput::from),
            Handler::Code(h) => h.call(args).await.map_err(|message| Error::Handler { message }),
            Handler::EndCall => Ok(ToolOutput {
                output: r#"{"ok":true,"note":"say goodbye; the call ends after your reply"}"#.into(),
                action: Some(ToolAction::EndCall),
            }),
            Handler::Transfer { target } => {
                let reason = args
                    .get("reason")
                    .and_then(|r| r.as_str())
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or("transfer requested")
                    .to_string();
                Ok(ToolOutput {
                    output: serde_json::json!({ "ok": true, "transferred_to": target }).to_string(),
                    action: Some(ToolAction::Handoff { reason, target: target.clone() }),
                })
            }
            Handler::Hold(c) => {
                let wanted = args.get("seconds").and_then(|s| s.as_f64()).unwrap_or(c.default_seconds as f64);
                let seconds = wanted.clamp(0.0, c.max_seconds as f64);
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                Ok(serde_json::json!({ "ok": true, "waited_seconds": seconds }).to_string().into())
            }
            Handler::Unavailable(message) => Err(Error::Unavailable { message: message.clone() }),
        }
    }
}
