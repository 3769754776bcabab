//! The crate's error type.

use std::path::PathBuf;

/// The command that fetches the default model, quoted in every model error.
pub const PULL_HINT: &str = "voxpipe models pull smollm2-135m";

/// The command that builds the worker program.
pub const BUILD_HINT: &str = "cargo build --release -p voxpipe-llm-worker";

/// What can go wrong running a local model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config value is out of range.
    #[error("llm.local config: {message}")]
    Config {
        /// Which field and why.
        message: String,
    },
    /// The model could not be resolved or fetched through the model store.
    #[error("llm.local: model `{model}`: {source} (fetch the default model with `{PULL_HINT}`)")]
    Store {
        /// The `model` config value.
        model: String,
        /// The store's error.
        #[source]
        source: voxpipe_models::Error,
    },
    /// The model file does not exist.
    #[error(
        "llm.local: model file `{}` does not exist: run `{PULL_HINT}` or set `model` to an existing .gguf file",
        path.display()
    )]
    ModelNotFound {
        /// The path tried.
        path: PathBuf,
    },
    /// The worker program is not where it was looked for.
    #[error(
        "llm.local: the LLM worker program was not found (looked for {}): build it with `{BUILD_HINT}` \
         (it is written beside `voxpipe`), or point the stage's `worker` key or VOXPIPE_LLM_WORKER at it",
        searched.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
    )]
    WorkerNotFound {
        /// The paths tried.
        searched: Vec<PathBuf>,
    },
    /// The worker program could not be started.
    #[error("llm.local: cannot start the LLM worker `{}`: {source} (rebuild it with `{BUILD_HINT}`)", path.display())]
    WorkerSpawn {
        /// The program.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The worker exited (crashed, was killed) while it was needed.
    #[error("llm.local: the LLM worker `{}` stopped unexpectedly ({status}){}", path.display(), last_log(.log))]
    WorkerDied {
        /// The program.
        path: PathBuf,
        /// Its exit status, as far as known.
        status: String,
        /// The last lines it wrote to stderr.
        log: String,
    },
    /// The worker sent something that is not the protocol (a version mismatch?).
    #[error("llm.local: the LLM worker broke the protocol: {message} (rebuild it with `{BUILD_HINT}`)")]
    Protocol {
        /// What was wrong.
        message: String,
    },
    /// The worker reported an error (model load, context, decode...).
    #[error("llm.local: {message}")]
    Worker {
        /// The worker's code (`model_load`, `context`, `decode`, `prompt_too_long`...).
        code: String,
        /// The worker's message.
        message: String,
        /// Whether the worker is unusable afterwards.
        fatal: bool,
    },
}

fn last_log(log: &str) -> String {
    if log.trim().is_empty() { String::new() } else { format!("; its last log lines:\n{}", log.trim_end()) }
}

impl Error {
    /// True when the call cannot go on (the model or its worker is unusable); false when only
    /// the current response failed.
    pub fn is_fatal(&self) -> bool {
        match self {
            Error::Worker { fatal, .. } => *fatal,
            _ => true,
        }
    }

    /// A short code for the event log (`provider_error.code`).
    pub fn code(&self) -> &str {
        match self {
            Error::Config { .. } => "config",
            Error::Store { .. } => "model_store",
            Error::ModelNotFound { .. } => "model_not_found",
            Error::WorkerNotFound { .. } => "worker_not_found",
            Error::WorkerSpawn { .. } => "worker_spawn",
            Error::WorkerDied { .. } => "worker_died",
            Error::Protocol { .. } => "protocol",
            Error::Worker { code, .. } => code,
        }
    }
}
