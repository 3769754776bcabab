//! Configuration of the Realtime fake: scripted answers, pacing, VAD and fault knobs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Everything the Realtime fake can be told. Every field has a default, so `{}` (or an empty
/// TOML file) is a valid configuration.
///
/// TOML shape (all keys optional):
/// ```toml
/// api_key = "sk-test"          # omit: any non-empty bearer token is accepted
/// first_audio_delay_ms = 200
/// delta_ms = 100
/// pace = 4.0
/// # close_after_audio_deltas = 3
/// # reject_with_status = 503
/// # faults = ["0=status:429:retry-after=1", "1=cut-after:3"]   # by connection, 0 = first
/// [vad]
/// threshold_dbfs = -40.0
/// [[responses]]
/// text = "Sure, let me check."
/// user_transcript = "What's the weather in Paris?"
/// [responses.function_call]
/// name = "get_weather"
/// arguments = '{"city":"Paris"}'
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeFakeConfig {
    /// The API key the fake expects in `Authorization: Bearer …` (or the
    /// `openai-insecure-api-key.…` sub-protocol). A made-up test value, never a real key.
    /// Default: none, meaning any non-empty bearer token is accepted.
    #[serde(default)]
    pub api_key: Option<FakeApiKey>,
    /// Scripted model responses, used in order for each response of a connection and cycled
    /// when exhausted. Default: one friendly reply.
    #[serde(default = "default_responses")]
    pub responses: Vec<ScriptedResponse>,
    /// Time from `response.created` to the first audio (or text) delta, in ms. Default 200.
    #[serde(default = "default_first_audio_delay_ms")]
    pub first_audio_delay_ms: u64,
    /// Audio per output delta, in ms of audio. Default 100.
    #[serde(default = "default_delta_ms")]
    pub delta_ms: u64,
    /// Sending speed relative to real time: a delta of `delta_ms` audio is sent every
    /// `delta_ms / pace` ms. Default 4.0 (the real service also sends faster than real time).
    #[serde(default = "default_pace")]
    pub pace: f64,
    /// The fake's energy VAD.
    #[serde(default)]
    pub vad: VadConfig,
    /// Fault: close the TCP connection abruptly (no close frame) once this many audio deltas
    /// have been sent on a connection. Default: never.
    #[serde(default)]
    pub close_after_audio_deltas: Option<u32>,
    /// The connections (1-based, in accept order) that `close_after_audio_deltas` applies to;
    /// empty (default) means every one. `[1]` drops the first session only, so a client that
    /// reconnects gets a healthy second one.
    #[serde(default)]
    pub fault_connections: Vec<usize>,
    /// Fault: reject every WebSocket upgrade with this HTTP status and an OpenAI-shaped error
    /// body. Default: none.
    #[serde(default)]
    pub reject_with_status: Option<u16>,
    /// Faults by connection (0-based, in upgrade order), as `INDEX=KIND` specs
    /// ([`crate::fault`]) of the kinds in [`SUPPORTED_FAULTS`]. A chunk is an audio delta:
    /// `cut-after:N` drops the TCP connection (no close frame) after N deltas, `stall-after:N`
    /// stops the response after N deltas (the socket stays open), `malformed`,
    /// `unknown-event` and `oversize` send one such server event before delta N, `slow:MS`
    /// spaces deltas at least MS apart, `status` refuses that upgrade. Default: none.
    #[serde(
        default,
        with = "crate::fault::serde_list",
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub faults: crate::fault::Faults,
    /// Behave like an independent OpenAI-compatible server (speaches and the like) instead of
    /// OpenAI: see [`CompatibleConfig`]. Default: off (OpenAI's behaviour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatible: Option<CompatibleConfig>,
}

/// How an independent server that speaks the beta dialect differs from OpenAI, as met in the
/// field (speaches). With this set the fake:
/// - speaks the beta dialect on every connection, with or without `OpenAI-Beta`;
/// - counts `audio_start_ms` / `audio_end_ms` from the start of the current input buffer (each
///   turn's), not of the session, and reports the end of speech without the silence after it;
/// - answers each session field it does not support (`input_audio_format`,
///   `output_audio_format`, `turn_detection.prefix_padding_ms`) with an `error` event that has
///   no `code`, ignores the field and still sends `session.updated`; takes any voice name;
/// - does not truncate: `conversation.item.truncate` gets an `error` and the item stays whole;
/// - sends a reply's audio in bursts (sentence by sentence), leaving the client without audio
///   for `burst_gap_ms` between them;
/// - sends the caller's transcript after the reply to it.
///
/// TOML: `[compatible]` (all keys optional).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompatibleConfig {
    /// Audio per burst, in ms of audio. Default 1000.
    #[serde(default = "default_burst_ms")]
    pub burst_ms: u64,
    /// How long the client runs out of audio between bursts: the next burst starts this long
    /// after the previous one would have finished playing, in ms. Default 600.
    #[serde(default = "default_burst_gap_ms")]
    pub burst_gap_ms: u64,
}

