//! The typed pipeline file.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use voxpipe_asr::{OpenAiTranscribeConfig, WhisperConfig};
use voxpipe_llm::{AnthropicConfig, GeminiConfig, OpenAiChatConfig};
use voxpipe_realtime::RealtimeConfig;
use voxpipe_tools::ToolConfig;
use voxpipe_transport::pcm::{StdinConfig, StdoutConfig};
use voxpipe_transport::wav::{WavInputConfig, WavOutputConfig};
use voxpipe_tts::{ElevenLabsConfig, EspeakConfig, OpenAiSpeechConfig, PiperConfig};
use voxpipe_turn::TurnConfig;

/// A whole pipeline file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Pipeline name (event log, reports).
    pub name: String,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the caller's audio comes from.
    pub input: InputConfig,
    /// Where the assistant's audio goes.
    pub output: OutputConfig,
    /// The event log. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsConfig>,
    /// Turn-taking and interruption. Default: server VAD for a Realtime stage that has one,
    /// the local controller otherwise.
    #[serde(default)]
    pub turn: TurnConfig,
    /// The stages, in order: one `realtime.*` stage, or `asr.*` → `llm.*` → `tts.*`.
    pub stages: Vec<StageConfig>,
    /// Tools the model may call, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, ToolConfig>,
    /// Settings for every tool that does not set its own (the pipeline's filler).
    #[serde(default)]
    pub tool_defaults: voxpipe_tools::ToolDefaults,
    /// Another pipeline file (relative to this one) whose `[turn]` and `[[stages]]` take the
    /// call over when a stage of this one fails; this file's input, output, event log and tools
    /// stay. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<std::path::PathBuf>,
    /// With a `fallback`: replies in a row that fail (a provider answering 5xx or 429 past its
    /// retries, turn after turn) before the fallback takes over although no stage died; 0
    /// waits for a stage to fail. Default 2.
    #[serde(default = "default_failed_turns")]
    pub fallback_after_failed_turns: u32,
    /// The `fallback` file, loaded with this one (not a key of the file).
    #[serde(skip)]
    pub fallback_pipeline: Option<Box<PipelineConfig>>,
}

fn default_failed_turns() -> u32 {
    voxpipe_core::DEFAULT_FAILED_TURNS
}

/// `[input]`, chosen by `kind` (deserialised by hand, as [`StageConfig`] is).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum InputConfig {
    /// A WAV file.
    #[serde(rename = "wav")]
    Wav(WavInputConfig),
    /// Raw PCM16 LE on stdin.
    #[serde(rename = "stdin")]
    Stdin(StdinConfig),
}

/// `[output]`, chosen by `kind` (deserialised by hand, as [`StageConfig`] is).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum OutputConfig {
    /// A WAV file on the conversation timeline.
    #[serde(rename = "wav")]
    Wav(WavOutputConfig),
    /// Raw PCM16 LE on stdout.
    #[serde(rename = "stdout")]
    Stdout(StdoutConfig),
}

/// `[events]`: the JSONL event log.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// The file (parent directories are created).
    pub path: PathBuf,
}

/// What a stage does in a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Speech in, speech out (a whole pipeline on its own).
    Native,
    /// Speech to text.
    Asr,
    /// Text to text (and tool calls).
    Llm,
    /// Text to speech.
    Tts,
}

impl Role {
    /// Its name for humans (`voxpipe check --kinds`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Native => "native",
            Role::Asr => "asr",
            Role::Llm => "llm",
            Role::Tts => "tts",
        }
    }
}

/// One row of the stage-kind table ([`STAGE_KINDS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageKind {
    /// The `kind` string of `[[stages]]`.
    pub name: &'static str,
    /// Its place in a pipeline.
    pub role: Role,
    /// The cargo feature of `voxpipe-config` (and of `voxpipe`) this build needs to run it.
    pub feature: Option<&'static str>,
    /// Whether this build has that feature (always, for a kind that needs none).
    pub built: bool,
    /// Whether it computes on this machine (its latency depends on the machine's load).
    pub local: bool,
    /// The `voxpipe fake` that speaks its provider's protocol, if one does.
    pub fake: Option<&'static str>,
    /// One line for humans.
    pub summary: &'static str,
}

