//! Playout tracking: how much of each assistant item the caller has actually heard.
//!
//! The sink records every block it plays; an interruption closes the current *epoch* and
//! returns the played position in the same critical section, so no audio from before the
//! interruption can be played after the position was read. Producers tag their audio with the
//! epoch current when they made it, and the sink drops audio from a closed epoch.

use crate::audio::{SampleRate, ms_of};
use crate::frame::ItemId;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What had been played of an item when playout stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayedItem {
    /// The item.
    pub item: ItemId,
    /// Milliseconds of its audio actually played.
    pub played_ms: u64,
    /// The words whose audio was played completely (when producers tag audio with its words,
    /// as cascade TTS does); empty otherwise.
    pub heard: String,
}

#[derive(Debug, Default)]
struct State {
    epoch: u64,
    item: Option<ItemId>,
    played_samples: u64,
    sample_rate: SampleRate,
    /// True while the sink has audio of the current epoch queued or playing.
    audible: bool,
    /// Words of `item` played completely so far.
    heard: String,
    /// Playout held (see [`PlayoutTracker::pause`]): the sink plays silence and keeps its place.
    paused: bool,
}

/// Shared between the sink (which records) and stages (which ask and interrupt).
#[derive(Debug, Default)]
pub struct PlayoutTracker {
    epoch: AtomicU64,
    state: Mutex<State>,
    /// Audio the sink has sent that the listener has not heard yet, ms (see
    /// [`PlayoutTracker::set_output_delay_ms`]).
    output_delay_ms: AtomicU64,
}

impl PlayoutTracker {
    /// A tracker at epoch 0 with nothing played.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current epoch; tag produced audio with it.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state itself is plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the sink before playing `samples` samples of `item` produced in `epoch`.
    /// Returns false (and records nothing) when the epoch has been closed by an interruption:
    /// the sink must then drop that audio.
    pub fn record_played(&self, item: &ItemId, epoch: u64, samples: usize, rate: SampleRate) -> bool {
        let mut s = self.lock();
        if epoch != s.epoch {
            return false;
        }
        if s.item.as_ref() != Some(item) {
            s.item = Some(item.clone());
            s.played_samples = 0;
            s.heard.clear();
        }
        s.sample_rate = rate;
        s.played_samples += samples as u64;
        s.audible = true;
        true
    }

    /// Called by the sink when a chunk of `item` carrying `words` has been played completely.
    pub fn record_heard(&self, item: &ItemId, epoch: u64, words: &str) {
        let mut s = self.lock();
        if epoch != s.epoch || s.item.as_ref() != Some(item) {
            return;
        }
        let words = words.trim();
        if words.is_empty() {
            return;
        }
        if !s.heard.is_empty() {
            s.heard.push(' ');
        }
        s.heard.push_str(words);
    }

    /// Called by the sink when its queue runs dry: the caller hears nothing now.
    pub fn set_idle(&self) {
        self.lock().audible = false;
    }

    /// Called by the sink when audio of the current epoch is queued but not yet started.
    pub fn set_pending(&self, epoch: u64) {
        let mut s = self.lock();
        if s.epoch == epoch {
            s.audible = true;
        }
    }

    /// True while assistant audio is playing or queued at the sink.
    pub fn is_audible(&self) -> bool {
        self.lock().audible
    }

