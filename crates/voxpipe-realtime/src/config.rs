//! `[[stages]] kind = "realtime.openai"`: the Realtime session as the pipeline file declares it.

use serde::{Deserialize, Serialize};

/// How the key authenticates to Azure OpenAI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AzureAuth {
    /// The resource's key in an `api-key` header. Default.
    #[default]
    ApiKey,
    /// A Microsoft Entra ID token in `Authorization: Bearer` (`api_key_env` names the variable
    /// holding it; voxpipe does not fetch or refresh it).
    Entra,
}

/// `[stages.azure]`: the Realtime API of an Azure OpenAI (Foundry) resource instead of
/// OpenAI's. The conversation stays with the resource: its region and deployment type
/// (regional, Data Zone or global) decide where audio is processed, and the stage connects to
/// no other host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// The resource's endpoint, `https://NAME.openai.azure.com` (`wss://` also taken; a path
    /// or query is not).
    pub endpoint: String,
    /// The deployment of a realtime model on that resource (what `model` is for OpenAI).
    pub deployment: String,
    /// A dated preview API version (`2025-04-01-preview`): connects to
    /// `/openai/realtime?api-version=…&deployment=…`, which speaks the beta dialect
    /// (`protocol = "beta"`). Default: none, the v1 API at `/openai/v1/realtime?model=…` (GA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `api_key` (default: the `api-key` header) or `entra` (a bearer token).
    #[serde(default)]
    pub auth: AzureAuth,
}

/// The assistant's voice: `voice = "marin"` or `voice = { id = "voice_1234" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Voice {
    /// A voice by name, passed to the server as it is.
    Name(String),
    /// A custom voice by id (GA: `{"id": …}`; the beta dialect takes the id as the name).
    Custom {
        /// The custom voice's id, `voice_…`.
        id: String,
    },
}

impl Voice {
    /// The name or id.
    pub fn as_str(&self) -> &str {
        match self {
            Voice::Name(n) => n,
            Voice::Custom { id } => id,
        }
    }

    /// A name OpenAI documents, or a custom voice (anything else may still be the server's own).
    pub fn is_known(&self) -> bool {
        match self {
            Voice::Name(n) => VOICES.contains(&n.as_str()) || n.starts_with("voice_"),
            Voice::Custom { .. } => true,
        }
    }
}

/// A voice equals the name (or custom id) it carries: `voice == "marin"`.
impl PartialEq<&str> for Voice {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Voice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Voice::Name(n) => s.serialize_str(n),
            Voice::Custom { id } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("id", id)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Voice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Voice;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a voice name or `{ id = \"voice_…\" }`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Voice, E> {
                Ok(Voice::Name(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Voice, A::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "id" if id.is_none() => id = Some(map.next_value::<String>()?),
                        "id" => return Err(serde::de::Error::duplicate_field("id")),
                        other => return Err(serde::de::Error::unknown_field(other, &["id"])),
                    }
                }
                id.map(|id| Voice::Custom { id }).ok_or_else(|| serde::de::Error::missing_field("id"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Which dialect of the Realtime API to speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// The GA API (`gpt-realtime`, `gpt-realtime-mini`). Default.
    #[default]
    Ga,
    /// The legacy beta API (`OpenAI-Beta: realtime=v1`, flat session shape).
    Beta,
}

/// Audio format on the wire, both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioFormat {
    /// PCM16 LE mono at 24 kHz. Default.
    #[default]
    Pcm,
    /// G.711 μ-law at 8 kHz (telephony; passes straight through from Twilio).
    Pcmu,
    /// G.711 A-law at 8 kHz.
    Pcma,
}

impl AudioFormat {
    /// The sample rate of the format.
    pub fn sample_rate(self) -> u32 {
        match self {
            AudioFormat::Pcm => 24_000,
            AudioFormat::Pcmu | AudioFormat::Pcma => 8_000,
        }
    }
}

/// Semantic VAD eagerness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Eagerness {
    /// Wait longest (up to 8 s).
    Low,
    /// Up to 4 s.
    Medium,
    /// Answer soonest (up to 2 s).
    High,
    /// The provider's choice (medium). Default.
    #[default]
    Auto,
}

fn yes() -> bool {
    true
}
fn default_threshold() -> f32 {
    0.5
}
fn default_prefix_padding_ms() -> u32 {
    300
}
fn default_silence_duration_ms() -> u32 {
    500
}

/// Who decides when the caller's turn ends.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TurnDetection {
    /// The provider's energy VAD.
    ServerVad {
        /// Activation threshold, 0..1 (higher needs louder speech). Default 0.5.
        #[serde(default = "default_threshold")]
        threshold: f32,
        /// Audio kept from before the onset (ms). Default 300.
        #[serde(default = "default_prefix_padding_ms")]
        prefix_padding_ms: u32,
        /// Silence that ends a turn (ms). Default 500.
        #[serde(default = "default_silence_duration_ms")]
        silence_duration_ms: u32,
        /// Prompt the caller after this much silence (5000..30000 ms). Default: off.
        #[serde(default)]
        idle_timeout_ms: Option<u32>,
        /// Respond automatically at the end of each turn. Default true.
        #[serde(default = "yes")]
        create_response: bool,
        /// Cancel the reply when the caller starts speaking. Default true.
        #[serde(default = "yes")]
        interrupt_response: bool,
    },
    /// The provider's semantic end-of-turn model.
    SemanticVad {
        /// How soon to answer. Default auto.
        #[serde(default)]
        eagerness: Eagerness,
        /// Respond automatically. Default true.
        #[serde(default = "yes")]
        create_response: bool,
        /// Cancel the reply when the caller starts speaking. Default true.
        #[serde(default = "yes")]
        interrupt_response: bool,
    },
    /// No provider VAD: voxpipe commits each turn and asks for a response.
    None,
}