impl StageKind {
    /// The row named `name`.
    pub fn get(name: &str) -> Option<&'static StageKind> {
        STAGE_KINDS.iter().find(|k| k.name == name)
    }
}

/// The closest of `known` to a mistyped `word`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The one table of stage kinds. Each row names the kind once and gives its variant of
/// [`StageConfig`], its config type, role, cargo feature (to run), whether it computes
/// locally, its fake and a summary; `StageConfig`, its (de)serialisation, [`StageConfig::kind`]
/// and [`STAGE_KINDS`] are generated from it. A row with `if <cfg>` exists as a variant only
/// when the cfg holds (its config type lives in an optional crate); otherwise loading it says
/// which feature to build with.
macro_rules! stage_kinds {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident($config:ty) = $name:literal, $role:ident
            $(, feature $feature:literal)? $(, if $gate:meta)?
            , local $local:literal, fake $fake:expr;
    )+) => {
        /// `[[stages]]`: one stage, chosen by `kind` (the variants are the rows of the
        /// stage-kind table).
        ///
        /// Deserialised by hand (kind first, then the provider's struct straight from the
        /// figment value) so that errors inside a stage keep their key path; serde's internally
        /// tagged enums buffer the content and lose it.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "kind")]
        pub enum StageConfig {
            $(
                $(#[doc = $doc])+
                $(#[cfg($gate)])?
                #[serde(rename = $name)]
                $variant($config),
            )+
        }

        impl StageConfig {
            /// The `kind` string.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( $(#[cfg($gate)])? StageConfig::$variant(_) => $name, )+
                }
            }

            /// Its row of the stage-kind table.
            pub fn row(&self) -> &'static StageKind {
                StageKind::get(self.kind()).expect("every variant has a row")
            }
        }

        /// Every stage `kind` the pipeline file accepts, whether or not this build can run it.
        pub const STAGE_KINDS: &[StageKind] = &[
            $(
                StageKind {
                    name: $name,
                    role: Role::$role,
                    feature: stage_kinds!(@opt $($feature)?),
                    built: stage_kinds!(@built $($feature)?),
                    local: $local,
                    fake: $fake,
                    summary: concat!($($doc),+),
                },
            )+
        ];

        /// The names of [`STAGE_KINDS`], in the same order.
        pub const STAGE_KIND_NAMES: &[&str] = &[$($name),+];

        impl<'de> Deserialize<'de> for StageConfig {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                use serde::de::Error;
                let (kind, mut value) = tagged(deserializer)?;
                let fallbacks = take_fallbacks(&kind, &mut value)?;
                match kind.as_str() {
                    $(
                        $name => {
                            $(
                                #[cfg(not($gate))]
                                return Err(D::Error::custom(format!(
                                    "`{}` needs a build with feature `{}`",
                                    $name,
                                    StageKind::get($name).and_then(|k| k.feature).unwrap_or("?")
                                )));
                            )?
                            $(#[cfg($gate)])?
                            return StageConfig::$variant(inner(&value)?).with_fallbacks(fallbacks);
                        }
                    )+
                    other => Err(D::Error::unknown_variant(other, STAGE_KIND_NAMES)),
                }
            }
        }
    };
    (@opt) => { None };
    (@opt $feature:literal) => { Some($feature) };
    (@built) => { true };
    (@built $feature:literal) => { cfg!(feature = $feature) };
}

