//! The process-wide ONNX Runtime environment, loaded at run time from a shared library.
//!
//! voxpipe builds `ort` with `load-dynamic`: nothing links against onnxruntime, and the
//! library (`libonnxruntime.so.1.32.0`, installed by `voxpipe models pull onnxruntime`) is
//! opened the first time a model needs it. Every crate that runs an ONNX model (Silero here,
//! Piper TTS, Smart Turn) calls [`init_onnxruntime`] first and builds its sessions on the
//! [`Environment`] it returns; the first call loads the library, later calls return the same
//! environment.
//!
//! `ort` allows one [`Environment`] per process, ever, and has no getter for it, which is why
//! this crate exists: Silero VAD (`voxpipe-turn`) and Piper (`voxpipe-tts`) both initialise
//! through it and share the environment.
//!
//! ```no_run
//! # fn demo() -> Result<(), voxpipe_ort::OrtInitError> {
//! let lib = std::path::Path::new("/home/me/.cache/voxpipe/models/onnxruntime/libonnxruntime.so.1.32.0");
//! let env = voxpipe_ort::init_onnxruntime(lib)?;
//! let session = ort::session::Session::builder(env)?;
//! # let _ = session; Ok(()) }
//! ```

use ort::environment::Environment;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The environment, once built.
static ENV: OnceLock<Environment> = OnceLock::new();
/// Serialises initialisation so two threads never load the library twice.
static INIT: Mutex<()> = Mutex::new(());

/// ONNX Runtime could not be started.
#[derive(Debug, thiserror::Error)]
pub enum OrtInitError {
    /// The library file is not there.
    #[error(
        "the ONNX Runtime library {} does not exist: run `voxpipe models pull onnxruntime`",
        path.display()
    )]
    LibraryMissing {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The file exists but could not be loaded (wrong architecture, too old, not onnxruntime).
    #[error("cannot load the ONNX Runtime library {}: {reason}", path.display())]
    Load {
        /// The library path.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The library loaded but the environment could not be created. `ort` allows one
    /// environment per process, ever: this is what happens when another component (e.g.
    /// `voxpipe-tts`'s Piper voice) created it through its own initialiser.
    #[error(
        "cannot create the ONNX Runtime environment: {0}; ort allows one per process, so if \
         something in this process built an environment without voxpipe_ort::init_onnxruntime"
    )]
    Environment(#[source] ort::Error),
    /// The runtime failed after start-up (building a session).
    #[error("ONNX Runtime failed: {0}")]
    Runtime(#[from] ort::Error),
}

/// Loads ONNX Runtime from `lib_path` (once per process) and returns the shared environment.
///
/// Idempotent: after the first success every call returns the same environment, whatever
/// path it is given (a process holds one onnxruntime). If another component already loaded
/// the library through `ort`, that library is used. A failed call leaves nothing behind, so a
/// later call with a good path can succeed.
///
/// Blocking (it opens a ~20 MB shared library the first time): call it from start-up code or
/// `spawn_blocking`, not from an async task's hot path.
///
/// # Errors
/// [`OrtInitError::LibraryMissing`] when the file is absent (the message says how to fetch
/// it), [`OrtInitError::Load`] when it cannot be opened, [`OrtInitError::Environment`] when
/// the environment cannot be created (for instance because another component of the process
/// already created one: `ort` allows only one, and offers no way to fetch it).
pub fn init_onnxruntime(lib_path: &Path) -> Result<&'static Environment, OrtInitError> {
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    if !lib_path.is_file() {
        return Err(OrtInitError::LibraryMissing { path: lib_path.to_path_buf() });
    }
    // A no-op (returning a fresh builder) when `ort` already holds a library.
    let builder = ort::init_from(lib_path)
        .map_err(|e| OrtInitError::Load { path: lib_path.to_path_buf(), reason: e.to_string() })?;
    let env =
        builder.with_name("voxpipe").with_telemetry(false).build().map_err(OrtInitError::Environment)?;
    tracing::info!(library = %lib_path.display(), "ONNX Runtime loaded");
    Ok(ENV.get_or_init(|| env))
}

/// The environment if [`init_onnxruntime`] has succeeded in this process.
pub fn environment() -> Option<&'static Environment> {
    ENV.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    // This test binary never loads onnxruntime, so every call below really tries the path.

    #[test]
    fn a_missing_library_names_the_pull_command() {
        let path = std::env::temp_dir().join("voxpipe-no-such-dir/libonnxruntime.so.1.32.0");
        let err = init_onnxruntime(&path).expect_err("no library");
        assert!(matches!(err, OrtInitError::LibraryMissing { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("voxpipe models pull onnxruntime") && msg.contains("voxpipe-no-such-dir"),
            "{msg}"
        );
        assert!(environment().is_none());
    }

    #[test]
    fn a_file_that_is_not_a_library_fails_to_load_and_can_be_retried() {
        let path = std::env::temp_dir().join(format!("voxpipe-not-a-lib-{}.so", std::process::id()));
        std::fs::write(&path, b"not a shared library").expect("write");
        let err = init_onnxruntime(&path).expect_err("garbage library");
        let again = init_onnxruntime(&path).expect_err("still garbage");
        std::fs::remove_file(&path).expect("remove");
        assert!(matches!(err, OrtInitError::Load { .. }), "{err}");
        assert!(err.to_string().contains("voxpipe-not-a-lib"), "{err}");
        assert!(matches!(again, OrtInitError::Load { .. }), "{again}");
    }
}
