//! `tts.elevenlabs` against the ElevenLabs fake, over HTTP and the stream-input WebSocket.

mod support;

use std::time::Duration;
use support::{Harness, audio, chunks_of, samples, spoken_text, words};
use voxpipe_core::audio::g711;
use voxpipe_core::{Frame, Secret};
use voxpipe_fakes::elevenlabs::{ElevenLabsFake, ElevenLabsFakeConfig};
use voxpipe_fakes::openai_speech::speech_waveform;
use voxpipe_tts::{ElevenLabs, ElevenLabsConfig, OutputFormat, Transport};

const REPLY: &str = "Sure, I can help with that. Your order ships tomorrow morning. Anything else?";

fn harness(fake: &ElevenLabsFake, key: &str, tweak: impl FnOnce(&mut ElevenLabsConfig)) -> Harness {
    let mut config = ElevenLabsConfig::with_voice("voice_custom_123");
    config.base_url = fake.base_url();
    config.ws_url = fake.ws_url();
    tweak(&mut config);
    Harness::start(Box::new(ElevenLabs::new(config, Secret::new(key)).unwrap().into_stage()))
}

async fn speak(h: &mut Harness, text: &str) -> Vec<Frame> {
    h.say("item_1", text, 5, Duration::from_millis(5)).await;
    h.input.send(Frame::EndOfStream).await.unwrap();
    let frames = h.collect_until_eos(Duration::from_secs(20)).await;
    (&mut h.task).await.unwrap().unwrap();
    frames
}

#[tokio::test]
async fn http_stream_sends_the_format_as_a_query_parameter_and_the_key_as_a_header() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default()).await.unwrap();
    let mut h = harness(&fake, "xi-test", |c| c.transport = Transport::Http);
    let frames = speak(&mut h, REPLY).await;
    let reqs = fake.http_requests();
    let chunks = chunks_of(REPLY, 20, 150);
    assert_eq!(reqs.len(), chunks.len());
    for (r, chunk) in reqs.iter().zip(&chunks) {
        assert_eq!(r.status, 200);
        assert_eq!(r.path, "/v1/text-to-speech/voice_custom_123/stream");
        assert_eq!(r.query.get("output_format").map(String::as_str), Some("pcm_24000"));
        assert_eq!(r.api_key.as_deref(), Some("xi-test"));
        assert_eq!(r.body["text"], chunk.as_str());
        assert_eq!(r.body["model_id"], "eleven_flash_v2_5");
        assert!(r.body.get("output_format").is_none());
    }
    assert_eq!(reqs[1].body["previous_text"], chunks[0].as_str(), "continuity hint");
    let expected: Vec<i16> = chunks.iter().flat_map(|c| speech_waveform(c, 60, 24_000)).collect();
    assert!(samples(&frames) == expected);
    assert_eq!(words(&spoken_text(&frames)), words(REPLY));
}

#[tokio::test]
async fn http_bad_key_is_fatal() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default()).await.unwrap();
    let mut h = harness(&fake, "xi-wrong", |c| c.transport = Transport::Http);
    h.say("item_1", REPLY, 80, Duration::ZERO).await;
    let err = tokio::time::timeout(Duration::from_secs(10), &mut h.task).await.unwrap().unwrap().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("tts.elevenlabs") && msg.contains("401") && msg.contains("ELEVENLABS_API_KEY"),
        "{msg}"
    );
    assert!(msg.contains("invalid_api_key"), "{msg}");
}

