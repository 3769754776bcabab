//! Latency profiles of the offline fakes: how long each fake `voxpipe ab --fakes` starts takes
//! to its first token, byte or audio, and how fast it streams after that.
//!
//! The built-in profiles live in `pipelines/fakes/profiles.toml` (compiled in): `published`,
//! set from providers' published or widely reported figures, each value with its source and
//! date, and `instant`, where every fake answers at once. A custom profile is a TOML file with
//! the same tables at its top level; `extends = "published"` fills in the keys it leaves out.
//!
//! ```toml
//! extends = "published"
//! description = "TTS 200 ms slower"
//! [speech]
//! first_byte_ms = { value = 500, source = "what-if" }
//! ```

use crate::error::EvalError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

/// The built-in profiles file, as shipped.
pub const BUILTIN_TOML: &str = include_str!("../../../pipelines/fakes/profiles.toml");

/// Where the built-in profiles file lives in the repository (for messages and the report).
pub const BUILTIN_PATH: &str = "pipelines/fakes/profiles.toml";

/// The profile `voxpipe ab --fakes` uses unless told otherwise.
pub const DEFAULT_PROFILE: &str = "published";

/// One figure of a profile: the value, and where it comes from.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Figure<T> {
    /// The value, in the unit its key names.
    pub value: T,
    /// Where the figure comes from (a provider's documentation, a measurement, a ballpark).
    #[serde(default)]
    pub source: Option<String>,
    /// When that source said so (`2025-09`).
    #[serde(default)]
    pub date: Option<String>,
}

/// One row of a profile's table in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileRow {
    /// The fake (`realtime`, `chat`, `anthropic`, `gemini`, `speech`, `elevenlabs`, `transcription`).
    pub fake: &'static str,
    /// The key (`first_audio_ms`).
    pub key: &'static str,
    /// The value, formatted.
    pub value: String,
    /// Its source, if given.
    pub source: Option<String>,
    /// Its date, if given.
    pub date: Option<String>,
}

