//! Fault matrix rows for `asr.openai`: each test injects one fault of `voxpipe_fakes::fault`
//! into the first transcription request and checks that the stage recovers (the final
//! transcription is retried) or drops that turn with a reported provider error, and that the
//! next utterance is transcribed: the call goes on.

mod common;

use std::time::Duration;
use voxpipe_asr::{OpenAiTranscribeConfig, OpenAiTranscribeStage, OpenAiTranscriber};
use voxpipe_core::{EventKind, Frame, Secret, Stage, channel};
use voxpipe_fakes::fault::FaultSpec;
use voxpipe_fakes::transcription::{TranscriptionFake, TranscriptionFakeConfig};

/// What a call of two utterances saw: final transcripts, provider errors, requests' statuses.
struct Seen {
    finals: Vec<String>,
    errors: Vec<String>,
    statuses: Vec<u16>,
}

fn tone(ms: usize) -> Vec<i16> {
    (0..16 * ms).map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16).collect()
}

async fn two_utterances(spec: &str) -> Seen {
    let spec: FaultSpec = spec.parse().unwrap();
    let fake = TranscriptionFake::start(TranscriptionFakeConfig {
        transcripts: vec!["First words.".into(), "Second words.".into()],
        faults: [(spec.index, spec.fault)].into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let cfg = OpenAiTranscribeConfig { base_url: fake.base_url(), timeout_ms: 1_000, ..Default::default() };
    let client = OpenAiTranscriber::with_key(&cfg, Secret::new("sk-test"));
    let (ctx, mut events) = common::call_context();
    let (in_tx, in_rx) = channel();
    let (out_tx, out_rx) = channel();
    let stage = tokio::spawn(Box::new(OpenAiTranscribeStage::with_client(&cfg, client)).run(
        ctx.clone(),
        in_rx,
        out_tx,
    ));
    let collector = tokio::spawn(common::collect(out_rx));
    for turn in 0..2u64 {
        let t0 = turn * 2000;
        in_tx.send(Frame::SpeechStarted { at: Duration::from_millis(t0) }).await.unwrap();
        for f in common::chunks(&tone(1000), 16_000, t0) {
            in_tx.send(f).await.unwrap();
        }
        in_tx.send(Frame::SpeechStopped { at: Duration::from_millis(t0 + 1000) }).await.unwrap();
    }
    in_tx.send(Frame::EndOfStream).await.unwrap();
    stage.await.unwrap().expect("the stage goes on: no fatal error");
    let frames = collector.await.unwrap();
    drop(ctx);
    let mut errors = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let EventKind::ProviderError { stage, .. } = e.kind {
            errors.push(stage);
        }
    }
    let finals = frames
        .iter()
        .filter_map(|f| match f {
            Frame::UserTranscript(t) if t.is_final => Some(t.text.clone()),
            _ => None,
        })
        .collect();
    Seen { finals, errors, statuses: fake.requests().iter().map(|r| r.status).collect() }
}

/// Retried: both utterances transcribed, nothing reported. (A stalled or cut answer used up
/// the fake's first transcript, so only the count and non-emptiness are checked here.)
fn retried(seen: &Seen) {
    answered(seen);
    assert_eq!(seen.statuses.len(), 3, "one retry");
}

/// Both utterances transcribed, nothing reported.
fn answered(seen: &Seen) {
    assert_eq!(seen.finals.len(), 2, "{:?}", seen.finals);
    assert!(seen.finals.iter().all(|f| f.ends_with("words.")), "{:?}", seen.finals);
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
}

/// The first turn dropped (an empty final, reported once), the second transcribed.
fn turn_dropped(seen: &Seen) {
    assert_eq!(seen.finals.len(), 2, "{:?}", seen.finals);
    assert_eq!(seen.finals[0], "", "the faulted turn ends with an empty final transcript");
    assert!(seen.finals[1].ends_with("words."), "{:?}", seen.finals);
    assert_eq!(seen.errors, ["asr.openai"]);
}

#[tokio::test]
async fn openai_transcription_429_with_retry_after_is_retried_and_transcribed() {
    let seen = two_utterances("0=status:429:retry-after=1").await;
    retried(&seen);
    assert_eq!(seen.finals, ["First words.", "Second words."]);
    assert_eq!(seen.statuses, [429, 200, 200]);
}

#[tokio::test]
async fn openai_transcription_500_is_retried_and_transcribed() {
    let seen = two_utterances("0=status:500").await;
    retried(&seen);
    assert_eq!(seen.statuses, [500, 200, 200]);
}

#[tokio::test]
async fn openai_transcription_stall_times_out_and_is_retried() {
    // The stalled answer times out (a network error) and the retry succeeds.
    retried(&two_utterances("0=stall-after:1").await);
}

#[tokio::test]
async fn openai_transcription_cut_mid_body_is_retried() {
    retried(&two_utterances("0=cut-after:1").await);
}

#[tokio::test]
async fn openai_transcription_slow_drip_is_transcribed() {
    let seen = two_utterances("0=slow:20").await;
    answered(&seen);
    assert_eq!(seen.finals, ["First words.", "Second words."]);
}

#[tokio::test]
async fn openai_transcription_unknown_field_is_ignored() {
    let seen = two_utterances("0=unknown-event").await;
    answered(&seen);
    assert_eq!(seen.finals, ["First words.", "Second words."]);
}

#[tokio::test]
async fn openai_transcription_malformed_body_drops_the_turn_not_the_call() {
    turn_dropped(&two_utterances("0=malformed").await);
}

#[tokio::test]
async fn openai_transcription_oversize_body_drops_the_turn_not_the_call() {
    turn_dropped(&two_utterances("0=oversize:5m").await);
}

#[tokio::test]
async fn openai_transcription_wrong_content_type_drops_the_turn_not_the_call() {
    turn_dropped(&two_utterances("0=wrong-content-type").await);
}
