//! Allocations per 20 ms frame on the Twilio media hot path, counted by a global allocator.
//!
//! `cargo bench -p voxpipe-twilio --bench frame_allocs`
//!
//! Each row runs one step of what a call does 50 times a second, over a warmed-up loop, and
//! prints allocations and bytes per frame and the time per frame. The wire format forces one
//! allocation each way: the WebSocket text a frame arrives in (tungstenite's) and the text a
//! frame leaves in. Everything else should be zero, or the one buffer a frame hands downstream.

use base64::Engine;
use std::hint::black_box;
use std::time::Instant;
use voxpipe_core::audio::{StreamResampler, g711};
use voxpipe_twilio::media::{Inbound, MediaView, OutboundWriter};

// dhat counts every allocation while its profiler runs and forwards untouched otherwise (the
// workspace forbids `unsafe`, so no hand-written counting allocator).
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

const FRAMES: u64 = 50_000;

/// Runs `step` `FRAMES` times untraced (for the time), then `FRAMES` times counting allocations;
/// prints one table row.
fn row(name: &str, forced: &str, mut step: impl FnMut()) {
    for _ in 0..1_000 {
        step();
    }
    let t0 = Instant::now();
    for _ in 0..FRAMES {
        step();
    }
    let ns = t0.elapsed().as_nanos() as f64 / FRAMES as f64;
    let profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get();
    for _ in 0..FRAMES {
        step();
    }
    let after = dhat::HeapStats::get();
    drop(profiler);
    let allocs = (after.total_blocks - before.total_blocks) as f64 / FRAMES as f64;
    let bytes = (after.total_bytes - before.total_bytes) as f64 / FRAMES as f64;
    println!("| {name} | {allocs:.2} | {bytes:.0} | {ns:.0} ns | {forced} |");
}

fn main() {
    // One Twilio media message as Twilio sends it: 160 μ-law bytes, base64, in JSON.
    let mulaw: Vec<u8> = (0..160u32).map(|i| (i * 37 % 256) as u8).collect();
    let payload = base64::engine::general_purpose::STANDARD.encode(&mulaw);
    let text = format!(
        r#"{{"event":"media","sequenceNumber":"42","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","media":{{"track":"inbound","chunk":"41","timestamp":"820","payload":"{payload}"}}}}"#
    );
    let mut raw = Vec::with_capacity(160);
    let pcm: Vec<i16> = (0..160).map(|i| ((i as f32 * 0.2).sin() * 8000.0) as i16).collect();

    println!("load average: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    println!();
    println!("| step, per 20 ms frame | allocations | bytes | time | what the wire forces |");
    println!("|---|---|---|---|---|");
    row(
        "caller frame in, tagged `Inbound` parse (before)",
        "0 (the socket's text is counted by tungstenite)",
        || {
            let Ok(Inbound::Media { media, .. }) = serde_json::from_str::<Inbound>(black_box(&text)) else {
                panic!("not media")
            };
            raw.clear();
            base64::engine::general_purpose::STANDARD.decode_vec(media.payload.as_bytes(), &mut raw).unwrap();
            black_box(&raw);
        },
    );
    row("caller frame in, `MediaView` in place (now)", "0", || {
        let media = MediaView::parse(black_box(&text)).expect("media");
        raw.clear();
        base64::engine::general_purpose::STANDARD.decode_vec(media.payload.as_bytes(), &mut raw).unwrap();
        black_box(media.timestamp.parse::<u64>().ok());
        black_box(&raw);
    });
    row(
        "μ-law → PCM16, the buffer handed downstream",
        "2: the samples and their `Arc`, handed to the next task",
        || {
            let mut samples = Vec::with_capacity(raw.len());
            g711::decode_ulaw(black_box(&raw), &mut samples);
            black_box(voxpipe_core::audio::Samples::from_vec(samples));
        },
    );
    let mut up = StreamResampler::new(8_000, 16_000).unwrap();
    let mut buf: Vec<i16> = Vec::with_capacity(4096);
    row("8 → 16 kHz for the VAD and ASR (reused buffer)", "0", || {
        up.push(black_box(&pcm), &mut buf).unwrap();
        if buf.len() > 2048 {
            buf.clear();
        }
    });
    let writer = OutboundWriter::new("MZ18ad3ab5a668481ce02b83e7395059f0");
    let mut out = Vec::with_capacity(160);
    row("agent frame out: PCM16 → μ-law → media message", "1: the message text", || {
        out.clear();
        g711::encode_ulaw(black_box(&pcm), &mut out);
        black_box(writer.media(&out));
    });
}
