//! Segmentation with a scripted decoder on a virtual clock.

mod common;

use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use voxpipe_asr::{Decode, Error, Pass, SegmentOptions, SegmentingStage};
use voxpipe_core::{Control, Frame, InterruptReason, Stage, channel};

/// Answers "<pass> <samples>" after `delay`, recording each call.
struct Scripted {
    delay: Duration,
    calls: Mutex<Vec<(Pass, usize)>>,
}

#[async_trait]
impl Decode for Scripted {
    async fn decode(&self, audio: Arc<[i16]>, pass: Pass) -> Result<String, Error> {
        self.calls.lock().unwrap().push((pass, audio.len()));
        tokio::time::sleep(self.delay).await;
        Ok(format!("{pass:?} {}", audio.len()))
    }
}

fn transcripts(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f {
            Frame::UserTranscript(t) => {
                format!("{}{}", if t.is_final { "final " } else { "interim " }, t.text)
            }
            other => other.kind().to_string(),
        })
        .collect()
}

/// A segmenting stage over `dec` running on its own task: its call context, its input, and
/// the tasks of the stage and of the collector of its output.
#[allow(clippy::type_complexity)]
fn start(
    dec: &Arc<Scripted>,
    opts: SegmentOptions,
) -> (
    voxpipe_core::CallContext,
    voxpipe_core::Outbox,
    tokio::task::JoinHandle<Result<(), voxpipe_core::StageError>>,
    tokio::task::JoinHandle<Vec<Frame>>,
) {
    let (ctx, _events) = common::call_context();
    let (in_tx, in_rx) = channel();
    let (out_tx, out_rx) = channel();
    let stage = SegmentingStage::new("asr.test", dec.clone(), opts);
    let stage = tokio::spawn(Box::new(stage).run(ctx.clone(), in_rx, out_tx));
    (ctx, in_tx, stage, tokio::spawn(common::collect(out_rx)))
}

