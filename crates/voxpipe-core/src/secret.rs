//! Secrets (API keys). A pipeline file names the environment variable that holds a key; the
//! key itself only ever lives in a [`Secret`], which prints as `[redacted]` and cannot be
//! serialised.

use std::fmt;

/// An API key or other credential. `Debug` and `Display` print `[redacted]`; there is no
/// `Serialize`. Use [`Secret::expose`] only where the value goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// The environment variable a pipeline names for a secret is not set.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("environment variable `{var}` is not set or is empty")]
pub struct MissingSecret {
    /// The variable.
    pub var: String,
    /// The config key that names it, e.g. `stages[0].api_key_env`.
    pub key: String,
}

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Reads the secret from environment variable `var`; `key` is the config key naming it,
    /// for the error message.
    pub fn from_env(var: &str, key: &str) -> Result<Self, MissingSecret> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Self(v)),
            _ => Err(MissingSecret { var: var.to_string(), key: key.to_string() }),
        }
    }

    /// The secret value, for putting on the wire. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("sk-test-SECRET");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "sk-test-SECRET");
    }
}
