//! Turn-taking latency distributions over generated scenarios (a report, not a test).
//!
//! `cargo bench -p voxpipe-e2e --bench turn_latency [-- N]`
//!
//! Generates N calls (default 24; seeded, so every run sees the same calls): a caller turn of
//! random length, then a barge-in at a random point of the assistant's reply. Each call runs
//! through three pipelines on a virtual clock against the local fakes:
//!
//! - `native-server`: Realtime with the provider's server VAD (the fake's);
//! - `native-local`: Realtime with `turn_detection: none`, voxpipe's controller deciding;
//! - `cascade-local`: transcription → chat → speech fakes with the controller and the gate
//!   (transcript end-of-turn policy, word guards).
//!
//! Fake latencies (so that the numbers mean something): Realtime first audio 200 ms;
//! transcription 150 ms; chat first token 250 ms; speech first byte 150 ms.
//!
//! Printed per pipeline: end-of-turn delay (end of speech → turn decided), voice-to-voice
//! (end of speech → first reply audio at the sink), barge-in onset → sink silent, and onset →
//! interruption decided, as p50/p90/p95/max.

use std::path::Path;
use voxpipe_cli::run_pipeline;
use voxpipe_core::RunOptions;
use voxpipe_e2e::*;
use voxpipe_fakes::openai_chat::{ChatFake, ChatFakeConfig, Knobs, ScriptedReply};
use voxpipe_fakes::openai_speech::{SpeechFake, SpeechFakeConfig};
use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig, ScriptedResponse};
use voxpipe_fakes::transcription::{TranscriptionFake, TranscriptionFakeConfig};

/// A tiny deterministic generator (no dependency for a benchmark's dice).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo + 1)
    }
}

const FIRST_TURNS: [&str; 4] = [
    "Where is my order?",
    "I want to change my delivery address.",
    "I ordered a lamp and",
    "It is about my order",
];
const LONG_REPLY: &str = "Your order shipped on Monday from our warehouse in Leeds, it is with the courier now and should reach you by Friday.";

#[derive(Default)]
struct Samples {
    eot: Vec<u64>,
    v2v: Vec<u64>,
    silent: Vec<u64>,
    decided: Vec<u64>,
}

fn collect(events: &[serde_json::Value], into: &mut Samples) {
    let num = |e: &serde_json::Value, k: &str| e[k].as_u64().unwrap_or(0);
    let ended = events_of(events, "turn_ended");
    if let Some(e) = ended.first() {
        into.eot.push(num(e, "t_ms") - num(e, "speech_end_ms"));
    } else if let Some(e) = events_of(events, "speech_stopped").first() {
        // Server VAD: the provider reports the end of speech when it decides.
        into.eot.push(num(e, "t_ms").saturating_sub(num(e, "at_ms")));
    }
    let metric = |name: &str| {
        events_of(events, "metric")
            .into_iter()
            .find(|m| m["name"] == name)
            .map(|m| (num(m, "t_ms"), num(m, "value_ms")))
    };
    if let Some((_, v)) = metric("voice_to_voice_ms") {
        into.v2v.push(v);
    }
    if let (Some((t, latency)), Some(i)) =
        (metric("interruption_latency_ms"), events_of(events, "interrupt").first())
    {
        let onset = t - latency;
        let paused = events_of(events, "playout_paused")
            .into_iter()
            .map(|p| num(p, "t_ms"))
            .filter(|p| *p >= onset && *p <= num(i, "t_ms"))
            .min();
        into.silent.push(paused.unwrap_or(num(i, "t_ms")) - onset);
        into.decided.push(num(i, "t_ms") - onset);
    }
}

fn pct(v: &mut [u64], p: f64) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i].to_string()
}

fn write_pipeline(path: &Path, body: &str) {
    let head = "[input]\nkind = \"wav\"\npath = \"unused.wav\"\ntail_silence_ms = 500\n[output]\nkind = \"wav\"\npath = \"unused.wav\"\n";
    std::fs::write(path, format!("name = \"bench\"\n{head}{body}")).unwrap();
}

async fn run(dir: &Path, pipeline: &Path, call: &Path) -> Vec<serde_json::Value> {
    let args = run_args(dir, pipeline.to_path_buf(), call.to_path_buf());
    run_pipeline(&args, vec![("OPENAI_API_KEY".into(), "sk-test".into())], RunOptions::default())
        .await
        .unwrap();
    read_events(&dir.join("events.jsonl"))
}

