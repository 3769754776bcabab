//! The whisper stage driven frame by frame.
#![cfg(feature = "whisper")]

mod common;

use std::time::Duration;
use voxpipe_asr::{Transcriber, WhisperConfig, WhisperStage};
use voxpipe_core::{EventKind, Frame, Stage, channel};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_between_started_and_stopped_yields_interims_then_a_final_transcript() {
    let path = common::model("whisper-tiny.en").await;
    let cfg =
        WhisperConfig { model: path.display().to_string(), interim_interval_ms: 400, ..Default::default() };
    let t = tokio::task::spawn_blocking(move || Transcriber::load(&path, &cfg).unwrap()).await.unwrap();
    let sentence = common::SENTENCES[1];
    // Feed 24 kHz audio, as a Realtime-rate source would, to exercise resampling.
    let speech = voxpipe_core::audio::resample_all(&common::espeak_16k(sentence), 16_000, 24_000).unwrap();
    let silence = vec![0i16; 24_000 / 2];

    let (ctx, mut events) = common::call_context();
    let (in_tx, in_rx) = channel();
    let (out_tx, mut out_rx) = channel();
    let stage = tokio::spawn(Box::new(WhisperStage::new(t)).run(ctx.clone(), in_rx, out_tx));

    for f in common::chunks(&silence, 24_000, 0) {
        in_tx.send(f).await.unwrap();
    }
    in_tx.send(Frame::SpeechStarted { at: Duration::from_millis(500) }).await.unwrap();
    for f in common::chunks(&speech, 24_000, 500) {
        in_tx.send(f).await.unwrap();
    }
    // The caller is still speaking: wait (without feeding more) until an interim arrives.
    let mut frames = Vec::new();
    loop {
        let f =
            tokio::time::timeout(Duration::from_secs(120), out_rx.recv()).await.expect("an interim").unwrap();
        let interim = matches!(&f, Frame::UserTranscript(t) if !t.is_final);
        frames.push(f);
        if interim {
            break;
        }
    }
    in_tx.send(Frame::SpeechStopped { at: Duration::from_millis(4500) }).await.unwrap();
    for f in common::chunks(&silence, 24_000, 4500) {
        in_tx.send(f).await.unwrap();
    }
    in_tx.send(Frame::EndOfStream).await.unwrap();
    stage.await.unwrap().unwrap();
    frames.extend(common::collect(out_rx).await);

    let kinds: Vec<&str> = frames.iter().map(|f| f.kind()).collect();
    println!("{kinds:?}");
    assert!(!kinds.contains(&"input_audio"), "audio is consumed, not forwarded");
    let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    let finals: Vec<_> = frames
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match f {
            Frame::UserTranscript(t) if t.is_final => Some((i, t.clone())),
            _ => None,
        })
        .collect();
    let interims: Vec<_> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::UserTranscript(t) if !t.is_final => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(finals.len(), 1, "{kinds:?}");
    let (final_pos, fin) = &finals[0];
    println!("interims: {:?}\nfinal: {}", interims.iter().map(|t| &t.text).collect::<Vec<_>>(), fin.text);
    assert!(!interims.is_empty(), "interims while speaking");
    assert!(interims.iter().all(|t| t.item.as_deref() == Some("user_1")));
    assert_eq!(fin.item.as_deref(), Some("user_1"));
    assert!(pos("speech_started") < pos("speech_stopped"));
    assert!(pos("speech_stopped") < *final_pos, "end of speech precedes its final transcript");
    assert_eq!(kinds.last(), Some(&"end_of_stream"));
    let wer = voxpipe_eval::wer::wer(sentence, &fin.text);
    assert!(wer <= 0.3, "final `{}` has WER {wer}", fin.text);

    drop(ctx);
    let mut metric = None;
    while let Ok(ev) = events.try_recv() {
        if let EventKind::Metric { name, turn, value_ms } = ev.kind {
            metric = Some((name, turn, value_ms));
        }
    }
    let (name, turn, _) = metric.expect("asr_final_ms metric");
    assert_eq!((name.as_str(), turn), ("asr_final_ms", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_stream_during_speech_finishes_the_utterance_first() {
    let path = common::model("whisper-tiny.en").await;
    let cfg =
        WhisperConfig { model: path.display().to_string(), interim_interval_ms: 0, ..Default::default() };
    let t = tokio::task::spawn_blocking(move || Transcriber::load(&path, &cfg).unwrap()).await.unwrap();
    let speech = common::espeak_16k(common::SENTENCES[3]);
    let (ctx, _events) = common::call_context();
    let (in_tx, in_rx) = channel();
    let (out_tx, out_rx) = channel();
    let stage = tokio::spawn(Box::new(WhisperStage::new(t)).run(ctx, in_rx, out_tx));
    let collector = tokio::spawn(common::collect(out_rx));
    in_tx.send(Frame::SpeechStarted { at: Duration::ZERO }).await.unwrap();
    for f in common::chunks(&speech, 16_000, 0) {
        in_tx.send(f).await.unwrap();
    }
    in_tx.send(Frame::EndOfStream).await.unwrap();
    stage.await.unwrap().unwrap();
    let frames = collector.await.unwrap();
    let kinds: Vec<&str> = frames.iter().map(|f| f.kind()).collect();
    assert_eq!(kinds, ["speech_started", "user_transcript", "end_of_stream"]);
    let Frame::UserTranscript(t) = &frames[1] else { unreachable!() };
    assert!(t.is_final && voxpipe_eval::wer::wer(common::SENTENCES[3], &t.text) <= 0.3, "{}", t.text);
}
