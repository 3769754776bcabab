//! Decode time of the local whisper models for 2, 5 and 10 s utterances, with the encoder
//! context sized to the utterance (`audio_ctx = "auto"`) and with the full 30 s window.
//!
//! Then the sensitivity to other work on the same cores: a 5 s utterance with tiny.en decoded
//! with 1 and 2 decoder threads while 0, 1 or 2 busy threads compete for the CPU.
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

/// Threads that keep a core busy until dropped.
struct Busy(std::sync::Arc<std::sync::atomic::AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Busy {
    fn start(n: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name("busy".into())
                    .spawn(move || {
                        let mut x = 0u64;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                        }
                    })
                    .expect("spawn a busy thread")
            })
            .collect();
        Self(stop, handles)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in self.1.drain(..) {
            let _ = h.join();
        }
    }
}

fn contention(path: &std::path::Path, speech: &[f32]) {
    let clip = &speech[..(5 * 16_000).min(speech.len())];
    let opts = DecodeOptions { audio_ctx: Some(AudioCtx::Mode(AudioCtxMode::Auto)), ..Default::default() };
    println!("\ntiny.en, 5 s utterance, while other threads keep the cores busy (median of {RUNS})");
    println!("| decoder threads | busy threads | decode ms | RTF |");
    println!("|---:|---:|---:|---:|");
    for threads in [1u16, 2] {
        let cfg = WhisperConfig { model: path.display().to_string(), threads, ..Default::default() };
        let t = Transcriber::load(path, &cfg).expect("load model");
        for busy in [0usize, 1, 2] {
            let _load = Busy::start(busy);
            let _ = t.transcribe_blocking(clip, &opts).expect("decode");
            let m = median(
                (0..RUNS).map(|_| t.transcribe_blocking(clip, &opts).expect("decode").elapsed).collect(),
            );
            println!("| {threads} | {busy} | {} | {:.3} |", m.as_millis(), m.as_secs_f64() / 5.0);
        }
    }
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
    if std::env::args().any(|a| a == "--contention-only") {
        contention(&models[0].1, &speech);
        return;
    }
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
    contention(&models[0].1, &speech);
}
