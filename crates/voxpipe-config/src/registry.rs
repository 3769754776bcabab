//! The provider registry: builds a running pipeline from its typed config. Adding a provider
//! means adding a [`StageConfig`] variant and one arm here; the runner never changes.

use crate::schema::{InputConfig, OutputConfig, PipelineConfig, StageConfig};
use std::sync::Arc;
use voxpipe_core::{Pipeline, Secret, Sink, Source, Stage};
use voxpipe_turn::TurnMode;

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

    /// The same error, its key under `prefix` (`fallback.stages[0].model`).
    fn within(self, prefix: &str) -> Self {
        Self { key: format!("{prefix}.{}", self.key), message: self.message }
    }
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

    /// The value of `var`, if set.
    pub fn var(&self, var: &str) -> Option<String> {
        self.vars.get(var).cloned()
    }

    /// Reads the secret named by config key `key` from variable `var`.
    pub fn secret(&self, var: &str, key: String) -> Result<Secret, BuildError> {
        match self.vars.get(var) {
            Some(v) if !v.is_empty() => Ok(Secret::new(v.clone())),
            _ => Err(BuildError::new(key.clone(), voxpipe_core::MissingSecret { var: var.into(), key })),
        }
    }
}

/// Whether building a stage may load model weights (`check` only resolves their paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Models,
    PathsOnly,
}

/// The fallbacks of LLM stage `i`, each with its own key read now.
fn llm_fallbacks(
    i: usize,
    list: &[voxpipe_llm::FallbackConfig],
    env: &Env,
) -> Result<Vec<voxpipe_llm::Fallback>, BuildError> {
    list.iter()
        .enumerate()
        .map(|(j, f)| {
            let key = match f.api_key_env() {
                Some(var) => Some(env.secret(var, format!("stages[{i}].fallback[{j}].api_key_env"))?),
                None => None,
            };
            voxpipe_llm::Fallback::new(f, key)
                .map_err(|e| BuildError::new(format!("stages[{i}].fallback[{j}]"), e))
        })
        .collect()
}