/// A fake's timing table: the resolved struct (every key set) and the file's (keys optional,
/// for `extends`), with the merge, the check that every key is set, and the report rows.
macro_rules! timings {
    (
        $(#[doc = $doc:literal])+
        $name:ident / $spec:ident = $table:literal {
            $( $(#[doc = $fdoc:literal])+ $field:ident: $ty:ty, )+
        }
    ) => {
        $(#[doc = $doc])+
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub struct $name {
            $( $(#[doc = $fdoc])+ pub $field: Figure<$ty>, )+
        }

        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $spec {
            $( #[serde(default)] $field: Option<Figure<$ty>>, )+
        }

        impl $spec {
            /// `self` with `base`'s values where `self` has none.
            fn or(self, base: Self) -> Self {
                Self { $( $field: self.$field.or(base.$field), )+ }
            }

            /// The resolved table, or the keys still missing (pushed on `missing`).
            fn resolve(self, missing: &mut Vec<String>) -> Option<$name> {
                $(
                    if self.$field.is_none() {
                        missing.push(format!("{}.{}", $table, stringify!($field)));
                    }
                )+
                Some($name { $( $field: self.$field?, )+ })
            }
        }

        impl $name {
            fn rows(&self, out: &mut Vec<ProfileRow>) {
                $( out.push(row($table, stringify!($field), &self.$field)); )+
            }
        }
    };
}

fn row<T: Display>(fake: &'static str, key: &'static str, f: &Figure<T>) -> ProfileRow {
    ProfileRow { fake, key, value: f.value.to_string(), source: f.source.clone(), date: f.date.clone() }
}

timings! {
    /// The Realtime fake (`realtime.openai` stages).
    RealtimeTimings / RealtimeSpec = "realtime" {
        /// `response.created` → first audio delta, ms.
        first_audio_ms: u64,
        /// Audio per output delta, ms of audio.
        audio_delta_ms: u64,
        /// Audio sent per wall second, in seconds of audio (above 0).
        pace: f64,
    }
}

timings! {
    /// The chat-completions fake (`llm.openai` stages).
    ChatTimings / ChatSpec = "chat" {
        /// Request → first SSE event, ms.
        first_token_ms: u64,
        /// Between later SSE events, ms.
        token_interval_ms: u64,
    }
}

timings! {
    /// The Anthropic Messages fake (`llm.anthropic` stages).
    AnthropicTimings / AnthropicSpec = "anthropic" {
        /// Request → first SSE event, ms.
        first_token_ms: u64,
        /// Between later SSE events, ms.
        token_interval_ms: u64,
    }
}

timings! {
    /// The Gemini fake (`llm.gemini` stages).
    GeminiTimings / GeminiSpec = "gemini" {
        /// Request → first SSE event, ms.
        first_token_ms: u64,
        /// Between later SSE events (one token-sized chunk each), ms.
        token_interval_ms: u64,
    }
}

timings! {
    /// The speech fake (`tts.openai` stages).
    SpeechTimings / SpeechSpec = "speech" {
        /// Request → first audio byte, ms.
        first_byte_ms: u64,
        /// Audio streamed per wall second, in seconds of audio; 0 streams as fast as possible.
        real_time_factor: f64,
    }
}

timings! {
    /// The ElevenLabs speech fake (`tts.elevenlabs` stages, HTTP stream or `stream-input`
    /// WebSocket).
    ElevenLabsTimings / ElevenLabsSpec = "elevenlabs" {
        /// Request (or the first text of a generation) → first audio, ms.
        first_byte_ms: u64,
        /// Audio streamed per wall second, in seconds of audio; 0 streams as fast as possible.
        real_time_factor: f64,
    }
}

timings! {
    /// The transcription fake (`asr.openai` stages).
    TranscriptionTimings / TranscriptionSpec = "transcription" {
        /// Request → answer, fixed part, ms.
        latency_ms: u64,
        /// Added per second of uploaded audio, ms.
        per_audio_second_ms: u64,
    }
}

/// A profile as written in a file: every table and key optional (for `extends`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileSpec {
    /// A built-in profile whose values fill the keys this one leaves out.
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    realtime: RealtimeSpec,
    #[serde(default)]
    chat: ChatSpec,
    #[serde(default)]
    anthropic: AnthropicSpec,
    #[serde(default)]
    gemini: GeminiSpec,
    #[serde(default)]
    speech: SpeechSpec,
    #[serde(default)]
    elevenlabs: ElevenLabsSpec,
    #[serde(default)]
    transcription: TranscriptionSpec,
}

impl ProfileSpec {
    fn or(self, base: Self) -> Self {
        Self {
            extends: None,
            description: self.description.or(base.description),
            realtime: self.realtime.or(base.realtime),
            chat: self.chat.or(base.chat),
            anthropic: self.anthropic.or(base.anthropic),
            gemini: self.gemini.or(base.gemini),
            speech: self.speech.or(base.speech),
            elevenlabs: self.elevenlabs.or(base.elevenlabs),
            transcription: self.transcription.or(base.transcription),
        }
    }
}

/// The timing of every fake for one pipeline's calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FakeProfile {
    /// `published`, `instant`, or a custom file's stem.
    pub name: String,
    /// What the profile stands for.
    pub description: String,
    /// Where it was read: the built-in file's path, or the custom file's.
    pub origin: PathBuf,
    /// The Realtime fake.
    pub realtime: RealtimeTimings,
    /// The chat-completions fake.
    pub chat: ChatTimings,
    /// The Anthropic Messages fake.
    pub anthropic: AnthropicTimings,
    /// The Gemini fake.
    pub gemini: GeminiTimings,
    /// The speech fake.
    pub speech: SpeechTimings,
    /// The ElevenLabs speech fake.
    pub elevenlabs: ElevenLabsTimings,
    /// The transcription fake.
    pub transcription: TranscriptionTimings,
}

fn profile_error(path: &Path, message: impl Into<String>) -> EvalError {
    EvalError::Profile { path: path.to_path_buf(), message: message.into() }
}

/// The built-in profiles by name, as written.
fn builtin_specs() -> Result<BTreeMap<String, ProfileSpec>, EvalError> {
    toml::from_str(BUILTIN_TOML).map_err(|e| profile_error(Path::new(BUILTIN_PATH), e.to_string()))
}

impl FakeProfile {
    /// The names of the built-in profiles.
    pub fn builtin_names() -> Vec<String> {
        builtin_specs().map(|m| m.into_keys().collect()).unwrap_or_default()
    }

    /// The built-in profile `name`.
    ///
    /// # Errors
    /// No such profile (the message lists the ones there are).
    pub fn builtin(name: &str) -> Result<Self, EvalError> {
        let path = Path::new(BUILTIN_PATH);
        let mut specs = builtin_specs()?;
        let spec = specs.remove(name).ok_or_else(|| {
            let names: Vec<String> = Self::builtin_names().iter().map(|n| format!("`{n}`")).collect();
            profile_error(path, format!("no profile `{name}`; built in: {}", names.join(", ")))
        })?;
        Self::resolve(name.to_string(), path, spec)
    }

    /// `published`: the providers' published or widely reported figures.
    pub fn published() -> Self {
        Self::builtin("published").expect("the shipped profiles file has `published` (tested)")
    }

    /// `instant`: every fake answers at once.
    pub fn instant() -> Self {
        Self::builtin("instant").expect("the shipped profiles file has `instant` (tested)")
    }

    /// A custom profile file (its name is the file's stem).
    ///
    /// # Errors
    /// An unreadable file, bad TOML, an unknown key, a value of the wrong type, an unknown
    /// `extends`, a missing key (without `extends`) or a value out of range; the message names
    /// the file and the key.
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        let spec: ProfileSpec = toml::from_str(&text).map_err(|e| profile_error(path, toml_message(&e)))?;
        let name = path.file_stem().map_or_else(|| "custom".into(), |s| s.to_string_lossy().into_owned());
        Self::resolve(name, path, spec)
    }

    /// `published`, `instant` or a path to a custom profile file.
    ///
    /// # Errors
    /// As [`FakeProfile::builtin`] and [`FakeProfile::load`].
    pub fn select(arg: &str) -> Result<Self, EvalError> {
        let looks_like_file =
            arg.ends_with(".toml") || arg.contains(std::path::MAIN_SEPARATOR) || arg.contains('/');
        if looks_like_file || Path::new(arg).is_file() {
            Self::load(Path::new(arg))
        } else {
            Self::builtin(arg)
        }
    }

    fn resolve(name: String, path: &Path, spec: ProfileSpec) -> Result<Self, EvalError> {
        let spec = match spec.extends.clone() {
            None => spec,
            Some(base) => {
                let mut specs = builtin_specs()?;
                let Some(b) = specs.remove(&base) else {
                    let names: Vec<String> = specs.keys().map(|n| format!("`{n}`")).collect();
                    return Err(profile_error(
                        path,
                        format!(
                            "key `extends`: no built-in profile `{base}`; expected one of {}",
                            names.join(", ")
                        ),
                    ));
                };
                spec.or(b)
            }
        };
        let mut missing = Vec::new();
        let realtime = spec.realtime.resolve(&mut missing);
        let chat = spec.chat.resolve(&mut missing);
        let anthropic = spec.anthropic.resolve(&mut missing);
        let gemini = spec.gemini.resolve(&mut missing);
        let speech = spec.speech.resolve(&mut missing);
        let elevenlabs = spec.elevenlabs.resolve(&mut missing);
        let transcription = spec.transcription.resolve(&mut missing);
        let (
            Some(realtime),
            Some(chat),
            Some(anthropic),
            Some(gemini),
            Some(speech),
            Some(elevenlabs),
            Some(transcription),
        ) = (realtime, chat, anthropic, gemini, speech, elevenlabs, transcription)
        else {
            let keys: Vec<String> = missing.iter().map(|k| format!("`{k}`")).collect();
            return Err(profile_error(
                path,
                format!(
                    "missing key {}: give every value, or start the file with `extends = \"{DEFAULT_PROFILE}\"`",
                    keys.join(", ")
                ),
            ));
        };
        if !(realtime.pace.value.is_finite() && realtime.pace.value > 0.0) {
            return Err(profile_error(
                path,
                format!("key `realtime.pace`: expected a number above 0, got {}", realtime.pace.value),
            ));
        }
        for (table, rtf) in
            [("speech", speech.real_time_factor.value), ("elevenlabs", elevenlabs.real_time_factor.value)]
        {
            if !(rtf.is_finite() && rtf >= 0.0) {
                return Err(profile_error(
                    path,
                    format!("key `{table}.real_time_factor`: expected 0 or more, got {rtf}"),
                ));
            }
        }
        if realtime.audio_delta_ms.value == 0 {
            return Err(profile_error(path, "key `realtime.audio_delta_ms`: expected 1 or more, got 0"));
        }
        Ok(Self {
            name,
            description: spec.description.unwrap_or_default(),
            origin: path.to_path_buf(),
            realtime,
            chat,
            anthropic,
            gemini,
            speech,
            elevenlabs,
            transcription,
        })
    }

    /// Every value with its source and date, fake by fake.
    pub fn rows(&self) -> Vec<ProfileRow> {
        let mut out = Vec::new();
        self.realtime.rows(&mut out);
        self.chat.rows(&mut out);
        self.anthropic.rows(&mut out);
        self.gemini.rows(&mut out);
        self.speech.rows(&mut out);
        self.elevenlabs.rows(&mut out);
        self.transcription.rows(&mut out);
        out
    }

    /// Whether two profiles time the fakes alike (names and sources aside).
    pub fn same_timing(&self, other: &Self) -> bool {
        let values = |p: &Self| p.rows().into_iter().map(|r| (r.fake, r.key, r.value)).collect::<Vec<_>>();
        values(self) == values(other)
    }

    /// A profile with every value of this one but `f` applied (for tests and what-ifs).
    pub fn with(mut self, name: &str, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self.name = name.to_string();
        self
    }
}

impl Default for FakeProfile {
    fn default() -> Self {
        Self::published()
    }
}

/// toml's message: the position, the offending line (which shows the key) and what was expected.
fn toml_message(e: &toml::de::Error) -> String {
    e.to_string().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_profiles_resolve_and_every_published_value_has_a_source_and_a_date() {
        assert_eq!(FakeProfile::builtin_names(), ["instant", "published"]);
        let published = FakeProfile::published();
        let rows = published.rows();
        assert_eq!(rows.len(), 15);
        for r in &rows {
            let source = r.source.as_deref().unwrap_or("");
            assert!(source.len() > 10, "{}.{} has no source", r.fake, r.key);
            let date = r.date.as_deref().unwrap_or("");
            assert!(
                date.len() >= 4 && date[..4].parse::<u32>().is_ok(),
                "{}.{}: date `{date}`",
                r.fake,
                r.key
            );
        }
        assert!(published.realtime.first_audio_ms.value >= 500);
        let instant = FakeProfile::instant();
        assert_eq!(instant.chat.first_token_ms.value, 0);
        assert_eq!((instant.gemini.first_token_ms.value, instant.gemini.token_interval_ms.value), (0, 0));
        assert!(published.gemini.first_token_ms.value > 0 && published.gemini.token_interval_ms.value > 0);
        assert_eq!(instant.speech.first_byte_ms.value, 0);
        assert!(!published.same_timing(&instant));
        assert!(FakeProfile::select("published").unwrap().same_timing(&published));
    }

    #[test]
    fn a_custom_profile_extends_a_built_in_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow-tts.toml");
        std::fs::write(&path, "extends = \"published\"\n[speech]\nfirst_byte_ms = { value = 500 }\n")
            .unwrap();
        let p = FakeProfile::select(path.to_str().unwrap()).unwrap();
        assert_eq!(p.name, "slow-tts");
        assert_eq!(p.speech.first_byte_ms.value, 500);
        assert_eq!(p.chat, FakeProfile::published().chat);
    }

    #[test]
    fn a_bad_profile_file_is_an_error_naming_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let case = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let e = FakeProfile::load(&path).unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
            e
        };
        let e = case("typo.toml", "extends = \"published\"\n[speech]\nfirst_bite_ms = { value = 5 }\n");
        assert!(e.contains("first_bite_ms"), "{e}");
        let e = case("type.toml", "extends = \"published\"\n[chat]\nfirst_token_ms = { value = \"fast\" }\n");
        assert!(e.contains("first_token_ms") && e.contains("fast"), "{e}");
        let e = case("missing.toml", "[chat]\nfirst_token_ms = { value = 5 }\n");
        assert!(e.contains("`speech.first_byte_ms`") && e.contains("extends"), "{e}");
        assert!(!e.contains("`chat.first_token_ms`"), "{e}");
        let e = case("base.toml", "extends = \"publish\"\n");
        assert!(e.contains("key `extends`") && e.contains("`published`"), "{e}");
        let e = case("pace.toml", "extends = \"instant\"\n[realtime]\npace = { value = 0.0 }\n");
        assert!(e.contains("key `realtime.pace`"), "{e}");
        let e = FakeProfile::select("fastest").unwrap_err().to_string();
        assert!(e.contains("no profile `fastest`") && e.contains(BUILTIN_PATH), "{e}");
    }
}
