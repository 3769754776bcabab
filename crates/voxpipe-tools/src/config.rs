//! `[tools.NAME]` tables of the pipeline file.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

fn empty_object() -> serde_json::Value {
    serde_json::json!({ "type": "object", "properties": {} })
}

/// One tool: what the model sees and what runs when it is called.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object (Chat Completions `parameters` shape). Default: an
    /// object with no properties.
    #[serde(default = "empty_object")]
    pub parameters: serde_json::Value,
    /// What runs.
    pub handler: HandlerConfig,
    /// Handler timeout (ms). Default 10000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// What runs when the tool is called.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HandlerConfig {
    /// Run a program: arguments as JSON on stdin, result from stdout.
    Command(CommandHandlerConfig),
    /// Built-in: end the call once the assistant's goodbye has played.
    EndCall {},
    /// Built-in: hand the caller off (to a human or another pipeline), with the transcript.
    Transfer {
        /// Where to, e.g. a queue name or phone number.
        #[serde(default)]
        target: Option<String>,
    },
}

/// `handler = { kind = "command", … }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandHandlerConfig {
    /// The program (run directly, never through a shell).
    pub program: PathBuf,
    /// Fixed arguments.
    #[serde(default)]
    pub args: Vec<String>,
}
