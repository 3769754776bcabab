//! What the WebRTC path costs per 20 ms frame on this machine: Opus encoding of the agent's
//! audio (48 kHz, VoIP mode, as the sink does) and decoding of the caller's packets straight to
//! 16 kHz (as the source does). The latency the path adds (the page's jitter buffer, the
//! network) is measured in a real browser: see BENCHMARKS.md and the `browser` e2e test.
//!
//! ```sh
//! cargo bench -p voxpipe-webrtc --bench opus_frame
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

const FRAMES: usize = 3000;
const WARMUP: usize = 100;

fn row(name: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = times.iter().map(|d| us(*d)).sum::<f64>() / times.len() as f64;
    let p99 = us(times[times.len() * 99 / 100]);
    // Share of one core a call spends on it: per-frame time over the 20 ms the frame lasts.
    println!("| {name} | {mean:.1} | {p99:.1} | {:.2} % |", mean / 20_000.0 * 100.0);
}

fn main() {
    let audio = voxpipe_core::audio::synth::vowel_and_silence(48_000, 960 * (FRAMES + WARMUP));
    let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let mut packet = vec![0u8; 1500];
    let mut packets = Vec::with_capacity(FRAMES + WARMUP);
    let mut enc_times = Vec::with_capacity(FRAMES);
    for (i, frame) in audio.chunks_exact(960).enumerate() {
        let t = Instant::now();
        let n = encoder.encode(black_box(frame), &mut packet).unwrap();
        if i >= WARMUP {
            enc_times.push(t.elapsed());
        }
        packets.push(packet[..n].to_vec());
    }
    let mut decoder = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
    let mut pcm = vec![0i16; 1920];
    let mut dec_times = Vec::with_capacity(FRAMES);
    for (i, p) in packets.iter().enumerate() {
        let t = Instant::now();
        black_box(decoder.decode(black_box(p), &mut pcm, false).unwrap());
        if i >= WARMUP {
            dec_times.push(t.elapsed());
        }
    }
    let bytes: usize = packets.iter().map(Vec::len).sum();
    println!("Opus per 20 ms frame, one thread, {FRAMES} frames of speech-like audio");
    println!(
        "(mean packet {} bytes, {:.1} kbit/s)\n",
        bytes / packets.len(),
        bytes as f64 * 8.0 / (packets.len() as f64 * 20.0)
    );
    println!("| step | mean µs | p99 µs | of one core per call |");
    println!("|---|---|---|---|");
    row("encode, 48 kHz VoIP (agent → page)", enc_times);
    row("decode to 16 kHz (page → pipeline)", dec_times);
}
