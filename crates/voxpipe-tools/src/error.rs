//! The crate's error: building the tools from config, and every way one call can fail.
//!
//! Call failures never escape [`Tools::call`](crate::Tools): each becomes an error result whose
//! body ([`Error::to_model_json`]) is structured so the model can act on it, e.g.
//! `{"error":"invalid_arguments","details":["/order_id: 42 is not of type \"string\""]}`.

use voxpipe_core::MissingSecret;

/// Most bytes of a response body or stderr quoted in an error.
pub(crate) const EXCERPT_BYTES: usize = 512;

/// What went wrong building the tools or running one call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A tool's `parameters` is not a valid JSON Schema.
    #[error("{key}: invalid JSON Schema: {message}")]
    InvalidSchema {
        /// Config key, `tools.NAME.parameters`.
        key: String,
        /// What the schema compiler said.
        message: String,
    },
    /// A tool's settings contradict each other or cannot be used.
    #[error("{key}: {message}")]
    InvalidConfig {
        /// Config key, e.g. `tools.book.handler.retries`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A secret header's environment variable is not set.
    #[error(transparent)]
    MissingSecret(#[from] MissingSecret),
    /// The model called a tool that does not exist.
    #[error("unknown tool `{name}`")]
    UnknownTool {
        /// The name it used.
        name: String,
    },
    /// The model's arguments are not JSON.
    #[error("arguments are not valid JSON: {message}")]
    MalformedArguments {
        /// Parser message (line, column).
        message: String,
    },
    /// The model's arguments do not match the tool's schema.
    #[error("arguments do not match the schema: {}", details.join("; "))]
    InvalidArguments {
        /// One line per violation, `pointer: problem`.
        details: Vec<String>,
    },
    /// The handler ran past the tool's timeout and was stopped.
    #[error("tool timed out after {timeout_ms} ms")]
    Timeout {
        /// The timeout.
        timeout_ms: u64,
    },
    /// The handler panicked.
    #[error("tool handler panicked")]
    Panicked,
    /// A Rust handler returned an error.
    #[error("{message}")]
    Handler {
        /// Its message.
        message: String,
    },
    /// An `http` handler's endpoint answered with a non-2xx status.
    #[error("HTTP {status}: {body}")]
    HttpStatus {
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
        /// The endpoint's `Retry-After`, when it gave one (a retry waits that long).
        retry_after: Option<std::time::Duration>,
    },
    /// An `http` handler could not reach its endpoint.
    #[error("request failed: {message}")]
    Http {
        /// What failed (connect, read…), without secrets.
        message: String,
    },
    /// A `command` handler's program could not be started.
    #[error("cannot start {program}: {message}")]
    CommandStart {
        /// The program.
        program: String,
        /// The OS error.
        message: String,
    },
    /// A `command` handler's program exited unsuccessfully.
    #[error("{program} exited with {status}: {stderr}")]
    CommandFailed {
        /// The program.
        program: String,
        /// Exit status as text (`exit status: 3`, `signal: 9`).
        status: String,
        /// The start of its stderr.
        stderr: String,
    },
    /// The tool could not be built from its configuration (see [`Tools::from_config`](crate::Tools::from_config)).
    #[error("tool unavailable: {message}")]
    Unavailable {
        /// The construction error.
        message: String,
    },
}

impl Error {
    /// Short machine-readable code for the model (`invalid_arguments`, `timeout`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidSchema { .. } | Error::InvalidConfig { .. } | Error::MissingSecret(_) => {
                "invalid_config"
            }
            Error::UnknownTool { .. } => "unknown_tool",
            Error::MalformedArguments { .. } => "malformed_arguments",
            Error::InvalidArguments { .. } => "invalid_arguments",
            Error::Timeout { .. } => "timeout",
            Error::Panicked => "handler_panicked",
            Error::Handler { .. } => "handler_failed",
            Error::HttpStatus { .. } => "http_status",
            Error::Http { .. } => "http_unreachable",
            Error::CommandStart { .. } | Error::CommandFailed { .. } => "command_failed",
            Error::Unavailable { .. } => "tool_unavailable",
        }
    }

    /// Whether calling again (after a fix or a pause) may succeed: a transient HTTP failure,
    /// a timeout, or arguments the model can correct.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::HttpStatus { status, .. } => matches!(status, 408 | 429 | 500..=599),
            Error::Http { .. } | Error::Timeout { .. } => true,
            Error::MalformedArguments { .. } | Error::InvalidArguments { .. } => true,
            _ => false,
        }
    }

    /// The error result body the model sees: `{"error": code, "details": [...]}`, plus
    /// `status` for HTTP errors.
    pub fn to_model_json(&self) -> serde_json::Value {
        let details: Vec<String> = match self {
            Error::InvalidArguments { details } => details.clone(),
            Error::MalformedArguments { message } => vec![message.clone()],
            Error::HttpStatus { body, .. } => vec![body.clone()],
            other => vec![other.to_string()],
        };
        let mut body = serde_json::json!({ "error": self.code(), "details": details });
        if let Error::HttpStatus { status, .. } = self {
            body["status"] = (*status).into();
        }
        if let Error::InvalidArguments { .. } | Error::MalformedArguments { .. } = self {
            body["hint"] = "fix the arguments to match the tool's parameters and call it again".into();
        }
        body
    }
}

/// The first [`EXCERPT_BYTES`] of `text`, trimmed, on one line.
pub(crate) fn excerpt(text: &str) -> String {
    voxpipe_core::text::excerpt(text, EXCERPT_BYTES)
}