#[tokio::test]
async fn websocket_speaks_a_reply_with_flush_end_of_input_and_alignment_timed_words() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default()).await.unwrap();
    let mut h = harness(&fake, "xi-test", |c| c.chunk_length_schedule = Some(vec![50, 120]));
    let frames = speak(&mut h, REPLY).await;

    let sessions = fake.ws_sessions();
    assert_eq!(sessions.len(), 1, "one socket per reply");
    let s = &sessions[0];
    assert!(s.header_auth, "key sent in the xi-api-key header");
    assert_eq!(s.voice_id, "voice_custom_123");
    assert_eq!(s.query.get("output_format").map(String::as_str), Some("pcm_24000"));
    assert_eq!(s.query.get("model_id").map(String::as_str), Some("eleven_flash_v2_5"));
    assert_eq!(s.query.get("sync_alignment").map(String::as_str), Some("true"));
    assert_eq!(s.ended.as_deref(), Some("final"));
    let msgs: Vec<&serde_json::Value> = s.messages.iter().map(|(_, m)| m).collect();
    assert_eq!(msgs[0]["text"], " ", "first message is a single space");
    assert_eq!(msgs[0]["generation_config"]["chunk_length_schedule"], serde_json::json!([50, 120]));
    assert_eq!(*msgs[msgs.len() - 1], serde_json::json!({ "text": "" }), "end of input");
    let texts = &msgs[1..msgs.len() - 1];
    let chunks = chunks_of(REPLY, 20, 150);
    assert_eq!(texts.len(), chunks.len());
    for (i, (m, c)) in texts.iter().zip(&chunks).enumerate() {
        assert_eq!(m["text"], format!("{c} "), "chunks end with a space");
        assert_eq!(m.get("flush").is_some(), i == chunks.len() - 1, "flush on the last chunk only");
    }

    // The fake generated "<chunk> <chunk> …" in generations; audio is exact.
    let sent: String = chunks.iter().map(|c| format!("{c} ")).collect();
    let got = samples(&frames);
    assert_eq!(got.len(), sent.chars().count() * 60 * 24);
    assert_eq!(words(&spoken_text(&frames)), words(REPLY));

    // Alignment puts each character in the piece its start time falls in: char k of `sent`
    // starts at k × 60 ms (generations follow each other with no gap in the fake).
    let mut start = 0usize;
    let pieces = audio(&frames);
    for (n, a) in pieces.iter().enumerate() {
        let end = start + a.chunk.samples.len();
        let expected: String = sent
            .chars()
            .enumerate()
            .filter(|&(k, _)| {
                let at = k * 60 * 24;
                at >= start && (at < end || n == pieces.len() - 1)
            })
            .map(|(_, c)| c)
            .collect();
        assert_eq!(a.text.as_deref().unwrap_or(""), expected, "piece {n} at samples {start}..{end}");
        start = end;
    }
}

#[tokio::test]
async fn websocket_ulaw_8000_is_decoded_to_the_services_samples() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default()).await.unwrap();
    let mut h = harness(&fake, "xi-test", |c| {
        c.output_format = OutputFormat::Ulaw8000;
        c.sample_rate = 8_000;
    });
    let text = "Telephony audio arrives as mu-law bytes.";
    let frames = speak(&mut h, text).await;
    let mut ulaw = Vec::new();
    g711::encode_ulaw(&speech_waveform(&format!("{text} "), 60, 8_000), &mut ulaw);
    let mut expected = Vec::new();
    g711::decode_ulaw(&ulaw, &mut expected);
    assert!(samples(&frames) == expected);
    assert!(audio(&frames).iter().all(|a| a.chunk.sample_rate == 8_000 && a.chunk.samples.len() <= 800));
    assert_eq!(fake.ws_sessions()[0].query.get("output_format").map(String::as_str), Some("ulaw_8000"));
}

#[tokio::test]
async fn websocket_bad_key_is_fatal() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default()).await.unwrap();
    let mut h = harness(&fake, "xi-wrong", |_| {});
    h.say("item_1", REPLY, 80, Duration::ZERO).await;
    let err = tokio::time::timeout(Duration::from_secs(10), &mut h.task).await.unwrap().unwrap().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("401") && msg.contains("ELEVENLABS_API_KEY"), "{msg}");
}

#[tokio::test]
async fn two_replies_are_spoken_in_order_on_two_sockets() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default()).await.unwrap();
    let mut h = harness(&fake, "xi-test", |_| {});
    h.say("item_1", "The first reply is short.", 6, Duration::ZERO).await;
    h.say("item_2", "The second reply follows it.", 6, Duration::ZERO).await;
    h.input.send(Frame::EndOfStream).await.unwrap();
    let frames = h.collect_until_eos(Duration::from_secs(20)).await;
    let items: Vec<&str> = audio(&frames).iter().map(|a| &*a.item).collect();
    let switch = items.iter().position(|i| *i == "item_2").unwrap();
    assert!(items[..switch].iter().all(|i| *i == "item_1") && items[switch..].iter().all(|i| *i == "item_2"));
    assert_eq!(fake.ws_sessions().len(), 2);
    assert_eq!(words(&spoken_text(&frames)), words("The first reply is short. The second reply follows it."));
}
