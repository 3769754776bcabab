//! Fuzz target (proptest, on stable): the Realtime server-event decoder. Under `cargo test` it
//! runs a few hundred cases; `scripts/fuzz.sh` runs it for minutes.
//!
//! Property: any text decodes to an event or a typed serde error, never a panic; a well-formed
//! event of a known type decodes to its variant; usage converts whatever its counts.

#[path = "../../voxpipe-llm/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use fuzz_support::{Damage, apply, damage, fuzz, json_scalar, raw_text};
use proptest::prelude::*;
use serde_json::{Value, json};
use voxpipe_realtime::events::ServerEvent;

/// Known event types (GA and beta spellings) and a few unknown ones.
const TYPES: &[&str] = &[
    "session.created",
    "session.updated",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed",
    "response.created",
    "response.done",
    "response.output_item.added",
    "response.output_audio.delta",
    "response.audio.delta",
    "response.output_audio_transcript.delta",
    "response.audio_transcript.done",
    "response.output_text.delta",
    "response.text.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "conversation.item.truncated",
    "rate_limits.updated",
    "error",
    "response.content_part.added",
    "mcp_list_tools.in_progress",
    "",
];

/// A valid value for each field name the decoder reads.
fn valid(name: &str) -> Value {
    match name {
        "audio_start_ms" | "audio_end_ms" => json!(1234),
        "session" | "rate_limits" => json!({"id": "sess_1"}),
        "response" => json!({"id": "resp_1", "status": "completed", "usage": {"input_tokens": 5,
            "output_tokens": 7, "input_token_details": {"audio_tokens": 3, "cached_tokens": 1},
            "output_token_details": {"text_tokens": 2}}}),
        "item" => json!({"id": "item_1", "type": "function_call", "name": "f", "call_id": "call_1"}),
        "error" => json!({"type": "invalid_request_error", "code": "x", "message": "m", "event_id": "e"}),
        "delta" => json!("AAAA//8="),
        _ => json!(format!("{name}_1")),
    }
}

const FIELDS: &[&str] = &[
    "session",
    "audio_start_ms",
    "audio_end_ms",
    "item_id",
    "response_id",
    "call_id",
    "name",
    "delta",
    "transcript",
    "text",
    "arguments",
    "response",
    "item",
    "error",
    "rate_limits",
];

/// A nested value with random leaves, for `response`, `item`, `error` bodies.
fn nested() -> impl Strategy<Value = Value> {
    json_scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("id".to_string()),
                    Just("type".to_string()),
                    Just("status".to_string()),
                    Just("usage".to_string()),
                    Just("input_tokens".to_string()),
                    Just("output_tokens".to_string()),
                    Just("input_token_details".to_string()),
                    Just("audio_tokens".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An event: a type, each field valid, absent, of another type, or nested garbage; `true`
/// when every field is valid.
fn event() -> impl Strategy<Value = (Value, bool)> {
    // `None`: valid; `Some(None)`: absent; `Some(Some(v))`: replaced by `v`.
    let field = prop_oneof![
        12 => Just(None),
        1 => Just(Some(None)),
        1 => json_scalar().prop_map(|v| Some(Some(v))),
        1 => nested().prop_map(|v| Some(Some(v))),
    ];
    (proptest::sample::select(TYPES), proptest::collection::vec(field, FIELDS.len())).prop_map(
        |(ty, fields)| {
            let mut obj = serde_json::Map::new();
            obj.insert("type".into(), json!(ty));
            obj.insert("event_id".into(), json!("event_1"));
            let mut intact = true;
            for (name, field) in FIELDS.iter().zip(fields) {
                match field {
                    None => {
                        obj.insert(name.to_string(), valid(name));
                    }
                    Some(None) => intact = false,
                    Some(Some(v)) => {
                        intact = false;
                        obj.insert(name.to_string(), v);
                    }
                }
            }
            (Value::Object(obj), intact)
        },
    )
}

#[test]
fn fuzz_realtime_server_events() {
    let input = prop_oneof![
        4 => (event(), damage()).prop_map(|((v, intact), d)| {
            let intact = intact && matches!(d, Damage::None);
            (apply(&v.to_string(), &d), intact)
        }),
        1 => raw_text().prop_map(|t| (t, false)),
    ];
    fuzz("realtime_server_events", 1000, input, |(text, intact)| {
        let decoded = serde_json::from_str::<ServerEvent>(&text);
        if intact {
            prop_assert!(decoded.is_ok(), "a well-formed event failed to decode: {text}: {decoded:?}");
        }
        if let Ok(ServerEvent::ResponseDone { response } | ServerEvent::ResponseCreated { response }) =
            decoded
            && let Some(usage) = response.usage
        {
            let _: voxpipe_core::Usage = usage.into();
        }
        Ok(())
    });
}
