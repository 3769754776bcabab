//! `pipelines/local.toml` end to end, as `voxpipe run` runs it: whisper tiny.en and Silero in
//! this process, SmolLM2-135M in `voxpipe-llm-worker`, Piper "joe" for the voice, on the bundled
//! two-turn call. The models are pulled into the default model cache on first run.

mod support;

use std::path::{Path, PathBuf};
use voxpipe_cli::{RunArgs, run_pipeline};
use voxpipe_core::RunOptions;

/// What the caller says in `samples/two-turns.wav` (see scripts/make-samples.sh).
const SAID: [&str; 2] = [
    "Hi, I would like to check the status of my order.",
    "Thanks. Can you also book an appointment for tomorrow morning?",
];

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

/// Seconds of the WAV whose 20 ms blocks are louder than silence.
fn voiced_seconds(samples: &[i16], rate: u32) -> f64 {
    let block = (rate / 50) as usize;
    let loud = samples
        .chunks(block)
        .filter(|b| (b.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / b.len() as f64).sqrt() > 300.0)
        .count();
    loud as f64 * 0.02
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_pipeline_answers_both_turns_with_piper_audio() {
    let store = voxpipe_models::ModelStore::from_env().unwrap();
    for id in ["whisper-tiny.en", "smollm2-135m", "piper-joe", "silero-vad", "onnxruntime"] {
        store.resolve_or_pull(id, &voxpipe_models::NoProgress).await.unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    let out = std::env::temp_dir().join(format!("voxpipe-local-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let args = RunArgs {
        pipeline: repo("pipelines/local.toml"),
        input: Some(repo("samples/two-turns.wav")),
        output: Some(out.join("reply.wav")),
        events: Some(out.join("events.jsonl")),
        profile: None,
        sets: vec![format!("stages[1].worker={}", support::worker().display())],
        quiet: true,
    };
    let started = std::time::Instant::now();
    let (_, summary) = run_pipeline(&args, std::env::vars().collect(), RunOptions::default())
        .await
        .expect("local.toml runs");
    eprintln!("call took {:.1} s", started.elapsed().as_secs_f64());
    for line in &summary.transcript {
        eprintln!("{line}");
    }
    for (turn, name, ms) in &summary.metrics {
        eprintln!("turn {turn}: {name} = {ms} ms");
    }

    let user: Vec<&str> =
        summary.transcript.iter().filter_map(|l| l.strip_prefix("user:")).map(str::trim).collect();
    let assistant: Vec<&str> =
        summary.transcript.iter().filter_map(|l| l.strip_prefix("assistant:")).map(str::trim).collect();
    // The turn controller decides where turns end (a pause after "Thanks." may end one):
    // compare the whole call's words.
    assert!(user.len() >= 2, "at least two user turns: {:?}", summary.transcript);
    let (said, heard) = (SAID.join(" "), user.join(" "));
    let wer = voxpipe_asr::wer(&said, &heard);
    eprintln!("WER {wer:.2}: {said:?} -> {heard:?}");
    assert!(wer <= 0.3, "WER {wer:.2} for {heard:?}");
    assert_eq!(assistant.len(), user.len(), "one reply per user turn: {:?}", summary.transcript);
    assert!(!assistant.is_empty() && assistant.iter().all(|a| !a.is_empty()), "{:?}", summary.transcript);
    assert!(summary.metrics.iter().any(|(_, n, _)| n == "llm_first_token_ms"), "{:?}", summary.metrics);
    assert!(summary.metrics.iter().any(|(_, n, _)| n == "voice_to_voice_ms"), "{:?}", summary.metrics);

    // Piper audio of plausible length: it speaks about 12-18 characters a second.
    let reader = hound::WavReader::open(out.join("reply.wav")).unwrap();
    let rate = reader.spec().sample_rate;
    let samples: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
    let voiced = voiced_seconds(&samples, rate);
    let chars: usize = assistant.iter().map(|a| a.len()).sum();
    let expected = chars as f64 / 15.0;
    eprintln!("reply audio: {voiced:.1} s voiced for {chars} characters (about {expected:.1} s expected)");
    assert!(
        voiced > expected * 0.4 && voiced < expected * 2.5 + 1.0,
        "{voiced:.1} s voiced for {chars} chars"
    );
    std::fs::remove_dir_all(&out).unwrap();
}
