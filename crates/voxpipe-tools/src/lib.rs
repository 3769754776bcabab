//! voxpipe's shared tool runtime. A tool declared once in the pipeline file (or registered
//! from code with [`ToolHandler`]) is offered to whichever model runs the call — the Realtime
//! stage or a cascade LLM, each declaring it in its own wire shape, in that provider's module —
//! and executed here: arguments checked against the tool's JSON Schema, a timeout, panics and
//! failures turned into structured error results the model can act on, results capped in size,
//! and repeated identical calls of a non-idempotent tool answered from the first result.
//!
//! ```toml
//! [tools.get_order_status]
//! description = "Look up an order by its number"
//! parameters = { type = "object", properties = { order_id = { type = "string" } }, required = ["order_id"] }
//! handler = { kind = "http", url = "http://127.0.0.1:8793/orders/status" }
//! idempotent = true
//! filler = "One moment while I check."
//!
//! [tools.end_call]
//! description = "End the call after saying goodbye"
//! handler = { kind = "end_call" }
//! ```
//!
//! ```
//! use std::collections::BTreeMap;
//! use voxpipe_core::{ToolCall, ToolRuntime};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config: BTreeMap<String, voxpipe_tools::ToolConfig> = serde_json::from_value(serde_json::json!({
//!     "end_call": { "description": "End the call", "handler": { "kind": "end_call" } }
//! })).unwrap();
//! let tools = voxpipe_tools::Tools::from_config_with_env(&config, |var| std::env::var(var).ok()).unwrap();
//! let call = ToolCall { call_id: "call_1".into(), name: "end_call".into(), arguments: "{}".into() };
//! let result = tools.call(&call).await;
//! assert!(!result.is_error && result.action.is_some());
//! # }
//! ```
//!
//! # Handlers
//! - `http`: the arguments as a JSON body (query for `GET`/`DELETE`), the body as the result;
//!   non-2xx is an error result with the status and a body excerpt. Secret headers come from
//!   environment variables; retries only for `idempotent = true` tools.
//! - `command`: a program run directly (never a shell), arguments as JSON on stdin, stdout as
//!   the result; a non-zero exit is an error result with a stderr excerpt; killed on timeout.
//! - `end_call`, `transfer` (alias `handoff`), `hold` (alias `wait`): built-ins.
//! - [`ToolHandler`]: Rust code, registered with [`Tools::register_with`].
//!
//! # Layout
//! - `config`: the `[tools.NAME]` tables.
//! - `runtime`: [`Tools`], validation, timeouts, the idempotency guard, truncation.
//! - `handler`, `http`, `command`: what runs.
//! - `error`: [`Error`], and the error bodies the model sees.

mod command;
mod config;
mod error;
mod handler;
mod http;
mod runtime;

pub use config::{
    CommandHandlerConfig, HandlerConfig, HoldHandlerConfig, HttpHandlerConfig, HttpMethod, ToolConfig,
    ToolDefaults,
};
pub use error::Error;
pub use handler::{ToolHandler, ToolOutput};
pub use runtime::{DEFAULT_FILLER_AFTER, DEFAULT_MAX_RESULT_BYTES, DEFAULT_TIMEOUT, ToolOptions, Tools};
