//! `tts.piper`: a local Piper VITS voice on ONNX Runtime.
//!
//! Text → IPA phonemes from espeak-ng (the voice's `espeak.voice`), one string per sentence →
//! phoneme ids from the voice's `phoneme_id_map` → the VITS model (inputs `input`,
//! `input_lengths`, `scales`) → float audio at the voice's rate (22,050 Hz) → PCM16. Each
//! chunk the stage cuts is synthesized as soon as it arrives and each sentence goes out as soon
//! as the model returns it, so the first audio comes after one sentence's inference.
//!
//! Model files come from the model store: `voxpipe models pull piper-joe` and
//! `voxpipe models pull onnxruntime` (pulled on first use when missing).

mod ort_env;
pub mod voice;

pub use ort_env::init_onnxruntime;
pub use voice::{Scales, VoiceFile, VoiceModel};

use crate::Error;
use crate::espeak::{engine::Engine, engine_error, start_engine};
use crate::stage::TtsStage;
use crate::synth::{SynthEvent, Synthesizer, TextChunk};
use async_trait::async_trait;
use ort::environment::Environment;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use voxpipe_core::SampleRate;
use voxpipe_models::{ModelStore, NoProgress};

/// Stage name.
const NAME: &str = "tts.piper";
/// Model id of the default voice.
pub const DEFAULT_VOICE: &str = "piper-joe";
/// Model id of the ONNX Runtime library.
pub const ONNXRUNTIME_ID: &str = "onnxruntime";

pub use crate::local_config::PiperConfig;

/// The Piper synthesizer.
#[derive(Debug)]
pub struct Piper {
    config: PiperConfig,
    voice: Arc<VoiceFile>,
    model: Arc<VoiceModel>,
    espeak: &'static Engine,
    scales: Scales,
    speaker: Option<i64>,
}

/// One sentence's audio and how long the model took.
#[derive(Debug)]
pub struct SentenceAudio {
    /// PCM16 at the voice's rate, trailing sentence silence included.
    pub samples: Vec<i16>,
    /// Inference time.
    pub infer: std::time::Duration,
}

impl Piper {
    /// Resolves the voice and ONNX Runtime in the model store (pulling them on first use),
    /// loads them (once per process) and starts espeak-ng.
    ///
    /// # Errors
    /// [`Error::Config`] naming `voxpipe models pull piper-joe` / `voxpipe models pull
    /// onnxruntime` when a file is missing and cannot be fetched, or for bad settings.
    pub async fn new(config: PiperConfig) -> Result<Self, Error> {
        config.check()?;
        let store =
            ModelStore::from_env().map_err(|e| Error::Config { field: "voice", detail: e.to_string() })?;
        let model_path = resolve(&store, &config.voice, "voice", DEFAULT_VOICE).await?;
        let lib = resolve(&store, ONNXRUNTIME_ID, "onnxruntime", ONNXRUNTIME_ID).await?;
        let env = blocking(move || init_onnxruntime(&lib)).await?;
        Self::with_environment(config, &model_path, env).await
    }

    /// Builds a voice from the `.onnx` file at `model_path` (its `.onnx.json` beside it) on an
    /// ONNX Runtime environment created elsewhere in the process (or by [`init_onnxruntime`]).
    ///
    /// # Errors
    /// [`Error::Config`] for a missing or unreadable voice file, an unknown espeak-ng voice,
    /// or bad settings.
    pub async fn with_environment(
        config: PiperConfig,
        model_path: &Path,
        env: &Environment,
    ) -> Result<Self, Error> {
        config.check()?;
        if !model_path.is_file() {
            return Err(missing_voice(&model_path.display().to_string()));
        }
        let json = PathBuf::from(format!("{}.json", model_path.display()));
        let voice = Arc::new(blocking(move || VoiceFile::load(&json)).await?);
        let espeak = start_engine().await?;
        espeak
            .check_voice(&voice.espeak.voice)
            .await
            .map_err(|detail| Error::Config { field: "voice", detail })?;
        let (env, path, threads) = (env.clone(), model_path.to_path_buf(), config.threads);
        let started = Instant::now();
        let model = blocking(move || VoiceModel::load_shared(&env, &path, threads)).await?;
        info!(voice = %model_path.display(), ms = started.elapsed().as_millis() as u64, "Piper voice ready");
        let i = voice.inference;
        let scales = Scales {
            noise_scale: config.noise_scale.unwrap_or(i.noise_scale),
            length_scale: config.length_scale.unwrap_or(i.length_scale),
            noise_w: config.noise_w.unwrap_or(i.noise_w),
        };
        let speaker = (voice.num_speakers > 1).then(|| config.speaker_id.unwrap_or(0));
        Ok(Self { config, voice, model, espeak, scales, speaker })
    }

    /// The pipeline stage speaking through this synthesizer.
    pub fn into_stage(self) -> TtsStage<Self> {
        let opts = self.config.stage_options();
        TtsStage::new(self, opts)
    }

