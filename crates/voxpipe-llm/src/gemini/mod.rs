//! `llm.gemini`: the Gemini API's `streamGenerateContent?alt=sse` (`shared/specs/google/DIGEST.md`
//! §2 and `generative_service.proto`, which wins where they differ).
//!
//! The request holds the conversation as `contents` (roles `user` and `model`), the
//! instructions as `systemInstruction`, the tools as `functionDeclarations` with plain JSON
//! Schema (`parametersJsonSchema`) and `toolConfig.functionCallingConfig`. A model turn goes
//! back with every part it had (thoughts, and each function call with its `thoughtSignature`);
//! tool results go back in a `user` turn as `functionResponse` parts, in call order, each
//! answering its call by name (and by `id` when the call had one), the output under `output`
//! or, for a failed tool, `error`. The key goes in the `x-goog-api-key` header, never in the
//! URL.

pub mod accumulate;

use crate::Error;
use crate::driver::{Driver, Provider, Settings};
use crate::history::{AssistantPart, History, Message};
use crate::http::HttpConfig;
use crate::openai::defaults;
use accumulate::{CALL_KEY, PART_KEY};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use voxpipe_core::{CallContext, Inbox, Outbox, Secret, Stage, StageError, ToolResult, ToolSpec};

/// Configuration of an `llm.gemini` stage (`[[stages]] kind = "llm.gemini"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GeminiConfig {
    /// Model id (`models/` in front is optional). Default: `gemini-2.5-flash`.
    #[serde(default = "model")]
    pub model: String,
    /// API base URL, without `/models/…`. Default:
    /// `https://generativelanguage.googleapis.com/v1beta`.
    #[serde(default = "base_url")]
    pub base_url: String,
    /// Environment variable holding the API key, sent as `x-goog-api-key`. Default:
    /// `GEMINI_API_KEY`.
    #[serde(default = "api_key_env")]
    pub api_key_env: String,
    /// System instruction. Default: none.
    #[serde(default)]
    pub instructions: String,
    /// Sampling temperature, 0 to 2. Default: the model's.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Cap on generated tokens per response (`maxOutputTokens`; thinking counts). Default:
    /// the model's.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// Thinking tokens per response (`thinkingConfig.thinkingBudget`): 0 turns thinking off
    /// where the model allows it (2.5 Flash), which answers soonest; -1 lets the model
    /// decide. Default: the model's.
    #[serde(default)]
    pub thinking_budget: Option<i32>,
    /// `auto`, `any` (or `required`), `none`, or a tool name to force that tool. Default:
    /// `auto`.
    #[serde(default = "defaults::tool_choice")]
    pub tool_choice: String,
    /// Model requests with tools per user turn before a last request with function calling
    /// mode `NONE`. Default: 4.
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
    "gemini-2.5-flash".into()
}
fn base_url() -> String {
    "https://generativelanguage.googleapis.com/v1beta".into()
}
fn api_key_env() -> String {
    "GEMINI_API_KEY".into()
}

impl Default for GeminiConfig {
    fn default() -> Self {
        serde_json::from_value(json!({})).expect("every field has a default")
    }
}

/// The `llm.gemini` stage. See the crate docs for its frames.
#[derive(Debug)]
pub struct Gemini {
    driver: Driver,
}

#[derive(Debug)]
pub(crate) struct GenerateProvider {
    config: GeminiConfig,
    /// The key as the `x-goog-api-key` value, marked sensitive (its `Debug` hides it).
    api_key: reqwest::header::HeaderValue,
    url: String,
    settings: Settings,
}

impl Gemini {
    /// Builds the stage with the value of `config.api_key_env`.
    ///
    /// # Errors
    /// [`Error::Config`] for a base URL that is not http(s), a model id that cannot go in the
    /// URL, a key that cannot go in a header, or a `max_output_tokens` of 0.
    pub fn new(config: GeminiConfig, api_key: Secret) -> Result<Self, Error> {
        let name = GenerateProvider::NAME;
        let config_error = |message: String| Error::Config { provider: name, message };
        let id = config.model.strip_prefix("models/").unwrap_or(&config.model);
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
            return Err(config_error(format!(
                "model must be a model id such as gemini-2.5-flash (letters, digits, `.`, `-`, `_`), got `{}`",
                config.model
            )));
        }
        if config.max_output_tokens == Some(0) {
            return Err(config_error("max_output_tokens must be at least 1".into()));
        }
        let Ok(mut api_key) = reqwest::header::HeaderValue::from_str(api_key.expose()) else {
            let message = format!("the key in {} is not a valid HTTP header value", config.api_key_env);
            return Err(config_error(message));
        };
        api_key.set_sensitive(true);
        let path = format!("models/{id}:streamGenerateContent?alt=sse");
        let url = crate::driver::endpoint(name, &config.base_url, &path)?;
        let settings =
            Settings::new("llm.gemini", config.max_tool_rounds, &config.http, &config.spoken_fallback);
        let provider = GenerateProvider { config, api_key, url, settings };
        Ok(Self { driver: Driver::new(provider)? })
    }

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
impl Stage for Gemini {
    fn name(&self) -> &str {
        "llm.gemini"
    }
    async fn run(self: Box<Self>, ctx: CallContext, input: Inbox, out: Outbox) -> Result<(), StageError> {
        self.driver.run(ctx, input, out).await
    }
}

