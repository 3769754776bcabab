//! Fuzz targets (proptest, on stable): the SSE parser and the stream accumulators. Each
//! runs a few hundred cases under `cargo test`; `scripts/fuzz.sh` runs each for minutes.
//!
//! Properties: nothing panics, whatever the bytes; a stream split into chunks anywhere yields
//! the same events (and the same limit error) as the stream fed whole; a well-formed stream
//! accumulates to the text it carried.

#[path = "fuzz_support/mod.rs"]
mod fuzz_support;

use fuzz_support::{Damage, apply, damage, field, fuzz, json_scalar, object, raw_text};
use proptest::prelude::*;
use serde_json::{Value, json};
use voxpipe_llm::anthropic::accumulate::MessageAccumulator;
use voxpipe_llm::gemini::accumulate::GenerateAccumulator;
use voxpipe_llm::openai::accumulate::ChatAccumulator;
use voxpipe_llm::sse::{Event, Parser, TooLarge};

// ---------------------------------------------------------------------------------------------
// SSE framing

/// How one SSE line ends.
fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just("\n"), 2 => Just("\r\n"), 1 => Just("\r")]
}

/// One SSE line: a field (with or without the space after the colon), a comment, or noise.
fn sse_line() -> impl Strategy<Value = String> {
    let value = prop_oneof![".{0,16}", "[a-z{}\":, ]{0,16}", Just(String::new())];
    prop_oneof![
        4 => (value.clone(), any::<bool>()).prop_map(|(v, sp)| format!("data:{}{v}", if sp { " " } else { "" })),
        1 => value.clone().prop_map(|v| format!("event: {v}")),
        1 => value.clone().prop_map(|v| format!("id: {v}")),
        1 => value.clone().prop_map(|v| format!(": {v}")),
        1 => "[0-9]{0,6}".prop_map(|v| format!("retry: {v}")),
        1 => Just("data".to_string()),
        1 => Just(String::new()),
        1 => value.prop_map(|v| v.replace(['\r', '\n'], "")),
    ]
}

/// A stream of SSE lines with mixed line ends, maybe a BOM, maybe unterminated at the end.
fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), proptest::collection::vec((sse_line(), line_end()), 0..24), any::<bool>()).prop_map(
        |(bom, lines, cut_last_end)| {
            let mut out = Vec::new();
            if bom {
                out.extend_from_slice(b"\xEF\xBB\xBF");
            }
            let n = lines.len();
            for (i, (line, end)) in lines.into_iter().enumerate() {
                out.extend_from_slice(line.as_bytes());
                if !(cut_last_end && i + 1 == n) {
                    out.extend_from_slice(end.as_bytes());
                }
            }
            out
        },
    )
}

/// Chunk boundaries (sorted, deduplicated positions into a stream of `len` bytes).
fn cuts(stream: &[u8], fractions: &[f64]) -> Vec<usize> {
    let mut at: Vec<usize> = fractions.iter().map(|f| (stream.len() as f64 * f) as usize).collect();
    at.sort_unstable();
    at.dedup();
    at
}

fn parse_chunked(stream: &[u8], cuts: &[usize], limit: usize) -> (Vec<Event>, Result<(), TooLarge>) {
    let mut parser = Parser::with_limit(limit);
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&stream.len())) {
        if let Err(e) = parser.push(&stream[from..to], &mut out) {
            return (out, Err(e));
        }
        from = to;
    }
    (out, Ok(()))
}

#[test]
fn fuzz_sse_parser() {
    let input = (
        prop_oneof![3 => sse_stream(), 1 => proptest::collection::vec(any::<u8>(), 0..512)],
        proptest::collection::vec(0.0..1.0f64, 0..12),
        prop_oneof![Just(usize::MAX), Just(1 << 20), 1..64usize],
    );
    fuzz("sse_parser", 512, input, |(stream, fractions, limit)| {
        let whole = parse_chunked(&stream, &[], limit);
        let every_byte: Vec<usize> = (1..stream.len()).collect();
        prop_assert_eq!(&parse_chunked(&stream, &cuts(&stream, &fractions), limit), &whole);
        prop_assert_eq!(&parse_chunked(&stream, &every_byte, limit), &whole);
        for e in &whole.0 {
            prop_assert!(!e.data.is_empty() || stream.windows(4).any(|w| w == b"data"));
            prop_assert!(e.data.len() <= limit && !e.event.is_empty());
        }
        Ok(())
    });
}

