//! Client messages as the fake reads them (`convai-websocket.asyncapi.yml`, `publish`): JSON
//! text frames, a `type` on every message but the audio chunk, the fields the spec names and
//! the types it gives them. A message the fake refuses closes the socket; [`Refusal`] holds
//! the close code and reason.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

/// Why the server closes the socket: a WebSocket close code and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// 1003 (a binary frame), 1007 (a message that is not JSON), 1008 (policy: auth, agent,
    /// a message or override refused, no pong).
    pub code: u16,
    pub reason: String,
}

impl Refusal {
    pub(crate) fn policy(reason: impl Into<String>) -> Self {
        Self { code: 1008, reason: reason.into() }
    }
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self { code: 1007, reason: reason.into() }
    }
}

pub(crate) type Result<T> = std::result::Result<T, Refusal>;

/// `conversation_config_override`, as far as the spec defines it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Overrides {
    pub prompt: Option<String>,
    pub first_message: Option<String>,
    pub language: Option<String>,
    pub voice_id: Option<String>,
}

impl Overrides {
    /// The overridden fields by their security-settings names.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        [
            ("prompt", self.prompt.is_some()),
            ("first_message", self.first_message.is_some()),
            ("language", self.language.is_some()),
            ("voice_id", self.voice_id.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect()
    }
}

/// `conversation_initiation_client_data`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Initiation {
    pub overrides: Overrides,
    pub dynamic_variables: Map<String, Value>,
}

/// A client message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ClientMessage {
    Initiation(Initiation),
    /// Decoded audio bytes (in the agent's input format).
    Audio(Vec<u8>),
    Pong(i64),
    ToolResult {
        tool_call_id: String,
        result: String,
        is_error: bool,
    },
    ContextualUpdate(String),
    UserMessage(String),
    UserActivity,
}

fn invalid_message(what: impl std::fmt::Display) -> Refusal {
    Refusal::policy(format!("Invalid message received: {what}"))
}

/// The object's fields, refusing any not in `known`.
fn fields<'a>(v: &'a Value, at: &str, known: &[&str]) -> Result<&'a Map<String, Value>> {
    let obj = v.as_object().ok_or_else(|| invalid_message(format_args!("{at} must be an object")))?;
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(invalid_message(format_args!("unknown field `{k}` in {at}")));
    }
    Ok(obj)
}

fn string(obj: &Map<String, Value>, at: &str, key: &str, required: bool) -> Result<Option<String>> {
    match obj.get(key) {
        None if required => Err(invalid_message(format_args!("{at}.{key} is required"))),
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid_message(format_args!("{at}.{key} must be a string"))),
    }
}

/// Reads one client message.
pub(crate) fn read(v: &Value) -> Result<ClientMessage> {
    let Some(obj) = v.as_object() else { return Err(invalid_message("expected a JSON object")) };
    if obj.contains_key("user_audio_chunk") {
        let obj = fields(v, "user_audio_chunk message", &["user_audio_chunk"])?;
        let data = string(obj, "message", "user_audio_chunk", true)?.unwrap_or_default();
        let bytes = B64.decode(data).map_err(|_| invalid_message("user_audio_chunk is not valid base64"))?;
        return Ok(ClientMessage::Audio(bytes));
    }
    let Some(kind) = obj.get("type").and_then(Value::as_str) else {
        return Err(invalid_message("missing `type`"));
    };
    match kind {
        "conversation_initiation_client_data" => initiation(v).map(ClientMessage::Initiation),
        "pong" => {
            let obj = fields(v, "pong", &["type", "event_id"])?;
            let id = obj.get("event_id").and_then(Value::as_i64);
            id.map(ClientMessage::Pong).ok_or_else(|| invalid_message("pong.event_id must be an integer"))
        }
        "client_tool_result" => {
            let obj = fields(v, "client_tool_result", &["type", "tool_call_id", "result", "is_error"])?;
            let tool_call_id = string(obj, "client_tool_result", "tool_call_id", true)?.unwrap_or_default();
            let result = string(obj, "client_tool_result", "result", false)?.unwrap_or_default();
            let is_error = match obj.get("is_error") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid_message("client_tool_result.is_error must be a boolean")),
            };
            Ok(ClientMessage::ToolResult { tool_call_id, result, is_error })
        }
        "contextual_update" => {
            let obj = fields(v, "contextual_update", &["type", "text"])?;
            Ok(ClientMessage::ContextualUpdate(
                string(obj, "contextual_update", "text", true)?.unwrap_or_default(),
            ))
        }
        "user_message" => {
            let obj = fields(v, "user_message", &["type", "text"])?;
            Ok(ClientMessage::UserMessage(string(obj, "user_message", "text", false)?.unwrap_or_default()))
        }
        "user_activity" => {
            fields(v, "user_activity", &["type"])?;
            Ok(ClientMessage::UserActivity)
        }
        other => Err(invalid_message(format_args!("unknown message type `{other}`"))),
    }
}

