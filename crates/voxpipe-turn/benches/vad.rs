//! Cost per frame of the energy VAD and of Silero VAD, as a table.
//!
//! ```sh
//! cargo bench -p voxpipe-turn --features silero --bench vad
//! ```
//!
//! Pulls `silero-vad` and `onnxruntime` through `voxpipe-models` if they are not cached. Each
//! VAD runs over ~2000 frames of a synthetic vowel alternating with silence (Silero's cost does
//! not depend on the content) after 100 warm-up frames; one thread, timed per frame.

use std::hint::black_box;
use std::time::{Duration, Instant};
use voxpipe_turn::silero::SileroVad;
use voxpipe_turn::{EnergyVad, Vad};

const FRAMES: usize = 2000;
const WARMUP: usize = 100;

/// One table row: per-frame timings of `vad` over `FRAMES` frames.
struct Row {
    name: String,
    frame_ms: f64,
    times: Vec<Duration>,
}

fn measure(name: &str, vad: &mut dyn Vad) -> Row {
    let n = vad.frame_samples();
    let audio = voxpipe_core::audio::synth::vowel_and_silence(vad.sample_rate(), n * (FRAMES + WARMUP));
    let mut frames = audio.chunks_exact(n);
    for f in frames.by_ref().take(WARMUP) {
        black_box(vad.process(f).expect("inference"));
    }
    let mut times = Vec::with_capacity(FRAMES);
    for f in frames {
        let t = Instant::now();
        black_box(vad.process(black_box(f)).expect("inference"));
        times.push(t.elapsed());
    }
    let frame_ms = n as f64 * 1000.0 / f64::from(vad.sample_rate());
    Row { name: name.into(), frame_ms, times }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_table(rows: &mut [Row]) {
    println!(
        "| VAD | frame | mean µs | p50 µs | p95 µs | max µs | mean µs per 20 ms of audio | real-time factor |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        row.times.sort_unstable();
        let n = row.times.len();
        let mean = row.times.iter().map(|&d| micros(d)).sum::<f64>() / n as f64;
        let p50 = micros(row.times[n / 2]);
        let p95 = micros(row.times[n * 95 / 100]);
        let max = micros(row.times[n - 1]);
        let per_20ms = mean * 20.0 / row.frame_ms;
        let rtf = mean / (row.frame_ms * 1000.0);
        println!(
            "| {} | {:.0} ms | {mean:.1} | {p50:.1} | {p95:.1} | {max:.1} | {per_20ms:.1} | {rtf:.5} |",
            row.name, row.frame_ms
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (model, lib) = rt.block_on(async {
        let store = voxpipe_models::ModelStore::from_env().expect("model cache dir");
        let p = voxpipe_models::NoProgress;
        let model = store.resolve_or_pull("silero-vad", &p).await.expect("pull silero-vad");
        let lib = store.resolve_or_pull("onnxruntime", &p).await.expect("pull onnxruntime");
        (model, lib)
    });
    let mut rows = vec![
        measure("energy, 16 kHz", &mut EnergyVad::new(16_000)),
        measure("energy, 8 kHz", &mut EnergyVad::new(8_000)),
        measure("Silero, 16 kHz", &mut SileroVad::load(&model, &lib, 16_000).expect("load Silero")),
        measure("Silero, 8 kHz", &mut SileroVad::load(&model, &lib, 8_000).expect("load Silero")),
    ];
    println!("{FRAMES} frames each after {WARMUP} warm-up frames, one thread\n");
    print_table(&mut rows);
}
