//! Rendering a scenario into the one input WAV every pipeline hears: each turn's audio (a WAV,
//! or `say` text through `espeak-ng`), resampled to 16 kHz, placed on the call timeline by
//! `gap_ms` / `barge_in_ms`, with optional white noise over the whole call.
//!
//! Barge-in placement is an approximation: the reply to the previous turn is assumed to start
//! `expected_reply_delay_ms` after that turn's audio ends, so the barge-in lands `barge_in_ms`
//! into the reply only when the pipeline answers that fast. The report measures the real
//! interruption from the events, not from this estimate.

use crate::error::EvalError;
use crate::scenario::LoadedScenario;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use voxpipe_core::audio::resample_all;

/// The sample rate of rendered scenarios, Hz.
pub const RENDER_RATE: u32 = 16_000;

/// Where each turn sits on the rendered call timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TurnSpan {
    /// Start of the turn's audio, ms from the start of the call.
    pub start_ms: u64,
    /// End of the turn's audio, ms.
    pub end_ms: u64,
}

/// A rendered scenario.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The WAV every pipeline reads.
    pub wav: std::path::PathBuf,
    /// One span per turn.
    pub spans: Vec<TurnSpan>,
    /// Length of the whole call, ms.
    pub duration_ms: u64,
}

/// Renders `s` into `out` (16 kHz mono PCM16).
pub async fn render(s: &LoadedScenario, out: &Path) -> Result<Rendered, EvalError> {
    let mut clips = Vec::with_capacity(s.scenario.turns.len());
    // Turns cut from one recording read it once.
    let mut files: std::collections::HashMap<(&Path, Option<u16>), Vec<i16>> = Default::default();
    for (i, turn) in s.scenario.turns.iter().enumerate() {
        let clip = match (&turn.say, &turn.wav) {
            (Some(text), _) => speak(&s.scenario.name, text).await?,
            (None, Some(wav)) => {
                let clip = match files.entry((wav.as_path(), turn.channel)) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(read_clip(&s.scenario.name, &s.dir.join(wav), turn.channel)?)
                    }
                };
                let at = |ms: Option<u64>, or: usize| ms.map_or(or, |ms| samples_for(ms).min(clip.len()));
                let (from, to) = (at(turn.from_ms, 0), at(turn.to_ms, clip.len()));
                clip[from.min(to)..to].to_vec()
            }
            (None, None) => unreachable!("load_scenario rejects a turn without audio (turn {i})"),
        };
        clips.push(clip);
    }
    let (samples, spans) = place(s, &clips);
    let mut samples = samples;
    if let Some(dbfs) = s.scenario.noise_dbfs {
        add_noise(&mut samples, dbfs, seed_of(&s.scenario.name));
    }
    let duration_ms = ms(samples.len());
    write_wav(out, &samples)
        .map_err(|e| EvalError::Render { scenario: s.scenario.name.clone(), message: e })?;
    Ok(Rendered { wav: out.to_path_buf(), spans, duration_ms })
}

/// Lays the clips out on the call timeline; pure, so the timing is testable.
pub fn place(s: &LoadedScenario, clips: &[Vec<i16>]) -> (Vec<i16>, Vec<TurnSpan>) {
    let mut out: Vec<i16> = Vec::new();
    let mut spans = Vec::with_capacity(clips.len());
    let mut prev_end = 0u64;
    for (i, (turn, clip)) in s.scenario.turns.iter().zip(clips).enumerate() {
        let start_ms = match turn.barge_in_ms {
            Some(b) => prev_end + s.scenario.expected_reply_delay_ms + b,
            None => prev_end + turn.gap_ms.unwrap_or(if i == 0 { 500 } else { 5000 }),
        };
        let start = samples_for(start_ms);
        if out.len() < start {
            out.resize(start, 0);
        }
        // A barge-in never overlaps the caller's own previous turn (start > prev_end), so the
        // clip is appended after silence.
        out.truncate(start);
        out.extend_from_slice(clip);
        let end_ms = start_ms + ms(clip.len());
        spans.push(TurnSpan { start_ms, end_ms });
        prev_end = end_ms;
    }
    out.resize(out.len() + samples_for(s.scenario.tail_silence_ms), 0);
    (out, spans)
}

