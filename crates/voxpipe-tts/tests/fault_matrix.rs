//! Fault matrix rows for `tts.openai` and `tts.elevenlabs` (HTTP and the stream-input
//! WebSocket): each test injects one fault of `voxpipe_fakes::fault` into the first request or
//! connection and checks that the stage recovers (retry) or reports a provider error and goes
//! on with the next chunk or reply, with no noise from the fault spoken.

mod support;

use std::time::Duration;
use support::{Harness, samples};
use voxpipe_core::{EventKind, Frame, Secret};
use voxpipe_fakes::elevenlabs::{ElevenLabsFake, ElevenLabsFakeConfig};
use voxpipe_fakes::fault::{FaultSpec, Faults};
use voxpipe_fakes::openai_speech::{PCM_RATE, SpeechFake, SpeechFakeConfig, StreamOutcome, speech_waveform};
use voxpipe_tts::{ElevenLabs, ElevenLabsConfig, OpenAiSpeech, OpenAiSpeechConfig, Transport};

const FIRST: &str = "The first sentence meets the fault.";
const SECOND: &str = "The second one arrives in full.";

fn faults(spec: &str) -> Faults {
    let spec: FaultSpec = spec.parse().unwrap();
    [(spec.index, spec.fault)].into()
}

/// What the stage produced for a two-sentence reply: frames and provider-error stages.
struct Spoken {
    samples: Vec<i16>,
    errors: Vec<String>,
}

async fn speak(mut h: Harness, text: &str) -> Spoken {
    h.say("item_1", text, 80, Duration::ZERO).await;
    h.input.send(Frame::EndOfStream).await.unwrap();
    let frames = h.collect_until_eos(Duration::from_secs(30)).await;
    (&mut h.task).await.unwrap().expect("no fatal error: the call goes on");
    let errors = h
        .drain_events()
        .into_iter()
        .filter_map(|e| match e {
            EventKind::ProviderError { stage, .. } => Some(stage),
            _ => None,
        })
        .collect();
    Spoken { samples: samples(&frames), errors }
}

fn wave(text: &str, rate: u32) -> Vec<i16> {
    speech_waveform(text, 60, rate)
}

async fn openai(spec: &str) -> (Spoken, Vec<StreamOutcome>) {
    let fake =
        SpeechFake::start(SpeechFakeConfig { faults: faults(spec), ..Default::default() }).await.unwrap();
    let config =
        OpenAiSpeechConfig { base_url: fake.base_url(), request_timeout_ms: 400, ..Default::default() };
    let stage = OpenAiSpeech::new(config, Some(Secret::new("sk-test"))).unwrap();
    let spoken = speak(Harness::start(Box::new(stage.into_stage())), &format!("{FIRST} {SECOND}")).await;
    (spoken, fake.requests().into_iter().map(|r| r.outcome).collect())
}

/// Both sentences spoken exactly, nothing reported.
fn whole(s: &Spoken, rate: u32) {
    let want: Vec<i16> = [wave(FIRST, rate), wave(SECOND, rate)].concat();
    assert_eq!(s.samples.len(), want.len());
    assert!(s.samples == want, "the audio is the fake's waveform");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
}

/// The first sentence failed (reported once), the second was spoken whole; nothing else.
fn first_lost(s: &Spoken, stage: &str, rate: u32) {
    assert_eq!(s.errors, [stage]);
    let second = wave(SECOND, rate);
    assert!(s.samples.ends_with(&second), "the next chunk is spoken in full");
    let before = &s.samples[..s.samples.len() - second.len()];
    assert!(wave(FIRST, rate).starts_with(before), "only real audio of the first chunk before it");
}

#[tokio::test]
async fn openai_speech_429_with_retry_after_is_retried_and_spoken_whole() {
    let (s, outcomes) = openai("0=status:429:retry-after=1").await;
    whole(&s, PCM_RATE);
    assert_eq!(outcomes[0], StreamOutcome::Rejected(429));
}

#[tokio::test]
async fn openai_speech_503_is_retried_and_spoken_whole() {
    let (s, outcomes) = openai("0=status:503").await;
    whole(&s, PCM_RATE);
    assert_eq!(outcomes.len(), 3);
}

#[tokio::test]
async fn openai_speech_stall_is_a_provider_error_after_the_read_timeout_and_the_next_chunk_is_spoken() {
    let (s, _) = openai("0=stall-after:1").await;
    first_lost(&s, "tts.openai", PCM_RATE);
}

