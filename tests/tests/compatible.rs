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
    // A voice OpenAI does not have: the server's own.
    let (events, summary) = run(dir.path(), &two_turns(), &fake, &["stages[0].voice=joe"]).await;

    let updates: Vec<_> =
        fake.client_events().into_iter().filter(|e| e.json["type"] == "session.update").collect();
    assert_eq!(updates[0].json["session"]["voice"], "joe");
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
    // The server sends each caller transcript after the reply to it; the printout puts it first.
    let finals = |kind: &str| -> Vec<usize> {
        (0..events.len()).filter(|&i| events[i]["type"] == kind && events[i]["is_final"] == true).collect()
    };
    let (users, replies) = (finals("user_transcript"), finals("assistant_transcript"));
    assert_eq!((users.len(), replies.len()), (2, 2));
    assert!(users.iter().zip(&replies).all(|(u, r)| u > r), "the fake's transcripts come late");
    assert_eq!(
        summary.transcript,
        [
            "user:      I would like to check my order.",
            "assistant: Sure, what is the order number?",
            "user:      Book an appointment tomorrow.",
            "assistant: Done, see you tomorrow.",
        ]
    );
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

fn t_ms(e: &serde_json::Value) -> u64 {
    e["t_ms"].as_u64().unwrap()
}

