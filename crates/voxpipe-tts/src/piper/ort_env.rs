//! The process-wide ONNX Runtime environment, shared with the Silero VAD through
//! [`voxpipe_ort`] (`ort` allows one per process), loaded at run time from the shared library
//! `voxpipe models pull onnxruntime` installs.

use crate::Error;
use ort::environment::Environment;
use std::path::Path;

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
    voxpipe_ort::init_onnxruntime(lib_path)
        .map_err(|e| Error::Config { field: "onnxruntime", detail: e.to_string() })
}
