//! `pipelines/local.toml` end to end, as `voxpipe run` runs it: whisper tiny.en and Silero in
//! this process, SmolLM2-135M in `voxpipe-llm-worker`, Piper "joe" for the voice, on the bundled
//! two-turn shop call, whose first question needs the pipeline's stock tool. The models are pulled into the default model cache on first run.

mod support;

use support::local::{repo, run_local};

/// What the caller says in `samples/shop-call.wav` (see scripts/make-samples.sh).
const SAID: [&str; 2] =
    ["Hi, is the black coat in stock?", "Thanks. Can you also book an appointment for tomorrow morning?"];

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
    for id in ["whisper-tiny.en-q8", "smollm2-135m", "piper-joe", "silero-vad", "onnxruntime"] {
        store.resolve_or_pull(id, &voxpipe_models::NoProgress).await.unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    let out = std::env::temp_dir().join(format!("voxpipe-local-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let started = std::time::Instant::now();
    // The tool's path in local.toml is relative to the repository root.
    let tool =
        format!("tools.check_stock.handler.program={}", repo("pipelines/tools/check-stock.sh").display());
    let log = run_local(
        &repo("samples/shop-call.wav"),
        &out.join("reply.wav"),
        &out.join("events.jsonl"),
        vec![tool],
    )
    .await;
    eprintln!("call took {:.1} s", started.elapsed().as_secs_f64());
    for e in log.events.iter().filter(|e| {
        let kind = e["type"].as_str().unwrap_or_default();
        kind.ends_with("transcript")
            || kind.starts_with("tool")
            || kind == "response_done"
            || kind == "call_ended"
    }) {
        eprintln!("{e}");
    }
    let metrics = log.metrics();
    for (turn, name, ms) in &metrics {
        eprintln!("turn {turn}: {name} = {ms} ms");
    }

    let (user, assistant) = (log.said("user_transcript"), log.said("assistant_transcript"));
    // The turn controller decides where turns end (a pause after "Thanks." may end one):
    // compare the whole call's words.
    assert!(user.len() >= 2, "at least two user turns: {user:?}");
    let (said, heard) = (SAID.join(" "), user.join(" "));
    let wer = voxpipe_eval::wer::wer(&said, &heard);
    eprintln!("WER {wer:.2}: {said:?} -> {heard:?}");
    assert!(wer <= 0.3, "WER {wer:.2} for {heard:?}");
    assert_eq!(assistant.len(), user.len(), "one reply per user turn: {user:?} / {assistant:?}");
    assert!(!assistant.is_empty() && assistant.iter().all(|a| !a.is_empty()), "{assistant:?}");
    assert!(metrics.iter().any(|(_, n, _)| n == "llm_first_token_ms"), "{metrics:?}");
    assert!(metrics.iter().any(|(_, n, _)| n == "voice_to_voice_ms"), "{metrics:?}");

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

    // The one tool: the caller asks whether the black coat is in stock.
    let kinds = |kind: &str| log.of(kind);
    let calls = kinds("tool_call");
    assert!(
        calls.iter().any(|c| c["name"] == "check_stock" && c["arguments"].as_str().unwrap().contains("coat")),
        "the model looks the coat up: {calls:?}"
    );
    let results = kinds("tool_result");
    assert!(results.iter().all(|r| r["is_error"] == false) && !results.is_empty(), "{results:?}");
    let first_done = kinds("response_done")[0];
    assert_eq!(first_done["status"], "completed", "an answer follows the result: {first_done}");

    // Whisper transcribes the reply audio back to the words the LLM wrote.
    let heard_back = transcribe_replies(&samples, rate).await;
    let wrote = assistant.join(" ");
    let back_wer = voxpipe_eval::wer::wer(&wrote, &heard_back);
    eprintln!("reply WER {back_wer:.2}: {wrote:?} -> {heard_back:?}");
    assert!(back_wer <= 0.35, "reply WER {back_wer:.2}: {wrote:?} -> {heard_back:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// Whisper tiny.en on each stretch of the reply WAV's voice (stretches split at a second of
/// silence), joined.
async fn transcribe_replies(samples: &[i16], rate: u32) -> String {
    let cfg = voxpipe_asr::WhisperConfig { model: "whisper-tiny.en".into(), ..Default::default() };
    let store = voxpipe_models::ModelStore::from_env().unwrap();
    let whisper =
        voxpipe_asr::Transcriber::from_config(&cfg, &store, &voxpipe_models::NoProgress).await.unwrap();
    let audio = voxpipe_core::audio::resample_all(samples, rate, 16_000).unwrap();
    let mut texts = Vec::new();
    for (start, end) in voiced_stretches(&audio, 16_000, 1.0) {
        let pcm: Vec<f32> = audio[start..end].iter().map(|&s| f32::from(s) / 32768.0).collect();
        let t = whisper.transcribe(pcm, voxpipe_asr::DecodeOptions::default()).await.unwrap();
        texts.push(t.text.trim().to_string());
    }
    texts.join(" ")
}

/// Sample ranges of 20 ms blocks louder than silence, merged across gaps shorter than `gap_s`,
/// with 100 ms of context each side.
fn voiced_stretches(samples: &[i16], rate: u32, gap_s: f64) -> Vec<(usize, usize)> {
    let block = (rate / 50) as usize;
    let loud =
        |b: &[i16]| (b.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / b.len() as f64).sqrt() > 300.0;
    let gap_blocks = (gap_s * 50.0) as usize;
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, b) in samples.chunks(block).enumerate() {
        if !loud(b) {
            continue;
        }
        match out.last_mut() {
            Some((_, end)) if i * block - *end < gap_blocks * block => *end = (i + 1) * block,
            _ => out.push((i * block, (i + 1) * block)),
        }
    }
    let pad = block * 5;
    out.into_iter().map(|(s, e)| (s.saturating_sub(pad), (e + pad).min(samples.len()))).collect()
}
