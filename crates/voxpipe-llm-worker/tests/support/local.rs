//! Running `pipelines/local.toml` as `voxpipe run` does (load the file with overrides, build,
//! run), through `voxpipe-config` rather than the CLI, and reading back its event log.

use std::path::{Path, PathBuf};

/// The repository's `rel`.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

/// What one call said and measured, from its event log.
#[derive(Debug, Default)]
pub struct CallLog {
    /// Every event, as written.
    pub events: Vec<serde_json::Value>,
}

impl CallLog {
    /// Reads an `events.jsonl`.
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self { events: text.lines().map(|l| serde_json::from_str(l).unwrap()).collect() }
    }

    /// Events of one type.
    pub fn of(&self, kind: &str) -> Vec<&serde_json::Value> {
        self.events.iter().filter(|e| e["type"] == kind).collect()
    }

    /// The final transcripts of one side (`user_transcript`, `assistant_transcript`), trimmed.
    pub fn said(&self, kind: &str) -> Vec<String> {
        self.of(kind)
            .into_iter()
            .filter(|e| e["is_final"].as_bool() != Some(false))
            .map(|e| e["text"].as_str().unwrap_or_default().trim().to_string())
            .collect()
    }

    /// `(turn, name, ms)` of every metric, in order.
    pub fn metrics(&self) -> Vec<(u64, String, f64)> {
        self.of("metric")
            .into_iter()
            .map(|e| {
                let name = e["name"].as_str().unwrap_or_default().to_string();
                (e["turn"].as_u64().unwrap_or_default(), name, e["value_ms"].as_f64().unwrap_or(f64::NAN))
            })
            .collect()
    }
}

/// Runs `pipelines/local.toml` on `input` with this package's worker, writing the reply to
/// `output` and the event log to `events`; `sets` are further `--set` overrides.
pub async fn run_local(input: &Path, output: &Path, events: &Path, sets: Vec<String>) -> CallLog {
    let worker = PathBuf::from(env!("CARGO_BIN_EXE_voxpipe-llm-worker"));
    let mut all = vec![
        format!("stages[1].worker={}", worker.display()),
        "input.kind=wav".into(),
        format!("input.path={}", input.display()),
        "output.kind=wav".into(),
        format!("output.path={}", output.display()),
        format!("events.path={}", events.display()),
    ];
    all.extend(sets);
    let env: Vec<(String, String)> = std::env::vars().collect();
    let opts = voxpipe_config::LoadOptions { profile: None, sets: all, env: env.clone() };
    let path = repo("pipelines/local.toml");
    let config = voxpipe_config::load(&path, &opts).unwrap_or_else(|e| panic!("{e}"));
    let pipeline = voxpipe_config::build(&config, &voxpipe_config::Env::from_vars(env))
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pipeline.run(voxpipe_core::RunOptions::default()).await.expect("local.toml runs");
    CallLog::read(events)
}