impl Provider for GenerateProvider {
    type Acc = accumulate::GenerateAccumulator;
    const NAME: &'static str = "gemini";
    const KEEP_UNTERMINATED_LAST_EVENT: bool = true;

    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn body(&self, history: &History, tools: &[ToolSpec], tools_enabled: bool) -> Value {
        let c = &self.config;
        let mut body = json!({"contents": contents(history)});
        if !c.instructions.is_empty() {
            body["systemInstruction"] = json!({"parts": [{"text": c.instructions}]});
        }
        if !tools.is_empty() {
            // Declared even when disabled: the history may hold calls of these functions.
            let declarations: Vec<Value> = tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "parametersJsonSchema": t.parameters}))
                .collect();
            body["tools"] = json!([{"functionDeclarations": declarations}]);
            let calling =
                if tools_enabled { function_calling(&c.tool_choice) } else { json!({"mode": "NONE"}) };
            body["toolConfig"] = json!({"functionCallingConfig": calling});
        }
        let mut generation = serde_json::Map::new();
        if let Some(t) = c.temperature {
            generation.insert("temperature".into(), json!(t));
        }
        if let Some(n) = c.max_output_tokens {
            generation.insert("maxOutputTokens".into(), json!(n));
        }
        if let Some(b) = c.thinking_budget {
            generation.insert("thinkingConfig".into(), json!({"thinkingBudget": b}));
        }
        if !generation.is_empty() {
            body["generationConfig"] = Value::Object(generation);
        }
        body
    }

    fn request(&self, client: &reqwest::Client, body: &Value) -> reqwest::RequestBuilder {
        client.post(&self.url).header("x-goog-api-key", self.api_key.clone()).json(body)
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    fn key_hint(&self) -> String {
        self.config.api_key_env.clone()
    }

    /// 401/403, and Google's 400 for a key it does not know (`ErrorInfo.reason`
    /// `API_KEY_INVALID`).
    fn key_refused(&self, status: u16, body: &str) -> bool {
        matches!(status, 401 | 403) || (status == 400 && body.contains("API_KEY_INVALID"))
    }

    /// `google.rpc.RetryInfo.retryDelay` (`"24s"`), which Google's 429 bodies carry.
    fn retry_delay(&self, body: &str) -> Option<Duration> {
        let v: Value = serde_json::from_str(body).ok()?;
        let details = v.pointer("/error/details")?.as_array()?;
        let info = details
            .iter()
            .find(|d| d["@type"].as_str().is_some_and(|t| t.ends_with("google.rpc.RetryInfo")))?;
        proto_duration(info["retryDelay"].as_str()?)
    }
}

/// A proto3 JSON `Duration` (`"24s"`, `"1.5s"`); `None` for anything else or a negative one.
fn proto_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// `functionCallingConfig` for `auto`, `any`/`required`, `none`, or a tool name to force.
fn function_calling(choice: &str) -> Value {
    match choice {
        "auto" => json!({"mode": "AUTO"}),
        "any" | "required" => json!({"mode": "ANY"}),
        "none" => json!({"mode": "NONE"}),
        name => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
    }
}

/// The `contents` array for `history`. A model turn is sent back with all its parts; tool
/// results become a `user` turn of `functionResponse` parts; consecutive turns of one role are
/// merged into one.
pub fn contents(history: &History) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(history.messages().len());
    // The id Gemini gave each call, if any: its response must carry the same.
    let mut wire_ids: HashMap<String, Option<String>> = HashMap::new();
    for m in history.messages() {
        let (role, parts) = match m {
            Message::User(text) => ("user", vec![json!({"text": text})]),
            Message::Assistant(parts) => ("model", model_parts(parts, &mut wire_ids)),
            Message::ToolResults(results) => {
                let parts = results.iter().map(|r| function_response(r, &wire_ids)).collect();
                ("user", parts)
            }
        };
        if parts.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(prev) if prev["role"] == role => {
                let all = prev["parts"].as_array_mut().expect("parts is always an array here");
                all.extend(parts);
            }
            _ => out.push(json!({"role": role, "parts": parts})),
        }
    }
    out
}

