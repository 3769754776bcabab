//! `[tools.NAME]` tables of the pipeline file.
//!
//! ```toml
//! [tools.get_order_status]
//! description = "Look up an order by its number"
//! parameters = { type = "object", properties = { order_id = { type = "string" } }, required = ["order_id"] }
//! handler = { kind = "http", url = "http://127.0.0.1:8793/orders/status", secret_headers = { Authorization = "ORDERS_API_TOKEN" }, retries = 2 }
//! idempotent = true
//! filler = "One moment while I check."
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn empty_object() -> serde_json::Value {
    serde_json::json!({ "type": "object", "properties": {} })
}
fn default_max_result_bytes() -> usize {
    16 * 1024
}
fn default_filler_after_ms() -> u64 {
    1500
}
fn default_method() -> HttpMethod {
    HttpMethod::Post
}
fn default_hold_max_seconds() -> u64 {
    30
}
fn default_hold_seconds() -> u64 {
    5
}

/// `[tool_defaults]`: settings for every tool of the pipeline that does not set its own.
///
/// ```toml
/// [tool_defaults]
/// filler = "One moment please."   # spoken when any tool is still running after...
/// filler_after_ms = 1500          # ...this long; a tool's own `filler` wins, `filler = ""` opts out
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolDefaults {
    /// Filler speech for tools without their own. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filler: Option<String>,
    /// Delay before that filler, ms. Default 1500.
    #[serde(default = "default_filler_after_ms")]
    pub filler_after_ms: u64,
}

impl Default for ToolDefaults {
    fn default() -> Self {
        Self { filler: None, filler_after_ms: default_filler_after_ms() }
    }
}

/// One tool: what the model sees, what runs when it is called, and how the call behaves.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object (Chat Completions `parameters` shape). Arguments are
    /// validated against it before the handler runs. Default: an object with no properties.
    #[serde(default = "empty_object")]
    pub parameters: serde_json::Value,
    /// What runs.
    pub handler: HandlerConfig,
    /// Handler timeout (ms), retries included. Default: 10000; for `hold`, `max_seconds` + 1 s.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Results longer than this (bytes) are cut at a character boundary and marked. Default:
    /// 16384.
    #[serde(default = "default_max_result_bytes")]
    pub max_result_bytes: usize,
    /// True when calling the tool twice with the same arguments is harmless (a lookup). Only
    /// idempotent tools may retry; non-idempotent ones (a booking) answer a repeated identical
    /// call within one call from the first result instead of running again. Default: false.
    #[serde(default)]
    pub idempotent: bool,
    /// What the assistant says while the tool is still running after `filler_after_ms`, e.g.
    /// "One moment while I check." Default: none.
    #[serde(default)]
    pub filler: Option<String>,
    /// How long (ms) the tool may run before the filler is spoken. Default: 1500.
    #[serde(default = "default_filler_after_ms")]
    pub filler_after_ms: u64,
}

/// What runs when the tool is called (`handler = { kind = "…", … }`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HandlerConfig {
    /// POST the arguments as JSON to a URL; the response body is the result.
    Http(HttpHandlerConfig),
    /// Run a program: arguments as JSON on stdin, result from stdout.
    Command(CommandHandlerConfig),
    /// Built-in: end the call once the assistant's goodbye has played.
    EndCall {},
    /// Built-in (`transfer` or `handoff`): hand the caller off, to a human or another
    /// pipeline, with the transcript so far. The model's `reason` argument is passed on.
    #[serde(alias = "handoff")]
    Transfer {
        /// Where to, e.g. a queue name or phone number. Default: none.
        #[serde(default)]
        target: Option<String>,
    },
    /// Built-in (`hold` or `wait`): return after the model's `seconds` argument (capped by
    /// `max_seconds`), for "please hold" moments.
    #[serde(alias = "wait")]
    Hold(HoldHandlerConfig),
}

/// HTTP method of an `http` handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// Arguments as the JSON body.
    Post,
    /// Arguments as the JSON body.
    Put,
    /// Arguments as the JSON body.
    Patch,
    /// Arguments as query parameters (top-level fields; nested values as JSON text).
    Get,
    /// Arguments as query parameters, like `GET`.
    Delete,
}

/// `handler = { kind = "http", … }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHandlerConfig {
    /// The endpoint (`http` or `https`).
    pub url: String,
    /// `POST`, `PUT`, `PATCH` (arguments as JSON body), `GET` or `DELETE` (arguments as query).
    /// Default: `POST`.
    #[serde(default = "default_method")]
    pub method: HttpMethod,
    /// Fixed request headers. Default: none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose value is read from an environment variable when the tools are built:
    /// header name → variable name, e.g. `{ Authorization = "ORDERS_API_TOKEN" }`. The value is
    /// sent as is (include `Bearer ` in the variable when the API wants it) and never logged.
    #[serde(default)]
    pub secret_headers: BTreeMap<String, String>,
    /// Extra attempts after a connection error, 408, 429 or 5xx. Only allowed on tools with
    /// `idempotent = true`. Default: 0.
    #[serde(default)]
    pub retries: u32,
}

/// `handler = { kind = "command", … }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandHandlerConfig {
    /// The program (run directly, never through a shell).
    pub program: PathBuf,
    /// Fixed arguments (the model's arguments never become command-line arguments).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables set for the program. It does not inherit voxpipe's environment
    /// (where the API keys are): it sees only `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`,
    /// `TMPDIR`, these, and `secret_env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Variables whose values are secrets, by the name of the voxpipe environment variable
    /// that holds each: `secret_env = { ORDERS_TOKEN = "ORDERS_API_TOKEN" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
}

/// `handler = { kind = "hold", … }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HoldHandlerConfig {
    /// Longest wait (s) the model may ask for. Default: 30.
    #[serde(default = "default_hold_max_seconds")]
    pub max_seconds: u64,
    /// Wait (s) when the model gives no `seconds`. Default: 5.
    #[serde(default = "default_hold_seconds")]
    pub default_seconds: u64,
}

impl Default for HoldHandlerConfig {
    fn default() -> Self {
        Self { max_seconds: default_hold_max_seconds(), default_seconds: default_hold_seconds() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_aliases_parse() {
        let t: ToolConfig = serde_json::from_value(serde_json::json!({
            "description": "d",
            "handler": { "kind": "http", "url": "http://x/y" }
        }))
        .unwrap();
        assert_eq!(t.max_result_bytes, 16384);
        assert_eq!(t.filler_after_ms, 1500);
        assert!(!t.idempotent);
        let HandlerConfig::Http(h) = &t.handler else { panic!("{t:?}") };
        assert_eq!(h.method, HttpMethod::Post);
        assert_eq!(h.retries, 0);
        let h: HandlerConfig =
            serde_json::from_value(serde_json::json!({ "kind": "handoff", "target": "sales" })).unwrap();
        assert_eq!(h, HandlerConfig::Transfer { target: Some("sales".into()) });
        let h: HandlerConfig = serde_json::from_value(serde_json::json!({ "kind": "wait" })).unwrap();
        assert_eq!(h, HandlerConfig::Hold(HoldHandlerConfig::default()));
    }

    #[test]
    fn unknown_handler_keys_are_rejected() {
        let err = serde_json::from_value::<HandlerConfig>(
            serde_json::json!({ "kind": "http", "url": "http://x", "retry": 2 }),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `retry`"), "{err}");
    }
}
