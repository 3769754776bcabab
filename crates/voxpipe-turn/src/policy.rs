//! End of turn: how long to wait after the caller stops speaking before answering.
//!
//! A [`EndOfTurnPolicy`] reads the transcript of the turn so far and says how complete it
//! sounds; [`Waits`] turns that into a wait after the end of speech. The shipped [`TextPolicy`]
//! is a few English heuristics; a model-based detector can implement the same trait.

use crate::config::{Eagerness, EndOfTurnConfig};
use std::time::Duration;

/// How complete the caller's turn reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// A finished thought: answer soon.
    Complete,
    /// Could go either way.
    Unsure,
    /// The caller is clearly not done ("and…", "um", half a phone number): wait longer.
    Incomplete,
}

impl Completeness {
    /// `complete`, `unsure` or `incomplete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Completeness::Complete => "complete",
            Completeness::Unsure => "unsure",
            Completeness::Incomplete => "incomplete",
        }
    }
}

/// Reads a transcript and judges whether the turn is over.
pub trait EndOfTurnPolicy: Send + Sync + std::fmt::Debug {
    /// How complete `transcript` (the whole turn so far) reads.
    fn classify(&self, transcript: &str) -> Completeness;
}

/// Words after which a speaker is almost never done.
const CONTINUATIONS: &[&str] = &[
    "and", "but", "or", "so", "because", "cause", "um", "uh", "er", "erm", "hmm", "like", "the", "a", "an",
    "to", "of", "with", "my", "your", "our", "their", "is", "are", "was", "were", "if", "for", "from",
    "about", "plus", "also",
];

const NUMBER_WORDS: &[&str] = &[
    "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred",
    "thousand", "double", "triple",
];

/// English heuristics on an ASR transcript (with the punctuation whisper adds):
/// - *incomplete*: ends with a conjunction, article, preposition or filler ("and", "so",
///   "um", "the", "to"…), with a comma or an ellipsis, or in the middle of a number being read
///   out (ends with digits or number words and no `?`/`!`);
/// - *complete*: a question, or ends with `.` or `!` otherwise;
/// - *unsure*: no punctuation to go by.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextPolicy;

impl EndOfTurnPolicy for TextPolicy {
    fn classify(&self, transcript: &str) -> Completeness {
        let t = transcript.trim();
        if t.is_empty() {
            return Completeness::Unsure;
        }
        if t.ends_with("...") || t.ends_with('…') || t.ends_with(',') || t.ends_with('-') {
            return Completeness::Incomplete;
        }
        if t.ends_with('?') {
            return Completeness::Complete;
        }
        let terminal = t.chars().last().filter(|c| matches!(c, '.' | '!'));
        let word =
            |w: &str| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '/').to_lowercase();
        let mut words = t.split_whitespace().rev().map(word);
        let last = words.next().unwrap_or_default();
        if CONTINUATIONS.contains(&last.as_str()) {
            return Completeness::Incomplete;
        }
        let is_number = |w: &str| {
            !w.is_empty() && (w.chars().all(|c| c.is_ascii_digit() || c == '-') || NUMBER_WORDS.contains(&w))
        };
        // "one" and "oh" are digits only among other digits: "the blue one." and "Oh." are done.
        let numeric = is_number(&last)
            && (!matches!(last.as_str(), "one" | "oh") || words.next().is_some_and(|w| is_number(&w)));
        if numeric && terminal != Some('!') {
            return Completeness::Incomplete;
        }
        match terminal {
            Some(_) => Completeness::Complete,
            None => Completeness::Unsure,
        }
    }
}

/// The wait after the end of speech for each [`Completeness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// After a complete thought.
    pub complete: Duration,
    /// When unsure.
    pub unsure: Duration,
    /// After an unfinished one.
    pub incomplete: Duration,
}

impl Waits {
    /// The waits for `min_silence_ms` under `config` (see
    /// [`EndOfTurnConfig`](crate::config::EndOfTurnConfig) for the table).
    pub fn new(min_silence_ms: u32, config: &EndOfTurnConfig) -> Self {
        let (c, u, i) = match config.eagerness {
            Eagerness::High => (0.5, 0.8, 2.0),
            Eagerness::Medium => (0.6, 1.0, 3.0),
            Eagerness::Low => (1.0, 1.5, 4.0),
        };
        let max = config.max_wait_ms as f64;
        let ms = |f: f64| Duration::from_millis((min_silence_ms as f64 * f).min(max).round() as u64);
        Self { complete: ms(c), unsure: ms(u), incomplete: ms(i) }
    }

    /// The wait for `c`.
    pub fn for_(&self, c: Completeness) -> Duration {
        match c {
            Completeness::Complete => self.complete,
            Completeness::Unsure => self.unsure,
            Completeness::Incomplete => self.incomplete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Completeness::*;

    #[test]
    fn reads_complete_and_unfinished_turns() {
        let p = TextPolicy;
        for (text, want) in [
            ("Where is my order?", Complete),
            ("I'd like to book an appointment.", Complete),
            ("I ordered a lamp and", Incomplete),
            ("I ordered a lamp and...", Incomplete),
            ("So, um", Incomplete),
            ("Um.", Incomplete),
            ("My number is 555", Incomplete),
            ("My number is 555.", Incomplete),
            ("It's A-1001, and", Incomplete),
            ("The order is five five", Incomplete),
            ("No wait, I meant the blue one.", Complete),
            ("Oh.", Complete),
            ("It's four one one", Incomplete),
            ("My code is oh oh", Incomplete),
            ("Is it 12?", Complete),
            ("where is my order", Unsure),
            ("Thank you.", Complete),
            ("What is it for?", Complete),
            ("", Unsure),
        ] {
            assert_eq!(p.classify(text), want, "{text:?}");
        }
    }

    #[test]
    fn eagerness_scales_the_waits_and_max_caps_them() {
        let ms = Duration::from_millis;
        let mut c = EndOfTurnConfig::default();
        let w = Waits::new(500, &c);
        assert_eq!((w.complete, w.unsure, w.incomplete), (ms(300), ms(500), ms(1500)));
        c.eagerness = Eagerness::Low;
        c.max_wait_ms = 1800;
        let w = Waits::new(500, &c);
        assert_eq!((w.complete, w.unsure, w.incomplete), (ms(500), ms(750), ms(1800)));
        c.eagerness = Eagerness::High;
        assert!(Waits::new(500, &c).complete < Waits::new(500, &EndOfTurnConfig::default()).complete);
    }
}
