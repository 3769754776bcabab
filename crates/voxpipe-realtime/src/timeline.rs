//! Where the server's VAD events fall on voxpipe's input timeline.
//!
//! OpenAI counts `audio_start_ms` / `audio_end_ms` from the start of the session's audio, and
//! its `audio_end_ms` includes the silence that ended the turn. Other servers differ: speaches
//! counts from the start of each turn's input buffer and reports the end of speech itself. A
//! timestamp read the wrong way puts a turn seconds early, and every latency measured from it
//! (voice-to-voice, barge-in) grows by as much.
//!
//! So the stage's own clock decides: it knows how much audio it had sent when an event arrived
//! (`sent_ms`, on the input timeline), and a server cannot have heard audio it was not sent. A
//! server timestamp is used, read whichever way, only where it agrees with that; otherwise the
//! event is placed by the stage's clock alone (speech started by `sent_ms`; speech stopped by
//! `sent_ms` less the configured silence, which the server waited for before saying so).

use crate::config::{Protocol, RealtimeConfig, TurnDetection};

/// How far before the audio sent so far a speech onset may lie, beyond the prefix padding the
/// server adds: its VAD's detection delay and the network's lag.
const ONSET_WINDOW_MS: u64 = 1500;
/// How far a server's end of speech may lie from the stage's own estimate and still agree
/// (audio in flight, the server's processing, one append).
const END_AGREEMENT_MS: u64 = 300;

/// The server's turn detection timing: what its `session.updated` says it applies (a server
/// may ignore what was asked for), else the stage's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VadTiming {
    /// Audio the server keeps from before a speech onset; `audio_start_ms` includes it.
    pub(crate) prefix_padding_ms: u64,
    /// Silence that ends a turn (0 for semantic VAD, which has no fixed one).
    pub(crate) silence_ms: u64,
}

impl VadTiming {
    /// From the session the server reports (GA or beta shape), falling back to `config`.
    pub(crate) fn from_session(session: &serde_json::Value, config: &RealtimeConfig) -> Self {
        let (prefix, silence) = match &config.turn_detection {
            TurnDetection::ServerVad { prefix_padding_ms, silence_duration_ms, .. } => {
                (*prefix_padding_ms as u64, *silence_duration_ms as u64)
            }
            TurnDetection::SemanticVad { .. } => (300, 0),
            TurnDetection::None => (0, 0),
        };
        let td = match config.protocol {
            Protocol::Ga => session.pointer("/audio/input/turn_detection"),
            Protocol::Beta => session.get("turn_detection"),
        };
        let semantic = td.and_then(|t| t.get("type")).and_then(|t| t.as_str()) == Some("semantic_vad");
        let read = |key: &str, default: u64| {
            td.and_then(|t| t.get(key)).and_then(serde_json::Value::as_u64).unwrap_or(default)
        };
        Self {
            prefix_padding_ms: read("prefix_padding_ms", prefix),
            silence_ms: if semantic { 0 } else { read("silence_duration_ms", silence) },
        }
    }
}

/// Which reading of a server timestamp placed an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placed {
    /// Counted from the start of the session's audio (OpenAI).
    Session,
    /// Counted from the start of the turn's input buffer (per-turn servers).
    Buffer,
    /// The server's value agreed with neither: placed by the stage's clock.
    OwnClock,
}

/// The stage's view of the input timeline, in ms.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    /// End of the audio sent to the server so far.
    sent_ms: u64,
    /// Where the current session's audio began (a reconnect starts a new count).
    session_origin_ms: u64,
    /// Where the current input buffer began (the last commit).
    buffer_origin_ms: u64,
}

impl Timeline {
    /// Audio up to `end_ms` has been sent.
    pub(crate) fn sent(&mut self, end_ms: u64) {
        self.sent_ms = self.sent_ms.max(end_ms);
    }

    /// A new session starts counting from here.
    pub(crate) fn session_started(&mut self) {
        self.session_origin_ms = self.sent_ms;
        self.buffer_origin_ms = self.sent_ms;
    }

    /// The server committed its input buffer: the next turn's buffer starts here.
    pub(crate) fn committed(&mut self) {
        self.buffer_origin_ms = self.sent_ms;
    }

