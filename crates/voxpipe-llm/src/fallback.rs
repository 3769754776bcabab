//! `[[stages.fallback]]`: other providers an LLM stage moves to when its own fails.
//!
//! A fallback takes over when a round fails before any of its text was said (connection
//! refused, 429/5xx past the retries, a timeout, a refused key) and stays for the rest of the
//! call; the round is asked of it at once, with the same history. Each fallback is a whole
//! provider table with its own model, key and `[stages.http]`; the primary's turn settings
//! (tool rounds, spoken lines) rule the turn.

use crate::driver::Backend;
use crate::{Anthropic, AnthropicConfig, Error, Gemini, GeminiConfig, OpenAiChat, OpenAiChatConfig};
use serde::{Deserialize, Serialize};
use voxpipe_core::Secret;

/// One entry of an LLM stage's `fallback` list, chosen by its `kind`.
///
/// ```toml
/// [[stages]]
/// kind = "llm.openai"
/// model = "gpt-4o-mini"
/// [[stages.fallback]]
/// kind = "llm.anthropic"
/// model = "claude-haiku-4-5"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind")]
pub enum FallbackConfig {
    /// An OpenAI-compatible chat completions server.
    #[serde(rename = "llm.openai")]
    OpenAi(OpenAiChatConfig),
    /// Anthropic Messages.
    #[serde(rename = "llm.anthropic")]
    Anthropic(AnthropicConfig),
    /// Gemini `streamGenerateContent`.
    #[serde(rename = "llm.gemini")]
    Gemini(GeminiConfig),
}

impl FallbackConfig {
    /// The environment variable holding its key (`None`: a server that needs none).
    pub fn api_key_env(&self) -> Option<&str> {
        match self {
            FallbackConfig::OpenAi(c) => c.api_key_env.as_deref(),
            FallbackConfig::Anthropic(c) => Some(&c.api_key_env),
            FallbackConfig::Gemini(c) => Some(&c.api_key_env),
        }
    }

    fn nested(&self) -> bool {
        match self {
            FallbackConfig::OpenAi(c) => !c.fallback.is_empty(),
            FallbackConfig::Anthropic(c) => !c.fallback.is_empty(),
            FallbackConfig::Gemini(c) => !c.fallback.is_empty(),
        }
    }
}

/// A built fallback, ready to hand to a stage (`with_fallback`).
#[derive(Debug)]
pub struct Fallback(pub(crate) Box<dyn Backend>);

impl Fallback {
    /// Builds the provider of `config` with the value of its `api_key_env`.
    ///
    /// # Errors
    /// [`Error::Config`] for a fallback that has fallbacks of its own, a missing key where the
    /// provider needs one, or any error its stage's constructor gives.
    pub fn new(config: &FallbackConfig, api_key: Option<Secret>) -> Result<Self, Error> {
        if config.nested() {
            let message = "a fallback cannot have fallbacks of its own: list them all on the stage".into();
            return Err(Error::Config { provider: "fallback", message });
        }
        let backend = match config {
            FallbackConfig::OpenAi(c) => OpenAiChat::new(c.clone(), api_key)?.into_backend(),
            FallbackConfig::Anthropic(c) => {
                let Some(key) = api_key else {
                    let message = format!("llm.anthropic needs a key in {}", c.api_key_env);
                    return Err(Error::Config { provider: "anthropic", message });
                };
                Anthropic::new(c.clone(), key)?.into_backend()
            }
            FallbackConfig::Gemini(c) => {
                let Some(key) = api_key else {
                    let message = format!("llm.gemini needs a key in {}", c.api_key_env);
                    return Err(Error::Config { provider: "gemini", message });
                };
                Gemini::new(c.clone(), key)?.into_backend()
            }
        };
        Ok(Self(backend))
    }
}