#[tokio::test]
async fn openai_speech_cut_mid_body_is_a_provider_error_and_the_next_chunk_is_spoken() {
    let (s, outcomes) = openai("0=cut-after:1").await;
    first_lost(&s, "tts.openai", PCM_RATE);
    assert_eq!(outcomes[0], StreamOutcome::Cut);
}

#[tokio::test]
async fn openai_speech_slow_drip_is_spoken_whole() {
    let (s, _) = openai("0=slow:60").await;
    whole(&s, PCM_RATE);
}

#[tokio::test]
async fn openai_speech_wrong_content_type_is_a_provider_error_and_no_html_is_played() {
    let (s, _) = openai("0=wrong-content-type").await;
    assert_eq!(s.errors, ["tts.openai"]);
    assert!(s.samples == wave(SECOND, PCM_RATE), "only the second sentence: the HTML is not audio");
}

async fn eleven(transport: Transport, http: &str, ws: &str) -> (Spoken, ElevenLabsFake) {
    let config = ElevenLabsFakeConfig {
        faults: if http.is_empty() { Faults::new() } else { faults(http) },
        ws_faults: if ws.is_empty() { Faults::new() } else { faults(ws) },
        ..Default::default()
    };
    let fake = ElevenLabsFake::start(config).await.unwrap();
    let mut config = ElevenLabsConfig::with_voice("voice_custom_123");
    config.base_url = fake.base_url();
    config.ws_url = fake.ws_url();
    config.transport = transport;
    config.request_timeout_ms = 400;
    let stage = ElevenLabs::new(config, Secret::new("xi-test")).unwrap();
    let h = Harness::start(Box::new(stage.into_stage()));
    let spoken = speak(h, &format!("{FIRST} {SECOND}")).await;
    (spoken, fake)
}

#[tokio::test]
async fn elevenlabs_http_429_with_retry_after_is_retried_and_spoken_whole() {
    let (s, fake) = eleven(Transport::Http, "0=status:429:retry-after=1", "").await;
    whole(&s, 24_000);
    assert_eq!(fake.http_requests()[0].status, 429);
}

#[tokio::test]
async fn elevenlabs_http_500_is_retried_and_spoken_whole() {
    let (s, fake) = eleven(Transport::Http, "0=status:500", "").await;
    whole(&s, 24_000);
    assert_eq!(fake.http_requests().len(), 3);
}

#[tokio::test]
async fn elevenlabs_http_stall_is_a_provider_error_and_the_next_chunk_is_spoken() {
    let (s, _) = eleven(Transport::Http, "0=stall-after:1", "").await;
    first_lost(&s, "tts.elevenlabs", 24_000);
}

#[tokio::test]
async fn elevenlabs_http_cut_is_a_provider_error_and_the_next_chunk_is_spoken() {
    let (s, _) = eleven(Transport::Http, "0=cut-after:1", "").await;
    first_lost(&s, "tts.elevenlabs", 24_000);
}

#[tokio::test]
async fn elevenlabs_http_slow_drip_is_spoken_whole() {
    let (s, _) = eleven(Transport::Http, "0=slow:60", "").await;
    whole(&s, 24_000);
}

#[tokio::test]
async fn elevenlabs_http_wrong_content_type_is_a_provider_error_and_no_html_is_played() {
    let (s, _) = eleven(Transport::Http, "0=wrong-content-type", "").await;
    assert_eq!(s.errors, ["tts.elevenlabs"]);
    assert!(s.samples == wave(SECOND, 24_000), "only the second sentence: the HTML is not audio");
}

