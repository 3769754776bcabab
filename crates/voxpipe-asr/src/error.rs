//! The crate's error type.

/// Why transcription failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model could not be found, fetched or loaded.
    #[error("whisper model: {0}")]
    Model(#[from] voxpipe_models::Error),
    /// whisper.cpp refused to load the model file.
    #[error("whisper could not load `{path}`: {reason}")]
    Load {
        /// The model file.
        path: String,
        /// whisper-rs's message.
        reason: String,
    },
    /// whisper.cpp failed while decoding.
    #[error("whisper decode failed: {0}")]
    Decode(String),
    /// The configuration is invalid for this build or this model.
    #[error("invalid ASR config: {0}")]
    Config(String),
    /// The API key's environment variable is not set.
    #[error(transparent)]
    MissingKey(#[from] voxpipe_core::MissingSecret),
    /// The transcription API could not be reached.
    #[error("{provider}: request failed: {reason} ({url})")]
    Http {
        /// Provider name.
        provider: &'static str,
        /// Transport error.
        reason: String,
        /// The URL.
        url: String,
    },
    /// The transcription API answered with an error status.
    #[error("{provider}: HTTP {status}: {body}")]
    Status {
        /// Provider name.
        provider: &'static str,
        /// HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The transcription API answered with a body that is not the documented shape.
    #[error("{provider}: unexpected response: {reason}: {body}")]
    BadResponse {
        /// Provider name.
        provider: &'static str,
        /// What was wrong.
        reason: String,
        /// The start of the response body.
        body: String,
    },
    /// The transcription API answered with a body larger than this client reads
    /// ([`MAX_BODY_BYTES`](crate::openai::MAX_BODY_BYTES)).
    #[error("{provider}: response body larger than the limit of {limit} bytes")]
    TooLarge {
        /// Provider name.
        provider: &'static str,
        /// The limit, bytes.
        limit: usize,
    },
    /// Resampling the input failed.
    #[error(transparent)]
    Resample(#[from] voxpipe_core::audio::ResampleError),
}

impl Error {
    /// True when the failure is the provider's answer to one utterance (retryable, or a body
    /// that is malformed, oversize or not JSON at all): it costs that turn, not the call.
    /// Credentials, configuration and local decoding errors are not.
    pub fn costs_only_the_turn(&self) -> bool {
        self.is_retryable() || matches!(self, Error::BadResponse { .. } | Error::TooLarge { .. })
    }

    /// True when retrying later may succeed (network failures, 429 and 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Http { .. } => true,
            Error::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// The first 300 bytes of a body, on one line, for error messages.
pub(crate) fn excerpt(body: &str) -> String {
    voxpipe_core::text::excerpt(body, 300)
}
