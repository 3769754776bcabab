//! The native pipeline against an OpenAI-compatible server that is not OpenAI (the Realtime
//! fake's `compatible` option: beta dialect, per-turn timestamps, no truncation, warnings on
//! unsupported fields, audio in bursts, late caller transcripts), on a virtual clock.

use std::path::Path;
use voxpipe_cli::{RunArgs, Summary, run_pipeline};
use voxpipe_core::RunOptions;
use voxpipe_e2e::*;
use voxpipe_fakes::realtime::{CompatibleConfig, RealtimeFake, RealtimeFakeConfig, ScriptedResponse};

async fn compatible_fake(responses: Vec<ScriptedResponse>) -> RealtimeFake {
    let config =
        RealtimeFakeConfig { responses, compatible: Some(CompatibleConfig::default()), ..Default::default() };
    RealtimeFake::start(config).await.unwrap()
}

/// native-fake.toml on `call`, speaking beta to `fake`, 20 ms appends (one frame), plus `extra`.
fn args(dir: &Path, call: &Call, fake: &RealtimeFake, extra: &[&str]) -> RunArgs {
    let input = dir.join("call.wav");
    call.write(&input);
    let mut a = run_args(dir, repo_path("pipelines/native-fake.toml"), input);
    a.sets = vec![
        format!("stages[0].url={}", fake.url()),
        "stages[0].protocol=beta".into(),
        "stages[0].append_ms=20".into(),
    ];
    a.sets.extend(extra.iter().map(|s| s.to_string()));
    a
}

async fn run(
    dir: &Path,
    call: &Call,
    fake: &RealtimeFake,
    extra: &[&str],
) -> (Vec<serde_json::Value>, Summary) {
    let env = vec![("OPENAI_API_KEY".to_string(), "sk-test-key".to_string())];
    let (_, summary) = run_pipeline(&args(dir, call, fake, extra), env, RunOptions::default()).await.unwrap();
    (read_events(&dir.join("events.jsonl")), summary)
}

fn reply(text: &str, audio_ms: u64, heard_as: &str) -> ScriptedResponse {
    ScriptedResponse {
        audio_ms: Some(audio_ms),
        user_transcript: Some(heard_as.into()),
        ..ScriptedResponse::say(text)
    }
}

/// Two turns, each answered by a 2.5 s reply that arrives in bursts with gaps.
fn two_turns() -> Call {
    Call::default().silence(1000).tone("turn1", 1500).silence(5000).tone("turn2", 1200).silence(5000)
}

#[tokio::test(start_paused = true)]
async fn settings_the_server_ignores_are_warnings_and_the_call_completes() {
    let dir = tempfile::tempdir().unwrap();
    let fake = compatible_fake(vec![
        reply("Sure, what is the order number?", 2500, "I would like to check my order."),
        reply("Done, see you tomorrow.", 2500, "Book an appointment tomorrow."),
    ])
    .await;
    let (events, summary) = run(dir.path(), &two_turns(), &fake, &[]).await;

    assert!(events_of(&events, "error").is_empty(), "{:?}", events_of(&events, "error"));
    assert_eq!(summary.end_reason.as_deref(), Some("end_of_input"));
    let warnings: Vec<&str> = events_of(&events, "provider_error")
        .into_iter()
        .filter(|e| e["code"] == "session_setting_ignored")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    for (w, field) in warnings.iter().zip([
        "session.input_audio_format",
        "session.output_audio_format",
        "session.turn_detection.prefix_padding_ms",
    ]) {
        assert!(w.starts_with(&format!("the server ignored {field}: ")), "{w}");
    }
    let done = events_of(&events, "response_done");
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|d| d["status"] == "completed"), "{done:?}");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_update_the_server_rejects_without_session_updated_stays_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // The OpenAI fake rejects a temperature out of range outright: error, no session.updated.
    let fake = RealtimeFake::start(RealtimeFakeConfig::default()).await.unwrap();
    let call = Call::default().silence(1000);
    let env = vec![("OPENAI_API_KEY".to_string(), "sk-test-key".to_string())];
    let a = args(dir.path(), &call, &fake, &["stages[0].temperature=0.1"]);
    let err = run_pipeline(&a, env, RunOptions::default()).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(
            "rejected the session configuration: decimal_out_of_range: Invalid 'session.temperature'"
        ),
        "{text}"
    );
    fake.shutdown().await;
}
