//! `llm.anthropic`: the Anthropic Messages API, streamed over SSE (PROTOCOLS.md §6).

pub mod accumulate;

use crate::Error;
use crate::driver::{Driver, Provider, Settings};
use crate::history::{AssistantPart, History, Message};
use crate::http::HttpConfig;
use crate::openai::defaults;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use voxpipe_core::{CallContext, Inbox, Outbox, Secret, Stage, StageError, ToolSpec};

/// Configuration of an `llm.anthropic` stage (`[[stages]] kind = "llm.anthropic"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnthropicConfig {
    /// Model name. Default: `claude-3-5-haiku-latest`.
    #[serde(default = "model")]
    pub model: String,
    /// API base URL, without `/messages`. Default: `https://api.anthropic.com/v1`.
    #[serde(default = "base_url")]
    pub base_url: String,
    /// Environment variable holding the API key, sent as `x-api-key`. Default:
    /// `ANTHROPIC_API_KEY`.
    #[serde(default = "api_key_env")]
    pub api_key_env: String,
    /// The `anthropic-version` header. Default: `2023-06-01`.
    #[serde(default = "anthropic_version")]
    pub anthropic_version: String,
    /// System prompt. Default: none.
    #[serde(default)]
    pub instructions: String,
    /// Cap on generated tokens per response (required by the API). Default: 1024.
    #[serde(default = "max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature, 0 to 1. Default: the provider's.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// `auto`, `any` (or `required`), `none`, or a tool name to force that tool. Default:
    /// `auto`.
    #[serde(default = "defaults::tool_choice")]
    pub tool_choice: String,
    /// Model requests with tools per user turn before a last request with `tool_choice`
    /// `none`. Default: 4.
    #[serde(default = "defaults::max_tool_rounds")]
    pub max_tool_rounds: u32,
    /// Retries and timeouts (`[stages.http]`). Default: see [`HttpConfig`].
    #[serde(default)]
    pub http: HttpConfig,
    /// Providers to move to when this one fails (`[[stages.fallback]]`, in order). Default:
    /// none.
    #[serde(default)]
    pub fallback: Vec<crate::FallbackConfig>,
    /// What the caller hears when the provider is slow or a turn fails
    /// (`[stages.spoken_fallback]`). Default: nothing.
    #[serde(default)]
    pub spoken_fallback: crate::SpokenFallback,
}

fn model() -> String {
    "claude-3-5-haiku-latest".into()
}
fn base_url() -> String {
    "https://api.anthropic.com/v1".into()
}
fn api_key_env() -> String {
    "ANTHROPIC_API_KEY".into()
}
fn anthropic_version() -> String {
    "2023-06-01".into()
}
fn max_tokens() -> u32 {
    1024
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        serde_json::from_value(json!({})).expect("every field has a default")
    }
}

/// The `llm.anthropic` stage. See the crate docs for its frames.
#[derive(Debug)]
pub struct Anthropic {
    driver: Driver,
}

#[derive(Debug)]
pub(crate) struct MessagesProvider {
    config: AnthropicConfig,
    api_key: Secret,
    url: String,
    settings: Settings,
}

impl Anthropic {
    /// Builds the stage with the value of `config.api_key_env`.
    ///
    /// # Errors
    /// [`Error::Config`] for a base URL that is not http(s) or a `max_tokens` of 0.
    pub fn new(config: AnthropicConfig, api_key: Secret) -> Result<Self, Error> {
        let url = crate::driver::endpoint(MessagesProvider::NAME, &config.base_url, "messages")?;
        if config.max_tokens == 0 {
            let message = "max_tokens must be at least 1".to_string();
            return Err(Error::Config { provider: MessagesProvider::NAME, message });
        }
        let settings =
            Settings::new("llm.anthropic", config.max_tool_rounds, &config.http, &config.spoken_fallback);
        let provider = MessagesProvider { config, api_key, url, settings };
        Ok(Self { driver: Driver::new(provider)? })
    }
}

impl Anthropic {
    /// Adds a fallback provider, tried after the ones added before it.
    pub fn with_fallback(mut self, fallback: crate::Fallback) -> Self {
        self.driver.push_fallback(fallback.0);
        self
    }

    pub(crate) fn into_backend(self) -> Box<dyn crate::driver::Backend> {
        self.driver.into_primary()
    }
}

#[async_trait]
impl Stage for Anthropic {
    fn name(&self) -> &str {
        "llm.anthropic"
    }
    async fn run(self: Box<Self>, ctx: CallContext, input: Inbox, out: Outbox) -> Result<(), StageError> {
        self.driver.run(ctx, input, out).await
    }
}

impl Provider for MessagesProvider {
    type Acc = accumulate::MessageAccumulator;
    const NAME: &'static str = "anthropic";

    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn body(&self, history: &History, tools: &[ToolSpec], tools_enabled: bool) -> Value {
        let c = &self.config;
        let mut body = json!({
            "model": c.model,
            "max_tokens": c.max_tokens,
            "stream": true,
            "messages": messages(history),
        });
        if !c.instructions.is_empty() {
            body["system"] = json!(c.instructions);
        }
        if let Some(t) = c.temperature {
            body["temperature"] = json!(t);
        }
        if !tools.is_empty() {
            // Tools stay defined even when disabled: a request whose history holds tool_use
            // blocks must define them.
            body["tools"] = tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
                .collect();
            body["tool_choice"] =
                if tools_enabled { tool_choice(&c.tool_choice) } else { json!({"type": "none"}) };
        }
        body
    }

