//! `[[stages]] kind = "realtime.openai"`: the Realtime session as the pipeline file declares it.

use serde::{Deserialize, Serialize};

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
    /// Model id. Default `gpt-realtime-mini`.
    #[serde(default = "default_model")]
    pub model: String,
    /// WebSocket endpoint without the query string. Default `wss://api.openai.com/v1/realtime`.
    #[serde(default = "default_url")]
    pub url: String,
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
        Ok(())
    }
}
