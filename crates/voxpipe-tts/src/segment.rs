//! One continuous run of provider audio on its way out: resampling to the output rate, slicing
//! into pieces of at most 100 ms, and attributing the spoken text to the pieces.
//!
//! Word attribution: with provider alignment each character is placed exactly at its start
//! time. Without it, the segment's words are spread over its audio by character count, using a
//! speaking-rate estimate (the audio's total length is unknown while it streams); whatever
//! text is left when the audio ends goes on the last piece, so every word is carried by some
//! piece, in order. To have a last piece to put it on, a short tail ([`HOLD_MS`]) of audio is
//! held back until more audio arrives or the segment ends.

use crate::Error;
use crate::synth::Alignment;
use std::collections::VecDeque;
use std::sync::Arc;
use voxpipe_core::audio::{StreamResampler, samples_for_ms};
use voxpipe_core::{SampleRate, Samples};

/// Longest emitted piece, ms.
pub const MAX_PIECE_MS: u64 = 100;
/// Audio held back until more arrives or the segment ends, ms.
pub const HOLD_MS: u64 = 20;

/// A piece of output audio and the text it carries.
#[derive(Debug)]
pub struct Piece {
    /// Samples at the output rate.
    pub samples: Samples,
    /// Text spoken in this piece, if any.
    pub text: Option<Arc<str>>,
}

/// Text placed at a position of the segment's output timeline.
#[derive(Debug)]
struct Mark {
    at_sample: u64,
    text: String,
}

/// One segment in progress.
pub struct Segment {
    in_rate: SampleRate,
    out_rate: SampleRate,
    resampler: StreamResampler,
    hold_samples: usize,
    max_piece_samples: usize,
    pending: Vec<i16>,
    emitted_samples: u64,
    received_samples: u64,
    marks: VecDeque<Mark>,
    text_chars: usize,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("in_rate", &self.in_rate)
            .field("out_rate", &self.out_rate)
            .field("emitted_samples", &self.emitted_samples)
            .finish()
    }
}

impl Segment {
    /// A segment of audio at `in_rate`, emitted at `out_rate`. `text` is the segment's text when
    /// the audio will come without alignment; its words are placed at `chars_per_sec`.
    pub fn new(
        in_rate: SampleRate,
        out_rate: SampleRate,
        text: Option<&str>,
        chars_per_sec: f64,
    ) -> Result<Self, Error> {
        let mut seg = Self {
            in_rate,
            out_rate,
            resampler: StreamResampler::new(in_rate, out_rate)?,
            hold_samples: samples_for_ms(out_rate, HOLD_MS),
            max_piece_samples: samples_for_ms(out_rate, MAX_PIECE_MS).max(1),
            pending: Vec::new(),
            emitted_samples: 0,
            received_samples: 0,
            marks: VecDeque::new(),
            text_chars: 0,
        };
        if let Some(text) = text {
            seg.place_words(text, chars_per_sec);
        }
        Ok(seg)
    }

    fn place_words(&mut self, text: &str, chars_per_sec: f64) {
        let mut chars_before = 0usize;
        let mut last_end = 0usize;
        for word in text.split_whitespace() {
            let start = word.as_ptr() as usize - text.as_ptr() as usize;
            chars_before += text[last_end..start].chars().count();
            let at = (chars_before as f64 / chars_per_sec.max(1.0) * self.out_rate as f64) as u64;
            self.marks.push_back(Mark { at_sample: at, text: format!("{word} ") });
            chars_before += word.chars().count();
            last_end = start + word.len();
        }
        self.text_chars = text.chars().count();
    }

    /// Adds provider audio (and its alignment) and appends the pieces ready to go to `out`.
    pub fn push(
        &mut self,
        samples: &[i16],
        alignment: Option<Alignment>,
        out: &mut Vec<Piece>,
    ) -> Result<(), Error> {
        if let Some(al) = alignment {
            let base_ms = self.received_samples as f64 * 1000.0 / self.in_rate as f64;
            for (ch, start) in al.chars.into_iter().zip(al.char_start_ms) {
                let at = ((base_ms + start as f64) * self.out_rate as f64 / 1000.0) as u64;
                self.text_chars += ch.chars().count();
                self.marks.push_back(Mark { at_sample: at, text: ch });
            }
        }
        self.received_samples += samples.len() as u64;
        self.resampler.push(samples, &mut self.pending)?;
        let ready = self.pending.len().saturating_sub(self.hold_samples);
        self.emit(ready, false, out);
        Ok(())
    }

