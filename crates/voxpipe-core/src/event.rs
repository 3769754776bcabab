//! The call's event log: every transcript, tool call, response boundary, interruption and
//! metric, timestamped on the call clock. The runner writes them through an [`EventWriter`]
//! (JSONL in `voxpipe-transport`) as they happen.

use crate::control::InterruptReason;
use crate::frame::{Frame, ResponseDone, ResponseStarted, Transcript};
use crate::tool::{ToolCall, ToolResult};
use serde::Serialize;
use tokio::sync::mpsc;

/// Capacity of the event channel: events are a few per turn; the data path never waits on it
/// unless the writer is stuck for 1024 events.
pub const EVENT_CAPACITY: usize = 1024;

/// One line of the event log.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Milliseconds since the call started, on the call clock.
    pub t_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The call started.
    CallStarted {
        /// Pipeline name.
        pipeline: String,
    },
    /// The caller said something (final transcript, or a partial one when `is_final` is false).
    UserTranscript(Transcript),
    /// The assistant said something.
    AssistantTranscript(Transcript),
    /// A model response began.
    ResponseStarted(ResponseStarted),
    /// A model response ended.
    ResponseDone(ResponseDone),
    /// The caller started speaking (input timeline).
    SpeechStarted {
        /// Input-timeline ms of the onset.
        at_ms: u64,
    },
    /// The caller stopped speaking (input timeline).
    SpeechStopped {
        /// Input-timeline ms of the end of speech.
        at_ms: u64,
    },
    /// The model called a tool.
    ToolCall(ToolCall),
    /// A tool call finished.
    ToolResult(ToolResult),
    /// Assistant output was interrupted.
    Interrupt {
        /// Why.
        reason: InterruptReason,
        /// The item that was playing.
        item: Option<String>,
        /// How much of it had been played.
        played_ms: Option<u64>,
    },
    /// The assistant's history was cut to what the caller heard.
    Truncate {
        /// The item cut.
        item: String,
        /// Audio kept, in ms from the start of the item.
        audio_end_ms: u64,
    },
    /// The sink started playing an assistant item.
    PlayoutStarted {
        /// The item.
        item: String,
    },
    /// The sink finished (or stopped) playing an assistant item.
    PlayoutFinished {
        /// The item.
        item: String,
        /// Audio played, ms.
        played_ms: u64,
        /// True when cut short by an interruption.
        interrupted: bool,
    },
    /// Playout was held while the turn controller decides whether caller speech over the
    /// assistant is a real interruption.
    PlayoutPaused {
        /// Input-timeline ms of the speech onset that caused it.
        onset_ms: u64,
    },
    /// Held playout continued where it stopped: the speech was not an interruption.
    PlayoutResumed {
        /// How long playout was held, ms.
        held_ms: u64,
    },
    /// Caller sound over the assistant that the turn controller did not count as an
    /// interruption (a false interruption avoided).
    FalseInterruption {
        /// `too_short`, `echo_warmup`, `backchannel`, `too_few_words` or `no_words`.
        reason: String,
        /// What the caller said, when transcribed.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// Input-timeline ms of the onset.
        onset_ms: u64,
    },
    /// The turn controller decided the caller's turn is over.
    TurnEnded {
        /// Turn number, from 1.
        turn: u32,
        /// Input-timeline ms of the end of the caller's speech; the event's `t_ms` is the
        /// decision, so `t_ms - speech_end_ms` is the end-of-turn wait.
        speech_end_ms: u64,
        /// How the end-of-turn policy read the transcript (`complete`, `unsure`,
        /// `incomplete`), when a transcript policy decided.
        #[serde(skip_serializing_if = "Option::is_none")]
        completeness: Option<String>,
    },
    /// A per-turn measurement.
    Metric {
        /// Metric name (`voice_to_voice_ms`, `first_audio_ms`, …).
        name: String,
        /// Turn number, from 1.
        turn: u32,
        /// Value in milliseconds.
        value_ms: u64,
    },
    /// Rate limits reported by a provider.
    RateLimits {
        /// Provider payload as sent.
        limits: serde_json::Value,
    },
    /// A provider reported an error; the call may continue.
    ProviderError {
        /// Stage name.
        stage: String,
        /// Provider error code, when given.
        code: Option<String>,
        /// Provider message.
        message: String,
    },
    /// A provider's session dropped mid-call and the stage opened a new one, restoring the
    /// conversation so far; the call went on.
    Reconnected {
        /// Stage name.
        stage: String,
        /// How the old session ended.
        reason: String,
        /// Connection attempts it took (1 = the first retry worked).
        attempts: u32,
        /// From noticing the drop to the restored session, ms.
        took_ms: u64,
        /// Conversation items sent again to the new session.
        replayed_items: usize,
    },
    /// A provider failed and the stage moved to its next fallback for the rest of the call.
    Failover {
        /// Stage name.
        stage: String,
        /// The provider that failed (`llm.openai gpt-4o-mini`).
        from: String,
        /// The one taking over.
        to: String,
        /// Why.
        reason: String,
        /// Time the turn had gone without an answer when it switched, ms.
        after_ms: u64,
    },
    /// The call was handed off.
    Handoff {
        /// Why.
        reason: String,
        /// Destination, if named.
        target: Option<String>,
        /// The conversation so far, one line per turn.
        transcript: Vec<String>,
    },
    /// The caller typed on the phone's keypad; the entry went to the model as these words.
    Dtmf {
        /// What the model was given.
        digits: String,
    },
    /// A component failed; the call ends.
    Error {
        /// The component.
        stage: String,
        /// What went wrong.
        message: String,
    },
    /// The call ended.
    CallEnded {
        /// `end_of_input`, `end_call`, `cancelled` or `error`.
        reason: String,
    },
}