/// Pinned next to the property: a CR that ends one chunk and the LF that opens the next are one
/// line end, not an empty line that dispatches the event early.
#[test]
fn sse_cr_at_a_chunk_end_then_lf() {
    let stream = b"data: a\r\ndata: b\r\n\r\n";
    let whole = parse_chunked(stream, &[], usize::MAX);
    assert_eq!(whole.0.len(), 1);
    assert_eq!(whole.0[0].data, "a\nb");
    assert_eq!(parse_chunked(stream, &[8, 17], usize::MAX), whole);
}

/// Serializes `events` (data payloads) as an SSE stream, with `end` as every line end.
fn to_sse(events: &[(Option<&str>, String)], end: &str) -> Vec<u8> {
    let mut out = String::new();
    for (name, data) in events {
        if let Some(name) = name {
            out.push_str(&format!("event: {name}{end}"));
        }
        for line in data.split('\n') {
            out.push_str(&format!("data: {line}{end}"));
        }
        out.push_str(end);
    }
    out.into_bytes()
}

fn events_of(stream: &[u8], cuts: &[usize]) -> Vec<Event> {
    parse_chunked(stream, cuts, voxpipe_llm::sse::MAX_EVENT_BYTES).0
}

// ---------------------------------------------------------------------------------------------
// OpenAI chat completions

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", Just(String::new()), "[a-z ]{1,8}"]
}

fn tool_call_chunk() -> impl Strategy<Value = Value> {
    let index = prop_oneof![0..4u64, Just(u32::MAX as u64), Just(u32::MAX as u64 + 1)].prop_map(|i| json!(i));
    (
        field(index, |v| v),
        field(text().prop_map(Value::String), |v| v),
        field(Just(json!("function")), |v| v),
        field(text().prop_map(Value::String), |v| v),
        field(text().prop_map(Value::String), |v| v),
    )
        .prop_map(|(index, id, kind, name, args)| {
            let function = object(vec![("name", name), ("arguments", args)]);
            object(vec![("index", index), ("id", id), ("type", kind), ("function", Some(function))])
        })
}

fn chat_chunk() -> impl Strategy<Value = Value> {
    let choice = (
        field((0..3u32).prop_map(|i| json!(i)), |v| v),
        field(text().prop_map(Value::String), |v| v),
        field(proptest::collection::vec(tool_call_chunk(), 0..3).prop_map(Value::Array), |v| v),
        field(prop_oneof![Just(json!("stop")), Just(json!("tool_calls")), Just(Value::Null)], |v| v),
    )
        .prop_map(|(index, content, calls, finish)| {
            let delta = object(vec![("content", content), ("tool_calls", calls)]);
            object(vec![("index", index), ("delta", Some(delta)), ("finish_reason", finish)])
        });
    let count = prop_oneof![any::<u64>(), Just(u64::MAX)].prop_map(|n| json!(n));
    let usage = (field(count.clone(), |v| v), field(count.clone(), |v| v), field(count, |v| v)).prop_map(
        |(p, c, cached)| {
            let details = object(vec![("cached_tokens", cached)]);
            object(vec![
                ("prompt_tokens", p),
                ("completion_tokens", c),
                ("prompt_tokens_details", Some(details)),
            ])
        },
    );
    let error = (field(text().prop_map(Value::String), |v| v), json_scalar())
        .prop_map(|(message, code)| object(vec![("message", message), ("code", Some(code))]));
    prop_oneof![
        8 => proptest::collection::vec(choice, 0..3).prop_map(|c| json!({"choices": c})),
        2 => usage.prop_map(|u| json!({"choices": [], "usage": u})),
        1 => error.prop_map(|e| json!({"error": e})),
        1 => json_scalar(),
    ]
}

