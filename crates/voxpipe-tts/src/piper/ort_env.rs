//! The process-wide ONNX Runtime environment of this crate, loaded at run time from the
//! shared library `voxpipe models pull onnxruntime` installs.
//!
//! `ort` allows one environment per process. [`init_onnxruntime`] builds it on first use and
//! returns the same one afterwards; a component that built the environment itself (e.g. the
//! Silero VAD) hands it to [`Piper::with_environment`](super::Piper::with_environment) instead.

use crate::Error;
use ort::environment::Environment;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// The environment, once built.
static ENV: OnceLock<Environment> = OnceLock::new();
/// Serialises initialisation so two threads never build it twice.
static INIT: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime from `lib_path` (once per process) and returns this crate's environment.
///
/// Idempotent: after the first success every call returns the same environment whatever the
/// path (the library loaded first stays). Blocking (opens a ~20 MB library once): call it from
/// `spawn_blocking` or start-up code.
///
/// # Errors
/// [`Error::Config`] naming `voxpipe models pull onnxruntime` when the file is missing or
/// cannot be loaded, or explaining how to share the environment when another component of the
/// process already created one.
pub fn init_onnxruntime(lib_path: &Path) -> Result<&'static Environment, Error> {
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let config = |detail: String| Error::Config { field: "onnxruntime", detail };
    if !lib_path.is_file() {
        return Err(config(format!(
            "the ONNX Runtime library {} does not exist: run `voxpipe models pull onnxruntime`",
            lib_path.display()
        )));
    }
    // A no-op when `ort` already holds a library (another component loaded it).
    let builder = ort::init_from(lib_path).map_err(|e| {
        config(format!(
            "cannot load the ONNX Runtime library {}: {e}; run `voxpipe models pull onnxruntime` to reinstall it",
            lib_path.display()
        ))
    })?;
    let env = builder.with_name("voxpipe-tts").with_telemetry(false).build().map_err(|e| {
        config(format!(
            "cannot create the ONNX Runtime environment: {e}; when another component of this \
             process created it already, build the voice with `Piper::with_environment`"
        ))
    })?;
    tracing::info!(library = %lib_path.display(), "ONNX Runtime loaded");
    Ok(ENV.get_or_init(|| env))
}
