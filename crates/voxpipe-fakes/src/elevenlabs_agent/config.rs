//! Configuration of the ElevenLabs agent fake: agents (public or private, their settings and
//! which overrides they allow), scripted replies, pacing, VAD, pings, tool timeouts, faults.

use serde::{Deserialize, Serialize};

pub use crate::realtime::{FakeApiKey, VadConfig};

/// Everything the ElevenLabs agent fake can be told. Every field has a default, so `{}` (or an
/// empty TOML file) is a valid configuration.
///
/// TOML shape (all keys optional):
/// ```toml
/// api_key = "fake-xi-key"       # omit: any non-empty xi-api-key gets a signed URL
/// first_audio_delay_ms = 200
/// delta_ms = 100
/// pace = 4.0
/// ping_interval_ms = 2000
/// pong_timeout_ms = 10000
/// # faults = ["0=status:429", "1=cut-after:3"]   # by connection, 0 = the first
/// [[agents]]
/// agent_id = "agent_fake"
/// first_message = "Hi {{user_name}}, how can I help?"
/// private = false
/// allow_overrides = ["first_message", "language"]
/// [[responses]]
/// user_transcript = "What's the weather in Paris?"
/// text = "Let me check."
/// [responses.tool_call]
/// tool_name = "get_weather"
/// parameters = { city = "Paris" }
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ElevenLabsAgentFakeConfig {
    /// The `xi-api-key` that `get-signed-url` accepts. A made-up test value, never a real key.
    /// Default: none, meaning any non-empty key is accepted.
    #[serde(default)]
    pub api_key: Option<FakeApiKey>,
    /// The agents that exist. Default: a public `agent_fake` and a private
    /// `agent_fake_private`.
    #[serde(default = "default_agents")]
    pub agents: Vec<AgentConfig>,
    /// Scripted agent replies. A reply whose `when` occurs in the caller's words (a
    /// `user_message`) is used for it; otherwise the replies without `when` are used in order,
    /// cycling, per conversation. Default: one friendly reply.
    #[serde(default = "default_responses")]
    pub responses: Vec<AgentScriptedResponse>,
    /// Time from the end of the caller's turn (or a tool result) to `agent_response` and the
    /// first audio, in ms. Default 200.
    #[serde(default = "default_first_audio_delay_ms")]
    pub first_audio_delay_ms: u64,
    /// Audio per `audio` message, in ms of audio. Default 100.
    #[serde(default = "default_delta_ms")]
    pub delta_ms: u64,
    /// Sending speed relative to real time: a message of `delta_ms` audio is sent every
    /// `delta_ms / pace` ms. Default 4.0.
    #[serde(default = "default_pace")]
    pub pace: f64,
    /// The energy VAD on the caller's audio (the Realtime fake's).
    #[serde(default)]
    pub vad: VadConfig,
    /// Silence that ends the caller's turn, in ms. Default 500.
    #[serde(default = "default_silence_ms")]
    pub turn_silence_ms: u64,
    /// Time between the server's `ping`s, in ms. 0: no pings. Default 2000.
    #[serde(default = "default_ping_interval_ms")]
    pub ping_interval_ms: u64,
    /// How long the oldest unanswered `ping` may wait for its `pong` before the fake closes the
    /// socket (1008), in ms. Default 10000.
    #[serde(default = "default_pong_timeout_ms")]
    pub pong_timeout_ms: u64,
    /// How long a `client_tool_call` waits for its `client_tool_result`, in ms; then the agent
    /// goes on as if the tool had failed. Default 10000.
    #[serde(default = "default_tool_timeout_ms")]
    pub tool_timeout_ms: u64,
    /// How long a signed URL's `conversation_signature` stays valid, in ms (ElevenLabs' docs:
    /// 15 minutes). Default 900000.
    #[serde(default = "default_signature_ttl_ms")]
    pub signature_ttl_ms: u64,
    /// Faults by connection (0-based, in upgrade order), as `INDEX=KIND` specs
    /// ([`crate::fault`]) of the kinds in [`SUPPORTED_FAULTS`]. A chunk is an `audio`
    /// message: `cut-after:N` drops the TCP connection (no close frame) after N of them,
    /// `stall-after:N` stops the reply after N (pings go on), `malformed`, `unknown-event` and
    /// `oversize` send one such message before chunk N, `slow:MS` spaces chunks at least MS
    /// apart, `status:CODE` refuses that upgrade with ElevenLabs' error body.
    #[serde(
        default,
        with = "crate::fault::serde_list",
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub faults: crate::fault::Faults,
}

