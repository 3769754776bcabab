//! The crate's error type.

use std::time::Duration;

/// Longest body excerpt kept in an error message, in bytes.
const EXCERPT_BYTES: usize = 300;

/// What went wrong talking to an LLM provider.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The provider rejected the credentials (HTTP 401/403, or Gemini's 400 `API_KEY_INVALID`).
    /// Fatal: the call ends.
    #[error("{provider}: authentication failed (HTTP {status}): {body}; check {api_key_env}")]
    Auth {
        /// `openai` or `anthropic`.
        provider: &'static str,
        /// 401 or 403 (400 for Gemini's invalid key).
        status: u16,
        /// The start of the response body.
        body: String,
        /// The environment variable the key came from (or a hint when none is configured).
        api_key_env: String,
    },
    /// The stage configuration cannot work (bad base URL, bad header). Fatal.
    #[error("{provider}: invalid configuration: {message}")]
    Config {
        /// `openai` or `anthropic`.
        provider: &'static str,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Still rate limited (HTTP 429) after every retry.
    #[error("{provider}: rate limited (HTTP 429) after {attempts} attempts: {body}")]
    RateLimited {
        /// `openai` or `anthropic`.
        provider: &'static str,
        /// Requests sent.
        attempts: u32,
        /// The start of the last response body.
        body: String,
    },
    /// The provider answered with an error status (after retries for 5xx).
    #[error("{provider}: HTTP {status} after {attempts} attempts: {body}")]
    Status {
        /// `openai` or `anthropic`.
        provider: &'static str,
        /// The HTTP status.
        status: u16,
        /// Requests sent.
        attempts: u32,
        /// The start of the response body.
        body: String,
    },
    /// No response headers (connection refused, reset, timed out) after every retry.
    #[error("{provider}: request failed after {attempts} attempts: {message}")]
    Connect {
        /// `openai` or `anthropic`.
        provider: &'static str,
        /// Requests sent.
        attempts: u32,
        /// The transport error.
        message: String,
    },
    /// No SSE event arrived for the stall timeout.
    #[error("{provider}: stream stalled: no event for {:?}", .after)]
    Stalled {
        /// `openai` or `anthropic`.
        provider: &'static str,
        /// The stall timeout.
        after: Duration,
    },
    /// The response stream broke or ended before the response was complete.
    #[error("{provider}: stream broken before the response completed: {message}")]
    StreamBroken {
        /// `openai` or `anthropic`.
        provider: &'static str,
        /// What broke.
        message: String,
    },
    /// The stream sent something larger than this client accepts (an SSE line or event over
    /// [`MAX_EVENT_BYTES`](crate::sse::MAX_EVENT_BYTES)); the response fails instead of
    /// buffering without bound.
    #[error("{provider}: {what} larger than the limit of {limit} bytes; the response was dropped")]
    TooLarge {
        /// `openai` or `anthropic`.
        provider: &'static str,
        /// What was too large (`SSE event`).
        what: &'static str,
        /// The limit, bytes.
        limit: usize,
    },
    /// The provider declined to answer, or stopped its answer, for a reason of its own: a
    /// blocked prompt (Gemini `promptFeedback.blockReason`: `SAFETY`, `BLOCKLIST`…) or a
    /// finish reason that is not a normal end (Gemini `finishReason` `SAFETY`, `RECITATION`,
    /// `MALFORMED_FUNCTION_CALL`…). Not retried: the same request would be refused again. The
    /// turn fails (what was said before it stays) and the call goes on.
    #[error("{provider}: {} ({reason}){}", .what.describe(), detail(.message))]
    Refused {
        /// `gemini`.
        provider: &'static str,
        /// The prompt was blocked, or the response stopped.
        what: Refusal,
        /// The provider's reason (`SAFETY`, `RECITATION`…).
        reason: String,
        /// What else it said (`finishMessage`, the safety ratings that tripped); may be empty.
        message: String,
    },
    /// The provider sent an error inside the stream, or an event that does not parse.
    #[error("{provider}: {code}: {message}")]
    Provider {
        /// `openai` or `anthropic`.
        provider: &'static str,
        /// Provider error type or code (`overloaded_error`, `invalid_event`, …).
        code: String,
        /// The provider's message.
        message: String,
    },
}

