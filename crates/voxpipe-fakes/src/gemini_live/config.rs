//! Configuration of the Gemini Live fake: scripted turns, pacing, VAD, `goAway` and faults.

use serde::{Deserialize, Serialize};

pub use crate::realtime::{FakeApiKey, VadConfig};

/// Everything the Gemini Live fake can be told. Every field has a default, so `{}` (or an
/// empty TOML file) is a valid configuration.
///
/// TOML shape (all keys optional):
/// ```toml
/// api_key = "fake-gemini-key"   # omit: any non-empty key is accepted
/// models = ["models/gemini-live-2.5-flash-preview"]   # omit: any `models/…`
/// first_audio_delay_ms = 200
/// delta_ms = 100
/// pace = 4.0
/// # go_away_after_ms = 30000
/// # go_away_time_left_ms = 10000
/// # faults = ["0=status:429", "1=cut-after:3"]   # by connection, 0 = the first
/// [vad]
/// threshold_dbfs = -40.0
/// [[responses]]
/// when = "weather"            # used when the caller's words contain this (text input)
/// user_transcript = "What's the weather in Paris?"
/// text = "Let me check."
/// [responses.function_call]
/// name = "get_weather"
/// args = { city = "Paris" }
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GeminiLiveFakeConfig {
    /// The API key the fake expects in `?key=` or `x-goog-api-key`. A made-up test value,
    /// never a real key. Default: none, meaning any non-empty key is accepted.
    #[serde(default)]
    pub api_key: Option<FakeApiKey>,
    /// The models `setup.model` may name (`models/…`). Default: empty, meaning any.
    #[serde(default)]
    pub models: Vec<String>,
    /// Scripted model turns. A turn whose `when` occurs in the caller's words (text input)
    /// is used for it; otherwise the turns without `when` are used in order, cycling, per
    /// session (a resumed session carries on where it stopped). Default: one friendly reply.
    #[serde(default = "default_responses")]
    pub responses: Vec<LiveScriptedResponse>,
    /// Time from the end of the caller's turn (or a tool response) to the first model
    /// output, in ms. Default 200.
    #[serde(default = "default_first_audio_delay_ms")]
    pub first_audio_delay_ms: u64,
    /// Audio per `modelTurn` message, in ms of audio. Default 100.
    #[serde(default = "default_delta_ms")]
    pub delta_ms: u64,
    /// Sending speed relative to real time: a message of `delta_ms` audio is sent every
    /// `delta_ms / pace` ms (Google also generates faster than real time). Default 4.0.
    #[serde(default = "default_pace")]
    pub pace: f64,
    /// The fake's energy VAD (automatic activity detection), shared with the Realtime fake.
    #[serde(default)]
    pub vad: VadConfig,
    /// Send `goAway` this long after `setupComplete` on every connection, in ms. Default:
    /// never.
    #[serde(default)]
    pub go_away_after_ms: Option<u64>,
    /// The `goAway.timeLeft` announced; the connection is closed (1011) when it has passed,
    /// in ms. Default 10000.
    #[serde(default = "default_go_away_time_left_ms")]
    pub go_away_time_left_ms: u64,
    /// Send server messages as text frames instead of binary ones. Google sends its JSON in
    /// binary frames (which is why the SDK reads them undecoded); default false.
    #[serde(default)]
    pub text_frames: bool,
    /// Faults by connection (0-based, in upgrade order), as `INDEX=KIND` specs
    /// ([`crate::fault`]) of the kinds in [`SUPPORTED_FAULTS`]. A chunk is a `modelTurn`
    /// message: `cut-after:N` drops the TCP connection (no close frame) after N of them,
    /// `stall-after:N` stops the turn after N (the socket stays open), `malformed` and
    /// `unknown-event` send one such message before chunk N (`oversize` a text part of that
    /// size), `slow:MS` spaces chunks at least MS apart, `status:CODE` refuses that upgrade
    /// with Google's error body.
    #[serde(
        default,
        with = "crate::fault::serde_list",
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub faults: crate::fault::Faults,
}

/// The fault kinds the Gemini Live fake implements.
pub const SUPPORTED_FAULTS: &[&str] =
    &["status", "stall-after", "cut-after", "malformed", "unknown-event", "slow", "oversize"];

impl Default for GeminiLiveFakeConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            models: Vec::new(),
            responses: default_responses(),
            first_audio_delay_ms: default_first_audio_delay_ms(),
            delta_ms: default_delta_ms(),
            pace: default_pace(),
            vad: VadConfig::default(),
            go_away_after_ms: None,
            go_away_time_left_ms: default_go_away_time_left_ms(),
            text_frames: false,
            faults: Default::default(),
        }
    }
}

impl GeminiLiveFakeConfig {
    /// The scripted turn for the caller's words `said` (text input), else the `n`th turn
    /// without `when` (cycling). Returns the turn and whether it used up an ordered one.
    pub(crate) fn response(&self, said: Option<&str>, n: usize) -> (LiveScriptedResponse, bool) {
        if let Some(said) = said.map(str::to_lowercase) {
            let keyed = self.responses.iter().find(|r| {
                r.when.as_deref().is_some_and(|w| !w.is_empty() && said.contains(&w.to_lowercase()))
            });
            if let Some(r) = keyed {
                return (r.clone(), false);
            }
        }
        let ordered: Vec<&LiveScriptedResponse> =
            self.responses.iter().filter(|r| r.when.is_none()).collect();
        match ordered.len() {
            0 => (default_responses().remove(0), true),
            len => (ordered[n % len].clone(), true),
        }
    }
}

/// One scripted model turn.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LiveScriptedResponse {
    /// Use this turn when the caller's text input contains these words (case-insensitive).
    /// Default: none (used in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// The model's words: spoken as audio (with `outputTranscription`) or sent as text parts
    /// in a TEXT session. May be empty for a turn that only calls a function.
    #[serde(default)]
    pub text: String,
    /// Length of the spoken audio, in ms. Default: 65 ms per character of `text`, at least
    /// 300 ms (none when `text` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_ms: Option<u64>,
    /// A function call made after the words (if any); the turn then waits for the
    /// `toolResponse` and goes on with the next scripted turn. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<LiveFunctionCall>,
    /// The `inputTranscription` text reported for the caller's audio turn this answers (when
    /// the session enables input transcription). Default: "(user speech)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_transcript: Option<String>,
}

impl LiveScriptedResponse {
    /// A plain spoken reply.
    pub fn say(text: impl Into<String>) -> Self {
        Self { when: None, text: text.into(), audio_ms: None, function_call: None, user_transcript: None }
    }

    /// A turn that only calls `name` with `args` (a JSON object); the fake picks the id.
    pub fn call(name: impl Into<String>, args: serde_json::Value) -> Self {
        Self { function_call: Some(LiveFunctionCall { name: name.into(), args, id: None }), ..Self::say("") }
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

/// A scripted function call.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LiveFunctionCall {
    /// The function name.
    pub name: String,
    /// The arguments (a JSON object; sent whole, Live does not stream them). Default `{}`.
    #[serde(default = "empty_object")]
    pub args: serde_json::Value,
    /// The call id. Default: generated (`fc_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}
fn default_responses() -> Vec<LiveScriptedResponse> {
    vec![LiveScriptedResponse::say(
        "Hello! I'm a local fake of the Gemini Live API. How can I help you today?",
    )]
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
fn default_go_away_time_left_ms() -> u64 {
    10_000
}
