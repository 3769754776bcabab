//! The control bus: messages that jump the data queue and reach every component at once.

use std::time::Duration;
use tokio::sync::broadcast;

/// Capacity of the control bus. Control messages are rare (a few per turn); a component that
/// lags this far behind has stalled and sees `Lagged`.
const CONTROL_CAPACITY: usize = 64;

/// Why assistant output was interrupted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptReason {
    /// The caller started speaking over the assistant.
    BargeIn,
    /// The call is ending.
    Shutdown,
    /// An explicit request (API, push-to-talk).
    Requested,
}

/// A control message.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// Drop all queued assistant output now. The [`PlayoutTracker`](crate::PlayoutTracker)
    /// epoch has already been closed when this is sent.
    Interrupt {
        /// Why.
        reason: InterruptReason,
        /// Input-timeline time of the speech onset that caused it, when known.
        onset: Option<Duration>,
        /// What the caller had heard of the item that was playing, if one was audible.
        played: Option<crate::playout::PlayedItem>,
    },
    /// Push-to-talk: the caller pressed the talk button.
    UserTurnStart {
        /// When, on the input timeline (a transport that knows it); `None`: now.
        at: Option<Duration>,
    },
    /// Push-to-talk: the caller released the talk button.
    UserTurnEnd {
        /// When, on the input timeline; `None`: now.
        at: Option<Duration>,
    },
    /// End the call after the current assistant reply has played (tool `end_call`).
    EndCall,
}

/// The broadcast bus all components of one call share.
#[derive(Clone, Debug)]
pub struct ControlBus {
    tx: broadcast::Sender<Control>,
}

impl Default for ControlBus {
    fn default() -> Self {
        Self::new()
    }
}

impl ControlBus {
    /// A new bus.
    pub fn new() -> Self {
        Self { tx: broadcast::channel(CONTROL_CAPACITY).0 }
    }

    /// Receives every message sent after this call.
    pub fn subscribe(&self) -> broadcast::Receiver<Control> {
        self.tx.subscribe()
    }

    /// Sends to every subscriber (a bus with no subscribers drops the message).
    pub fn send(&self, msg: Control) {
        let _ = self.tx.send(msg);
    }
}
