//! `llm.gemini` end to end: `pipelines/cascade-gemini-fake.toml` (real local whisper, the
//! Gemini fake, the speech fake) on the real clock, and `voxpipe ab --fakes` starting a Gemini
//! (or Anthropic) fake for such a cascade, timed by the profile's `gemini` (or `anthropic`)
//! table, on a virtual clock.

use voxpipe_cli::{RunArgs, run_pipeline};
use voxpipe_core::RunOptions;
use voxpipe_e2e::*;
use voxpipe_eval::breakdown::Stage;
use voxpipe_eval::{AbOptions, AbReport, FakeProfile, run_ab};
use voxpipe_fakes::gemini::{GeminiFake, GeminiFakeConfig};
use voxpipe_fakes::openai_speech::{SpeechFake, SpeechFakeConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascade_gemini_fake_sends_whisper_transcripts_to_gemini_and_speaks_its_replies() {
    let store = voxpipe_models::ModelStore::from_env().unwrap();
    store.pull("whisper-tiny.en", &voxpipe_models::NoProgress).await.unwrap();
    let gemini =
        GeminiFake::start(GeminiFakeConfig { api_key: Some("sk-fake".into()), ..Default::default() })
            .await
            .unwrap(); // echoes the caller
    let speech = SpeechFake::start(SpeechFakeConfig { api_key: "sk-fake".into(), ..Default::default() })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = RunArgs {
        pipeline: repo_path("pipelines/cascade-gemini-fake.toml"),
        input: Some(repo_path("samples/two-turns.wav")),
        output: Some(dir.path().join("reply.wav")),
        events: Some(dir.path().join("events.jsonl")),
        profile: None,
        sets: vec![
            format!("stages[1].base_url={}", gemini.base_url()),
            format!("stages[2].base_url={}", speech.base_url()),
        ],
        quiet: true,
    };
    let env = vec![("FAKE_API_KEY".to_string(), "sk-fake".to_string())];
    run_pipeline(&args, env, RunOptions::default()).await.unwrap();
    let events = read_events(&dir.path().join("events.jsonl"));
    let users: Vec<String> = events_of(&events, "user_transcript")
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(users.len(), 2, "{users:?}");

    // One request per turn: the transcript as the last user turn, the history before it.
    let requests = gemini.requests();
    assert_eq!(requests.len(), 2);
    for (req, user) in requests.iter().zip(&users) {
        assert_eq!(req.header("x-goog-api-key"), Some("[redacted]"));
        assert!(
            req.body["systemInstruction"]["parts"][0]["text"].as_str().unwrap().contains("customer-service")
        );
        assert_eq!(req.body["generationConfig"]["thinkingConfig"]["thinkingBudget"], 0);
        assert_eq!(req.body["tools"][0]["functionDeclarations"][0]["name"], "get_order_status");
        let last = req.body["contents"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["role"], "user");
        assert_eq!(last["parts"][0]["text"].as_str().unwrap(), user.as_str());
    }
    let roles: Vec<&str> = requests[1].body["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "model", "user"]);

    // The speech fake spoke each echo.
    let spoken: String = speech
        .requests()
        .iter()
        .map(|r| r.body["input"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    for user in &users {
        let words: Vec<&str> = user.split_whitespace().take(3).collect();
        assert!(spoken.contains(&words.join(" ")), "{user:?} not spoken back: {spoken:?}");
    }
    assert_eq!(events_of(&events, "provider_error").len(), 0);
}

const TWO_TURNS: &str = r#"
[[turns]]
say = "Hello, I need to book an appointment."
[[turns]]
say = "Tomorrow morning, please."
gap_ms = 5000
reply_must_contain = ["tomorrow"]

[[fake.llm]]
text = "Sure, when would you like to come in?"
[[fake.llm]]
text = "Booked for tomorrow morning. See you then."
"#;

fn llm_first_token_median(report: &AbReport, label: &str) -> f64 {
    let mut v: Vec<u64> = report
        .calls
        .iter()
        .filter(|c| c.pipeline == label && c.error.is_none())
        .flat_map(|c| c.turns.iter())
        .filter_map(|t| t.breakdown.as_ref()?.get(Stage::LlmFirstToken))
        .collect();
    v.sort();
    assert_eq!(v.len(), 2, "{label}: both turns answered");
    v[v.len() / 2] as f64
}

/// `voxpipe ab --fakes` on the phone cascade (chat fake) against the same cascade with its LLM
/// stage swapped for `kind`: the harness starts that vendor's own fake, timed by the profile's
/// `table`, here 300 ms slower to its first token than the chat fake.
async fn an_llm_vendor_is_served_by_its_own_fake_timed_by_its_profile_table(
    kind: &str,
    base_url: &str,
    table: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir_all(scenarios.join("booking")).unwrap();
    std::fs::write(scenarios.join("booking/scenario.toml"), TWO_TURNS).unwrap();
    let chat = std::fs::read_to_string(repo_path("pipelines/phone-cascade-fake.toml")).unwrap();
    let swapped =
        chat.replace("name = \"phone-cascade-fake\"", "name = \"phone-cascade-other-fake\"").replace(
            "kind = \"llm.openai\"\nbase_url = \"http://127.0.0.1:8788/v1\"",
            &format!("kind = \"{kind}\"\nbase_url = \"{base_url}\""),
        );
    assert!(swapped.contains(kind));
    let swapped_file = dir.path().join("phone-cascade-other-fake.toml");
    std::fs::write(&swapped_file, swapped).unwrap();

    let profile_file = dir.path().join("slow.toml");
    let published = FakeProfile::published();
    let slower = published.chat.first_token_ms.value + 300;
    std::fs::write(
        &profile_file,
        format!("extends = \"published\"\n[{table}]\nfirst_token_ms = {{ value = {slower} }}\n"),
    )
    .unwrap();
    let profile = FakeProfile::select(profile_file.to_str().unwrap()).unwrap();
    let mut opts = AbOptions::new(
        vec![repo_path("pipelines/phone-cascade-fake.toml"), swapped_file.clone()],
        scenarios,
        dir.path().join("out"),
    );
    opts.start_fakes = true;
    opts.progress = false;
    opts.fake_profiles = vec![profile.clone(), profile];
    let report = run_ab(opts).await.unwrap();
    assert_eq!(report.failures().count(), 0, "{:?}", report.failures().collect::<Vec<_>>());

    let (a, b) = (llm_first_token_median(&report, "A"), llm_first_token_median(&report, "B"));
    assert!((250.0..=350.0).contains(&(b - a)), "{kind}'s fake answered B, 300 ms later: A {a} ms, B {b} ms");
    let md = std::fs::read_to_string(&report.report).unwrap();
    assert!(md.contains(&format!("| {table} | `first_token_ms` | {slower} | {slower} | B |")), "{md}");
    assert!(md.contains("| chat | `first_token_ms` | 400 | 400 | A |"), "{md}");
}

#[tokio::test(start_paused = true)]
async fn ab_with_fakes_serves_a_gemini_cascade_from_a_gemini_fake_timed_by_its_own_profile_table() {
    an_llm_vendor_is_served_by_its_own_fake_timed_by_its_profile_table(
        "llm.gemini",
        "http://127.0.0.1:8795/v1beta",
        "gemini",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn ab_with_fakes_serves_an_anthropic_cascade_from_the_anthropic_fake_timed_by_its_own_profile_table() {
    an_llm_vendor_is_served_by_its_own_fake_timed_by_its_profile_table(
        "llm.anthropic",
        "http://127.0.0.1:8789/v1",
        "anthropic",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn ab_with_fakes_serves_an_elevenlabs_voice_from_the_elevenlabs_fake_timed_by_its_own_profile_table() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir_all(scenarios.join("booking")).unwrap();
    std::fs::write(scenarios.join("booking/scenario.toml"), TWO_TURNS).unwrap();
    let openai = std::fs::read_to_string(repo_path("pipelines/phone-cascade-fake.toml")).unwrap();
    let swapped = openai.replace(
        "kind = \"tts.openai\"\nbase_url = \"http://127.0.0.1:8790/v1\"\napi_key_env = \"FAKE_API_KEY\"\nvoice = \"alloy\"",
        "kind = \"tts.elevenlabs\"\nbase_url = \"http://127.0.0.1:8791/v1\"\nws_url = \"ws://127.0.0.1:8791/v1\"\n\
         api_key_env = \"FAKE_API_KEY\"\nvoice_id = \"21m00Tcm4TlvDq8ikWAM\"\nmodel_id = \"eleven_flash_v2_5\"\ntransport = \"http\"",
    );
    assert!(swapped.contains("tts.elevenlabs"));
    let swapped_file = dir.path().join("phone-cascade-elevenlabs-fake.toml");
    std::fs::write(&swapped_file, swapped).unwrap();

    // ElevenLabs 200 ms slower to its first audio than the OpenAI speech fake.
    let published = FakeProfile::published();
    let slower = published.speech.first_byte_ms.value + 200;
    let profile_file = dir.path().join("slow.toml");
    std::fs::write(
        &profile_file,
        format!("extends = \"published\"\n[elevenlabs]\nfirst_byte_ms = {{ value = {slower} }}\n"),
    )
    .unwrap();
    let profile = FakeProfile::select(profile_file.to_str().unwrap()).unwrap();
    let mut opts = AbOptions::new(
        vec![repo_path("pipelines/phone-cascade-fake.toml"), swapped_file],
        scenarios,
        dir.path().join("out"),
    );
    opts.start_fakes = true;
    opts.progress = false;
    opts.fake_profiles = vec![profile.clone(), profile];
    let report = run_ab(opts).await.unwrap();
    assert_eq!(report.failures().count(), 0, "{:?}", report.failures().collect::<Vec<_>>());
    let tts = |label: &str| {
        let mut v: Vec<u64> = report
            .calls
            .iter()
            .filter(|c| c.pipeline == label)
            .flat_map(|c| c.turns.iter())
            .filter_map(|t| t.tts_first_audio_ms)
            .collect();
        v.sort();
        let turns: Vec<_> = report
            .calls
            .iter()
            .filter(|c| c.pipeline == label)
            .flat_map(|c| c.turns.iter().map(|t| (t.reply.clone(), t.errors.clone(), t.tts_first_audio_ms)))
            .collect();
        assert_eq!(v.len(), 2, "{label}: both turns spoken: {turns:?}");
        v[1] as f64
    };
    let (a, b) = (tts("A"), tts("B"));
    assert!(
        (150.0..=250.0).contains(&(b - a)),
        "ElevenLabs' fake spoke for B, 200 ms later: A {a} ms, B {b} ms"
    );
    let md = std::fs::read_to_string(&report.report).unwrap();
    assert!(md.contains(&format!("| elevenlabs | `first_byte_ms` | {slower} | {slower} | B |")), "{md}");
}
