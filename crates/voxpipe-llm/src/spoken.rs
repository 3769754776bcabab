//! `[stages.spoken_fallback]`: what the caller hears when the model is slow to start answering
//! or a turn fails, so a provider's trouble never leaves the line silent.

use serde::{Deserialize, Serialize};

fn default_slow_after_ms() -> u64 {
    2500
}

/// Lines spoken for the model when its provider is slow or fails. Both are off by default.
///
/// ```toml
/// [stages.spoken_fallback]
/// slow = "One moment, please."
/// slow_after_ms = 2500
/// failed = "Sorry, I'm having trouble right now. Could you say that again?"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpokenFallback {
    /// Said once per turn when the provider has not started answering `slow_after_ms` after
    /// the request (connecting, retries and `Retry-After` waits included). Default: none.
    #[serde(default)]
    pub slow: Option<String>,
    /// When to say `slow`, ms after the turn's first request. Default 2500.
    #[serde(default = "default_slow_after_ms")]
    pub slow_after_ms: u64,
    /// Said when a turn fails and the call goes on (an error after the retries, a stalled or
    /// broken stream). Default: none.
    #[serde(default)]
    pub failed: Option<String>,
}

impl Default for SpokenFallback {
    fn default() -> Self {
        Self { slow: None, slow_after_ms: default_slow_after_ms(), failed: None }
    }
}

impl SpokenFallback {
    /// A line worth saying: configured and not blank.
    pub(crate) fn line(line: &Option<String>) -> Option<&str> {
        line.as_deref().map(str::trim).filter(|l| !l.is_empty())
    }
}
