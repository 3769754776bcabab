//! The `llm.local` stage's configuration.

use serde::{Deserialize, Serialize};

/// Configuration of an `llm.local` stage (`[[stages]] kind = "llm.local"`).
///
/// ```toml
/// [[stages]]
/// kind = "llm.local"
/// model = "smollm2-135m"          # catalog id or a path to any .gguf
/// instructions = "You are a friendly phone agent. Answer in one short sentence."
/// threads = 1
/// context_tokens = 2048
/// max_tokens = 96
/// temperature = 0.7               # 0 = greedy
/// top_p = 0.95
/// seed = 1234
/// stop = ["\nUser:"]
/// tools = false
/// worker = "target/release/voxpipe-llm-worker"   # default: beside the voxpipe binary
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalLlmConfig {
    /// A model id of the `voxpipe models` catalog (pulled on first use) or a path to a GGUF file.
    /// Default: `smollm2-135m`.
    #[serde(default = "defaults::model")]
    pub model: String,
    /// System prompt. Default: none.
    #[serde(default)]
    pub instructions: String,
    /// CPU threads of the worker for generation and prompt processing. Default: 1. llama.cpp's
    /// OpenMP threads spin while waiting, so on an oversubscribed machine (ASR and TTS busy on
    /// the same cores, as on a 2-core box) 1 can be ten times faster than 2: measure with
    /// `cargo bench -p voxpipe-llama`.
    #[serde(default = "defaults::threads")]
    pub threads: u32,
    /// Context window in tokens (prompt, history and reply together). Older turns are dropped
    /// when the conversation outgrows it. Default: 2048.
    #[serde(default = "defaults::context_tokens")]
    pub context_tokens: u32,
    /// Cap on generated tokens per reply (per tool round). Default: 96.
    #[serde(default = "defaults::max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature; 0 means greedy decoding. Default: 0.7.
    #[serde(default = "defaults::temperature")]
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this, 0 to 1
    /// (1 disables it). Ignored when `temperature` is 0. Default: 0.95.
    #[serde(default = "defaults::top_p")]
    pub top_p: f32,
    /// Seed of the sampler, reset at each reply so a conversation is reproducible. Default: 1234.
    #[serde(default = "defaults::seed")]
    pub seed: u32,
    /// Extra strings that end a reply when generated (they are not spoken). The model's own
    /// end-of-turn token always ends it. Default: none.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Offer the call's tools to the model with the `<tool_call>` prompt convention (see the
    /// crate docs). Small models call tools unreliably, so this is off by default. Default:
    /// false.
    #[serde(default)]
    pub tools: bool,
    /// Model requests with tools per user turn before a last one without. Default: 2.
    #[serde(default = "defaults::max_tool_rounds")]
    pub max_tool_rounds: u32,
    /// Path of the `voxpipe-llm-worker` program that runs llama.cpp. Default: the
    /// `VOXPIPE_LLM_WORKER` environment variable, else the file of that name beside the
    /// running executable (where `cargo build --release -p voxpipe-llama` puts it, next to
    /// `voxpipe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<std::path::PathBuf>,
}

impl Default for LocalLlmConfig {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every field has a default")
    }
}

mod defaults {
    pub fn model() -> String {
        "smollm2-135m".into()
    }
    pub fn threads() -> u32 {
        1
    }
    pub fn context_tokens() -> u32 {
        2048
    }
    pub fn max_tokens() -> u32 {
        96
    }
    pub fn temperature() -> f32 {
        0.7
    }
    pub fn top_p() -> f32 {
        0.95
    }
    pub fn seed() -> u32 {
        1234
    }
    pub fn max_tool_rounds() -> u32 {
        2
    }
}

impl LocalLlmConfig {
    /// Checks value ranges.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming the field.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |message: String| Err(crate::Error::Config { message });
        if self.model.trim().is_empty() {
            return bad("`model` is empty: give a catalog id such as `smollm2-135m` or a .gguf path".into());
        }
        if self.threads == 0 {
            return bad("`threads` must be at least 1".into());
        }
        if self.context_tokens < 64 {
            return bad(format!("`context_tokens` = {} is too small (at least 64)", self.context_tokens));
        }
        if self.max_tokens == 0 || self.max_tokens >= self.context_tokens {
            return bad(format!(
                "`max_tokens` = {} must be between 1 and `context_tokens` - 1 ({})",
                self.max_tokens,
                self.context_tokens - 1
            ));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return bad(format!("`temperature` = {} must be between 0 and 2", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("`top_p` = {} must be in (0, 1]", self.top_p));
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("`stop` contains an empty string".into());
        }
        Ok(())
    }

    /// The generation settings the worker is loaded with.
    pub fn settings(&self) -> crate::protocol::Settings {
        crate::protocol::Settings {
            threads: self.threads,
            context_tokens: self.context_tokens,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            stop: self.stop.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let c = LocalLlmConfig::default();
        assert_eq!(c.model, "smollm2-135m");
        assert_eq!((c.threads, c.context_tokens, c.max_tokens, c.seed), (1, 2048, 96, 1234));
        assert_eq!(c.temperature, 0.7);
        assert!(!c.tools);
        assert_eq!(c.worker, None);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_ranges_are_rejected() {
        let err = serde_json::from_str::<LocalLlmConfig>(r#"{"kind": "llm.local"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `kind`"), "{err}");
        let c: LocalLlmConfig = serde_json::from_str(r#"{"max_tokens": 4096}"#).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("max_tokens"));
        let c: LocalLlmConfig = serde_json::from_str(r#"{"temperature": 3.0}"#).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("temperature"));
    }
}
