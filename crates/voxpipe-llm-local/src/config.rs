//! The `llm.local` stage's configuration.

use serde::{Deserialize, Serialize};

/// Configuration of an `llm.local` stage (`[[stages]] kind = "llm.local"`).
///
/// ```toml
/// [[stages]]
/// kind = "llm.local"
/// model = "smollm2-135m"          # catalog id or a path to any .gguf
/// instructions = "You are a friendly phone agent. Answer in one short sentence."
/// threads = 1
/// batch_threads = 2               # prompt processing; default: `threads`
/// context_tokens = 2048
/// max_tokens = 96
/// temperature = 0.7               # 0 = greedy
/// top_p = 0.95
/// seed = 1234
/// stop = ["\nUser:"]
/// tools = false
/// restarts = 2                    # new workers after crashes, per call
/// worker = "target/release/voxpipe-llm-worker"   # default: beside the voxpipe binary
///
/// # Few-shot examples: exchanges shown to the model before the call's own, in order.
/// [[stages.examples]]
/// user = "Where is order A-2001?"
/// tool_call = { name = "get_order_status", arguments = { order_id = "A-2001" } }
/// tool_result = "Order A-2001 is in transit."
/// assistant = "Your order is in transit."
///
/// [[stages.examples]]
/// user = "When are you open?"
/// assistant = "Every day from nine to five."
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalLlmConfig {
    /// A model id of the `voxpipe models` catalog (pulled on first use) or a path to a GGUF file.
    /// Default: `smollm2-135m`.
    #[serde(default = "defaults::model")]
    pub model: String,
    /// System prompt. Default: none.
    #[serde(default)]
    pub instructions: String,
    /// CPU threads of the worker for generation and prompt processing. Default: 1. llama.cpp's
    /// OpenMP threads spin while waiting, so on an oversubscribed machine (ASR and TTS busy on
    /// the same cores, as on a 2-core box) 1 can be ten times faster than 2: measure with
    /// `cargo bench -p voxpipe-llm-worker`.
    #[serde(default = "defaults::threads")]
    pub threads: u32,
    /// CPU threads for evaluating prompts (many tokens at once, between the caller's end of
    /// turn and the first token). Default: `threads`. While the prompt is evaluated the ASR
    /// has finished and the voice has not started, so 2 can pay off where 2 threads for
    /// generation do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_threads: Option<u32>,
    /// Context window in tokens (prompt, history and reply together). Older turns are dropped
    /// when the conversation outgrows it. Default: 2048.
    #[serde(default = "defaults::context_tokens")]
    pub context_tokens: u32,
    /// Cap on generated tokens per reply (per tool round). Default: 96.
    #[serde(default = "defaults::max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature; 0 means greedy decoding. Default: 0.7.
    #[serde(default = "defaults::temperature")]
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this, 0 to 1
    /// (1 disables it). Ignored when `temperature` is 0. Default: 0.95.
    #[serde(default = "defaults::top_p")]
    pub top_p: f32,
    /// Seed of the sampler, reset at each reply so a conversation is reproducible. Default: 1234.
    #[serde(default = "defaults::seed")]
    pub seed: u32,
    /// Extra strings that end a reply when generated (they are not spoken). The model's own
    /// end-of-turn token always ends it. Default: none.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Offer the call's tools to the model with the `<tool_call>` prompt convention (see the
    /// crate docs). Small models call tools unreliably, so this is off by default. Default:
    /// false.
    #[serde(default)]
    pub tools: bool,
    /// Few-shot examples: exchanges placed after the system prompt and before the call's own
    /// turns, which small models follow far better than instructions (SmolLM2-135M calls a
    /// tool only after seeing examples of it). They are evaluated once when the call starts.
    /// Examples with a `tool_call` are left out when `tools` is false. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Example>,
    /// Model requests with tools per user turn before a last one without. Default: 2.
    #[serde(default = "defaults::max_tool_rounds")]
    pub max_tool_rounds: u32,
    /// How many times a call may replace a worker that crashed (killed, out of memory, a bug in
    /// llama.cpp). The new worker gets the whole conversation; a reply that had not started is
    /// asked again, one cut short ends `failed`. When none are left the call ends with the
    /// crash. Default: 2.
    #[serde(default = "defaults::restarts")]
    pub restarts: u32,
    /// Path of the `voxpipe-llm-worker` program that runs llama.cpp. Default: the
    /// `VOXPIPE_LLM_WORKER` environment variable, else the file of that name beside the
    /// running executable (where `cargo build --release -p voxpipe-llm-worker` puts it, next to
    /// `voxpipe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<std::path::PathBuf>,
}

