//! The crate's error type.

use std::path::PathBuf;

/// The command that fetches the default model, quoted in every model error.
pub const PULL_HINT: &str = "voxpipe models pull smollm2-135m";

/// What can go wrong running a local model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config value is out of range.
    #[error("llm.local config: {message}")]
    Config {
        /// Which field and why.
        message: String,
    },
    /// The model could not be resolved or fetched through the model store.
    #[error("llm.local: model `{model}`: {source} (fetch the default model with `{PULL_HINT}`)")]
    Store {
        /// The `model` config value.
        model: String,
        /// The store's error.
        #[source]
        source: voxpipe_models::Error,
    },
    /// The model file does not exist.
    #[error(
        "llm.local: model file `{}` does not exist: run `{PULL_HINT}` or set `model` to an existing .gguf file",
        path.display()
    )]
    ModelNotFound {
        /// The path tried.
        path: PathBuf,
    },
    /// llama.cpp refused the file: not a GGUF model, truncated, or an unsupported architecture.
    #[error(
        "llm.local: llama.cpp could not load `{}` (not a valid GGUF model, truncated, or an unsupported \
         architecture): fetch a good copy with `{PULL_HINT}` (delete the file first if it is in the model cache)",
        path.display()
    )]
    ModelLoad {
        /// The file.
        path: PathBuf,
    },
    /// The llama.cpp backend could not be initialised.
    #[error("llm.local: llama.cpp backend initialisation failed: {message}")]
    Backend {
        /// llama.cpp's message.
        message: String,
    },
    /// A context (KV cache) could not be created, usually for lack of memory.
    #[error("llm.local: cannot create a llama.cpp context of {context_tokens} tokens: {message}")]
    Context {
        /// The requested context size.
        context_tokens: u32,
        /// llama.cpp's message.
        message: String,
    },
    /// The chat template could not be applied.
    #[error("llm.local: chat template: {message}")]
    Template {
        /// What failed.
        message: String,
    },
    /// The system prompt and last user message alone do not fit the context window.
    #[error(
        "llm.local: the prompt needs {tokens} tokens but only {budget} fit (`context_tokens` minus `max_tokens`): \
         raise `context_tokens` or shorten `instructions`"
    )]
    PromptTooLong {
        /// Tokens needed.
        tokens: usize,
        /// Tokens available.
        budget: usize,
    },
    /// llama.cpp failed to evaluate a batch.
    #[error("llm.local: llama.cpp decode failed: {message}")]
    Decode {
        /// llama.cpp's message.
        message: String,
    },
    /// The generation thread is gone (it panicked).
    #[error("llm.local: the llama generation thread stopped unexpectedly")]
    WorkerGone,
}

impl Error {
    /// True when the call cannot go on (the model or its thread is unusable); false when only
    /// the current response failed.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Error::Decode { .. } | Error::PromptTooLong { .. } | Error::Template { .. })
    }

    /// A short code for the event log (`provider_error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config { .. } => "config",
            Error::Store { .. } => "model_store",
            Error::ModelNotFound { .. } => "model_not_found",
            Error::ModelLoad { .. } => "model_load",
            Error::Backend { .. } => "backend",
            Error::Context { .. } => "context",
            Error::Template { .. } => "template",
            Error::PromptTooLong { .. } => "prompt_too_long",
            Error::Decode { .. } => "decode",
            Error::WorkerGone => "worker_gone",
        }
    }
}
