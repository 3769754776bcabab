//! `llm.local`: the local LLM stage for cascade pipelines (ASR → **LLM** → TTS), running any
//! GGUF model with llama.cpp in a separate process, `voxpipe-llm-worker` (package
//! `voxpipe-llm-worker`). The default model is SmolLM2-135M Instruct (`smollm2-135m` in the
//! `voxpipe models` catalog): small and fast, fine for a demo.
//!
//! # Why a separate process
//! whisper-rs links ggml statically into `voxpipe`; llama.cpp's own shared ggml, loaded into
//! the same process, has its symbols interposed by the executable's copy and aborts. So this
//! crate never links llama.cpp: it starts the worker, sends it the model path and settings,
//! then the conversation for every reply, and reads the text back as it is generated, over a
//! line-delimited JSON [`protocol`] on the worker's stdin and stdout. A crash of the worker
//! cannot take the call down with it: the stage reports it ([`Error::WorkerDied`], with the
//! worker's exit status and last log lines, as a `provider_error` event) and starts a new
//! worker, which gets the whole conversation (the history lives in the stage). A reply that
//! had not started is asked again; one cut short ends `failed`. After `restarts` (default 2)
//! crashes in one call the call ends cleanly with the error.
//!
//! The worker program is found, in order: the stage's `worker` key, the `VOXPIPE_LLM_WORKER`
//! environment variable, `voxpipe-llm-worker` beside the running executable. Build it with
//! `cargo build --release -p voxpipe-llm-worker`. One worker runs per call (per stage) and is
//! killed when the stage ends.
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
//!   The time from the request to the first text is logged as the `llm_first_token_ms` metric.
//!
//! # Context
//! The prompt is the model's own chat template (ChatML when the GGUF has none) applied to the
//! system prompt (`instructions`) and the call's history ([`voxpipe_core::history::History`]). The
//! worker keeps the KV cache between turns: only the tokens after the longest common prefix
//! with the previous prompt are evaluated. When the conversation outgrows
//! `context_tokens - max_tokens`, the oldest turns are dropped.
//!
//! # Interruption
//! On `Control::Interrupt` the stage sends `cancel`; the worker checks its stop flag before
//! every token decode, so generation stops within one token step. Queued output is flushed,
//! `ResponseDone` says `cancelled`, and history keeps only the text already sent downstream.
//!
//! # Tools
//! Off by default (`tools = false`): a 135M model calls tools unreliably. With `tools = true`
//! and tools in the call's runtime, the system prompt lists them (name, description, JSON
//! Schema) and asks the model to answer with exactly
//! `<tool_call>{"name": "...", "arguments": {...}}</tool_call>`. Generation stops at the
//! closing tag (an unclosed call at the end of the reply is accepted too); the call runs
//! through `ctx.tools`, and its result goes back as a user message
//! `<result>{"name": ..., "content": ...}</result>` before the model is asked
//! again, up to `max_tool_rounds` (default 2) times; a tool call after that ends the reply
//! (`incomplete`, `max_tool_rounds`) instead of running. Text before the tag is spoken; the
//! tag itself never is.
//!
//! Small models follow examples far better than instructions: `[[stages.examples]]` adds
//! few-shot exchanges (an answer, or a tool call with its result and the answer after it)
//! between the system prompt and the call. `pipelines/local.toml` shows SmolLM2-135M calling
//! its stock-lookup tool this way. The system prompt, tools and examples are the same in every
//! request, and are evaluated into the worker's KV cache (`prefill`) when the call starts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), voxpipe_llm_local::Error> {
//! use voxpipe_llm_local::{LocalLlm, LocalLlmConfig};
//! let config = LocalLlmConfig { instructions: "Answer in one short sentence.".into(), ..Default::default() };
//! let stage = LocalLlm::load(config).await?; // pulls `smollm2-135m` once, starts the worker
//! // Put `Box::new(stage)` between the ASR and TTS stages of a `voxpipe_core::Pipeline`.
//! # drop(stage); Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`] has [`LocalLlmConfig`].
//! - [`protocol`] is the worker protocol (shared with the worker).
//! - [`worker`] finds, starts and talks to the worker process.
//! - [`text`] does incremental UTF-8, stop strings, `<tool_call>` scanning and parsing (used
//!   by the worker).
//! - [`prompt`] turns history into chat messages and writes the tool prompt.
//! - `stage` is the [`LocalLlm`] stage loop.

pub mod config;
mod error;
pub mod model;
pub mod prompt;
pub mod protocol;
mod stage;
pub mod text;
pub mod worker;

pub use config::{Example, ExampleToolCall, LocalLlmConfig};
pub use error::{BUILD_HINT, Error, PULL_HINT};
pub use stage::{LocalLlm, STAGE_NAME};
pub use worker::{WORKER_ENV, WORKER_PROGRAM, WorkerProcess};