async fn bench(n: usize) -> Vec<(&'static str, Samples)> {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(0x5eed);
    let mut out: Vec<(&'static str, Samples)> = ["native-server", "native-local", "cascade-local"]
        .into_iter()
        .map(|p| (p, Samples::default()))
        .collect();
    for i in 0..n {
        let turn_ms = rng.next(800, 2400);
        let barge_after = rng.next(2500, 4000);
        let barge_ms = rng.next(900, 1600);
        let call = Call::default()
            .silence(rng.next(400, 800))
            .tone("turn1", turn_ms)
            .silence(barge_after)
            .tone("barge", barge_ms)
            .silence(3000);
        let wav = dir.path().join("call.wav");
        call.write(&wav);

        let realtime = RealtimeFake::start(RealtimeFakeConfig {
            responses: vec![
                ScriptedResponse { audio_ms: Some(5000), ..ScriptedResponse::say(LONG_REPLY) },
                ScriptedResponse::say("Yes?"),
            ],
            pace: 1.5,
            ..Default::default()
        })
        .await
        .unwrap();
        let rt = |turn: &str, td: &str| {
            format!(
                "{turn}\n[[stages]]\nkind = \"realtime.openai\"\nmodel = \"gpt-realtime-mini\"\nurl = \"{}\"\napi_key_env = \"OPENAI_API_KEY\"\nturn_detection = {td}\n",
                realtime.url()
            )
        };
        let p = dir.path().join("p.toml");
        write_pipeline(
            &p,
            &rt(
                "",
                "{ type = \"server_vad\", silence_duration_ms = 500, prefix_padding_ms = 300, threshold = 0.5 }",
            ),
        );
        collect(&run(dir.path(), &p, &wav).await, &mut out[0].1);
        write_pipeline(
            &p,
            &rt("[turn]\nmode = \"local\"\nvad = \"energy\"\nmin_silence_ms = 500", "{ type = \"none\" }"),
        );
        collect(&run(dir.path(), &p, &wav).await, &mut out[1].1);
        realtime.shutdown().await;

        let asr = TranscriptionFake::start(TranscriptionFakeConfig {
            transcripts: vec![
                FIRST_TURNS[i % FIRST_TURNS.len()].into(),
                "No, wait, that is not what I asked.".into(),
            ],
            latency_ms: 150,
            ..Default::default()
        })
        .await
        .unwrap();
        let llm = ChatFake::start(ChatFakeConfig {
            replies: vec![ScriptedReply::text(LONG_REPLY), ScriptedReply::text("Sorry, go on.")],
            knobs: Knobs { time_to_first_token_ms: 250, token_interval_ms: 20, ..Default::default() },
            ..Default::default()
        })
        .await
        .unwrap();
        let tts = SpeechFake::start(SpeechFakeConfig { time_to_first_byte_ms: 150, ..Default::default() })
            .await
            .unwrap();
        write_pipeline(
            &p,
            &format!(
                "[turn]\nmode = \"local\"\nvad = \"energy\"\nmin_silence_ms = 500\n\
                 [[stages]]\nkind = \"asr.openai\"\nbase_url = \"{}\"\napi_key_env = \"OPENAI_API_KEY\"\nmodel = \"gpt-4o-mini-transcribe\"\n\
                 [[stages]]\nkind = \"llm.openai\"\nbase_url = \"{}\"\napi_key_env = \"OPENAI_API_KEY\"\nmodel = \"gpt-4o-mini\"\n\
                 [[stages]]\nkind = \"tts.openai\"\nbase_url = \"{}\"\napi_key_env = \"OPENAI_API_KEY\"\nmodel = \"gpt-4o-mini-tts\"\nvoice = \"alloy\"\n",
                asr.base_url(),
                llm.base_url(),
                tts.base_url()
            ),
        );
        collect(&run(dir.path(), &p, &wav).await, &mut out[2].1);
    }
    out
}

fn main() {
    let n = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(24);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    let results = rt.block_on(bench(n));
    println!("\nTurn-taking latency over {n} generated calls (virtual clock, ms)\n");
    println!("| pipeline | metric | n | p50 | p90 | p95 | max |");
    println!("|---|---|---|---|---|---|---|");
    for (name, mut s) in results {
        for (metric, v) in [
            ("end of speech → turn decided", &mut s.eot),
            ("voice-to-voice (turn 1)", &mut s.v2v),
            ("barge-in onset → sink silent", &mut s.silent),
            ("barge-in onset → interruption decided", &mut s.decided),
        ] {
            let n = v.len();
            println!(
                "| {name} | {metric} | {n} | {} | {} | {} | {} |",
                pct(v, 0.5),
                pct(v, 0.9),
                pct(v, 0.95),
                pct(v, 1.0)
            );
        }
    }
}