stage_kinds! {
    /// OpenAI Realtime speech-to-speech over a WebSocket.
    RealtimeOpenAi(RealtimeConfig) = "realtime.openai", Native, local false, fake Some("realtime");
    /// Local whisper.cpp speech recognition.
    AsrWhisper(WhisperConfig) = "asr.whisper", Asr, feature "whisper", local true, fake None;
    /// OpenAI `/audio/transcriptions`.
    AsrOpenAi(OpenAiTranscribeConfig) = "asr.openai", Asr, local false, fake Some("transcription");
    /// OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp server, Groq…).
    LlmOpenAi(OpenAiChatConfig) = "llm.openai", Llm, local false, fake Some("llm");
    /// Anthropic Messages.
    LlmAnthropic(AnthropicConfig) = "llm.anthropic", Llm, local false, fake Some("anthropic");
    /// Gemini API `streamGenerateContent`.
    LlmGemini(GeminiConfig) = "llm.gemini", Llm, local false, fake Some("gemini");
    /// llama.cpp in a `voxpipe-llm-worker` process.
    LlmLocal(voxpipe_llm_local::LocalLlmConfig) = "llm.local", Llm, feature "llama", if feature = "llama",
        local true, fake None;
    /// OpenAI `/audio/speech`.
    TtsOpenAi(OpenAiSpeechConfig) = "tts.openai", Tts, local false, fake Some("tts");
    /// ElevenLabs text to speech (HTTP stream or stream-input WebSocket).
    TtsElevenLabs(ElevenLabsConfig) = "tts.elevenlabs", Tts, local false, fake Some("elevenlabs");
    /// A local Piper voice (onnxruntime).
    TtsPiper(PiperConfig) = "tts.piper", Tts, feature "piper", local true, fake None;
    /// A local espeak-ng voice.
    TtsEspeak(EspeakConfig) = "tts.espeak", Tts, feature "espeak", local true, fake None;
}

/// A table chosen by its `kind`: the kind, and the rest of the table as a figment value.
fn tagged<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<(String, figment::value::Value), D::Error> {
    use serde::de::Error;
    let mut value = <figment::value::Value as Deserialize>::deserialize(deserializer)?;
    let dict = match &mut value {
        figment::value::Value::Dict(_, d) => d,
        _ => return Err(D::Error::custom("expected a table with a `kind`")),
    };
    match dict.remove("kind") {
        Some(figment::value::Value::String(_, k)) => Ok((k, value)),
        Some(_) => Err(D::Error::custom("`kind` must be a string")),
        None => Err(D::Error::missing_field("kind")),
    }
}

/// The provider's struct straight from the figment value, so an error keeps its key path.
fn inner<T: serde::de::DeserializeOwned, E: serde::de::Error>(v: &figment::value::Value) -> Result<T, E> {
    v.deserialize::<T>().map_err(|e| {
        let e = e.into_iter().next().expect("a figment error holds at least one error");
        let path = e.path.join(".");
        match &e.kind {
            figment::error::Kind::UnknownField(f, expected) => E::unknown_field(f, expected),
            figment::error::Kind::MissingField(f) if path.is_empty() => {
                E::custom(format!("missing required key `{f}`"))
            }
            kind if path.is_empty() => E::custom(kind),
            kind => E::custom(format!("`{path}`: {kind}")),
        }
    })
}

/// [`inner`] for a table nested at `at` (`fallback.0`) inside a stage: the error names the key
/// below the stage ("`fallback.0.model`: …"), worded as the loader words a stage's own.
fn inner_at<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    at: &str,
    v: &figment::value::Value,
) -> Result<T, E> {
    v.deserialize::<T>().map_err(|e| {
        let e = e.into_iter().next().expect("a figment error holds at least one error");
        let mut path = vec![at.to_string()];
        path.extend(e.path.iter().cloned());
        let message = match &e.kind {
            // figment's path already ends with the unknown key.
            figment::error::Kind::UnknownField(_, expected) => {
                format!("unknown key, expected one of: {}", expected.join(", "))
            }
            figment::error::Kind::MissingField(f) => {
                path.push(f.to_string());
                "missing required key".to_string()
            }
            kind => kind.to_string(),
        };
        E::custom(format!("`{}`: {message}", path.join(".")))
    })
}