impl Default for TurnDetection {
    fn default() -> Self {
        TurnDetection::ServerVad {
            threshold: default_threshold(),
            prefix_padding_ms: default_prefix_padding_ms(),
            silence_duration_ms: default_silence_duration_ms(),
            idle_timeout_ms: None,
            create_response: true,
            interrupt_response: true,
        }
    }
}

/// Transcription of the caller's audio (runs beside the model, asynchronously).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptionConfig {
    /// Model, e.g. `gpt-4o-mini-transcribe` or `whisper-1`.
    pub model: String,
    /// ISO-639-1 language hint.
    #[serde(default)]
    pub language: Option<String>,
    /// Vocabulary hint.
    #[serde(default)]
    pub prompt: Option<String>,
}

/// Input noise reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseReduction {
    /// Close-talking microphone (headset, phone).
    NearField,
    /// Far-field microphone (laptop, conference room).
    FarField,
}

fn default_model() -> String {
    "gpt-realtime-mini".into()
}
fn default_url() -> String {
    "wss://api.openai.com/v1/realtime".into()
}
fn default_api_key_env() -> String {
    "OPENAI_API_KEY".into()
}
fn default_voice() -> Voice {
    Voice::Name("marin".into())
}
fn default_tool_choice() -> String {
    "auto".into()
}
fn default_append_ms() -> u32 {
    100
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_drain_timeout_ms() -> u64 {
    15_000
}
fn default_reconnect_attempts() -> u32 {
    3
}
fn default_stall_timeout_ms() -> u64 {
    15_000
}

/// The Realtime stage's settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Model id. Default `gpt-realtime-mini`. With `[azure]` the deployment is connected to
    /// and `model` only names what it runs (in logs and price tables).
    #[serde(default = "default_model")]
    pub model: String,
    /// WebSocket endpoint without the query string. Default `wss://api.openai.com/v1/realtime`.
    /// Not with `[azure]`, whose endpoint makes the URL.
    #[serde(default = "default_url")]
    pub url: String,
    /// Azure OpenAI instead of OpenAI. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureConfig>,
    /// Environment variable holding the API key. Default `OPENAI_API_KEY`.
    #[serde(default = "default_api_key_env")]
    pub api_key_env: String,
    /// `ga` (default) or `beta`.
    #[serde(default)]
    pub protocol: Protocol,
    /// System instructions.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Voice: a name (OpenAI's are `alloy ash ballad coral echo sage shimmer verse marin
    /// cedar`; other servers have their own; a name voxpipe does not know is passed on with a
    /// warning) or a custom voice, `{ id = "voice_…" }`. Default `marin`.
    #[serde(default = "default_voice")]
    pub voice: Voice,
    /// Speech speed, 0.25..1.5 (GA only).
    #[serde(default)]
    pub speed: Option<f32>,
    /// Audio format on the wire: `pcm` (24 kHz, default), `pcmu`, `pcma`.
    #[serde(default)]
    pub audio_format: AudioFormat,
    /// Turn detection. Default server VAD.
    #[serde(default)]
    pub turn_detection: TurnDetection,
    /// Transcribe the caller's audio. Default off.
    #[serde(default)]
    pub transcription: Option<TranscriptionConfig>,
    /// Input noise reduction. Default off.
    #[serde(default)]
    pub noise_reduction: Option<NoiseReduction>,
    /// `auto` (default), `none`, `required`, or a tool name to force.
    #[serde(default = "default_tool_choice")]
    pub tool_choice: String,
    /// Output token cap per response (1..4096). Default: the provider's (`inf`).
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature (beta only; GA has none).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Audio per `input_audio_buffer.append` (20..100 ms). Default 100.
    #[serde(default = "default_append_ms")]
    pub append_ms: u32,
    /// Time allowed to connect and receive `session.created` (ms). Default 10000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// After the input ends, how long to wait for the last reply (ms). Default 15000.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// Connection attempts a call may spend on reconnecting after its session drops, in total
    /// (0..=10; 0 ends the call on a drop). Each new session gets the conversation so far.
    /// Default 3.
    #[serde(default = "default_reconnect_attempts")]
    pub reconnect_attempts: u32,
    /// While a reply is due, longest silence from the server before the session counts as
    /// lost and is replaced (ms, 1000..=120000). Default 15000.
    #[serde(default = "default_stall_timeout_ms")]
    pub stall_timeout_ms: u64,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            model: default_model(),
            url: default_url(),
            azure: None,
            api_key_env: default_api_key_env(),
            protocol: Protocol::Ga,
            instructions: None,
            voice: default_voice(),
            speed: None,
            audio_format: AudioFormat::Pcm,
            turn_detection: TurnDetection::default(),
            transcription: None,
            noise_reduction: None,
            tool_choice: default_tool_choice(),
            max_output_tokens: None,
            temperature: None,
            append_ms: default_append_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            drain_timeout_ms: default_drain_timeout_ms(),
            reconnect_attempts: default_reconnect_attempts(),
            stall_timeout_ms: default_stall_timeout_ms(),
        }
    }
}

