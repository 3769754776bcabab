//! Time to first audio and real-time factor of the local voices (`tts.piper`, `tts.espeak`)
//! on five sentences. Run in release:
//!
//! ```sh
//! cargo bench -p voxpipe-tts --features piper --bench local_tts
//! ```
//!
//! Time to first audio: from the text to the first sentence's PCM (phonemize + one inference
//! for Piper). Real-time factor: synthesis time / audio duration (below 1 is faster than
//! real time).

use std::time::Instant;
use voxpipe_tts::{Espeak, EspeakConfig, Piper, PiperConfig, Synthesizer};

const SENTENCES: [&str; 5] = [
    "Hello, thanks for calling the bakery.",
    "We open at seven every morning, including weekends.",
    "Our sourdough comes out of the oven at half past eight.",
    "Would you like me to set one aside for you?",
    "Great, it will be waiting for you at the counter under your name.",
];

struct Row {
    text_chars: usize,
    first_audio_ms: f64,
    total_ms: f64,
    audio_s: f64,
}

fn print_table(name: &str, rows: &[Row]) {
    println!("\n{name}");
    println!("| chars | first audio ms | synth ms | audio s | RTF |");
    println!("|---:|---:|---:|---:|---:|");
    for r in rows {
        let rtf = r.total_ms / 1000.0 / r.audio_s;
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.3} |",
            r.text_chars, r.first_audio_ms, r.total_ms, r.audio_s, rtf
        );
    }
    let n = rows.len() as f64;
    let ttfa = rows.iter().map(|r| r.first_audio_ms).sum::<f64>() / n;
    let rtf =
        rows.iter().map(|r| r.total_ms).sum::<f64>() / 1000.0 / rows.iter().map(|r| r.audio_s).sum::<f64>();
    println!("| mean | {ttfa:.0} | | | {rtf:.3} |");
}

async fn bench_piper() -> Vec<Row> {
    let piper = Piper::new(PiperConfig::default()).await.expect("voice loads");
    let rate = f64::from(piper.sample_rate());
    // Warm-up: the first inference pays for kernel selection and page faults.
    piper.synthesize("Warming up.").await.expect("warm-up");
    let mut rows = Vec::new();
    for text in SENTENCES {
        let started = Instant::now();
        let mut first_audio_ms = None;
        let mut samples = 0usize;
        for phonemes in piper.phonemize(text).await.expect("phonemize") {
            let audio = piper.synthesize_phonemes(&phonemes).await.expect("synthesize");
            first_audio_ms.get_or_insert(started.elapsed().as_secs_f64() * 1000.0);
            samples += audio.samples.len();
        }
        rows.push(Row {
            text_chars: text.chars().count(),
            first_audio_ms: first_audio_ms.unwrap_or_default(),
            total_ms: started.elapsed().as_secs_f64() * 1000.0,
            audio_s: samples as f64 / rate,
        });
    }
    rows
}

async fn bench_espeak() -> Vec<Row> {
    let espeak = Espeak::new(EspeakConfig::default()).await.expect("espeak starts");
    let rate = f64::from(espeak.sample_rate());
    espeak.synthesize("Warming up.").await.expect("warm-up");
    let mut rows = Vec::new();
    for text in SENTENCES {
        let started = Instant::now();
        let samples = espeak.synthesize(text).await.expect("synthesize");
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        rows.push(Row {
            text_chars: text.chars().count(),
            first_audio_ms: ms,
            total_ms: ms,
            audio_s: samples.len() as f64 / rate,
        });
    }
    rows
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        print_table("tts.piper (piper-joe, onnxruntime 1.32, CPU)", &bench_piper().await);
        print_table("tts.espeak (en-us, 175 wpm)", &bench_espeak().await);
    });
}
