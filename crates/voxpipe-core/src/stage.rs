//! The component traits ([`Source`], [`Stage`], [`Sink`]), the channels between them and the
//! per-call context they all share.

use crate::control::ControlBus;
use crate::event::{EventKind, EventSender};
use crate::frame::Frame;
use crate::playout::PlayoutTracker;
use crate::tool::ToolRuntime;
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Capacity of each data channel between components: 64 frames, 1.28 s of 20 ms audio. The
/// data path waits when it is full (backpressure); it never drops.
pub const DATA_CAPACITY: usize = 64;

/// The call clock: time since the call started, on tokio's clock (so paused-time tests run on
/// a virtual clock).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start_now() -> Self {
        Self { start: tokio::time::Instant::now() }
    }
    /// The instant the call started.
    pub fn start(&self) -> tokio::time::Instant {
        self.start
    }
    /// Time since the call started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
    /// Milliseconds since the call started.
    pub fn now_ms(&self) -> u64 {
        self.elapsed().as_millis() as u64
    }
    /// The instant at `offset` into the call.
    pub fn at(&self, offset: Duration) -> tokio::time::Instant {
        self.start + offset
    }
}

/// Everything a component of one call shares with the others. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The call clock.
    pub clock: Clock,
    /// Cancelled when the call ends (end of input drained, error, Ctrl-C, `end_call`).
    pub cancel: CancellationToken,
    /// Interrupts and other queue-jumping messages.
    pub control: ControlBus,
    /// The sink's playout position.
    pub playout: Arc<PlayoutTracker>,
    /// The event log.
    pub events: EventSender,
    /// Tools offered to the model.
    pub tools: Arc<dyn ToolRuntime>,
}

impl CallContext {
    /// A new call: its clock starts now, nothing is cancelled or playing, and its events go
    /// to the returned receiver (read it, or the event log backs up).
    pub fn new(tools: Arc<dyn ToolRuntime>) -> (Self, mpsc::Receiver<crate::event::Event>) {
        let clock = Clock::start_now();
        let (events, rx) = EventSender::channel(clock);
        let ctx = Self {
            clock,
            cancel: CancellationToken::new(),
            control: ControlBus::new(),
            playout: Arc::new(PlayoutTracker::new()),
            events,
            tools,
        };
        (ctx, rx)
    }

    /// Interrupts assistant output: closes the playout epoch (nothing queued plays after this
    /// returns), tells every component to drop queued output, and logs it. Returns what had been
    /// played of the item that was audible.
    pub async fn interrupt(
        &self,
        reason: crate::control::InterruptReason,
        onset: Option<Duration>,
    ) -> Option<crate::playout::PlayedItem> {
        let played = self.playout.interrupt();
        self.control.send(crate::control::Control::Interrupt {
            reason: reason.clone(),
            onset,
            played: played.clone(),
        });
        self.events
            .emit(EventKind::Interrupt {
                reason,
                item: played.as_ref().map(|p| p.item.to_string()),
                played_ms: played.as_ref().map(|p| p.played_ms),
            })
            .await;
        played
    }
}

/// The receiving end of a data channel.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Frame>,
    held: VecDeque<Frame>,
}

impl Inbox {
    /// Receives the next frame; `None` once the sender is gone and everything was read.
    ///
    /// # Cancellation
    /// Cancel-safe: a frame is never lost when the future is dropped.
    pub async fn recv(&mut self) -> Option<Frame> {
        if let Some(f) = self.held.pop_front() {
            return Some(f);
        }
        self.rx.recv().await
    }

    /// Drops every queued frame that an interruption discards (assistant output), keeping the
    /// rest in order. Returns how many were dropped.
    pub fn flush_interruptible(&mut self) -> usize {
        let mut dropped = 0;
        let mut keep = VecDeque::new();
        for f in self.held.drain(..) {
            if f.is_interruptible() { dropped += 1 } else { keep.push_back(f) }
        }
        while let Ok(f) = self.rx.try_recv() {
            if f.is_interruptible() { dropped += 1 } else { keep.push_back(f) }
        }
        self.held = keep;
        dropped
    }
}

/// The sending end of a data channel.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Frame>,
}

/// The receiver of a data channel went away (its component ended).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("downstream component has stopped")]
pub struct Closed;

impl Outbox {
    /// Sends a frame, waiting while the channel is full.
    pub async fn send(&self, frame: Frame) -> Result<(), Closed> {
        self.tx.send(frame).await.map_err(|_| Closed)
    }

    /// Reserves a slot first: use inside `select!` so a cancelled send loses nothing.
    pub async fn reserve(&self) -> Result<mpsc::Permit<'_, Frame>, Closed> {
        self.tx.reserve().await.map_err(|_| Closed)
    }
}

/// A bounded data channel of [`DATA_CAPACITY`] frames.
pub fn channel() -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(DATA_CAPACITY);
    (Outbox { tx }, Inbox { rx, held: VecDeque::new() })
}

/// A component failed. Names the component; the cause is the component's own error type.
#[derive(Debug, thiserror::Error)]
#[error("{stage}: {source}")]
pub struct StageError {
    /// The failing component (`realtime.openai`, `wav input`, …).
    pub stage: String,
    /// Why.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StageError {
    /// Wraps `source` as a failure of `stage`.
    pub fn new(
        stage: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self { stage: stage.into(), source: source.into() }
    }
}

/// Produces the caller's audio (and possibly control) into the pipeline.
///
/// # Contract
/// Sends [`Frame::InputAudio`] chunks in order, then [`Frame::EndOfStream`] once, then returns.
///
/// # Cancellation
/// Returns promptly (`Ok`) when `ctx.cancel` fires.
#[async_trait]
pub trait Source: Send {
    /// Name used in logs and errors.
    fn name(&self) -> &str;
    /// Runs until end of input or cancellation.
    async fn run(self: Box<Self>, ctx: CallContext, out: Outbox) -> Result<(), StageError>;
}

/// Transforms frames: an ASR, an LLM, a TTS, or a whole speech-to-speech model.
///
/// # Contract
/// Forwards frames it does not consume. On [`Frame::EndOfStream`] it finishes its pending
/// work, forwards the end of stream and returns.
///
/// # Interruption
/// On [`Control::Interrupt`](crate::Control::Interrupt) it stops producing output for the
/// interrupted reply, calls [`Inbox::flush_interruptible`], and tags later audio with the new
/// playout epoch.
///
/// # Cancellation
/// Returns promptly when `ctx.cancel` fires.
#[async_trait]
pub trait Stage: Send {
    /// Name used in logs and errors.
    fn name(&self) -> &str;
    /// Runs until end of stream or cancellation.
    async fn run(self: Box<Self>, ctx: CallContext, input: Inbox, out: Outbox) -> Result<(), StageError>;
}

/// Consumes frames at the end of the pipeline: plays or records assistant audio.
///
/// # Contract
/// Records what it plays in `ctx.playout`. Returns after [`Frame::EndOfStream`] once everything
/// queued has been played, or at cancellation after flushing what it has written.
///
/// # Interruption
/// Drops queued audio at once; audio tagged with a closed epoch is never played.
#[async_trait]
pub trait Sink: Send {
    /// Name used in logs and errors.
    fn name(&self) -> &str;
    /// Runs until end of stream or cancellation.
    async fn run(self: Box<Self>, ctx: CallContext, input: Inbox) -> Result<(), StageError>;
}
