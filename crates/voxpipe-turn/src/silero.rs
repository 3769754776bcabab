//! Silero VAD v6 on ONNX Runtime: a speech probability per 32 ms frame that music, tones and
//! noise do not fool the way they fool the energy VAD.
//!
//! The model is recurrent. Each call takes the new window (512 samples at 16 kHz, 256 at
//! 8 kHz) with the last 64 (or 32) samples of the previous window prepended as context, plus
//! the recurrent state `[2, 1, 128]`, and returns the probability and the next state. All
//! tensors are allocated once in [`SileroVad::load`] and rewritten in place per frame; the
//! outputs are preallocated too, so a frame costs one `Run` and a few hundred float copies.
//!
//! ```no_run
//! # fn demo() -> Result<(), voxpipe_turn::VadError> {
//! use voxpipe_turn::Vad;
//! use voxpipe_turn::silero::SileroVad;
//! let store = voxpipe_models::ModelStore::from_env().map_err(|e| voxpipe_turn::VadError::Load(e.to_string()))?;
//! let mut vad = SileroVad::from_store(&store, 16_000)?; // after `voxpipe models pull silero-vad onnxruntime`
//! let frame = [0i16; 512];
//! let p = vad.process(&frame)?;
//! assert!(p < 0.5);
//! # Ok(()) }
//! ```

use crate::ort_env::init_onnxruntime;
use crate::vad::{Vad, VadError};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::Tensor;
use std::path::Path;
use voxpipe_models::ModelStore;

/// Catalog id of the Silero model in `voxpipe-models`.
pub const SILERO_MODEL_ID: &str = "silero-vad";
/// Catalog id of the ONNX Runtime library in `voxpipe-models`.
pub const ONNXRUNTIME_ID: &str = "onnxruntime";

/// Input and output names of Silero VAD v5/v6, in the model's order.
const INPUTS: [&str; 3] = ["input", "state", "sr"];
pub(crate) const OUT_PROB: &str = "output";
pub(crate) const OUT_STATE: &str = "stateN";
/// Elements of the recurrent state `[2, 1, 128]`.
const STATE_LEN: usize = 2 * 128;

