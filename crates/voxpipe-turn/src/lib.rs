//! voxpipe's turn-taking and interruption controller, shared by the native and cascade
//! pipelines so an A/B compares like with like.
//!
//! # Layout
//! - [`config`]: `[turn]` of the pipeline file.
//! - [`vad`]: the [`Vad`] trait and the model-free [`EnergyVad`].
//! - [`controller`]: the local [`TurnController`] stage (VAD, speech boundaries, duration
//!   guards, push-to-talk).
//! - [`gate`]: the [`TurnGate`] after a cascade's ASR (transcript end-of-turn policy, word
//!   guards).
//! - [`policy`]: the [`EndOfTurnPolicy`] trait and the shipped [`TextPolicy`].
//! - [`guard`]: the minimum-words and backchannel guards.
//! - `onsets` (private): the onset line, the controller's one path to its gate that does not
//!   wait behind the ASR.
//!
//! # Features
//! - `silero`: the Silero VAD (`silero`, `ort_env`) through onnxruntime, loaded at run time
//!   (`voxpipe models pull silero-vad onnxruntime`). Without it the [`EnergyVad`] is the only
//!   VAD, and a pipeline that asks for Silero is told to build with the feature.

pub mod config;
pub mod controller;
pub mod gate;
pub mod guard;
mod onsets;
pub mod policy;
pub mod vad;

#[cfg(feature = "silero")]
pub mod ort_env;
#[cfg(feature = "silero")]
pub mod silero;
#[cfg(feature = "silero")]
pub mod silero_shared;

pub use config::{Eagerness, EndOfTurnConfig, InterruptionConfig, PolicyKind, TurnConfig, TurnMode, VadKind};
pub use controller::TurnController;
pub use gate::TurnGate;
pub use guard::{Verdict, WordGuard};
pub use policy::{Completeness, EndOfTurnPolicy, TextPolicy, Waits};
pub use vad::{CallVad, EnergyVad, Vad, VadError};