/// The fault kinds the ElevenLabs agent fake implements.
pub const SUPPORTED_FAULTS: &[&str] =
    &["status", "stall-after", "cut-after", "malformed", "unknown-event", "slow", "oversize"];

impl Default for ElevenLabsAgentFakeConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            agents: default_agents(),
            responses: default_responses(),
            first_audio_delay_ms: default_first_audio_delay_ms(),
            delta_ms: default_delta_ms(),
            pace: default_pace(),
            vad: VadConfig::default(),
            turn_silence_ms: default_silence_ms(),
            ping_interval_ms: default_ping_interval_ms(),
            pong_timeout_ms: default_pong_timeout_ms(),
            tool_timeout_ms: default_tool_timeout_ms(),
            signature_ttl_ms: default_signature_ttl_ms(),
            faults: Default::default(),
        }
    }
}

impl ElevenLabsAgentFakeConfig {
    /// The agent `id`, if it exists.
    pub(crate) fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| a.agent_id == id)
    }

    /// The scripted reply for the caller's typed words `said`, else the `n`th reply without
    /// `when` (cycling). Returns the reply and whether it used up an ordered one.
    pub(crate) fn response(&self, said: Option<&str>, n: usize) -> (AgentScriptedResponse, bool) {
        if let Some(said) = said.map(str::to_lowercase) {
            let keyed = self.responses.iter().find(|r| {
                r.when.as_deref().is_some_and(|w| !w.is_empty() && said.contains(&w.to_lowercase()))
            });
            if let Some(r) = keyed {
                return (r.clone(), false);
            }
        }
        let ordered: Vec<&AgentScriptedResponse> =
            self.responses.iter().filter(|r| r.when.is_none()).collect();
        match ordered.len() {
            0 => (default_responses().remove(0), true),
            len => (ordered[n % len].clone(), true),
        }
    }
}

/// One agent as configured on the (fake) ElevenLabs dashboard.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The id clients pass as `agent_id`.
    pub agent_id: String,
    /// A private agent accepts only connections through a signed URL. Default false.
    #[serde(default)]
    pub private: bool,
    /// The system prompt. Default: a short one.
    #[serde(default = "default_prompt")]
    pub prompt: String,
    /// Spoken when the conversation starts (`{{name}}` takes a dynamic variable). Empty: the
    /// agent waits for the caller. Default: a greeting.
    #[serde(default = "default_first_message")]
    pub first_message: String,
    /// Default "en".
    #[serde(default = "default_language")]
    pub language: String,
    /// Default "21m00Tcm4TlvDq8ikWAM".
    #[serde(default = "default_voice_id")]
    pub voice_id: String,
    /// `user_input_audio_format`: `pcm_8000`, `pcm_16000`, `pcm_22050`, `pcm_24000`,
    /// `pcm_44100`, `pcm_48000` or `ulaw_8000`. Default `pcm_16000`.
    #[serde(default = "default_format")]
    pub input_format: String,
    /// `agent_output_audio_format`, the same choices. Default `pcm_16000`.
    #[serde(default = "default_format")]
    pub output_format: String,
    /// Which `conversation_config_override` fields the agent's security settings allow:
    /// `prompt`, `first_message`, `language`, `voice_id`. Default: none (ElevenLabs' default).
    #[serde(default)]
    pub allow_overrides: Vec<String>,
    /// The client tools the agent may call (a scripted call to another name is logged).
    /// Default: none checked.
    #[serde(default)]
    pub client_tools: Vec<String>,
}

