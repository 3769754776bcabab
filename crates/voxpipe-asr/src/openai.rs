//! The `asr.openai` stage: the same segmentation as the local whisper stage, with each
//! utterance sent to OpenAI's `POST /audio/transcriptions` as a 16 kHz PCM16 WAV file.

use crate::error::{Error, excerpt};
use crate::segment::{ASR_RATE, Decode, Pass, SegmentOptions, SegmentingStage};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use voxpipe_core::{CallContext, Inbox, Outbox, Secret, Stage, StageError};

const PROVIDER: &str = "asr.openai";

/// The largest response body read from the transcription endpoint, bytes: 4 MiB. A transcript
/// of one utterance is a few hundred bytes (even `verbose_json` of a whole 25 MB upload stays
/// well under a megabyte), so this only stops a broken or hostile server from making the
/// client buffer without bound.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Settings of the `asr.openai` stage.
///
/// ```toml
/// [[stages]]
/// kind = "asr.openai"
/// model = "gpt-4o-mini-transcribe"
/// api_key_env = "OPENAI_API_KEY"
/// language = "en"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiTranscribeConfig {
    /// API base URL, without a trailing `/audio/transcriptions`. Default:
    /// `https://api.openai.com/v1`.
    #[serde(default = "defaults::base_url")]
    pub base_url: String,
    /// Transcription model (`gpt-4o-mini-transcribe`, `gpt-4o-transcribe`, `whisper-1`).
    /// Default: `gpt-4o-mini-transcribe`.
    #[serde(default = "defaults::model")]
    pub model: String,
    /// Name of the environment variable holding the API key. Default: `OPENAI_API_KEY`.
    #[serde(default = "defaults::api_key_env")]
    pub api_key_env: String,
    /// ISO 639-1 language hint; unset lets the model detect it. Default: unset.
    #[serde(default)]
    pub language: Option<String>,
    /// Prompt to steer spelling and vocabulary. Default: unset.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Interim re-transcription interval in ms while the caller speaks; each one is a billed
    /// request. 0 disables interims. Default: 0.
    #[serde(default)]
    pub interim_interval_ms: u64,
    /// Audio kept from before the speech onset, in ms. Default: 300.
    #[serde(default = "defaults::prefix_ms")]
    pub prefix_ms: u64,
    /// Request timeout in ms. Default: 30000.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for OpenAiTranscribeConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field has a default")
    }
}

mod defaults {
    pub fn base_url() -> String {
        "https://api.openai.com/v1".into()
    }
    pub fn model() -> String {
        "gpt-4o-mini-transcribe".into()
    }
    pub fn api_key_env() -> String {
        "OPENAI_API_KEY".into()
    }
    pub fn prefix_ms() -> u64 {
        300
    }
    pub fn timeout_ms() -> u64 {
        30_000
    }
}

/// Wraps 16-bit mono PCM in a 44-byte RIFF/WAVE header.
pub fn wav_bytes(samples: &[i16], sample_rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    voxpipe_core::audio::pcm::encode_pcm16le(samples, &mut out);
    out
}

/// A client of OpenAI's transcription endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiTranscriber {
    cfg: OpenAiTranscribeConfig,
    key: Secret,
    url: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct TranscriptionBody {
    text: String,
}

impl OpenAiTranscriber {
    /// A client reading its key from `cfg.api_key_env`.
    ///
    /// # Errors
    /// [`Error::MissingKey`] if the variable is unset.
    pub fn new(cfg: &OpenAiTranscribeConfig) -> Result<Self, Error> {
        let key = Secret::from_env(&cfg.api_key_env, "api_key_env")?;
        Ok(Self::with_key(cfg, key))
    }

    /// A client with an explicit key.
    pub fn with_key(cfg: &OpenAiTranscribeConfig, key: Secret) -> Self {
        let settings = voxpipe_http::Settings {
            timeout: Some(Duration::from_millis(cfg.timeout_ms)),
            ..Default::default()
        };
        let client = voxpipe_http::client(settings).unwrap_or_default();
        let url = format!("{}/audio/transcriptions", cfg.base_url.trim_end_matches('/'));
        Self { cfg: cfg.clone(), key, url, client }
    }

