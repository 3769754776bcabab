//! Accumulates a Chat Completions SSE stream (PROTOCOLS.md §2) into text fragments, tool calls
//! and usage. Pure: no I/O, fed one `data:` payload at a time.
//!
//! Tool-call fragments are keyed by `(choice.index, tool_call.index)`: `id`, `type` and
//! `function.name` are set once, `function.arguments` is appended, and nothing is parsed before
//! the choice's `finish_reason` (or `[DONE]`).

use crate::Error;
use crate::driver::{Accumulate, RoundOutput, Step};
use crate::history::AssistantPart;
use serde::Deserialize;
use std::collections::BTreeMap;
use voxpipe_core::{ToolCall, Usage};

const PROVIDER: &str = "openai";

/// One tool call being assembled from fragments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartialCall {
    /// `call_…`, from the first fragment.
    pub id: Option<String>,
    /// `function`, from the first fragment.
    pub kind: Option<String>,
    /// Function name, from the first fragment.
    pub name: Option<String>,
    /// Concatenated `function.arguments` fragments.
    pub arguments: String,
}

/// The state of one streamed chat completion.
#[derive(Debug, Default)]
pub struct ChatAccumulator {
    text: String,
    calls: BTreeMap<(u32, u32), PartialCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    done: bool,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallChunk>>,
}

#[derive(Deserialize)]
struct ToolCallChunk {
    /// Some OpenAI-compatible servers omit it; see [`ChatAccumulator::key_for`].
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    function: Option<FunctionChunk>,
}

#[derive(Deserialize)]
struct FunctionChunk {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

impl ChatAccumulator {
    /// A fresh accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one `data:` payload (a chunk's JSON, or `[DONE]`); text fragments of choice 0 are
    /// pushed to `deltas`.
    ///
    /// # Errors
    /// [`Error::Provider`] for an `error` object in the stream or a payload that is not JSON.
    pub fn push_data(&mut self, data: &str, deltas: &mut Vec<String>) -> Result<Step, Error> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Step::Done);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| Error::Provider {
            provider: PROVIDER,
            code: "invalid_chunk".into(),
            message: format!("chunk is not valid JSON ({e}): {}", crate::error::excerpt(data)),
        })?;
        if let Some(err) = chunk.error {
            let code = match err.code {
                Some(serde_json::Value::String(s)) => s,
                Some(v) if !v.is_null() => v.to_string(),
                _ => err.kind.unwrap_or_else(|| "error".into()),
            };
            return Err(Error::Provider {
                provider: PROVIDER,
                code,
                message: err.message.unwrap_or_default(),
            });
        }
        if let Some(u) = chunk.usage {
            let cached = u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0);
            self.usage = Some(Usage {
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
                cached_tokens: cached,
                ..Usage::default()
            });
        }
        for choice in chunk.choices {
            let delta = choice.delta.unwrap_or_default();
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                // One reply is spoken: only choice 0 (the only one unless `n` > 1).
                if choice.index == 0 {
                    self.text.push_str(&text);
                    deltas.push(text);
                }
            }
            for fragment in delta.tool_calls.unwrap_or_default() {
                let key = self.key_for(choice.index, &fragment);
                let call = self.calls.entry(key).or_default();
                if let Some(id) = fragment.id.filter(|s| !s.is_empty()) {
                    call.id.get_or_insert(id);
                }
                if let Some(kind) = fragment.kind {
                    call.kind.get_or_insert(kind);
                }
                if let Some(f) = fragment.function {
                    if let Some(name) = f.name.filter(|s| !s.is_empty()) {
                        call.name.get_or_insert(name);
                    }
                    if let Some(args) = f.arguments {
                        call.arguments.push_str(&args);
                    }
                }
            }
            if choice.index == 0 && choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        Ok(Step::Continue)
    }

    /// The map key of a fragment: its `index`, or, for servers that omit it, a new index when
    /// the fragment opens a call (has an `id`) and the last one otherwise.
    fn key_for(&self, choice: u32, fragment: &ToolCallChunk) -> (u32, u32) {
        if let Some(i) = fragment.index {
            return (choice, i);
        }
        let last = self.calls.range((choice, 0)..=(choice, u32::MAX)).next_back().map(|(k, _)| k.1);
        match (last, &fragment.id) {
            (None, _) => (choice, 0),
            // Saturating: after a (hostile) index u32::MAX the fragment joins that call.
            (Some(i), Some(_)) => (choice, i.saturating_add(1)),
            (Some(i), None) => (choice, i),
        }
    }

    /// Text of choice 0 so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The calls assembled so far, keyed by `(choice index, tool_call index)`.
    pub fn calls(&self) -> &BTreeMap<(u32, u32), PartialCall> {
        &self.calls
    }

    /// Choice 0's `finish_reason`, once seen.
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }

    /// Usage from the `include_usage` chunk, once seen.
    pub fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    /// True once `finish_reason` or `[DONE]` arrived: tool arguments are complete.
    pub fn is_complete(&self) -> bool {
        self.finish_reason.is_some() || self.done
    }

    /// The tool calls of choice 0 with their arguments parsed, in index order. Only
    /// meaningful once [`is_complete`](Self::is_complete).
    pub fn tool_calls(&self) -> Vec<(ToolCall, serde_json::Value)> {
        self.calls
            .range((0, 0)..=(0, u32::MAX))
            .map(|(&(_, index), c)| {
                let call = ToolCall {
                    call_id: c.id.clone().unwrap_or_else(|| format!("call_{index}")),
                    name: c.name.clone().unwrap_or_default(),
                    arguments: c.arguments.clone(),
                };
                let input = parse_arguments(&c.arguments);
                (call, input)
            })
            .collect()
    }
}

