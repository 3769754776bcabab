//! The provider registry: builds a running pipeline from its typed config. Adding a provider
//! means adding a [`StageConfig`] variant and one arm here; the runner never changes.

use crate::schema::{InputConfig, OutputConfig, PipelineConfig, StageConfig};
use std::sync::Arc;
use voxpipe_core::{Pipeline, Secret, Sink, Source, Stage};

/// The pipeline could not be built (a missing secret, an invalid setting, an unreadable input).
#[derive(Debug, thiserror::Error)]
#[error("key `{key}`: {message}")]
pub struct BuildError {
    /// The key path, e.g. `stages[0].api_key_env`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl BuildError {
    fn new(key: impl Into<String>, message: impl ToString) -> Self {
        Self { key: key.into(), message: message.to_string() }
    }
}

/// Every stage `kind` this build knows.
pub fn kinds() -> &'static [&'static str] {
    &["realtime.openai"]
}

/// The environment secrets are read from (the process environment, or a map in tests).
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: std::collections::BTreeMap<String, String>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// Explicit variables.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { vars: vars.into_iter().collect() }
    }

    /// Reads the secret named by config key `key` from variable `var`.
    pub fn secret(&self, var: &str, key: String) -> Result<Secret, BuildError> {
        match self.vars.get(var) {
            Some(v) if !v.is_empty() => Ok(Secret::new(v.clone())),
            _ => Err(BuildError::new(key.clone(), voxpipe_core::MissingSecret { var: var.into(), key })),
        }
    }
}

fn build_stage(i: usize, stage: &StageConfig, env: &Env) -> Result<Box<dyn Stage>, BuildError> {
    let key = |k: &str| format!("stages[{i}].{k}");
    match stage {
        StageConfig::RealtimeOpenAi(c) => {
            let api_key = env.secret(&c.api_key_env, key("api_key_env"))?;
            let stage = voxpipe_realtime::RealtimeStage::new(c.clone(), api_key).map_err(|e| match e {
                voxpipe_realtime::Error::Config(s) => {
                    BuildError::new(key(s.key), format!("expected {}, got {}", s.expected, s.got))
                }
                other => BuildError::new(format!("stages[{i}]"), other),
            })?;
            Ok(Box::new(stage))
        }
    }
}

/// Builds the source, stages, sinks, event log and tools of `config`.
pub fn build(config: &PipelineConfig, env: &Env) -> Result<Pipeline, BuildError> {
    if config.stages.is_empty() {
        return Err(BuildError::new("stages", "expected at least one stage"));
    }
    let source: Box<dyn Source> = match &config.input {
        InputConfig::Wav(c) => Box::new(
            voxpipe_transport::wav::WavSource::open(c).map_err(|e| BuildError::new("input.path", e))?,
        ),
        InputConfig::Stdin(c) => Box::new(voxpipe_transport::pcm::StdinSource::new(c)),
    };
    let stages = config
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| build_stage(i, s, env))
        .collect::<Result<Vec<_>, _>>()?;
    let sink: Box<dyn Sink> = match &config.output {
        OutputConfig::Wav(c) => Box::new(voxpipe_transport::wav::WavSink::new(c.clone())),
        OutputConfig::Stdout(c) => Box::new(voxpipe_transport::pcm::StdoutSink::new(c)),
    };
    let events = match &config.events {
        Some(e) => Some(Box::new(
            voxpipe_transport::jsonl::JsonlWriter::create(&e.path)
                .map_err(|e| BuildError::new("events.path", e))?,
        ) as Box<dyn voxpipe_core::EventWriter>),
        None => None,
    };
    let mut pipeline = Pipeline::new(config.name.clone(), source, stages, vec![sink]);
    pipeline.events = events;
    pipeline.tools = Arc::new(voxpipe_tools::Tools::from_config(&config.tools));
    Ok(pipeline)
}

/// Checks every secret and setting without opening files or connections (for `voxpipe check`).
pub fn validate(config: &PipelineConfig, env: &Env) -> Result<(), BuildError> {
    if config.stages.is_empty() {
        return Err(BuildError::new("stages", "expected at least one stage"));
    }
    for (i, s) in config.stages.iter().enumerate() {
        build_stage(i, s, env)?;
    }
    Ok(())
}