/// What an [`Error::Refused`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The prompt was blocked: no answer at all.
    PromptBlocked,
    /// The answer stopped for a reason that is not a normal end.
    Stopped,
}

impl Refusal {
    fn describe(self) -> &'static str {
        match self {
            Refusal::PromptBlocked => "the prompt was blocked",
            Refusal::Stopped => "the response was stopped",
        }
    }
}

fn detail(message: &str) -> String {
    if message.is_empty() { String::new() } else { format!(": {message}") }
}

impl Error {
    /// True when the call cannot go on (bad credentials or configuration); other errors fail
    /// one response and the next user turn is tried again.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Auth { .. } | Error::Config { .. })
    }

    /// True when sending the same request again may succeed (rate limits, 5xx, transport).
    /// Errors after the response body started are never retried: that would repeat speech.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::RateLimited { .. } | Error::Connect { .. })
            || matches!(self, Error::Status { status, .. } if *status >= 500)
    }

    /// A short code for the event log.
    pub fn code(&self) -> String {
        match self {
            Error::Auth { .. } => "auth".into(),
            Error::Config { .. } => "config".into(),
            Error::RateLimited { .. } => "rate_limited".into(),
            Error::Status { status, .. } => format!("http_{status}"),
            Error::Connect { .. } => "connect".into(),
            Error::Stalled { .. } => "stalled".into(),
            Error::StreamBroken { .. } => "stream_broken".into(),
            Error::TooLarge { .. } => "too_large".into(),
            Error::Refused { what: Refusal::PromptBlocked, reason, .. } => {
                format!("prompt_blocked_{}", reason.to_ascii_lowercase())
            }
            Error::Refused { what: Refusal::Stopped, reason, .. } => {
                format!("finish_{}", reason.to_ascii_lowercase())
            }
            Error::Provider { code, .. } => code.clone(),
        }
    }
}

/// The first [`EXCERPT_BYTES`] of a response body, on a character boundary, one line.
pub(crate) fn excerpt(body: &str) -> String {
    voxpipe_core::text::excerpt(body, EXCERPT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_error_names_provider_status_and_env_var() {
        let e = Error::Auth {
            provider: "openai",
            status: 401,
            body: excerpt("{\"error\":{\"code\":\"invalid_api_key\"}}"),
            api_key_env: "OPENAI_API_KEY".into(),
        };
        let msg = e.to_string();
        assert!(
            msg.contains("openai") && msg.contains("401") && msg.contains("check OPENAI_API_KEY"),
            "{msg}"
        );
        assert!(e.is_fatal());
        assert!(!e.is_retryable());
    }

    #[test]
    fn refusals_say_what_was_refused_and_why_with_a_code_per_reason() {
        let e = Error::Refused {
            provider: "gemini",
            what: Refusal::PromptBlocked,
            reason: "SAFETY".into(),
            message: "HARM_CATEGORY_HATE_SPEECH: HIGH".into(),
        };
        assert_eq!(e.to_string(), "gemini: the prompt was blocked (SAFETY): HARM_CATEGORY_HATE_SPEECH: HIGH");
        assert_eq!(e.code(), "prompt_blocked_safety");
        assert!(!e.is_fatal() && !e.is_retryable());
        let e = Error::Refused {
            provider: "gemini",
            what: Refusal::Stopped,
            reason: "RECITATION".into(),
            message: String::new(),
        };
        assert_eq!(e.to_string(), "gemini: the response was stopped (RECITATION)");
        assert_eq!(e.code(), "finish_recitation");
    }

    #[test]
    fn excerpt_cuts_long_bodies_on_a_char_boundary() {
        let long = "é".repeat(400);
        let e = excerpt(&long);
        assert!(e.ends_with('…'));
        assert!(e.len() <= EXCERPT_BYTES + '…'.len_utf8());
    }
}
