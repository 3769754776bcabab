//! `tts.openai` against the speech fake.

mod support;

use std::time::Duration;
use support::{Harness, audio, chunks_of, samples, spoken_text, words};
use voxpipe_core::{EventKind, Frame, InterruptReason, Secret};
use voxpipe_fakes::openai_speech::{PCM_RATE, SpeechFake, SpeechFakeConfig, StreamOutcome, speech_waveform};
use voxpipe_tts::{OpenAiSpeech, OpenAiSpeechConfig};

const REPLY: &str = "Hello there, thanks for calling the bakery. We open at 7.30 every morning, e.g. \
                     tomorrow too! Is there anything else I can help you with today?";

fn stage(fake: &SpeechFake, key: &str, tweak: impl FnOnce(&mut OpenAiSpeechConfig)) -> Box<OpenAiSpeech> {
    let mut config = OpenAiSpeechConfig { base_url: fake.base_url(), ..Default::default() };
    tweak(&mut config);
    Box::new(OpenAiSpeech::new(config, Some(Secret::new(key))).unwrap())
}

fn harness(synth: Box<OpenAiSpeech>) -> Harness {
    Harness::start(Box::new(synth.into_stage()))
}

#[tokio::test]
async fn streamed_text_becomes_exact_audio_pieces_carrying_every_word_in_order() {
    let fake = SpeechFake::start(SpeechFakeConfig::default()).await.unwrap();
    let mut h = harness(stage(&fake, "sk-test", |_| {}));
    let text_chars: Vec<char> = REPLY.chars().collect();
    for piece in text_chars.chunks(4) {
        h.delta("item_1", &piece.iter().collect::<String>()).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let last_delta_at = fake.now();
    h.final_transcript("item_1", REPLY).await;
    h.input.send(Frame::EndOfStream).await.unwrap();
    let frames = h.collect_until_eos(Duration::from_secs(20)).await;
    (&mut h.task).await.unwrap().unwrap();

    // One request per chunk, cut the way the chunker cuts, the first before the LLM finished.
    let reqs = fake.requests();
    let inputs: Vec<String> = reqs.iter().map(|r| r.body["input"].as_str().unwrap().to_string()).collect();
    assert_eq!(inputs, chunks_of(REPLY, 20, 150));
    assert!(inputs.len() >= 3, "{inputs:?}");
    assert!(reqs[0].at < last_delta_at, "first request {:?} vs last delta {last_delta_at:?}", reqs[0].at);
    assert_eq!(reqs[0].body["response_format"], "pcm");
    assert_eq!(reqs[0].body["model"], "gpt-4o-mini-tts");
    assert_eq!(reqs[0].body["voice"], "alloy");

    // The audio is the fake's waveform, sample for sample, despite odd-sized body chunks.
    let expected: Vec<i16> = inputs.iter().flat_map(|t| speech_waveform(t, 60, PCM_RATE)).collect();
    let got = samples(&frames);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "decoded samples differ from the fake's waveform");
    let total_ms = got.len() as u64 * 1000 / 24_000;
    let text_ms: u64 = inputs.iter().map(|t| t.chars().count() as u64 * 60).sum();
    assert_eq!(total_ms, text_ms);

    let pieces = audio(&frames);
    assert!(pieces.iter().all(|a| a.chunk.sample_rate == 24_000 && a.chunk.samples.len() <= 2_400));
    assert!(pieces.iter().all(|a| &*a.item == "item_1" && a.epoch == 0));
    assert_eq!(words(&spoken_text(&frames)), words(REPLY));

    // Text deltas are consumed; the final transcript goes on; a first-audio metric is logged.
    assert!(!frames.iter().any(|f| matches!(f, Frame::TextDelta(_))));
    assert!(frames.iter().any(|f| matches!(f, Frame::AssistantTranscript(t) if t.is_final)));
    let events = h.drain_events();
    let metrics: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, EventKind::Metric { name, turn: 1, .. } if name == "tts_first_audio_ms"))
        .collect();
    assert_eq!(metrics.len(), 1);
}

#[tokio::test]
async fn output_is_resampled_to_the_configured_rate() {
    let fake = SpeechFake::start(SpeechFakeConfig::default()).await.unwrap();
    let mut h = harness(stage(&fake, "sk-test", |c| c.sample_rate = 16_000));
    h.say("item_1", "This sentence is resampled to sixteen kilohertz.", 8, Duration::ZERO).await;
    h.input.send(Frame::EndOfStream).await.unwrap();
    let frames = h.collect_until_eos(Duration::from_secs(20)).await;
    let n = samples(&frames).len();
    let expected = "This sentence is resampled to sixteen kilohertz.".chars().count() * 60 * 16;
    assert!(n.abs_diff(expected) <= 2, "{n} samples, expected {expected}");
    assert!(audio(&frames).iter().all(|a| a.chunk.sample_rate == 16_000 && a.chunk.samples.len() <= 1_600));
}

