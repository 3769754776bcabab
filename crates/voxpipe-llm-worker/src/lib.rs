//! The llama.cpp side of voxpipe's `llm.local`: the engine (through `llama-cpp-2`) and the
//! worker program `voxpipe-llm-worker` that runs it out of process.
//!
//! The `llm.local` stage itself lives in `voxpipe-llm-local`, which `voxpipe` links
//! instead of this crate: whisper-rs links ggml statically into `voxpipe`, and llama.cpp's
//! shared ggml loaded into the same process has its symbols interposed by that copy and
//! aborts. The stage starts `voxpipe-llm-worker` (built by `cargo build --release -p
//! voxpipe-llm-worker`, beside `voxpipe`) and speaks the line-delimited JSON protocol of
//! [`voxpipe_llm_local::protocol`] with it; [`serve`](serve::serve) is the worker's side.
//!
//! # Engine
//! One [`Session`] per worker: a llama.cpp context whose KV cache is kept between requests.
//! The prompt is the model's own chat template (ChatML when the GGUF has none) applied to the
//! messages; only the tokens after the longest common prefix with the previous prompt are
//! evaluated. When the conversation outgrows `context_tokens - max_tokens`, the oldest turns
//! are dropped. A [`StopFlag`], raised by the worker's reader thread on `cancel`, is checked
//! before every token decode, so a generation stops within one token step.
//!
//! # Shared library
//! llama.cpp is linked dynamically (`llama-cpp-2`'s `dynamic-link` feature), so the worker
//! needs `libllama.so.0`, `libggml.so.0`, `libggml-base.so.0` and `libggml-cpu.so.0` at run
//! time. This crate's build script copies them into `target/<profile>/` and
//! `target/<profile>/deps/` (next to the worker, tests and benches) and gives the worker, tests
//! and benches an rpath of `$ORIGIN`. To ship the worker, copy those files beside it.
//!
//! # Layout
//! - [`model`] loads GGUF files.
//! - [`engine`] is the generation session (KV reuse, sampling, stop flag).
//! - [`serve`] is the worker's protocol loop.

pub mod engine;
mod error;
pub mod model;
pub mod serve;

pub use engine::{Outcome, Session, StopFlag};
pub use error::Error;
pub use model::LocalModel;
pub use voxpipe_llm_local::PULL_HINT;
