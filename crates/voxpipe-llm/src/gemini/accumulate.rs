//! Accumulates a Gemini `streamGenerateContent?alt=sse` stream (`shared/specs/google/DIGEST.md`
//! §2, `generative_service.proto`) into text fragments, parts and usage. Pure: no I/O, fed one
//! event at a time.
//!
//! Each event's data is a whole `GenerateContentResponse`. Of its first candidate, text parts
//! are spoken as they come; `functionCall` parts arrive whole (`args` an object, never in
//! fragments) and become tool calls, several in one response being parallel calls; thought
//! parts (`"thought": true`) and parts of other kinds are kept to be sent back verbatim, never
//! spoken. A function call's `thoughtSignature` must go back with it, so it is kept beside the
//! call ([`CALL_KEY`]); a signature on a text part is dropped, as the text may be cut to what
//! the caller heard (Google requires signatures back on function calls only).
//!
//! `usageMetadata` is cumulative: the last one seen wins. There is no end event: the response
//! is complete once its candidate has a `finishReason`. `STOP` and `MAX_TOKENS` end it normally;
//! any other reason, and a prompt blocked by `promptFeedback.blockReason`, is
//! [`Error::Refused`].

use crate::Error;
use crate::driver::{Accumulate, RoundOutput, Step};
use crate::error::Refusal;
use crate::history::AssistantPart;
use serde_json::{Value, json};
use std::hash::{BuildHasher, Hasher};
use voxpipe_core::{ToolCall, Usage};

const PROVIDER: &str = "gemini";

/// The key of an opaque part holding a Gemini part sent back verbatim (thoughts, code…).
pub const PART_KEY: &str = "gemini_part";
/// The key of the opaque part kept just before each function call: `call_id`, the call's own
/// `id` when Gemini gave one (only then does it go back on the call and its response), and
/// its `thoughtSignature`, if any.
pub const CALL_KEY: &str = "gemini_call";

/// The state of one streamed response.
#[derive(Debug)]
pub struct GenerateAccumulator {
    parts: Vec<AssistantPart>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    calls: usize,
    /// Makes the ids given to calls Gemini sent without one unique across the call.
    nonce: u64,
}

impl Default for GenerateAccumulator {
    fn default() -> Self {
        let nonce = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Self { parts: Vec::new(), finish_reason: None, usage: None, calls: 0, nonce }
    }
}

fn bad(message: String) -> Error {
    Error::Provider { provider: PROVIDER, code: "invalid_event".into(), message }
}

/// A count that may arrive as a number or, as int64s do in proto3 JSON, a string.
fn count(v: &Value, key: &str) -> u64 {
    match v.get(key) {
        Some(Value::Number(n)) => n.as_u64().unwrap_or_default(),
        Some(Value::String(s)) => s.parse().unwrap_or_default(),
        _ => 0,
    }
}

