//! Loading a pipeline file in layers: file → profile → environment → `--set`.

use crate::schema::PipelineConfig;
use figment::Figment;
use figment::providers::{Format, Json, Serialized, Toml, Yaml};
use figment::value::{Dict, Tag, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level keys the environment layer may set (`VOXPIPE_MODEL_DIR` and other `VOXPIPE_*`
/// settings of the tools themselves are not pipeline keys).
const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "description",
    "input",
    "output",
    "events",
    "turn",
    "stages",
    "tools",
    "fallback",
    "fallback_after_failed_turns",
];

/// How to layer the file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Apply `[profiles.NAME]` of the file over its base.
    pub profile: Option<String>,
    /// `key=value` overrides, applied last (`stages[0].voice=ash`, `output.path=x.wav`).
    pub sets: Vec<String>,
    /// Environment variables to read (normally `std::env::vars()`); only `VOXPIPE_*` whose first
    /// key is a pipeline key are used.
    pub env: Vec<(String, String)>,
}

/// A pipeline file could not be loaded. One line: file, key path, what was expected.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{}{}: {message}", file.display(), key.as_ref().map(|k| format!(": key `{k}`")).unwrap_or_default())]
pub struct ConfigError {
    /// The pipeline file.
    pub file: PathBuf,
    /// The key path, e.g. `stages[0].voice`.
    pub key: Option<String>,
    /// What is wrong and what was expected (and which override set it, if one did).
    pub message: String,
}

impl ConfigError {
    fn new(file: &Path, key: Option<String>, message: impl Into<String>) -> Self {
        let message = message.into().replace('\n', " ");
        Self { file: file.to_path_buf(), key, message }
    }
}

/// Loads and layers `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<PipelineConfig, ConfigError> {
    if !path.exists() {
        return Err(ConfigError::new(path, None, "file not found"));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("toml").to_ascii_lowercase();
    let figment = match ext.as_str() {
        "yaml" | "yml" => Figment::from(Yaml::file_exact(path)),
        "json" => Figment::from(Json::file_exact(path)),
        _ => Figment::from(Toml::file_exact(path)),
    };
    let base: Value = figment.extract().map_err(|e| from_figment(path, e, &BTreeMap::new()))?;
    with_fallback(path, layer(path, base, opts)?)
}

/// Loads the file a pipeline names as its `fallback` (as written: no profile or overrides).
fn with_fallback(file: &Path, mut config: PipelineConfig) -> Result<PipelineConfig, ConfigError> {
    let Some(rel) = &config.fallback else { return Ok(config) };
    let path = file.parent().unwrap_or(Path::new(".")).join(rel);
    if !path.is_file() {
        let message = format!("expected a pipeline file, and {} is not one", path.display());
        return Err(ConfigError::new(file, Some("fallback".into()), message));
    }
    let fallback = load(&path, &LoadOptions::default())?;
    if fallback.fallback.is_some() {
        let message = "a fallback pipeline cannot name a fallback of its own";
        return Err(ConfigError::new(&path, Some("fallback".into()), message));
    }
    config.fallback_pipeline = Some(Box::new(fallback));
    Ok(config)
}

/// Loads a pipeline given as TOML text (`name` is used in errors as the file name).
pub fn load_str(name: &Path, toml_text: &str, opts: &LoadOptions) -> Result<PipelineConfig, ConfigError> {
    let base: Value = Figment::from(Toml::string(toml_text))
        .extract()
        .map_err(|e| from_figment(name, e, &BTreeMap::new()))?;
    with_fallback(name, layer(name, base, opts)?)
}

