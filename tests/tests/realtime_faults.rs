//! The Realtime client (`realtime.openai`) against each fault of the Realtime fake: rows of
//! RELIABILITY.md's fault matrix. A call against a faulty session recovers (a new session with
//! the conversation so far) or ends with a clear error; the event log is complete either way.

use std::collections::BTreeMap;
use voxpipe_cli::{RunArgs, run_pipeline};
use voxpipe_core::RunOptions;
use voxpipe_e2e::*;
use voxpipe_fakes::fault::Fault;
use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig};

async fn fake(faults: BTreeMap<usize, Fault>) -> RealtimeFake {
    RealtimeFake::start(RealtimeFakeConfig { responses: two_turn_script(), faults, ..Default::default() })
        .await
        .unwrap()
}

fn args(dir: &std::path::Path, fake: &RealtimeFake) -> RunArgs {
    let mut a = run_args(dir, repo_path("pipelines/native-fake.toml"), repo_path("samples/two-turns.wav"));
    // A stall is noticed 2 s into the silence (15 s by default: longer than this short call).
    a.sets = vec![format!("stages[0].url={}", fake.url()), "stages[0].stall_timeout_ms=2000".into()];
    a
}

fn env() -> Vec<(String, String)> {
    vec![("OPENAI_API_KEY".into(), "sk-test-key".into())]
}

/// Runs the two-turn call against a fake with `faults`; returns the events and the final
/// assistant transcripts.
async fn call(faults: BTreeMap<usize, Fault>) -> (RealtimeFake, Vec<serde_json::Value>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake(faults).await;
    run_pipeline(&args(dir.path(), &fake), env(), RunOptions::default()).await.unwrap();
    let events = read_events(&dir.path().join("events.jsonl"));
    let said = events_of(&events, "assistant_transcript")
        .iter()
        .filter(|e| e["is_final"] == true)
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    (fake, events, said)
}

#[tokio::test(start_paused = true)]
async fn realtime_429_on_connect_is_retried_and_the_call_is_answered() {
    let (fake, events, said) =
        call(BTreeMap::from([(0, Fault::Status { status: 429, retry_after_s: Some(1) })])).await;
    assert!(said.contains(&"Done, see you tomorrow morning.".to_string()), "{said:?}");
    assert!(events_of(&events, "error").is_empty(), "{events:?}");
    assert_eq!(fake.connections(), 1, "one refused upgrade, then one session");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn realtime_401_on_connect_ends_the_call_with_a_clear_error_and_no_retry() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake(BTreeMap::from([(0, Fault::Status { status: 401, retry_after_s: None })])).await;
    let err =
        run_pipeline(&args(dir.path(), &fake), env(), RunOptions::default()).await.unwrap_err().to_string();
    assert!(err.contains("realtime.openai") && err.contains("401"), "{err}");
    let events = read_events(&dir.path().join("events.jsonl"));
    assert_eq!(events.last().unwrap()["reason"], "error");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn realtime_malformed_event_mid_reply_is_reported_and_the_call_goes_on() {
    let (fake, events, said) = call(BTreeMap::from([(0, Fault::Malformed { after: 2 })])).await;
    let errors = events_of(&events, "provider_error");
    assert!(errors.iter().any(|e| e["code"] == "malformed_event"), "{errors:?}");
    assert!(said.contains(&"Done, see you tomorrow morning.".to_string()), "{said:?}");
    assert!(events_of(&events, "reconnected").is_empty(), "no reason to reconnect");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn realtime_unknown_event_type_is_ignored() {
    let (fake, events, said) = call(BTreeMap::from([(0, Fault::UnknownEvent { after: 1 })])).await;
    assert_eq!(said, ["Sure, what is the order number?", "Done, see you tomorrow morning."]);
    assert!(events_of(&events, "provider_error").is_empty(), "{events:?}");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn realtime_oversize_message_drops_the_session_and_a_new_one_answers() {
    // 9 MiB: past the client's 8 MiB message cap.
    let (fake, events, said) =
        call(BTreeMap::from([(0, Fault::Oversize { bytes: 9 << 20, after: 1 })])).await;
    let reconnected = events_of(&events, "reconnected");
    assert_eq!(reconnected.len(), 1, "{events:?}");
    assert!(reconnected[0]["reason"].as_str().unwrap().contains("websocket"), "{}", reconnected[0]);
    assert!(said.contains(&"Done, see you tomorrow morning.".to_string()), "{said:?}");
    assert_eq!(fake.connections(), 2);
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn realtime_stall_mid_reply_is_detected_and_a_new_session_answers() {
    let (fake, events, said) = call(BTreeMap::from([(0, Fault::StallAfter { chunks: 2 })])).await;
    let reconnected = events_of(&events, "reconnected");
    assert_eq!(reconnected.len(), 1, "{events:?}");
    assert!(reconnected[0]["reason"].as_str().unwrap().contains("silent"), "{}", reconnected[0]);
    assert!(said.contains(&"Done, see you tomorrow morning.".to_string()), "{said:?}");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn realtime_cut_mid_reply_reconnects_with_the_conversation() {
    let (fake, events, said) = call(BTreeMap::from([(0, Fault::CutAfter { chunks: 2 })])).await;
    assert_eq!(events_of(&events, "reconnected").len(), 1, "{events:?}");
    assert!(said.contains(&"Done, see you tomorrow morning.".to_string()), "{said:?}");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn realtime_slow_drip_is_answered_whole() {
    let (fake, events, said) = call(BTreeMap::from([(0, Fault::Slow { interval_ms: 150 })])).await;
    assert_eq!(said, ["Sure, what is the order number?", "Done, see you tomorrow morning."]);
    assert!(events_of(&events, "reconnected").is_empty() && events_of(&events, "error").is_empty());
    fake.shutdown().await;
}