/// The safety ratings that tripped (`blocked`, or `MEDIUM`/`HIGH` probability), as
/// `CATEGORY: PROBABILITY`, comma separated.
fn tripped(ratings: Option<&Value>) -> String {
    let Some(ratings) = ratings.and_then(Value::as_array) else { return String::new() };
    ratings
        .iter()
        .filter(|r| r["blocked"] == true || matches!(r["probability"].as_str(), Some("MEDIUM" | "HIGH")))
        .map(|r| {
            let category = r["category"].as_str().unwrap_or("?");
            format!("{category}: {}", r["probability"].as_str().unwrap_or("blocked"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl GenerateAccumulator {
    /// A fresh accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one event's data (a `GenerateContentResponse`); text fragments are pushed to
    /// `deltas`.
    ///
    /// # Errors
    /// [`Error::Refused`] for a blocked prompt or a finish reason other than `STOP` and
    /// `MAX_TOKENS` (the event's parts are not taken then); [`Error::Provider`] for an `error`
    /// object in the stream or data that is not a JSON object.
    pub fn push_data(&mut self, data: &str, deltas: &mut Vec<String>) -> Result<Step, Error> {
        let v: Value = serde_json::from_str(data).map_err(|e| {
            bad(format!("event data is not valid JSON ({e}): {}", crate::error::excerpt(data)))
        })?;
        if !v.is_object() {
            return Err(bad(format!("event data is not a JSON object: {}", crate::error::excerpt(data))));
        }
        if let Some(e) = v.get("error") {
            let code = e["status"].as_str().map_or_else(|| e["code"].to_string(), str::to_string);
            let message = e["message"].as_str().unwrap_or_default().to_string();
            return Err(Error::Provider { provider: PROVIDER, code, message });
        }
        if let Some(u) = v.get("usageMetadata") {
            self.usage = Some(Usage {
                input_tokens: count(u, "promptTokenCount")
                    .saturating_add(count(u, "toolUsePromptTokenCount")),
                output_tokens: count(u, "candidatesTokenCount")
                    .saturating_add(count(u, "thoughtsTokenCount")),
                cached_tokens: count(u, "cachedContentTokenCount"),
                ..Usage::default()
            });
        }
        if let Some(reason) = v.pointer("/promptFeedback/blockReason").and_then(Value::as_str) {
            return Err(Error::Refused {
                provider: PROVIDER,
                what: Refusal::PromptBlocked,
                reason: reason.to_string(),
                message: tripped(v.pointer("/promptFeedback/safetyRatings")),
            });
        }
        // One candidate is asked for; if several come, the first is the answer.
        let Some(candidate) = v
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0))
        else {
            // Usage-only chunks and fields added later.
            return Ok(Step::Continue);
        };
        let finish = candidate.get("finishReason").and_then(Value::as_str);
        if let Some(reason) = finish
            && !matches!(reason, "STOP" | "MAX_TOKENS")
        {
            let said = candidate["finishMessage"].as_str().unwrap_or_default().to_string();
            let ratings = tripped(candidate.get("safetyRatings"));
            let message = [said, ratings].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
            return Err(Error::Refused {
                provider: PROVIDER,
                what: Refusal::Stopped,
                reason: reason.to_string(),
                message: message.join("; "),
            });
        }
        let parts = candidate.pointer("/content/parts").and_then(Value::as_array);
        for part in parts.into_iter().flatten() {
            self.absorb(part, deltas);
        }
        if let Some(reason) = finish {
            self.finish_reason = Some(reason.to_string());
        }
        Ok(Step::Continue)
    }

    fn absorb(&mut self, part: &Value, deltas: &mut Vec<String>) {
        if part["thought"] == true {
            self.parts.push(AssistantPart::Opaque(json!({ PART_KEY: part })));
        } else if let Some(fc) = part.get("functionCall") {
            let name = fc["name"].as_str().unwrap_or_default().to_string();
            let args = match fc.get("args") {
                Some(a) if !a.is_null() => a.clone(),
                _ => json!({}),
            };
            let id = fc["id"].as_str().filter(|id| !id.is_empty());
            let call_id =
                id.map_or_else(|| format!("gemini_{:016x}_{}", self.nonce, self.calls), str::to_string);
            self.calls += 1;
            let mut sidecar = json!({"call_id": call_id});
            if let Some(id) = id {
                sidecar["id"] = json!(id);
            }
            if let Some(sig) = part.get("thoughtSignature").and_then(Value::as_str) {
                sidecar["thoughtSignature"] = json!(sig);
            }
            self.parts.push(AssistantPart::Opaque(json!({ CALL_KEY: sidecar })));
            let input = if args.is_object() { args.clone() } else { json!({}) };
            let call = ToolCall { call_id, name, arguments: args.to_string() };
            self.parts.push(AssistantPart::ToolUse { call, input });
        } else if let Some(t) = part.get("text").and_then(Value::as_str) {
            if t.is_empty() {
                return;
            }
            deltas.push(t.to_string());
            match self.parts.last_mut() {
                Some(AssistantPart::Text(text)) => text.push_str(t),
                _ => self.parts.push(AssistantPart::Text(t.to_string())),
            }
        } else {
            // inlineData, executableCode… and part kinds added later: sent back as they came.
            self.parts.push(AssistantPart::Opaque(json!({ PART_KEY: part })));
        }
    }

    /// The parts so far, in order.
    pub fn parts(&self) -> &[AssistantPart] {
        &self.parts
    }

    /// `finishReason` once seen (`STOP`, `MAX_TOKENS`).
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }

    /// Usage from the last `usageMetadata`: input counts tool-use prompt tokens, output counts
    /// thinking tokens (both billed as such).
    pub fn usage(&self) -> Option<Usage> {
        self.usage.clone()
    }

    /// The text spoken so far.
    pub fn text(&self) -> String {
        crate::history::text_of(&self.parts)
    }

    /// The accumulated response; the stop reason is the finish reason in lower case (`stop`,
    /// `max_tokens`).
    pub fn into_round(self) -> RoundOutput {
        RoundOutput {
            parts: self.parts,
            usage: self.usage,
            stop_reason: self.finish_reason.map(|r| r.to_ascii_lowercase()),
        }
    }
}

impl Accumulate for GenerateAccumulator {
    fn feed(&mut self, event: &crate::sse::Event, deltas: &mut Vec<String>) -> Result<Step, Error> {
        self.push_data(&event.data, deltas)
    }
    fn is_complete(&self) -> bool {
        self.finish_reason.is_some()
    }
    fn partial_text(&self) -> String {
        self.text()
    }
    fn finish(self) -> RoundOutput {
        self.into_round()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays a recorded stream through the SSE parser as the stage reads it (a last event
    /// without its blank line counts).
    fn replay(sse: &str) -> (GenerateAccumulator, Vec<String>, Result<(), Error>) {
        let mut parser = crate::sse::Parser::new();
        let mut events = Vec::new();
        parser.push(sse.as_bytes(), &mut events).unwrap();
        parser.finish(&mut events);
        let mut acc = GenerateAccumulator::new();
        let mut deltas = Vec::new();
        for e in &events {
            if let Err(e) = acc.push_data(&e.data, &mut deltas) {
                return (acc, deltas, Err(e));
            }
        }
        (acc, deltas, Ok(()))
    }

    fn calls(parts: &[AssistantPart]) -> Vec<(&ToolCall, &Value)> {
        parts
            .iter()
            .filter_map(|p| match p {
                AssistantPart::ToolUse { call, input } => Some((call, input)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_text_stream_speaks_each_chunk_and_takes_the_last_usage() {
        let (acc, deltas, r) =
            replay(include_str!("../../fixtures/gemini/googleai-streaming-success-basic-reply-short.sse"));
        r.unwrap();
        assert_eq!(deltas, ["The", " capital of Wyoming", " is **Cheyenne**.\n"]);
        assert!(acc.is_complete());
        let usage = acc.usage().unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (7, 10));
        let out = acc.finish();
        assert_eq!(out.stop_reason.as_deref(), Some("stop"));
        assert_eq!(out.parts, [AssistantPart::Text("The capital of Wyoming is **Cheyenne**.\n".into())]);
    }

    #[test]
    fn a_last_event_without_its_blank_line_completes_the_response() {
        let sse = include_str!("../../fixtures/gemini/googleai-streaming-success-finish-message.sse");
        assert!(!sse.ends_with("\n\n"), "the recording ends its last event without a blank line");
        let (acc, deltas, r) = replay(sse);
        r.unwrap();
        assert_eq!(deltas.concat(), "Hello world!");
        assert_eq!(acc.finish_reason(), Some("STOP"));
        assert!(acc.usage().is_none(), "this recording has no usageMetadata");
    }

    #[test]
    fn thoughts_are_kept_unspoken_and_a_call_keeps_its_thought_signature() {
        let (acc, deltas, r) = replay(include_str!(
            "../../fixtures/gemini/googleai-streaming-success-thinking-function-call-thought-summary-signature.sse"
        ));
        r.unwrap();
        assert!(deltas.is_empty(), "thought summaries are never spoken: {deltas:?}");
        let usage = acc.usage().unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (38, 6 + 168), "thinking tokens are output");
        let out = acc.finish();
        assert_eq!(out.parts.len(), 4, "two thoughts, the call's signature, the call");
        assert!(matches!(&out.parts[0], AssistantPart::Opaque(v) if v[PART_KEY]["thought"] == true));
        let AssistantPart::Opaque(sidecar) = &out.parts[2] else { panic!("{:?}", out.parts[2]) };
        let c = calls(&out.parts);
        let (call, input) = c[0];
        assert_eq!((call.name.as_str(), call.arguments.as_str(), input), ("now", "{}", &json!({})));
        assert_eq!(sidecar[CALL_KEY]["call_id"], call.call_id.as_str());
        assert!(sidecar[CALL_KEY].get("id").is_none(), "Gemini gave the call no id");
        assert!(sidecar[CALL_KEY]["thoughtSignature"].as_str().unwrap().starts_with("CiIBVKhc7vB+"));
        assert_eq!(out.stop_reason.as_deref(), Some("stop"), "a call ends with STOP: no tool-call reason");
    }

    #[test]
    fn a_blocked_prompt_is_a_refusal_naming_the_reason_and_the_rating() {
        let (acc, deltas, r) = replay(include_str!(
            "../../fixtures/gemini/googleai-streaming-failure-prompt-blocked-safety.sse"
        ));
        let e = r.unwrap_err();
        assert!(
            matches!(&e, Error::Refused { what: Refusal::PromptBlocked, reason, .. } if reason == "SAFETY")
        );
        assert_eq!(e.to_string(), "gemini: the prompt was blocked (SAFETY): HARM_CATEGORY_HATE_SPEECH: HIGH");
        assert_eq!(e.code(), "prompt_blocked_safety");
        assert!(deltas.is_empty() && !acc.is_complete());
    }

    #[test]
    fn a_vertex_call_without_a_role_carries_its_args() {
        let (acc, _, r) =
            replay(include_str!("../../fixtures/gemini/vertexai-streaming-success-function-call-short.sse"));
        r.unwrap();
        let out = acc.finish();
        let c = calls(&out.parts);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0.name, "getTemperature");
        assert_eq!(c[0].1, &json!({"city": "San Jose"}));
    }

    #[test]
    fn parallel_calls_get_distinct_ids_in_order() {
        let body =
            include_str!("../../fixtures/gemini/vertexai-unary-success-function-call-parallel-calls.json");
        let mut acc = GenerateAccumulator::new();
        let compact = serde_json::from_str::<Value>(body).unwrap().to_string();
        acc.push_data(&compact, &mut Vec::new()).unwrap();
        let out = acc.finish();
        let c = calls(&out.parts);
        let args: Vec<&Value> = c.iter().map(|(_, a)| *a).collect();
        assert_eq!(args, [&json!({"x": 2, "y": 1}), &json!({"x": 4, "y": 3}), &json!({"x": 6, "y": 5})]);
        let mut ids: Vec<&str> = c.iter().map(|(call, _)| call.call_id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert!(ids[0].ends_with("_0") && ids[2].ends_with("_2"), "{ids:?}");
    }

    #[test]
    fn a_call_with_an_id_keeps_it_and_a_bad_finish_reason_is_a_refusal_without_its_chunk() {
        let mut acc = GenerateAccumulator::new();
        let mut d = Vec::new();
        let call = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"One moment."},{"functionCall":{"id":"fc_7","name":"get_weather","args":{"city":"Paris"}}}]}}]}"#;
        acc.push_data(call, &mut d).unwrap();
        let c = calls(acc.parts());
        assert_eq!(c[0].0.call_id, "fc_7");
        let stop = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":" never said"}]},"finishReason":"MALFORMED_FUNCTION_CALL","finishMessage":"Malformed function call: get_weather(city=)"}]}"#;
        let e = acc.push_data(stop, &mut d).unwrap_err();
        assert_eq!(e.code(), "finish_malformed_function_call");
        assert!(e.to_string().contains("Malformed function call: get_weather(city=)"), "{e}");
        assert_eq!(d, ["One moment."], "the refused chunk's text is not spoken");
        assert_eq!(acc.text(), "One moment.");
        let safety = r#"{"candidates":[{"finishReason":"SAFETY","safetyRatings":[{"category":"HARM_CATEGORY_HARASSMENT","probability":"MEDIUM","blocked":true}]}]}"#;
        let e = GenerateAccumulator::new().push_data(safety, &mut d).unwrap_err();
        assert_eq!(
            e.to_string(),
            "gemini: the response was stopped (SAFETY): HARM_CATEGORY_HARASSMENT: MEDIUM"
        );
    }

    #[test]
    fn max_tokens_ends_normally_and_unknown_fields_or_chunks_are_ignored() {
        let mut acc = GenerateAccumulator::new();
        let mut d = Vec::new();
        acc.push_data(r#"{"fakeUnknownField":{"x":1}}"#, &mut d).unwrap();
        acc.push_data(r#"{"candidates":[{"content":{"parts":[{"text":"Cut"}]},"finishReason":"MAX_TOKENS","newField":1}],"usageMetadata":{"promptTokenCount":"12","candidatesTokenCount":3}}"#, &mut d).unwrap();
        assert!(acc.is_complete());
        assert_eq!(acc.usage().unwrap().input_tokens, 12, "int counts may come as strings");
        assert_eq!(acc.finish().stop_reason.as_deref(), Some("max_tokens"));
    }

    #[test]
    fn an_error_object_or_non_json_data_is_a_provider_error() {
        let mut d = Vec::new();
        let e = GenerateAccumulator::new()
            .push_data(
                r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
                &mut d,
            )
            .unwrap_err();
        assert_eq!(e.code(), "UNAVAILABLE");
        assert!(e.to_string().contains("The model is overloaded."));
        let e = GenerateAccumulator::new().push_data("{\"candidates\": [", &mut d).unwrap_err();
        assert_eq!(e.code(), "invalid_event");
    }
}
