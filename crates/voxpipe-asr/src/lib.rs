//! Speech recognition stages for voxpipe's cascade (ASR → LLM → TTS).
//!
//! An ASR stage sits after the turn controller: it reads the caller's audio and the
//! `SpeechStarted`/`SpeechStopped` frames the controller puts on the data path, and sends
//! `UserTranscript` frames (interims while the caller talks, one final per utterance)
//! downstream to the LLM. Audio is not forwarded.
//!
//! ```no_run
//! # async fn demo() -> Result<(), voxpipe_asr::Error> {
//! use voxpipe_asr::{OpenAiTranscribeConfig, OpenAiTranscribeStage};
//! let cfg: OpenAiTranscribeConfig = serde_json::from_str(r#"{"language":"en"}"#).unwrap();
//! let stage = OpenAiTranscribeStage::new(&cfg)?; // reads OPENAI_API_KEY
//! # let _ = stage; Ok(()) }
//! ```
//!
//! # Layout
//! - [`segment`]: utterance buffering, interim/final decoding, the [`Decode`] trait.
//! - [`whisper`]: `asr.whisper`, local whisper.cpp ([`WhisperConfig`] always; the stage needs
//!   feature `whisper`).
//! - [`openai`]: `asr.openai`, OpenAI's `/audio/transcriptions`.
//!
//! # Features
//! | feature | enables | default |
//! |---|---|---|
//! | `whisper` | `Transcriber`, `WhisperStage` (builds whisper.cpp: cmake, libclang) | off |
//! | `openblas` | whisper.cpp with OpenBLAS (`BLAS_INCLUDE_DIRS` at build time) | off |

mod error;
pub mod openai;
pub mod segment;
pub mod whisper;

pub use error::Error;
pub use openai::{OpenAiTranscribeConfig, OpenAiTranscribeStage, OpenAiTranscriber};
pub use segment::{Decode, Pass, SegmentOptions, SegmentingStage};
pub use whisper::{AudioCtx, AudioCtxMode, WhisperConfig};
#[cfg(feature = "whisper")]
pub use whisper::{DecodeOptions, Transcriber, Transcription, WhisperStage};
