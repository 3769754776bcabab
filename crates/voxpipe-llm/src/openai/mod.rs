//! `llm.openai`: any OpenAI-compatible Chat Completions endpoint (OpenAI, llama.cpp server,
//! Ollama, vLLM…), streamed over SSE (PROTOCOLS.md §2).

pub mod accumulate;

use crate::Error;
use crate::driver::{Driver, Provider, Settings};
use crate::history::{AssistantPart, History, Message, text_of};
use crate::http::HttpConfig;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use voxpipe_core::{CallContext, Inbox, Outbox, Secret, Stage, StageError, ToolSpec};

/// Configuration of an `llm.openai` stage (`[[stages]] kind = "llm.openai"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiChatConfig {
    /// Model name. Default: `gpt-4o-mini`.
    #[serde(default = "defaults::model")]
    pub model: String,
    /// API base URL, without `/chat/completions`. Default: `https://api.openai.com/v1`.
    #[serde(default = "defaults::base_url")]
    pub base_url: String,
    /// Environment variable holding the API key, sent as `Authorization: Bearer`. Default:
    /// `OPENAI_API_KEY`. An empty string (`api_key_env = ""`) means no key: local servers such
    /// as llama.cpp or Ollama need none.
    #[serde(default = "defaults::openai_key_env", deserialize_with = "defaults::empty_is_none")]
    pub api_key_env: Option<String>,
    /// System prompt. Default: none.
    #[serde(default)]
    pub instructions: String,
    /// Sampling temperature, 0 to 2. Default: the provider's.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Cap on generated tokens per response (`max_tokens`). Default: the provider's.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// `auto`, `none`, `required`, or a tool name to force that tool. Default: `auto`.
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
    /// Extra HTTP headers sent with every request (`OpenAI-Organization`, proxies…). Default:
    /// none.
    #[serde(default)]
    pub extra_headers: BTreeMap<String, String>,
}

impl Default for OpenAiChatConfig {
    fn default() -> Self {
        serde_json::from_value(json!({})).expect("every field has a default")
    }
}

/// Defaults shared by the providers' configs.
pub(crate) mod defaults {
    use serde::{Deserialize, Deserializer};

    pub fn model() -> String {
        "gpt-4o-mini".into()
    }
    pub fn base_url() -> String {
        "https://api.openai.com/v1".into()
    }
    pub fn openai_key_env() -> Option<String> {
        Some("OPENAI_API_KEY".into())
    }
    pub fn tool_choice() -> String {
        "auto".into()
    }
    pub fn max_tool_rounds() -> u32 {
        4
    }
    pub fn empty_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
    }
}

/// The `llm.openai` stage. See the crate docs for its frames.
#[derive(Debug)]
pub struct OpenAiChat {
    driver: Driver,
}

#[derive(Debug)]
pub(crate) struct ChatProvider {
    config: OpenAiChatConfig,
    api_key: Option<Secret>,
    url: String,
    settings: Settings,
}

impl OpenAiChat {
    /// Builds the stage. `api_key` is the value of `config.api_key_env`, or `None` for servers
    /// that need no key.
    ///
    /// # Errors
    /// [`Error::Config`] for a base URL that is not http(s) or an invalid extra header.
    pub fn new(config: OpenAiChatConfig, api_key: Option<Secret>) -> Result<Self, Error> {
        let url = crate::driver::endpoint(ChatProvider::NAME, &config.base_url, "chat/completions")?;
        for (name, value) in &config.extra_headers {
            let ok = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && reqwest::header::HeaderValue::from_str(value).is_ok();
            if !ok {
                let message = format!("extra_headers: `{name}` is not a valid HTTP header name and value");
                return Err(Error::Config { provider: ChatProvider::NAME, message });
            }
        }
        let settings =
            Settings::new("llm.openai", config.max_tool_rounds, &config.http, &config.spoken_fallback);
        let provider = ChatProvider { config, api_key, url, settings };
        Ok(Self { driver: Driver::new(provider)? })
    }
}

