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

mod layers;
pub mod registry;
mod schema;

pub use layers::{ConfigError, LoadOptions, load, load_str};
pub use registry::{BuildError, Env, build, build_call, vad};
pub use schema::{
    EventsConfig, InputConfig, OutputConfig, PipelineConfig, Role, STAGE_KIND_NAMES, STAGE_KINDS,
    StageConfig, StageKind, did_you_mean,
};
