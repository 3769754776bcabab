//! The harness's error type.

use std::path::{Path, PathBuf};

/// Everything that stops an A/B run before or after the calls (a failing *call* is not an
/// error: it is recorded in the report and the run goes on).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A scenario file is malformed.
    #[error("scenario {}: {message}", path.display())]
    Scenario {
        /// The scenario file or directory.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Rendering a scenario's audio failed (espeak-ng, WAV decoding, resampling).
    #[error("rendering scenario `{scenario}`: {message}")]
    Render {
        /// Scenario name.
        scenario: String,
        /// What failed.
        message: String,
    },
    /// A pipeline file could not be loaded.
    #[error("pipeline {}: {message}", path.display())]
    Pipeline {
        /// The pipeline file.
        path: PathBuf,
        /// The loader's message (file, key and expectation).
        message: String,
    },
    /// The price table is malformed.
    #[error("price table {}: {message}", path.display())]
    Pricing {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A fake latency profile is malformed or unknown.
    #[error("fake profile {}: {message}", path.display())]
    Profile {
        /// The profile file (the built-in one for a built-in profile).
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The judge file is malformed or names no usable LLM stage.
    #[error("judge {}: {message}", path.display())]
    Judge {
        /// The judge file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The options are inconsistent.
    #[error("{0}")]
    Options(String),
    /// Starting an in-process fake failed.
    #[error("starting the {fake} fake: {source}")]
    Fake {
        /// Which fake.
        fake: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error("plot {}: {message}", path.display())]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// The plotting library's message.
        message: String,
    },
}

impl EvalError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}