async fn build_stage(
    i: usize,
    stage: &StageConfig,
    env: &Env,
    load: Load,
) -> Result<Option<Box<dyn Stage>>, BuildError> {
    let key = |k: &str| format!("stages[{i}].{k}");
    let whole = || format!("stages[{i}]");
    Ok(Some(match stage {
        StageConfig::AsrWhisper(c) => {
            if load == Load::PathsOnly {
                c.validate().map_err(|e| BuildError::new(whole(), e))?;
                check_model(&c.model).map_err(|m| BuildError::new(key("model"), m))?;
                return Ok(None);
            }
            // Loading a model reads and maps hundreds of MB: not on the call's async worker.
            let c = c.clone();
            tokio::task::spawn_blocking(move || build_whisper(&c))
                .await
                .map_err(|e| BuildError::new(whole(), format!("loading the model failed: {e}")))?
                .map_err(|m| BuildError::new(key("model"), m))?
        }
        StageConfig::AsrOpenAi(c) => {
            let api_key = env.secret(&c.api_key_env, key("api_key_env"))?;
            let client = voxpipe_asr::OpenAiTranscriber::with_key(c, api_key);
            Box::new(voxpipe_asr::OpenAiTranscribeStage::with_client(c, client))
        }
        StageConfig::LlmOpenAi(c) => {
            let api_key = match &c.api_key_env {
                Some(var) => Some(env.secret(var, key("api_key_env"))?),
                None => None,
            };
            let mut stage =
                voxpipe_llm::OpenAiChat::new(c.clone(), api_key).map_err(|e| BuildError::new(whole(), e))?;
            for f in llm_fallbacks(i, &c.fallback, env)? {
                stage = stage.with_fallback(f);
            }
            Box::new(stage)
        }
        StageConfig::LlmAnthropic(c) => {
            let api_key = env.secret(&c.api_key_env, key("api_key_env"))?;
            let mut stage =
                voxpipe_llm::Anthropic::new(c.clone(), api_key).map_err(|e| BuildError::new(whole(), e))?;
            for f in llm_fallbacks(i, &c.fallback, env)? {
                stage = stage.with_fallback(f);
            }
            Box::new(stage)
        }
        StageConfig::LlmGemini(c) => {
            let api_key = env.secret(&c.api_key_env, key("api_key_env"))?;
            let mut stage =
                voxpipe_llm::Gemini::new(c.clone(), api_key).map_err(|e| BuildError::new(whole(), e))?;
            for f in llm_fallbacks(i, &c.fallback, env)? {
                stage = stage.with_fallback(f);
            }
            Box::new(stage)
        }
        StageConfig::TtsOpenAi(c) => {
            let api_key = match &c.api_key_env {
                Some(var) => Some(env.secret(var, key("api_key_env"))?),
                None => None,
            };
            let tts = voxpipe_tts::OpenAiSpeech::new(c.clone(), api_key)
                .map_err(|e| BuildError::new(whole(), e))?;
            Box::new(tts.into_stage())
        }
        StageConfig::TtsElevenLabs(c) => {
            let api_key = env.secret(&c.api_key_env, key("api_key_env"))?;
            let tts =
                voxpipe_tts::ElevenLabs::new(c.clone(), api_key).map_err(|e| BuildError::new(whole(), e))?;
            Box::new(tts.into_stage())
        }
        #[cfg(feature = "llama")]
        StageConfig::LlmLocal(c) => {
            if load == Load::PathsOnly {
                c.validate().map_err(|e| BuildError::new(whole(), e))?;
                check_model(&c.model).map_err(|m| BuildError::new(key("model"), m))?;
                return Ok(None);
            }
            Box::new(
                voxpipe_llm_local::LocalLlm::load(c.clone())
                    .await
                    .map_err(|e| BuildError::new(whole(), e))?,
            )
        }
        StageConfig::TtsPiper(c) => {
            if load == Load::PathsOnly {
                c.check().map_err(|e| BuildError::new(whole(), e))?;
                check_model(&c.voice).map_err(|m| BuildError::new(key("voice"), m))?;
                check_model("onnxruntime").map_err(|m| BuildError::new(key("voice"), m))?;
                return Ok(None);
            }
            build_piper(c).await.map_err(|m| BuildError::new(whole(), m))?
        }
        StageConfig::TtsEspeak(c) => {
            if load == Load::PathsOnly {
                return Ok(None);
            }
            build_espeak(c).await.map_err(|m| BuildError::new(whole(), m))?
        }
        StageConfig::RealtimeOpenAi(c) => {
            let api_key = env.secret(&c.api_key_env, key("api_key_env"))?;
            let stage = voxpipe_realtime::RealtimeStage::new(c.clone(), api_key).map_err(|e| match e {
                voxpipe_realtime::Error::Config(s) => {
                    BuildError::new(key(s.key), format!("expected {}, got {}", s.expected, s.got))
                }
                other => BuildError::new(format!("stages[{i}]"), other),
            })?;
            Box::new(stage)
        }
    }))
}