/// A chat stream: chunks (some damaged), maybe `[DONE]`, as SSE with one line-end style.
fn chat_stream() -> impl Strategy<Value = (Vec<(Value, Damage)>, bool, &'static str)> {
    (proptest::collection::vec((chat_chunk(), damage()), 0..12), any::<bool>(), line_end())
}

/// The choice-0 text a well-formed chunk carries.
fn chat_text(chunk: &Value) -> String {
    let mut out = String::new();
    for c in chunk["choices"].as_array().into_iter().flatten() {
        if c.get("index").is_none_or(|i| i == 0)
            && let Some(t) = c["delta"]["content"].as_str()
        {
            out.push_str(t);
        }
    }
    out
}

#[test]
fn fuzz_openai_chat_stream() {
    let input = (
        prop_oneof![4 => chat_stream().prop_map(Some), 1 => Just(None)],
        raw_text(),
        proptest::collection::vec(0.0..1.0f64, 0..8),
    );
    fuzz("openai_chat_stream", 384, input, |(stream, raw, fractions)| {
        let (events, expected) = match &stream {
            Some((chunks, done, end)) => {
                let mut payloads: Vec<(Option<&str>, String)> =
                    chunks.iter().map(|(c, d)| (None, apply(&c.to_string(), d))).collect();
                if *done {
                    payloads.push((None, "[DONE]".into()));
                }
                let intact = chunks.iter().all(|(_, d)| matches!(d, Damage::None));
                let expected = intact.then(|| chunks.iter().map(|(c, _)| chat_text(c)).collect::<String>());
                (to_sse(&payloads, end), expected)
            }
            None => (raw.into_bytes(), None),
        };
        let events = events_of(&events, &cuts(&events, &fractions));
        let mut acc = ChatAccumulator::new();
        let mut deltas = Vec::new();
        let mut failed = false;
        for e in &events {
            match acc.push_data(&e.data, &mut deltas) {
                Ok(_) => {}
                Err(err) => {
                    prop_assert!(err.to_string().starts_with("openai: "), "{err}");
                    failed = true;
                    break;
                }
            }
        }
        prop_assert_eq!(deltas.concat(), acc.text());
        if let Some(expected) = expected.filter(|_| !failed) {
            prop_assert_eq!(acc.text(), expected);
        }
        let _ = (acc.usage(), acc.is_complete(), acc.finish_reason(), acc.tool_calls());
        let _ = acc.into_round();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Anthropic messages

fn anthropic_event() -> impl Strategy<Value = Value> {
    let index = || field(prop_oneof![0..4u64, Just(u64::MAX)].prop_map(|i| json!(i)), |v| v);
    let count = || field(prop_oneof![0..1000u64, Just(u64::MAX), any::<u64>()].prop_map(|n| json!(n)), |v| v);
    let usage = || {
        (count(), count(), count(), count()).prop_map(|(i, r, c, o)| {
            object(vec![
                ("input_tokens", i),
                ("cache_read_input_tokens", r),
                ("cache_creation_input_tokens", c),
                ("output_tokens", o),
            ])
        })
    };
    let block = (
        prop_oneof![Just("text"), Just("tool_use"), Just("thinking"), Just("server_tool_use"), Just("")],
        field(text().prop_map(Value::String), |v| v),
        field(text().prop_map(Value::String), |v| v),
    )
        .prop_map(|(kind, text_or_id, name)| {
            let mut b = object(vec![("text", text_or_id.clone()), ("id", text_or_id), ("name", name)]);
            b["type"] = json!(kind);
            b
        });
    let delta = (
        prop_oneof![
            Just("text_delta"),
            Just("input_json_delta"),
            Just("thinking_delta"),
            Just("signature_delta"),
            Just("citations_delta")
        ],
        field(text().prop_map(Value::String), |v| v),
    )
        .prop_map(|(kind, t)| {
            let mut d = object(vec![
                ("text", t.clone()),
                ("partial_json", t.clone()),
                ("thinking", t.clone()),
                ("signature", t),
            ]);
            d["type"] = json!(kind);
            d
        });
    prop_oneof![
        1 => usage().prop_map(|u| json!({"type": "message_start", "message": {"usage": u}})),
        2 => (index(), block).prop_map(|(i, b)| {
            let mut v = object(vec![("index", i)]);
            v["type"] = json!("content_block_start");
            v["content_block"] = b;
            v
        }),
        4 => (index(), delta).prop_map(|(i, d)| {
            let mut v = object(vec![("index", i)]);
            v["type"] = json!("content_block_delta");
            v["delta"] = d;
            v
        }),
        1 => index().prop_map(|i| {
            let mut v = object(vec![("index", i)]);
            v["type"] = json!("content_block_stop");
            v
        }),
        1 => (field(Just(json!("end_turn")), |v| v), usage()).prop_map(|(r, u)| {
            json!({"type": "message_delta", "delta": object(vec![("stop_reason", r)]), "usage": u})
        }),
        1 => Just(json!({"type": "message_stop"})),
        1 => Just(json!({"type": "ping"})),
        1 => json_scalar().prop_map(|v| json!({"type": "error", "error": {"type": v, "message": "x"}})),
        1 => json_scalar(),
    ]
}

#[test]
fn fuzz_anthropic_stream() {
    let input = (
        prop_oneof![
            4 => (proptest::collection::vec((anthropic_event(), damage()), 0..14), line_end()).prop_map(Some),
            1 => Just(None),
        ],
        raw_text(),
        proptest::collection::vec(0.0..1.0f64, 0..8),
    );
    fuzz("anthropic_stream", 384, input, |(stream, raw, fractions)| {
        let bytes = match &stream {
            Some((events, end)) => {
                let payloads: Vec<(Option<&str>, String)> =
                    events.iter().map(|(e, d)| (e["type"].as_str(), apply(&e.to_string(), d))).collect();
                to_sse(&payloads, end)
            }
            None => raw.into_bytes(),
        };
        let events = events_of(&bytes, &cuts(&bytes, &fractions));
        let mut acc = MessageAccumulator::new();
        let mut deltas = Vec::new();
        for e in &events {
            if let Err(err) = acc.push_data(&e.data, &mut deltas) {
                prop_assert!(err.to_string().starts_with("anthropic: "), "{err}");
                break;
            }
        }
        let _ = (acc.usage(), acc.text(), acc.stop_reason(), acc.blocks().len());
        let _ = acc.into_round();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Gemini streamGenerateContent

fn gemini_part() -> impl Strategy<Value = Value> {
    let args = prop_oneof![Just(json!({})), Just(json!({"city": "Paris"})), json_scalar(), Just(Value::Null)];
    prop_oneof![
        4 => (field(text().prop_map(Value::String), |v| v), field(any::<bool>().prop_map(Value::Bool), |v| v))
            .prop_map(|(t, thought)| object(vec![("text", t), ("thought", thought)])),
        2 => (
            field(text().prop_map(Value::String), |v| v),
            field(args, |v| v),
            field(text().prop_map(Value::String), |v| v),
            field(text().prop_map(Value::String), |v| v),
        )
            .prop_map(|(name, args, id, sig)| {
                let fc = object(vec![("name", name), ("args", args), ("id", id)]);
                object(vec![("functionCall", Some(fc)), ("thoughtSignature", sig)])
            }),
        1 => json_scalar().prop_map(|v| json!({"executableCode": v})),
        1 => json_scalar(),
    ]
}

fn gemini_chunk() -> impl Strategy<Value = Value> {
    let count = || field(prop_oneof![0..1000u64, Just(u64::MAX), any::<u64>()].prop_map(|n| json!(n)), |v| v);
    let usage = (count(), count(), count(), count(), count()).prop_map(|(p, c, t, k, u)| {
        object(vec![
            ("promptTokenCount", p),
            ("candidatesTokenCount", c),
            ("thoughtsTokenCount", t),
            ("cachedContentTokenCount", k),
            ("toolUsePromptTokenCount", u),
        ])
    });
    let reason = prop_oneof![
        Just("STOP"),
        Just("MAX_TOKENS"),
        Just("SAFETY"),
        Just("MALFORMED_FUNCTION_CALL"),
        Just("")
    ];
    let candidate = (
        field(
            proptest::collection::vec(gemini_part(), 0..4).prop_map(|p| json!({"role": "model", "parts": p})),
            |v| v,
        ),
        field(reason.prop_map(|r| json!(r)), |v| v),
        field(prop_oneof![Just(0u64), 1..3u64].prop_map(|i| json!(i)), |v| v),
    )
        .prop_map(|(content, finish, index)| {
            object(vec![("content", content), ("finishReason", finish), ("index", index)])
        });
    prop_oneof![
        6 => (field(proptest::collection::vec(candidate, 0..3).prop_map(Value::Array), |v| v), field(usage, |v| v))
            .prop_map(|(c, u)| object(vec![("candidates", c), ("usageMetadata", u)])),
        1 => json_scalar().prop_map(|r| json!({"promptFeedback": {"blockReason": r}})),
        1 => json_scalar().prop_map(|s| json!({"error": {"code": 500, "status": s, "message": "x"}})),
        1 => json_scalar(),
    ]
}

#[test]
fn fuzz_gemini_stream() {
    let input = (
        prop_oneof![
            4 => (proptest::collection::vec((gemini_chunk(), damage()), 0..12), line_end()).prop_map(Some),
            1 => Just(None),
        ],
        raw_text(),
        proptest::collection::vec(0.0..1.0f64, 0..8),
    );
    fuzz("gemini_stream", 384, input, |(stream, raw, fractions)| {
        let bytes = match &stream {
            Some((chunks, end)) => {
                let payloads: Vec<(Option<&str>, String)> =
                    chunks.iter().map(|(c, d)| (None, apply(&c.to_string(), d))).collect();
                to_sse(&payloads, end)
            }
            None => raw.into_bytes(),
        };
        let events = events_of(&bytes, &cuts(&bytes, &fractions));
        let mut acc = GenerateAccumulator::new();
        let mut deltas = Vec::new();
        for e in &events {
            if let Err(err) = acc.push_data(&e.data, &mut deltas) {
                prop_assert!(err.to_string().starts_with("gemini: "), "{err}");
                break;
            }
        }
        // What was spoken is what history keeps.
        prop_assert_eq!(acc.text(), deltas.concat());
        let _ = (acc.usage(), acc.finish_reason(), acc.parts().len());
        let _ = acc.into_round();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Regressions: each a case the targets above found, named after the finding.

/// `fuzz_anthropic_stream`: `message_start` usage near `u64::MAX` (input plus cache reads plus
/// cache writes) overflowed the sum in `usage()` and panicked the stage.
#[test]
fn anthropic_usage_counts_near_u64_max_saturate() {
    let mut acc = MessageAccumulator::new();
    let start = json!({"type": "message_start", "message": {"usage": {
        "input_tokens": u64::MAX, "cache_read_input_tokens": 1, "cache_creation_input_tokens": u64::MAX}}});
    acc.push_data(&start.to_string(), &mut Vec::new()).unwrap();
    assert_eq!(acc.usage().unwrap().input_tokens, u64::MAX);
}

/// `fuzz_openai_chat_stream`: a tool-call fragment at index `u32::MAX`, then one without an
/// index that opens a new call (has an `id`), overflowed the next index and panicked.
#[test]
fn openai_tool_call_without_index_after_index_u32_max() {
    let mut acc = ChatAccumulator::new();
    let mut d = Vec::new();
    let first = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": u32::MAX, "id": "a"}]}}]});
    let second =
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"id": "b", "function": {"name": "f"}}]}}]});
    acc.push_data(&first.to_string(), &mut d).unwrap();
    let _ = acc.push_data(&second.to_string(), &mut d);
    assert!(acc.calls().len() <= 2);
}
