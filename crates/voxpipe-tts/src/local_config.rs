//! Settings of the local voices (`tts.piper`, `tts.espeak`). They compile without the
//! `piper`/`espeak` features so a pipeline file can be checked by any build.

use crate::Error;
use crate::chunker::ChunkingConfig;
use crate::stage::StageOptions;
use serde::{Deserialize, Serialize};
use voxpipe_core::SampleRate;

/// Configuration of `tts.espeak`.
///
/// ```toml
/// [[stages]]
/// kind = "tts.espeak"
/// voice = "en-us"
/// rate_wpm = 175
/// pitch = 50
/// sample_rate = 24000
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EspeakConfig {
    /// espeak-ng voice name (`espeak-ng --voices` lists them), e.g. `en-us`, `en-gb`, `fr`.
    /// Default: `en-us`.
    #[serde(default = "espeak_defaults::voice")]
    pub voice: String,
    /// Speaking rate, words per minute, 80 to 450. Default: 175.
    #[serde(default = "espeak_defaults::rate_wpm")]
    pub rate_wpm: u32,
    /// Pitch, 0 to 100 (50 is the voice's normal pitch). Default: 50.
    #[serde(default = "espeak_defaults::pitch")]
    pub pitch: u32,
    /// Output sample rate in Hz; espeak-ng's 22,050 Hz audio is resampled. Default: 24000.
    #[serde(default = "espeak_defaults::sample_rate")]
    pub sample_rate: SampleRate,
    /// How replies are cut into chunks (`[stages.chunking]`). Default: see [`ChunkingConfig`].
    #[serde(default)]
    pub chunking: ChunkingConfig,
}

mod espeak_defaults {
    pub fn voice() -> String {
        "en-us".into()
    }
    pub fn rate_wpm() -> u32 {
        175
    }
    pub fn pitch() -> u32 {
        50
    }
    pub use crate::openai::defaults::sample_rate;
}

impl Default for EspeakConfig {
    fn default() -> Self {
        Self {
            voice: espeak_defaults::voice(),
            rate_wpm: espeak_defaults::rate_wpm(),
            pitch: espeak_defaults::pitch(),
            sample_rate: espeak_defaults::sample_rate(),
            chunking: ChunkingConfig::default(),
        }
    }
}

impl EspeakConfig {
    /// The stage settings.
    pub fn stage_options(&self) -> StageOptions {
        StageOptions { sample_rate: self.sample_rate, chunking: self.chunking }
    }
}

/// Configuration of `tts.piper`.
///
/// ```toml
/// [[stages]]
/// kind = "tts.piper"
/// voice = "piper-joe"       # or "/path/to/en_US-lessac-medium.onnx"
/// length_scale = 0.9        # a little faster
/// sentence_silence_ms = 150
/// sample_rate = 24000
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PiperConfig {
    /// Voice: a model id of the store (`piper-joe`) or the path of a Piper `.onnx` file with
    /// its `.onnx.json` beside it. Default: `piper-joe`.
    #[serde(default = "piper_defaults::voice")]
    pub voice: String,
    /// Speaker of a multi-speaker voice. Default: none (speaker 0 when the voice has several).
    #[serde(default)]
    pub speaker_id: Option<i64>,
    /// Phoneme duration multiplier: below 1 speaks faster, above 1 slower. Default: the
    /// voice's `inference.length_scale` (1.0).
    #[serde(default)]
    pub length_scale: Option<f32>,
    /// Generator noise (expressiveness). Default: the voice's `inference.noise_scale` (0.667).
    #[serde(default)]
    pub noise_scale: Option<f32>,
    /// Duration-predictor noise. Default: the voice's `inference.noise_w` (0.8).
    #[serde(default)]
    pub noise_w: Option<f32>,
    /// Silence appended after every sentence, ms. Default: 0.
    #[serde(default)]
    pub sentence_silence_ms: u32,
    /// Output sample rate in Hz; the voice's audio (22,050 Hz) is resampled. Default: 24000.
    #[serde(default = "piper_defaults::sample_rate")]
    pub sample_rate: SampleRate,
    /// How replies are cut into chunks (`[stages.chunking]`). Default: see [`ChunkingConfig`].
    #[serde(default)]
    pub chunking: ChunkingConfig,
    /// onnxruntime threads for the voice model (they never spin). Default: 1, which keeps
    /// Piper from competing with whisper and the LLM for a small machine's cores; more
    /// threads shorten each sentence's synthesis on idle cores. Voices loaded once per
    /// process: the first stage to load a voice sets it.
    #[serde(default = "piper_defaults::threads")]
    pub threads: u16,
}

mod piper_defaults {
    pub fn voice() -> String {
        "piper-joe".into()
    }
    pub fn threads() -> u16 {
        1
    }
    pub use crate::openai::defaults::sample_rate;
}

impl Default for PiperConfig {
    fn default() -> Self {
        Self {
            voice: piper_defaults::voice(),
            speaker_id: None,
            length_scale: None,
            noise_scale: None,
            noise_w: None,
            sentence_silence_ms: 0,
            sample_rate: piper_defaults::sample_rate(),
            chunking: ChunkingConfig::default(),
            threads: piper_defaults::threads(),
        }
    }
}

impl PiperConfig {
    /// The stage settings.
    pub fn stage_options(&self) -> StageOptions {
        StageOptions { sample_rate: self.sample_rate, chunking: self.chunking }
    }

    /// Checks ranges the type system cannot.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn check(&self) -> Result<(), Error> {
        for (field, value) in [
            ("length_scale", self.length_scale),
            ("noise_scale", self.noise_scale),
            ("noise_w", self.noise_w),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && (0.0..=10.0).contains(&v))
            {
                return Err(Error::Config { field, detail: format!("expected 0 to 10, got {v}") });
            }
        }
        if self.length_scale == Some(0.0) {
            return Err(Error::Config { field: "length_scale", detail: "must be > 0".into() });
        }
        if self.sample_rate == 0 {
            return Err(Error::Config { field: "sample_rate", detail: "must be > 0".into() });
        }
        Ok(())
    }
}