    /// Ends the segment: emits everything left; the last piece carries all remaining text.
    /// Returns the segment's audio length in output samples and its text length in characters
    /// (for the speaking-rate estimate).
    pub fn finish(&mut self, out: &mut Vec<Piece>) -> Result<(u64, usize), Error> {
        self.resampler.flush(&mut self.pending)?;
        self.emit(self.pending.len(), true, out);
        self.marks.clear();
        Ok((self.emitted_samples, self.text_chars))
    }

    fn emit(&mut self, n: usize, last: bool, out: &mut Vec<Piece>) {
        if n == 0 {
            return;
        }
        let tail = self.pending.split_off(n);
        let all = Samples::from_vec(std::mem::replace(&mut self.pending, tail));
        let pieces = n.div_ceil(self.max_piece_samples);
        for (i, samples) in all.chunks(self.max_piece_samples).enumerate() {
            let end = self.emitted_samples + samples.len() as u64;
            let final_piece = last && i + 1 == pieces;
            let mut text = String::new();
            while let Some(m) = self.marks.front() {
                if !final_piece && m.at_sample >= end {
                    break;
                }
                text.push_str(&self.marks.pop_front().expect("front was Some").text);
            }
            self.emitted_samples = end;
            out.push(Piece { samples, text: (!text.is_empty()).then(|| text.into()) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(pieces: &[Piece]) -> Vec<String> {
        pieces.iter().map(|p| p.text.as_deref().unwrap_or("").to_string()).collect()
    }

    #[test]
    fn pieces_are_at_most_100_ms_and_keep_every_sample() {
        let mut seg = Segment::new(24_000, 24_000, None, 15.0).unwrap();
        let mut out = Vec::new();
        let input: Vec<i16> = (0..10_000).map(|i| i as i16).collect();
        for part in input.chunks(777) {
            seg.push(part, None, &mut out).unwrap();
        }
        assert_eq!(out.iter().map(|p| p.samples.len()).sum::<usize>(), 10_000 - 480, "20 ms held back");
        seg.finish(&mut out).unwrap();
        assert!(out.iter().all(|p| p.samples.len() <= 2_400));
        let joined: Vec<i16> = out.iter().flat_map(|p| p.samples.iter().copied()).collect();
        assert_eq!(joined, input);
    }

    #[test]
    fn words_are_spread_by_character_count_and_the_rest_goes_last() {
        // 10 chars/s at 1 kHz output: a word every 100 samples per char.
        let mut seg = Segment::new(1_000, 1_000, Some("ab cd ef gh"), 10.0).unwrap();
        let mut out = Vec::new();
        seg.push(&[0; 700], None, &mut out).unwrap();
        // Pieces of 100 samples; "ab" at 0, "cd" at 300, "ef" at 600, "gh" at 900.
        let (len, chars) = seg.finish(&mut out).unwrap();
        assert_eq!((len, chars), (700, 11));
        let t = texts(&out);
        assert_eq!(t[0], "ab ");
        assert_eq!(t[3], "cd ");
        assert_eq!(t[6], "ef ");
        assert_eq!(t[7], "gh ", "audio ended early: the rest rides on the last piece");
        assert_eq!(t.concat(), "ab cd ef gh ");
    }

    #[test]
    fn alignment_places_each_character_at_its_start_time() {
        let mut seg = Segment::new(1_000, 1_000, None, 15.0).unwrap();
        let mut out = Vec::new();
        let al = |chars: &str, starts: &[u32]| Alignment {
            chars: chars.chars().map(String::from).collect(),
            char_start_ms: starts.to_vec(),
        };
        seg.push(&[0; 250], Some(al("Hi ", &[0, 120, 210])), &mut out).unwrap();
        // Second event: times are relative to its own first sample (at 250 ms).
        seg.push(&[0; 250], Some(al("yo", &[10, 160])), &mut out).unwrap();
        seg.finish(&mut out).unwrap();
        assert_eq!(texts(&out), ["H", "i", " ", "y", "o", "", ""]);
    }
}