fn initiation(v: &Value) -> Result<Initiation> {
    const AT: &str = "conversation_initiation_client_data";
    // `source_info` and `user_id` are not in the spec; the official SDKs send them.
    let known = [
        "type",
        "conversation_config_override",
        "custom_llm_extra_body",
        "dynamic_variables",
        "source_info",
        "user_id",
    ];
    let obj = fields(v, AT, &known)?;
    let mut out = Initiation::default();
    if let Some(o) = obj.get("conversation_config_override") {
        let o = fields(o, "conversation_config_override", &["agent", "tts"])?;
        if let Some(agent) = o.get("agent") {
            let at = "conversation_config_override.agent";
            let agent = fields(agent, at, &["prompt", "first_message", "language"])?;
            if let Some(p) = agent.get("prompt") {
                let p = fields(p, "conversation_config_override.agent.prompt", &["prompt"])?;
                out.overrides.prompt =
                    string(p, "conversation_config_override.agent.prompt", "prompt", false)?;
            }
            out.overrides.first_message = string(agent, at, "first_message", false)?;
            out.overrides.language = string(agent, at, "language", false)?;
        }
        if let Some(tts) = o.get("tts") {
            let tts = fields(tts, "conversation_config_override.tts", &["voice_id"])?;
            out.overrides.voice_id = string(tts, "conversation_config_override.tts", "voice_id", false)?;
        }
    }
    if let Some(body) = obj.get("custom_llm_extra_body") {
        let body =
            body.as_object().ok_or_else(|| invalid_message("custom_llm_extra_body must be an object"))?;
        if body.get("temperature").is_some_and(|t| !t.is_number()) {
            return Err(invalid_message("custom_llm_extra_body.temperature must be a number"));
        }
        if body.get("max_tokens").is_some_and(|t| !(t.is_u64() || t.is_i64())) {
            return Err(invalid_message("custom_llm_extra_body.max_tokens must be an integer"));
        }
    }
    if let Some(vars) = obj.get("dynamic_variables") {
        let vars = vars.as_object().ok_or_else(|| invalid_message("dynamic_variables must be an object"))?;
        if let Some((k, _)) = vars.iter().find(|(_, v)| !(v.is_string() || v.is_number() || v.is_boolean())) {
            return Err(invalid_message(format_args!(
                "dynamic variable `{k}` must be a string, number, integer or boolean"
            )));
        }
        out.dynamic_variables = vars.clone();
    }
    Ok(out)
}

/// An audio format of the agent (`pcm_16000`, `ulaw_8000`…): sample rate and whether μ-law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Format {
    pub rate: u32,
    pub ulaw: bool,
}

impl Format {
    pub(crate) fn parse(name: &str) -> Option<Format> {
        if name == "ulaw_8000" {
            return Some(Format { rate: 8000, ulaw: true });
        }
        let rate: u32 = name.strip_prefix("pcm_")?.parse().ok()?;
        [8000, 16_000, 22_050, 24_000, 44_100, 48_000].contains(&rate).then_some(Format { rate, ulaw: false })
    }

    pub(crate) fn decode(self, bytes: &[u8], out: &mut Vec<i16>) {
        if self.ulaw {
            voxpipe_core::audio::g711::decode_ulaw(bytes, out);
        } else {
            voxpipe_core::audio::pcm::decode_pcm16le(bytes, out);
        }
    }

    pub(crate) fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        if self.ulaw {
            voxpipe_core::audio::g711::encode_ulaw(samples, out);
        } else {
            voxpipe_core::audio::pcm::encode_pcm16le(samples, out);
        }
    }
}

/// `{{name}}` placeholders in `text` filled from `vars`; the names left unfilled are returned
/// as the error.
pub(crate) fn fill(text: &str, vars: &Map<String, Value>) -> std::result::Result<String, Vec<String>> {
    let (mut out, mut missing, mut rest) = (String::new(), Vec::new(), text);
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else { break };
        out.push_str(&rest[..start]);
        let name = rest[start + 2..start + 2 + len].trim();
        match vars.get(name) {
            Some(Value::String(s)) => out.push_str(s),
            Some(v) => out.push_str(&v.to_string()),
            None => missing.push(name.to_string()),
        }
        rest = &rest[start + 4 + len..];
    }
    out.push_str(rest);
    if missing.is_empty() { Ok(out) } else { Err(missing) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_spec_example_messages_read() {
        let init = json!({"type": "conversation_initiation_client_data",
            "conversation_config_override": {"agent": {"prompt": {"prompt": "P"}, "first_message": "Hi", "language": "en"}, "tts": {"voice_id": "v"}},
            "custom_llm_extra_body": {"temperature": 0.7, "max_tokens": 150},
            "dynamic_variables": {"user_name": "John", "n": 3, "vip": true}});
        let ClientMessage::Initiation(i) = read(&init).unwrap() else { panic!() };
        assert_eq!(i.overrides.names(), ["prompt", "first_message", "language", "voice_id"]);
        assert_eq!(read(&json!({"user_audio_chunk": "AAA="})).unwrap(), ClientMessage::Audio(vec![0, 0]));
        assert_eq!(read(&json!({"type": "pong", "event_id": 12345})).unwrap(), ClientMessage::Pong(12345));
        let r = json!({"type": "client_tool_result", "tool_call_id": "t", "result": "ok", "is_error": false});
        assert!(matches!(read(&r).unwrap(), ClientMessage::ToolResult { .. }));
    }

    #[test]
    fn wrong_shapes_are_refused() {
        for bad in [
            json!({"type": "nope"}),
            json!({"text": "no type"}),
            json!({"type": "pong"}),
            json!({"type": "client_tool_result", "tool_call_id": "t", "result": {"a": 1}}),
            json!({"type": "conversation_initiation_client_data", "dynamic_variables": {"a": [1]}}),
            json!({"type": "conversation_initiation_client_data", "conversation_config_override": {"agent": {"voice": "x"}}}),
            json!({"user_audio_chunk": "***"}),
        ] {
            assert_eq!(read(&bad).unwrap_err().code, 1008, "{bad}");
        }
    }

    #[test]
    fn placeholders_take_dynamic_variables() {
        let vars = json!({"name": "Ann", "n": 2}).as_object().unwrap().clone();
        assert_eq!(fill("Hi {{name}}, {{ n }} items", &vars).unwrap(), "Hi Ann, 2 items");
        assert_eq!(fill("Hi {{who}}", &vars).unwrap_err(), ["who"]);
    }
}
