//! The engine's error type.

use std::path::PathBuf;
use voxpipe_llm_local::PULL_HINT;

/// What can go wrong running a model in llama.cpp.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model file does not exist.
    #[error(
        "model file `{}` does not exist: run `{PULL_HINT}` or set `model` to an existing .gguf file",
        path.display()
    )]
    ModelNotFound {
        /// The path tried.
        path: PathBuf,
    },
    /// llama.cpp refused the file: not a GGUF model, truncated, or an unsupported architecture.
    #[error(
        "llama.cpp could not load `{}` (not a valid GGUF model, truncated, or an unsupported \
         architecture): fetch a good copy with `{PULL_HINT}` (delete the file first if it is in the model cache)",
        path.display()
    )]
    ModelLoad {
        /// The file.
        path: PathBuf,
    },
    /// The llama.cpp backend could not be initialised.
    #[error("llama.cpp backend initialisation failed: {message}")]
    Backend {
        /// llama.cpp's message.
        message: String,
    },
    /// A context (KV cache) could not be created, usually for lack of memory.
    #[error("cannot create a llama.cpp context of {context_tokens} tokens: {message}")]
    Context {
        /// The requested context size.
        context_tokens: u32,
        /// llama.cpp's message.
        message: String,
    },
    /// The chat template could not be applied.
    #[error("chat template: {message}")]
    Template {
        /// What failed.
        message: String,
    },
    /// The system prompt and last user message alone do not fit the context window.
    #[error(
        "the prompt needs {tokens} tokens but only {budget} fit (`context_tokens` minus `max_tokens`): \
         raise `context_tokens` or shorten `instructions`"
    )]
    PromptTooLong {
        /// Tokens needed.
        tokens: usize,
        /// Tokens available.
        budget: usize,
    },
    /// llama.cpp failed to evaluate a batch.
    #[error("llama.cpp decode failed: {message}")]
    Decode {
        /// llama.cpp's message.
        message: String,
    },
}

impl Error {
    /// True when the worker cannot go on (no model or context); false when only the current
    /// request failed.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Error::Decode { .. } | Error::PromptTooLong { .. } | Error::Template { .. })
    }

    /// A short code for the protocol and the event log.
    pub fn code(&self) -> &'static str {
        match self {
            Error::ModelNotFound { .. } => "model_not_found",
            Error::ModelLoad { .. } => "model_load",
            Error::Backend { .. } => "backend",
            Error::Context { .. } => "context",
            Error::Template { .. } => "template",
            Error::PromptTooLong { .. } => "prompt_too_long",
            Error::Decode { .. } => "decode",
        }
    }
}
