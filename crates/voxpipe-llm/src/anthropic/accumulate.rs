//! Accumulates an Anthropic Messages SSE stream (PROTOCOLS.md §6) into text fragments, content
//! blocks and usage. Pure: no I/O, fed one event at a time.
//!
//! Blocks are kept by `index`. A `tool_use` block ignores its placeholder `input:{}`,
//! concatenates its `partial_json` fragments and parses them at `content_block_stop` (empty
//! means `{}`). `message_delta.usage.output_tokens` is cumulative, so it replaces, never adds.

use crate::Error;
use crate::driver::{Accumulate, RoundOutput, Step};
use crate::history::AssistantPart;
use serde_json::Value;
use std::collections::BTreeMap;
use voxpipe_core::{ToolCall, Usage};

const PROVIDER: &str = "anthropic";

/// One content block being assembled.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// A `text` block.
    Text(String),
    /// A `tool_use` block.
    ToolUse {
        /// `toolu_…`.
        id: String,
        /// Tool name.
        name: String,
        /// Concatenated `partial_json` fragments.
        json: String,
        /// The parsed input, set at `content_block_stop`.
        input: Option<Value>,
    },
    /// Any other block (`thinking`, …), kept verbatim with its known deltas applied.
    Other(Value),
}

/// The state of one streamed message.
#[derive(Debug, Default)]
pub struct MessageAccumulator {
    blocks: BTreeMap<u64, Block>,
    stop_reason: Option<String>,
    input_tokens: u64,
    cache_read_tokens: u64,
    cache_creation_tokens: u64,
    output_tokens: u64,
    saw_usage: bool,
    stopped: bool,
}

