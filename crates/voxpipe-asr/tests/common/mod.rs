//! Helpers shared by the integration tests: spoken test sentences and the cached model.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Reference sentences, spoken by espeak-ng.
pub const SENTENCES: &[&str] = &[
    "The quick brown fox jumps over the lazy dog.",
    "I would like to check the weather forecast for tomorrow morning.",
    "Can you remind me to call my sister after lunch?",
    "The meeting has been moved to the large conference room.",
    "She sells fresh vegetables at the market every weekend.",
    "Turn off the lights in the kitchen and lock the front door.",
];

/// Speaks `text` with espeak-ng (en-us, 150 words per minute) and returns 16 kHz mono PCM16.
pub fn espeak_16k(text: &str) -> Vec<i16> {
    // One file per call: tests in one binary run in parallel and may speak the same sentence,
    // so a name derived from the text would let one test delete the file another is reading.
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("voxpipe-asr-tts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.wav", N.fetch_add(1, Ordering::Relaxed)));
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng must be installed");
    assert!(status.success(), "espeak-ng failed");
    let reader = hound::WavReader::open(&path).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16));
    let samples: Vec<i16> = reader.into_samples::<i16>().map(|s| s.unwrap()).collect();
    let _ = std::fs::remove_file(&path);
    voxpipe_core::audio::resample_all(&samples, spec.sample_rate, 16_000).unwrap()
}

/// The shared model cache (`$VOXPIPE_MODEL_DIR` or `~/.cache/voxpipe/models`), so repeated
/// runs do not download again.
pub fn store() -> voxpipe_models::ModelStore {
    voxpipe_models::ModelStore::from_env().unwrap()
}

/// Pulls (once) and returns the ggml path of `id`.
pub async fn model(id: &str) -> PathBuf {
    store().pull(id, &voxpipe_models::NoProgress).await.unwrap()
}

/// A call context for driving a stage directly, and the receiving end of its event log.
pub fn call_context() -> (voxpipe_core::CallContext, tokio::sync::mpsc::Receiver<voxpipe_core::Event>) {
    voxpipe_core::CallContext::new(std::sync::Arc::new(voxpipe_core::NoTools))
}

/// 20 ms chunks of `samples` at `rate`, starting at `pts_ms`.
pub fn chunks(samples: &[i16], rate: u32, pts_ms: u64) -> Vec<voxpipe_core::Frame> {
    let n = (rate / 50) as usize;
    let all = voxpipe_core::Samples::from_vec(samples.to_vec());
    all.chunks(n)
        .enumerate()
        .map(|(i, s)| {
            let pts = std::time::Duration::from_millis(pts_ms + 20 * i as u64);
            voxpipe_core::Frame::InputAudio(voxpipe_core::AudioChunk::new(rate, pts, s))
        })
        .collect()
}

/// Drains every frame the stage sent until it closes its outbox.
pub async fn collect(mut inbox: voxpipe_core::Inbox) -> Vec<voxpipe_core::Frame> {
    let mut out = Vec::new();
    while let Some(f) = inbox.recv().await {
        out.push(f);
    }
    out
}
