//! `llm.local`: an in-process LLM stage for cascade pipelines (ASR → **LLM** → TTS), running
//! any GGUF model with llama.cpp (through `llama-cpp-2`). The default model is SmolLM2-135M
//! Instruct (`smollm2-135m` in the `voxpipe models` catalog): small and fast, fine for a demo.
//!
//! # Frames
//! The same contract as the remote stages of `voxpipe-llm`:
//! - In: a final, non-empty `UserTranscript` starts a turn (the transcript is forwarded
//!   first). Every other frame is forwarded unchanged; `EndOfStream` after the current turn.
//! - Out, per turn: `ResponseStarted`, a `TextDelta` per decoded piece of text (item
//!   `reply_<n>`; a character split across tokens is sent whole), `ToolCall`/`ToolResult` for
//!   tool calls, then a final `AssistantTranscript` (the concatenated deltas) and
//!   `ResponseDone` with [`Usage`](voxpipe_core::Usage): `input_tokens` = the whole prompt,
//!   `cached_tokens` = prompt tokens reused from the KV cache, `output_tokens` = tokens sampled.
//!
//! # How it runs
//! The model is loaded once per process ([`LocalModel::load`] caches it by path) and shared
//! by every call. Each call gets its own llama.cpp context (KV cache) on a dedicated thread
//! named `llama`; nothing runs on the async runtime. The prompt is the model's own chat
//! template (ChatML when the GGUF has none) applied to the system prompt (`instructions`) and
//! the call's history ([`voxpipe_llm::History`]). Between turns the KV cache is kept: only
//! the tokens after the longest common prefix with the previous prompt are evaluated. When the
//! conversation outgrows `context_tokens - max_tokens`, the oldest turns are dropped.
//!
//! # Interruption
//! On `Control::Interrupt` a stop flag is raised; the generation thread checks it before every
//! token decode, so generation stops within one token step. Queued output is flushed,
//! `ResponseDone` says `cancelled`, and history keeps only the text already sent downstream.
//!
//! # Tools
//! Off by default (`tools = false`): a 135M model calls tools unreliably. With `tools = true`
//! and tools in the call's runtime, the system prompt lists them (name, description, JSON
//! Schema) and asks the model to answer with exactly
//! `<tool_call>{"name": "...", "arguments": {...}}</tool_call>`. Generation stops at the
//! closing tag (an unclosed call at the end of the reply is accepted too); the call runs
//! through `ctx.tools`, and its result goes back as a user message
//! `<tool_response>{"name": ..., "content": ...}</tool_response>` before the model is asked
//! again, up to `max_tool_rounds` (default 2) times, then once more without tools. Text
//! before the tag is spoken; the tag itself never is.
//!
//! # Shared library
//! The crate links llama.cpp dynamically (`llama-cpp-2`'s `dynamic-link` feature), so it can
//! live in one process with whisper-rs, which links its own static ggml. The build places
//! `libllama.so`, `libggml*.so` next to the binaries in `target/<profile>/` and in
//! `target/<profile>/deps/`; `cargo run`/`cargo test` find them there. A binary run on its own
//! needs them beside it with an rpath of `$ORIGIN` (give the binary's crate a build script
//! with `cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN`, as this crate does for its tests and
//! bench), or a directory holding them on `LD_LIBRARY_PATH`. Without them the dynamic loader
//! refuses to start the program (`error while loading shared libraries: libllama.so`), before
//! any voxpipe code runs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), voxpipe_llama::Error> {
//! use voxpipe_llama::{LocalLlm, LocalLlmConfig};
//! let config = LocalLlmConfig { instructions: "Answer in one short sentence.".into(), ..Default::default() };
//! let stage = LocalLlm::load(config).await?; // pulls `smollm2-135m` into the model cache once
//! // Put `Box::new(stage)` between the ASR and TTS stages of a `voxpipe_core::Pipeline`.
//! # drop(stage); Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: [`LocalLlmConfig`].
//! - [`model`]: model resolution and the per-process model cache.
//! - `engine`: the generation thread (KV reuse, sampling, stop flag).
//! - [`text`]: incremental UTF-8, stop strings, `<tool_call>` scanning and parsing.
//! - [`prompt`]: history → chat messages, the tool prompt.
//! - `stage`: the [`LocalLlm`] stage loop.

pub mod config;
mod engine;
mod error;
pub mod model;
pub mod prompt;
mod stage;
pub mod text;

pub use config::LocalLlmConfig;
pub use error::{Error, PULL_HINT};
pub use model::LocalModel;
pub use stage::{LocalLlm, STAGE_NAME};