    /// The onset of speech the server reports at `audio_start_ms`, which points
    /// `prefix_padding_ms` before the speech (the audio the server keeps from before it).
    pub(crate) fn onset(&self, audio_start_ms: u64, prefix_padding_ms: u64) -> (u64, Placed) {
        let window = prefix_padding_ms + ONSET_WINDOW_MS;
        let plausible = |at: u64| at <= self.sent_ms && self.sent_ms - at <= window;
        [(self.session_origin_ms, Placed::Session), (self.buffer_origin_ms, Placed::Buffer)]
            .into_iter()
            .map(|(origin, how)| (origin + audio_start_ms, how))
            .find(|(at, _)| plausible(*at))
            .map(|(at, how)| ((at + prefix_padding_ms).min(self.sent_ms), how))
            .unwrap_or((self.sent_ms, Placed::OwnClock))
    }

    /// The end of speech the server reports at `audio_end_ms`, after `silence_ms` of silence:
    /// the reading of the server's value closest to the stage's own estimate, if one agrees.
    pub(crate) fn speech_end(&self, audio_end_ms: u64, silence_ms: u64) -> (u64, Placed) {
        let own = self.sent_ms.saturating_sub(silence_ms);
        let readings = [
            // OpenAI: from the session's start, including the silence.
            (self.session_origin_ms + audio_end_ms.saturating_sub(silence_ms), Placed::Session),
            // Per turn, including the silence, or the end of speech itself.
            (self.buffer_origin_ms + audio_end_ms.saturating_sub(silence_ms), Placed::Buffer),
            (self.buffer_origin_ms + audio_end_ms, Placed::Buffer),
        ];
        readings
            .into_iter()
            .filter(|(at, _)| *at <= self.sent_ms && at.abs_diff(own) <= END_AGREEMENT_MS)
            .min_by_key(|(at, _)| at.abs_diff(own))
            .unwrap_or((own, Placed::OwnClock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(sent_ms: u64) -> Timeline {
        Timeline { sent_ms, ..Timeline::default() }
    }

    #[test]
    fn openai_timestamps_count_from_the_session_and_are_used_as_they_are() {
        // Speech 1000..2500 ms, 300 ms padding, 500 ms silence; events arrive one 20 ms
        // append after the fact.
        let t = at(1060);
        assert_eq!(t.onset(700, 300), (1000, Placed::Session));
        let t = at(3020);
        assert_eq!(t.speech_end(3000, 500), (2500, Placed::Session));
    }

    #[test]
    fn per_turn_timestamps_count_from_the_last_commit() {
        // Turn 1 committed at 3020 ms; turn 2's speech 8000..9200 ms is reported from there.
        let mut t = at(3020);
        t.committed();
        t.sent(8060);
        assert_eq!(t.onset(8000 - 300 - 3020, 300), (8000, Placed::Buffer));
        t.sent(9720);
        // The end of speech itself, without the silence.
        assert_eq!(t.speech_end(9200 - 3020, 500), (9200, Placed::Buffer));
    }

    #[test]
    fn a_timestamp_that_agrees_with_no_reading_is_replaced_by_the_own_clock() {
        let mut t = at(5000);
        t.committed();
        t.sent(20_000);
        // Counted from some origin the stage cannot know: far before anything plausible.
        assert_eq!(t.onset(2_000, 300), (20_000, Placed::OwnClock));
        assert_eq!(t.speech_end(4_000, 500), (19_500, Placed::OwnClock));
        // Or later than the audio sent: the server cannot have heard it.
        assert_eq!(t.onset(30_000, 300), (20_000, Placed::OwnClock));
    }

    #[test]
    fn the_timing_the_server_applies_wins_over_the_one_asked_for() {
        let config = RealtimeConfig { protocol: Protocol::Beta, ..RealtimeConfig::default() };
        let session = serde_json::json!({"turn_detection": {"type": "server_vad", "prefix_padding_ms": 100, "silence_duration_ms": 800}});
        assert_eq!(
            VadTiming::from_session(&session, &config),
            VadTiming { prefix_padding_ms: 100, silence_ms: 800 }
        );
        let defaults = VadTiming::from_session(&serde_json::json!({}), &config);
        assert_eq!(defaults, VadTiming { prefix_padding_ms: 300, silence_ms: 500 });
        let ga = serde_json::json!({"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}});
        assert_eq!(VadTiming::from_session(&ga, &RealtimeConfig::default()).silence_ms, 0);
    }

    #[test]
    fn a_reconnect_starts_a_new_session_count() {
        let mut t = at(12_000);
        t.session_started();
        t.sent(15_060);
        assert_eq!(t.onset(2_700, 300), (15_000, Placed::Session));
    }
}
