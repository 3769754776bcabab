//! Silero VAD on real speech with known boundaries, and on a tone and noise that fool the
//! energy VAD.
//!
//! The model and the ONNX Runtime library are pulled through `voxpipe-models` into the default
//! cache (`$VOXPIPE_MODEL_DIR` or `~/.cache/voxpipe/models`; a second run does not download).
//! The speech is synthesised with `espeak-ng`, so its true extent is known to the sample.
#![cfg(feature = "silero")]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use voxpipe_core::audio::resample_all;
use voxpipe_turn::silero::SileroVad;
use voxpipe_turn::{EnergyVad, Vad, VadError};

/// Paths of the pulled model and library.
struct Models {
    model: PathBuf,
    lib: PathBuf,
}

/// Pulls both models once per test process.
fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let store = voxpipe_models::ModelStore::from_env().expect("model cache dir");
            let progress = voxpipe_models::NoProgress;
            let model = store.resolve_or_pull("silero-vad", &progress).await.expect("pull silero-vad");
            let lib = store.resolve_or_pull("onnxruntime", &progress).await.expect("pull onnxruntime");
            Models { model, lib }
        })
    })
}

fn silero(rate: u32) -> SileroVad {
    let m = models();
    SileroVad::load(&m.model, &m.lib, rate).expect("load Silero")
}

/// The two user turns, without punctuation so espeak inserts no pauses inside them.
const UTTERANCES: [&str; 2] =
    ["please book a table for two people tomorrow evening", "what is the weather like in paris"];
/// Silence before the first utterance, between the two, and after the second (seconds).
const LEAD_S: f64 = 0.7;
const GAP_S: f64 = 1.5;
const TAIL_S: f64 = 1.0;
/// |sample| above this (about -50 dBFS) counts as sound when trimming espeak's output, whose
/// silences are digital zeros.
const SOUND_THRESHOLD: i16 = 100;
/// Allowed error at each detected start (seconds).
const START_TOLERANCE_S: f64 = 0.1;
/// Allowed error at each detected end (seconds): early by at most 100 ms, late by at most five
/// 32 ms frames. Silero's own output holds above 0.35 for 70-130 ms after the last voiced sample
/// (the recurrent state's hangover; the reference Python loop over onnxruntime gives the same
/// probabilities to 1e-7), so ends land 100-140 ms late on this clip, starts within 40 ms.
const END_TOLERANCE_S: (f64, f64) = (-0.1, 0.16);

/// A speech region (start, end) in seconds.
type Region = (f64, f64);

/// A clip with the true speech regions.
struct Clip {
    rate: u32,
    samples: Vec<i16>,
    truth: Vec<Region>,
}

/// Synthesises `text` with espeak-ng (22,050 Hz mono PCM16).
fn espeak(text: &str) -> (u32, Vec<i16>) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "voxpipe-silero-{}-{}.wav",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng must be installed (apt-get install espeak-ng)");
    assert!(status.success(), "espeak-ng failed: {status}");
    let mut reader = hound::WavReader::open(&path).expect("espeak wav");
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16), "espeak writes mono PCM16");
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.expect("sample")).collect();
    std::fs::remove_file(&path).expect("remove temp wav");
    (spec.sample_rate, samples)
}

/// The non-silent part of `samples`.
fn trim(samples: &[i16]) -> &[i16] {
    let loud = |s: &i16| s.unsigned_abs() > SOUND_THRESHOLD.unsigned_abs();
    let first = samples.iter().position(loud).expect("espeak produced sound");
    let last = samples.iter().rposition(loud).expect("espeak produced sound");
    &samples[first..=last]
}

/// Lead silence, utterance 1, gap, utterance 2, tail silence, at espeak's rate.
fn speech_clip() -> &'static Clip {
    static CLIP: OnceLock<Clip> = OnceLock::new();
    CLIP.get_or_init(|| {
        let mut rate = 0;
        let mut samples = Vec::new();
        let mut truth = Vec::new();
        for (i, text) in UTTERANCES.iter().enumerate() {
            let (r, utterance) = espeak(text);
            rate = r;
            let silence_s = if i == 0 { LEAD_S } else { GAP_S };
            samples.resize(samples.len() + (silence_s * f64::from(r)) as usize, 0);
            let speech = trim(&utterance);
            let start = samples.len() as f64 / f64::from(r);
            samples.extend_from_slice(speech);
            truth.push((start, samples.len() as f64 / f64::from(r)));
        }
        samples.resize(samples.len() + (TAIL_S * f64::from(rate)) as usize, 0);
        Clip { rate, samples, truth }
    })
}

/// Speech probability per frame over the whole clip (a trailing partial frame is dropped).
fn probabilities(vad: &mut dyn Vad, samples: &[i16]) -> Vec<f32> {
    samples.chunks_exact(vad.frame_samples()).map(|f| vad.process(f).expect("inference")).collect()
}

