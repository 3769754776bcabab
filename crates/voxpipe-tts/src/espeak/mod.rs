//! `tts.espeak`: local synthesis with libespeak-ng. Robotic but instant, no model files; also
//! the phonemizer behind `tts.piper`.
//!
//! Every chunk of a reply is synthesized as soon as the stage cuts it and goes out whole
//! (espeak-ng needs a few milliseconds per sentence), so audio streams sentence by sentence.

pub(crate) mod engine;

use crate::Error;
use crate::stage::TtsStage;
use crate::synth::{SynthEvent, Synthesizer, TextChunk};
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;
use voxpipe_core::SampleRate;

/// Stage name.
const NAME: &str = "tts.espeak";

pub use crate::local_config::EspeakConfig;

/// The espeak-ng synthesizer.
#[derive(Debug)]
pub struct Espeak {
    config: EspeakConfig,
    engine: &'static engine::Engine,
}

impl Espeak {
    /// Checks `config`, starts the process-wide espeak thread if needed and checks the voice.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown voice, a rate or pitch out of range, a zero sample
    /// rate, or when libespeak-ng cannot start (its data is missing).
    pub async fn new(config: EspeakConfig) -> Result<Self, Error> {
        if !engine::RATE_WPM_RANGE.contains(&config.rate_wpm) {
            let detail = format!("expected 80 to 450 words per minute, got {}", config.rate_wpm);
            return Err(Error::Config { field: "rate_wpm", detail });
        }
        if !engine::PITCH_RANGE.contains(&config.pitch) {
            let detail = format!("expected 0 to 100, got {}", config.pitch);
            return Err(Error::Config { field: "pitch", detail });
        }
        if config.sample_rate == 0 {
            return Err(Error::Config { field: "sample_rate", detail: "must be > 0".into() });
        }
        let engine = start_engine().await?;
        engine.check_voice(&config.voice).await.map_err(|detail| Error::Config { field: "voice", detail })?;
        Ok(Self { config, engine })
    }

    /// The pipeline stage speaking through this synthesizer.
    pub fn into_stage(self) -> TtsStage<Self> {
        let opts = self.config.stage_options();
        TtsStage::new(self, opts)
    }

    /// Synthesizes `text` at once (PCM16 at [`Synthesizer::sample_rate`]), outside a pipeline.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when espeak-ng fails.
    pub async fn synthesize(&self, text: &str) -> Result<Vec<i16>, Error> {
        let c = &self.config;
        self.engine.synthesize(text, &c.voice, c.rate_wpm, c.pitch).await.map_err(engine_error(NAME))
    }

    /// The IPA phonemes of `text` in the configured voice, one string per sentence, clause
    /// punctuation kept (the phonemizer Piper voices are trained on).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when espeak-ng fails.
    pub async fn phonemize(&self, text: &str) -> Result<Vec<String>, Error> {
        self.engine.phonemize(text, &self.config.voice).await.map_err(engine_error(NAME))
    }
}

/// The espeak engine, started off the async runtime's worker (once per process).
pub(crate) async fn start_engine() -> Result<&'static engine::Engine, Error> {
    let started = tokio::task::spawn_blocking(engine::engine)
        .await
        .map_err(|e| Error::Config { field: "voice", detail: format!("espeak start-up panicked: {e}") })?;
    started.map_err(|detail| Error::Config { field: "voice", detail: format!("libespeak-ng: {detail}") })
}

/// Maps an engine failure on one chunk to a non-fatal provider error.
pub(crate) fn engine_error(provider: &'static str) -> impl Fn(String) -> Error {
    move |detail| Error::Unavailable { provider, attempts: 1, detail }
}

#[async_trait]
impl Synthesizer for Espeak {
    fn name(&self) -> &'static str {
        NAME
    }
    fn sample_rate(&self) -> SampleRate {
        self.engine.sample_rate()
    }
    async fn speak_reply(
        &self,
        mut text: mpsc::Receiver<TextChunk>,
        events: mpsc::Sender<SynthEvent>,
    ) -> Result<(), Error> {
        while let Some(chunk) = text.recv().await {
            if !chunk.text.is_empty() {
                let requested_at = Instant::now();
                let start = SynthEvent::SegmentStart { requested_at, text: Some(chunk.text.clone()) };
                if events.send(start).await.is_err() {
                    return Ok(());
                }
                let sent = match self.synthesize(&chunk.text).await {
                    Ok(samples) => {
                        debug!(
                            chars = chunk.text.len(),
                            samples = samples.len(),
                            ms = requested_at.elapsed().as_millis() as u64,
                            "espeak chunk synthesized"
                        );
                        let audio = SynthEvent::Audio { samples, alignment: None };
                        events.send(audio).await.is_ok() && events.send(SynthEvent::SegmentEnd).await.is_ok()
                    }
                    Err(e) => events.send(SynthEvent::Failed(e)).await.is_ok(),
                };
                if !sent {
                    return Ok(());
                }
            }
            if chunk.is_last {
                break;
            }
        }
        Ok(())
    }
}
