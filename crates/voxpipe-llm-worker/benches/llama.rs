//! Time to first token and generation speed of `llm.local` with SmolLM2-135M, over 10 short
//! user turns of one call (so turns 2-10 reuse the KV cache), through the stage and its
//! `voxpipe-llm-worker` process. Run with `cargo bench -p voxpipe-llm-worker --bench llama`
//! (optimised build); `VOXPIPE_LLAMA_THREADS` overrides the thread count (default 1),
//! `VOXPIPE_LLAMA_BATCH_THREADS` the prompt-processing threads (default: the same).

use std::sync::Arc;
use std::time::{Duration, Instant};
use voxpipe_core::{CallContext, Frame, NoTools, Stage, Transcript, channel};
use voxpipe_llm_local::{LocalLlm, LocalLlmConfig};

const PROMPTS: [&str; 10] = [
    "Hi, who are you?",
    "What is the capital of France?",
    "Give me a tip for sleeping better.",
    "How many legs does a spider have?",
    "Name a primary colour.",
    "What is two plus three?",
    "Suggest a name for a cat.",
    "What is the opposite of hot?",
    "Tell me a fun fact about the Moon.",
    "Say goodbye politely.",
];

struct Turn {
    ttft: Duration,
    total: Duration,
    prompt: u64,
    cached: u64,
    generated: u64,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let threads = std::env::var("VOXPIPE_LLAMA_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(1);
    let batch_threads = std::env::var("VOXPIPE_LLAMA_BATCH_THREADS").ok().and_then(|t| t.parse().ok());
    println!("threads {threads}, batch threads {}", batch_threads.unwrap_or(threads));
    let config = LocalLlmConfig {
        instructions: "You are a friendly phone assistant. Answer in one short sentence.".into(),
        temperature: 0.0,
        max_tokens: 64,
        threads,
        batch_threads,
        worker: Some(env!("CARGO_BIN_EXE_voxpipe-llm-worker").into()),
        ..Default::default()
    };
    let load = Instant::now();
    let stage = LocalLlm::load(config).await.expect("the worker starts and loads smollm2-135m");
    println!("worker start + model load: {:.0} ms", load.elapsed().as_secs_f64() * 1e3);
    let (ctx, mut event_rx) = CallContext::new(Arc::new(NoTools));
    tokio::spawn(async move { while event_rx.recv().await.is_some() {} });
    let (input, stage_in) = channel();
    let (stage_out, mut output) = channel();
    let stage = Box::new(stage);
    let task = tokio::spawn(stage.run(ctx, stage_in, stage_out));

    let mut turns = Vec::new();
    println!(
        "{:>4} {:>9} {:>9} {:>7} {:>7} {:>6} {:>8}",
        "turn", "ttft_ms", "total_ms", "prompt", "cached", "gen", "tok/s"
    );
    for (i, prompt) in PROMPTS.iter().enumerate() {
        let t0 = Instant::now();
        let said = Transcript { item: None, text: (*prompt).into(), is_final: true };
        input.send(Frame::UserTranscript(said)).await.unwrap();
        let mut first = None;
        let turn = loop {
            match output.recv().await.expect("stage running") {
                Frame::TextDelta(_) if first.is_none() => first = Some(t0.elapsed()),
                Frame::ResponseDone(done) => {
                    let u = done.usage.unwrap_or_default();
                    let total = t0.elapsed();
                    break Turn {
                        ttft: first.unwrap_or(total),
                        total,
                        prompt: u.input_tokens,
                        cached: u.cached_tokens,
                        generated: u.output_tokens,
                    };
                }
                _ => {}
            }
        };
        println!(
            "{:>4} {:>9.1} {:>9.1} {:>7} {:>7} {:>6} {:>8.1}",
            i + 1,
            turn.ttft.as_secs_f64() * 1e3,
            turn.total.as_secs_f64() * 1e3,
            turn.prompt,
            turn.cached,
            turn.generated,
            rate(&turn)
        );
        turns.push(turn);
    }
    input.send(Frame::EndOfStream).await.unwrap();
    task.await.unwrap().unwrap();

    let n = turns.len() as f64;
    let mut ttfts: Vec<f64> = turns.iter().map(|t| t.ttft.as_secs_f64() * 1e3).collect();
    ttfts.sort_by(f64::total_cmp);
    let generated: u64 = turns.iter().map(|t| t.generated.saturating_sub(1)).sum();
    let decode_time: f64 = turns.iter().map(|t| (t.total - t.ttft).as_secs_f64()).sum();
    println!(
        "threads {threads}: ttft mean {:.1} ms, median {:.1} ms, max {:.1} ms; generation {:.1} tokens/s",
        ttfts.iter().sum::<f64>() / n,
        ttfts[ttfts.len() / 2],
        ttfts[ttfts.len() - 1],
        generated as f64 / decode_time
    );
}

/// Tokens per second after the first token.
fn rate(t: &Turn) -> f64 {
    let secs = (t.total - t.ttft).as_secs_f64();
    if secs > 0.0 { t.generated.saturating_sub(1) as f64 / secs } else { 0.0 }
}