    /// Tells the tracker how far the listener's ear lags the sink, ms: audio in flight and in
    /// the far end's jitter buffer. A transport whose far end reports what it played sets it
    /// (the voice page over WebRTC); positions reported from then on are the sink's minus this
    /// lag, so a barge-in cuts history at what was heard, not at what was sent. Default 0.
    pub fn set_output_delay_ms(&self, ms: u64) {
        self.output_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// The sink's position of `samples` at `rate`, less the listener's lag.
    fn heard_ms(&self, samples: u64, rate: SampleRate) -> u64 {
        ms_of(samples, rate).saturating_sub(self.output_delay_ms.load(Ordering::Relaxed))
    }

    /// Milliseconds played of `item`, if it is the item playing (or last played).
    pub fn played_ms(&self, item: &str) -> Option<u64> {
        let s = self.lock();
        match &s.item {
            Some(i) if &**i == item && s.sample_rate > 0 => {
                Some(self.heard_ms(s.played_samples, s.sample_rate))
            }
            _ => None,
        }
    }

    /// The item playing now (or last played) and how much of it was played.
    pub fn current(&self) -> Option<PlayedItem> {
        let s = self.lock();
        let item = s.item.clone()?;
        (s.sample_rate > 0).then(|| PlayedItem {
            item,
            played_ms: self.heard_ms(s.played_samples, s.sample_rate),
            heard: s.heard.clone(),
        })
    }

    /// Holds playout where it is: the sink plays silence, keeps the queued audio and resumes
    /// from the same sample on [`resume`](Self::resume). Used while the turn controller decides
    /// whether uncertain caller speech is a real interruption. Returns false if nothing was
    /// audible (there is nothing to hold) or playout was already held.
    pub fn pause(&self) -> bool {
        let mut s = self.lock();
        if !s.audible || s.paused {
            return false;
        }
        s.paused = true;
        true
    }

    /// Lets held playout continue. Returns false if it was not held.
    pub fn resume(&self) -> bool {
        std::mem::replace(&mut self.lock().paused, false)
    }

    /// True while playout is held by [`pause`](Self::pause).
    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// Closes the current epoch: everything queued or in flight stops playing. Returns what had
    /// been played of the item that was audible, or `None` if nothing was audible. Clears a
    /// [`pause`](Self::pause).
    pub fn interrupt(&self) -> Option<PlayedItem> {
        let mut s = self.lock();
        s.paused = false;
        s.epoch += 1;
        self.epoch.store(s.epoch, Ordering::Release);
        let was_audible = std::mem::replace(&mut s.audible, false);
        match (&s.item, was_audible) {
            (Some(item), true) if s.sample_rate > 0 => Some(PlayedItem {
                item: item.clone(),
                played_ms: self.heard_ms(s.played_samples, s.sample_rate),
                heard: s.heard.clone(),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interruption_freezes_position_and_rejects_old_audio() {
        let t = PlayoutTracker::new();
        let item: ItemId = "item_1".into();
        assert!(t.record_played(&item, 0, 480, 24_000));
        t.record_heard(&item, 0, "Hello there,");
        assert!(t.record_played(&item, 0, 480, 24_000));
        assert_eq!(t.played_ms("item_1"), Some(40));
        let played = t.interrupt().unwrap();
        assert_eq!(played, PlayedItem { item: item.clone(), played_ms: 40, heard: "Hello there,".into() });
        t.record_heard(&item, 0, "how are you");
        assert_eq!(t.current().unwrap().heard, "Hello there,", "words from a closed epoch are not heard");
        assert!(!t.record_played(&item, 0, 480, 24_000), "audio from the closed epoch");
        assert_eq!(t.played_ms("item_1"), Some(40));
        assert!(!t.is_audible());
        assert_eq!(t.interrupt(), None, "nothing audible");
        let next: ItemId = "item_2".into();
        assert!(t.record_played(&next, t.epoch(), 240, 24_000));
        assert_eq!(t.current().unwrap().played_ms, 10);
    }

    #[test]
    fn pause_holds_the_place_and_interrupt_clears_it() {
        let t = PlayoutTracker::new();
        assert!(!t.pause(), "nothing audible, nothing to hold");
        let item: ItemId = "item_1".into();
        assert!(t.record_played(&item, 0, 480, 24_000));
        assert!(t.pause());
        assert!(!t.pause(), "already held");
        assert!(t.is_paused() && t.is_audible());
        assert!(t.resume());
        assert!(!t.resume(), "not held any more");
        assert!(t.pause());
        t.interrupt();
        assert!(!t.is_paused(), "an interruption ends the hold");
    }

    #[test]
    fn the_listeners_lag_is_not_counted_as_heard() {
        let t = PlayoutTracker::new();
        let item: ItemId = "item_1".into();
        assert!(t.record_played(&item, 0, 24_000, 24_000)); // one second sent
        t.set_output_delay_ms(80);
        assert_eq!(t.played_ms("item_1"), Some(920));
        assert_eq!(t.interrupt().unwrap().played_ms, 920);
        t.set_output_delay_ms(5000);
        assert_eq!(t.current().unwrap().played_ms, 0, "never below zero");
    }
}
