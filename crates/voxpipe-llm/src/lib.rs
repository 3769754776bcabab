//! Streaming LLM stages for cascade pipelines (ASR → **LLM** → TTS): `llm.openai` for any
//! OpenAI-compatible Chat Completions endpoint, `llm.anthropic` for the Messages API and
//! `llm.gemini` for the Gemini API's `streamGenerateContent`.
//!
//! # Frames
//! - In: a final, non-empty [`Frame::UserTranscript`](voxpipe_core::Frame) starts a model
//!   turn (the transcript itself is forwarded first, so the event log records it). Every
//!   other frame is forwarded unchanged; [`Frame::EndOfStream`](voxpipe_core::Frame) after
//!   the current turn.
//! - Out, per turn: `ResponseStarted`, one `TextDelta` per streamed fragment (item
//!   `reply_<n>`), `ToolCall`/`ToolResult` for each tool call, then a final
//!   `AssistantTranscript` and `ResponseDone` with the summed [`Usage`](voxpipe_core::Usage).
//!
//! # Tools
//! `ctx.tools.specs()` are offered to the model. All calls of one response run concurrently,
//! their results go back in the provider's shape, and the model is asked again, up to
//! `max_tool_rounds` times per turn; then one last request without tools. A result with
//! [`ToolAction::EndCall`](voxpipe_core::ToolAction) sends `Control::EndCall` once the spoken
//! reply has streamed.
//!
//! # Interruption
//! On `Control::Interrupt` the in-flight HTTP stream is dropped at once, queued output is
//! flushed, `ResponseDone` says `cancelled`, and history keeps only the text generated so far
//! ([`History::truncate_last_assistant`] cuts it further to what was heard).
//!
//! # Errors
//! 401/403 (and Gemini's 400 `API_KEY_INVALID`) end the call ([`Error::Auth`] names the key's
//! environment variable). 429, 5xx and
//! transport errors before the body are retried (`[stages.http]`, [`HttpConfig`]; `Retry-After`
//! honoured, up to a minute). A
//! stall or a broken stream is never retried, since its text may already be spoken: it is
//! logged as a `provider_error` event, the response ends `failed`, and the call goes on; so
//! does a refusal ([`Error::Refused`]: Gemini's blocked prompt or a finish reason such as
//! `SAFETY`).
//! With a [`FallbackConfig`] list (`[[stages.fallback]]`) a stage moves to the next provider
//! when its own fails before saying anything, for the rest of the call (event `failover`).
//! [`SpokenFallback`] (`[stages.spoken_fallback]`) can fill both silences: a line said when
//! the provider has not started answering after a budget, and one said when a turn fails.
//!
//! ```no_run
//! use voxpipe_llm::{OpenAiChat, OpenAiChatConfig};
//! use voxpipe_core::Secret;
//!
//! let config: OpenAiChatConfig = serde_json::from_str(r#"{"model": "gpt-4o-mini",
//!     "instructions": "You are a helpful phone agent. Be brief."}"#).unwrap();
//! let key = Secret::from_env("OPENAI_API_KEY", "stages[1].api_key_env").unwrap();
//! let stage = OpenAiChat::new(config, Some(key)).unwrap();
//! // Put `Box::new(stage)` between the ASR and TTS stages of a `voxpipe_core::Pipeline`.
//! # drop(stage);
//! ```
//!
//! # Layout
//! - [`openai`]: `llm.openai` stage, config, wire rendering, [`openai::accumulate`].
//! - [`anthropic`]: `llm.anthropic` stage, config, wire rendering, [`anthropic::accumulate`].
//! - [`gemini`]: `llm.gemini` stage, config, wire rendering, [`gemini::accumulate`].
//! - [`history`]: the provider-neutral conversation.
//! - `driver`: the stage loop every provider shares; `http`: retries and interruption races.
//! - [`sse`]: the incremental, size-capped SSE parser every provider's stream goes through.
//! - [`Error`]: what can go wrong.

pub mod anthropic;
mod driver;
mod error;
mod fallback;
pub mod gemini;
pub use voxpipe_core::history;
mod http;
pub mod openai;
mod spoken;
pub mod sse;

pub use anthropic::{Anthropic, AnthropicConfig};
pub use driver::{RoundOutput, Step};
pub use error::{Error, Refusal};
pub use fallback::{Fallback, FallbackConfig};
pub use gemini::{Gemini, GeminiConfig};
pub use history::{AssistantPart, History, Message};
pub use http::HttpConfig;
pub use openai::{OpenAiChat, OpenAiChatConfig};
pub use spoken::SpokenFallback;