    /// Transcribes 16 kHz mono PCM16 audio.
    ///
    /// # Errors
    /// [`Error::Http`] (unreachable, timeout), [`Error::Status`] (with the body's start),
    /// [`Error::BadResponse`].
    pub async fn transcribe(&self, audio: &[i16]) -> Result<String, Error> {
        let file = reqwest::multipart::Part::bytes(wav_bytes(audio, ASR_RATE))
            .file_name("audio.wav")
            .mime_str("audio/wav")
            .expect("a valid mime type");
        let mut form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", self.cfg.model.clone())
            .text("response_format", "json");
        if let Some(l) = &self.cfg.language {
            form = form.text("language", l.clone());
        }
        if let Some(p) = &self.cfg.prompt {
            form = form.text("prompt", p.clone());
        }
        let resp =
            self.client.post(&self.url).bearer_auth(self.key.expose()).multipart(form).send().await.map_err(
                |e| Error::Http {
                    provider: PROVIDER,
                    reason: e.without_url().to_string(),
                    url: self.url.clone(),
                },
            )?;
        let status = resp.status();
        let body = self.read_body(resp).await?;
        if !status.is_success() {
            return Err(Error::Status { provider: PROVIDER, status: status.as_u16(), body: excerpt(&body) });
        }
        let parsed: TranscriptionBody = serde_json::from_str(&body).map_err(|e| Error::BadResponse {
            provider: PROVIDER,
            reason: e.to_string(),
            body: excerpt(&body),
        })?;
        Ok(parsed.text)
    }
}

impl OpenAiTranscriber {
    /// The body as text (lossy UTF-8), read chunk by chunk up to [`MAX_BODY_BYTES`].
    async fn read_body(&self, mut resp: reqwest::Response) -> Result<String, Error> {
        let mut body = Vec::new();
        loop {
            let chunk = resp.chunk().await.map_err(|e| Error::Http {
                provider: PROVIDER,
                reason: e.without_url().to_string(),
                url: self.url.clone(),
            })?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Error::TooLarge { provider: PROVIDER, limit: MAX_BODY_BYTES });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

#[async_trait]
impl Decode for OpenAiTranscriber {
    async fn decode(&self, audio: Arc<[i16]>, _pass: Pass) -> Result<String, Error> {
        self.transcribe(&audio).await
    }
}

/// The `asr.openai` stage (see [`SegmentingStage`] for the frame contract).
#[derive(Debug)]
pub struct OpenAiTranscribeStage {
    inner: SegmentingStage<OpenAiTranscriber>,
}

impl OpenAiTranscribeStage {
    /// Builds the stage, reading the API key from the environment.
    pub fn new(cfg: &OpenAiTranscribeConfig) -> Result<Self, Error> {
        Ok(Self::with_client(cfg, OpenAiTranscriber::new(cfg)?))
    }

    /// Builds the stage around a client.
    pub fn with_client(cfg: &OpenAiTranscribeConfig, client: OpenAiTranscriber) -> Self {
        let opts = SegmentOptions {
            interim_interval: (cfg.interim_interval_ms > 0)
                .then(|| Duration::from_millis(cfg.interim_interval_ms)),
            prefix: Duration::from_millis(cfg.prefix_ms),
        };
        Self { inner: SegmentingStage::new(PROVIDER, Arc::new(client), opts) }
    }
}

#[async_trait]
impl Stage for OpenAiTranscribeStage {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn run(self: Box<Self>, ctx: CallContext, input: Inbox, out: Outbox) -> Result<(), StageError> {
        Box::new(self.inner).run(ctx, input, out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_header_describes_16_bit_mono() {
        let w = wav_bytes(&[1, -1, 300], 16_000);
        assert_eq!(w.len(), 44 + 6);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(w[4..8].try_into().unwrap()), 36 + 6);
        assert_eq!(&w[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes(w[24..28].try_into().unwrap()), 16_000);
        assert_eq!(u32::from_le_bytes(w[40..44].try_into().unwrap()), 6);
        let r = hound::WavReader::new(std::io::Cursor::new(w)).unwrap();
        assert_eq!((r.spec().channels, r.spec().bits_per_sample, r.spec().sample_rate), (1, 16, 16_000));
        assert_eq!(r.into_samples::<i16>().map(|s| s.unwrap()).collect::<Vec<_>>(), vec![1, -1, 300]);
    }

    #[test]
    fn config_defaults_match_the_docs() {
        let c = OpenAiTranscribeConfig::default();
        assert_eq!(c.base_url, "https://api.openai.com/v1");
        assert_eq!(c.model, "gpt-4o-mini-transcribe");
        assert_eq!(c.api_key_env, "OPENAI_API_KEY");
        assert_eq!((c.interim_interval_ms, c.prefix_ms, c.timeout_ms), (0, 300, 30_000));
    }
}
