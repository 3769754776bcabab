//! whisper.cpp inference (feature `whisper`).

use super::{AudioCtx, WhisperConfig, clean_text};
use crate::error::Error;
use crate::segment::{Decode, Pass, SegmentOptions, SegmentingStage};
use async_trait::async_trait;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::debug;
use voxpipe_core::audio::pcm::i16_to_f32;
use voxpipe_core::{CallContext, Inbox, Outbox, Stage, StageError};
use voxpipe_models::{ModelStore, Progress};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState};

/// whisper.cpp skips input shorter than 1 s; shorter utterances are padded with silence.
const MIN_SAMPLES: usize = 16_800;

/// How much wider the encoder context of the first retry of a looping decode is (frames).
const RETRY_WIDER_FRAMES: u32 = 64;

/// Token cap for `samples` of 16 kHz audio: 10 tokens a second plus 16.
fn max_tokens(samples: usize) -> i32 {
    (samples as f64 / 16_000.0 * 10.0).ceil() as i32 + 16
}

/// Per-decode options.
#[derive(Debug, Clone, Default)]
pub struct DecodeOptions {
    /// Overrides the configured encoder context.
    pub audio_ctx: Option<AudioCtx>,
    /// Disables whisper's temperature fallback (faster, for interims).
    pub no_fallback: bool,
}

/// A transcription and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcription {
    /// The text, annotations removed.
    pub text: String,
    /// Length of the audio.
    pub audio: Duration,
    /// Wall time of the decode.
    pub elapsed: Duration,
    /// Encoder frames used.
    pub audio_ctx: u32,
}

impl Transcription {
    /// Real-time factor: decode time / audio time (below 1 is faster than real time).
    pub fn rtf(&self) -> f64 {
        self.elapsed.as_secs_f64() / self.audio.as_secs_f64().max(1e-9)
    }
}

struct Inner {
    ctx: WhisperContext,
    cfg: WhisperConfig,
    /// Decoder states kept between calls (each holds tens of MB of buffers).
    states: Mutex<Vec<WhisperState>>,
}

/// A loaded whisper model. Cheap to clone; decodes may run concurrently (each takes its own
/// decoder state).
#[derive(Clone)]
pub struct Transcriber {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transcriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcriber").field("cfg", &self.inner.cfg).finish()
    }
}