/// Over the WebSocket the reply is one socket: these check the reply ends, reported, and the
/// next reply (a second socket) is spoken whole.
async fn eleven_ws_two_replies(ws: &str) -> (Vec<i16>, Vec<String>, Vec<i16>, ElevenLabsFake) {
    let ws_faults = if ws.is_empty() { Faults::new() } else { faults(ws) };
    let config = ElevenLabsFakeConfig { ws_faults, ..Default::default() };
    let fake = ElevenLabsFake::start(config).await.unwrap();
    let mut config = ElevenLabsConfig::with_voice("voice_custom_123");
    config.base_url = fake.base_url();
    config.ws_url = fake.ws_url();
    config.transport = Transport::Websocket;
    config.request_timeout_ms = 400;
    let stage = ElevenLabs::new(config, Secret::new("xi-test")).unwrap();
    let mut h = Harness::start(Box::new(stage.into_stage()));
    let mut replies = Vec::new();
    for (item, text) in [("item_1", FIRST), ("item_2", SECOND)] {
        h.say(item, text, 80, Duration::ZERO).await;
        let mut got = Vec::new();
        // Until this reply's final transcript has passed and its audio has stopped.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, h.output.recv()).await {
                Ok(Some(Frame::OutputAudio(a))) if &*a.item == item => {
                    got.extend_from_slice(&a.chunk.samples)
                }
                Ok(Some(Frame::AssistantTranscript(t))) if t.is_final && t.item.as_deref() == Some(item) => {
                    // The transcript goes on before the audio ends; wait for silence.
                    while let Ok(Some(f)) =
                        tokio::time::timeout(Duration::from_secs(2), h.output.recv()).await
                    {
                        if let Frame::OutputAudio(a) = f {
                            got.extend_from_slice(&a.chunk.samples);
                        }
                    }
                    break;
                }
                Ok(Some(_)) => {}
                other => panic!("reply {item} did not end: {other:?}"),
            }
        }
        replies.push(got);
    }
    h.input.send(Frame::EndOfStream).await.unwrap();
    let _ = h.collect_until_eos(Duration::from_secs(10)).await;
    (&mut h.task).await.unwrap().expect("no fatal error: the call goes on");
    let errors = h
        .drain_events()
        .into_iter()
        .filter_map(|e| match e {
            EventKind::ProviderError { stage, .. } => Some(stage),
            _ => None,
        })
        .collect();
    let second = replies.pop().unwrap();
    (replies.pop().unwrap(), errors, second, fake)
}

#[tokio::test]
async fn elevenlabs_ws_503_on_upgrade_is_retried_and_spoken_whole() {
    let (first, errors, second, fake) = eleven_ws_two_replies("0=status:503").await;
    ws_whole(&first, &errors, &second).await;
    assert_eq!(fake.ws_sessions()[0].ended.as_deref(), Some("rejected 503"));
}

/// The two replies spoken without a fault (the fake generates per text piece it is sent, so
/// this is the reference, not one waveform of each sentence).
async fn ws_baseline() -> (Vec<i16>, Vec<i16>) {
    let (first, errors, second, _) = eleven_ws_two_replies("").await;
    assert!(errors.is_empty() && !first.is_empty() && !second.is_empty(), "{errors:?}");
    (first, second)
}

/// The faulted reply ended early (reported); the next reply was spoken whole.
async fn ws_first_lost(first: &[i16], errors: &[String], second: &[i16]) {
    let (want_first, want_second) = ws_baseline().await;
    assert_eq!(errors, ["tts.elevenlabs"]);
    assert!(first.len() < want_first.len(), "the faulted reply ended early");
    assert!(second == want_second, "the next reply is spoken in full");
}

/// Both replies spoken as without a fault, nothing reported.
async fn ws_whole(first: &[i16], errors: &[String], second: &[i16]) {
    let (want_first, want_second) = ws_baseline().await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(first == want_first && second == want_second, "both replies whole");
}

#[tokio::test]
async fn elevenlabs_ws_disconnect_mid_reply_is_a_provider_error_and_the_next_reply_is_spoken() {
    let (first, errors, second, _) = eleven_ws_two_replies("0=cut-after:1").await;
    ws_first_lost(&first, &errors, &second).await;
    assert!(!first.is_empty(), "one message came before the cut");
}

#[tokio::test]
async fn elevenlabs_ws_stall_is_a_provider_error_and_the_next_reply_is_spoken() {
    let (first, errors, second, _) = eleven_ws_two_replies("0=stall-after:1").await;
    ws_first_lost(&first, &errors, &second).await;
}

#[tokio::test]
async fn elevenlabs_ws_malformed_message_is_a_provider_error_and_the_next_reply_is_spoken() {
    let (first, errors, second, _) = eleven_ws_two_replies("0=malformed:1").await;
    ws_first_lost(&first, &errors, &second).await;
}

#[tokio::test]
async fn elevenlabs_ws_unknown_message_is_ignored_and_both_replies_are_whole() {
    let (first, errors, second, _) = eleven_ws_two_replies("0=unknown-event:1").await;
    ws_whole(&first, &errors, &second).await;
}

#[tokio::test]
async fn elevenlabs_ws_oversize_message_is_a_provider_error_and_the_next_reply_is_spoken() {
    let (first, errors, second, _) = eleven_ws_two_replies("0=oversize:5m:1").await;
    ws_first_lost(&first, &errors, &second).await;
}

#[tokio::test]
async fn elevenlabs_ws_slow_drip_is_spoken_whole() {
    let (first, errors, second, _) = eleven_ws_two_replies("0=slow:60").await;
    ws_whole(&first, &errors, &second).await;
}