fn bad(message: String) -> Error {
    Error::Provider { provider: PROVIDER, code: "invalid_event".into(), message }
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

impl MessageAccumulator {
    /// A fresh accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one event's `data:` JSON (its `type` repeats the `event:` name); text fragments
    /// are pushed to `deltas`.
    ///
    /// # Errors
    /// [`Error::Provider`] for an `error` event or data that is not JSON.
    pub fn push_data(&mut self, data: &str, deltas: &mut Vec<String>) -> Result<Step, Error> {
        let v: Value = serde_json::from_str(data).map_err(|e| {
            bad(format!("event data is not valid JSON ({e}): {}", crate::error::excerpt(data)))
        })?;
        match str_field(&v, "type") {
            "message_start" => self.absorb_usage(v.pointer("/message/usage")),
            "content_block_start" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or_default();
                let block = v.get("content_block").cloned().unwrap_or(Value::Null);
                let block = match str_field(&block, "type") {
                    "text" => Block::Text(str_field(&block, "text").to_string()),
                    "tool_use" => Block::ToolUse {
                        id: str_field(&block, "id").to_string(),
                        name: str_field(&block, "name").to_string(),
                        json: String::new(),
                        input: None,
                    },
                    _ => Block::Other(block),
                };
                if let Block::Text(t) = &block
                    && !t.is_empty()
                {
                    deltas.push(t.clone());
                }
                self.blocks.insert(index, block);
            }
            "content_block_delta" => self.apply_delta(&v, deltas)?,
            "content_block_stop" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or_default();
                if let Some(Block::ToolUse { json, input, .. }) = self.blocks.get_mut(&index) {
                    *input = Some(crate::openai::accumulate::parse_arguments(json));
                }
            }
            "message_delta" => {
                if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_string());
                }
                self.absorb_usage(v.get("usage"));
            }
            "message_stop" => {
                self.stopped = true;
                return Ok(Step::Done);
            }
            "error" => {
                return Err(Error::Provider {
                    provider: PROVIDER,
                    code: v.pointer("/error/type").and_then(Value::as_str).unwrap_or("error").to_string(),
                    message: v
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                });
            }
            // `ping` and event types added later.
            _ => {}
        }
        Ok(Step::Continue)
    }

    fn apply_delta(&mut self, v: &Value, deltas: &mut Vec<String>) -> Result<(), Error> {
        let index = v.get("index").and_then(Value::as_u64).unwrap_or_default();
        let delta = v.get("delta").unwrap_or(&Value::Null);
        let Some(block) = self.blocks.get_mut(&index) else {
            return Err(bad(format!("content_block_delta for block {index}, which was never started")));
        };
        match (str_field(delta, "type"), block) {
            ("text_delta", Block::Text(text)) => {
                let t = str_field(delta, "text");
                if !t.is_empty() {
                    text.push_str(t);
                    deltas.push(t.to_string());
                }
            }
            ("input_json_delta", Block::ToolUse { json, .. }) => {
                json.push_str(str_field(delta, "partial_json"))
            }
            ("thinking_delta", Block::Other(b)) => append(b, "thinking", str_field(delta, "thinking")),
            ("signature_delta", Block::Other(b)) => append(b, "signature", str_field(delta, "signature")),
            _ => {}
        }
        Ok(())
    }

    /// Usage fields are absolute values: `message_delta`'s are cumulative, so each replaces
    /// the last one seen.
    fn absorb_usage(&mut self, usage: Option<&Value>) {
        let Some(u) = usage else { return };
        let get = |k: &str| u.get(k).and_then(Value::as_u64);
        if let Some(n) = get("input_tokens") {
            self.input_tokens = n;
        }
        if let Some(n) = get("cache_read_input_tokens") {
            self.cache_read_tokens = n;
        }
        if let Some(n) = get("cache_creation_input_tokens") {
            self.cache_creation_tokens = n;
        }
        if let Some(n) = get("output_tokens") {
            self.output_tokens = n;
        }
        self.saw_usage = true;
    }

    /// The blocks so far, by index.
    pub fn blocks(&self) -> &BTreeMap<u64, Block> {
        &self.blocks
    }

    /// `stop_reason` from `message_delta`, once seen.
    pub fn stop_reason(&self) -> Option<&str> {
        self.stop_reason.as_deref()
    }

    /// Usage so far; input counts cache reads and writes, which Anthropic reports apart (the
    /// sum saturates: the counts are the server's, and a broken one must not panic the stage).
    pub fn usage(&self) -> Option<Usage> {
        self.saw_usage.then(|| Usage {
            input_tokens: self
                .input_tokens
                .saturating_add(self.cache_read_tokens)
                .saturating_add(self.cache_creation_tokens),
            output_tokens: self.output_tokens,
            cached_tokens: self.cache_read_tokens,
            ..Usage::default()
        })
    }

    /// All text blocks so far, concatenated.
    pub fn text(&self) -> String {
        self.blocks
            .values()
            .filter_map(|b| match b {
                Block::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }
}

fn append(block: &mut Value, key: &str, fragment: &str) {
    if let Some(obj) = block.as_object_mut() {
        let prev = obj.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        obj.insert(key.to_string(), Value::String(prev + fragment));
    }
}

impl Accumulate for MessageAccumulator {
    fn feed(&mut self, event: &crate::sse::Event, deltas: &mut Vec<String>) -> Result<Step, Error> {
        self.push_data(&event.data, deltas)
    }
    fn is_complete(&self) -> bool {
        self.stopped
    }
    fn partial_text(&self) -> String {
        self.text()
    }
    fn finish(self) -> RoundOutput {
        self.into_round()
    }
}

impl MessageAccumulator {
    /// The accumulated response: every block, in index order.
    pub fn into_round(self) -> RoundOutput {
        let usage = self.usage();
        let parts = self
            .blocks
            .into_values()
            .map(|b| match b {
                Block::Text(t) => AssistantPart::Text(t),
                Block::ToolUse { id, name, json, input } => {
                    let input = input.unwrap_or_else(|| crate::openai::accumulate::parse_arguments(&json));
                    let arguments = if json.trim().is_empty() { "{}".to_string() } else { json };
                    AssistantPart::ToolUse { call: ToolCall { call_id: id, name, arguments }, input }
                }
                Block::Other(v) => AssistantPart::Opaque(v),
            })
            .collect();
        RoundOutput { parts, usage, stop_reason: self.stop_reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(sse: &str) -> (MessageAccumulator, Vec<String>, Vec<Step>) {
        let mut acc = MessageAccumulator::new();
        let mut deltas = Vec::new();
        let mut steps = Vec::new();
        let mut event = None;
        for line in sse.lines() {
            if let Some(name) = line.strip_prefix("event: ") {
                event = Some(name.to_string());
            } else if let Some(data) = line.strip_prefix("data: ") {
                let v: Value = serde_json::from_str(data).unwrap();
                assert_eq!(Some(str_field(&v, "type")), event.as_deref(), "data type repeats the event name");
                steps.push(acc.push_data(data, &mut deltas).unwrap());
            }
        }
        (acc, deltas, steps)
    }

    #[test]
    fn text_fixture_streams_deltas_and_cumulative_usage() {
        let (acc, deltas, steps) = replay(include_str!("../../fixtures/anthropic/messages-stream-text.sse"));
        assert_eq!(deltas, ["Hello", " there", "!"]);
        assert_eq!(steps.last(), Some(&Step::Done));
        assert_eq!(acc.stop_reason(), Some("end_turn"));
        let usage = acc.usage().unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (11, 6), "6 replaces message_start's 1");
    }

    #[test]
    fn tool_use_fixture_parses_input_at_block_stop() {
        let (acc, deltas, _) =
            replay(include_str!("../../fixtures/anthropic/messages-stream-text-then-tool-use.sse"));
        assert_eq!(deltas.concat(), "I'll check the current weather in Paris for you.");
        assert_eq!(acc.stop_reason(), Some("tool_use"));
        assert_eq!((acc.usage().unwrap().input_tokens, acc.usage().unwrap().output_tokens), (377, 65));
        let out = acc.finish();
        assert_eq!(out.parts.len(), 2);
        let AssistantPart::ToolUse { call, input } = &out.parts[1] else { panic!("{:?}", out.parts) };
        assert_eq!(call.call_id, "toolu_01NRLabsLyVHZPKxbKvkfSMn");
        assert_eq!(call.name, "get_weather");
        assert_eq!(call.arguments, r#"{"location": "Paris"}"#);
        assert_eq!(input, &serde_json::json!({"location": "Paris"}));
    }

    #[test]
    fn an_empty_tool_input_means_an_empty_object() {
        let mut acc = MessageAccumulator::new();
        let mut d = Vec::new();
        acc.push_data(r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"hang_up","input":{}}}"#, &mut d).unwrap();
        acc.push_data(r#"{"type":"content_block_stop","index":0}"#, &mut d).unwrap();
        let Block::ToolUse { input, .. } = &acc.blocks()[&0] else { panic!() };
        assert_eq!(input, &Some(serde_json::json!({})));
    }

    #[test]
    fn an_error_event_is_a_provider_error_and_unknown_events_are_ignored() {
        let mut acc = MessageAccumulator::new();
        let mut d = Vec::new();
        assert_eq!(acc.push_data(r#"{"type":"brand_new_event","x":1}"#, &mut d).unwrap(), Step::Continue);
        let err = acc
            .push_data(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                &mut d,
            )
            .unwrap_err();
        assert_eq!(err.code(), "overloaded_error");
        assert!(err.to_string().contains("Overloaded"));
    }
}