/// Speech regions by hysteresis: p > 0.5 starts speech at that frame; p < 0.35 held for
/// 100 ms ends it where the quiet run began.
fn regions(probs: &[f32], frame_s: f64) -> Vec<Region> {
    let hold = (0.1 / frame_s).ceil() as usize;
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut quiet_since: Option<usize> = None;
    for (i, &p) in probs.iter().enumerate() {
        match start {
            None if p > 0.5 => start = Some(i),
            None => {}
            Some(s) => {
                if p < 0.35 {
                    let q = *quiet_since.get_or_insert(i);
                    if i + 1 - q >= hold {
                        out.push((s as f64 * frame_s, q as f64 * frame_s));
                        (start, quiet_since) = (None, None);
                    }
                } else {
                    quiet_since = None;
                }
            }
        }
    }
    if let Some(s) = start {
        let end = quiet_since.unwrap_or(probs.len());
        out.push((s as f64 * frame_s, end as f64 * frame_s));
    }
    out
}

fn assert_regions_match(found: &[Region], truth: &[Region], what: &str) {
    assert_eq!(found.len(), truth.len(), "{what}: found {found:.3?}, expected {truth:.3?}");
    for (f, t) in found.iter().zip(truth) {
        let (ds, de) = (f.0 - t.0, f.1 - t.1);
        assert!(
            ds.abs() <= START_TOLERANCE_S && (END_TOLERANCE_S.0..=END_TOLERANCE_S.1).contains(&de),
            "{what}: region {f:.3?} vs true {t:.3?} (start {ds:+.3} s, end {de:+.3} s); all found {found:.3?}"
        );
    }
}

/// Detects the regions of the speech clip resampled to `rate`.
fn detect_at(rate: u32) -> (Vec<Region>, &'static [Region]) {
    let clip = speech_clip();
    let audio = resample_all(&clip.samples, clip.rate, rate).expect("resample");
    let mut vad = silero(rate);
    let probs = probabilities(&mut vad, &audio);
    let frame_s = vad.frame_samples() as f64 / f64::from(rate);
    (regions(&probs, frame_s), &clip.truth)
}

#[test]
fn silero_finds_both_utterances_of_espeak_speech_at_16_khz_at_their_true_boundaries() {
    let (found, truth) = detect_at(16_000);
    assert_regions_match(&found, truth, "16 kHz");
}

#[test]
fn silero_finds_both_utterances_of_espeak_speech_at_8_khz_at_their_true_boundaries() {
    let (found, truth) = detect_at(8_000);
    assert_regions_match(&found, truth, "8 kHz");
}

/// `seconds` of a signal at `rate` scaled to `dbfs` RMS.
fn at_level(rate: u32, seconds: f64, dbfs: f64, signal: impl Fn(usize) -> f64) -> Vec<i16> {
    let n = (seconds * f64::from(rate)) as usize;
    let raw: Vec<f64> = (0..n).map(signal).collect();
    let rms = (raw.iter().map(|x| x * x).sum::<f64>() / n as f64).sqrt();
    let gain = 32768.0 * 10f64.powf(dbfs / 20.0) / rms;
    raw.iter().map(|x| (x * gain).round().clamp(-32768.0, 32767.0) as i16).collect()
}

/// Fraction of frames with probability above 0.5.
fn speech_fraction(vad: &mut dyn Vad, samples: &[i16]) -> f64 {
    let probs = probabilities(vad, samples);
    probs.iter().filter(|&&p| p >= 0.5).count() as f64 / probs.len() as f64
}

#[test]
fn a_tone_and_white_noise_are_not_speech_for_silero_while_the_energy_vad_takes_the_tone_for_speech() {
    let rate = 16_000;
    let tone =
        at_level(rate, 3.0, -30.0, |i| (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 16_000.0).sin());
    // xorshift64*: deterministic white noise, uniform in [-1, 1).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise_raw: Vec<f64> = (0..3 * rate as usize)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect();
    let noise = at_level(rate, 3.0, -30.0, |i| noise_raw[i]);
    assert!((voxpipe_core::audio::rms_dbfs(&tone) + 30.0).abs() < 0.1);
    assert!((voxpipe_core::audio::rms_dbfs(&noise) + 30.0).abs() < 0.1);

    for (name, signal) in [("440 Hz tone", &tone), ("white noise", &noise)] {
        let mut vad = silero(rate);
        let speechy = speech_fraction(&mut vad, signal);
        assert!(speechy < 0.2, "Silero called {:.0} % of {name} frames speech", speechy * 100.0);
    }
    let energy = speech_fraction(&mut EnergyVad::new(rate), &tone);
    assert!(energy > 0.8, "the energy VAD called only {:.0} % of tone frames speech", energy * 100.0);
}

