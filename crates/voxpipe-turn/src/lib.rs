//! voxpipe's turn-taking and interruption controller, shared by the native and cascade
//! pipelines so an A/B compares like with like.
//!
//! # Layout
//! - [`vad`]: the [`Vad`] trait and the model-free [`EnergyVad`].
//! - `silero` (feature `silero`): Silero VAD on onnxruntime.

pub mod vad;

pub use vad::{EnergyVad, Vad};