/// The kinds an LLM stage's `[[stages.fallback]]` entries may name.
const FALLBACK_KINDS: &[&str] = &["llm.openai", "llm.anthropic", "llm.gemini"];

/// Takes an LLM stage's `fallback` list out of its table and reads each entry by its `kind`
/// here rather than through serde's tagged enum, so an error names the entry's key
/// (`stages[1].fallback[0].model`). Other kinds keep the key, and refuse it as unknown.
fn take_fallbacks<E: serde::de::Error>(
    kind: &str,
    value: &mut figment::value::Value,
) -> Result<Option<Vec<voxpipe_llm::FallbackConfig>>, E> {
    use figment::value::Value;
    use voxpipe_llm::FallbackConfig;
    let Value::Dict(_, dict) = value else { return Ok(None) };
    if !FALLBACK_KINDS.contains(&kind) {
        return Ok(None);
    }
    let Some(list) = dict.remove("fallback") else { return Ok(None) };
    let Value::Array(_, entries) = list else {
        return Err(E::custom("`fallback`: expected a list of tables ([[stages.fallback]])"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for (j, mut entry) in entries.into_iter().enumerate() {
        let at = format!("fallback.{j}");
        let Value::Dict(_, d) = &mut entry else {
            return Err(E::custom(format!("`{at}`: expected a table with a `kind`")));
        };
        let kind = match d.remove("kind") {
            Some(Value::String(_, k)) => k,
            Some(_) => return Err(E::custom(format!("`{at}.kind`: must be a string"))),
            None => return Err(E::custom(format!("`{at}.kind`: missing required key"))),
        };
        out.push(match kind.as_str() {
            "llm.openai" => FallbackConfig::OpenAi(inner_at(&at, &entry)?),
            "llm.anthropic" => FallbackConfig::Anthropic(inner_at(&at, &entry)?),
            "llm.gemini" => FallbackConfig::Gemini(inner_at(&at, &entry)?),
            other => {
                let hint = did_you_mean(other, FALLBACK_KINDS)
                    .map(|k| format!("did you mean `{k}`? "))
                    .unwrap_or_default();
                return Err(E::custom(format!(
                    "`{at}.kind`: unknown kind `{other}`, {hint}expected one of: {}",
                    FALLBACK_KINDS.join(", ")
                )));
            }
        });
    }
    Ok(Some(out))
}

impl StageConfig {
    /// The stage with the fallback list [`take_fallbacks`] read (only LLM kinds have one).
    fn with_fallbacks<E: serde::de::Error>(
        mut self,
        fallbacks: Option<Vec<voxpipe_llm::FallbackConfig>>,
    ) -> Result<Self, E> {
        let Some(list) = fallbacks else { return Ok(self) };
        match &mut self {
            StageConfig::LlmOpenAi(c) => c.fallback = list,
            StageConfig::LlmAnthropic(c) => c.fallback = list,
            StageConfig::LlmGemini(c) => c.fallback = list,
            _ => return Err(E::custom("`fallback`: only an LLM stage has fallbacks")),
        }
        Ok(self)
    }
}

impl<'de> Deserialize<'de> for InputConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (kind, value) = tagged(deserializer)?;
        match kind.as_str() {
            "wav" => Ok(InputConfig::Wav(inner(&value)?)),
            "stdin" => Ok(InputConfig::Stdin(inner(&value)?)),
            other => Err(serde::de::Error::unknown_variant(other, &["wav", "stdin"])),
        }
    }
}

impl<'de> Deserialize<'de> for OutputConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (kind, value) = tagged(deserializer)?;
        match kind.as_str() {
            "wav" => Ok(OutputConfig::Wav(inner(&value)?)),
            "stdout" => Ok(OutputConfig::Stdout(inner(&value)?)),
            other => Err(serde::de::Error::unknown_variant(other, &["wav", "stdout"])),
        }
    }
}
