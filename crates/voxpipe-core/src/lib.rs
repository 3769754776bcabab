//! The core of voxpipe: the types every other crate shares.
//!
//! A call is a [`Pipeline`]: a [`Source`] of caller audio, a chain of [`Stage`]s (one
//! speech-to-speech model, or ASR → LLM → TTS) and [`Sink`]s, joined by bounded channels of
//! [`Frame`]s. What must jump the queue (interruptions, push-to-talk, end of call) travels on
//! the [`ControlBus`]; the sink reports what the caller actually heard through the
//! [`PlayoutTracker`]; every transcript, tool call and metric lands in the event log.
//!
//! # Example
//!
//! A tiny pipeline with no audio: a source that says one thing, a stage that answers it, and a
//! sink that keeps what reached the end. Real stages are built from a pipeline file by
//! `voxpipe-config`; this is the contract they all follow.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use async_trait::async_trait;
//! use voxpipe_core::{CallContext, EndReason, Frame, Inbox, Outbox, Pipeline, RunOptions};
//! use voxpipe_core::{Sink, Source, Stage, StageError, Transcript};
//!
//! struct Caller;
//! #[async_trait]
//! impl Source for Caller {
//!     fn name(&self) -> &str { "caller" }
//!     async fn run(self: Box<Self>, _ctx: CallContext, out: Outbox) -> Result<(), StageError> {
//!         let said = Transcript { item: None, text: "hello".into(), is_final: true };
//!         let _ = out.send(Frame::UserTranscript(said)).await;
//!         let _ = out.send(Frame::EndOfStream).await;
//!         Ok(())
//!     }
//! }
//!
//! /// Answers every final user transcript; forwards everything else, as the contract says.
//! struct Echo;
//! #[async_trait]
//! impl Stage for Echo {
//!     fn name(&self) -> &str { "echo" }
//!     async fn run(self: Box<Self>, _ctx: CallContext, mut input: Inbox, out: Outbox) -> Result<(), StageError> {
//!         while let Some(frame) = input.recv().await {
//!             let reply = match &frame {
//!                 Frame::UserTranscript(t) if t.is_final => Some(Frame::AssistantTranscript(Transcript {
//!                     item: None,
//!                     text: format!("You said: {}", t.text),
//!                     is_final: true,
//!                 })),
//!                 _ => None,
//!             };
//!             let end = matches!(frame, Frame::EndOfStream);
//!             if out.send(frame).await.is_err() { break; }
//!             if let Some(reply) = reply { let _ = out.send(reply).await; }
//!             if end { break; }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! struct Keep(Arc<Mutex<Vec<String>>>);
//! #[async_trait]
//! impl Sink for Keep {
//!     fn name(&self) -> &str { "keep" }
//!     async fn run(self: Box<Self>, _ctx: CallContext, mut input: Inbox) -> Result<(), StageError> {
//!         while let Some(frame) = input.recv().await {
//!             match frame {
//!                 Frame::AssistantTranscript(t) => self.0.lock().unwrap().push(t.text),
//!                 Frame::EndOfStream => break,
//!                 _ => {}
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let heard = Arc::new(Mutex::new(Vec::new()));
//! let pipeline = Pipeline::new("demo", Box::new(Caller), vec![Box::new(Echo)], vec![Box::new(Keep(heard.clone()))]);
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! let end = runtime.block_on(pipeline.run(RunOptions::default())).unwrap();
//! assert_eq!(end, EndReason::EndOfInput);
//! assert_eq!(*heard.lock().unwrap(), ["You said: hello"]);
//! ```
//!
//! # Layout
//! - [`audio`]: sample buffers, PCM16 and G.711 codecs, resampling, chunk sizes.
//! - [`frame`]: the data-path messages.
//! - [`history`]: the provider-neutral conversation of a call.
//! - [`control`]: the control bus.
//! - [`playout`]: played-position tracking and interruption epochs.
//! - [`event`]: the event log.
//! - [`tool`]: the tool-runtime contract.
//! - [`stage`]: the component traits, channels and per-call context.
//! - [`runner`]: wiring and lifecycle of one call.

pub mod audio;
pub mod control;
pub mod event;
pub mod failover;
pub mod frame;
pub mod history;
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
pub use failover::{Chain, DEFAULT_FAILED_TURNS, Failover};
pub use frame::{
    Frame, ItemId, Line, OutputAudio, ResponseDone, ResponseStarted, ResponseStatus, Restore, Speaker,
    TextDelta, Transcript, Usage,
};
pub use playout::{PlayedItem, PlayoutTracker};
pub use runner::{EndReason, Pipeline, RunError, RunOptions};
pub use secret::{MissingSecret, Secret};
pub use stage::{CallContext, Clock, Closed, Inbox, Outbox, Sink, Source, Stage, StageError, channel};
pub use tool::{
    Filler, NoTools, ToolAction, ToolBatch, ToolCall, ToolResult, ToolRuntime, ToolSpec, batch_results,
};