fn layer(file: &Path, mut base: Value, opts: &LoadOptions) -> Result<PipelineConfig, ConfigError> {
    let Value::Dict(_, dict) = &mut base else {
        return Err(ConfigError::new(file, None, "expected a table of pipeline settings at the top level"));
    };
    let profiles = dict.remove("profiles");
    if let Some(name) = &opts.profile {
        let profile =
            profiles.as_ref().and_then(|p| p.as_dict()).and_then(|p| p.get(name)).cloned().ok_or_else(
                || ConfigError::new(file, Some(format!("profiles.{name}")), "no such profile in the file"),
            )?;
        merge(&mut base, profile);
    }
    // Where each override came from, to name it in errors.
    let mut origins: BTreeMap<String, String> = BTreeMap::new();
    let mut env: Vec<_> = opts.env.iter().filter(|(k, _)| k.starts_with("VOXPIPE_")).collect();
    env.sort();
    for (var, value) in env {
        let path: Vec<String> = var["VOXPIPE_".len()..].split("__").map(|s| s.to_ascii_lowercase()).collect();
        if !TOP_LEVEL_KEYS.contains(&path[0].as_str()) {
            continue;
        }
        let key = display_path(&path);
        set_path(&mut base, &path, parse_value(value))
            .map_err(|m| ConfigError::new(file, Some(key.clone()), format!("{m} (set by {var})")))?;
        origins.insert(key, format!("set by environment variable {var}"));
    }
    for set in &opts.sets {
        let (key, value) = set
            .split_once('=')
            .ok_or_else(|| ConfigError::new(file, None, format!("--set `{set}`: expected key=value")))?;
        let path = parse_key(key.trim());
        let shown = display_path(&path);
        set_path(&mut base, &path, parse_value(value.trim()))
            .map_err(|m| ConfigError::new(file, Some(shown.clone()), format!("{m} (--set)")))?;
        origins.insert(shown, "set by --set".into());
    }
    Figment::from(Serialized::defaults(base))
        .extract::<PipelineConfig>()
        .map_err(|e| from_figment(file, e, &origins))
}

/// `stages[0].voice` or `stages.0.voice` → `["stages", "0", "voice"]`.
fn parse_key(key: &str) -> Vec<String> {
    key.replace('[', ".").replace(']', "").split('.').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// `["stages", "0", "voice"]` → `stages[0].voice`.
fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if seg.chars().all(|c| c.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

fn parse_value(text: &str) -> Value {
    text.parse().unwrap_or_else(|_| Value::from(text.to_string()))
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Dict(_, a), Value::Dict(_, b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        // Lists merge by position, so a profile can adjust `stages[0]` without repeating it.
        (Value::Array(_, a), Value::Array(_, b)) => {
            for (i, v) in b.into_iter().enumerate() {
                match a.get_mut(i) {
                    Some(existing) => merge(existing, v),
                    None => a.push(v),
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn set_path(root: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        *root = value;
        return Ok(());
    };
    match root {
        Value::Array(_, items) => {
            let i: usize = head.parse().map_err(|_| format!("`{head}` is not an index into a list"))?;
            if i > items.len() {
                return Err(format!("index {i} is past the end of a list of {}", items.len()));
            }
            if i == items.len() {
                items.push(Value::Dict(Tag::Default, Dict::new()));
            }
            set_path(&mut items[i], rest, value)
        }
        Value::Dict(_, dict) => {
            let child = dict.entry(head.clone()).or_insert_with(|| Value::Dict(Tag::Default, Dict::new()));
            set_path(child, rest, value)
        }
        _ => Err(format!("cannot set `{head}` inside a value that is not a table or list")),
    }
}

fn from_figment(file: &Path, err: figment::Error, origins: &BTreeMap<String, String>) -> ConfigError {
    let first = err.into_iter().next().expect("a figment error holds at least one error");
    let mut path = first.path.clone();
    let message = match &first.kind {
        figment::error::Kind::MissingField(field) => {
            path.push(field.to_string());
            "missing required key".to_string()
        }
        figment::error::Kind::UnknownField(field, expected) => {
            path.push(field.clone());
            format!("unknown key, expected one of: {}", expected.join(", "))
        }
        figment::error::Kind::UnknownVariant(found, expected) => {
            path.push("kind".into());
            let hint = crate::schema::did_you_mean(found, expected)
                .map(|k| format!("did you mean `{k}`? "))
                .unwrap_or_default();
            format!("unknown kind `{found}`, {hint}expected one of: {}", expected.join(", "))
        }
        kind => kind.to_string(),
    };
    // Stage tables report the key inside them as "`inner.path`: message" (see schema.rs).
    let message = match message.strip_prefix('`').and_then(|m| m.split_once("`: ")) {
        Some((inner, rest)) => {
            path.extend(inner.split('.').map(str::to_string));
            rest.to_string()
        }
        None => message,
    };
    let key = (!path.is_empty()).then(|| display_path(&path));
    let origin = key.as_ref().and_then(|k| origins.get(k)).map(|o| format!(" ({o})")).unwrap_or_default();
    ConfigError::new(file, key, format!("{message}{origin}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_round_trip() {
        assert_eq!(parse_key("stages[0].voice"), vec!["stages", "0", "voice"]);
        assert_eq!(display_path(&parse_key("stages.0.turn_detection.type")), "stages[0].turn_detection.type");
    }
}