impl OpenAiChat {
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
impl Stage for OpenAiChat {
    fn name(&self) -> &str {
        "llm.openai"
    }
    async fn run(self: Box<Self>, ctx: CallContext, input: Inbox, out: Outbox) -> Result<(), StageError> {
        self.driver.run(ctx, input, out).await
    }
}

impl Provider for ChatProvider {
    type Acc = accumulate::ChatAccumulator;
    const NAME: &'static str = "openai";

    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn body(&self, history: &History, tools: &[ToolSpec], tools_enabled: bool) -> Value {
        let c = &self.config;
        let mut body = json!({
            "model": c.model,
            "messages": messages(&c.instructions, history),
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(t) = c.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(n) = c.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if !tools.is_empty() {
            body["tools"] = tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters}})
                })
                .collect();
            body["tool_choice"] = if tools_enabled { tool_choice(&c.tool_choice) } else { json!("none") };
        }
        body
    }

    fn request(&self, client: &reqwest::Client, body: &Value) -> reqwest::RequestBuilder {
        let mut req = client.post(&self.url).json(body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key.expose());
        }
        for (name, value) in &self.config.extra_headers {
            req = req.header(name, value);
        }
        req
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    fn key_hint(&self) -> String {
        match &self.config.api_key_env {
            Some(var) => var.clone(),
            None => "api_key_env (no key is configured)".into(),
        }
    }
}

/// `auto`/`none`/`required`, or a function name to force.
fn tool_choice(choice: &str) -> Value {
    match choice {
        "auto" | "none" | "required" => json!(choice),
        name => json!({"type": "function", "function": {"name": name}}),
    }
}

/// The Chat Completions `messages` array for `history`, after the system prompt.
pub fn messages(instructions: &str, history: &History) -> Vec<Value> {
    let mut out = Vec::with_capacity(history.messages().len() + 1);
    if !instructions.is_empty() {
        out.push(json!({"role": "system", "content": instructions}));
    }
    for m in history.messages() {
        match m {
            Message::User(text) => out.push(json!({"role": "user", "content": text})),
            Message::Assistant(parts) => {
                let text = text_of(parts);
                let calls: Vec<Value> = parts
                    .iter()
                    .filter_map(|p| match p {
                        AssistantPart::ToolUse { call, .. } => Some(json!({
                            "id": call.call_id, "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments}})),
                        _ => None,
                    })
                    .collect();
                let mut msg = json!({"role": "assistant", "content": text});
                if !calls.is_empty() {
                    if text.is_empty() {
                        msg["content"] = Value::Null;
                    }
                    msg["tool_calls"] = Value::Array(calls);
                }
                out.push(msg);
            }
            Message::ToolResults(results) => {
                for r in results {
                    out.push(json!({"role": "tool", "tool_call_id": r.call_id, "content": r.output}));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxpipe_core::{ToolCall, ToolResult};

    #[test]
    fn tool_round_trip_renders_in_the_chat_shape() {
        let mut h = History::new();
        h.push_user("Weather?");
        let call = ToolCall {
            call_id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        };
        h.push_assistant(vec![AssistantPart::ToolUse {
            call: call.clone(),
            input: json!({"city": "Paris"}),
        }]);
        h.push_tool_results(vec![ToolResult {
            call_id: "call_1".into(),
            name: "get_weather".into(),
            output: "sunny".into(),
            is_error: false,
            duration: std::time::Duration::ZERO,
            action: None,
        }]);
        let m = messages("Be brief.", &h);
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(
            m[2],
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]})
        );
        assert_eq!(m[3], json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"}));
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c = OpenAiChatConfig::default();
        assert_eq!((c.model.as_str(), c.api_key_env.as_deref()), ("gpt-4o-mini", Some("OPENAI_API_KEY")));
        assert_eq!((c.max_tool_rounds, c.http.max_retries, c.http.stall_timeout_ms), (4, 2, 10_000));
        let local: OpenAiChatConfig = serde_json::from_value(json!({"api_key_env": ""})).unwrap();
        assert_eq!(local.api_key_env, None);
        let err = serde_json::from_value::<OpenAiChatConfig>(json!({"modle": "x"})).unwrap_err();
        assert!(err.to_string().contains("unknown field `modle`"), "{err}");
    }

    #[test]
    fn a_non_http_base_url_is_a_config_error() {
        let c = OpenAiChatConfig { base_url: "api.openai.com".into(), ..OpenAiChatConfig::default() };
        let err = OpenAiChat::new(c, None).unwrap_err();
        assert!(err.is_fatal() && err.to_string().contains("base_url"), "{err}");
    }
}
