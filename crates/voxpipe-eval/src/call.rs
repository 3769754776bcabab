//! One call of the A/B run: load the pipeline with the scenario's input and this call's output
//! paths, build it, run it, and keep its events in memory (they also go to the call's JSONL).

use crate::breakdown::{self, Architecture};
use crate::error::EvalError;
use crate::fakes::{CallFakes, FakeDelay};
use crate::metrics::{TurnMetrics, measure};
use crate::profile::FakeProfile;
use crate::render::Rendered;
use crate::scenario::LoadedScenario;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use voxpipe_config::{LoadOptions, PipelineConfig};
use voxpipe_core::{Event, Observed, RunOptions};

/// A pipeline under test, resolved once before the calls.
#[derive(Debug, Clone)]
pub struct PipelineUnderTest {
    /// `A`, `B`, `C`…
    pub label: String,
    /// The file.
    pub path: PathBuf,
    /// Its `--set` overrides.
    pub sets: Vec<String>,
    /// The resolved config (without per-call paths).
    pub config: PipelineConfig,
    /// `(kind, resolved stage as JSON)` per stage.
    pub stages: Vec<(String, serde_json::Value)>,
    /// The resolved `[tools]` table as JSON.
    pub tools: serde_json::Value,
    /// Fake latency offsets (offline mode), on top of `fake_profile`.
    pub fake_delay: FakeDelay,
    /// The fakes' latency profile (offline mode).
    pub fake_profile: FakeProfile,
}

impl PipelineUnderTest {
    /// Loads and checks `path` with `sets`; its fakes (offline mode) are timed by
    /// `fake_profile` plus `fake_delay`.
    pub fn resolve(
        label: String,
        path: PathBuf,
        sets: Vec<String>,
        env: &[(String, String)],
        fake_profile: FakeProfile,
        fake_delay: FakeDelay,
    ) -> Result<Self, EvalError> {
        let opts = LoadOptions { profile: None, sets: sets.clone(), env: env.to_vec() };
        let config = voxpipe_config::load(&path, &opts)
            .map_err(|e| EvalError::Pipeline { path: path.clone(), message: e.to_string() })?;
        let stages = config
            .stages
            .iter()
            .map(|s| (s.kind().to_string(), serde_json::to_value(s).unwrap_or_default()))
            .collect();
        let tools = serde_json::to_value(&config.tools).unwrap_or_default();
        Ok(Self { label, path, sets, config, stages, tools, fake_delay, fake_profile })
    }

    /// `(kind, model)` of every stage that names a model (for pricing).
    pub fn stage_models(&self) -> Vec<(String, String)> {
        self.stages
            .iter()
            .filter_map(|(k, v)| {
                let model = v.get("model").or_else(|| v.get("model_id"))?.as_str()?;
                Some((k.clone(), model.to_string()))
            })
            .collect()
    }

    /// Native (a speech-to-speech stage) or cascade.
    pub fn architecture(&self) -> Architecture {
        Architecture::of(self.stages.iter().map(|(k, _)| k.as_str()))
    }

    /// `A (native-fake)`.
    pub fn display(&self) -> String {
        format!("{} ({})", self.label, self.config.name)
    }
}

/// The outcome of one call.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// Pipeline label.
    pub pipeline: String,
    /// Scenario name.
    pub scenario: String,
    /// Run number, from 1.
    pub run: usize,
    /// The error that ended the call, when it failed.
    pub error: Option<String>,
    /// The call's directory (reply.wav, events.jsonl).
    pub dir: PathBuf,
    /// Per-turn measurements (also for a failed call, up to where it failed).
    pub turns: Vec<TurnMetrics>,
    /// Estimated cost per turn, when every stage's model has a price.
    pub turn_costs: Vec<Option<f64>>,
}

/// What a call needs besides the pipeline.
#[derive(Debug)]
pub struct CallInput<'a> {
    /// The scenario.
    pub scenario: &'a LoadedScenario,
    /// Its rendered audio.
    pub rendered: &'a Rendered,
    /// Run number, from 1.
    pub run: usize,
    /// The call's output directory.
    pub dir: PathBuf,
    /// Base environment.
    pub env: &'a [(String, String)],
    /// Start in-process fakes.
    pub start_fakes: bool,
}

/// Runs one call; a failure anywhere is recorded in the returned record, never raised.
pub async fn run_call(p: &PipelineUnderTest, c: CallInput<'_>) -> (CallRecord, Vec<serde_json::Value>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let error = run_inner(p, &c, events.clone()).await.err();
    let events = std::mem::take(&mut *events.lock().unwrap_or_else(|e| e.into_inner()));
    let mut turns = measure(&events, &c.rendered.spans, &c.scenario.scenario.turns);
    breakdown::attach(p.architecture(), &events, &mut turns);
    let record = CallRecord {
        pipeline: p.label.clone(),
        scenario: c.scenario.scenario.name.clone(),
        run: c.run,
        error,
        dir: c.dir,
        turns,
        turn_costs: Vec::new(),
    };
    (record, events)
}

async fn run_inner(
    p: &PipelineUnderTest,
    c: &CallInput<'_>,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
) -> Result<(), String> {
    std::fs::create_dir_all(&c.dir).map_err(|e| format!("{}: {e}", c.dir.display()))?;
    let fakes = if c.start_fakes {
        Some(
            CallFakes::start(&p.stages, &p.tools, &c.scenario.scenario, &p.fake_profile, p.fake_delay)
                .await
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let mut env = c.env.to_vec();
    let mut sets = p.sets.clone();
    if let Some(f) = &fakes {
        env.extend(f.env.iter().cloned());
        sets.extend(f.sets.iter().cloned());
    }
    sets.extend(call_sets(&c.rendered.wav, &c.dir));
    let result = build_and_run(&p.path, sets, env, events).await;
    if let Some(f) = fakes {
        f.stop().await;
    }
    result
}

/// The per-call overrides: the scenario's audio in, this call's files out.
fn call_sets(input: &Path, dir: &Path) -> Vec<String> {
    vec![
        "input.kind=wav".into(),
        format!("input.path={}", input.display()),
        "output.kind=wav".into(),
        format!("output.path={}", dir.join("reply.wav").display()),
        format!("events.path={}", dir.join("events.jsonl").display()),
    ]
}

async fn build_and_run(
    path: &Path,
    sets: Vec<String>,
    env: Vec<(String, String)>,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
) -> Result<(), String> {
    let secrets = voxpipe_config::Env::from_vars(env.clone());
    let config =
        voxpipe_config::load(path, &LoadOptions { profile: None, sets, env }).map_err(|e| e.to_string())?;
    let mut pipeline =
        voxpipe_config::build(&config, &secrets).await.map_err(|e| format!("{}: {e}", path.display()))?;
    // Keeps every event as JSON and forwards it to the configured log.
    pipeline.events = Some(Box::new(Observed::new(pipeline.events.take(), move |event: &Event| {
        let v = serde_json::to_value(event).map_err(std::io::Error::other)?;
        events.lock().unwrap_or_else(|e| e.into_inner()).push(v);
        Ok(())
    })));
    pipeline.run(RunOptions::default()).await.map(|_| ()).map_err(|e| e.to_string())
}