impl EventKind {
    /// The event a frame leaves in the log, if any (audio and deltas leave none).
    pub fn from_frame(frame: &Frame) -> Option<Self> {
        Some(match frame {
            Frame::UserTranscript(t) if t.is_final && !t.text.is_empty() => {
                EventKind::UserTranscript(t.clone())
            }
            Frame::AssistantTranscript(t) if t.is_final => EventKind::AssistantTranscript(t.clone()),
            Frame::ResponseStarted(r) => EventKind::ResponseStarted(r.clone()),
            Frame::ResponseDone(r) => EventKind::ResponseDone(r.clone()),
            Frame::SpeechStarted { at } => EventKind::SpeechStarted { at_ms: at.as_millis() as u64 },
            Frame::SpeechStopped { at } => EventKind::SpeechStopped { at_ms: at.as_millis() as u64 },
            Frame::ToolCall(c) => EventKind::ToolCall(c.clone()),
            Frame::ToolResult(r) => EventKind::ToolResult(r.clone()),
            _ => return None,
        })
    }
}

/// Sends events to the call's log. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventSender {
    tx: mpsc::Sender<Event>,
    clock: crate::Clock,
}

impl EventSender {
    /// A sender and the receiving end the runner drains.
    pub fn channel(clock: crate::Clock) -> (Self, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
        (Self { tx, clock }, rx)
    }

    /// Records `kind` at the current call time. Waits if the writer is behind; never drops.
    pub async fn emit(&self, kind: EventKind) {
        let ev = Event { t_ms: self.clock.now_ms(), kind };
        // The writer only goes away at the very end of the call; an event then has no reader.
        let _ = self.tx.send(ev).await;
    }
}

/// Where the event log goes. Writers are plain blocking code: the runner calls them on the
/// process's event-log thread, never on the call's async workers, so a slow disk delays the
/// log and not the call.
///
/// # Errors
/// A write error ends the writer; the runner reports it and the call goes on without a log.
pub trait EventWriter: Send {
    /// Writes one event (and flushes it: a crash must not lose what was written).
    fn write(&mut self, event: &Event) -> std::io::Result<()>;
    /// Flushes and closes.
    fn finish(&mut self) -> std::io::Result<()>;
}

/// An [`EventWriter`] that shows every event to `observe` before passing it on to `inner`, the
/// configured log (if any): how a caller collects a summary of the call without a second log.
pub struct Observed<F> {
    inner: Option<Box<dyn EventWriter>>,
    observe: F,
}

impl<F> std::fmt::Debug for Observed<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed").field("inner", &self.inner.is_some()).finish_non_exhaustive()
    }
}

impl<F> Observed<F>
where
    F: FnMut(&Event) -> std::io::Result<()> + Send,
{
    /// Wraps `inner`; `observe` runs first, and its error ends the writer like a write error.
    pub fn new(inner: Option<Box<dyn EventWriter>>, observe: F) -> Self {
        Self { inner, observe }
    }
}

impl<F> EventWriter for Observed<F>
where
    F: FnMut(&Event) -> std::io::Result<()> + Send,
{
    fn write(&mut self, event: &Event) -> std::io::Result<()> {
        (self.observe)(event)?;
        match &mut self.inner {
            Some(w) => w.write(event),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            Some(w) => w.finish(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Keeps the types of the events written, and whether it was finished.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<(Vec<&'static str>, bool)>>);

    impl EventWriter for Log {
        fn write(&mut self, event: &Event) -> std::io::Result<()> {
            let name = match event.kind {
                EventKind::CallStarted { .. } => "call_started",
                EventKind::CallEnded { .. } => "call_ended",
                _ => "other",
            };
            self.0.lock().unwrap().0.push(name);
            Ok(())
        }
        fn finish(&mut self) -> std::io::Result<()> {
            self.0.lock().unwrap().1 = true;
            Ok(())
        }
    }

    fn event(kind: EventKind) -> Event {
        Event { t_ms: 0, kind }
    }

    #[tokio::test]
    async fn observed_shows_each_event_then_passes_it_on_and_an_observer_error_stops_the_write() {
        let log = Log::default();
        let mut seen = 0;
        let mut w = Observed::new(Some(Box::new(log.clone())), |e: &Event| {
            seen += 1;
            match e.kind {
                EventKind::CallEnded { .. } => Err(std::io::Error::other("full")),
                _ => Ok(()),
            }
        });
        w.write(&event(EventKind::CallStarted { pipeline: "p".into() })).unwrap();
        let err = w.write(&event(EventKind::CallEnded { reason: "done".into() })).unwrap_err();
        assert_eq!(err.to_string(), "full");
        w.finish().unwrap();
        drop(w);
        assert_eq!(seen, 2);
        assert_eq!(*log.0.lock().unwrap(), (vec!["call_started"], true));

        // Without a configured log the observer still sees everything.
        let mut count = 0;
        let mut w = Observed::new(None, |_: &Event| {
            count += 1;
            Ok(())
        });
        w.write(&event(EventKind::CallStarted { pipeline: "p".into() })).unwrap();
        w.finish().unwrap();
        drop(w);
        assert_eq!(count, 1);
    }
}