/// Silero VAD for one audio stream at 8 or 16 kHz.
///
/// Not shareable between streams (it carries recurrent state); [`Vad::reset`] between calls.
/// [`Vad::process`] runs the model synchronously (about 0.1-0.3 ms per 32 ms frame on one
/// core): fine inline in a 20 ms audio loop, but it is CPU work, not I/O.
pub struct SileroVad {
    session: Session,
    /// Preallocated `output` and `stateN`.
    run_options: RunOptions<HasSelectedOutputs>,
    /// `[1, context + window]`: the previous window's tail, then the new window.
    input: Tensor<f32>,
    /// `[2, 1, 128]`, fed back from `stateN` after every frame.
    state: Tensor<f32>,
    /// Scalar sample rate.
    sr: Tensor<i64>,
    rate: u32,
    window: usize,
    context: usize,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad")
            .field("rate", &self.rate)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl SileroVad {
    /// Loads the model at `model_path` on the ONNX Runtime library at `onnxruntime_lib_path`
    /// (loaded once per process, see [`crate::ort_env`]) for audio at `rate` (8000 or 16000).
    ///
    /// Blocking: opens the library the first time and builds a session (tens of ms).
    ///
    /// # Errors
    /// [`VadError::Load`] with the fix in the message: a missing library or model file (the
    /// `voxpipe models pull` command to run), an unsupported rate, a file that is not a Silero
    /// v5/v6 model, or an ONNX Runtime failure.
    pub fn load(model_path: &Path, onnxruntime_lib_path: &Path, rate: u32) -> Result<Self, VadError> {
        window_and_context(rate)?;
        let env = init_onnxruntime(onnxruntime_lib_path)?;
        Self::with_environment(env, model_path, rate)
    }

    /// Like [`load`](Self::load), on an ONNX Runtime environment the caller already has.
    ///
    /// `ort` allows one environment per process, ever: when another component built it (e.g.
    /// `voxpipe-tts`'s Piper voice), hand that environment here instead of calling `load`.
    ///
    /// # Errors
    /// As [`load`](Self::load), minus the library errors.
    pub fn with_environment(env: &Environment, model_path: &Path, rate: u32) -> Result<Self, VadError> {
        let (window, context) = window_and_context(rate)?;
        let session = open_session(env, model_path)?;
        let load_err = |e: &dyn std::fmt::Display| {
            VadError::Load(format!("Silero VAD model {}: {e}", model_path.display()))
        };

        let tensors = (|| -> ort::Result<_> {
            let input = Tensor::from_array(([1usize, context + window], vec![0f32; context + window]))?;
            let state = Tensor::from_array(([2usize, 1, 128], vec![0f32; STATE_LEN]))?;
            let sr = Tensor::from_array(((), vec![i64::from(rate)]))?;
            let prob_out = Tensor::from_array(([1usize, 1], vec![0f32; 1]))?;
            let state_out = Tensor::from_array(([2usize, 1, 128], vec![0f32; STATE_LEN]))?;
            let run_options = RunOptions::new()?.with_outputs(
                OutputSelector::no_default()
                    .with(OUT_PROB)
                    .with(OUT_STATE)
                    .preallocate(OUT_PROB, prob_out)
                    .preallocate(OUT_STATE, state_out),
            );
            Ok((input, state, sr, run_options))
        })();
        let (input, state, sr, run_options) = tensors.map_err(|e| load_err(&e))?;
        tracing::debug!(model = %model_path.display(), rate, "Silero VAD loaded");
        Ok(Self { session, run_options, input, state, sr, rate, window, context })
    }

    /// Loads the model and library installed in `store` (ids [`SILERO_MODEL_ID`] and
    /// [`ONNXRUNTIME_ID`]) without downloading anything.
    ///
    /// # Errors
    /// As [`load`](Self::load); a model not yet pulled names the command that fetches it.
    pub fn from_store(store: &ModelStore, rate: u32) -> Result<Self, VadError> {
        let (model, lib) = installed(store)?;
        Self::load(&model, &lib, rate)
    }

    /// Runs one window already written into `self.input`; returns the probability and
    /// feeds the new state back.
    fn run(&mut self) -> ort::Result<f32> {
        let Self { session, run_options, input, state, sr, .. } = self;
        let outputs = session.run_with_options(ort::inputs![&*input, &*state, &*sr], run_options)?;
        let (_, prob) = outputs[OUT_PROB].try_extract_tensor::<f32>()?;
        let p = prob.first().copied().unwrap_or(0.0);
        let (_, next) = outputs[OUT_STATE].try_extract_tensor::<f32>()?;
        let (_, cur) = state.extract_tensor_mut();
        if next.len() != cur.len() {
            return Err(ort::Error::new(format!("stateN has {} values, expected {}", next.len(), cur.len())));
        }
        cur.copy_from_slice(next);
        Ok(p)
    }
}

/// Samples per window and of context at `rate`.
pub(crate) fn window_and_context(rate: u32) -> Result<(usize, usize), VadError> {
    match rate {
        16_000 => Ok((512, 64)),
        8_000 => Ok((256, 32)),
        other => Err(VadError::Load(format!(
            "Silero VAD runs at 8000 or 16000 Hz, not {other} Hz: resample first"
        ))),
    }
}

/// The Silero model and the ONNX Runtime library installed in `store`, or the command that
/// pulls the missing one.
pub(crate) fn installed(store: &ModelStore) -> Result<(std::path::PathBuf, std::path::PathBuf), VadError> {
    let path = |id: &str| {
        store.path(id).ok_or_else(|| {
            VadError::Load(format!(
                "model `{id}` is not installed in {}: run `voxpipe models pull {id}`",
                store.root().display()
            ))
        })
    };
    let lib = path(ONNXRUNTIME_ID)?;
    Ok((path(SILERO_MODEL_ID)?, lib))
}

/// A session on the model at `model_path`, checked to be Silero v5/v6.
pub(crate) fn open_session(env: &Environment, model_path: &Path) -> Result<Session, VadError> {
    if !model_path.is_file() {
        return Err(VadError::Load(format!(
            "the Silero VAD model {} does not exist: run `voxpipe models pull {SILERO_MODEL_ID}`",
            model_path.display()
        )));
    }
    let load_err =
        |e: &dyn std::fmt::Display| VadError::Load(format!("Silero VAD model {}: {e}", model_path.display()));
    let session = build_session(env, model_path).map_err(|e| load_err(&e))?;
    check_signature(&session).map_err(|e| load_err(&e))?;
    Ok(session)
}

/// One session on one thread without spinning: Silero is tiny, and a spinning pool would burn
/// a core per call between frames.
fn build_session(env: &Environment, model_path: &Path) -> ort::Result<Session> {
    let session = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_intra_threads(1)?
        .with_inter_threads(1)?
        .with_intra_op_spinning(false)?
        .commit_from_file(model_path)?;
    Ok(session)
}

/// Checks that the model has Silero v5/v6's inputs and outputs.
fn check_signature(session: &Session) -> Result<(), String> {
    let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    if inputs != INPUTS || !outputs.contains(&OUT_PROB) || !outputs.contains(&OUT_STATE) {
        return Err(format!(
            "not a Silero VAD v5/v6 model: inputs {inputs:?} (expected {INPUTS:?}), outputs {outputs:?} \
             (expected {OUT_PROB:?} and {OUT_STATE:?})"
        ));
    }
    Ok(())
}

impl Vad for SileroVad {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn frame_samples(&self) -> usize {
        self.window
    }

    fn process(&mut self, frame: &[i16]) -> Result<f32, VadError> {
        if frame.len() != self.window {
            return Err(VadError::Inference(format!(
                "Silero VAD at {} Hz takes frames of {} samples, got {}",
                self.rate,
                self.window,
                frame.len()
            )));
        }
        let (ctx, win) = (self.context, self.window);
        let (_, buf) = self.input.extract_tensor_mut();
        // The previous window's last `ctx` samples become this call's context.
        buf.copy_within(win..win + ctx, 0);
        for (dst, &s) in buf[ctx..].iter_mut().zip(frame) {
            *dst = f32::from(s) / 32768.0;
        }
        self.run().map_err(|e| VadError::Inference(e.to_string()))
    }

    fn reset(&mut self) {
        self.input.extract_tensor_mut().1.fill(0.0);
        self.state.extract_tensor_mut().1.fill(0.0);
    }
}
