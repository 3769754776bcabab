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
//! live in one process with whisper-rs, which links its own static ggml. A binary then needs
//! `libllama.so.0`, `libggml.so.0`, `libggml-base.so.0` and `libggml-cpu.so.0` at run time.
//! This crate's build script copies them into `target/<profile>/` and `target/<profile>/deps/`
//! (next to binaries, tests and benches). `cargo run`/`cargo test` find them anyway (cargo puts
//! the build's library directories on `LD_LIBRARY_PATH`); a binary started on its own finds
//! them through an rpath of `$ORIGIN`: the binary's crate needs a build script line
//! `println!("cargo:rustc-link-arg-bins=-Wl,--disable-new-dtags,-rpath,$ORIGIN");` (this crate sets it for its
//! tests and bench). To ship `target/release/voxpipe`, copy those four files beside it (or
//! into a directory on `LD_LIBRARY_PATH`). Without them the dynamic loader refuses to start
//! the program (`error while loading shared libraries: libllama.so.0`) before any voxpipe
//! code runs, so no voxpipe error can be printed then.
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
//! - [`config`] has [`LocalLlmConfig`].
//! - [`model`] resolves models and caches them per process.
//! - `engine` is the generation thread (KV reuse, sampling, stop flag).
//! - [`text`] does incremental UTF-8, stop strings, `<tool_call>` scanning and parsing.
//! - [`prompt`] turns history into chat messages and writes the tool prompt.
//! - `stage` is the [`LocalLlm`] stage loop.

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
