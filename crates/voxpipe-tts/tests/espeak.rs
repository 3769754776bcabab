//! `tts.espeak` against the real libespeak-ng.

mod support;

use std::time::Duration;
use support::{Harness, audio, samples, spoken_text, words};
use voxpipe_core::{EventKind, Frame, ResponseStarted};
use voxpipe_tts::{Error, Espeak, EspeakConfig, Synthesizer};

const REPLY: &str = "Hello there, thanks for calling the bakery. We open at seven every morning, \
                     including weekends! Is there anything else I can help you with today?";

fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

#[tokio::test]
async fn a_streamed_reply_becomes_plausible_non_silent_audio_carrying_every_word_in_order() {
    let config = EspeakConfig { sample_rate: 16_000, ..Default::default() };
    let synth = Espeak::new(config).await.unwrap();
    assert_eq!(synth.sample_rate(), 22_050);
    let mut h = Harness::start(Box::new(synth.into_stage()));
    h.say("item_1", REPLY, 7, Duration::from_millis(2)).await;
    h.input.send(Frame::EndOfStream).await.unwrap();
    let frames = h.collect_until_eos(Duration::from_secs(30)).await;
    (&mut h.task).await.unwrap().unwrap();

    let pieces = audio(&frames);
    assert!(pieces.iter().all(|a| a.chunk.sample_rate == 16_000 && a.chunk.samples.len() <= 1_600));
    let all = samples(&frames);
    let secs = all.len() as f64 / 16_000.0;
    let chars = REPLY.chars().count() as f64;
    assert!((0.05 * chars..=0.2 * chars).contains(&secs), "{secs:.2} s for {chars} characters");
    assert!(rms(&all) > 500.0, "RMS {:.0}: silent", rms(&all));
    assert_eq!(words(&spoken_text(&frames)), words(REPLY));
    let events = h.drain_events();
    assert!(
        events.iter().any(|e| matches!(e, EventKind::Metric { name, .. } if name == "tts_first_audio_ms"))
    );
    assert!(!events.iter().any(|e| matches!(e, EventKind::ProviderError { .. })), "{events:?}");
}

/// Turns are numbered by the LLM's responses: a tool filler and the answer after it are one
/// turn (one `tts_first_audio_ms`, the filler's), so the metric lines up with the LLM's and
/// the ASR's turn numbers.
#[tokio::test]
async fn a_filler_and_its_answer_share_their_turn_number() {
    let synth = Espeak::new(EspeakConfig::default()).await.unwrap();
    let mut h = Harness::start(Box::new(synth.into_stage()));
    let started = |id: &str| Frame::ResponseStarted(ResponseStarted { response_id: id.into() });
    h.input.send(started("reply_1")).await.unwrap();
    h.say("filler_1", "One moment.", 4, Duration::ZERO).await;
    h.say("reply_1", "It is in stock.", 4, Duration::ZERO).await;
    h.input.send(started("reply_2")).await.unwrap();
    h.say("reply_2", "Goodbye.", 4, Duration::ZERO).await;
    h.input.send(Frame::EndOfStream).await.unwrap();
    let frames = h.collect_until_eos(Duration::from_secs(30)).await;
    (&mut h.task).await.unwrap().unwrap();
    assert_eq!(words(&spoken_text(&frames)), words("One moment. It is in stock. Goodbye."));
    let turns: Vec<u32> = h
        .drain_events()
        .iter()
        .filter_map(|e| match e {
            EventKind::Metric { name, turn, .. } if name == "tts_first_audio_ms" => Some(*turn),
            _ => None,
        })
        .collect();
    assert_eq!(turns, [1, 2]);
}

#[tokio::test]
async fn the_first_sentence_is_heard_before_the_rest_of_the_reply_is_written() {
    let synth = Espeak::new(EspeakConfig::default()).await.unwrap();
    let mut h = Harness::start(Box::new(synth.into_stage()));
    h.delta("item_1", "This first sentence is spoken on its own. And").await;
    let first = tokio::time::timeout(Duration::from_secs(10), h.output.recv()).await.expect("audio in time");
    let Some(Frame::OutputAudio(a)) = first else { panic!("expected audio, got {first:?}") };
    assert_eq!(a.chunk.sample_rate, 24_000);
    h.delta("item_1", " this one comes later.").await;
    h.final_transcript("item_1", "This first sentence is spoken on its own. And this one comes later.").await;
    h.input.send(Frame::EndOfStream).await.unwrap();
    let mut frames = vec![Frame::OutputAudio(a)];
    frames.extend(h.collect_until_eos(Duration::from_secs(30)).await);
    let expected = "This first sentence is spoken on its own. And this one comes later.";
    assert_eq!(words(&spoken_text(&frames)), words(expected));
}

#[tokio::test]
async fn a_faster_rate_gives_shorter_audio() {
    let text = "The quick brown fox jumps over the lazy dog.";
    let slow = Espeak::new(EspeakConfig { rate_wpm: 120, ..Default::default() }).await.unwrap();
    let fast = Espeak::new(EspeakConfig { rate_wpm: 300, ..Default::default() }).await.unwrap();
    let (s, f) = (slow.synthesize(text).await.unwrap(), fast.synthesize(text).await.unwrap());
    assert!(s.len() as f64 > 1.8 * f.len() as f64, "slow {} vs fast {} samples", s.len(), f.len());
    assert!(rms(&f) > 500.0);
}

#[tokio::test]
async fn an_unknown_voice_is_a_configuration_error() {
    let err =
        Espeak::new(EspeakConfig { voice: "zz-nonexistent".into(), ..Default::default() }).await.unwrap_err();
    assert!(matches!(err, Error::Config { field: "voice", .. }), "{err}");
    assert!(err.is_fatal());
    assert!(err.to_string().contains("espeak-ng --voices"), "{err}");
}

#[tokio::test]
async fn out_of_range_settings_are_rejected() {
    let err = Espeak::new(EspeakConfig { rate_wpm: 20, ..Default::default() }).await.unwrap_err();
    assert!(matches!(err, Error::Config { field: "rate_wpm", .. }), "{err}");
    let err = Espeak::new(EspeakConfig { pitch: 101, ..Default::default() }).await.unwrap_err();
    assert!(matches!(err, Error::Config { field: "pitch", .. }), "{err}");
}

#[test]
fn config_fills_defaults_and_rejects_unknown_fields() {
    let c: EspeakConfig = serde_json::from_str(r#"{"voice": "en-gb"}"#).unwrap();
    assert_eq!(c, EspeakConfig { voice: "en-gb".into(), ..Default::default() });
    assert_eq!((c.rate_wpm, c.pitch, c.sample_rate), (175, 50, 24_000));
    assert!(serde_json::from_str::<EspeakConfig>(r#"{"kind": "tts.espeak"}"#).is_err());
}

#[tokio::test]
async fn phonemes_come_in_ipa_one_string_per_sentence() {
    let e = Espeak::new(EspeakConfig::default()).await.unwrap();
    let s = e.phonemize("Hello, world. Fine: yes!").await.unwrap();
    assert_eq!(s, vec!["həlˈoʊ, wˈɜːld.".to_string(), "fˈaɪn: jˈɛs!".to_string()]);
}