#[tokio::test]
async fn interrupt_mid_synthesis_stops_output_and_drops_the_stream() {
    // Real-time pacing: the 8 s sentence would stream for 8 s.
    let config = SpeechFakeConfig { real_time_factor: 1.0, ..Default::default() };
    let fake = SpeechFake::start(config).await.unwrap();
    let mut h = harness(stage(&fake, "sk-test", |_| {}));
    let long = "This is a long answer that keeps going for quite a while so we can barge in on it.";
    h.say("item_1", long, 10, Duration::ZERO).await;
    let mut before = 0;
    while before < 3 {
        if let Some(Frame::OutputAudio(_)) = h.output.recv().await {
            before += 1;
        }
    }
    h.ctx.interrupt(InterruptReason::BargeIn, None).await;
    let new_epoch = h.ctx.playout.epoch();
    // Let the interrupt land, then nothing more may come for this reply.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Some(f) = h.try_next().await {
        if let Frame::OutputAudio(a) = f {
            assert!(a.epoch < new_epoch, "audio produced after the interrupt");
        }
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(h.try_next().await.is_none(), "output after the interrupt was handled");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].outcome, StreamOutcome::Dropped, "the fake saw the stream dropped");

    // Late text of the interrupted reply is ignored; the stage still ends cleanly.
    h.delta("item_1", " more words that should never be spoken. ").await;
    h.input.send(Frame::EndOfStream).await.unwrap();
    let frames = h.collect_until_eos(Duration::from_secs(5)).await;
    assert!(audio(&frames).is_empty());
    (&mut h.task).await.unwrap().unwrap();
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn bad_key_is_fatal_and_names_the_provider_status_and_variable() {
    let fake = SpeechFake::start(SpeechFakeConfig::default()).await.unwrap();
    let mut h = harness(stage(&fake, "sk-wrong", |_| {}));
    h.say("item_1", "This will never be spoken aloud.", 50, Duration::ZERO).await;
    let err = tokio::time::timeout(Duration::from_secs(10), &mut h.task).await.unwrap().unwrap().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("tts.openai") && msg.contains("401") && msg.contains("OPENAI_API_KEY"), "{msg}");
    assert!(msg.contains("Incorrect API key"), "{msg}");
    assert!(!msg.contains("sk-wrong"), "the key leaked: {msg}");
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let config = SpeechFakeConfig { fail_requests: vec![(0, 500)], ..Default::default() };
    let fake = SpeechFake::start(config).await.unwrap();
    let mut h = harness(stage(&fake, "sk-test", |_| {}));
    let text = "Retried sentences still get spoken.";
    h.say("item_1", text, 50, Duration::ZERO).await;
    h.input.send(Frame::EndOfStream).await.unwrap();
    let frames = h.collect_until_eos(Duration::from_secs(20)).await;
    (&mut h.task).await.unwrap().unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].outcome, StreamOutcome::Rejected(500));
    assert_eq!(reqs[1].outcome, StreamOutcome::Completed);
    assert_eq!(samples(&frames), speech_waveform(text, 60, PCM_RATE));
}

#[tokio::test]
async fn a_stream_cut_mid_audio_is_reported_and_the_next_chunk_goes_on() {
    let config = SpeechFakeConfig { cut_after_bytes: vec![(0, 10_001)], ..Default::default() };
    let fake = SpeechFake::start(config).await.unwrap();
    let mut h = harness(stage(&fake, "sk-test", |_| {}));
    let text = "The first sentence gets cut off. The second one arrives in full.";
    h.say("item_1", text, 50, Duration::ZERO).await;
    h.input.send(Frame::EndOfStream).await.unwrap();
    let frames = h.collect_until_eos(Duration::from_secs(20)).await;
    (&mut h.task).await.unwrap().unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].outcome, StreamOutcome::Cut);
    let second = speech_waveform("The second one arrives in full.", 60, PCM_RATE);
    let got = samples(&frames);
    assert_eq!(got.len(), 5_000 + second.len(), "what was played is kept, then the next chunk");
    assert!(got[5_000..] == second[..]);
    let events = h.drain_events();
    assert!(
        events.iter().any(|e| matches!(e, EventKind::ProviderError { stage, .. } if stage == "tts.openai"))
    );
}
