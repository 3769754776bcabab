//! Fuzz target (proptest, on stable): Twilio Media Streams messages, through the message
//! decoders and the transport's source loop (`accept`, then the source until the socket ends).
//! Under `cargo test` it runs a few hundred cases; `scripts/fuzz.sh` runs it for minutes.
//!
//! Property: whatever the carrier sends (wrong types, bad base64, oversize payloads, absurd
//! timestamps, unknown digits, garbage), nothing panics, the source ends when the socket does,
//! and the audio it delivers is bounded by what the messages could carry.

#[path = "../../voxpipe-llm/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use base64::Engine;
use fuzz_support::{apply, damage, fuzz, json_scalar, raw_text};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use voxpipe_core::{CallContext, Frame, Source};
use voxpipe_twilio::media::{Inbound, MediaView};
use voxpipe_twilio::transport::{DtmfConfig, SocketIn, StreamOptions, accept};

const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"customParameters":{},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sid() -> impl Strategy<Value = Value> {
    prop_oneof![8 => Just(json!("MZ1")), 1 => Just(json!("MZ2")), 1 => json_scalar()]
}

fn timestamp() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (0..100_000u64).prop_map(|t| json!(t.to_string())),
        1 => Just(json!(u64::MAX.to_string())),
        1 => Just(json!((u64::MAX / 8).to_string())),
        1 => any::<u64>().prop_map(|t| json!(t.to_string())),
        1 => prop_oneof![Just(json!("-1")), Just(json!("1e9")), Just(json!("")), Just(json!(20))],
    ]
}

fn payload() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(|b| json!(b64(&b))),
        1 => Just(json!(b64(&[0u8; 9000]))),
        1 => "[A-Za-z0-9+/=!*\\\\ ]{0,40}".prop_map(|s| json!(s)),
        1 => Just(json!("\\/\\/8=")),
        1 => json_scalar(),
    ]
}

/// One message from the carrier.
fn message() -> impl Strategy<Value = Value> {
    prop_oneof![
        10 => (sid(), timestamp(), payload()).prop_map(|(sid, ts, p)| json!({"event": "media",
            "sequenceNumber": "2", "streamSid": sid,
            "media": {"track": "inbound", "chunk": "1", "timestamp": ts, "payload": p}})),
        2 => (sid(), prop_oneof![Just(json!("1")), Just(json!("#")), Just(json!("*")), Just(json!("12")),
                Just(json!("")), Just(json!("é")), json_scalar()])
            .prop_map(|(sid, d)| json!({"event": "dtmf", "sequenceNumber": "3", "streamSid": sid,
                "dtmf": {"track": "inbound_track", "digit": d}})),
        2 => (sid(), prop_oneof![Just(json!("vx1")), Just(json!("vx18446744073709551616")), json_scalar()])
            .prop_map(|(sid, n)| json!({"event": "mark", "sequenceNumber": "4", "streamSid": sid,
                "mark": {"name": n}})),
        1 => Just(serde_json::from_str::<Value>(START).unwrap()),
        1 => Just(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})),
        1 => sid().prop_map(|sid| json!({"event": "stop", "sequenceNumber": "5", "streamSid": sid,
            "stop": {"accountSid": "AC1", "callSid": "CA1"}})),
        1 => json_scalar().prop_map(|v| json!({"event": v})),
    ]
}

/// What the socket reader hands the transport: damaged or raw text, binary, a close.
fn socket_in() -> impl Strategy<Value = SocketIn> {
    prop_oneof![
        12 => (message(), damage()).prop_map(|(m, d)| SocketIn::Text(apply(&m.to_string(), &d))),
        1 => raw_text().prop_map(SocketIn::Text),
        1 => (0..100_000usize).prop_map(SocketIn::Binary),
        1 => ".{0,8}".prop_map(SocketIn::Closed),
    ]
}

/// The first messages: usually a good start, sometimes a damaged or wrong one.
fn opening() -> impl Strategy<Value = Vec<SocketIn>> {
    let start = prop_oneof![
        6 => Just(START.to_string()),
        1 => damage().prop_map(|d| apply(START, &d)),
        1 => Just(START.replace("8000", "16000")),
        1 => raw_text(),
    ];
    (any::<bool>(), start).prop_map(|(connected, start)| {
        let mut v = Vec::new();
        if connected {
            v.push(SocketIn::Text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.into()));
        }
        v.push(SocketIn::Text(start));
        v
    })
}