/// The parts of a model turn. A call's kept `id` and `thoughtSignature` go back on it; parts
/// another provider kept (after a failover) are left out.
fn model_parts(parts: &[AssistantPart], wire_ids: &mut HashMap<String, Option<String>>) -> Vec<Value> {
    let sidecars: HashMap<&str, &Value> = parts
        .iter()
        .filter_map(|p| match p {
            AssistantPart::Opaque(v) => v.get(CALL_KEY),
            _ => None,
        })
        .filter_map(|s| Some((s["call_id"].as_str()?, s)))
        .collect();
    parts
        .iter()
        .filter_map(|p| match p {
            AssistantPart::Text(t) if t.is_empty() => None,
            AssistantPart::Text(t) => Some(json!({"text": t})),
            AssistantPart::ToolUse { call, input } => {
                let sidecar = sidecars.get(call.call_id.as_str());
                let id = sidecar.and_then(|s| s["id"].as_str()).map(str::to_string);
                let args = if input.is_object() {
                    input.clone()
                } else {
                    crate::openai::accumulate::parse_arguments(&call.arguments)
                };
                let mut fc = json!({"name": call.name, "args": args});
                if let Some(id) = &id {
                    fc["id"] = json!(id);
                }
                let mut part = json!({"functionCall": fc});
                if let Some(sig) = sidecar.and_then(|s| s.get("thoughtSignature")) {
                    part["thoughtSignature"] = sig.clone();
                }
                wire_ids.insert(call.call_id.clone(), id);
                Some(part)
            }
            AssistantPart::Opaque(v) => v.get(PART_KEY).cloned(),
        })
        .collect()
}

