//! The cascade end to end: real local whisper on espeak speech, the chat-completions fake and
//! the OpenAI speech fake. Runs on the real clock (whisper's compute is real time).

use voxpipe_cli::{RunArgs, run_pipeline};
use voxpipe_core::RunOptions;
use voxpipe_e2e::*;
use voxpipe_fakes::openai_chat::{ChatFake, ChatFakeConfig};
use voxpipe_fakes::openai_speech::{SpeechFake, SpeechFakeConfig};

const REFERENCE: [&str; 2] = [
    "Hi, I would like to check the status of my order.",
    "Thanks. Can you also book an appointment for tomorrow morning?",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_transcripts_reach_the_llm_and_tts_audio_follows_each_turn() {
    let store = voxpipe_models::ModelStore::from_env().unwrap();
    store.pull("whisper-tiny.en", &voxpipe_models::NoProgress).await.unwrap();
    let chat = ChatFake::start(ChatFakeConfig::default()).await.unwrap(); // echoes the caller
    let speech = SpeechFake::start(SpeechFakeConfig { api_key: "sk-fake".into(), ..Default::default() })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = RunArgs {
        pipeline: repo_path("pipelines/cascade-fake.toml"),
        input: Some(repo_path("samples/two-turns.wav")),
        output: Some(dir.path().join("reply.wav")),
        events: Some(dir.path().join("events.jsonl")),
        profile: None,
        sets: vec![
            format!("stages[1].base_url={}", chat.base_url()),
            format!("stages[2].base_url={}", speech.base_url()),
        ],
        quiet: true,
    };
    let env = vec![("FAKE_API_KEY".to_string(), "sk-fake".to_string())];
    let (_, summary) = run_pipeline(&args, env, RunOptions::default()).await.unwrap();
    let events = read_events(&dir.path().join("events.jsonl"));

    // Real whisper transcripts of the caller's two turns.
    let users: Vec<String> = events_of(&events, "user_transcript")
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(users.len(), 2, "{users:?}");
    let (mut errors, mut words) = (0, 0);
    for (r, h) in REFERENCE.iter().zip(&users) {
        let (e, w) = voxpipe_eval::wer::errors_and_words(r, h);
        errors += e;
        words += w;
    }
    let wer = errors as f64 / words as f64;
    println!("cascade WER over {} words: {:.1} % ({users:?})", words, wer * 100.0);
    assert!(wer <= 0.3, "WER {wer}");

    // The LLM received exactly those transcripts, one request per turn.
    let requests = chat.requests();
    assert_eq!(requests.len(), 2);
    for (req, user) in requests.iter().zip(&users) {
        let messages = req.body["messages"].as_array().unwrap();
        assert_eq!(messages[0]["role"], "system");
        let last = messages.last().unwrap();
        assert_eq!(last["role"], "user");
        assert_eq!(last["content"].as_str().unwrap(), user.as_str());
        assert_eq!(req.body["stream"], true);
    }
    assert_eq!(
        requests[1].body["messages"].as_array().unwrap().len(),
        4,
        "history: system, user, assistant, user"
    );

    // TTS spoke each reply; the audio is in the output after each turn ended.
    let spoken: String = speech
        .requests()
        .iter()
        .map(|r| r.body["input"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    for user in &users {
        assert!(spoken.contains(user.split_whitespace().next().unwrap()), "{spoken}");
    }
    let stops: Vec<u64> =
        events_of(&events, "speech_stopped").iter().map(|e| e["at_ms"].as_u64().unwrap()).collect();
    assert_eq!(stops.len(), 2);
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    let regions = active_regions(&samples, rate, 500, 300);
    assert_eq!(regions.len(), 2, "one reply per turn: {regions:?}");
    for (i, (start, _)) in regions.iter().enumerate() {
        assert!(*start > stops[i], "reply {i} at {start} ms follows the end of turn {i} at {} ms", stops[i]);
    }

    // Every stage left its marks.
    for metric in ["end_of_turn_delay_ms", "asr_final_ms", "tts_first_audio_ms"] {
        assert!(summary.metrics.iter().any(|m| m.1 == metric), "metric {metric}: {:?}", summary.metrics);
    }
    assert_eq!(events_of(&events, "assistant_transcript").len(), 2);
    assert_eq!(events_of(&events, "response_done").len(), 2);
    assert!(
        events_of(&events, "response_done").iter().all(|d| d["usage"]["output_tokens"].as_u64().unwrap() > 0)
    );
    assert!(events_of(&events, "provider_error").is_empty());
    chat.stop().await;
}
