//! `tts.openai`: OpenAI `POST /audio/speech` with `response_format: "pcm"` (raw 24 kHz PCM16
//! LE mono, streamed in chunks), one request per text chunk.

use crate::Error;
use crate::chunker::ChunkingConfig;
use crate::codec::AudioDecoder;
use crate::http::{ChunkRequests, check_base_url, client, speak_chunks};
use crate::stage::{StageOptions, TtsStage};
use crate::synth::{SynthEvent, Synthesizer, TextChunk};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::mpsc;
use voxpipe_core::{SampleRate, Secret};

/// Rate of OpenAI's `pcm` format.
pub const OPENAI_PCM_RATE: SampleRate = 24_000;

/// A voice: a built-in name (`voice = "alloy"`) or a custom voice (`voice = { id = "voice_1234" }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SpeechVoice {
    /// `alloy`, `ash`, `ballad`, `coral`, `echo`, `fable`, `onyx`, `nova`, `sage`, `shimmer`,
    /// `verse`, `marin`, `cedar`.
    Builtin(String),
    /// A custom voice by id.
    Custom {
        /// The custom voice id, e.g. `voice_1234`.
        id: String,
    },
}

impl Default for SpeechVoice {
    fn default() -> Self {
        Self::Builtin("alloy".into())
    }
}

/// Configuration of `tts.openai`.
///
/// ```toml
/// [[stages]]
/// kind = "tts.openai"
/// model = "gpt-4o-mini-tts"
/// voice = "alloy"
/// instructions = "Speak warmly."
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSpeechConfig {
    /// API base URL, without `/audio/speech`. Default: `https://api.openai.com/v1`.
    #[serde(default = "defaults::base_url")]
    pub base_url: String,
    /// Environment variable holding the API key (sent as a Bearer token); unset for a server
    /// without auth. Default: `OPENAI_API_KEY`.
    #[serde(default = "defaults::api_key_env")]
    pub api_key_env: Option<String>,
    /// Model: `gpt-4o-mini-tts`, `tts-1`, `tts-1-hd`. Default: `gpt-4o-mini-tts`.
    #[serde(default = "defaults::model")]
    pub model: String,
    /// Voice. Default: `alloy`.
    #[serde(default)]
    pub voice: SpeechVoice,
    /// How to speak (tone, pace); not supported by `tts-1*`. Default: none.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Speaking speed, 0.25 to 4.0. Default: none (the provider's 1.0).
    #[serde(default)]
    pub speed: Option<f32>,
    /// Output sample rate in Hz; audio is resampled from 24 kHz when it differs. Default: 24000.
    #[serde(default = "defaults::sample_rate")]
    pub sample_rate: SampleRate,
    /// How replies are cut into chunks (`[stages.chunking]`). Default: see [`ChunkingConfig`].
    #[serde(default)]
    pub chunking: ChunkingConfig,
    /// Retries of a chunk's request on 429, 5xx and network errors before its audio starts.
    /// Default: 2.
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// Time allowed to connect and until the response headers arrive, and longest stall
    /// between body chunks, ms. Default: 10000.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
}

pub(crate) mod defaults {
    use voxpipe_core::SampleRate;
    pub fn base_url() -> String {
        "https://api.openai.com/v1".into()
    }
    pub fn api_key_env() -> Option<String> {
        Some("OPENAI_API_KEY".into())
    }
    pub fn model() -> String {
        "gpt-4o-mini-tts".into()
    }
    pub fn sample_rate() -> SampleRate {
        24_000
    }
    pub fn max_retries() -> u32 {
        2
    }
    pub fn request_timeout_ms() -> u64 {
        10_000
    }
}

impl Default for OpenAiSpeechConfig {
    fn default() -> Self {
        Self {
            base_url: defaults::base_url(),
            api_key_env: defaults::api_key_env(),
            model: defaults::model(),
            voice: SpeechVoice::default(),
            instructions: None,
            speed: None,
            sample_rate: defaults::sample_rate(),
            chunking: ChunkingConfig::default(),
            max_retries: defaults::max_retries(),
            request_timeout_ms: defaults::request_timeout_ms(),
        }
    }
}

impl OpenAiSpeechConfig {
    /// The stage settings.
    pub fn stage_options(&self) -> StageOptions {
        StageOptions { sample_rate: self.sample_rate, chunking: self.chunking }
    }
}

/// The OpenAI speech synthesizer.
#[derive(Debug)]
pub struct OpenAiSpeech {
    config: OpenAiSpeechConfig,
    key: Option<Secret>,
    url: String,
    client: reqwest::Client,
}

impl OpenAiSpeech {
    /// Checks `config` and builds the client. `key` is the value of `config.api_key_env`.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL, speed, sample rate, or `instructions` with `tts-1*`.
    pub fn new(config: OpenAiSpeechConfig, key: Option<Secret>) -> Result<Self, Error> {
        check_base_url("base_url", &config.base_url)?;
        if let Some(speed) = config.speed
            && !(0.25..=4.0).contains(&speed)
        {
            return Err(Error::Config {
                field: "speed",
                detail: format!("expected 0.25 to 4.0, got {speed}"),
            });
        }
        if config.instructions.is_some() && config.model.starts_with("tts-1") {
            let detail = format!("model {:?} does not support instructions; remove them", config.model);
            return Err(Error::Config { field: "instructions", detail });
        }
        if config.sample_rate == 0 {
            return Err(Error::Config { field: "sample_rate", detail: "must be > 0".into() });
        }
        let client = client(Duration::from_millis(config.request_timeout_ms))?;
        let url = format!("{}/audio/speech", config.base_url.trim_end_matches('/'));
        Ok(Self { config, key, url, client })
    }

    /// The pipeline stage speaking through this synthesizer.
    pub fn into_stage(self) -> TtsStage<Self> {
        let opts = self.config.stage_options();
        TtsStage::new(self, opts)
    }
}

impl ChunkRequests for OpenAiSpeech {
    fn provider(&self) -> &'static str {
        "tts.openai"
    }
    fn key_env(&self) -> &str {
        self.config.api_key_env.as_deref().unwrap_or("(none configured)")
    }
    fn max_retries(&self) -> u32 {
        self.config.max_retries
    }
    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }
    fn build(&self, text: &str, _previous: Option<&str>) -> reqwest::RequestBuilder {
        let c = &self.config;
        let mut body = serde_json::json!({
            "model": c.model,
            "input": text,
            "voice": c.voice,
            "response_format": "pcm",
        });
        if let Some(speed) = c.speed {
            body["speed"] = speed.into();
        }
        if let Some(instructions) = &c.instructions {
            body["instructions"] = instructions.as_str().into();
        }
        let req = self.client.post(&self.url).json(&body);
        match &self.key {
            Some(key) => req.bearer_auth(key.expose()),
            None => req,
        }
    }
    fn decoder(&self) -> AudioDecoder {
        AudioDecoder::pcm16()
    }
}

#[async_trait]
impl Synthesizer for OpenAiSpeech {
    fn name(&self) -> &'static str {
        "tts.openai"
    }
    fn sample_rate(&self) -> SampleRate {
        OPENAI_PCM_RATE
    }
    async fn speak_reply(
        &self,
        text: mpsc::Receiver<TextChunk>,
        events: mpsc::Sender<SynthEvent>,
    ) -> Result<(), Error> {
        speak_chunks(self, text, events).await
    }
}
