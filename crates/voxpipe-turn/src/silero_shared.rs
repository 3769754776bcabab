//! One Silero VAD for the whole process: every call's frames go through one ONNX Runtime
//! session on a thread of its own, in batches.
//!
//! A session per call costs about 10 MB and a `Run` per 32 ms frame per call, which made
//! Silero most of a cascade call's memory and CPU. Here a call keeps only what is its own: the
//! recurrent state (`[2, 128]` floats) and the last window's tail, about 3 KB in a
//! [`SileroStream`]. The engine thread takes whatever frames are waiting (from one call, or
//! from hundreds) and runs them as one batch (`input [B, context + window]`, `state
//! [2, B, 128]`), padded up to a power of two so that a handful of tensor sets, allocated
//! once, serve every batch size. At low load a frame runs alone as soon as it arrives; under
//! load, frames that queue up while a batch runs form the next one, so no frame waits for a
//! timer. Inference leaves the async worker threads: a call's task only copies its frame in and
//! awaits the result.

use crate::silero::{OUT_PROB, OUT_STATE, installed, open_session, window_and_context};
use crate::vad::VadError;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::Tensor;
use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

/// The largest batch (rows per `Run`).
const MAX_BATCH: usize = 64;
/// Frames that may wait for the engine: far more than calls per process.
const QUEUE: usize = 16_384;
/// Elements of one row of the recurrent state (`[2, B, 128]` holds two per row).
const STATE_ROW: usize = 128;

/// A frame's input and state, and what the engine made of them.
#[derive(Debug)]
struct SlotData {
    /// `context + window` samples as floats: the previous window's tail, then the new window.
    input: Vec<f32>,
    /// `[2, 128]`: this stream's recurrent state.
    state: Vec<f32>,
    /// Set by the engine: the probability, or why inference failed.
    result: Option<Result<f32, String>>,
}

/// One stream's place in the engine's queue.
#[derive(Debug)]
struct Slot {
    data: Mutex<SlotData>,
    done: tokio::sync::Notify,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An engine started at a rate, or why it could not be.
type Started = Result<Arc<SileroEngine>, String>;

/// The shared Silero VAD at one sample rate. Get it with [`SileroEngine::shared`] or
/// [`SileroEngine::start`]; each call takes a [`SileroStream`] from it.
#[derive(Debug)]
pub struct SileroEngine {
    queue: SyncSender<Arc<Slot>>,
    rate: u32,
    window: usize,
    context: usize,
}

impl SileroEngine {
    /// Loads the model on the ONNX Runtime library and starts the engine thread.
    ///
    /// Blocking (a session build, tens of ms): call it once, at start or on the first call.
    ///
    /// # Errors
    /// As [`SileroVad::load`](crate::silero::SileroVad::load).
    pub fn start(model_path: &Path, onnxruntime_lib_path: &Path, rate: u32) -> Result<Arc<Self>, VadError> {
        let (window, context) = window_and_context(rate)?;
        let env = crate::ort_env::init_onnxruntime(onnxruntime_lib_path)?;
        let session = open_session(env, model_path)?;
        let load_err = |e: &dyn std::fmt::Display| {
            VadError::Load(format!("Silero VAD model {}: {e}", model_path.display()))
        };
        let sr = Tensor::from_array(((), vec![i64::from(rate)])).map_err(|e| load_err(&e))?;
        let (tx, rx) = sync_channel(QUEUE);
        let worker = Worker { session, sr, rows: context + window, sets: HashMap::new() };
        std::thread::Builder::new()
            .name(format!("silero-{rate}"))
            .spawn(move || worker.run(rx))
            .map_err(|e| VadError::Load(format!("cannot start the Silero thread: {e}")))?;
        tracing::info!(rate, "shared Silero VAD engine started");
        Ok(Arc::new(Self { queue: tx, rate, window, context }))
    }

    /// The process's engine at `rate`, started on first use from the models installed in
    /// `store`; later calls (and a failed first one) return the same result.
    ///
    /// # Errors
    /// As [`SileroVad::from_store`](crate::silero::SileroVad::from_store).
    pub fn shared(store: &voxpipe_models::ModelStore, rate: u32) -> Result<Arc<Self>, VadError> {
        static ENGINES: OnceLock<Mutex<HashMap<u32, Started>>> = OnceLock::new();
        let mut engines = ENGINES.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
        let made = engines.entry(rate).or_insert_with(|| {
            let (model, lib) = installed(store).map_err(|e| e.to_string())?;
            Self::start(&model, &lib, rate).map_err(|e| e.to_string())
        });
        made.clone().map_err(VadError::Load)
    }

    /// A new stream (one call's audio) with fresh state.
    pub fn stream(self: &Arc<Self>) -> SileroStream {
        let data = SlotData {
            input: vec![0.0; self.context + self.window],
            state: vec![0.0; 2 * STATE_ROW],
            result: None,
        };
        SileroStream {
            engine: self.clone(),
            slot: Arc::new(Slot { data: Mutex::new(data), done: tokio::sync::Notify::new() }),
        }
    }
}

/// One call's Silero: its state and its place in the shared engine.
#[derive(Debug)]
pub struct SileroStream {
    engine: Arc<SileroEngine>,
    slot: Arc<Slot>,
}

impl SileroStream {
    /// Input rate.
    pub fn sample_rate(&self) -> u32 {
        self.engine.rate
    }