impl Default for CompatibleConfig {
    fn default() -> Self {
        Self { burst_ms: default_burst_ms(), burst_gap_ms: default_burst_gap_ms() }
    }
}

fn default_burst_ms() -> u64 {
    1000
}
fn default_burst_gap_ms() -> u64 {
    600
}

/// The fault kinds the Realtime fake implements.
pub const SUPPORTED_FAULTS: &[&str] =
    &["status", "stall-after", "cut-after", "malformed", "unknown-event", "slow", "oversize"];

impl Default for RealtimeFakeConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            responses: default_responses(),
            first_audio_delay_ms: default_first_audio_delay_ms(),
            delta_ms: default_delta_ms(),
            pace: default_pace(),
            vad: VadConfig::default(),
            close_after_audio_deltas: None,
            fault_connections: Vec::new(),
            reject_with_status: None,
            faults: Default::default(),
            compatible: None,
        }
    }
}

impl RealtimeFakeConfig {
    /// The scripted response for the `n`th model response of a connection (cycling).
    pub(crate) fn response(&self, n: usize) -> ScriptedResponse {
        if self.responses.is_empty() {
            return default_responses().remove(0);
        }
        self.responses[n % self.responses.len()].clone()
    }
}

/// The API key the fake expects. Serialises as a plain string; `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct FakeApiKey(pub String);

impl fmt::Debug for FakeApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<&str> for FakeApiKey {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// One scripted model response.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedResponse {
    /// The assistant's words (the audio transcript, or the text in text mode). May be empty
    /// for a response that only calls a function.
    #[serde(default)]
    pub text: String,
    /// Length of the generated audio, in ms. Default: 65 ms per character of `text`, at least
    /// 300 ms (no audio at all when `text` is empty).
    #[serde(default)]
    pub audio_ms: Option<u64>,
    /// A function call made after the text (if any). Default: none.
    #[serde(default)]
    pub function_call: Option<ScriptedFunctionCall>,
    /// The input-transcription text reported for the user turn that triggered this response
    /// (when the session enables input transcription). Default: "(user speech)".
    #[serde(default)]
    pub user_transcript: Option<String>,
}

impl ScriptedResponse {
    /// A plain spoken reply.
    pub fn say(text: impl Into<String>) -> Self {
        Self { text: text.into(), audio_ms: None, function_call: None, user_transcript: None }
    }

    /// A response that only calls `name` with `arguments` (JSON text); the fake picks the
    /// call id unless [`with_call_id`](Self::with_call_id) sets one.
    pub fn call(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        let call = ScriptedFunctionCall { name: name.into(), arguments: arguments.into(), call_id: None };
        Self { function_call: Some(call), ..Self::say("") }
    }

    /// The same response with its function call's id set.
    pub fn with_call_id(mut self, id: impl Into<String>) -> Self {
        if let Some(call) = &mut self.function_call {
            call.call_id = Some(id.into());
        }
        self
    }

    /// Audio length in ms for this response.
    pub(crate) fn audio_len_ms(&self) -> u64 {
        if self.text.is_empty() && self.audio_ms.is_none() {
            return 0;
        }
        self.audio_ms.unwrap_or_else(|| (self.text.chars().count() as u64 * 65).max(300))
    }

    /// Whether this response carries an assistant message.
    pub(crate) fn has_message(&self) -> bool {
        !self.text.is_empty() || self.function_call.is_none()
    }
}

/// A scripted function call.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedFunctionCall {
    /// The function name.
    pub name: String,
    /// The arguments, a JSON document as a string (sent in ~5-character fragments).
    pub arguments: String,
    /// The call id. Default: generated (`call_…`).
    #[serde(default)]
    pub call_id: Option<String>,
}

/// The fake's energy VAD: a 20 ms window is speech when its RMS level is above the threshold.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VadConfig {
    /// Level in dBFS that a window must exceed when the session's `threshold` is 0.5. The
    /// session threshold shifts it by 40 dB per unit (threshold 0.9 needs -24 dBFS). Default -40.
    #[serde(default = "default_threshold_dbfs")]
    pub threshold_dbfs: f32,
    /// Consecutive speech windows (20 ms each) needed to declare speech. Default 2.
    #[serde(default = "default_min_speech_windows")]
    pub min_speech_windows: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self { threshold_dbfs: default_threshold_dbfs(), min_speech_windows: default_min_speech_windows() }
    }
}

fn default_responses() -> Vec<ScriptedResponse> {
    vec![ScriptedResponse::say("Hello! I'm a local fake of the realtime model. How can I help you today?")]
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
fn default_threshold_dbfs() -> f32 {
    -40.0
}
fn default_min_speech_windows() -> u32 {
    2
}
