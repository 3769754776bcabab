//! The process-wide ONNX Runtime environment: see [`voxpipe_ort`], shared with Piper TTS.

pub use voxpipe_ort::{OrtInitError, environment, init_onnxruntime};

impl From<OrtInitError> for crate::vad::VadError {
    fn from(e: OrtInitError) -> Self {
        Self::Load(e.to_string())
    }
}
