//! Streaming text-to-speech stages for voxpipe's cascade: LLM text deltas in, assistant audio
//! out, the first audio while the LLM is still writing.
//!
//! A [`TtsStage`] cuts the text of each reply into sentences with a [`SentenceChunker`] and
//! hands every chunk to a [`Synthesizer`] as soon as it is cut. The audio comes back as
//! [`Frame::OutputAudio`](voxpipe_core::Frame::OutputAudio) pieces of at most 100 ms at the
//! configured rate, each tagged with the words it carries (exactly, from ElevenLabs alignment;
//! spread by character count otherwise), so history can be cut at the last word played.
//!
//! | `kind` | type | config |
//! |---|---|---|
//! | `tts.openai` | [`OpenAiSpeech`] | [`OpenAiSpeechConfig`] |
//! | `tts.elevenlabs` | [`ElevenLabs`] (HTTP stream or `stream-input` WebSocket) | [`ElevenLabsConfig`] |
//! | `tts.piper` (feature `piper`) | `Piper`: a local Piper VITS voice on onnxruntime | `PiperConfig` |
//! | `tts.espeak` (feature `espeak`) | `Espeak`: local espeak-ng | `EspeakConfig` |
//!
//! ```no_run
//! use voxpipe_core::Secret;
//! use voxpipe_tts::{OpenAiSpeech, OpenAiSpeechConfig};
//!
//! # fn build() -> Result<(), Box<dyn std::error::Error>> {
//! let config = OpenAiSpeechConfig { voice: voxpipe_tts::SpeechVoice::Builtin("coral".into()), ..Default::default() };
//! let key = Secret::from_env("OPENAI_API_KEY", "stages[2].api_key_env")?;
//! let stage = OpenAiSpeech::new(config, Some(key))?.into_stage();
//! // Put `Box::new(stage)` after the LLM stage in a `voxpipe_core::Pipeline`.
//! # let _ = stage; Ok(()) }
//! ```
//!
//! # Layout
//! - [`chunker`]: sentence chunking of streamed text.
//! - [`synth`]: the [`Synthesizer`] trait providers implement.
//! - [`stage`]: the shared stage: sessions, ordering, interruption, word attribution.
//! - [`openai`], [`elevenlabs`]: the providers; `piper` and `espeak` (behind features) the
//!   local ones.
//! - `segment`, `codec`, `http`: resampling and slicing, audio decoding, HTTP plumbing.

pub mod chunker;
mod codec;
pub mod elevenlabs;
mod error;
#[cfg(feature = "espeak")]
pub mod espeak;
mod http;
pub mod local_config;
pub mod openai;
#[cfg(feature = "piper")]
pub mod piper;
mod segment;
pub mod stage;
pub mod synth;

pub use chunker::{ChunkingConfig, SentenceChunker};
pub use elevenlabs::{ElevenLabs, ElevenLabsConfig, OutputFormat, Transport, VoiceSettings};
pub use error::Error;
#[cfg(feature = "espeak")]
pub use espeak::Espeak;
pub use local_config::{EspeakConfig, PiperConfig};
pub use openai::{OpenAiSpeech, OpenAiSpeechConfig, SpeechVoice};
#[cfg(feature = "piper")]
pub use piper::Piper;
pub use segment::{HOLD_MS, MAX_PIECE_MS};
pub use stage::{StageOptions, TtsStage};
pub use synth::{Alignment, SynthEvent, Synthesizer, TextChunk};
