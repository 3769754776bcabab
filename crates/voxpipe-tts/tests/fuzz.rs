//! Fuzz target (proptest, on stable): the ElevenLabs `stream-input` message decoder. Under
//! `cargo test` it runs a few hundred cases; `scripts/fuzz.sh` runs it for minutes.
//!
//! Property: any text decodes to a reply or a typed `tts.elevenlabs` protocol error, never a
//! panic; well-formed audio decodes to exactly its samples; alignment times of any value
//! (negative, huge, fractional) become milliseconds without panicking.

#[path = "../../voxpipe-llm/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use base64::Engine;
use fuzz_support::{Damage, apply, damage, fuzz, json_scalar, raw_text};
use proptest::prelude::*;
use serde_json::{Value, json};
use voxpipe_tts::OutputFormat;
use voxpipe_tts::elevenlabs::decode_server_message;

fn alignment() -> impl Strategy<Value = Value> {
    let time = prop_oneof![
        4 => (0.0..10_000.0f64).prop_map(|t| json!(t)),
        1 => Just(json!(-5.5)),
        1 => Just(json!(1e300)),
        1 => Just(json!(u64::MAX)),
        1 => json_scalar(),
    ];
    (proptest::collection::vec(".", 0..6), proptest::collection::vec(time, 0..6))
        .prop_map(|(chars, times)| json!({"chars": chars, "charStartTimesMs": times, "charDurationsMs": []}))
}

/// A message: audio (good, bad or missing base64), alignment, isFinal, or an error.
fn message() -> impl Strategy<Value = (Value, Option<Vec<u8>>)> {
    let audio = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Some),
        1 => Just(None),
    ];
    prop_oneof![
        6 => (audio, prop_oneof![Just(None), alignment().prop_map(Some)], any::<bool>()).prop_map(
            |(audio, alignment, normalized)| {
                let mut m = json!({});
                if let Some(bytes) = &audio {
                    m["audio"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
                }
                if let Some(a) = alignment {
                    m[if normalized { "normalizedAlignment" } else { "alignment" }] = a;
                }
                (m, audio)
            }
        ),
        1 => "[A-Za-z0-9+/=!*]{1,24}".prop_map(|a| (json!({"audio": a}), None)),
        1 => Just((json!({"isFinal": true}), None)),
        1 => json_scalar().prop_map(|v| (json!({"error": v, "message": "quota exceeded"}), None)),
        1 => json_scalar().prop_map(|v| (json!({"audio": v, "isFinal": v, "alignment": v}), None)),
    ]
}

#[test]
fn fuzz_elevenlabs_messages() {
    let formats =
        proptest::sample::select(vec![OutputFormat::Pcm24000, OutputFormat::Pcm8000, OutputFormat::Ulaw8000]);
    let input = prop_oneof![
        4 => (message(), damage()).prop_map(|((m, audio), d)| {
            let audio = audio.filter(|_| matches!(d, Damage::None));
            (apply(&m.to_string(), &d), audio)
        }),
        1 => raw_text().prop_map(|t| (t, None)),
    ];
    fuzz("elevenlabs_messages", 1000, (input, formats), |((text, audio), format)| {
        match decode_server_message(&text, format) {
            Ok(reply) => {
                if let Some(bytes) = audio {
                    let expected =
                        if format == OutputFormat::Ulaw8000 { bytes.len() } else { bytes.len() / 2 };
                    prop_assert_eq!(reply.samples.len(), expected);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("tts.elevenlabs: protocol error"), "{msg}");
                prop_assert!(!e.is_fatal());
            }
        }
        Ok(())
    });
}
