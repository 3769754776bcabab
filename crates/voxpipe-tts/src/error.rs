//! The crate's error type.

use voxpipe_core::audio::ResampleError;

/// Everything that can go wrong synthesising speech. Messages never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The provider refused the credentials (HTTP 401/403 or a policy-violation close).
    #[error(
        "{provider}: authentication failed ({status}): {body}; check the API key in environment variable `{key_env}`"
    )]
    Unauthorized {
        /// `tts.openai`, `tts.elevenlabs`.
        provider: &'static str,
        /// HTTP status or WebSocket close code.
        status: u16,
        /// Excerpt of the error body or close reason.
        body: String,
        /// The environment variable the key came from.
        key_env: String,
    },
    /// The provider rejected the request itself (bad voice, model, format…): retrying cannot
    /// help; fix the configuration.
    #[error("{provider}: request rejected ({status}): {body}")]
    Rejected {
        /// Provider name.
        provider: &'static str,
        /// HTTP status or WebSocket close code.
        status: u16,
        /// Excerpt of the error body or close reason.
        body: String,
    },
    /// The provider stayed unavailable (429, 5xx, network errors) through every retry.
    #[error("{provider}: unavailable after {attempts} attempt(s): {detail}")]
    Unavailable {
        /// Provider name.
        provider: &'static str,
        /// Attempts made.
        attempts: u32,
        /// Last status and body excerpt, or the network error.
        detail: String,
    },
    /// The audio stream broke after audio had started.
    #[error("{provider}: audio stream cut: {detail}")]
    StreamCut {
        /// Provider name.
        provider: &'static str,
        /// What happened.
        detail: String,
    },
    /// The provider sent something this client cannot read.
    #[error("{provider}: protocol error: {detail}")]
    Protocol {
        /// Provider name.
        provider: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The configuration is invalid.
    #[error("invalid TTS configuration: `{field}`: {detail}")]
    Config {
        /// The config key.
        field: &'static str,
        /// Expected vs got.
        detail: String,
    },
    /// Resampling the provider's audio to the output rate failed.
    #[error(transparent)]
    Resample(#[from] ResampleError),
}

impl Error {
    /// True when the call cannot go on with this stage: authentication, a rejected request,
    /// bad configuration. Other errors are reported as provider errors and the stage goes on
    /// with the next chunk or reply.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Unauthorized { .. } | Error::Rejected { .. } | Error::Config { .. } | Error::Resample(_)
        )
    }

    /// True when the same request may succeed if retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::StreamCut { .. })
    }
}

/// At most this many characters of an error body go into a message.
const BODY_EXCERPT_BYTES: usize = 300;

/// The first [`BODY_EXCERPT_BYTES`] of `body`, on one line.
pub(crate) fn excerpt(body: &str) -> String {
    voxpipe_core::text::excerpt(body, BODY_EXCERPT_BYTES)
}