#[test]
fn reset_makes_a_second_pass_identical_to_the_first() {
    let clip = speech_clip();
    let audio = resample_all(&clip.samples, clip.rate, 16_000).expect("resample");
    let mut vad = silero(16_000);
    let first = probabilities(&mut vad, &audio);
    // The recurrent state and the context window must both be cleared for this to hold.
    vad.reset();
    let second = probabilities(&mut vad, &audio);
    assert_eq!(first, second);
    assert!(first.iter().any(|&p| p > 0.9) && first.iter().any(|&p| p < 0.1));
}

#[test]
fn a_missing_model_file_names_the_pull_command() {
    let missing = std::env::temp_dir().join("voxpipe-no-such-dir/silero_vad.onnx");
    let err = SileroVad::load(&missing, &models().lib, 16_000).expect_err("no model");
    let msg = err.to_string();
    assert!(matches!(err, VadError::Load(_)), "{msg}");
    assert!(msg.contains("voxpipe models pull silero-vad"), "{msg}");
    assert!(msg.contains("voxpipe-no-such-dir"), "{msg}");
}

#[test]
fn a_file_that_is_not_a_silero_model_is_rejected_at_load() {
    let path = std::env::temp_dir().join(format!("voxpipe-not-a-model-{}.onnx", std::process::id()));
    std::fs::write(&path, b"not an onnx model").expect("write");
    let err = SileroVad::load(&path, &models().lib, 16_000).expect_err("garbage model");
    std::fs::remove_file(&path).expect("remove");
    assert!(matches!(err, VadError::Load(ref m) if m.contains("voxpipe-not-a-model")), "{err}");
}

#[test]
fn unsupported_rates_and_wrong_frame_lengths_are_rejected() {
    let m = models();
    let err = SileroVad::load(&m.model, &m.lib, 24_000).expect_err("24 kHz");
    assert!(err.to_string().contains("8000 or 16000"), "{err}");

    let mut vad = silero(8_000);
    assert_eq!((vad.sample_rate(), vad.frame_samples()), (8_000, 256));
    let err = vad.process(&[0; 512]).expect_err("512 samples at 8 kHz");
    assert!(matches!(err, VadError::Inference(ref m) if m.contains("256")), "{err}");
    // The rejected frame did not disturb the stream: silence is still silence.
    assert!(vad.process(&[0; 256]).expect("256 samples") < 0.1);
}

#[test]
fn from_store_loads_the_installed_models() {
    models();
    let store = voxpipe_models::ModelStore::from_env().expect("store");
    let mut vad = SileroVad::from_store(&store, 16_000).expect("installed models load");
    assert_eq!((vad.sample_rate(), vad.frame_samples()), (16_000, 512));
    assert!(vad.process(&[0; 512]).expect("frame") < 0.1);

    let empty = voxpipe_models::ModelStore::new(std::env::temp_dir().join("voxpipe-empty-model-store"));
    let err = SileroVad::from_store(&empty, 16_000).expect_err("nothing installed");
    assert!(err.to_string().contains("voxpipe models pull onnxruntime"), "{err}");
}

