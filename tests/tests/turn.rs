//! Turn-taking and interruption scenarios on a virtual clock: local turns for the native
//! pipeline (against the Realtime fake) and for the cascade (transcription, chat and speech
//! fakes), barge-in, false-interruption guards, pause-then-resume, the end-of-turn policy and
//! push-to-talk. Every time asserted comes from the event log, the fakes' records or the
//! output WAV.

use std::path::{Path, PathBuf};
use voxpipe_cli::run_pipeline;
use voxpipe_core::RunOptions;
use voxpipe_e2e::*;
use voxpipe_fakes::openai_chat::{ChatFake, ChatFakeConfig, ScriptedReply};
use voxpipe_fakes::openai_speech::{SpeechFake, SpeechFakeConfig};
use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig, ScriptedResponse};
use voxpipe_fakes::transcription::{TranscriptionFake, TranscriptionFakeConfig};

fn env() -> Vec<(String, String)> {
    vec![("OPENAI_API_KEY".into(), "sk-test".into())]
}

fn t_ms(e: &serde_json::Value) -> u64 {
    e["t_ms"].as_u64().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Native (Realtime) with voxpipe's turns.

fn native_pipeline(dir: &Path, fake: &RealtimeFake, turn: &str) -> PathBuf {
    native_pipeline_with(dir, fake, turn, "")
}

/// `input` is added to the `[input]` table.
fn native_pipeline_with(dir: &Path, fake: &RealtimeFake, turn: &str, input: &str) -> PathBuf {
    let path = dir.join("native-local.toml");
    let toml = format!(
        r#"
name = "native-local"
[input]
kind = "wav"
path = "unused.wav"
tail_silence_ms = 1500
{input}
[output]
kind = "wav"
path = "unused-reply.wav"
[turn]
vad = "energy"
{turn}
[[stages]]
kind = "realtime.openai"
model = "gpt-realtime-mini"
url = "{url}"
api_key_env = "OPENAI_API_KEY"
instructions = "Keep replies short."
turn_detection = {{ type = "none" }}
transcription = {{ model = "gpt-4o-mini-transcribe" }}
"#,
        url = fake.url()
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn client_events(fake: &RealtimeFake, kind: &str) -> Vec<(u64, serde_json::Value)> {
    fake.client_events()
        .into_iter()
        .filter(|e| e.json["type"] == kind)
        .map(|e| (e.at.as_millis() as u64, e.json))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn native_local_turns_commit_and_ask_for_a_reply_when_each_turn_ends() {
    let dir = tempfile::tempdir().unwrap();
    let fake = RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![
            ScriptedResponse::say("Sure, what is the order number?"),
            ScriptedResponse::say("Done."),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let pipeline = native_pipeline(dir.path(), &fake, "mode = \"local\"\nmin_silence_ms = 500");
    let a = run_args(dir.path(), pipeline, repo_path("samples/two-turns.wav"));
    run_pipeline(&a, env(), RunOptions::default()).await.unwrap();

    let update = &client_events(&fake, "session.update")[0].1;
    let td = &update["session"]["audio"]["input"]["turn_detection"];
    assert!(td.is_null(), "local turns switch the server's turn detection off: {td}");

    let events = read_events(&dir.path().join("events.jsonl"));
    let ended = events_of(&events, "turn_ended");
    let commits = client_events(&fake, "input_audio_buffer.commit");
    let creates = client_events(&fake, "response.create");
    assert_eq!((ended.len(), commits.len(), creates.len()), (2, 2, 2), "one commit and one reply per turn");
    for (i, e) in ended.iter().enumerate() {
        // The controller waits min_silence_ms after the last voiced 20 ms frame.
        let wait = t_ms(e) - e["speech_end_ms"].as_u64().unwrap();
        // (Audio reaches the controller as 20 ms chunks sent at their start time.)
        assert!((460..=540).contains(&wait), "turn {i}: decided {wait} ms after the end of speech");
        // The commit and response.create follow the decision at once (same virtual instant).
        assert!(
            commits[i].0.abs_diff(t_ms(e)) <= 20,
            "commit at {} ms, decided at {} ms",
            commits[i].0,
            t_ms(e)
        );
        assert!(creates[i].0 >= commits[i].0 && creates[i].0 - commits[i].0 <= 20);
    }
    assert_eq!(events_of(&events, "response_done").len(), 2);
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    assert_eq!(active_regions(&samples, rate, 500, 150).len(), 2, "two replies played");
    fake.shutdown().await;
}

/// Turn 1, a long reply sent in real time, and then what `extra` adds during the reply.
fn reply_call(extra: impl FnOnce(Call) -> Call) -> Call {
    let c = Call::default().silence(500).tone("turn1", 1500); // 0.5..2.0 s
    extra(c.silence(1500)).silence(2500)
}

async fn long_reply_fake() -> RealtimeFake {
    RealtimeFake::start(RealtimeFakeConfig {
        responses: vec![
            ScriptedResponse {
                audio_ms: Some(4000),
                ..ScriptedResponse::say("Let me tell you a long story about your order and its journey.")
            },
            ScriptedResponse::say("Yes?"),
        ],
        // Real time: the response is still being generated when the caller barges in.
        pace: 1.0,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Runs `call` through the native pipeline with local turns against [`long_reply_fake`]: the
/// fake (for its records) and the event log.
async fn run_native_local(dir: &Path, call: &Call) -> (RealtimeFake, Vec<serde_json::Value>) {
    call.write(&dir.join("call.wav"));
    let fake = long_reply_fake().await;
    let pipeline = native_pipeline(dir, &fake, "mode = \"local\"");
    run_pipeline(&run_args(dir, pipeline, dir.join("call.wav")), env(), RunOptions::default()).await.unwrap();
    (fake, read_events(&dir.join("events.jsonl")))
}

#[tokio::test(start_paused = true)]
async fn native_local_barge_in_cancels_the_response_and_truncates_to_what_was_played() {
    let dir = tempfile::tempdir().unwrap();
    let call = reply_call(|c| c.tone("barge", 1000)); // 3.5..4.5 s, the reply runs from ~2.7 s
    let (fake, events) = run_native_local(dir.path(), &call).await;
    let interrupts = events_of(&events, "interrupt");
    assert_eq!(interrupts.len(), 1, "{interrupts:?}");
    let interrupt = interrupts[0];
    assert_eq!(interrupt["reason"], "barge_in");
    let cancels = client_events(&fake, "response.cancel");
    assert_eq!(cancels.len(), 1, "the response still being generated is cancelled");
    let truncates = client_events(&fake, "conversation.item.truncate");
    assert_eq!(truncates.len(), 1);
    let audio_end_ms = truncates[0].1["audio_end_ms"].as_u64().unwrap();
    assert_eq!(truncates[0].1["item_id"], interrupt["item"]);

    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    let regions = active_regions(&samples, rate, 500, 150);
    let (start, end) = regions[0];
    assert!(
        audio_end_ms.abs_diff(end - start) <= 20,
        "truncate at {audio_end_ms} ms, played {} ms",
        end - start
    );
    // The reply went quiet when the caller's speech was confirmed (held), and stayed quiet:
    // within one frame of the onset + the VAD's 150 ms confirmation.
    let (barge, _) = call.mark("barge");
    assert!(end.abs_diff(barge + 150) <= 40, "sink silent at {end} ms, speech began at {barge} ms");
    assert!(end <= t_ms(interrupt) + 20, "silent by the interrupt decision at {} ms", t_ms(interrupt));
    let paused = events_of(&events, "playout_paused");
    assert_eq!(paused.len(), 1);
    // The interruption counts from the onset, after min_speech_ms (300) of voiced speech.
    assert!(t_ms(interrupt).abs_diff(barge + 300) <= 40, "decided at {} ms", t_ms(interrupt));
    // The caller's barge-in became turn 2, answered.
    assert_eq!(client_events(&fake, "input_audio_buffer.commit").len(), 2);
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn native_a_cough_pauses_and_resumes_the_same_reply_and_a_click_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // During the reply: a 100 ms click, then a 250 ms cough.
    let call = reply_call(|c| c.tone("click", 100).silence(900).tone("cough", 250));
    let (fake, events) = run_native_local(dir.path(), &call).await;
    assert!(events_of(&events, "interrupt").is_empty(), "neither sound interrupts");
    assert!(client_events(&fake, "conversation.item.truncate").is_empty());
    assert!(client_events(&fake, "response.cancel").is_empty());
    assert_eq!(client_events(&fake, "input_audio_buffer.commit").len(), 1, "no turn for a cough");
    let paused = events_of(&events, "playout_paused");
    assert_eq!(paused.len(), 1, "the click is too short to even hold playout");
    let (cough, _) = call.mark("cough");
    assert!(paused[0]["onset_ms"].as_u64().unwrap().abs_diff(cough) <= 40);
    assert_eq!(events_of(&events, "playout_resumed").len(), 1);
    let false_ = events_of(&events, "false_interruption");
    assert_eq!(false_.len(), 1);
    assert_eq!(false_[0]["reason"], "too_short");

    // The whole 4 s reply was played: in two parts around the hold.
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    let regions = active_regions(&samples, rate, 500, 100);
    assert_eq!(regions.len(), 2, "the reply, held once: {regions:?}");
    let played: u64 = regions.iter().map(|(a, b)| b - a).sum();
    assert!(played.abs_diff(4000) <= 40, "the same reply resumed and played to the end: {played} ms");
    let finished = events_of(&events, "playout_finished");
    assert_eq!(finished[0]["interrupted"], false);
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn native_speech_at_the_very_start_of_a_reply_is_taken_for_echo() {
    let dir = tempfile::tempdir().unwrap();
    // Turn 1 ends at 2.0 s; the controller decides at ~2.48 s and the fake's first audio comes
    // 200 ms later: the reply is audible from ~2.7 s. A sound starting then is its echo.
    let call = Call::default().silence(500).tone("turn1", 1500).silence(720).tone("echo", 800).silence(4000);
    let (fake, events) = run_native_local(dir.path(), &call).await;
    let started = t_ms(events_of(&events, "playout_started")[0]);
    let (echo, _) = call.mark("echo");
    assert!(echo.abs_diff(started) <= 40, "the scripted echo starts with the reply ({echo} vs {started} ms)");
    let false_ = events_of(&events, "false_interruption");
    assert_eq!(false_.len(), 1, "{false_:?}");
    assert_eq!(false_[0]["reason"], "echo_warmup");
    assert!(events_of(&events, "interrupt").is_empty());
    assert!(events_of(&events, "playout_paused").is_empty(), "echo does not even hold the reply");
    assert_eq!(client_events(&fake, "input_audio_buffer.commit").len(), 1, "and is no turn");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn native_a_caller_who_starts_with_the_reply_and_keeps_talking_is_heard() {
    let dir = tempfile::tempdir().unwrap();
    // As above, but the sound starting with the reply lasts 2.5 s: no echo lasts that long
    // (echo_max_ms 1000), so it is the caller talking over the reply from its first word.
    let call =
        Call::default().silence(500).tone("turn1", 1500).silence(720).tone("caller", 2500).silence(4000);
    let (fake, events) = run_native_local(dir.path(), &call).await;
    let (caller, _) = call.mark("caller");
    let false_ = events_of(&events, "false_interruption");
    assert_eq!(false_.len(), 1, "taken for echo at first: {false_:?}");
    let paused = events_of(&events, "playout_paused");
    assert_eq!(paused.len(), 1, "held once it outlasted the warm-up: {paused:?}");
    assert!(paused[0]["onset_ms"].as_u64().unwrap().abs_diff(caller) <= 40, "from its onset");
    assert!(t_ms(paused[0]).abs_diff(caller + 1000) <= 60, "held at {} ms", t_ms(paused[0]));
    let interrupts = events_of(&events, "interrupt");
    assert_eq!(interrupts.len(), 1, "{interrupts:?}");
    assert_eq!(interrupts[0]["reason"], "barge_in");
    assert_eq!(client_events(&fake, "response.cancel").len(), 1);
    assert_eq!(client_events(&fake, "input_audio_buffer.commit").len(), 2, "and it became turn 2");
    fake.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn native_push_to_talk_turns_follow_the_button_and_a_press_interrupts() {
    let dir = tempfile::tempdir().unwrap();
    let call = reply_call(|c| c.tone("barge", 1000));
    call.write(&dir.path().join("call.wav"));
    let fake = long_reply_fake().await;
    let (t1, t1_end) = call.mark("turn1");
    let (b, b_end) = call.mark("barge");
    let presses = format!("push_to_talk = [[{}, {}], [{}, {}]]", t1 - 100, t1_end + 100, b, b_end + 100);
    let pipeline = native_pipeline_with(dir.path(), &fake, "mode = \"push_to_talk\"", &presses);
    let a = run_args(dir.path(), pipeline, dir.path().join("call.wav"));
    run_pipeline(&a, env(), RunOptions::default()).await.unwrap();

    let events = read_events(&dir.path().join("events.jsonl"));
    let starts: Vec<u64> =
        events_of(&events, "speech_started").iter().map(|e| e["at_ms"].as_u64().unwrap()).collect();
    let stops: Vec<u64> =
        events_of(&events, "speech_stopped").iter().map(|e| e["at_ms"].as_u64().unwrap()).collect();
    assert_eq!(starts, [t1 - 100, b], "turns start at the presses");
    assert_eq!(stops, [t1_end + 100, b_end + 100], "and end at the releases");
    let commits = client_events(&fake, "input_audio_buffer.commit");
    assert_eq!(commits.len(), 2);
    for (c, release) in commits.iter().zip([t1_end + 100, b_end + 100]) {
        assert!(c.0.abs_diff(release) <= 40, "commit at {} ms, released at {release} ms", c.0);
    }
    let interrupts = events_of(&events, "interrupt");
    assert_eq!(interrupts.len(), 1, "the press during the reply interrupts it");
    assert_eq!(interrupts[0]["reason"], "requested");
    assert!(t_ms(interrupts[0]).abs_diff(b) <= 40);
    assert_eq!(client_events(&fake, "conversation.item.truncate").len(), 1);
    fake.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Cascade with the turn gate.

struct CascadeFakes {
    asr: TranscriptionFake,
    llm: ChatFake,
    tts: SpeechFake,
}

async fn cascade_fakes(transcripts: &[&str], replies: &[&str]) -> CascadeFakes {
    CascadeFakes {
        asr: TranscriptionFake::start(TranscriptionFakeConfig {
            transcripts: transcripts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap(),
        llm: ChatFake::start(ChatFakeConfig {
            replies: replies.iter().map(|r| ScriptedReply::text(*r)).collect(),
            ..Default::default()
        })
        .await
        .unwrap(),
        tts: SpeechFake::start(SpeechFakeConfig::default()).await.unwrap(),
    }
}

fn cascade_pipeline(dir: &Path, f: &CascadeFakes, turn: &str) -> PathBuf {
    let path = dir.join("cascade-local.toml");
    let toml = format!(
        r#"
name = "cascade-local"
[input]
kind = "wav"
path = "unused.wav"
tail_silence_ms = 2000
[output]
kind = "wav"
path = "unused-reply.wav"
[turn]
mode = "local"
vad = "energy"
min_silence_ms = 500
{turn}
[[stages]]
kind = "asr.openai"
base_url = "{asr}"
api_key_env = "OPENAI_API_KEY"
model = "gpt-4o-mini-transcribe"
[[stages]]
kind = "llm.openai"
base_url = "{llm}"
api_key_env = "OPENAI_API_KEY"
model = "gpt-4o-mini"
instructions = "Keep replies short."
[[stages]]
kind = "tts.openai"
base_url = "{tts}"
api_key_env = "OPENAI_API_KEY"
model = "gpt-4o-mini-tts"
voice = "alloy"
"#,
        asr = f.asr.base_url(),
        llm = f.llm.base_url(),
        tts = f.tts.base_url(),
    );
    std::fs::write(&path, toml).unwrap();
    path
}

/// Runs `call` through the cascade against `f`; the event log.
async fn run_cascade(dir: &Path, f: &CascadeFakes, call: &Call) -> Vec<serde_json::Value> {
    call.write(&dir.join("call.wav"));
    let pipeline = cascade_pipeline(dir, f, "");
    run_pipeline(&run_args(dir, pipeline, dir.join("call.wav")), env(), RunOptions::default()).await.unwrap();
    read_events(&dir.join("events.jsonl"))
}

/// The `messages` of each request the chat fake received, as (role, content) pairs.
fn llm_messages(f: &CascadeFakes) -> Vec<Vec<(String, String)>> {
    f.llm
        .requests()
        .iter()
        .map(|r| {
            r.body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap_or("").to_string())
                })
                .collect()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn cascade_backchannel_does_not_interrupt_a_real_sentence_does_and_history_keeps_only_heard_words() {
    let dir = tempfile::tempdir().unwrap();
    let long = "Your order shipped on Monday from our warehouse in Leeds, it is with the courier now and should reach you by Friday afternoon at the latest.";
    let f = cascade_fakes(
        &["I would like to check my order.", "Uh-huh.", "No wait, I meant the blue one."],
        &[long, "Sorry, the blue one is on its way too."],
    )
    .await;
    // The reply (~8 s of audio at the fake's 60 ms per character) starts ~0.4 s after turn 1.
    let call = Call::default()
        .silence(500)
        .say("turn1", "I would like to check my order.")
        .silence(2000)
        .say("uh-huh", "uh-huh")
        .silence(1500)
        .say("barge", "No wait, I meant the blue one.")
        .silence(3000);
    let events = run_cascade(dir.path(), &f, &call).await;
    let false_ = events_of(&events, "false_interruption");
    assert_eq!(false_.len(), 1, "{false_:?}");
    assert_eq!(
        (false_[0]["reason"].as_str(), false_[0]["text"].as_str()),
        (Some("backchannel"), Some("Uh-huh."))
    );
    assert_eq!(events_of(&events, "playout_paused").len(), 2, "held for the uh-huh and for the sentence");
    assert_eq!(events_of(&events, "playout_resumed").len(), 1, "resumed after the uh-huh only");
    let interrupts = events_of(&events, "interrupt");
    assert_eq!(interrupts.len(), 1);
    let (barge, barge_end) = call.mark("barge");
    assert!(t_ms(interrupts[0]) > barge, "the sentence interrupted");
    // It is a turn of its own, decided once its words are in (not when the call ends, 5 s on).
    let ended = events_of(&events, "turn_ended");
    let decided = t_ms(ended.last().unwrap());
    assert!(
        decided < barge_end + 1500,
        "barge-in turn decided at {decided} ms, speech ended at {barge_end} ms"
    );

    // The model never saw the backchannel, and its second request holds only what was heard.
    let msgs = llm_messages(&f);
    assert_eq!(msgs.len(), 2, "two replies: none for the uh-huh");
    assert!(msgs.iter().flatten().all(|(_, c)| !c.contains("Uh-huh")));
    let second = &msgs[1];
    let users: Vec<&str> = second.iter().filter(|m| m.0 == "user").map(|m| m.1.as_str()).collect();
    assert_eq!(users, ["I would like to check my order.", "No wait, I meant the blue one."]);
    let heard = &second.iter().find(|m| m.0 == "assistant").unwrap().1;
    assert!(
        !heard.is_empty() && heard.len() < long.len() && long.starts_with(heard.as_str()),
        "heard: {heard:?}"
    );

    // The first reply resumed after the hold: it plays in at least two parts before the cut.
    let (samples, rate) = read_wav(&dir.path().join("reply.wav"));
    let regions = active_regions(&samples, rate, 500, 250);
    let (uh, uh_end) = call.mark("uh-huh");
    assert!(
        regions.iter().any(|(_, b)| *b <= uh + 200 && *b > uh) && regions.iter().any(|(a, _)| *a > uh_end),
        "reply held during the uh-huh and resumed after it: {regions:?}"
    );
    // For the sentence, the sink went silent within one frame of holding playout and stayed
    // silent through the interruption: nothing of the first reply plays after it.
    let held_at = t_ms(events_of(&events, "playout_paused")[1]);
    assert!(regions.iter().any(|(_, b)| b.abs_diff(held_at) <= 20), "silent at {held_at} ms: {regions:?}");
    let next = events_of(&events, "playout_started").into_iter().map(t_ms).find(|t| *t > held_at).unwrap();
    assert!(next > t_ms(interrupts[0]), "only the next reply plays after the interruption");
    assert!(
        regions.iter().all(|(a, _)| *a <= held_at || *a + 20 >= next),
        "no audio between the hold and the next reply: {regions:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn cascade_a_trailing_and_waits_longer_than_a_complete_sentence_and_a_continued_turn_is_one_turn() {
    let dir = tempfile::tempdir().unwrap();
    let f = cascade_fakes(
        &["I ordered a lamp and", "Where is my order?", "My number is 555", "1234."],
        &["Okay.", "Let me check.", "Thanks."],
    )
    .await;
    let call = Call::default()
        .silence(500)
        .say("and", "I ordered a lamp and")
        .silence(3000)
        .say("question", "Where is my order?")
        .silence(3000)
        .say("number", "My number is five five five")
        .silence(800)
        .say("rest", "one two three four.")
        .silence(2000);
    let events = run_cascade(dir.path(), &f, &call).await;
    let ended = events_of(&events, "turn_ended");
    assert_eq!(ended.len(), 3, "{ended:?}");
    let wait = |e: &serde_json::Value| t_ms(e) - e["speech_end_ms"].as_u64().unwrap();
    let (w_and, w_question) = (wait(ended[0]), wait(ended[1]));
    assert_eq!(ended[0]["completeness"], "incomplete");
    assert_eq!(ended[1]["completeness"], "complete");
    // medium eagerness, min_silence 500: complete 300 ms, incomplete 1500 ms after speech.
    assert!(w_and.abs_diff(1500) <= 40, "after a trailing 'and' the turn ended {w_and} ms after speech");
    assert!(w_question.abs_diff(300) <= 40, "after a question it ended {w_question} ms after speech");
    // The number was read in two breaths: one turn, one request, the words joined.
    let (_, rest_end) = call.mark("rest");
    assert!(ended[2]["speech_end_ms"].as_u64().unwrap().abs_diff(rest_end) <= 40);
    let msgs = llm_messages(&f);
    assert_eq!(msgs.len(), 3);
    let last_user = msgs[2].iter().rev().find(|m| m.0 == "user").unwrap();
    assert_eq!(last_user.1, "My number is 555 1234.");
}

#[tokio::test(start_paused = true)]
async fn cascade_pause_ms_overlaps_the_final_decode_with_the_wait_and_a_resumed_sentence_stays_one_turn() {
    // The ASR answers each final 200 ms after the request.
    async fn fakes() -> CascadeFakes {
        CascadeFakes {
            asr: TranscriptionFake::start(TranscriptionFakeConfig {
                transcripts: ["Hi.", "I'd like to check my order.", "Thanks."].map(String::from).to_vec(),
                latency_ms: 200,
                ..Default::default()
            })
            .await
            .unwrap(),
            llm: ChatFake::start(ChatFakeConfig {
                replies: vec![ScriptedReply::text("Sure."), ScriptedReply::text("You're welcome.")],
                ..Default::default()
            })
            .await
            .unwrap(),
            tts: SpeechFake::start(SpeechFakeConfig::default()).await.unwrap(),
        }
    }
    // "Hi", a 200 ms breath, the rest of the sentence; later "Thanks".
    let call = Call::default()
        .silence(500)
        .tone("hi", 600)
        .silence(200)
        .tone("rest", 1500)
        .silence(4000)
        .tone("thanks", 800)
        .silence(3000);
    let run = |pause_ms: u32| {
        let call = &call;
        async move {
            let dir = tempfile::tempdir().unwrap();
            let f = fakes().await;
            call.write(&dir.path().join("call.wav"));
            let pipeline = cascade_pipeline(dir.path(), &f, &format!("pause_ms = {pause_ms}"));
            let a = run_args(dir.path(), pipeline, dir.path().join("call.wav"));
            run_pipeline(&a, env(), RunOptions::default()).await.unwrap();
            (read_events(&dir.path().join("events.jsonl")), f)
        }
    };
    let delay = |e: &serde_json::Value| t_ms(e) - e["speech_end_ms"].as_u64().unwrap();

    // pause_ms = 120: the breath ends an utterance ("Hi." reads complete, and its final is in
    // before the caller's speech counts again) but the gate holds its decision while that speech
    // is being confirmed: one turn, both transcripts, one reply.
    let (events, f) = run(120).await;
    let ended = events_of(&events, "turn_ended");
    assert_eq!(ended.len(), 2, "{ended:?}");
    assert_eq!(f.asr.requests().len(), 3, "one final per utterance: \"Hi\", the rest, \"Thanks\"");
    let msgs = llm_messages(&f);
    assert_eq!(msgs.len(), 2);
    let first_user = msgs[0].iter().find(|m| m.0 == "user").unwrap();
    assert_eq!(first_user.1, "Hi. I'd like to check my order.");
    // The final of "Thanks." was requested 120 ms after the speech and came 200 ms later:
    // past the complete wait (300 ms), so the turn ends at the final.
    let fast = delay(ended[1]);
    assert!(fast.abs_diff(320) <= 40, "turn ended {fast} ms after the speech");

    // pause_ms at (or above) the complete wait: the final is requested only after the wait.
    let (events, f) = run(300).await;
    let ended = events_of(&events, "turn_ended");
    assert_eq!((ended.len(), f.asr.requests().len()), (2, 2), "the breath does not end an utterance");
    let slow = delay(ended[1]);
    assert!(slow.abs_diff(500) <= 40, "turn ended {slow} ms after the speech");
    assert!(fast + 150 <= slow, "{fast} ms with pause_ms = 120, {slow} ms without");
}