/// A `functionResponse` part: the output as JSON when it is JSON, else as a string, under
/// `output` (or `error` for a failed tool), since `response` must be an object.
fn function_response(r: &ToolResult, wire_ids: &HashMap<String, Option<String>>) -> Value {
    let value = serde_json::from_str::<Value>(&r.output).unwrap_or_else(|_| Value::String(r.output.clone()));
    let key = if r.is_error { "error" } else { "output" };
    let mut response = json!({"name": r.name, "response": {key: value}});
    if let Some(Some(id)) = wire_ids.get(&r.call_id) {
        response["id"] = json!(id);
    }
    json!({"functionResponse": response})
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxpipe_core::ToolCall;

    fn call(id: &str, name: &str, input: Value) -> AssistantPart {
        let call = ToolCall { call_id: id.into(), name: name.into(), arguments: input.to_string() };
        AssistantPart::ToolUse { call, input }
    }

    fn result(id: &str, name: &str, output: &str, is_error: bool) -> ToolResult {
        ToolResult {
            call_id: id.into(),
            name: name.into(),
            output: output.into(),
            is_error,
            duration: Duration::ZERO,
            action: None,
        }
    }

    #[test]
    fn a_round_trip_sends_the_calls_back_with_signatures_and_the_responses_by_id() {
        let mut h = History::new();
        h.push_user("Weather and time in Paris?");
        h.push_assistant(vec![
            AssistantPart::Opaque(json!({PART_KEY: {"text": "Thinking…", "thought": true}})),
            AssistantPart::Text("Let me check.".into()),
            AssistantPart::Opaque(json!({CALL_KEY: {"call_id": "gemini_1_0", "thoughtSignature": "c2ln"}})),
            call("gemini_1_0", "get_weather", json!({"city": "Paris"})),
            AssistantPart::Opaque(json!({CALL_KEY: {"call_id": "fc_2", "id": "fc_2"}})),
            call("fc_2", "get_time", json!({"city": "Paris"})),
        ]);
        h.push_tool_results(vec![
            result("gemini_1_0", "get_weather", "{\"temp_c\":18}", false),
            result("fc_2", "get_time", "clock down", true),
        ]);
        h.push_user("Thanks.");
        let c = contents(&h);
        assert_eq!(c.len(), 3, "the results and the next words are one user turn: {c:?}");
        assert_eq!(
            c[1],
            json!({"role": "model", "parts": [
                {"text": "Thinking…", "thought": true},
                {"text": "Let me check."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "get_time", "args": {"city": "Paris"}, "id": "fc_2"}},
            ]})
        );
        assert_eq!(
            c[2],
            json!({"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"output": {"temp_c": 18}}}},
                {"functionResponse": {"name": "get_time", "id": "fc_2", "response": {"error": "clock down"}}},
                {"text": "Thanks."},
            ]})
        );
    }

    #[test]
    fn another_providers_parts_are_left_out_and_its_calls_go_without_an_id() {
        let mut h = History::new();
        h.push_user("Hi");
        h.push_assistant(vec![
            AssistantPart::Opaque(json!({"type": "thinking", "thinking": "hm", "signature": "s"})),
            call("toolu_1", "get_weather", json!({"city": "Oslo"})),
        ]);
        h.push_tool_results(vec![result("toolu_1", "get_weather", "sunny", false)]);
        let c = contents(&h);
        assert_eq!(
            c[1]["parts"],
            json!([{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}])
        );
        assert_eq!(
            c[2]["parts"][0],
            json!({"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}})
        );
    }

    fn provider(config: GeminiConfig) -> GenerateProvider {
        GenerateProvider {
            settings: Settings::new("llm.gemini", 4, &HttpConfig::default(), &Default::default()),
            url: String::new(),
            api_key: reqwest::header::HeaderValue::from_static("k"),
            config,
        }
    }

    #[test]
    fn the_body_declares_tools_as_json_schema_and_disables_them_with_mode_none() {
        let provider = provider(GeminiConfig {
            instructions: "Be brief.".into(),
            thinking_budget: Some(0),
            tool_choice: "get_weather".into(),
            ..GeminiConfig::default()
        });
        let spec = ToolSpec {
            name: "get_weather".into(),
            description: "Weather".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        };
        let mut h = History::new();
        h.push_user("Hi");
        let body = provider.body(&h, std::slice::from_ref(&spec), true);
        assert_eq!(body["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
        assert_eq!(body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"], spec.parameters);
        assert_eq!(
            body["toolConfig"]["functionCallingConfig"],
            json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
        );
        assert_eq!(body["generationConfig"], json!({"thinkingConfig": {"thinkingBudget": 0}}));
        let body = provider.body(&h, std::slice::from_ref(&spec), false);
        assert_eq!(body["toolConfig"]["functionCallingConfig"], json!({"mode": "NONE"}));
        assert!(provider.body(&h, &[], true).get("tools").is_none());
        assert_eq!(function_calling("required"), json!({"mode": "ANY"}));
    }

    #[test]
    fn the_url_names_the_model_and_asks_for_sse_and_a_bad_model_is_refused() {
        let url = |model: &str| {
            let config = GeminiConfig {
                model: model.into(),
                base_url: "http://127.0.0.1:9/v1beta/".into(),
                ..Default::default()
            };
            Gemini::new(config, Secret::new("AIza-debug-key")).map(|g| format!("{g:?}"))
        };
        let dbg = url("models/gemini-2.0-flash").unwrap();
        assert!(
            dbg.contains("http://127.0.0.1:9/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"),
            "{dbg}"
        );
        assert!(
            !dbg.contains("AIza-debug-key") && dbg.contains("Sensitive"),
            "the key is hidden in Debug: {dbg}"
        );
        let e = url("gemini/../x").unwrap_err().to_string();
        assert!(e.contains("model must be a model id"), "{e}");
        let e = Gemini::new(GeminiConfig::default(), Secret::new("AIza\nsecret")).unwrap_err().to_string();
        assert!(
            e.contains("the key in GEMINI_API_KEY is not a valid HTTP header value") && !e.contains("secret"),
            "{e}"
        );
    }

    #[test]
    fn google_error_bodies_give_a_refused_key_and_a_retry_delay() {
        let provider = provider(GeminiConfig::default());
        let invalid = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
        assert!(provider.key_refused(400, invalid));
        assert!(!provider.key_refused(400, r#"{"error":{"code":400,"status":"INVALID_ARGUMENT"}}"#));
        assert!(provider.key_refused(403, ""));
        let quota = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.5s"}]}}"#;
        assert_eq!(provider.retry_delay(quota), Some(Duration::from_millis(1500)));
        assert_eq!(provider.retry_delay("not json"), None);
        assert_eq!(proto_duration("-1s"), None);
    }

    #[test]
    fn config_defaults() {
        let c = GeminiConfig::default();
        assert_eq!((c.model.as_str(), c.api_key_env.as_str()), ("gemini-2.5-flash", "GEMINI_API_KEY"));
        assert_eq!(c.base_url, "https://generativelanguage.googleapis.com/v1beta");
        assert_eq!((c.max_output_tokens, c.thinking_budget), (None, None));
    }
}
