//! `tts.elevenlabs`: ElevenLabs text-to-speech over the streaming HTTP endpoint (one request
//! per chunk) or the `stream-input` WebSocket (one socket per reply, with character alignment
//! for exact word timing).

mod ws;

pub use ws::{MAX_MESSAGE_BYTES, ServerReply, decode_server_message};

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

/// How text goes to ElevenLabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// `POST /text-to-speech/{voice_id}/stream`, one request per chunk.
    Http,
    /// `stream-input` WebSocket, one socket per reply, with alignment.
    #[default]
    Websocket,
}

/// Output formats this client decodes (the `output_format` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum OutputFormat {
    /// Raw PCM16 LE at 8 kHz.
    #[serde(rename = "pcm_8000")]
    Pcm8000,
    /// Raw PCM16 LE at 16 kHz.
    #[serde(rename = "pcm_16000")]
    Pcm16000,
    /// Raw PCM16 LE at 22.05 kHz.
    #[serde(rename = "pcm_22050")]
    Pcm22050,
    /// Raw PCM16 LE at 24 kHz.
    #[default]
    #[serde(rename = "pcm_24000")]
    Pcm24000,
    /// Raw PCM16 LE at 44.1 kHz.
    #[serde(rename = "pcm_44100")]
    Pcm44100,
    /// Raw PCM16 LE at 48 kHz.
    #[serde(rename = "pcm_48000")]
    Pcm48000,
    /// G.711 μ-law at 8 kHz (telephony).
    #[serde(rename = "ulaw_8000")]
    Ulaw8000,
}

impl OutputFormat {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pcm8000 => "pcm_8000",
            Self::Pcm16000 => "pcm_16000",
            Self::Pcm22050 => "pcm_22050",
            Self::Pcm24000 => "pcm_24000",
            Self::Pcm44100 => "pcm_44100",
            Self::Pcm48000 => "pcm_48000",
            Self::Ulaw8000 => "ulaw_8000",
        }
    }

    /// Sample rate of the decoded audio.
    pub fn sample_rate(self) -> SampleRate {
        match self {
            Self::Pcm8000 | Self::Ulaw8000 => 8_000,
            Self::Pcm16000 => 16_000,
            Self::Pcm22050 => 22_050,
            Self::Pcm24000 => 24_000,
            Self::Pcm44100 => 44_100,
            Self::Pcm48000 => 48_000,
        }
    }

    pub(crate) fn decoder(self) -> AudioDecoder {
        match self {
            Self::Ulaw8000 => AudioDecoder::Ulaw,
            _ => AudioDecoder::pcm16(),
        }
    }
}

/// Voice settings sent with each request (HTTP) or in the first message (WebSocket); unset
/// fields are left to the voice's stored settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceSettings {
    /// Stability, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stability: Option<f32>,
    /// Similarity boost, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity_boost: Option<f32>,
    /// Style exaggeration, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<f32>,
    /// Speaker boost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_speaker_boost: Option<bool>,
    /// Speed, 0.7 to 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f32>,
}

/// Configuration of `tts.elevenlabs`.
///
/// ```toml
/// [[stages]]
/// kind = "tts.elevenlabs"
/// voice_id = "21m00Tcm4TlvDq8ikWAM"
/// transport = "websocket"
/// output_format = "ulaw_8000"
/// sample_rate = 8000
/// voice_settings = { stability = 0.5, similarity_boost = 0.8 }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ElevenLabsConfig {
    /// HTTP API base URL. Default: `https://api.elevenlabs.io/v1`.
    #[serde(default = "defaults::base_url")]
    pub base_url: String,
    /// WebSocket API base URL. Default: `wss://api.elevenlabs.io/v1`.
    #[serde(default = "defaults::ws_url")]
    pub ws_url: String,
    /// Environment variable holding the API key (`xi-api-key`). Default: `ELEVENLABS_API_KEY`.
    #[serde(default = "defaults::api_key_env")]
    pub api_key_env: String,
    /// Voice id (premade, cloned or designed voices alike). Required.
    pub voice_id: String,
    /// Model. Default: `eleven_flash_v2_5`.
    #[serde(default = "defaults::model_id")]
    pub model_id: String,
    /// `http` or `websocket`. Default: `websocket`.
    #[serde(default)]
    pub transport: Transport,
    /// `pcm_8000`, `pcm_16000`, `pcm_22050`, `pcm_24000`, `pcm_44100`, `pcm_48000` or
    /// `ulaw_8000`. Default: `pcm_24000`.
    #[serde(default)]
    pub output_format: OutputFormat,
    /// Voice settings. Default: the voice's stored settings.
    #[serde(default)]
    pub voice_settings: Option<VoiceSettings>,
    /// ISO 639-1 language to enforce (Flash/Turbo v2.5). Default: none.
    #[serde(default)]
    pub language_code: Option<String>,
    /// Output sample rate in Hz; audio is resampled when it differs from the format's. Default:
    /// 24000.
    #[serde(default = "defaults::sample_rate")]
    pub sample_rate: SampleRate,
    /// WebSocket only: characters buffered before each generation (`generation_config`), each
    /// 50 to 500. Default: the service's `[120, 160, 250, 290]`.
    #[serde(default)]
    pub chunk_length_schedule: Option<Vec<u32>>,
    /// How replies are cut into chunks (`[stages.chunking]`). Default: see [`ChunkingConfig`].
    #[serde(default)]
    pub chunking: ChunkingConfig,
    /// Retries on 429, 5xx and network errors before audio starts. Default: 2.
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// Time allowed to connect and for the response headers or handshake, and longest stall
    /// between HTTP body chunks, ms. Default: 10000.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
}