    fn request(&self, client: &reqwest::Client, body: &Value) -> reqwest::RequestBuilder {
        client
            .post(&self.url)
            .header("x-api-key", self.api_key.expose())
            .header("anthropic-version", &self.config.anthropic_version)
            .json(body)
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    fn key_hint(&self) -> String {
        self.config.api_key_env.clone()
    }
}

/// `auto`, `any`/`required`, `none`, or a tool name to force.
fn tool_choice(choice: &str) -> Value {
    match choice {
        "auto" | "any" | "none" => json!({"type": choice}),
        "required" => json!({"type": "any"}),
        name => json!({"type": "tool", "name": name}),
    }
}

/// The Messages `messages` array for `history`. Assistant turns are echoed with all their
/// blocks (`tool_use.input` as an object); tool results become a user message that starts with
/// the `tool_result` blocks, and consecutive user messages are merged into one.
pub fn messages(history: &History) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(history.messages().len());
    for m in history.messages() {
        let (role, blocks) = match m {
            Message::User(text) => ("user", vec![json!({"type": "text", "text": text})]),
            Message::Assistant(parts) => ("assistant", parts.iter().filter_map(block_of).collect()),
            Message::ToolResults(results) => {
                let blocks = results
                    .iter()
                    .map(|r| {
                        json!({"type": "tool_result", "tool_use_id": r.call_id, "content": r.output,
                            "is_error": r.is_error})
                    })
                    .collect();
                ("user", blocks)
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(prev) if prev["role"] == role => {
                let content = prev["content"].as_array_mut().expect("content is always an array here");
                content.extend(blocks);
            }
            _ => out.push(json!({"role": role, "content": blocks})),
        }
    }
    out
}

/// The content block of `part`; `None` for another provider's opaque part (a Gemini part kept
/// in history before a failover): only blocks with a `type` are Anthropic's.
fn block_of(part: &AssistantPart) -> Option<Value> {
    Some(match part {
        AssistantPart::Text(t) => json!({"type": "text", "text": t}),
        AssistantPart::ToolUse { call, input } => {
            json!({"type": "tool_use", "id": call.call_id, "name": call.name, "input": input})
        }
        AssistantPart::Opaque(v) if v.get("type").is_some_and(Value::is_string) => v.clone(),
        AssistantPart::Opaque(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxpipe_core::{ToolCall, ToolResult};

    #[test]
    fn tool_round_trip_renders_in_the_messages_shape() {
        let mut h = History::new();
        h.push_user("Weather in Paris?");
        let call = ToolCall {
            call_id: "toolu_1".into(),
            name: "get_weather".into(),
            arguments: "{\"location\":\"Paris\"}".into(),
        };
        h.push_assistant(vec![
            AssistantPart::Text("Let me check.".into()),
            AssistantPart::ToolUse { call, input: json!({"location": "Paris"}) },
        ]);
        h.push_tool_results(vec![ToolResult {
            call_id: "toolu_1".into(),
            name: "get_weather".into(),
            output: "{\"error\":\"down\"}".into(),
            is_error: true,
            duration: std::time::Duration::ZERO,
            action: None,
        }]);
        h.push_user("Hello?");
        let m = messages(&h);
        assert_eq!(m.len(), 3, "tool results and the next user text merge: {m:?}");
        assert_eq!(
            m[1]["content"][1],
            json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}})
        );
        assert_eq!(
            m[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "{\"error\":\"down\"}", "is_error": true})
        );
        assert_eq!(m[2]["content"][1], json!({"type": "text", "text": "Hello?"}));
    }

    #[test]
    fn another_providers_opaque_parts_are_not_sent() {
        let mut h = History::new();
        h.push_user("Hi");
        h.push_assistant(vec![
            AssistantPart::Opaque(json!({"gemini_part": {"text": "thinking", "thought": true}})),
            AssistantPart::Opaque(json!({"type": "thinking", "thinking": "hm", "signature": "s"})),
            AssistantPart::Text("Hello.".into()),
        ]);
        h.push_user("Bye");
        h.push_assistant(vec![AssistantPart::Opaque(json!({"gemini_part": {"text": "x", "thought": true}}))]);
        let m = messages(&h);
        assert_eq!(m.len(), 3, "an assistant turn with nothing of Anthropic's is left out: {m:?}");
        assert_eq!(m[1]["content"].as_array().unwrap().len(), 2);
        assert_eq!(m[1]["content"][0]["type"], "thinking");
    }

    #[test]
    fn tool_choice_maps_to_the_messages_shape() {
        assert_eq!(tool_choice("auto"), json!({"type": "auto"}));
        assert_eq!(tool_choice("required"), json!({"type": "any"}));
        assert_eq!(tool_choice("get_weather"), json!({"type": "tool", "name": "get_weather"}));
    }

    #[test]
    fn config_defaults() {
        let c = AnthropicConfig::default();
        assert_eq!(
            (c.model.as_str(), c.max_tokens, c.anthropic_version.as_str()),
            ("claude-3-5-haiku-latest", 1024, "2023-06-01")
        );
        assert_eq!(c.api_key_env, "ANTHROPIC_API_KEY");
    }
}
