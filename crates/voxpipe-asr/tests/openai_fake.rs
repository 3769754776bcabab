//! `asr.openai` against the transcription fake.

mod common;

use std::time::Duration;
use voxpipe_asr::{Error, OpenAiTranscribeConfig, OpenAiTranscribeStage, OpenAiTranscriber};
use voxpipe_core::{Frame, Secret, Stage, channel};
use voxpipe_fakes::transcription::{TranscriptionFake, TranscriptionFakeConfig};

fn config(fake: &TranscriptionFake) -> OpenAiTranscribeConfig {
    OpenAiTranscribeConfig {
        base_url: fake.base_url(),
        language: Some("en".into()),
        prompt: Some("voxpipe".into()),
        ..Default::default()
    }
}

fn tone(ms: usize) -> Vec<i16> {
    (0..16 * ms).map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16).collect()
}

#[tokio::test]
async fn each_utterance_is_uploaded_as_a_wav_file_and_finalised() {
    let fake = TranscriptionFake::start(TranscriptionFakeConfig {
        transcripts: vec!["Hello there.".into(), "Book a table.".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let cfg = config(&fake);
    let client = OpenAiTranscriber::with_key(&cfg, Secret::new("sk-test"));
    let (ctx, _events) = common::call_context();
    let (in_tx, in_rx) = channel();
    let (out_tx, out_rx) = channel();
    let stage =
        tokio::spawn(Box::new(OpenAiTranscribeStage::with_client(&cfg, client)).run(ctx, in_rx, out_tx));
    let collector = tokio::spawn(common::collect(out_rx));
    // 8 kHz input (telephony) with 200 ms of pre-roll before each onset.
    let audio = voxpipe_core::audio::resample_all(&tone(1000), 16_000, 8_000).unwrap();
    for turn in 0..2u64 {
        let t0 = turn * 2000;
        for f in common::chunks(&vec![0; 1600], 8_000, t0) {
            in_tx.send(f).await.unwrap();
        }
        in_tx.send(Frame::SpeechStarted { at: Duration::from_millis(t0 + 200) }).await.unwrap();
        for f in common::chunks(&audio, 8_000, t0 + 200) {
            in_tx.send(f).await.unwrap();
        }
        in_tx.send(Frame::SpeechStopped { at: Duration::from_millis(t0 + 1200) }).await.unwrap();
    }
    in_tx.send(Frame::EndOfStream).await.unwrap();
    stage.await.unwrap().unwrap();
    let frames = collector.await.unwrap();
    let summary: Vec<String> = frames
        .iter()
        .map(|f| match f {
            Frame::UserTranscript(t) => {
                format!("{}:{}:{}", t.item.as_deref().unwrap_or("-"), t.is_final, t.text)
            }
            other => other.kind().to_string(),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "speech_started",
            "speech_stopped",
            "user_1:true:Hello there.",
            "speech_started",
            "speech_stopped",
            "user_2:true:Book a table.",
            "end_of_stream"
        ]
    );

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.status, 200);
        assert!(r.content_type.starts_with("multipart/form-data; boundary="));
        assert_eq!(r.file_name.as_deref(), Some("audio.wav"));
        assert_eq!(r.file_content_type.as_deref(), Some("audio/wav"));
        assert_eq!(r.fields["model"], "gpt-4o-mini-transcribe");
        assert_eq!(r.fields["language"], "en");
        assert_eq!(r.fields["prompt"], "voxpipe");
        assert_eq!(r.fields["response_format"], "json");
        let wav = r.wav.clone().unwrap();
        assert_eq!((wav.sample_rate, wav.channels, wav.bits_per_sample), (16_000, 1, 16));
        // 1 s of speech plus the 200 ms of pre-roll kept before the onset (±1 chunk).
        assert!(wav.samples.abs_diff(19_200) <= 320, "{} samples", wav.samples);
    }
}

#[tokio::test]
async fn a_wrong_key_fails_with_the_status_and_body() {
    let fake = TranscriptionFake::start(TranscriptionFakeConfig::default()).await.unwrap();
    let client = OpenAiTranscriber::with_key(&config(&fake), Secret::new("sk-wrong"));
    let err = client.transcribe(&tone(500)).await.unwrap_err();
    match &err {
        Error::Status { status: 401, body, .. } => assert!(body.contains("invalid_api_key"), "{body}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.to_string().contains("sk-wrong"), "the key never appears in errors");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn server_faults_are_retryable_errors() {
    let fake = TranscriptionFake::start(TranscriptionFakeConfig {
        fail_requests: vec![(0, 503)],
        ..Default::default()
    })
    .await
    .unwrap();
    let cfg = config(&fake);
    let client = OpenAiTranscriber::with_key(&cfg, Secret::new("sk-test"));
    let err = client.transcribe(&tone(500)).await.unwrap_err();
    assert!(matches!(err, Error::Status { status: 503, .. }) && err.is_retryable(), "{err}");
    // The next request succeeds with the fake's default text.
    assert_eq!(client.transcribe(&tone(500)).await.unwrap(), "500 ms of audio");
}

#[tokio::test]
async fn the_fake_rejects_raw_pcm_and_missing_fields_like_the_real_api() {
    let fake = TranscriptionFake::start(TranscriptionFakeConfig::default()).await.unwrap();
    let url = format!("{}/audio/transcriptions", fake.base_url());
    let http = reqwest::Client::new();
    let raw = reqwest::multipart::Part::bytes(vec![0u8; 3200]).file_name("audio.wav");
    let form = reqwest::multipart::Form::new().part("file", raw).text("model", "whisper-1");
    let resp = http.post(&url).bearer_auth("sk-test").multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["param"], "file");
    let wav = reqwest::multipart::Part::bytes(voxpipe_asr::openai::wav_bytes(&tone(300), 16_000))
        .file_name("a.wav");
    let resp = http
        .post(&url)
        .bearer_auth("sk-test")
        .multipart(reqwest::multipart::Form::new().part("file", wav))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "model is required");
    let resp = http.post(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}
