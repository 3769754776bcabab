//! The typed pipeline file.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use voxpipe_realtime::RealtimeConfig;
use voxpipe_tools::ToolConfig;
use voxpipe_transport::pcm::{StdinConfig, StdoutConfig};
use voxpipe_transport::wav::{WavInputConfig, WavOutputConfig};

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
    /// The stages, in order: one `realtime.*` stage, or `asr.*` → `llm.*` → `tts.*`.
    pub stages: Vec<StageConfig>,
    /// Tools the model may call, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, ToolConfig>,
}

/// `[input]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind")]
pub enum InputConfig {
    /// A WAV file.
    #[serde(rename = "wav")]
    Wav(WavInputConfig),
    /// Raw PCM16 LE on stdin.
    #[serde(rename = "stdin")]
    Stdin(StdinConfig),
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind")]
pub enum StageConfig {
    /// OpenAI Realtime speech-to-speech.
    #[serde(rename = "realtime.openai")]
    RealtimeOpenAi(RealtimeConfig),
}

impl StageConfig {
    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            StageConfig::RealtimeOpenAi(_) => "realtime.openai",
        }
    }
}
