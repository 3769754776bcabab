//! Per-turn audio for `report.html`: the caller's turn cut from the scenario's rendered input,
//! and each pipeline's reply cut from its call's `reply.wav`, as small WAVs under
//! `audio/<scenario>/` beside the report.
//!
//! `reply.wav` is on the call's timeline (silence where the assistant is quiet, sample for
//! sample with the input), so a turn's reply is the stretch from its first audio played (end
//! of the caller's speech plus voice-to-voice; the end of the turn's audio when it has none)
//! to the start of the next turn's audio (the end of the call for the last turn), with the
//! silence around it trimmed. A reply the caller barged into ends where the caller started.

use crate::call::CallRecord;
use crate::error::EvalError;
use crate::render::TurnSpan;
use std::path::{Path, PathBuf};

/// A clip written beside the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// Its path relative to the report's directory, with `/` separators.
    pub rel: String,
    /// Its length, ms (0 when nothing was heard).
    pub ms: u64,
    /// Why the clip is empty when the source could not be read.
    pub note: Option<String>,
}

/// Samples quieter than this (absolute PCM16) count as silence when trimming.
const SILENCE: i16 = 64;
/// Audio kept around the trimmed sound, ms.
const PAD_MS: u64 = 60;

fn samples_at(rate: u32, ms: u64) -> usize {
    (ms * u64::from(rate) / 1000) as usize
}

/// Reads a mono PCM16 WAV (the first channel of a multi-channel one).
fn read(path: &Path) -> Result<(Vec<i16>, u32), String> {
    let mut r = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = r.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        return Err(format!("{}: not 16-bit PCM", path.display()));
    }
    let channels = usize::from(spec.channels.max(1));
    // A call that failed may leave a WAV whose header undercounts: keep what reads.
    let samples: Vec<i16> = r.samples::<i16>().map_while(Result::ok).step_by(channels).collect();
    Ok((samples, spec.sample_rate))
}

fn write(out: &Path, rel: &str, rate: u32, samples: &[i16], note: Option<String>) -> Result<Clip, EvalError> {
    let path = out.join(rel);
    let io = |e: std::io::Error| EvalError::io(&path, e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let hound_err = |e: hound::Error| EvalError::io(&path, std::io::Error::other(e.to_string()));
    let mut w = hound::WavWriter::create(&path, spec).map_err(hound_err)?;
    for &s in samples {
        w.write_sample(s).map_err(hound_err)?;
    }
    w.finalize().map_err(hound_err)?;
    let ms = samples.len() as u64 * 1000 / u64::from(rate.max(1));
    Ok(Clip { rel: rel.to_string(), ms, note })
}

/// `samples[from..to]` with the silence at both ends trimmed (padded by [`PAD_MS`]); empty when
/// it is all silence.
fn trimmed(samples: &[i16], rate: u32, from: usize, to: usize) -> &[i16] {
    let to = to.min(samples.len());
    let from = from.min(to);
    let loud = |s: &i16| s.unsigned_abs() > SILENCE.unsigned_abs();
    let part = &samples[from..to];
    let (Some(first), Some(last)) = (part.iter().position(loud), part.iter().rposition(loud)) else {
        return &[];
    };
    let pad = samples_at(rate, PAD_MS);
    &part[first.saturating_sub(pad)..(last + 1 + pad).min(part.len())]
}

/// The directory of a scenario's clips, relative to the report.
fn scenario_dir(scenario: &str) -> String {
    format!("audio/{scenario}")
}

/// Writes the caller's side of every turn of a scenario from its rendered input WAV.
pub fn caller_clips(
    out: &Path,
    scenario: &str,
    input: &Path,
    spans: &[TurnSpan],
) -> Result<Vec<Clip>, EvalError> {
    let (samples, rate, note) = match read(input) {
        Ok((s, rate)) => (s, rate, None),
        Err(e) => (Vec::new(), crate::render::RENDER_RATE, Some(e)),
    };
    spans
        .iter()
        .enumerate()
        .map(|(i, span)| {
            let (from, to) = (samples_at(rate, span.start_ms), samples_at(rate, span.end_ms));
            let part = &samples[from.min(samples.len())..to.min(samples.len())];
            let rel = format!("{}/caller-turn{}.wav", scenario_dir(scenario), i + 1);
            write(out, &rel, rate, part, note.clone())
        })
        .collect()
}

/// The relative path of a pipeline's reply clip for a turn (`run` is left out when there is
/// one run).
fn reply_rel(c: &CallRecord, runs: usize, turn: usize) -> String {
    let run = if runs > 1 { format!("/run{}", c.run) } else { String::new() };
    format!("{}{run}/{}-turn{turn}.wav", scenario_dir(&c.scenario), c.pipeline)
}

/// Writes a call's reply per turn, cut from its `reply.wav` (see the module docs); a turn the
/// call did not reach, or a recording that cannot be read, gets an empty clip.
pub fn reply_clips(
    out: &Path,
    c: &CallRecord,
    spans: &[TurnSpan],
    runs: usize,
) -> Result<Vec<Clip>, EvalError> {
    let wav: PathBuf = c.dir.join("reply.wav");
    let (samples, rate, note) = match read(&wav) {
        Ok((s, rate)) => (s, rate, None),
        Err(e) => (Vec::new(), 24_000, Some(e)),
    };
    spans
        .iter()
        .enumerate()
        .map(|(i, span)| {
            let turn = c.turns.get(i);
            let start_ms =
                turn.and_then(|t| Some(t.speech_end_ms? + t.voice_to_voice_ms?)).unwrap_or(span.end_ms);
            let end = spans.get(i + 1).map_or(samples.len(), |next| samples_at(rate, next.start_ms));
            let part = trimmed(&samples, rate, samples_at(rate, start_ms), end);
            write(out, &reply_rel(c, runs, i + 1), rate, part, note.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_trimmed_to_its_sound_with_a_little_padding() {
        let rate = 1000; // one sample per ms
        let mut s = vec![0i16; 1000];
        s[300..400].fill(1000);
        s[500..520].fill(-2000);
        let t = trimmed(&s, rate, 100, 900);
        assert_eq!(t.len(), (520 + PAD_MS as usize) - (300 - PAD_MS as usize));
        assert!(trimmed(&s, rate, 600, 2000).is_empty(), "silence only");
        assert!(trimmed(&s, rate, 2000, 3000).is_empty(), "past the end");
        assert_eq!(trimmed(&s, rate, 310, 390).len(), 80, "padding stays inside the range");
    }

    #[test]
    fn clips_are_written_as_wavs_beside_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&input, spec).unwrap();
        for i in 0..16_000 {
            w.write_sample(((i % 50) * 100) as i16).unwrap();
        }
        w.finalize().unwrap();
        let spans = [TurnSpan { start_ms: 0, end_ms: 250 }, TurnSpan { start_ms: 500, end_ms: 1000 }];
        let clips = caller_clips(dir.path(), "s", &input, &spans).unwrap();
        assert_eq!(
            clips.iter().map(|c| (c.rel.as_str(), c.ms)).collect::<Vec<_>>(),
            [("audio/s/caller-turn1.wav", 250), ("audio/s/caller-turn2.wav", 500)]
        );
        assert_eq!(read(&dir.path().join(&clips[1].rel)).unwrap().0.len(), 8000);
        let missing = caller_clips(dir.path(), "t", &dir.path().join("none.wav"), &spans).unwrap();
        assert!(
            missing[0].note.is_some() && missing[0].ms == 0 && dir.path().join(&missing[0].rel).is_file()
        );
    }
}
