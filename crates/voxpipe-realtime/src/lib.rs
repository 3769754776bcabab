//! voxpipe's native speech-to-speech stage: an OpenAI Realtime client over WebSocket.
//!
//! The stage streams the caller's audio as `input_audio_buffer.append` events, turns server
//! events into frames (assistant audio, transcripts, VAD, response boundaries with usage), runs
//! function calls through the call's tool runtime, and handles barge-in: when the server hears
//! the caller while assistant audio is audible, it interrupts the sink and sends
//! `conversation.item.truncate` with the audio the caller actually heard.
//!
//! Both dialects are spoken: GA (default) and the legacy beta (`protocol = "beta"`), so it also
//! talks to Azure OpenAI (`[stages.azure]`: the resource's endpoint and deployment, its
//! `api-key` header or an Entra token) and to independent servers that speak the beta dialect.
//! What such a server ignores of the session is a warning; its VAD timestamps are checked
//! against the audio sent (see `timeline`).
//!
//! ```toml
//! [[stages]]
//! kind = "realtime.openai"
//! model = "gpt-realtime-mini"
//! voice = "marin"
//! instructions = "You are a helpful support agent."
//! [stages.turn_detection]
//! type = "server_vad"
//! silence_duration_ms = 500
//! ```
//!
//! # Layout
//! - [`config`]: the stage's settings, one-to-one with the pipeline file.
//! - [`session`]: `session.update` in GA and beta shapes.
//! - [`events`]: decoded server events.
//! - [`stage`]: the stage itself.
//! - `timeline`: placing the server's VAD timestamps on the input timeline (the stage's clock
//!   decides where the server's counting disagrees).

pub mod config;
pub mod events;
pub mod session;
pub mod stage;
mod timeline;

pub use config::{AudioFormat, AzureAuth, AzureConfig, Protocol, RealtimeConfig, TurnDetection, Voice};
pub use stage::RealtimeStage;

/// Errors of the Realtime stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::InvalidSetting),
    /// The WebSocket could not be opened (network, TLS, DNS).
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// Endpoint (no secrets: the key travels in a header).
        url: String,
        /// Why.
        reason: String,
    },
    /// The server refused the upgrade (bad key, bad model, …).
    #[error("the server refused the connection with HTTP {status}: {body}")]
    Handshake {
        /// HTTP status.
        status: u16,
        /// Body excerpt.
        body: String,
    },
    /// No `session.created` / `session.updated` in time.
    #[error("timed out after {0} ms waiting for {1}")]
    Timeout(u64, &'static str),
    /// The server rejected the session configuration: an `error` not followed by
    /// `session.updated`.
    #[error("the server rejected the session configuration: {}", session_reason(code, message))]
    Session {
        /// Error code (empty when the server gave none).
        code: String,
        /// Message.
        message: String,
    },
    /// The connection closed before the call ended.
    #[error("the server closed the connection {0}")]
    Closed(&'static str),
    /// A WebSocket protocol error.
    #[error("websocket error: {0}")]
    WebSocket(String),
    /// A reply was due and the server sent nothing for this long (ms).
    #[error("the server went silent for {0} ms while a reply was due")]
    Stalled(u64),
    /// The session dropped mid-call and no new one could be opened.
    #[error("the session dropped and {attempts} reconnect attempt(s) failed; the last: {last}")]
    Reconnect {
        /// Attempts made.
        attempts: u32,
        /// Why the last one failed.
        last: String,
    },
    /// Audio could not be resampled.
    #[error(transparent)]
    Resample(#[from] voxpipe_core::audio::ResampleError),
}

impl Error {
    /// Whether another connection attempt may go better: refusals for load or outages (429,
    /// 5xx), network failures, timeouts, drops. Not a refused key or a rejected session.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Handshake { status, .. } => *status == 429 || *status >= 500,
            Error::Connect { .. } | Error::Timeout(..) | Error::Closed(_) | Error::WebSocket(_) => true,
            Error::Stalled(_) => true,
            Error::Config(_) | Error::Session { .. } | Error::Resample(_) | Error::Reconnect { .. } => false,
        }
    }
}

/// `code: message`, or the message alone when the server sent no code.
fn session_reason(code: &str, message: &str) -> String {
    if code.is_empty() { message.to_string() } else { format!("{code}: {message}") }
}