impl Transcriber {
    /// Loads the ggml model at `path` (blocking: a second or so).
    ///
    /// # Errors
    /// [`Error::Config`] for invalid settings, [`Error::Load`] if whisper.cpp rejects the file.
    pub fn load(path: &Path, cfg: &WhisperConfig) -> Result<Self, Error> {
        cfg.validate()?;
        whisper_rs::install_logging_hooks();
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|e| Error::Load { path: path.display().to_string(), reason: e.to_string() })?;
        if !ctx.is_multilingual() && cfg.language != "en" {
            return Err(Error::Config(format!(
                "model `{}` is English-only; `language` must be `en`, got `{}`",
                cfg.model, cfg.language
            )));
        }
        Ok(Self { inner: Arc::new(Inner { ctx, cfg: cfg.clone(), states: Mutex::new(Vec::new()) }) })
    }

    /// Resolves `cfg.model` in `store` (pulling a catalog model that is not installed yet,
    /// reporting to `progress`) and loads it on a blocking thread.
    pub async fn from_config(
        cfg: &WhisperConfig,
        store: &ModelStore,
        progress: &dyn Progress,
    ) -> Result<Self, Error> {
        cfg.validate()?;
        let path = store.resolve_or_pull(&cfg.model, progress).await?;
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || Self::load(&path, &cfg))
            .await
            .map_err(|e| Error::Decode(format!("model loading task failed: {e}")))?
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &WhisperConfig {
        &self.inner.cfg
    }

    /// Transcribes 16 kHz mono audio in `[-1, 1]` on the current thread (blocking).
    ///
    /// # Errors
    /// [`Error::Decode`] if whisper.cpp fails.
    pub fn transcribe_blocking(&self, audio: &[f32], opts: &DecodeOptions) -> Result<Transcription, Error> {
        let started = Instant::now();
        let padded;
        let input = if audio.len() < MIN_SAMPLES {
            padded = [audio, &vec![0.0; MIN_SAMPLES - audio.len()]].concat();
            &padded[..]
        } else {
            audio
        };
        let mut audio_ctx = opts.audio_ctx.unwrap_or(self.inner.cfg.audio_ctx).frames_for(input.len());
        let max_tokens = max_tokens(audio.len());
        let mut text = self.decode(input, audio_ctx, max_tokens, opts)?;
        // A shortened encoder context sometimes sends tiny.en into a loop on a short turn
        // ("Goodbye! Goodbye!", "Thanks for your help." six times). Which contexts loop depends
        // on the clip, and a neighbouring one almost never does: decode again 64 frames wider,
        // then with the full context (whisper's reference decoding, ~4x slower on a short
        // turn), and keep the last text. It costs nothing unless the text repeats itself.
        for retry in [audio_ctx + RETRY_WIDER_FRAMES, super::FULL_FRAMES] {
            if audio_ctx >= super::FULL_FRAMES || !super::repeats_itself(&text) {
                break;
            }
            debug!(audio_ctx, retry, text, "whisper repeated itself: decoding again with a wider context");
            audio_ctx = retry.min(super::FULL_FRAMES);
            text = self.decode(input, audio_ctx, max_tokens, opts)?;
        }
        let elapsed = started.elapsed();
        debug!(
            audio_ms = audio.len() / 16,
            audio_ctx,
            elapsed_ms = elapsed.as_millis() as u64,
            "whisper decode"
        );
        Ok(Transcription {
            text,
            audio: Duration::from_secs_f64(audio.len() as f64 / 16_000.0),
            elapsed,
            audio_ctx,
        })
    }

    /// One whisper.cpp decode of `input` with `audio_ctx` encoder frames.
    fn decode(
        &self,
        input: &[f32],
        audio_ctx: u32,
        max_tokens: i32,
        opts: &DecodeOptions,
    ) -> Result<String, Error> {
        let cfg = &self.inner.cfg;
        let strategy = if cfg.beam_size > 1 {
            SamplingStrategy::BeamSearch { beam_size: cfg.beam_size as i32, patience: -1.0 }
        } else {
            SamplingStrategy::Greedy { best_of: 1 }
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(cfg.threads as i32);
        params.set_language(Some(cfg.language.as_str()));
        params.set_translate(false);
        params.set_no_context(true);
        params.set_single_segment(true);
        params.set_no_timestamps(true);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        if audio_ctx < super::FULL_FRAMES {
            params.set_audio_ctx(audio_ctx as i32);
        }
        // Speech runs at most ~6 tokens a second: a cap stops runaway repetition (a known
        // whisper failure on clipped audio) from decoding up to the 224-token limit.
        params.set_max_tokens(max_tokens);
        if opts.no_fallback {
            params.set_temperature_inc(0.0);
        }
        // No abort callback: whisper-rs 0.16's `set_abort_callback_safe` hands whisper.cpp a
        // pointer to a boxed trait object but reads it back as the bare closure (undefined
        // behaviour). Decodes are short and serialised instead.
        let mut state = match self.inner.states.lock().expect("state pool lock poisoned").pop() {
            Some(s) => s,
            None => self.inner.ctx.create_state().map_err(|e| Error::Decode(format!("create state: {e}")))?,
        };
        let result = state.full(params, input);
        let text = match result {
            Err(e) => Err(Error::Decode(e.to_string())),
            Ok(()) => {
                let mut text = String::new();
                for seg in state.as_iter() {
                    text.push_str(&seg.to_str_lossy().map_err(|e| Error::Decode(e.to_string()))?);
                }
                Ok(clean_text(&text))
            }
        };
        self.inner.states.lock().expect("state pool lock poisoned").push(state);
        text
    }

    /// Transcribes on a blocking thread.
    pub async fn transcribe(&self, audio: Vec<f32>, opts: DecodeOptions) -> Result<Transcription, Error> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.transcribe_blocking(&audio, &opts))
            .await
            .map_err(|e| Error::Decode(format!("decode task failed: {e}")))?
    }
}

#[async_trait]
impl Decode for Transcriber {
    async fn decode(&self, audio: Arc<[i16]>, pass: Pass) -> Result<String, Error> {
        let me = self.clone();
        let opts = DecodeOptions { audio_ctx: None, no_fallback: pass == Pass::Interim };
        tokio::task::spawn_blocking(move || {
            let pcm: Vec<f32> = audio.iter().map(|&s| i16_to_f32(s)).collect();
            me.transcribe_blocking(&pcm, &opts)
        })
        .await
        .map_err(|e| Error::Decode(format!("decode task failed: {e}")))?
        .map(|t| t.text)
    }
}

/// The `asr.whisper` stage: segments the caller's speech by the turn controller's
/// `SpeechStarted`/`SpeechStopped` frames and transcribes it locally (see
/// [`SegmentingStage`] for the frame contract).
#[derive(Debug)]
pub struct WhisperStage {
    inner: SegmentingStage<Transcriber>,
}

impl WhisperStage {
    /// A stage using an already loaded model (its config gives the segmentation settings).
    pub fn new(transcriber: Transcriber) -> Self {
        let cfg = transcriber.config();
        let opts = SegmentOptions {
            interim_interval: (cfg.interim_interval_ms > 0)
                .then(|| Duration::from_millis(cfg.interim_interval_ms)),
            prefix: Duration::from_millis(cfg.prefix_ms),
        };
        Self { inner: SegmentingStage::new("asr.whisper", Arc::new(transcriber), opts) }
    }

    /// Loads the configured model (see [`Transcriber::from_config`]) and builds the stage.
    pub async fn from_config(
        cfg: &WhisperConfig,
        store: &ModelStore,
        progress: &dyn Progress,
    ) -> Result<Self, Error> {
        Ok(Self::new(Transcriber::from_config(cfg, store, progress).await?))
    }
}

#[async_trait]
impl Stage for WhisperStage {
    fn name(&self) -> &str {
        "asr.whisper"
    }

    async fn run(self: Box<Self>, ctx: CallContext, input: Inbox, out: Outbox) -> Result<(), StageError> {
        Box::new(self.inner).run(ctx, input, out).await
    }
}
