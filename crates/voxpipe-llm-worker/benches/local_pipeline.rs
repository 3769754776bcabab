//! `pipelines/local.toml` over a scripted 10-turn call, as `voxpipe run` runs it (whisper
//! tiny.en + Silero in process, SmolLM2-135M in `voxpipe-llm-worker`, Piper "joe"). Prints per
//! turn and p50/p95: end of speech -> final transcript (`asr_final_ms`), LLM time to first
//! token and tokens/s, TTS time to first audio and real-time factor, voice-to-voice latency.
//!
//! `cargo bench -p voxpipe-llm-worker --bench local_pipeline` (optimised build; needs espeak-ng and
//! sox to script the call, and the models, which it pulls). `VOXPIPE_BENCH_KEEP=1` keeps the
//! scripted call, the reply WAV and the event log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
#[allow(dead_code, reason = "shared with the tests, which use more of it")]
#[path = "../tests/support/local.rs"]
mod local;

const TURNS: [&str; 10] = [
    "Hi, I would like to check the status of my order.",
    "The order number is one two three four five.",
    "When will it arrive?",
    "Can I change the delivery address?",
    "What are your opening hours?",
    "Do you sell gift cards?",
    "How do I return a broken item?",
    "Is there a fee for returns?",
    "Can you book an appointment for tomorrow morning?",
    "Thank you, goodbye.",
];

/// Silence after each utterance: room for the reply to be spoken before the next turn.
const GAP_S: f64 = 12.0;

/// `--set` overrides from `VOXPIPE_BENCH_SET` (separated by `;`), to try settings without
/// editing local.toml: `VOXPIPE_BENCH_SET='turn.pause_ms=100;stages[2].chunking.first_chars=18'`.
fn extra_sets() -> Vec<String> {
    let sets = std::env::var("VOXPIPE_BENCH_SET").unwrap_or_default();
    let sets: Vec<String> =
        sets.split(';').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    if !sets.is_empty() {
        println!("overrides: {sets:?}");
    }
    sets
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?}: {status}");
}