/// `check`'s view of a model: a catalog id (installed or not: running pulls it on first use) or
/// a path to an existing file.
fn check_model(name: &str) -> Result<(), String> {
    let store = voxpipe_models::ModelStore::from_env().map_err(|e| e.to_string())?;
    match store.resolve(name) {
        Ok(_) | Err(voxpipe_models::Error::NotInstalled { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(feature = "whisper")]
fn resolve_model(name: &str) -> Result<std::path::PathBuf, String> {
    let store = voxpipe_models::ModelStore::from_env().map_err(|e| e.to_string())?;
    store.resolve(name).map_err(|e| e.to_string())
}

#[cfg(feature = "whisper")]
fn build_whisper(c: &voxpipe_asr::WhisperConfig) -> Result<Box<dyn Stage>, String> {
    let path = resolve_model(&c.model)?;
    let transcriber = voxpipe_asr::Transcriber::load(&path, c).map_err(|e| e.to_string())?;
    Ok(Box::new(voxpipe_asr::WhisperStage::new(transcriber)))
}

#[cfg(not(feature = "whisper"))]
fn build_whisper(_: &voxpipe_asr::WhisperConfig) -> Result<Box<dyn Stage>, String> {
    Err("`asr.whisper` needs a build with feature `whisper` (cargo build --features whisper)".into())
}

#[cfg(feature = "piper")]
async fn build_piper(c: &voxpipe_tts::PiperConfig) -> Result<Box<dyn Stage>, String> {
    Ok(Box::new(voxpipe_tts::Piper::new(c.clone()).await.map_err(|e| e.to_string())?.into_stage()))
}

#[cfg(not(feature = "piper"))]
async fn build_piper(_: &voxpipe_tts::PiperConfig) -> Result<Box<dyn Stage>, String> {
    Err("`tts.piper` needs a build with feature `piper`".into())
}

#[cfg(feature = "espeak")]
async fn build_espeak(c: &voxpipe_tts::EspeakConfig) -> Result<Box<dyn Stage>, String> {
    Ok(Box::new(voxpipe_tts::Espeak::new(c.clone()).await.map_err(|e| e.to_string())?.into_stage()))
}

#[cfg(not(feature = "espeak"))]
async fn build_espeak(_: &voxpipe_tts::EspeakConfig) -> Result<Box<dyn Stage>, String> {
    Err("`tts.espeak` needs a build with feature `espeak`".into())
}

#[cfg(feature = "silero")]
fn silero_vad() -> Result<Box<dyn voxpipe_turn::Vad>, String> {
    let store = voxpipe_models::ModelStore::from_env().map_err(|e| e.to_string())?;
    Ok(Box::new(voxpipe_turn::silero::SileroVad::from_store(&store, 16_000).map_err(|e| e.to_string())?))
}

#[cfg(not(feature = "silero"))]
fn silero_vad() -> Result<Box<dyn voxpipe_turn::Vad>, String> {
    Err("`silero` needs a build with feature `silero`".into())
}

/// A stream of the process's shared Silero engine (one session for every call, batched).
#[cfg(feature = "silero")]
fn silero_stream() -> Result<voxpipe_turn::CallVad, String> {
    let store = voxpipe_models::ModelStore::from_env().map_err(|e| e.to_string())?;
    let engine =
        voxpipe_turn::silero_shared::SileroEngine::shared(&store, 16_000).map_err(|e| e.to_string())?;
    Ok(voxpipe_turn::CallVad::Shared(engine.stream()))
}

#[cfg(not(feature = "silero"))]
fn silero_stream() -> Result<voxpipe_turn::CallVad, String> {
    Err("`silero` needs a build with feature `silero`".into())
}

/// A live call's VAD of `kind`, as [`vad`] chooses it; Silero runs on the shared engine.
pub fn call_vad(kind: Option<voxpipe_turn::VadKind>) -> Result<voxpipe_turn::CallVad, String> {
    choose(kind, || voxpipe_turn::CallVad::Own(Box::new(voxpipe_turn::EnergyVad::new(16_000))), silero_stream)
}

/// The energy VAD, Silero, or (none named) Silero when it loads and else the energy VAD with a
/// warning saying what to pull.
fn choose<T>(
    kind: Option<voxpipe_turn::VadKind>,
    energy: impl Fn() -> T,
    silero: impl Fn() -> Result<T, String>,
) -> Result<T, String> {
    match kind {
        Some(voxpipe_turn::VadKind::Energy) => Ok(energy()),
        Some(voxpipe_turn::VadKind::Silero) => silero(),
        None => Ok(silero().unwrap_or_else(|m| {
            tracing::warn!(
                "Silero VAD unavailable ({m}); using the energy VAD. For Silero: \
                 `voxpipe models pull silero-vad onnxruntime`, or set `turn.vad = \"energy\"`"
            );
            energy()
        })),
    }
}

/// A 16 kHz VAD of `kind`; with none named, Silero when it has been pulled, else the energy VAD
/// (with a warning saying what to pull). `Err` says why a named Silero cannot load.
pub fn vad(kind: Option<voxpipe_turn::VadKind>) -> Result<Box<dyn voxpipe_turn::Vad>, String> {
    choose(kind, || Box::new(voxpipe_turn::EnergyVad::new(16_000)) as Box<dyn voxpipe_turn::Vad>, silero_vad)
}

/// Who detects turns for this pipeline.
pub fn turn_mode(config: &PipelineConfig) -> Result<TurnMode, BuildError> {
    let realtime = config.stages.iter().find_map(|s| match s {
        StageConfig::RealtimeOpenAi(r) => Some(r),
        _ => None,
    });
    match (config.turn.mode, realtime) {
        (Some(TurnMode::Server), None) => Err(BuildError::new(
            "turn.mode",
            "`server` needs a realtime stage; a cascade uses `local` or `push_to_talk`",
        )),
        (Some(TurnMode::Server), Some(r)) if r.turn_detection == voxpipe_realtime::TurnDetection::None => {
            Err(BuildError::new(
                "turn.mode",
                "`server` needs the realtime stage's turn_detection to be server_vad or semantic_vad",
            ))
        }
        (Some(mode @ (TurnMode::Local | TurnMode::PushToTalk)), Some(r))
            if r.turn_detection != voxpipe_realtime::TurnDetection::None =>
        {
            Err(BuildError::new(
                "turn.mode",
                format!(
                    "`{}` turns for a realtime stage need its `turn_detection = {{ type = \"none\" }}`",
                    if mode == TurnMode::Local { "local" } else { "push_to_talk" }
                ),
            ))
        }
        (Some(mode), _) => Ok(mode),
        (None, Some(r)) if r.turn_detection != voxpipe_realtime::TurnDetection::None => Ok(TurnMode::Server),
        (None, _) => Ok(TurnMode::Local),
    }
}

/// The local turn controller (first stage) and, for a cascade, its gate (right after the ASR).
type TurnStages = (Option<Box<dyn Stage>>, Option<Box<dyn Stage>>);

fn turn_stages(config: &PipelineConfig) -> Result<TurnStages, BuildError> {
    if turn_mode(config)? == TurnMode::Server {
        return Ok((None, None));
    }
    let vad = call_vad(config.turn.vad).map_err(|m| BuildError::new("turn.vad", m))?;
    let turn = config.turn.clone();
    if asr_index(config).is_some() {
        let (controller, gate) = voxpipe_turn::TurnController::with_gate(turn, vad);
        Ok((Some(Box::new(controller)), Some(Box::new(gate))))
    } else {
        Ok((Some(Box::new(voxpipe_turn::TurnController::new(turn, vad))), None))
    }
}

/// Recorded push-to-talk presses must be in order, each released before the next press.
fn check_presses(config: &PipelineConfig) -> Result<(), BuildError> {
    let InputConfig::Wav(c) = &config.input else { return Ok(()) };
    let mut last = None;
    for (i, [down, up]) in c.push_to_talk.iter().enumerate() {
        if down >= up || last.is_some_and(|l| *down < l) {
            return Err(BuildError::new(
                format!("input.push_to_talk[{i}]"),
                format!("expected [press_ms, release_ms] after the previous release, found [{down}, {up}]"),
            ));
        }
        last = Some(*up);
    }
    if !c.push_to_talk.is_empty() && config.turn.mode != Some(TurnMode::PushToTalk) {
        return Err(BuildError::new(
            "input.push_to_talk",
            "recorded presses need `turn.mode = \"push_to_talk\"`",
        ));
    }
    Ok(())
}

/// Index of the cascade's ASR stage.
fn asr_index(config: &PipelineConfig) -> Option<usize> {
    config.stages.iter().position(|s| s.row().role == crate::Role::Asr)
}

/// The call's tools: schemas compiled, secret headers read from `env`.
pub fn build_tools(config: &PipelineConfig, env: &Env) -> Result<voxpipe_tools::Tools, BuildError> {
    voxpipe_tools::Tools::from_config_with_env(&config.tools, |v| env.var(v))
        .map(|t| t.with_defaults(&config.tool_defaults))
        .map_err(|e| BuildError::new("tools", e))
}

/// Builds the source, stages, sinks, event log and tools of `config`.
pub async fn build(config: &PipelineConfig, env: &Env) -> Result<Pipeline, BuildError> {
    if config.stages.is_empty() {
        return Err(BuildError::new("stages", "expected at least one stage"));
    }
    let source: Box<dyn Source> = match &config.input {
        InputConfig::Wav(c) => Box::new(voxpipe_transport::wav::WavSource::open(c).map_err(|e| match e {
            voxpipe_transport::Error::NoSuchChannel { .. } => BuildError::new("input.channel", e),
            e => BuildError::new("input.path", e),
        })?),
        InputConfig::Stdin(c) => Box::new(voxpipe_transport::pcm::StdinSource::new(c)),
    };
    check_presses(config)?;
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
    build_call(config, env, source, vec![sink], events).await
}

/// Builds the stages and tools of `config` around a transport's `source` and `sinks` (a live
/// call: the file's `[input]`, `[output]` and `[events]` are not used).
pub async fn build_call(
    config: &PipelineConfig,
    env: &Env,
    source: Box<dyn Source>,
    sinks: Vec<Box<dyn Sink>>,
    events: Option<Box<dyn voxpipe_core::EventWriter>>,
) -> Result<Pipeline, BuildError> {
    if config.stages.is_empty() {
        return Err(BuildError::new("stages", "expected at least one stage"));
    }
    let mut stages = build_chain(config, env).await?;
    if let Some(fallback) = &config.fallback_pipeline {
        let fallback_stages = build_chain(fallback, env).await.map_err(|e| e.within("fallback"))?;
        let primary = voxpipe_core::Chain { name: config.name.clone(), stages };
        let fallback = voxpipe_core::Chain { name: fallback.name.clone(), stages: fallback_stages };
        let failover = voxpipe_core::Failover::new(primary, fallback)
            .after_failed_turns(config.fallback_after_failed_turns);
        stages = vec![Box::new(failover)];
    }
    let mut pipeline = Pipeline::new(config.name.clone(), source, stages, sinks);
    pipeline.events = events;
    pipeline.tools = Arc::new(build_tools(config, env)?);
    Ok(pipeline)
}

/// The turn controller and stages of `config`, in order.
async fn build_chain(
    config: &PipelineConfig,
    env: &Env,
) -> Result<Vec<Box<dyn voxpipe_core::Stage>>, BuildError> {
    let mut stages = Vec::with_capacity(config.stages.len() + 2);
    let (controller, mut gate) = turn_stages(config)?;
    stages.extend(controller);
    let asr = asr_index(config);
    for (i, s) in config.stages.iter().enumerate() {
        check_example_tools(i, s, config)?;
        stages.extend(build_stage(i, s, env, Load::Models).await?);
        if Some(i) == asr {
            stages.extend(gate.take());
        }
    }
    Ok(stages)
}

/// Builds one stage on its own, outside a call's chain (no turn controller or gate around
/// it): e.g. an LLM stage used as the A/B judge. `i` is its index, for error keys.
///
/// # Errors
/// As [`build`] for that stage; a stage kind that builds nothing on its own is an error.
pub async fn build_stage_alone(
    i: usize,
    stage: &StageConfig,
    env: &Env,
) -> Result<Box<dyn Stage>, BuildError> {
    build_stage(i, stage, env, Load::Models)
        .await?
        .ok_or_else(|| BuildError::new(format!("stages[{i}]"), "this stage kind builds no stage on its own"))
}

/// Checks every secret and setting without opening files or connections (for `voxpipe check`).
pub async fn validate(config: &PipelineConfig, env: &Env) -> Result<(), BuildError> {
    validate_one(config, env).await?;
    if let Some(fallback) = &config.fallback_pipeline {
        Box::pin(validate_one(fallback, env)).await.map_err(|e| e.within("fallback"))?;
    }
    Ok(())
}

async fn validate_one(config: &PipelineConfig, env: &Env) -> Result<(), BuildError> {
    if config.stages.is_empty() {
        return Err(BuildError::new("stages", "expected at least one stage"));
    }
    turn_mode(config)?;
    check_presses(config)?;
    build_tools(config, env)?;
    for (i, s) in config.stages.iter().enumerate() {
        build_stage(i, s, env, Load::PathsOnly).await?;
        check_example_tools(i, s, config)?;
    }
    Ok(())
}

/// The few-shot examples of an `llm.local` stage may only call the pipeline's tools.
fn check_example_tools(i: usize, stage: &StageConfig, config: &PipelineConfig) -> Result<(), BuildError> {
    #[cfg(feature = "llama")]
    if let StageConfig::LlmLocal(c) = stage {
        let known: Vec<&str> = config.tools.keys().map(String::as_str).collect();
        if let Some((j, name)) = c.unknown_example_tool(&known) {
            return Err(BuildError::new(
                format!("stages[{i}].examples[{j}].tool_call.name"),
                format!("`{name}` is not one of the pipeline's tools (declared: {})", known.join(", ")),
            ));
        }
    }
    #[cfg(not(feature = "llama"))]
    let _ = (i, stage, config);
    Ok(())
}
