//! voxpipe pipeline files.
//!
//! A pipeline file (TOML; YAML and JSON are accepted too) declares one voice agent: where the
//! caller's audio comes from, the stages, where the reply goes, the event log and the tools.
//! [`load`] reads it in layers — the file, then an optional `[profiles.NAME]` table of the same
//! file, then `VOXPIPE_*` environment variables (`__` separates keys:
//! `VOXPIPE_STAGES__0__VOICE=ash`), then `--set key=value` overrides (`stages[0].voice=ash`) —
//! into a typed [`PipelineConfig`] that maps one-to-one to the file. Errors name the file, the
//! key path and what was expected.
//!
//! [`registry`] builds the running [`Pipeline`](voxpipe_core::Pipeline) from it. Secrets are
//! never in the file: a stage names the environment variable holding its key, and the key is
//! read at build time into a [`Secret`](voxpipe_core::Secret) that is never printed.
//!
//! Every stage `kind` is a row of one table, [`STAGE_KINDS`] (its role, the feature it needs,
//! whether it computes locally, its fake, a summary); [`StageConfig`] and its parser are
//! generated from that table, and `voxpipe check --kinds` prints it.
//!
//! # Features
//! Each builds a local stage; without it, a pipeline that uses the kind is told (by `load`,
//! `check` or `build`) which feature to build with.
//! - `whisper`: `asr.whisper` (whisper.cpp, compiled in).
//! - `piper`: `tts.piper` (onnxruntime, loaded at run time) and, through `espeak`, `tts.espeak`.
//! - `espeak`: `tts.espeak` (links libespeak-ng).
//! - `llama`: `llm.local`, a client of the `voxpipe-llm-worker` process (llama.cpp is in the
//!   worker, never in this crate's users).
//! - `silero`: the Silero VAD for the local turn controller (otherwise the energy VAD).

mod layers;
pub mod registry;
mod schema;

pub use layers::{ConfigError, LoadOptions, load, load_str};
pub use registry::{BuildError, Env, build, build_call, build_stage_alone, vad};
pub use schema::{
    EventsConfig, InputConfig, OutputConfig, PipelineConfig, Role, STAGE_KIND_NAMES, STAGE_KINDS,
    StageConfig, StageKind, did_you_mean,
};