/// `espeak-ng -v en-us -w <tmp> <text>`, resampled to 16 kHz.
async fn speak(scenario: &str, text: &str) -> Result<Vec<i16>, EvalError> {
    let fail = |message: String| EvalError::Render { scenario: scenario.to_string(), message };
    let tmp = std::env::temp_dir().join(format!(
        "voxpipe-eval-{}-{}.wav",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let status = tokio::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&tmp)
        .arg(text)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .map_err(|e| fail(format!("running espeak-ng (install the `espeak-ng` package): {e}")))?;
    if !status.status.success() {
        let _ = std::fs::remove_file(&tmp);
        let stderr = String::from_utf8_lossy(&status.stderr);
        return Err(fail(format!("espeak-ng exited with {}: {}", status.status, stderr.trim())));
    }
    let clip = read_clip(scenario, &tmp, None);
    let _ = std::fs::remove_file(&tmp);
    clip
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A WAV file (one channel, or the mix) as 16 kHz mono PCM16.
fn read_clip(scenario: &str, path: &Path, channel: Option<u16>) -> Result<Vec<i16>, EvalError> {
    let fail = |message: String| EvalError::Render { scenario: scenario.to_string(), message };
    let (samples, rate) =
        voxpipe_transport::wav::read_wav_channel(path, channel, None).map_err(|e| fail(e.to_string()))?;
    if rate == RENDER_RATE {
        return Ok(samples);
    }
    resample_all(&samples, rate, RENDER_RATE).map_err(|e| fail(format!("resampling {}: {e}", path.display())))
}

/// Adds uniform white noise with RMS `dbfs`, saturating.
pub fn add_noise(samples: &mut [i16], dbfs: f32, seed: u64) {
    let rms = 32768.0 * 10f32.powf(dbfs / 20.0);
    let amp = rms * 3f32.sqrt(); // a uniform variable on [-a, a] has RMS a/sqrt(3)
    let mut rng = StdRng::seed_from_u64(seed);
    for s in samples {
        let n = rng.random_range(-amp..=amp);
        *s = (*s as f32 + n).round().clamp(i16::MIN as f32, i16::MAX as f32) as i16;
    }
}

fn seed_of(name: &str) -> u64 {
    // FNV-1a: stable across runs and platforms (std's hasher is not).
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn samples_for(ms: u64) -> usize {
    (ms * RENDER_RATE as u64 / 1000) as usize
}

fn ms(samples: usize) -> u64 {
    samples as u64 * 1000 / RENDER_RATE as u64
}

fn write_wav(path: &Path, samples: &[i16]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RENDER_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| format!("{}: {e}", path.display()))?;
    for s in samples {
        w.write_sample(*s).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    w.finalize().map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn scenario(toml_text: &str) -> LoadedScenario {
        let scenario: Scenario = toml::from_str(toml_text).unwrap();
        LoadedScenario { scenario, dir: ".".into() }
    }

    #[test]
    fn gaps_and_barge_ins_place_turns_on_the_timeline() {
        let s = scenario(
            "expected_reply_delay_ms = 1000\ntail_silence_ms = 2000\n\
             [[turns]]\nsay = \"a\"\n[[turns]]\nsay = \"b\"\ngap_ms = 3000\n\
             [[turns]]\nsay = \"c\"\nbarge_in_ms = 700\n",
        );
        let clip = vec![1000i16; samples_for(1000)];
        let (samples, spans) = place(&s, &[clip.clone(), clip.clone(), clip]);
        assert_eq!(
            spans,
            [
                TurnSpan { start_ms: 500, end_ms: 1500 },
                TurnSpan { start_ms: 4500, end_ms: 5500 },
                TurnSpan { start_ms: 5500 + 1000 + 700, end_ms: 8200 },
            ]
        );
        assert_eq!(ms(samples.len()), 8200 + 2000);
        assert_eq!(samples[samples_for(4000)], 0, "silence between turns");
        assert_eq!(samples[samples_for(7300)], 1000, "barge-in audio in place");
    }

    #[tokio::test]
    async fn a_wav_turn_takes_the_caller_s_channel_of_a_stereo_recording() {
        let dir = tempfile::tempdir().unwrap();
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(dir.path().join("call.wav"), spec).unwrap();
        for _ in 0..8000 {
            w.write_sample(0i16).unwrap(); // the agent's side, silent here
            w.write_sample(6000i16).unwrap(); // the caller's
        }
        w.finalize().unwrap();
        let mut s = scenario(
            "tail_silence_ms = 0\n[[turns]]\nwav = \"call.wav\"\nchannel = 1\ngap_ms = 0\n\
             [[turns]]\nwav = \"call.wav\"\nchannel = 1\ngap_ms = 500\nfrom_ms = 250\nto_ms = 750\n",
        );
        s.dir = dir.path().to_path_buf();
        let out = dir.path().join("rendered.wav");
        let r = render(&s, &out).await.unwrap();
        // The second turn is the middle half second of the same recording.
        assert_eq!(
            r.spans,
            [TurnSpan { start_ms: 0, end_ms: 1000 }, TurnSpan { start_ms: 1500, end_ms: 2000 }]
        );
        let (samples, rate) = voxpipe_transport::wav::read_wav(&out, None).unwrap();
        assert_eq!(rate, RENDER_RATE);
        let mid = samples[samples_for(500)];
        assert!((5900..=6100).contains(&mid), "the caller's channel, resampled: {mid}");
    }

    #[test]
    fn noise_has_the_requested_level_and_is_seeded() {
        let mut a = vec![0i16; 16_000];
        let mut b = a.clone();
        add_noise(&mut a, -30.0, 7);
        add_noise(&mut b, -30.0, 7);
        assert_eq!(a, b);
        let level = voxpipe_core::audio::rms_dbfs(&a);
        assert!((level + 30.0).abs() < 0.5, "{level} dBFS");
    }
}