/// Runs the transport's source over `messages` on a paused clock; returns the samples it
/// delivered, or `None` when the stream did not start.
fn run_source(messages: Vec<SocketIn>) -> Result<Option<usize>, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    rt.block_on(async move {
        let (in_tx, in_rx) = mpsc::channel(messages.len() + 1);
        for m in messages {
            in_tx.send(m).await.unwrap();
        }
        drop(in_tx);
        let (out_tx, mut out_rx) = mpsc::channel(1024);
        tokio::spawn(async move { while out_rx.recv().await.is_some() {} });
        let dtmf = DtmfConfig { timeout_ms: 50, ..DtmfConfig::default() };
        let opts = StreamOptions { start_timeout_ms: 1000, ..StreamOptions::default() };
        let Ok(stream) = accept(in_rx, out_tx, opts, dtmf).await else { return Ok(None) };
        drop(stream.sink);
        let (ctx, mut events) = CallContext::new(Arc::new(voxpipe_core::NoTools));
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        let (src_out, mut src_in) = voxpipe_core::channel();
        let samples = tokio::spawn(async move {
            let mut n = 0usize;
            while let Some(f) = src_in.recv().await {
                if let Frame::InputAudio(chunk) = f {
                    n += chunk.samples.len();
                }
            }
            n
        });
        // Virtual time: only a source stuck on a timer reaches this.
        let run = tokio::time::timeout(Duration::from_secs(3600), Box::new(stream.source).run(ctx, src_out));
        match run.await {
            Err(_) => Err("the source did not end after its socket did".to_string()),
            Ok(Err(e)) => Err(format!("the source failed: {e}")),
            Ok(Ok(())) => Ok(Some(samples.await.unwrap())),
        }
    })
}

#[test]
fn fuzz_twilio_media_stream() {
    let input = (opening(), proptest::collection::vec(socket_in(), 0..24));
    fuzz("twilio_media_stream", 256, input, |(opening, messages)| {
        for m in opening.iter().chain(&messages) {
            if let SocketIn::Text(t) = m {
                let view = MediaView::parse(t);
                let full = serde_json::from_str::<Inbound>(t);
                // The in-place view accepts exactly the media messages the full parser accepts
                // (it may decline some, e.g. escaped strings, which then take the full parser),
                // and both read the same thing.
                match (view, full) {
                    (Some(v), Ok(Inbound::Media { stream_sid, media, .. })) => {
                        prop_assert_eq!(
                            (v.stream_sid, v.timestamp, v.payload),
                            (&*stream_sid, &*media.timestamp, &*media.payload)
                        );
                    }
                    (Some(_), Ok(other)) => {
                        return Err(TestCaseError::fail(format!("the view read {other:?} as media: {t}")));
                    }
                    (Some(_), Err(e)) => {
                        return Err(TestCaseError::fail(format!(
                            "the view read a message refused ({e}): {t}"
                        )));
                    }
                    _ => {}
                }
            }
        }
        let count = messages.len();
        let delivered =
            run_source(opening.into_iter().chain(messages).collect()).map_err(TestCaseError::fail)?;
        if let Some(samples) = delivered {
            // Each message carries at most 1 s of audio after at most 5 s of gap-filling silence.
            prop_assert!(samples <= count * 6 * 8000, "{samples} samples from {count} messages");
        }
        Ok(())
    });
}

/// `fuzz_twilio_media_stream`: a media timestamp above `u64::MAX / 8000` ms overflowed the
/// conversion to a sample position and panicked the source. Now the gap it implies is filled
/// with the usual 5 s of silence at most.
#[test]
fn twilio_media_timestamp_near_u64_max() {
    let media = |ts: &str| {
        SocketIn::Text(format!(
            r#"{{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{{"track":"inbound","chunk":"1","timestamp":"{ts}","payload":"{}"}}}}"#,
            b64(&[0xff; 160])
        ))
    };
    let messages = vec![SocketIn::Text(START.into()), media("0"), media(&u64::MAX.to_string())];
    assert_eq!(run_source(messages), Ok(Some(160 + 5 * 8000 + 160)));
}
