//! `tts.piper` with the real `piper-joe` voice and onnxruntime from the model store (pulled
//! into the default cache on first run).

mod support;

use std::time::Duration;
use support::{Harness, audio, samples, spoken_text, words};
use voxpipe_core::{EventKind, Frame};
use voxpipe_tts::piper::{VoiceFile, voice};
use voxpipe_tts::{Error, Piper, PiperConfig, Synthesizer};

const HELLO: &str = "Hello, this is a test of the Piper voice.";

fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

async fn piper(tweak: impl FnOnce(&mut PiperConfig)) -> Piper {
    let mut config = PiperConfig::default();
    tweak(&mut config);
    Piper::new(config).await.expect("piper-joe and onnxruntime load (pulled on first use)")
}

#[tokio::test]
async fn a_sentence_becomes_plausible_non_silent_audio_at_the_voice_rate() {
    let p = piper(|_| {}).await;
    assert_eq!(p.sample_rate(), 22_050);
    let pcm = p.synthesize(HELLO).await.unwrap();
    let secs = pcm.len() as f64 / 22_050.0;
    assert!((1.5..=5.0).contains(&secs), "{secs:.2} s");
    assert!(rms(&pcm) > 1_000.0, "RMS {:.0}", rms(&pcm));
    // Speech has pauses: a sizeable share of 10 ms frames is much quieter than the loudest.
    let frames: Vec<f64> = pcm.chunks(220).map(rms).collect();
    let loud = frames.iter().cloned().fold(0.0, f64::max);
    assert!(frames.iter().filter(|&&f| f < loud / 10.0).count() > 5, "no quiet frames: not speech-like");
}

#[tokio::test]
async fn phonemes_keep_clause_punctuation_and_ids_run_from_bos_to_eos() {
    let p = piper(|_| {}).await;
    let sentences = p.phonemize("Hello, this is a test. Is it working?").await.unwrap();
    assert_eq!(sentences.len(), 2, "{sentences:?}");
    assert!(sentences[0].starts_with("həlˈoʊ, "), "{sentences:?}");
    assert!(sentences[0].ends_with('.') && sentences[1].ends_with('?'), "{sentences:?}");
    let v: &VoiceFile = p.voice();
    let (ids, missing) = v.phoneme_ids(&sentences[0]);
    let id = |s: &str| v.phoneme_id_map[s][0];
    assert_eq!(missing, 0);
    assert_eq!(&ids[..2], &[id(voice::BOS), id(voice::PAD)]);
    assert_eq!(ids[ids.len() - 1], id(voice::EOS));
    assert_eq!(ids[ids.len() - 2], id(voice::PAD));
    // Every phoneme is followed by the pad.
    assert_eq!((ids.len() - 3) % 2, 0);
    assert!(ids.len() > 2 * 15, "{} ids", ids.len());
    assert!(ids[2..ids.len() - 1].chunks(2).all(|pair| pair[1] == id(voice::PAD)));
}

#[tokio::test]
async fn a_streamed_reply_is_resampled_to_the_configured_rate_with_every_word_in_order() {
    let p = piper(|c| c.sample_rate = 16_000).await;
    let mut h = Harness::start(Box::new(p.into_stage()));
    let reply = "Hello, this is a test of the Piper voice. It speaks one sentence at a time.";
    h.say("item_1", reply, 9, Duration::from_millis(2)).await;
    h.input.send(Frame::EndOfStream).await.unwrap();
    let frames = h.collect_until_eos(Duration::from_secs(120)).await;
    (&mut h.task).await.unwrap().unwrap();

    assert!(audio(&frames).iter().all(|a| a.chunk.sample_rate == 16_000 && a.chunk.samples.len() <= 1_600));
    let all = samples(&frames);
    let secs = all.len() as f64 / 16_000.0;
    assert!((3.0..=10.0).contains(&secs), "{secs:.2} s");
    assert!(rms(&all) > 1_000.0);
    assert_eq!(words(&spoken_text(&frames)), words(reply));
    let events = h.drain_events();
    assert!(
        events.iter().any(|e| matches!(e, EventKind::Metric { name, .. } if name == "tts_first_audio_ms"))
    );
    assert!(!events.iter().any(|e| matches!(e, EventKind::ProviderError { .. })), "{events:?}");
}

#[tokio::test]
async fn a_larger_length_scale_speaks_more_slowly() {
    let text = "The quick brown fox jumps over the lazy dog.";
    let slow = piper(|c| c.length_scale = Some(1.6)).await.synthesize(text).await.unwrap();
    let fast = piper(|c| c.length_scale = Some(0.7)).await.synthesize(text).await.unwrap();
    assert!(slow.len() as f64 > 1.6 * fast.len() as f64, "slow {} vs fast {}", slow.len(), fast.len());
}

#[tokio::test]
async fn sentence_silence_is_appended_after_each_sentence() {
    let p = piper(|c| c.sentence_silence_ms = 500).await;
    let pcm = p.synthesize("Yes.").await.unwrap();
    let tail = &pcm[pcm.len() - 11_025..];
    assert!(tail.iter().all(|&s| s == 0), "the last 500 ms are silence");
}

#[tokio::test]
async fn a_missing_voice_file_names_the_pull_command() {
    let err =
        Piper::new(PiperConfig { voice: "/nonexistent/en_US-nobody.onnx".into(), ..Default::default() })
            .await
            .unwrap_err();
    assert!(matches!(err, Error::Config { field: "voice", .. }), "{err}");
    assert!(err.is_fatal());
    assert!(err.to_string().contains("voxpipe models pull piper-joe"), "{err}");
}

#[tokio::test]
async fn a_voice_without_its_json_config_names_the_pull_command() {
    let store = voxpipe_models::ModelStore::from_env().unwrap();
    let lib = store.pull("onnxruntime", &voxpipe_models::NoProgress).await.unwrap();
    let env = tokio::task::spawn_blocking(move || voxpipe_tts::piper::init_onnxruntime(&lib).cloned())
        .await
        .unwrap()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("voxpipe-piper-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let onnx = dir.join("lonely.onnx");
    std::fs::write(&onnx, b"not a model").unwrap();
    let err = Piper::with_environment(PiperConfig::default(), &onnx, &env).await.unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(err, Error::Config { field: "voice", .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("lonely.onnx.json") && msg.contains("voxpipe models pull piper-joe"), "{msg}");
}

#[test]
fn config_fills_defaults_and_rejects_unknown_fields() {
    let c: PiperConfig = serde_json::from_str(r#"{"length_scale": 0.9}"#).unwrap();
    assert_eq!(c, PiperConfig { length_scale: Some(0.9), ..Default::default() });
    assert_eq!((c.voice.as_str(), c.sample_rate, c.sentence_silence_ms), ("piper-joe", 24_000, 0));
    assert!(serde_json::from_str::<PiperConfig>(r#"{"kind": "tts.piper"}"#).is_err());
}
