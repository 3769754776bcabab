//! The typed pipeline file.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use voxpipe_asr::{OpenAiTranscribeConfig, WhisperConfig};
use voxpipe_llm::{AnthropicConfig, OpenAiChatConfig};
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

/// `[[stages]]`: one stage, chosen by `kind`.
///
/// Deserialised by hand (kind first, then the provider's struct straight from the figment
/// value) so that errors inside a stage keep their key path; serde's internally tagged enums
/// buffer the content and lose it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum StageConfig {
    /// OpenAI Realtime speech-to-speech.
    #[serde(rename = "realtime.openai")]
    RealtimeOpenAi(RealtimeConfig),
    /// Local whisper.cpp ASR.
    #[serde(rename = "asr.whisper")]
    AsrWhisper(WhisperConfig),
    /// OpenAI `/audio/transcriptions`.
    #[serde(rename = "asr.openai")]
    AsrOpenAi(OpenAiTranscribeConfig),
    /// OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp server, Groq…).
    #[serde(rename = "llm.openai")]
    LlmOpenAi(OpenAiChatConfig),
    /// Anthropic Messages.
    #[serde(rename = "llm.anthropic")]
    LlmAnthropic(AnthropicConfig),
    /// llama.cpp in a `voxpipe-llm-worker` process (feature `llama`).
    #[cfg(feature = "llama")]
    #[serde(rename = "llm.local")]
    LlmLocal(voxpipe_llama::LocalLlmConfig),
    /// OpenAI `/audio/speech`.
    #[serde(rename = "tts.openai")]
    TtsOpenAi(OpenAiSpeechConfig),
    /// ElevenLabs (HTTP stream or stream-input WebSocket).
    #[serde(rename = "tts.elevenlabs")]
    TtsElevenLabs(ElevenLabsConfig),
    /// Local Piper voice (onnxruntime).
    #[serde(rename = "tts.piper")]
    TtsPiper(PiperConfig),
    /// Local espeak-ng voice.
    #[serde(rename = "tts.espeak")]
    TtsEspeak(EspeakConfig),
}

impl StageConfig {
    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            StageConfig::RealtimeOpenAi(_) => "realtime.openai",
            StageConfig::AsrWhisper(_) => "asr.whisper",
            StageConfig::AsrOpenAi(_) => "asr.openai",
            StageConfig::LlmOpenAi(_) => "llm.openai",
            StageConfig::LlmAnthropic(_) => "llm.anthropic",
            #[cfg(feature = "llama")]
            StageConfig::LlmLocal(_) => "llm.local",
            StageConfig::TtsOpenAi(_) => "tts.openai",
            StageConfig::TtsElevenLabs(_) => "tts.elevenlabs",
            StageConfig::TtsPiper(_) => "tts.piper",
            StageConfig::TtsEspeak(_) => "tts.espeak",
        }
    }
}

/// Every stage `kind` this build can parse.
pub const STAGE_KINDS: &[&str] = &[
    "realtime.openai",
    "asr.whisper",
    "asr.openai",
    "llm.openai",
    "llm.anthropic",
    "tts.openai",
    "tts.elevenlabs",
];

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

impl<'de> Deserialize<'de> for StageConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let (kind, value) = tagged(deserializer)?;
        match kind.as_str() {
            "realtime.openai" => Ok(StageConfig::RealtimeOpenAi(inner(&value)?)),
            "asr.whisper" => Ok(StageConfig::AsrWhisper(inner(&value)?)),
            "asr.openai" => Ok(StageConfig::AsrOpenAi(inner(&value)?)),
            "llm.openai" => Ok(StageConfig::LlmOpenAi(inner(&value)?)),
            "llm.anthropic" => Ok(StageConfig::LlmAnthropic(inner(&value)?)),
            #[cfg(feature = "llama")]
            "llm.local" => Ok(StageConfig::LlmLocal(inner(&value)?)),
            #[cfg(not(feature = "llama"))]
            "llm.local" => Err(D::Error::custom("`llm.local` needs a build with feature `llama`")),
            "tts.openai" => Ok(StageConfig::TtsOpenAi(inner(&value)?)),
            "tts.elevenlabs" => Ok(StageConfig::TtsElevenLabs(inner(&value)?)),
            "tts.piper" => Ok(StageConfig::TtsPiper(inner(&value)?)),
            "tts.espeak" => Ok(StageConfig::TtsEspeak(inner(&value)?)),
            other => Err(D::Error::unknown_variant(other, STAGE_KINDS)),
        }
    }
}
