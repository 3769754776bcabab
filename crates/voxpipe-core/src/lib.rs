//! The core of voxpipe: the types every other crate shares.
//!
//! A call is a [`Pipeline`]: a [`Source`] of caller audio, a chain of [`Stage`]s (one
//! speech-to-speech model, or ASR → LLM → TTS) and [`Sink`]s, joined by bounded channels of
//! [`Frame`]s. What must jump the queue (interruptions, push-to-talk, end of call) travels on
//! the [`ControlBus`]; the sink reports what the caller actually heard through the
//! [`PlayoutTracker`]; every transcript, tool call and metric lands in the event log.
//!
//! # Layout
//! - [`audio`]: sample buffers, PCM16 and G.711 codecs, resampling, chunk sizes.
//! - [`frame`]: the data-path messages.
//! - [`control`]: the control bus.
//! - [`playout`]: played-position tracking and interruption epochs.
//! - [`event`]: the event log.
//! - [`tool`]: the tool-runtime contract.
//! - [`stage`]: the component traits, channels and per-call context.
//! - [`runner`]: wiring and lifecycle of one call.

pub mod audio;
pub mod control;
pub mod event;
pub mod frame;
pub mod playout;
pub mod runner;
pub mod secret;
pub mod stage;
pub mod text;
pub mod time;
pub mod tool;

pub use audio::{AudioChunk, SampleRate, Samples};
pub use control::{Control, ControlBus, InterruptReason};
pub use event::{Event, EventKind, EventSender, EventWriter, Observed};
pub use frame::{
    Frame, ItemId, OutputAudio, ResponseDone, ResponseStarted, ResponseStatus, TextDelta, Transcript, Usage,
};
pub use playout::{PlayedItem, PlayoutTracker};
pub use runner::{EndReason, Pipeline, RunError, RunOptions};
pub use secret::{MissingSecret, Secret};
pub use stage::{CallContext, Clock, Closed, Inbox, Outbox, Sink, Source, Stage, StageError, channel};
pub use tool::{NoTools, ToolAction, ToolCall, ToolResult, ToolRuntime, ToolSpec};
