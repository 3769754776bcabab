//! Helpers shared by the end-to-end tests in `tests/*.rs`: synthetic calls, WAV analysis and
//! event-log reading.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repo root").to_path_buf()
}

/// A path under the repository root.
pub fn repo_path(rel: &str) -> PathBuf {
    repo_root().join(rel)
}

/// A sine "voice" at `hz`, `ms` long, at amplitude `amp` (0..1). The fakes' energy VADs hear
/// it as speech.
pub fn tone(rate: u32, hz: f32, ms: u64, amp: f32) -> Vec<i16> {
    let n = (rate as u64 * ms / 1000) as usize;
    (0..n)
        .map(|i| ((2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * amp * 32767.0) as i16)
        .collect()
}

/// Digital silence.
pub fn silence(rate: u32, ms: u64) -> Vec<i16> {
    vec![0; (rate as u64 * ms / 1000) as usize]
}

/// Writes mono PCM16.
pub fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for &s in samples {
        w.write_sample(s).expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

/// Reads a mono PCM16 WAV: (samples, rate).
pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let mut r = hound::WavReader::open(path).expect("open wav");
    let rate = r.spec().sample_rate;
    (r.samples::<i16>().map(|s| s.expect("sample")).collect(), rate)
}

/// Regions (start ms, end ms) where 10 ms windows have any sample above `threshold`, merging
/// gaps shorter than `min_gap_ms`.
pub fn active_regions(samples: &[i16], rate: u32, threshold: i16, min_gap_ms: u64) -> Vec<(u64, u64)> {
    let win = (rate / 100) as usize;
    let mut regions: Vec<(u64, u64)> = Vec::new();
    for (i, w) in samples.chunks(win).enumerate() {
        if w.iter().any(|s| s.unsigned_abs() > threshold as u16) {
            let start = i as u64 * 10;
            let end = start + (w.len() as u64 * 1000 / rate as u64);
            match regions.last_mut() {
                Some(last) if start <= last.1 + min_gap_ms => last.1 = end,
                _ => regions.push((start, end)),
            }
        }
    }
    regions
}

/// The event log as JSON values.
pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read event log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each event-log line is JSON"))
        .collect()
}

/// Events of one `type`.
pub fn events_of<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}
