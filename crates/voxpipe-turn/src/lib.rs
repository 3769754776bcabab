//! voxpipe's turn-taking and interruption controller, shared by the native and cascade
//! pipelines so an A/B compares like with like.
//!
//! # Layout
//! - [`config`]: `[turn]` of the pipeline file.
//! - [`vad`]: the [`Vad`] trait and the model-free [`EnergyVad`].
//! - [`controller`]: the local [`TurnController`] stage.

pub mod config;
pub mod controller;
pub mod vad;

#[cfg(feature = "silero")]
pub mod ort_env;
#[cfg(feature = "silero")]
pub mod silero;

pub use config::{InterruptionConfig, TurnConfig, TurnMode, VadKind};
pub use controller::TurnController;
pub use vad::{EnergyVad, Vad, VadError};