    /// Samples per frame (512 at 16 kHz, 256 at 8 kHz).
    pub fn frame_samples(&self) -> usize {
        self.engine.window
    }

    /// Speech probability of one frame: queued to the engine, awaited. No allocation.
    ///
    /// # Errors
    /// A frame of the wrong length, a full queue (the engine cannot keep up) or a failed run.
    pub async fn process(&mut self, frame: &[i16]) -> Result<f32, VadError> {
        let (window, context) = (self.engine.window, self.engine.context);
        if frame.len() != window {
            return Err(VadError::Inference(format!(
                "expected {window} samples per frame, got {}",
                frame.len()
            )));
        }
        {
            let mut d = self.slot.lock();
            // The previous window's tail becomes this frame's context.
            d.input.copy_within(window.., 0);
            for (x, &s) in d.input[context..].iter_mut().zip(frame) {
                *x = f32::from(s) / 32768.0;
            }
            d.result = None;
        }
        match self.engine.queue.try_send(self.slot.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(VadError::Inference("the shared Silero engine is saturated".into()));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(VadError::Inference("the Silero engine has stopped".into()));
            }
        }
        loop {
            if let Some(r) = self.slot.lock().result.take() {
                return r.map_err(VadError::Inference);
            }
            self.slot.done.notified().await;
        }
    }

    /// Forgets the state (a new call on the same stream).
    pub fn reset(&mut self) {
        let mut d = self.slot.lock();
        d.input.fill(0.0);
        d.state.fill(0.0);
    }
}

/// Tensors for one padded batch size, allocated on first use and rewritten in place.
struct TensorSet {
    input: Tensor<f32>,
    state: Tensor<f32>,
    options: RunOptions<HasSelectedOutputs>,
}

/// The engine thread's state.
struct Worker {
    session: Session,
    sr: Tensor<i64>,
    /// `context + window`.
    rows: usize,
    sets: HashMap<usize, TensorSet>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Arc<Slot>>) {
        let mut batch: Vec<Arc<Slot>> = Vec::with_capacity(MAX_BATCH);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
            let result = self.run_batch(&batch);
            for slot in batch.drain(..) {
                if let Err(e) = &result {
                    slot.lock().result = Some(Err(e.to_string()));
                }
                slot.done.notify_one();
            }
        }
        tracing::debug!("Silero engine stopped");
    }

    /// Runs `batch` as one `Run`; each slot gets its probability and its next state.
    fn run_batch(&mut self, batch: &[Arc<Slot>]) -> ort::Result<()> {
        let b = batch.len().next_power_of_two();
        let rows = self.rows;
        let set = match self.sets.entry(b) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(TensorSet {
                input: Tensor::from_array(([b, rows], vec![0f32; b * rows]))?,
                state: Tensor::from_array(([2usize, b, STATE_ROW], vec![0f32; 2 * b * STATE_ROW]))?,
                options: RunOptions::new()?.with_outputs(
                    OutputSelector::no_default()
                        .with(OUT_PROB)
                        .with(OUT_STATE)
                        .preallocate(OUT_PROB, Tensor::from_array(([b, 1usize], vec![0f32; b]))?)
                        .preallocate(
                            OUT_STATE,
                            Tensor::from_array(([2usize, b, STATE_ROW], vec![0f32; 2 * b * STATE_ROW]))?,
                        ),
                ),
            }),
        };
        {
            let (_, input) = set.input.extract_tensor_mut();
            let (_, state) = set.state.extract_tensor_mut();
            for (i, slot) in batch.iter().enumerate() {
                let d = slot.lock();
                input[i * rows..(i + 1) * rows].copy_from_slice(&d.input);
                for layer in 0..2 {
                    let at = (layer * b + i) * STATE_ROW;
                    state[at..at + STATE_ROW]
                        .copy_from_slice(&d.state[layer * STATE_ROW..(layer + 1) * STATE_ROW]);
                }
            }
        }
        let TensorSet { input, state, options } = set;
        let outputs = self.session.run_with_options(ort::inputs![&*input, &*state, &self.sr], options)?;
        let (_, prob) = outputs[OUT_PROB].try_extract_tensor::<f32>()?;
        let (_, next) = outputs[OUT_STATE].try_extract_tensor::<f32>()?;
        if prob.len() < batch.len() || next.len() != 2 * b * STATE_ROW {
            return Err(ort::Error::new(format!(
                "unexpected output sizes {} and {}",
                prob.len(),
                next.len()
            )));
        }
        for (i, slot) in batch.iter().enumerate() {
            let mut d = slot.lock();
            for layer in 0..2 {
                let at = (layer * b + i) * STATE_ROW;
                d.state[layer * STATE_ROW..(layer + 1) * STATE_ROW]
                    .copy_from_slice(&next[at..at + STATE_ROW]);
            }
            d.result = Some(Ok(prob[i]));
        }
        Ok(())
    }
}
