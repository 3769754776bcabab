//! Scenarios cut from a recorded call: the caller's turns found by a VAD on the caller's side
//! of the recording, each kept at its original time, so `voxpipe ab` replays a real call with
//! its real pacing. Reference transcripts, tools and reply checks are left for the user to
//! add; without them a turn is still measured for latency.

use crate::scenario::{FakeScript, Scenario, Turn};
use std::path::PathBuf;
use voxpipe_turn::{Vad, VadError};

/// How speech is told from the pauses between turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutOptions {
    /// Silence that ends a turn, ms. Shorter pauses stay inside the turn.
    pub min_silence_ms: u64,
    /// Speech shorter than this is dropped (clicks, coughs), ms.
    pub min_speech_ms: u64,
    /// Audio kept before and after each turn's speech, ms (never into a neighbour).
    pub pad_ms: u64,
}

impl Default for CutOptions {
    fn default() -> Self {
        Self { min_silence_ms: 700, min_speech_ms: 200, pad_ms: 150 }
    }
}

/// The caller's turns in `samples` (mono PCM16 at the VAD's rate), as `[from_ms, to_ms)`.
///
/// # Errors
/// The VAD failed.
pub fn speech_ranges(
    samples: &[i16],
    vad: &mut dyn Vad,
    opts: &CutOptions,
) -> Result<Vec<(u64, u64)>, VadError> {
    let frame = vad.frame_samples();
    let rate = u64::from(vad.sample_rate());
    let ms = |samples: usize| samples as u64 * 1000 / rate;
    // Runs of speech frames.
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (i, f) in samples.chunks_exact(frame).enumerate() {
        if vad.process(f)? < 0.5 {
            continue;
        }
        let (from, to) = (ms(i * frame), ms((i + 1) * frame));
        match runs.last_mut() {
            Some((_, end)) if from - *end < opts.min_silence_ms => *end = to,
            _ => runs.push((from, to)),
        }
    }
    runs.retain(|(from, to)| to - from >= opts.min_speech_ms);
    let total = ms(samples.len());
    let mut out = Vec::with_capacity(runs.len());
    for (i, &(from, to)) in runs.iter().enumerate() {
        let floor = out.last().map_or(0, |&(_, end)| end);
        let ceiling = runs.get(i + 1).map_or(total, |&(next, _)| next);
        out.push((from.saturating_sub(opts.pad_ms).max(floor), (to + opts.pad_ms).min(ceiling)));
    }
    Ok(out)
}

/// A scenario replaying `ranges` of the recording `wav` (a path relative to the scenario
/// directory; `channel` as in `[input]`) with the pauses between them as recorded.
pub fn scenario_from_ranges(ranges: &[(u64, u64)], wav: PathBuf, channel: Option<u16>) -> Scenario {
    let mut previous_end = 0;
    let turns = ranges
        .iter()
        .map(|&(from, to)| {
            let gap = from - previous_end;
            previous_end = to;
            Turn {
                say: None,
                wav: Some(wav.clone()),
                channel,
                from_ms: Some(from),
                to_ms: Some(to),
                gap_ms: Some(gap),
                barge_in_ms: None,
                transcript: None,
                tool: None,
                reply_must_contain: Vec::new(),
                reply_must_not_contain: Vec::new(),
            }
        })
        .collect();
    Scenario {
        name: String::new(),
        description: Some(format!(
            "The caller's turns of {}{}, cut by the VAD and replayed at their recorded times",
            wav.display(),
            channel.map(|c| format!(" (channel {c})")).unwrap_or_default()
        )),
        expected_reply_delay_ms: crate::scenario::DEFAULT_REPLY_DELAY_MS,
        noise_dbfs: None,
        tail_silence_ms: crate::scenario::DEFAULT_TAIL_MS,
        turns,
        fake: FakeScript::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VAD that calls a frame speech when its first sample is not zero.
    struct Marker;

    impl Vad for Marker {
        fn sample_rate(&self) -> u32 {
            16_000
        }
        fn frame_samples(&self) -> usize {
            320
        }
        fn process(&mut self, frame: &[i16]) -> Result<f32, VadError> {
            Ok(if frame[0] != 0 { 1.0 } else { 0.0 })
        }
        fn reset(&mut self) {}
    }

    /// `spans` of speech, in ms, in `total_ms` of audio.
    fn audio(total_ms: usize, spans: &[(usize, usize)]) -> Vec<i16> {
        let mut s = vec![0i16; total_ms * 16];
        for &(from, to) in spans {
            s[from * 16..to * 16].fill(1000);
        }
        s
    }

    #[test]
    fn pauses_inside_a_turn_stay_in_it_and_clicks_are_dropped() {
        // A turn with a 400 ms pause in it, a 60 ms click, then a second turn after 2 s.
        let s = audio(10_000, &[(1000, 2000), (2400, 3000), (4000, 4060), (6000, 7500)]);
        let ranges = speech_ranges(&s, &mut Marker, &CutOptions::default()).unwrap();
        assert_eq!(ranges, [(850, 3150), (5850, 7650)]);
    }

    #[test]
    fn padding_never_reaches_into_a_neighbour_or_past_the_ends() {
        let s = audio(3000, &[(40, 1000), (1760, 2980)]);
        let opts = CutOptions { min_silence_ms: 700, min_speech_ms: 200, pad_ms: 500 };
        let ranges = speech_ranges(&s, &mut Marker, &opts).unwrap();
        assert_eq!(ranges, [(0, 1500), (1500, 3000)]);
    }

    #[test]
    fn the_scenario_keeps_the_recorded_pauses() {
        let s = scenario_from_ranges(&[(850, 3150), (5850, 7650)], "call.wav".into(), Some(1));
        let gaps: Vec<_> = s.turns.iter().map(|t| t.gap_ms).collect();
        assert_eq!(gaps, [Some(850), Some(2700)]);
        assert!(
            s.turns.iter().all(|t| t.channel == Some(1) && t.wav.as_deref() == Some("call.wav".as_ref()))
        );
        let text = toml::to_string(&s).unwrap();
        let back: Scenario = toml::from_str(&text).unwrap();
        assert_eq!((back.turns[1].from_ms, back.turns[1].to_ms), (Some(5850), Some(7650)));
    }
}
