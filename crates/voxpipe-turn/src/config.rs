//! `[turn]`: who decides when the caller's turn starts and ends, and when speech interrupts.

use serde::{Deserialize, Serialize};

/// Who detects turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnMode {
    /// The provider's VAD decides (native only); voxpipe follows its events.
    Server,
    /// voxpipe's VAD and end-of-turn policy decide, for either pipeline kind.
    Local,
    /// Turns are delimited by explicit start/stop control events.
    PushToTalk,
}

/// Which VAD the local controller uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VadKind {
    /// Frame energy over an adaptive noise floor; no model. Default.
    #[default]
    Energy,
    /// Silero VAD (needs feature `silero` and `voxpipe models pull silero-vad onnxruntime`).
    Silero,
}

fn default_threshold() -> f32 {
    0.5
}
fn default_min_speech_ms() -> u32 {
    150
}
fn default_min_silence_ms() -> u32 {
    500
}
fn yes() -> bool {
    true
}
fn default_interrupt_min_speech_ms() -> u32 {
    300
}

/// `[turn.interruption]`: when caller speech interrupts the assistant.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterruptionConfig {
    /// Let the caller interrupt at all. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Speech needed before it interrupts (ms); shorter sounds (a cough, a click) do not.
    /// Default 300.
    #[serde(default = "default_interrupt_min_speech_ms")]
    pub min_speech_ms: u32,
}

impl Default for InterruptionConfig {
    fn default() -> Self {
        Self { enabled: true, min_speech_ms: default_interrupt_min_speech_ms() }
    }
}

/// `[turn]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TurnConfig {
    /// `server`, `local` or `push_to_talk`. Default: `server` for a Realtime stage whose
    /// `turn_detection` is a VAD, `local` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TurnMode>,
    /// `energy` (default) or `silero`.
    #[serde(default)]
    pub vad: VadKind,
    /// Speech probability that counts as speech, 0..1. Default 0.5.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Speech needed to start a turn (ms). Default 150.
    #[serde(default = "default_min_speech_ms")]
    pub min_speech_ms: u32,
    /// Silence that ends a turn (ms). Default 500.
    #[serde(default = "default_min_silence_ms")]
    pub min_silence_ms: u32,
    /// Interruption rules.
    #[serde(default)]
    pub interruption: InterruptionConfig,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            mode: None,
            vad: VadKind::Energy,
            threshold: default_threshold(),
            min_speech_ms: default_min_speech_ms(),
            min_silence_ms: default_min_silence_ms(),
            interruption: InterruptionConfig::default(),
        }
    }
}
