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