impl AgentConfig {
    /// A public agent with the default settings.
    pub fn public(id: impl Into<String>) -> Self {
        Self {
            agent_id: id.into(),
            private: false,
            prompt: default_prompt(),
            first_message: default_first_message(),
            language: default_language(),
            voice_id: default_voice_id(),
            input_format: default_format(),
            output_format: default_format(),
            allow_overrides: Vec::new(),
            client_tools: Vec::new(),
        }
    }

    /// A private agent with the default settings.
    pub fn private(id: impl Into<String>) -> Self {
        Self { private: true, ..Self::public(id) }
    }
}

/// One scripted agent turn.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentScriptedResponse {
    /// Use this reply when the caller's typed message contains these words
    /// (case-insensitive). Default: none (used in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// The agent's words (`agent_response`, spoken as audio). May be empty for a turn that
    /// only calls a tool.
    #[serde(default)]
    pub text: String,
    /// Length of the spoken audio, in ms. Default: 65 ms per character, at least 300 ms (none
    /// when `text` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_ms: Option<u64>,
    /// A client tool call made after the words; the agent waits for its result and goes on
    /// with the next scripted reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<AgentToolCall>,
    /// The `user_transcript` reported for the caller's spoken turn this answers. Default
    /// "(user speech)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_transcript: Option<String>,
}

impl AgentScriptedResponse {
    /// A plain spoken reply.
    pub fn say(text: impl Into<String>) -> Self {
        Self { when: None, text: text.into(), audio_ms: None, tool_call: None, user_transcript: None }
    }

    /// A turn that only calls the client tool `name` with `parameters` (a JSON object).
    pub fn call(name: impl Into<String>, parameters: serde_json::Value) -> Self {
        let call = AgentToolCall { tool_name: name.into(), parameters, tool_call_id: None };
        Self { tool_call: Some(call), ..Self::say("") }
    }

    /// The same turn, reporting `transcript` as what the caller said.
    pub fn heard(mut self, transcript: impl Into<String>) -> Self {
        self.user_transcript = Some(transcript.into());
        self
    }

    /// Audio length in ms.
    pub(crate) fn audio_len_ms(&self) -> u64 {
        if self.text.is_empty() && self.audio_ms.is_none() {
            return 0;
        }
        self.audio_ms.unwrap_or_else(|| (self.text.chars().count() as u64 * 65).max(300))
    }
}

/// A scripted client tool call.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentToolCall {
    /// The client tool's name.
    pub tool_name: String,
    /// Its parameters (a JSON object). Default `{}`.
    #[serde(default = "empty_object")]
    pub parameters: serde_json::Value,
    /// The call id. Default: generated (`toolu_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}
fn default_agents() -> Vec<AgentConfig> {
    vec![AgentConfig::public("agent_fake"), AgentConfig::private("agent_fake_private")]
}
fn default_responses() -> Vec<AgentScriptedResponse> {
    vec![AgentScriptedResponse::say("I'm a local fake of an ElevenLabs agent. How can I help you today?")]
}
fn default_prompt() -> String {
    "You are a helpful voice assistant.".to_string()
}
fn default_first_message() -> String {
    "Hello! How can I help you today?".to_string()
}
fn default_language() -> String {
    "en".to_string()
}
fn default_voice_id() -> String {
    "21m00Tcm4TlvDq8ikWAM".to_string()
}
fn default_format() -> String {
    "pcm_16000".to_string()
}
fn default_first_audio_delay_ms() -> u64 {
    200
}
fn default_delta_ms() -> u64 {
    100
}
fn default_pace() -> f64 {
    4.0
}
fn default_silence_ms() -> u64 {
    500
}
fn default_ping_interval_ms() -> u64 {
    2000
}
fn default_pong_timeout_ms() -> u64 {
    10_000
}
fn default_tool_timeout_ms() -> u64 {
    10_000
}
fn default_signature_ttl_ms() -> u64 {
    900_000
}