    /// The voice file's contents.
    pub fn voice(&self) -> &VoiceFile {
        &self.voice
    }

    /// The phonemes of `text`, one IPA string per sentence, as espeak-ng gives them.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when espeak-ng fails.
    pub async fn phonemize(&self, text: &str) -> Result<Vec<String>, Error> {
        self.espeak.phonemize(text, &self.voice.espeak.voice).await.map_err(engine_error(NAME))
    }

    /// Synthesizes one sentence's phonemes (from [`phonemize`](Self::phonemize)) on a
    /// blocking thread.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the model fails.
    pub async fn synthesize_phonemes(&self, phonemes: &str) -> Result<SentenceAudio, Error> {
        let (ids, missing) = self.voice.phoneme_ids(phonemes);
        if missing > 0 {
            warn!(missing, phonemes, "phonemes absent from the voice's map were skipped");
        }
        let (model, scales, speaker) = (self.model.clone(), self.scales, self.speaker);
        let silence = self.voice.audio.sample_rate as usize * self.config.sentence_silence_ms as usize / 1000;
        let started = std::time::Instant::now();
        let audio = tokio::task::spawn_blocking(move || model.infer(ids, scales, speaker))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(engine_error(NAME))?;
        let mut samples = voice::to_pcm16(&audio);
        samples.resize(samples.len() + silence, 0);
        Ok(SentenceAudio { samples, infer: started.elapsed() })
    }

    /// Synthesizes `text` at once (PCM16 at the voice's rate), outside a pipeline.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when espeak-ng or the model fails.
    pub async fn synthesize(&self, text: &str) -> Result<Vec<i16>, Error> {
        let mut out = Vec::new();
        for sentence in self.phonemize(text).await? {
            out.extend(self.synthesize_phonemes(&sentence).await?.samples);
        }
        Ok(out)
    }

    /// Speaks one chunk, sending each sentence's audio as soon as it is ready. False when the
    /// stage stopped listening.
    async fn speak_chunk(&self, text: &str, events: &mpsc::Sender<SynthEvent>) -> bool {
        let requested_at = Instant::now();
        let start = SynthEvent::SegmentStart { requested_at, text: Some(text.to_string()) };
        if events.send(start).await.is_err() {
            return false;
        }
        let sentences = match self.phonemize(text).await {
            Ok(s) => s,
            Err(e) => return events.send(SynthEvent::Failed(e)).await.is_ok(),
        };
        for phonemes in sentences {
            match self.synthesize_phonemes(&phonemes).await {
                Ok(SentenceAudio { samples, infer }) => {
                    let audio_s = samples.len() as f64 / f64::from(self.voice.audio.sample_rate);
                    debug!(
                        phonemes = phonemes.chars().count(),
                        infer_ms = infer.as_millis() as u64,
                        rtf = infer.as_secs_f64() / audio_s.max(1e-3),
                        "Piper sentence synthesized"
                    );
                    if events.send(SynthEvent::Audio { samples, alignment: None }).await.is_err() {
                        return false;
                    }
                }
                Err(e) => return events.send(SynthEvent::Failed(e)).await.is_ok(),
            }
        }
        events.send(SynthEvent::SegmentEnd).await.is_ok()
    }
}

#[async_trait]
impl Synthesizer for Piper {
    fn name(&self) -> &'static str {
        NAME
    }
    fn sample_rate(&self) -> SampleRate {
        self.voice.audio.sample_rate
    }
    async fn speak_reply(
        &self,
        mut text: mpsc::Receiver<TextChunk>,
        events: mpsc::Sender<SynthEvent>,
    ) -> Result<(), Error> {
        while let Some(chunk) = text.recv().await {
            if !chunk.text.is_empty() && !self.speak_chunk(&chunk.text, &events).await {
                return Ok(());
            }
            if chunk.is_last {
                break;
            }
        }
        Ok(())
    }
}

/// A model id or path from the store, pulled when it is a known id not yet installed.
async fn resolve(
    store: &ModelStore,
    name: &str,
    field: &'static str,
    pull_id: &str,
) -> Result<PathBuf, Error> {
    store.resolve_or_pull(name, &NoProgress).await.map_err(|e| {
        let hint = if field == "voice" { " or point `voice` at a Piper .onnx file" } else { "" };
        let detail = format!("{name}: {e}; run `voxpipe models pull {pull_id}`{hint}");
        Error::Config { field, detail }
    })
}

fn missing_voice(path: &str) -> Error {
    let detail = format!(
        "Piper voice file {path} not found: run `voxpipe models pull {DEFAULT_VOICE}` or point `voice` at a \
         Piper .onnx file (with its .onnx.json beside it)"
    );
    Error::Config { field: "voice", detail }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Error::Config { field: "voice", detail: format!("Piper start-up task failed: {e}") })
    })
}