#[tokio::test(start_paused = true)]
async fn prefix_audio_interims_and_final_follow_the_speech_frames() {
    let dec = Arc::new(Scripted { delay: Duration::from_millis(300), calls: Mutex::new(Vec::new()) });
    let opts = SegmentOptions {
        interim_interval: Some(Duration::from_millis(500)),
        prefix: Duration::from_millis(300),
    };
    let (ctx, in_tx, stage, collector) = start(&dec, opts);
    let chunk = |i: u64| common::chunks(&[100i16; 320], 16_000, i * 20).remove(0);
    // 1 s before the onset (only 300 ms of it is kept), then 1.2 s of speech in real time.
    for i in 0..50 {
        in_tx.send(chunk(i)).await.unwrap();
    }
    in_tx.send(Frame::SpeechStarted { at: Duration::from_millis(1000) }).await.unwrap();
    ctx.control.send(Control::Interrupt { reason: InterruptReason::BargeIn, onset: None, played: None });
    for i in 50..110 {
        in_tx.send(chunk(i)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    in_tx.send(Frame::SpeechStopped { at: Duration::from_millis(2200) }).await.unwrap();
    in_tx
        .send(Frame::ResponseStarted(voxpipe_core::ResponseStarted { response_id: "r1".into() }))
        .await
        .unwrap();
    in_tx.send(Frame::EndOfStream).await.unwrap();
    stage.await.unwrap().unwrap();
    let frames = collector.await.unwrap();

    let calls = dec.calls.lock().unwrap().clone();
    // Interims start at +500 ms and +1000 ms; the second is still running at the end of speech
    // (+1200 ms), so the final waits for it and its text is dropped. The final has it all:
    // 300 ms of prefix + 1.2 s of speech.
    assert_eq!(calls.last(), Some(&(Pass::Final, 4_800 + 19_200)));
    let interims: Vec<_> = calls.iter().filter(|(p, _)| *p == Pass::Interim).collect();
    assert_eq!(interims.len(), 2, "{calls:?}");
    assert!(interims[0].1 >= 4_800 + 7_680 && interims[0].1 <= 4_800 + 8_320, "{calls:?}");
    assert_eq!(
        transcripts(&frames),
        [
            "speech_started".to_string(),
            format!("interim Interim {}", interims[0].1),
            "speech_stopped".into(),
            "final Final 24000".into(),
            "response_started".into(),
            "end_of_stream".into(),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_utterance_during_a_slow_final_keeps_frame_order() {
    let dec = Arc::new(Scripted { delay: Duration::from_secs(2), calls: Mutex::new(Vec::new()) });
    let opts = SegmentOptions { interim_interval: None, prefix: Duration::ZERO };
    let (_ctx, in_tx, stage, collector) = start(&dec, opts);
    for turn in 0..2u64 {
        in_tx.send(Frame::SpeechStarted { at: Duration::from_secs(turn) }).await.unwrap();
        for f in common::chunks(&vec![1i16; 16_000 * (turn as usize + 1)], 16_000, turn * 1000) {
            in_tx.send(f).await.unwrap();
        }
        in_tx.send(Frame::SpeechStopped { at: Duration::from_secs(turn + 1) }).await.unwrap();
    }
    in_tx.send(Frame::EndOfStream).await.unwrap();
    stage.await.unwrap().unwrap();
    let frames = collector.await.unwrap();
    assert_eq!(
        transcripts(&frames),
        [
            "speech_started",
            "speech_stopped",
            "final Final 16000",
            "speech_started",
            "speech_stopped",
            "final Final 32000",
            "end_of_stream"
        ]
    );
    let items: Vec<_> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::UserTranscript(t) => t.item.as_deref().map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(items, ["user_1", "user_2"]);
}

/// The controller confirms some speech late (it began in a reply's echo warm-up and outlasted
/// it): the utterance still starts `prefix` before the onset it names.
#[tokio::test(start_paused = true)]
async fn a_late_speech_started_keeps_the_audio_from_its_onset() {
    let dec = Arc::new(Scripted { delay: Duration::ZERO, calls: Mutex::new(Vec::new()) });
    let opts = SegmentOptions { interim_interval: None, prefix: Duration::from_millis(300) };
    let (_ctx, in_tx, stage, collector) = start(&dec, opts);
    let chunk = |i: u64| common::chunks(&[100i16; 320], 16_000, i * 20).remove(0);
    // 4 s of audio; the speech began at 2.5 s but is confirmed only now, at 4 s.
    for i in 0..200 {
        in_tx.send(chunk(i)).await.unwrap();
    }
    in_tx.send(Frame::SpeechStarted { at: Duration::from_millis(2500) }).await.unwrap();
    for i in 200..225 {
        in_tx.send(chunk(i)).await.unwrap();
    }
    in_tx.send(Frame::SpeechStopped { at: Duration::from_millis(4500) }).await.unwrap();
    // A second utterance confirmed 3 s late keeps only the last 2 s (MAX_LATE_ONSET) + prefix.
    for i in 225..400 {
        in_tx.send(chunk(i)).await.unwrap();
    }
    in_tx.send(Frame::SpeechStarted { at: Duration::from_millis(5000) }).await.unwrap();
    in_tx.send(Frame::SpeechStopped { at: Duration::from_millis(8000) }).await.unwrap();
    in_tx.send(Frame::EndOfStream).await.unwrap();
    stage.await.unwrap().unwrap();
    collector.await.unwrap();
    let finals: Vec<usize> = dec.calls.lock().unwrap().iter().map(|c| c.1).collect();
    // 2.2 s → 4.5 s, and 5.7 s (8 s − 2 s − 300 ms) → 8 s.
    assert_eq!(finals, [16 * 2300, 16 * 2300]);
}

/// Fails the first `failures` final decodes with `status`, then answers like [`Scripted`].
struct Failing {
    failures: usize,
    status: u16,
    calls: Mutex<usize>,
}

#[async_trait]
impl Decode for Failing {
    async fn decode(&self, audio: Arc<[i16]>, pass: Pass) -> Result<String, Error> {
        let n = {
            let mut c = self.calls.lock().unwrap();
            *c += 1;
            *c
        };
        if n <= self.failures {
            return Err(Error::Status { provider: "test", status: self.status, body: "try later".into() });
        }
        Ok(format!("{pass:?} {}", audio.len()))
    }
}

/// Two utterances through a stage over `dec`: its output, its result and its events.
async fn two_utterances(dec: Failing) -> (Vec<String>, Result<(), voxpipe_core::StageError>, Vec<String>) {
    let (ctx, mut events) = common::call_context();
    let (in_tx, in_rx) = channel();
    let (out_tx, out_rx) = channel();
    let opts = SegmentOptions { interim_interval: None, prefix: Duration::ZERO };
    let stage = SegmentingStage::new("asr.test", Arc::new(dec), opts);
    let stage = tokio::spawn(Box::new(stage).run(ctx.clone(), in_rx, out_tx));
    let collector = tokio::spawn(common::collect(out_rx));
    for turn in 0..2u64 {
        in_tx.send(Frame::SpeechStarted { at: Duration::from_secs(turn) }).await.unwrap();
        for f in common::chunks(&[1i16; 16_000], 16_000, turn * 1000) {
            if in_tx.send(f).await.is_err() {
                break;
            }
        }
        let _ = in_tx.send(Frame::SpeechStopped { at: Duration::from_secs(turn + 1) }).await;
    }
    let _ = in_tx.send(Frame::EndOfStream).await;
    let result = stage.await.unwrap();
    let frames = collector.await.unwrap();
    drop(ctx);
    let mut logged = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let voxpipe_core::EventKind::ProviderError { stage, message, .. } = e.kind {
            logged.push(format!("{stage}: {message}"));
        }
    }
    (transcripts(&frames), result, logged)
}

/// A 503 on a final transcription is retried (with back-off, on the paused clock) and the
/// caller's words arrive as if nothing happened.
#[tokio::test(start_paused = true)]
async fn a_transient_failure_of_a_final_transcription_is_retried() {
    let (out, result, logged) =
        two_utterances(Failing { failures: 2, status: 503, calls: Mutex::new(0) }).await;
    result.unwrap();
    assert!(logged.is_empty(), "{logged:?}");
    assert_eq!(out.iter().filter(|t| t.starts_with("final Final 16000")).count(), 2, "{out:?}");
}

/// A provider that keeps failing costs the caller that turn, reported as a provider error; the
/// call goes on and the next turn is transcribed.
#[tokio::test(start_paused = true)]
async fn a_final_transcription_that_keeps_failing_drops_the_turn_not_the_call() {
    let (out, result, logged) =
        two_utterances(Failing { failures: 3, status: 429, calls: Mutex::new(0) }).await;
    result.unwrap();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].starts_with("asr.test: ") && logged[0].contains("429"), "{logged:?}");
    let finals: Vec<_> = out.iter().filter(|t| t.starts_with("final")).collect();
    assert_eq!(finals, ["final ", "final Final 16000"], "{out:?}");
}

/// A refusal that retrying cannot fix (a bad key) still ends the stage with its error.
#[tokio::test(start_paused = true)]
async fn a_final_transcription_refused_for_auth_ends_the_stage() {
    let (_, result, _) = two_utterances(Failing { failures: 1, status: 401, calls: Mutex::new(0) }).await;
    let e = result.unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
}
