//! Does caller speech over the assistant count as an interruption? The word-level guards:
//! minimum words and the backchannel list ("uh-huh", "yeah", "okay"…).

use crate::config::InterruptionConfig;

/// What a transcript of speech over the assistant amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Real words: interrupt.
    Interrupt,
    /// Only listening noises from the backchannel list.
    Backchannel,
    /// Fewer words than `min_words`.
    TooFewWords,
    /// No words at all (noise, a cough).
    NoWords,
}

impl Verdict {
    /// The `reason` logged for a false interruption.
    pub fn reason(self) -> &'static str {
        match self {
            Verdict::Interrupt => "interrupt",
            Verdict::Backchannel => "backchannel",
            Verdict::TooFewWords => "too_few_words",
            Verdict::NoWords => "no_words",
        }
    }
}

/// Lower-case words with punctuation removed; hyphens split words ("uh-huh" → "uh huh").
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '-')
        .map(|w| w.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect::<String>().to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The word-level guards, prepared once per call.
#[derive(Debug, Clone)]
pub struct WordGuard {
    min_words: usize,
    /// Backchannel phrases as word sequences, longest first.
    backchannels: Vec<Vec<String>>,
}

impl WordGuard {
    /// Guards from `[turn.interruption]`.
    pub fn new(c: &InterruptionConfig) -> Self {
        let mut backchannels: Vec<Vec<String>> =
            c.backchannels.iter().map(|b| words(b)).filter(|w| !w.is_empty()).collect();
        backchannels.sort_by_key(|b| std::cmp::Reverse(b.len()));
        Self { min_words: c.min_words as usize, backchannels }
    }

    /// Judges `text`, the transcript so far of speech over the assistant.
    pub fn judge(&self, text: &str) -> Verdict {
        let w = words(text);
        if w.is_empty() {
            return Verdict::NoWords;
        }
        if self.only_backchannels(&w) {
            return Verdict::Backchannel;
        }
        if w.len() < self.min_words {
            return Verdict::TooFewWords;
        }
        Verdict::Interrupt
    }

    /// True if `w` is a sequence of backchannel phrases ("yeah okay", "uh huh right").
    fn only_backchannels(&self, w: &[String]) -> bool {
        let mut i = 0;
        'outer: while i < w.len() {
            for b in &self.backchannels {
                if w[i..].starts_with(b) {
                    i += b.len();
                    continue 'outer;
                }
            }
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backchannels_and_short_utterances_do_not_interrupt() {
        let g = WordGuard::new(&InterruptionConfig { min_words: 2, ..Default::default() });
        assert_eq!(g.judge("Uh-huh."), Verdict::Backchannel);
        assert_eq!(g.judge("Yeah, okay."), Verdict::Backchannel);
        assert_eq!(g.judge("Mm-hmm, right"), Verdict::Backchannel);
        assert_eq!(g.judge(""), Verdict::NoWords);
        assert_eq!(g.judge(" ... "), Verdict::NoWords);
        assert_eq!(g.judge("Wait."), Verdict::TooFewWords);
        assert_eq!(g.judge("Yeah, but wait."), Verdict::Interrupt);
        assert_eq!(g.judge("No, I said Tuesday."), Verdict::Interrupt);
        let g1 = WordGuard::new(&InterruptionConfig::default());
        assert_eq!(g1.judge("Stop."), Verdict::Interrupt, "one real word is enough by default");
        assert_eq!(g1.judge("okay"), Verdict::Backchannel);
    }
}