mod defaults {
    pub use crate::openai::defaults::{max_retries, request_timeout_ms, sample_rate};
    pub fn base_url() -> String {
        "https://api.elevenlabs.io/v1".into()
    }
    pub fn ws_url() -> String {
        "wss://api.elevenlabs.io/v1".into()
    }
    pub fn api_key_env() -> String {
        "ELEVENLABS_API_KEY".into()
    }
    pub fn model_id() -> String {
        "eleven_flash_v2_5".into()
    }
}

impl ElevenLabsConfig {
    /// A configuration with every default and this voice.
    pub fn with_voice(voice_id: impl Into<String>) -> Self {
        Self {
            base_url: defaults::base_url(),
            ws_url: defaults::ws_url(),
            api_key_env: defaults::api_key_env(),
            voice_id: voice_id.into(),
            model_id: defaults::model_id(),
            transport: Transport::default(),
            output_format: OutputFormat::default(),
            voice_settings: None,
            language_code: None,
            sample_rate: defaults::sample_rate(),
            chunk_length_schedule: None,
            chunking: ChunkingConfig::default(),
            max_retries: defaults::max_retries(),
            request_timeout_ms: defaults::request_timeout_ms(),
        }
    }

    /// The stage settings.
    pub fn stage_options(&self) -> StageOptions {
        StageOptions { sample_rate: self.sample_rate, chunking: self.chunking }
    }
}

/// The ElevenLabs synthesizer.
#[derive(Debug)]
pub struct ElevenLabs {
    config: ElevenLabsConfig,
    key: Secret,
    stream_url: url::Url,
    ws_url: url::Url,
    client: reqwest::Client,
}

impl ElevenLabs {
    /// Checks `config` and builds the client. `key` is the value of `config.api_key_env`.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty voice id, a bad URL, sample rate or chunk schedule.
    pub fn new(config: ElevenLabsConfig, key: Secret) -> Result<Self, Error> {
        let voice = config.voice_id.trim();
        if voice.is_empty() || voice.contains('/') {
            return Err(Error::Config {
                field: "voice_id",
                detail: format!("expected a voice id, got {voice:?}"),
            });
        }
        if config.sample_rate == 0 {
            return Err(Error::Config { field: "sample_rate", detail: "must be > 0".into() });
        }
        if let Some(s) = &config.chunk_length_schedule
            && (s.is_empty() || s.iter().any(|&n| !(50..=500).contains(&n)))
        {
            let detail = format!("expected a non-empty list of 50 to 500, got {s:?}");
            return Err(Error::Config { field: "chunk_length_schedule", detail });
        }
        let base = check_base_url("base_url", &config.base_url)?;
        let mut stream_url = base.clone();
        stream_url
            .path_segments_mut()
            .map_err(|()| Error::Config { field: "base_url", detail: "cannot be a base URL".into() })?
            .pop_if_empty()
            .extend(["text-to-speech", voice, "stream"]);
        stream_url.query_pairs_mut().append_pair("output_format", config.output_format.as_str());
        let ws_url = ws::stream_input_url(&config)?;
        // wss needs a rustls crypto provider; ignore "already installed".
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = client(Duration::from_millis(config.request_timeout_ms))?;
        Ok(Self { config, key, stream_url, ws_url, client })
    }

    /// The pipeline stage speaking through this synthesizer.
    pub fn into_stage(self) -> TtsStage<Self> {
        let opts = self.config.stage_options();
        TtsStage::new(self, opts)
    }
}

impl ChunkRequests for ElevenLabs {
    fn provider(&self) -> &'static str {
        "tts.elevenlabs"
    }
    fn key_env(&self) -> &str {
        &self.config.api_key_env
    }
    fn max_retries(&self) -> u32 {
        self.config.max_retries
    }
    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }
    fn build(&self, text: &str, previous: Option<&str>) -> reqwest::RequestBuilder {
        let c = &self.config;
        let mut body = serde_json::json!({ "text": text, "model_id": c.model_id });
        if let Some(vs) = &c.voice_settings {
            body["voice_settings"] = serde_json::to_value(vs).unwrap_or_default();
        }
        if let Some(lang) = &c.language_code {
            body["language_code"] = lang.as_str().into();
        }
        if let Some(prev) = previous {
            body["previous_text"] = prev.into();
        }
        self.client.post(self.stream_url.clone()).header("xi-api-key", self.key.expose()).json(&body)
    }
    fn decoder(&self) -> AudioDecoder {
        self.config.output_format.decoder()
    }
}

#[async_trait]
impl Synthesizer for ElevenLabs {
    fn name(&self) -> &'static str {
        "tts.elevenlabs"
    }
    fn sample_rate(&self) -> SampleRate {
        self.config.output_format.sample_rate()
    }
    async fn speak_reply(
        &self,
        text: mpsc::Receiver<TextChunk>,
        events: mpsc::Sender<SynthEvent>,
    ) -> Result<(), Error> {
        match self.config.transport {
            Transport::Http => speak_chunks(self, text, events).await,
            Transport::Websocket => ws::speak_reply(self, text, events).await,
        }
    }
}