/// A setting outside its valid range.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("`{key}`: expected {expected}, got {got}")]
pub struct InvalidSetting {
    /// Key within the stage.
    pub key: &'static str,
    /// What is allowed.
    pub expected: &'static str,
    /// What the file says.
    pub got: String,
}

const VOICES: &[&str] =
    &["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"];

impl RealtimeConfig {
    /// Settings that are valid but probably not what was meant, one sentence each.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.voice.is_known() {
            out.push(format!(
                "voice `{}` is not one of OpenAI's ({}); it is passed on, and a server that does not have it may refuse the session",
                self.voice.as_str(),
                VOICES.join(" ")
            ));
        }
        out
    }

    /// Checks ranges and enumerations the type system cannot.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |key, expected, got: String| Err(InvalidSetting { key, expected, got });
        if !(20..=100).contains(&self.append_ms) {
            return bad("append_ms", "20..=100", self.append_ms.to_string());
        }
        if self.voice.as_str().trim().is_empty() {
            return bad("voice", "a voice name or id", format!("{:?}", self.voice.as_str()));
        }
        if let Some(s) = self.speed.filter(|s| !(0.25..=1.5).contains(s)) {
            return bad("speed", "0.25..=1.5", s.to_string());
        }
        if let Some(m) = self.max_output_tokens.filter(|m| !(1..=4096).contains(m)) {
            return bad("max_output_tokens", "1..=4096", m.to_string());
        }
        if let TurnDetection::ServerVad { threshold, idle_timeout_ms, .. } = &self.turn_detection {
            if !(0.0..=1.0).contains(threshold) {
                return bad("turn_detection.threshold", "0..=1", threshold.to_string());
            }
            if let Some(t) = idle_timeout_ms.filter(|t| !(5000..=30000).contains(t)) {
                return bad("turn_detection.idle_timeout_ms", "5000..=30000", t.to_string());
            }
        }
        if !(1000..=120_000).contains(&self.stall_timeout_ms) {
            return bad("stall_timeout_ms", "1000..=120000", self.stall_timeout_ms.to_string());
        }
        if self.reconnect_attempts > 10 {
            return bad("reconnect_attempts", "0..=10", self.reconnect_attempts.to_string());
        }
        if !self.url.starts_with("ws://") && !self.url.starts_with("wss://") {
            return bad("url", "a ws:// or wss:// URL", self.url.clone());
        }
        if let Some(azure) = &self.azure {
            if self.url != default_url() {
                return bad("url", "no url with [azure] (its endpoint makes the URL)", self.url.clone());
            }
            let scheme_ok =
                ["https://", "http://", "wss://", "ws://"].iter().any(|p| azure.endpoint.starts_with(p));
            let rest = azure.endpoint.split_once("://").map_or("", |(_, r)| r).trim_end_matches('/');
            if !scheme_ok || rest.is_empty() || rest.contains(['/', '?', '#']) {
                return bad(
                    "azure.endpoint",
                    "the resource's endpoint, https://NAME.openai.azure.com",
                    azure.endpoint.clone(),
                );
            }
            let url_safe =
                |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !url_safe(&azure.deployment) {
                return bad(
                    "azure.deployment",
                    "a deployment name (letters, digits, - _ .)",
                    azure.deployment.clone(),
                );
            }
            if let Some(v) = &azure.api_version {
                if !url_safe(v) {
                    return bad("azure.api_version", "an API version like 2025-04-01-preview", v.clone());
                }
                if self.protocol != Protocol::Beta {
                    return bad(
                        "azure.api_version",
                        "protocol = \"beta\" with it (the preview API speaks beta), or no api_version for the v1 API",
                        v.clone(),
                    );
                }
            }
        }
        Ok(())
    }

    /// The WebSocket URL to connect to, with its query (no secrets: keys travel in headers).
    pub fn ws_url(&self) -> String {
        let Some(azure) = &self.azure else {
            let sep = if self.url.contains('?') { '&' } else { '?' };
            return format!("{}{sep}model={}", self.url, self.model);
        };
        let (scheme, rest) = azure.endpoint.split_once("://").unwrap_or(("https", &azure.endpoint));
        let scheme = if matches!(scheme, "http" | "ws") { "ws" } else { "wss" };
        let base = format!("{scheme}://{}", rest.trim_end_matches('/'));
        match &azure.api_version {
            Some(v) => format!("{base}/openai/realtime?api-version={v}&deployment={}", azure.deployment),
            None => format!("{base}/openai/v1/realtime?model={}", azure.deployment),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn azure(api_version: Option<&str>) -> RealtimeConfig {
        RealtimeConfig {
            protocol: if api_version.is_some() { Protocol::Beta } else { Protocol::Ga },
            azure: Some(AzureConfig {
                endpoint: "https://my-resource.openai.azure.com/".into(),
                deployment: "gpt-realtime".into(),
                api_version: api_version.map(str::to_string),
                auth: AzureAuth::ApiKey,
            }),
            ..RealtimeConfig::default()
        }
    }

    #[test]
    fn openai_and_both_azure_apis_have_their_own_url() {
        assert_eq!(
            RealtimeConfig::default().ws_url(),
            "wss://api.openai.com/v1/realtime?model=gpt-realtime-mini"
        );
        let v1 = azure(None);
        assert!(v1.validate().is_ok());
        assert_eq!(v1.ws_url(), "wss://my-resource.openai.azure.com/openai/v1/realtime?model=gpt-realtime");
        let preview = azure(Some("2025-04-01-preview"));
        assert!(preview.validate().is_ok());
        assert_eq!(
            preview.ws_url(),
            "wss://my-resource.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-realtime"
        );
        let mut local = azure(None);
        local.azure.as_mut().unwrap().endpoint = "http://127.0.0.1:8787".into();
        assert_eq!(local.ws_url(), "ws://127.0.0.1:8787/openai/v1/realtime?model=gpt-realtime");
    }

    #[test]
    fn azure_settings_are_checked_with_their_keys() {
        let key = |c: RealtimeConfig| c.validate().unwrap_err().key;
        let with = |f: fn(&mut AzureConfig)| {
            let mut c = azure(None);
            f(c.azure.as_mut().unwrap());
            c
        };
        assert_eq!(key(with(|a| a.endpoint = "my-resource.openai.azure.com".into())), "azure.endpoint");
        assert_eq!(
            key(with(|a| a.endpoint = "https://x.openai.azure.com/openai/v1".into())),
            "azure.endpoint"
        );
        assert_eq!(key(with(|a| a.deployment = "my deployment".into())), "azure.deployment");
        // The preview API speaks beta: a GA protocol with it is a mistake.
        let mut ga_preview = azure(Some("2025-04-01-preview"));
        ga_preview.protocol = Protocol::Ga;
        assert_eq!(key(ga_preview), "azure.api_version");
        let mut both = azure(None);
        both.url = "wss://example.com/v1/realtime".into();
        assert_eq!(key(both), "url");
        let toml_like = serde_json::json!({"azure": {"endpoint": "https://x.openai.azure.com", "deployment": "d", "auth": "entra"}});
        let c: RealtimeConfig = serde_json::from_value(toml_like).unwrap();
        assert_eq!(c.azure.unwrap().auth, AzureAuth::Entra);
    }
}