fn metrics(events: &[serde_json::Value], name: &str) -> Vec<(u64, u64)> {
    events_of(events, "metric")
        .into_iter()
        .filter(|m| m["name"] == name)
        .map(|m| (m["turn"].as_u64().unwrap(), m["value_ms"].as_u64().unwrap()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn voice_to_voice_is_measured_on_the_audio_timeline_whatever_the_server_counts_from() {
    let dir = tempfile::tempdir().unwrap();
    let fake = compatible_fake(vec![reply("One.", 2500, "First."), reply("Two.", 2500, "Second.")]).await;
    let call = two_turns();
    let (events, _) = run(dir.path(), &call, &fake, &[]).await;

    // The caller's speech as the log places it: where the call's audio has it, within a frame.
    let at = |kind: &str| -> Vec<u64> {
        events_of(&events, kind).iter().map(|e| e["at_ms"].as_u64().unwrap()).collect()
    };
    let marks = [call.mark("turn1"), call.mark("turn2")];
    let (starts, stops) = (at("speech_started"), at("speech_stopped"));
    assert_eq!((starts.len(), stops.len()), (2, 2), "{starts:?} {stops:?}");
    for (i, (start, end)) in marks.iter().enumerate() {
        assert!(
            starts[i].abs_diff(*start) <= 20,
            "turn {}: onset {} ms, the audio's {start} ms",
            i + 1,
            starts[i]
        );
        assert!(stops[i].abs_diff(*end) <= 20, "turn {}: end {} ms, the audio's {end} ms", i + 1, stops[i]);
    }

    // Voice-to-voice: from the end of the caller's speech to the reply heard in reply.wav.
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    let regions = active_regions(&samples, rate, 500, 150);
    let v2v = metrics(&events, "voice_to_voice_ms");
    assert_eq!(v2v.len(), 2, "{v2v:?}");
    for (i, (_, end)) in marks.iter().enumerate() {
        let heard = regions.iter().map(|r| r.0).find(|s| s > end).expect("a reply after the turn");
        let (turn, ms) = v2v[i];
        assert_eq!(turn, i as u64 + 1);
        assert!(
            ms.abs_diff(heard - end) <= 20,
            "turn {turn}: voice-to-voice {ms} ms, the audio says {} ms",
            heard - end
        );
    }
    // Each reply came in three bursts and was heard as three stretches: one item each, started
    // once and finished once with its whole length.
    assert!(regions.len() >= 6, "{regions:?}");
    let started = events_of(&events, "playout_started");
    let finished = events_of(&events, "playout_finished");
    assert_eq!((started.len(), finished.len()), (2, 2), "{started:?} {finished:?}");
    for f in &finished {
        assert!(f["played_ms"].as_u64().unwrap().abs_diff(2500) <= 20, "{f}");
    }
    fake.shutdown().await;
}

/// Turn 1, then the caller talks over the second burst of its reply (the first plays from
/// about 3.2 s, the second after a pause, from about 4.8 s).
fn barge_in_call() -> Call {
    Call::default().silence(1000).tone("turn1", 1500).silence(2700).tone("barge", 800).silence(5000)
}

#[tokio::test(start_paused = true)]
async fn barge_in_latency_is_measured_from_the_callers_onset_to_the_silence_heard() {
    let dir = tempfile::tempdir().unwrap();
    let fake =
        compatible_fake(vec![reply("A long story.", 4000, "Tell me."), reply("Yes?", 1000, "Wait.")]).await;
    let call = barge_in_call();
    let (events, _) = run(dir.path(), &call, &fake, &[]).await;

    let interrupts = events_of(&events, "interrupt");
    assert_eq!(interrupts.len(), 1, "{interrupts:?}");
    let (onset, _) = call.mark("barge");
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    let regions = active_regions(&samples, rate, 500, 150);
    let cut =
        regions.iter().find(|r| r.0 < onset && r.1 > onset).expect("the reply was playing at the onset");
    assert!(regions.iter().any(|r| r.1 < cut.0 && r.0 > call.mark("turn1").1), "a pause before: {regions:?}");
    let latency = metrics(&events, "interruption_latency_ms");
    assert_eq!(latency.len(), 1, "{latency:?}");
    assert!(
        latency[0].1.abs_diff(cut.1 - onset) <= 20,
        "interruption latency {} ms; the audio went quiet {} ms after the onset",
        latency[0].1,
        cut.1 - onset
    );
    // One start per item however its audio came, and one played length for the barge-in.
    let started = events_of(&events, "playout_started");
    let mut items: Vec<&str> = started.iter().map(|e| e["item"].as_str().unwrap()).collect();
    let n = items.len();
    items.dedup();
    assert_eq!(items.len(), n, "playout_started twice for an item: {started:?}");
    let item = interrupts[0]["item"].as_str().unwrap();
    let finished: Vec<_> =
        events_of(&events, "playout_finished").into_iter().filter(|e| e["item"] == item).collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0]["played_ms"], interrupts[0]["played_ms"], "{finished:?} vs {:?}", interrupts[0]);
    assert_eq!(finished[0]["interrupted"], true);
    // The server cannot truncate: it says so, and the call goes on.
    assert!(events_of(&events, "error").is_empty());
    assert_eq!(events_of(&events, "truncate").len(), 1);
    assert!(t_ms(interrupts[0]) >= onset);
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_azure_pipeline_runs_on_the_fake_with_its_key_in_the_api_key_header() {
    let dir = tempfile::tempdir().unwrap();
    let config = RealtimeFakeConfig {
        api_key: Some("azure-test-key".into()),
        responses: two_turn_script(),
        ..Default::default()
    };
    let fake = RealtimeFake::start(config).await.unwrap();
    let mut a = run_args(
        dir.path(),
        repo_path("pipelines/native-azure-openai-fake.toml"),
        repo_path("samples/two-turns.wav"),
    );
    a.sets = vec![format!("stages[0].azure.endpoint=http://{}", fake.addr())];
    let env = |key: &str| vec![("AZURE_OPENAI_API_KEY".to_string(), key.to_string())];
    let (_, summary) = run_pipeline(&a, env("azure-test-key"), RunOptions::default()).await.unwrap();
    assert_eq!(summary.end_reason.as_deref(), Some("end_of_input"));
    let events = read_events(&dir.path().join("events.jsonl"));
    assert_eq!(events_of(&events, "response_done").len(), 2);
    // The preview API: beta events, the deployment as the model.
    let update = fake.client_events().into_iter().find(|e| e.json["type"] == "session.update").unwrap();
    assert_eq!(update.json["session"]["input_audio_format"], "pcm16", "{}", update.json);

    let err = run_pipeline(&a, env("wrong-key"), RunOptions::default()).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("HTTP 401") && text.contains("Access denied"), "{text}");
    assert!(!text.contains("wrong-key"), "the key is never printed: {text}");
    fake.shutdown().await;
}