/// One few-shot exchange (`[[stages.examples]]`): what the user says, and either the answer,
/// or a tool call with its result and the answer after it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// What the user says.
    pub user: String,
    /// The model's tool call in answer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<ExampleToolCall>,
    /// The tool's output (requires `tool_call`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_result: Option<String>,
    /// The spoken answer: to the user directly, or after the tool result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<String>,
}

/// A tool call in an [`Example`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleToolCall {
    /// The tool's name (one of the pipeline's tools).
    pub name: String,
    /// Its arguments, a JSON object. Default: `{}`.
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl Default for LocalLlmConfig {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every field has a default")
    }
}

mod defaults {
    pub fn model() -> String {
        "smollm2-135m".into()
    }
    pub fn threads() -> u32 {
        1
    }
    pub fn context_tokens() -> u32 {
        2048
    }
    pub fn max_tokens() -> u32 {
        96
    }
    pub fn temperature() -> f32 {
        0.7
    }
    pub fn top_p() -> f32 {
        0.95
    }
    pub fn seed() -> u32 {
        1234
    }
    pub fn max_tool_rounds() -> u32 {
        2
    }
    pub fn restarts() -> u32 {
        2
    }
}

impl LocalLlmConfig {
    /// Checks value ranges.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming the field.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |message: String| Err(crate::Error::Config { message });
        if self.model.trim().is_empty() {
            return bad("`model` is empty: give a catalog id such as `smollm2-135m` or a .gguf path".into());
        }
        if self.threads == 0 {
            return bad("`threads` must be at least 1".into());
        }
        if self.context_tokens < 64 {
            return bad(format!("`context_tokens` = {} is too small (at least 64)", self.context_tokens));
        }
        if self.max_tokens == 0 || self.max_tokens >= self.context_tokens {
            return bad(format!(
                "`max_tokens` = {} must be between 1 and `context_tokens` - 1 ({})",
                self.max_tokens,
                self.context_tokens - 1
            ));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return bad(format!("`temperature` = {} must be between 0 and 2", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("`top_p` = {} must be in (0, 1]", self.top_p));
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("`stop` contains an empty string".into());
        }
        if self.batch_threads == Some(0) {
            return bad("`batch_threads` must be at least 1".into());
        }
        for (i, e) in self.examples.iter().enumerate() {
            let at = format!("`examples[{i}]`");
            if e.user.trim().is_empty() {
                return bad(format!("{at}.user is empty"));
            }
            match &e.tool_call {
                None if e.tool_result.is_some() => {
                    return bad(format!("{at} has a `tool_result` without a `tool_call`"));
                }
                None if e.assistant.as_deref().is_none_or(|a| a.trim().is_empty()) => {
                    return bad(format!("{at} needs an `assistant` answer or a `tool_call`"));
                }
                Some(call) if call.name.trim().is_empty() => {
                    return bad(format!("{at}.tool_call.name is empty"));
                }
                Some(call) if !call.arguments.is_object() => {
                    return bad(format!("{at}.tool_call.arguments must be a table (a JSON object)"));
                }
                Some(_) if e.assistant.is_some() && e.tool_result.is_none() => {
                    return bad(format!(
                        "{at} has an `assistant` answer after a `tool_call` but no `tool_result`"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The first example (index, tool name) whose tool call names none of `known`, when tools
    /// are on.
    pub fn unknown_example_tool<'a>(&'a self, known: &[&str]) -> Option<(usize, &'a str)> {
        if !self.tools {
            return None;
        }
        self.examples.iter().enumerate().find_map(|(i, e)| {
            let name = e.tool_call.as_ref()?.name.as_str();
            (!known.contains(&name)).then_some((i, name))
        })
    }

    /// The generation settings the worker is loaded with.
    pub fn settings(&self) -> crate::protocol::Settings {
        crate::protocol::Settings {
            threads: self.threads,
            batch_threads: self.batch_threads,
            context_tokens: self.context_tokens,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            stop: self.stop.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let c = LocalLlmConfig::default();
        assert_eq!(c.model, "smollm2-135m");
        assert_eq!((c.threads, c.context_tokens, c.max_tokens, c.seed), (1, 2048, 96, 1234));
        assert_eq!(c.temperature, 0.7);
        assert!(!c.tools);
        assert_eq!(c.worker, None);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_ranges_are_rejected() {
        let err = serde_json::from_str::<LocalLlmConfig>(r#"{"kind": "llm.local"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `kind`"), "{err}");
        let c: LocalLlmConfig = serde_json::from_str(r#"{"max_tokens": 4096}"#).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("max_tokens"));
        let c: LocalLlmConfig = serde_json::from_str(r#"{"temperature": 3.0}"#).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("temperature"));
    }

    #[test]
    fn examples_parse_and_malformed_ones_are_named() {
        let c: LocalLlmConfig = serde_json::from_value(serde_json::json!({"examples": [
            {"user": "Where is A-1?", "tool_call": {"name": "status", "arguments": {"id": "A-1"}},
             "tool_result": "In transit.", "assistant": "It is on its way."},
            {"user": "Open?", "assistant": "Nine to five."},
            {"user": "Bye.", "tool_call": {"name": "end_call"}},
        ]}))
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.examples[2].tool_call.as_ref().unwrap().arguments, serde_json::json!({}));
        let bad = |examples: serde_json::Value| {
            let c: LocalLlmConfig =
                serde_json::from_value(serde_json::json!({"examples": examples})).unwrap();
            c.validate().unwrap_err().to_string()
        };
        let e = bad(serde_json::json!([{"user": "a", "assistant": "b"}, {"user": "hi"}]));
        assert!(e.contains("`examples[1]` needs an `assistant` answer or a `tool_call`"), "{e}");
        let e = bad(serde_json::json!([{"user": "hi", "assistant": "x", "tool_result": "r"}]));
        assert!(e.contains("`tool_result` without a `tool_call`"), "{e}");
        let e = bad(serde_json::json!([{"user": "hi", "tool_call": {"name": "t", "arguments": [1]}}]));
        assert!(e.contains("arguments must be a table"), "{e}");
        let e = bad(serde_json::json!([{"user": "hi", "tool_call": {"name": "t"}, "assistant": "a"}]));
        assert!(e.contains("no `tool_result`"), "{e}");
        let err = serde_json::from_value::<LocalLlmConfig>(
            serde_json::json!({"examples": [{"user": "a", "answer": "b"}]}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `answer`"), "{err}");
    }

    #[test]
    fn example_tool_names_are_checked_only_with_tools_on() {
        let mut c: LocalLlmConfig = serde_json::from_value(serde_json::json!({"examples": [
            {"user": "Open?", "assistant": "Nine to five."},
            {"user": "Bye.", "tool_call": {"name": "end_call"}},
        ]}))
        .unwrap();
        assert_eq!(c.unknown_example_tool(&["status"]), None, "tools are off");
        c.tools = true;
        assert_eq!(c.unknown_example_tool(&["status"]), Some((1, "end_call")));
        assert_eq!(c.unknown_example_tool(&["end_call"]), None);
    }
}