/// A synthetic vowel: 0.2 s of silence, then 1 s of a gliding 110-150 Hz pulse train through
/// two formant resonators (700 and 1200 Hz) under a slow amplitude envelope.
fn synthetic_vowel(rate: u32) -> Vec<i16> {
    let fs = f64::from(rate);
    let resonator = |f: f64, bw: f64| {
        let r = (-std::f64::consts::PI * bw / fs).exp();
        (2.0 * r * (2.0 * std::f64::consts::PI * f / fs).cos(), -r * r)
    };
    let (f1, f2) = (resonator(700.0, 80.0), resonator(1200.0, 100.0));
    let (mut y1, mut y2) = ([0f64; 2], [0f64; 2]);
    let mut phase = 0.0;
    let mut out = vec![0i16; (0.2 * fs) as usize];
    for i in 0..rate as usize {
        let t = i as f64 / fs;
        phase += (130.0 + 20.0 * (2.0 * std::f64::consts::PI * 3.0 * t).sin()) / fs;
        let pulse = if phase >= 1.0 {
            phase -= 1.0;
            1.0
        } else {
            0.0
        };
        let a = f1.0 * y1[0] + f1.1 * y1[1] + pulse;
        y1 = [a, y1[0]];
        let b = f2.0 * y2[0] + f2.1 * y2[1] + a;
        y2 = [b, y2[0]];
        let envelope = (std::f64::consts::PI * t).sin();
        out.push((b * envelope * 400.0).round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

/// Silero's probabilities for [`synthetic_vowel`], computed by the reference loop (the
/// `OnnxWrapper` of the `silero-vad` Python package: context prepended, state fed back) on
/// Python onnxruntime 1.32.0 from the same samples (written out as PCM16):
///
/// ```text
/// x = pcm.astype(np.float32) / 32768; state = zeros((2, 1, 128)); ctx = zeros((1, c))
/// for each window w of n samples:
///     inp = concatenate([ctx, w[None]], axis=1)
///     p, state = session.run(None, {"input": inp, "state": state, "sr": np.array(sr, np.int64)})
///     ctx = inp[:, -c:]
/// ```
const REFERENCE_16K: [f32; 37] = [
    0.001670, 0.006884, 0.008911, 0.007857, 0.005907, 0.005961, 0.114724, 0.792096, 0.820901, 0.809946,
    0.797601, 0.756347, 0.635339, 0.559854, 0.327350, 0.272197, 0.189428, 0.154545, 0.133679, 0.102311,
    0.064198, 0.040287, 0.037073, 0.034165, 0.022770, 0.030558, 0.023741, 0.030685, 0.015938, 0.015259,
    0.010554, 0.006445, 0.007839, 0.009969, 0.008968, 0.009733, 0.008102,
];
const REFERENCE_8K: [f32; 37] = [
    0.017367, 0.017467, 0.022407, 0.014889, 0.011105, 0.009810, 0.067516, 0.569434, 0.647513, 0.722364,
    0.771453, 0.734005, 0.738886, 0.714771, 0.696810, 0.635202, 0.483857, 0.409590, 0.341079, 0.237606,
    0.201676, 0.185505, 0.130877, 0.139707, 0.127173, 0.111209, 0.112993, 0.114610, 0.104744, 0.123140,
    0.115889, 0.103884, 0.107985, 0.143789, 0.123875, 0.180268, 0.218582,
];

#[test]
fn probabilities_match_the_reference_python_loop_at_both_rates() {
    for (rate, reference) in [(16_000, &REFERENCE_16K[..]), (8_000, &REFERENCE_8K[..])] {
        let mut vad = silero(rate);
        let probs = probabilities(&mut vad, &synthetic_vowel(rate));
        assert_eq!(probs.len(), reference.len());
        for (i, (p, r)) in probs.iter().zip(reference).enumerate() {
            assert!((p - r).abs() < 1e-4, "{rate} Hz frame {i}: {p} vs reference {r}; all {probs:?}");
        }
    }
}

#[test]
fn a_vad_built_on_an_environment_from_elsewhere_matches_the_reference() {
    let env = voxpipe_turn::ort_env::init_onnxruntime(&models().lib).expect("environment");
    let mut vad = SileroVad::with_environment(env, &models().model, 16_000).expect("load on shared env");
    let probs = probabilities(&mut vad, &synthetic_vowel(16_000));
    assert!(probs.iter().zip(REFERENCE_16K).all(|(p, r)| (p - r).abs() < 1e-4), "{probs:?}");
    // Building a second environment is what `ort` refuses; the initialiser hands out the first.
    let again =
        voxpipe_turn::ort_env::init_onnxruntime(std::path::Path::new("/nonexistent")).expect("same env");
    assert!(std::ptr::eq(env, again));
    let second = ort::init_from(&models().lib).expect("library already loaded").build();
    assert!(second.is_err(), "ort allows one environment per process");
}

#[test]
fn the_shared_engine_batches_many_calls_and_matches_a_session_of_their_own() {
    use voxpipe_turn::silero_shared::SileroEngine;
    let m = models();
    let clip = speech_clip();
    let audio = resample_all(&clip.samples, clip.rate, 16_000).expect("resample");
    let expected = probabilities(&mut silero(16_000), &audio);
    let engine = SileroEngine::start(&m.model, &m.lib, 16_000).expect("engine");
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        // Twelve calls at once, each a few frames behind the last: their frames meet in batches of
        // every size, and each call must still get exactly its own probabilities.
        let calls: Vec<_> = (0..12)
            .map(|i| {
                let mut stream = engine.stream();
                let audio = audio.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    for (n, frame) in audio.chunks_exact(512).enumerate() {
                        if n == 0 {
                            tokio::time::sleep(std::time::Duration::from_millis(i * 3)).await;
                        }
                        got.push(stream.process(frame).await.expect("inference"));
                    }
                    got
                })
            })
            .collect();
        for call in calls {
            let got = call.await.expect("call task");
            assert_eq!(got.len(), expected.len());
            let worst = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "a batched call differs from its own session by {worst}");
        }
        // A frame of the wrong length is refused without disturbing the stream.
        let mut s = engine.stream();
        assert!(s.process(&[0; 100]).await.is_err());
        assert!(s.process(&[0; 512]).await.expect("frame") < 0.1);
    });
}