/// Parses accumulated arguments: empty means `{}`; malformed JSON is kept as `{}` in the
/// parsed form (the raw string still goes to the tool runtime, which reports it).
pub(crate) fn parse_arguments(raw: &str) -> serde_json::Value {
    if raw.trim().is_empty() {
        return serde_json::json!({});
    }
    serde_json::from_str(raw).unwrap_or_else(|_| serde_json::json!({}))
}

impl Accumulate for ChatAccumulator {
    fn feed(&mut self, event: &crate::sse::Event, deltas: &mut Vec<String>) -> Result<Step, Error> {
        self.push_data(&event.data, deltas)
    }
    fn is_complete(&self) -> bool {
        ChatAccumulator::is_complete(self)
    }
    fn partial_text(&self) -> String {
        self.text.clone()
    }
    fn finish(self) -> RoundOutput {
        self.into_round()
    }
}

impl ChatAccumulator {
    /// The accumulated response: choice 0's text, then its tool calls.
    pub fn into_round(self) -> RoundOutput {
        let mut parts = Vec::new();
        if !self.text.is_empty() {
            parts.push(AssistantPart::Text(self.text.clone()));
        }
        for (call, input) in self.tool_calls() {
            parts.push(AssistantPart::ToolUse { call, input });
        }
        RoundOutput { parts, usage: self.usage, stop_reason: self.finish_reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(sse: &str) -> (ChatAccumulator, Vec<String>) {
        let mut acc = ChatAccumulator::new();
        let mut deltas = Vec::new();
        for line in sse.lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                acc.push_data(data, &mut deltas).unwrap();
            }
        }
        (acc, deltas)
    }

    #[test]
    fn single_tool_call_fixture_concatenates_arguments() {
        let (acc, deltas) =
            replay(include_str!("../../fixtures/openai/chat-completions-stream-single-tool-call.sse"));
        assert!(deltas.is_empty(), "content is null throughout");
        assert_eq!(acc.finish_reason(), Some("tool_calls"));
        let calls = acc.tool_calls();
        assert_eq!(calls.len(), 1);
        let (call, input) = &calls[0];
        assert_eq!(call.call_id, "call_CTf1nWJLqSeRgDqaCG27xZ74");
        assert_eq!(call.name, "get_weather");
        assert_eq!(call.arguments, r#"{"city":"San Francisco","state":"CA"}"#);
        assert_eq!(input, &serde_json::json!({"city": "San Francisco", "state": "CA"}));
        assert_eq!(acc.calls()[&(0, 0)].kind.as_deref(), Some("function"));
        let usage = acc.usage().unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (48, 19));
    }

    #[test]
    fn parallel_tool_calls_fixture_is_keyed_by_index() {
        let (acc, _) =
            replay(include_str!("../../fixtures/openai/chat-completions-stream-parallel-tool-calls.sse"));
        let calls = acc.tool_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].0.call_id, "call_JMW1whyEaYG438VE1OIflxA2");
        assert_eq!(calls[0].0.name, "GetWeatherArgs");
        assert_eq!(calls[0].1, serde_json::json!({"city": "Edinburgh", "country": "GB", "units": "c"}));
        assert_eq!(calls[1].0.call_id, "call_DNYTawLBoN8fj3KN6qU9N1Ou");
        assert_eq!(calls[1].0.name, "get_stock_price");
        assert_eq!(calls[1].0.arguments, r#"{"ticker": "AAPL", "exchange": "NASDAQ"}"#);
        let usage = acc.usage().unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (149, 60));
        assert!(acc.is_complete());
    }

    #[test]
    fn interleaved_fragments_stay_with_their_index() {
        let mut acc = ChatAccumulator::new();
        let mut d = Vec::new();
        let chunks = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"a","arguments":""}},{"index":1,"id":"call_b","type":"function","function":{"name":"b","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"y"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":1}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\":2}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":null}"#,
        ];
        for c in chunks {
            acc.push_data(c, &mut d).unwrap();
        }
        let calls = acc.tool_calls();
        assert_eq!(calls[0].0.arguments, r#"{"x":1}"#);
        assert_eq!(calls[1].0.arguments, r#"{"y":2}"#);
        assert!(acc.usage().is_none());
    }

    #[test]
    fn text_fragments_are_emitted_in_order() {
        let mut acc = ChatAccumulator::new();
        let mut d = Vec::new();
        acc.push_data(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#, &mut d)
            .unwrap();
        acc.push_data(r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#, &mut d).unwrap();
        acc.push_data(r#"{"choices":[{"index":0,"delta":{"content":"lo"}}]}"#, &mut d).unwrap();
        assert!(!acc.is_complete());
        acc.push_data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#, &mut d).unwrap();
        assert_eq!(acc.push_data("[DONE]", &mut d).unwrap(), Step::Done);
        assert_eq!(d, ["Hel", "lo"]);
        assert_eq!(acc.text(), "Hello");
    }

    #[test]
    fn an_error_object_in_the_stream_is_a_provider_error() {
        let mut acc = ChatAccumulator::new();
        let err = acc
            .push_data(
                r#"{"error":{"message":"The server had an error","type":"server_error","code":null}}"#,
                &mut Vec::new(),
            )
            .unwrap_err();
        assert_eq!(err.code(), "server_error");
    }
}
