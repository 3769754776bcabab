//! The onset line: the one path from the turn controller to its gate that does not go through
//! the ASR.
//!
//! In a cascade the controller sits before the ASR and the gate after it (see the crate docs).
//! Frames between them wait behind the ASR, which may be busy with a final decode for hundreds
//! of milliseconds. Two facts cannot wait that long, so the controller writes them here and the
//! gate reads them at once:
//!
//! - **which utterance overlapped the assistant**: one entry per `SpeechStarted` the controller
//!   sent, popped by the gate when that frame arrives, so the gate judges an overlap on its
//!   words and an ordinary turn as a turn;
//! - **the caller is talking again**: a `SpeechStarted` still queued behind the ASR, or speech
//!   the VAD hears but has not confirmed yet, so the gate holds an end-of-turn decision instead
//!   of answering over the caller.
//!
//! Nothing else crosses: audio, transcripts, interruptions and playout go through frames, the
//! control bus and the playout tracker, as everywhere (ARCHITECTURE.md).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The controller's side of the onset line: what it has heard that the gate must know before the
/// frames carrying it come through the ASR.
#[derive(Debug, Default)]
pub(crate) struct OnsetLine {
    /// One entry per `SpeechStarted` the controller sent: whether it overlapped the assistant.
    onsets: Mutex<VecDeque<bool>>,
    /// The VAD hears speech that is not yet long enough to start an utterance.
    onset_pending: AtomicBool,
}

impl OnsetLine {
    /// The controller says whether it hears speech it has not confirmed yet (every VAD frame).
    pub(crate) fn set_onset_pending(&self, pending: bool) {
        self.onset_pending.store(pending, Ordering::Relaxed);
    }

    /// True while the controller hears speech it has not confirmed yet: the caller may be
    /// talking again.
    pub(crate) fn onset_pending(&self) -> bool {
        self.onset_pending.load(Ordering::Relaxed)
    }

    pub(crate) fn push_onset(&self, overlap: bool) {
        self.onsets.lock().unwrap_or_else(|e| e.into_inner()).push_back(overlap);
    }

    pub(crate) fn pop_onset(&self) -> bool {
        self.onsets.lock().unwrap_or_else(|e| e.into_inner()).pop_front().unwrap_or(false)
    }

    /// True when the controller has sent a `SpeechStarted` the gate has not seen yet: the
    /// caller is talking again (the frame waits behind a final decode in the ASR).
    pub(crate) fn caller_resumed(&self) -> bool {
        !self.onsets.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}
