//! Failover between whole pipelines mid-call (`fallback = "other.toml"`): a native pipeline
//! whose Realtime session is lost carries the call on as a cascade on the provider fakes, with
//! the conversation so far, and the reverse.

use std::path::{Path, PathBuf};
use voxpipe_cli::run_pipeline;
use voxpipe_core::RunOptions;
use voxpipe_e2e::*;
use voxpipe_fakes::openai_chat::{ChatFake, ChatFakeConfig, ScriptedReply};
use voxpipe_fakes::openai_speech::{SpeechFake, SpeechFakeConfig};
use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig, ScriptedResponse};
use voxpipe_fakes::transcription::{TranscriptionFake, TranscriptionFakeConfig};

/// The cascade fakes: transcription (the caller's words, in order), chat (the replies) and
/// speech.
struct Cascade {
    asr: TranscriptionFake,
    llm: ChatFake,
    tts: SpeechFake,
}

impl Cascade {
    async fn start(transcripts: &[&str], replies: &[&str], chat_key: Option<&str>) -> Self {
        Self::with_chat_faults(transcripts, replies, chat_key, Default::default()).await
    }

    /// [`Cascade::start`] with faults in the chat fake, by request index.
    async fn with_chat_faults(
        transcripts: &[&str],
        replies: &[&str],
        chat_key: Option<&str>,
        faults: std::collections::BTreeMap<usize, voxpipe_fakes::fault::Fault>,
    ) -> Self {
        let asr = TranscriptionFake::start(TranscriptionFakeConfig {
            api_key: "sk-fake".into(),
            transcripts: transcripts.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
        let llm = ChatFake::start(ChatFakeConfig {
            api_key: chat_key.map(str::to_string),
            replies: replies.iter().map(|r| ScriptedReply::text(*r)).collect(),
            knobs: voxpipe_fakes::openai_chat::Knobs { faults, ..Default::default() },
        })
        .await
        .unwrap();
        let tts = SpeechFake::start(SpeechFakeConfig { api_key: "sk-fake".into(), ..Default::default() })
            .await
            .unwrap();
        Self { asr, llm, tts }
    }

    fn pipeline(&self, name: &str) -> String {
        fake_cascade_pipeline(name, &self.asr.base_url(), &self.llm.base_url(), &self.tts.base_url())
    }
}

fn native_pipeline(name: &str, fake: &RealtimeFake) -> String {
    format!(
        r#"name = "{name}"
[input]
kind = "wav"
path = "unused.wav"
[output]
kind = "wav"
path = "unused-reply.wav"
sample_rate = 24000
[[stages]]
kind = "realtime.openai"
url = "{url}"
api_key_env = "OPENAI_API_KEY"
reconnect_attempts = 0
transcription = {{ model = "gpt-4o-mini-transcribe" }}
"#,
        url = fake.url()
    )
}

/// Writes `primary` (naming `fallback.toml` as its fallback) and `fallback` into `dir`.
fn write_pair(dir: &Path, primary: &str, fallback: &str) -> PathBuf {
    std::fs::write(dir.join("fallback.toml"), fallback).unwrap();
    let path = dir.join("primary.toml");
    std::fs::write(&path, format!("fallback = \"fallback.toml\"\n{primary}")).unwrap();
    path
}

fn env() -> Vec<(String, String)> {
    vec![("OPENAI_API_KEY".into(), "sk-test-key".into()), ("FAKE_API_KEY".into(), "sk-fake".into())]
}

fn texts(events: &[serde_json::Value], kind: &str) -> Vec<String> {
    events_of(events, kind)
        .iter()
        .filter(|e| e["is_final"] != false)
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_native_call_that_loses_its_session_mid_reply_is_carried_on_by_the_cascade() {
    let dir = tempfile::tempdir().unwrap();
    // Every Realtime session drops three audio deltas into its first reply, and the native
    // stage may not reconnect: the stage fails mid-call.
    let realtime = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![ScriptedResponse {
            user_transcript: Some("I would like to check my order.".into()),
            ..ScriptedResponse::say("Sure, what is the order number?")
        }],
        close_after_audio_deltas: Some(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let cascade = Cascade::start(
        &["Book an appointment tomorrow."],
        &["Your order ships tomorrow.", "Booked for tomorrow morning."],
        Some("sk-fake"),
    )
    .await;
    let path = write_pair(dir.path(), &native_pipeline("native", &realtime), &cascade.pipeline("cascade"));
    let a = run_args(dir.path(), path, repo_path("samples/two-turns.wav"));
    let (_, summary) = run_pipeline(&a, env(), RunOptions::default()).await.unwrap();
    assert_eq!(summary.end_reason.as_deref(), Some("end_of_input"));

    let events = read_events(&dir.path().join("events.jsonl"));
    let failover = events_of(&events, "failover");
    assert_eq!(failover.len(), 1, "{events:?}");
    assert_eq!((failover[0]["from"].as_str(), failover[0]["to"].as_str()), (Some("native"), Some("cascade")));
    assert!(failover[0]["reason"].as_str().unwrap().contains("realtime.openai"), "{}", failover[0]);
    assert!(events_of(&events, "error").is_empty(), "the call recovered: {events:?}");
    // The cascade was handed the caller's unanswered question and answered it at once, then
    // took the second turn from the audio.
    let first = &cascade.llm.requests()[0].body["messages"];
    let last = first.as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["role"].as_str(), last["content"].as_str()),
        (Some("user"), Some("I would like to check my order."))
    );
    let assistants = texts(&events, "assistant_transcript");
    assert!(assistants.contains(&"Your order ships tomorrow.".to_string()), "{assistants:?}");
    assert!(assistants.contains(&"Booked for tomorrow morning.".to_string()), "{assistants:?}");
    let second = &cascade.llm.requests()[1].body["messages"];
    assert!(
        second.as_array().unwrap().iter().any(|m| m["content"] == "Book an appointment tomorrow."),
        "{second}"
    );
    // The silence the switch cost the caller is measured.
    assert!(events_of(&events, "metric").iter().any(|m| m["name"] == "failover_silence_ms"), "{events:?}");
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    assert!(active_regions(&samples, rate, 500, 150).len() >= 2, "both turns answered aloud");
    realtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_cascade_whose_model_refuses_its_key_is_carried_on_by_the_native_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    // The chat fake wants another key: the LLM stage fails (401 is fatal) on the first turn.
    let cascade = Cascade::start(&["I would like to check my order."], &["unused"], Some("sk-other")).await;
    let realtime = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![
            ScriptedResponse::say("Sure, what is the order number?"),
            ScriptedResponse {
                user_transcript: Some("Book an appointment tomorrow.".into()),
                ..ScriptedResponse::say("Done, see you tomorrow morning.")
            },
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let path = write_pair(dir.path(), &cascade.pipeline("cascade"), &native_pipeline("native", &realtime));
    let a = run_args(dir.path(), path, repo_path("samples/two-turns.wav"));
    run_pipeline(&a, env(), RunOptions::default()).await.unwrap();

    let events = read_events(&dir.path().join("events.jsonl"));
    let failover = events_of(&events, "failover");
    let types: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(failover.len(), 1, "{types:?} {:?}", events_of(&events, "provider_error"));
    assert_eq!((failover[0]["from"].as_str(), failover[0]["to"].as_str()), (Some("cascade"), Some("native")));
    assert!(failover[0]["reason"].as_str().unwrap().contains("401"), "{}", failover[0]);
    // The Realtime session got the caller's words as an item and was asked to answer them.
    let sent: Vec<_> = realtime.client_events().into_iter().map(|e| e.json).collect();
    let item = sent.iter().position(|e| {
        e["type"] == "conversation.item.create"
            && e["item"]["content"][0]["text"] == "I would like to check my order."
    });
    let item = item.unwrap_or_else(|| panic!("no restored item: {sent:?}"));
    assert_eq!(sent[item + 1]["type"], "response.create");
    let assistants = texts(&events, "assistant_transcript");
    assert!(assistants.contains(&"Sure, what is the order number?".to_string()), "{assistants:?} {events:?}");
    realtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_cascade_whose_model_keeps_failing_is_carried_on_by_the_native_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    // The chat model answers 503 to every request: each turn fails past its retries while the
    // stage lives on. The second failed reply in a row hands the call over.
    let outage = (0..64)
        .map(|i| (i, voxpipe_fakes::fault::Fault::Status { status: 503, retry_after_s: None }))
        .collect();
    let cascade = Cascade::with_chat_faults(
        &["I would like to check my order.", "Book an appointment tomorrow."],
        &["unused"],
        Some("sk-fake"),
        outage,
    )
    .await;
    let realtime = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![ScriptedResponse::say("Booked for tomorrow morning.")],
        ..Default::default()
    })
    .await
    .unwrap();
    let path = write_pair(dir.path(), &cascade.pipeline("cascade"), &native_pipeline("native", &realtime));
    let a = run_args(dir.path(), path, repo_path("samples/two-turns.wav"));
    run_pipeline(&a, env(), RunOptions::default()).await.unwrap();

    let events = read_events(&dir.path().join("events.jsonl"));
    let failover = events_of(&events, "failover");
    assert_eq!(failover.len(), 1, "{events:?}");
    assert_eq!((failover[0]["from"].as_str(), failover[0]["to"].as_str()), (Some("cascade"), Some("native")));
    assert!(failover[0]["reason"].as_str().unwrap().contains("2 replies in a row failed"), "{}", failover[0]);
    // Both turns were tried on the cascade first (the first failure alone does not switch).
    let failed: Vec<_> = events_of(&events, "provider_error");
    assert!(failed.len() >= 2, "{failed:?}");
    // The native pipeline got the conversation and answered the caller's last words.
    let sent: Vec<_> = realtime.client_events().into_iter().map(|e| e.json).collect();
    let item = sent.iter().rposition(|e| {
        e["type"] == "conversation.item.create"
            && e["item"]["content"][0]["text"] == "Book an appointment tomorrow."
    });
    let item = item.unwrap_or_else(|| panic!("no restored item: {sent:?}"));
    assert_eq!(sent[item + 1]["type"], "response.create");
    let assistants = texts(&events, "assistant_transcript");
    assert!(assistants.contains(&"Booked for tomorrow morning.".to_string()), "{assistants:?}");
    realtime.shutdown().await;
}

#[test]
fn a_fallback_file_is_loaded_with_its_pipeline_and_errors_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let opts = voxpipe_config::LoadOptions::default();
    let primary = dir.path().join("primary.toml");
    std::fs::write(&primary, "fallback = \"missing.toml\"\nname = \"p\"\n[input]\nkind = \"wav\"\npath = \"a.wav\"\n[output]\nkind = \"wav\"\npath = \"b.wav\"\n[[stages]]\nkind = \"realtime.openai\"\n").unwrap();
    let e = voxpipe_config::load(&primary, &opts).unwrap_err().to_string();
    assert!(e.contains("primary.toml: key `fallback`") && e.contains("missing.toml"), "{e}");
    std::fs::write(dir.path().join("missing.toml"), "name = \"f\"\n[input]\nkind = \"wav\"\npath = \"a.wav\"\n[output]\nkind = \"wav\"\npath = \"b.wav\"\n[[stages]]\nkind = \"realtime.openai\"\nvoise = 1\n").unwrap();
    let e = voxpipe_config::load(&primary, &opts).unwrap_err().to_string();
    assert!(e.contains("missing.toml: key `stages[0]") && e.contains("voise"), "{e}");
}