/// The scripted call: espeak-ng utterances at 16 kHz separated by `GAP_S` of silence.
fn script_call(dir: &Path) -> PathBuf {
    let mut parts = Vec::new();
    let lead = dir.join("lead.wav");
    run(Command::new("sox")
        .args(["-n", "-r", "16000", "-c", "1", "-b", "16"])
        .arg(&lead)
        .args(["trim", "0", "0.5"]));
    parts.push(lead);
    for (i, text) in TURNS.iter().enumerate() {
        let raw = dir.join(format!("t{i}.raw.wav"));
        let wav = dir.join(format!("t{i}.wav"));
        let gap = dir.join(format!("g{i}.wav"));
        run(Command::new("espeak-ng").args(["-v", "en-us", "-s", "150", "-w"]).arg(&raw).arg(text));
        run(Command::new("sox").arg(&raw).args(["-r", "16000", "-c", "1", "-b", "16"]).arg(&wav));
        run(Command::new("sox").args(["-n", "-r", "16000", "-c", "1", "-b", "16"]).arg(&gap).args([
            "trim",
            "0",
            &GAP_S.to_string(),
        ]));
        parts.push(wav);
        parts.push(gap);
    }
    let call = dir.join("call.wav");
    run(Command::new("sox").args(&parts).arg(&call));
    call
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

#[derive(Default, Debug)]
struct Turn {
    metrics: BTreeMap<String, f64>,
    started_ms: Option<f64>,
    done_ms: Option<f64>,
    output_tokens: Option<f64>,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let store = voxpipe_models::ModelStore::from_env().unwrap();
    for id in ["whisper-tiny.en-q8", "smollm2-135m", "piper-joe", "silero-vad", "onnxruntime"] {
        store.resolve_or_pull(id, &voxpipe_models::NoProgress).await.unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    let dir = std::env::temp_dir().join(format!("voxpipe-bench-local-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let call = script_call(&dir);
    let events = dir.join("events.jsonl");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let t0 = Instant::now();
    let log = local::run_local(&call, &dir.join("reply.wav"), &events, extra_sets()).await;
    println!("call: {:.1} s; load average before: {}", t0.elapsed().as_secs_f64(), load.trim());
    for e in log.events.iter().filter(|e| e["type"].as_str().unwrap_or_default().ends_with("transcript")) {
        println!(
            "  {}: {}",
            e["type"].as_str().unwrap_or_default().trim_end_matches("_transcript"),
            e["text"]
        );
    }

    // Per-turn metrics from the event log; LLM timing from response_started/response_done.
    let mut turns: BTreeMap<u32, Turn> = BTreeMap::new();
    let mut replies = Vec::new();
    let mut response_turn = 0u32;
    for line in std::fs::read_to_string(&events).unwrap().lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = e["t_ms"].as_f64().unwrap_or_default();
        match e["type"].as_str().unwrap_or_default() {
            "metric" => {
                let turn = e["turn"].as_u64().unwrap_or_default() as u32;
                let name = e["name"].as_str().unwrap_or_default().to_string();
                turns
                    .entry(turn)
                    .or_default()
                    .metrics
                    .insert(name, e["value_ms"].as_f64().unwrap_or(f64::NAN));
            }
            "response_started" => {
                response_turn += 1;
                turns.entry(response_turn).or_default().started_ms = Some(t);
            }
            "response_done" => {
                let turn = turns.entry(response_turn).or_default();
                turn.done_ms = Some(t);
                turn.output_tokens = e["usage"]["output_tokens"].as_f64();
            }
            "assistant_transcript" if e["is_final"].as_bool() == Some(true) => {
                replies.push(e["text"].as_str().unwrap_or_default().to_string());
            }
            _ => {}
        }
    }

    // Piper's real-time factor on the replies the call produced, synthesised alone.
    let piper = voxpipe_tts::Piper::new(voxpipe_tts::PiperConfig::default()).await.expect("piper");
    let mut rtf = Vec::new();
    for text in replies.iter().filter(|t| !t.trim().is_empty()) {
        let t = Instant::now();
        let pcm = piper.synthesize(text).await.expect("synthesis");
        let audio_s = pcm.len() as f64 / 22_050.0;
        if audio_s > 0.0 {
            rtf.push(t.elapsed().as_secs_f64() / audio_s);
        }
    }

    println!(
        "{:>4} {:>9} {:>9} {:>8} {:>9} {:>9}",
        "turn", "asr_final", "llm_ttft", "tok/s", "tts_first", "v2v"
    );
    let (mut asr, mut ttft, mut tps, mut tts, mut v2v) = (vec![], vec![], vec![], vec![], vec![]);
    for (n, t) in &turns {
        let m = |k: &str| t.metrics.get(k).copied().unwrap_or(f64::NAN);
        let rate = match (t.started_ms, t.done_ms, t.output_tokens) {
            (Some(s), Some(d), Some(tok)) if tok > 1.0 && d - s - m("llm_first_token_ms") > 0.0 => {
                (tok - 1.0) / ((d - s - m("llm_first_token_ms")) / 1e3)
            }
            _ => f64::NAN,
        };
        println!(
            "{n:>4} {:>9.0} {:>9.0} {:>8.1} {:>9.0} {:>9.0}",
            m("asr_final_ms"),
            m("llm_first_token_ms"),
            rate,
            m("tts_first_audio_ms"),
            m("voice_to_voice_ms")
        );
        for (v, x) in [
            (&mut asr, m("asr_final_ms")),
            (&mut ttft, m("llm_first_token_ms")),
            (&mut tps, rate),
            (&mut tts, m("tts_first_audio_ms")),
            (&mut v2v, m("voice_to_voice_ms")),
        ] {
            if x.is_finite() {
                v.push(x);
            }
        }
    }
    println!("\n| metric | n | p50 | p95 |\n|---|---|---|---|");
    for (name, v) in [
        ("end of speech -> final transcript (ms)", &asr),
        ("LLM time to first token (ms)", &ttft),
        ("LLM tokens/s", &tps),
        ("TTS time to first audio (ms)", &tts),
        ("TTS real-time factor (Piper, alone)", &rtf),
        ("voice-to-voice (ms)", &v2v),
    ] {
        println!("| {name} | {} | {:.2} | {:.2} |", v.len(), pct(v, 50.0), pct(v, 95.0));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
    if std::env::var_os("VOXPIPE_BENCH_KEEP").is_some() {
        println!("call, reply and event log kept in {}", dir.display());
    } else {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
