//! Decode time of the local whisper models for 2, 5 and 10 s utterances, with the encoder
//! context sized to the utterance (`audio_ctx = "auto"`) and with the full 30 s window.
//!
//! `cargo bench -p voxpipe-asr --features whisper --bench whisper_decode`. Pulls
//! `whisper-tiny.en` into the model cache if needed; includes `whisper-base` when installed.

use std::time::Duration;
use voxpipe_asr::{AudioCtx, AudioCtxMode, DecodeOptions, Transcriber, WhisperConfig};
use voxpipe_core::audio::pcm::i16_to_f32;
use voxpipe_models::{ModelStore, NoProgress};

const TEXT: &str = "I would like to check the weather forecast for tomorrow morning. \
    Can you remind me to call my sister after lunch? The meeting has been moved to the large \
    conference room. She sells fresh vegetables at the market every weekend.";
const RUNS: usize = 3;

fn speech_16k() -> Vec<f32> {
    let path = std::env::temp_dir().join(format!("voxpipe-bench-{}.wav", std::process::id()));
    let ok = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&path)
        .arg(TEXT)
        .status()
        .expect("espeak-ng must be installed")
        .success();
    assert!(ok, "espeak-ng failed");
    let r = hound::WavReader::open(&path).expect("espeak wrote a WAV");
    let rate = r.spec().sample_rate;
    let s: Vec<i16> = r.into_samples::<i16>().map(|s| s.expect("valid sample")).collect();
    let _ = std::fs::remove_file(&path);
    let s = voxpipe_core::audio::resample_all(&s, rate, 16_000).expect("resample");
    s.iter().map(|&x| i16_to_f32(x)).collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let store = ModelStore::from_env().expect("model cache");
    let mut models =
        vec![("tiny.en", rt.block_on(store.pull("whisper-tiny.en", &NoProgress)).expect("pull tiny.en"))];
    if let Some(base) = store.path("whisper-base") {
        models.push(("base", base));
    }
    let speech = speech_16k();
    println!(
        "{} s of espeak-ng speech; median of {RUNS} runs after a warm-up; 2 threads",
        speech.len() / 16_000
    );
    println!("| model   | audio | audio_ctx   | decode ms | RTF   | text (start) |");
    println!("|---------|-------|-------------|-----------|-------|--------------|");
    for (name, path) in &models {
        let cfg = WhisperConfig { model: path.display().to_string(), ..Default::default() };
        let t = Transcriber::load(path, &cfg).expect("load model");
        for secs in [2usize, 5, 10] {
            let clip = &speech[..(secs * 16_000).min(speech.len())];
            for mode in [AudioCtxMode::Auto, AudioCtxMode::Full] {
                let opts = DecodeOptions { audio_ctx: Some(AudioCtx::Mode(mode)), ..Default::default() };
                let warm = t.transcribe_blocking(clip, &opts).expect("decode");
                let times: Vec<Duration> =
                    (0..RUNS).map(|_| t.transcribe_blocking(clip, &opts).expect("decode").elapsed).collect();
                let m = median(times);
                let label = format!("{mode:?} ({})", warm.audio_ctx).to_lowercase();
                let text: String = warm.text.chars().take(40).collect();
                println!(
                    "| {name:<7} | {secs:>3} s | {label:<11} | {:>9} | {:.3} | {text} |",
                    m.as_millis(),
                    m.as_secs_f64() / secs as f64
                );
            }
        }
    }
}
