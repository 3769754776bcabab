//! The serve file: one process, the pipelines it offers and how a call picks one, auth,
//! limits, drain, recordings and the post-call webhook. Loaded with figment (TOML, YAML or
//! JSON by extension; `VOXPIPE_SERVE_*` environment overrides with `__` between keys), every
//! table `deny_unknown_fields`, errors naming the file, the key and what was expected.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use voxpipe_config::PipelineConfig;
use voxpipe_twilio::transport::{DtmfConfig, StreamOptions};

/// A whole serve file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on (HTTP and WebSocket on one port).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The URL Twilio uses to reach this server (`https://voice.example.com`): signatures are
    /// computed over it, and the media stream URL is derived from it.
    pub public_url: String,
    /// Per-call directory (recording, event log, summary) under here; none: nothing is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recordings_dir: Option<PathBuf>,
    /// Operator endpoint keys.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Twilio account and stream settings.
    #[serde(default)]
    pub twilio: TwilioConfig,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Graceful drain on SIGTERM.
    #[serde(default)]
    pub drain: DrainConfig,
    /// Key presses.
    #[serde(default)]
    pub dtmf: DtmfConfig,
    /// How a call picks its pipeline.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// The pipelines offered (the first is the default).
    pub pipelines: Vec<PipelineEntry>,
    /// Post-call webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    /// The browser page and its WebRTC calls.
    #[serde(default)]
    pub web: WebConfig,
}

/// `[web]`: the voice page at `/` and browser calls over WebRTC.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve the page and take browser calls.
    pub enabled: bool,
    /// Environment variable of the key that signs page session tokens; unset: a random key per
    /// process (tokens die with it).
    pub token_secret_env: Option<String>,
    /// How long a page session token lasts, s.
    pub token_ttl_secs: u64,
    /// Origins whose pages may start calls (`https://app.example.com`), beside the server's
    /// own; a request with another `Origin` is refused.
    pub allowed_origins: Vec<String>,
    /// Session tokens minted per client IP per minute (`POST /web/session`).
    pub mint_per_minute: u32,
    /// STUN/TURN servers the page's peer connection uses (none on a LAN or loopback).
    pub ice_servers: Vec<IceServer>,
    /// The server side of each call's peer connection.
    pub webrtc: voxpipe_webrtc::WebRtcOptions,
    /// Let pages call a native OpenAI Realtime pipeline directly (WebRTC to the provider, with
    /// a client secret minted here; tools still run here).
    pub direct: bool,
    /// Lifetime of those client secrets, s (10..7200): the page must start its call within it.
    pub direct_secret_ttl_secs: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            token_secret_env: None,
            token_ttl_secs: 3600,
            allowed_origins: Vec::new(),
            mint_per_minute: 30,
            ice_servers: Vec::new(),
            webrtc: voxpipe_webrtc::WebRtcOptions::default(),
            direct: true,
            direct_secret_ttl_secs: 60,
        }
    }
}

/// A STUN or TURN server, in the shape of the browser's `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:host:port` or `turn:host:port?transport=udp`.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Environment variable of the TURN credential (sent to pages, never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_env: Option<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

/// `[auth]`: bearer keys for every endpoint that is not Twilio's.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Environment variables each holding an accepted API key (`/calls`, `/metrics`).
    pub api_keys_env: Vec<String>,
    /// Environment variable of a key accepted on `/metrics` only (for the scraper).
    pub metrics_key_env: Option<String>,
}

/// `[twilio]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioConfig {
    /// Environment variable of the account SID.
    pub account_sid_env: String,
    /// Environment variable of the auth token (signatures, REST).
    pub auth_token_env: String,
    /// REST API base (a fake's URL offline).
    pub api_base_url: String,
    /// Said before hanging up when the server is full or draining.
    pub busy_message: String,
    /// Refuse with `<Reject reason="busy">` instead of answering with the message.
    pub reject_when_busy: bool,
    /// Caller ID for transfers (`<Dial callerId>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer_caller_id: Option<String>,
    /// Stream pacing and marks.
    pub stream: StreamOptions,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            account_sid_env: "TWILIO_ACCOUNT_SID".into(),
            auth_token_env: "TWILIO_AUTH_TOKEN".into(),
            api_base_url: voxpipe_twilio::rest::DEFAULT_API_BASE.into(),
            busy_message: "Sorry, all our agents are busy right now. Please call again in a few minutes."
                .into(),
            reject_when_busy: false,
            transfer_caller_id: None,
            stream: StreamOptions::default(),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent calls; a new call beyond it is answered with the busy message.
    pub max_calls: usize,
    /// A call is ended (cleanly) after this long.
    pub max_call_secs: u64,
    /// Largest WebSocket message accepted, bytes.
    pub max_message_bytes: usize,
    /// A stream that sends nothing this long is ended.
    pub idle_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_calls: 100, max_call_secs: 1800, max_message_bytes: 64 * 1024, idle_timeout_secs: 15 }
    }
}

/// `[drain]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainConfig {
    /// After SIGTERM, live calls get this long to finish before they are ended.
    pub timeout_secs: u64,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self { timeout_secs: 1800 }
    }
}

/// `[routing]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// The same caller number always gets the same weighted pipeline (a hash of the number
    /// instead of a random draw).
    pub sticky: bool,
}

/// `[[pipelines]]`: one pipeline offered.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineEntry {
    /// Its name in routes, `<Parameter>`s, events and metrics.
    pub name: String,
    /// The pipeline file (relative to the serve file's directory).
    pub file: PathBuf,
    /// Share of the weighted draw for calls no rule picked (0: only by route, parameter or
    /// caller pattern).
    #[serde(default = "one")]
    pub weight: u32,
    /// Caller numbers that get this pipeline: exact, or a prefix ending in `*` (`+1555*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<String>,
    /// `--profile` of the pipeline file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

fn one() -> u32 {
    1
}

/// `[webhook]`: a signed POST after each call (Standard Webhooks).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where.
    pub url: String,
    /// Environment variable of the signing secret (`whsec_` + base64, or raw text).
    pub secret_env: String,
    /// Attempts before giving up (backoff 1 s, 2 s, 4 s…).
    #[serde(default = "five")]
    pub max_attempts: u32,
    /// Per-attempt timeout, ms.
    #[serde(default = "ten_thousand")]
    pub timeout_ms: u64,
}

fn five() -> u32 {
    5
}
fn ten_thousand() -> u64 {
    10_000
}

/// A serve file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct ServeConfigError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong (key path and expectation).
    pub message: String,
}

/// A loaded serve file with its pipelines.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The serve file.
    pub config: ServeConfig,
    /// Each entry's pipeline, in order.
    pub pipelines: Vec<(PipelineEntry, PipelineConfig)>,
}

/// True when `path` looks like a serve file (it has `[[pipelines]]` and a `public_url`).
pub fn is_serve_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml_like::Probe>().ok())
        .is_some_and(|p| p.serve)
}

mod toml_like {
    /// A cheap look at a file's top-level keys.
    pub struct Probe {
        pub serve: bool,
    }
    impl std::str::FromStr for Probe {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let has = |k: &str| s.lines().any(|l| l.trim_start().starts_with(k));
            Ok(Probe { serve: has("[[pipelines]]") || (has("public_url") && has("pipelines")) })
        }
    }
}

/// Loads `path` and every pipeline file it names.
pub fn load(path: &Path, env: &[(String, String)]) -> Result<Loaded, ServeConfigError> {
    use figment::Figment;
    use figment::providers::{Env, Format, Json, Toml, Yaml};
    let err = |message: String| ServeConfigError { file: path.to_path_buf(), message };
    if !path.exists() {
        return Err(err("file not found".into()));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("toml").to_ascii_lowercase();
    let figment = match ext.as_str() {
        "yaml" | "yml" => Figment::from(Yaml::file_exact(path)),
        "json" => Figment::from(Json::file_exact(path)),
        _ => Figment::from(Toml::file_exact(path)),
    };
    let figment = figment.merge(Env::prefixed("VOXPIPE_SERVE_").split("__"));
    let config: ServeConfig = figment.extract().map_err(|e| {
        let key = e.path.join(".");
        let key = if key.is_empty() { String::new() } else { format!("key `{key}`: ") };
        err(format!("{key}{}", e.kind).replace('\n', " "))
    })?;
    check(&config).map_err(err)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut pipelines = Vec::new();
    for (i, entry) in config.pipelines.iter().enumerate() {
        let file = if entry.file.is_absolute() { entry.file.clone() } else { dir.join(&entry.file) };
        let opts =
            voxpipe_config::LoadOptions { profile: entry.profile.clone(), sets: vec![], env: env.to_vec() };
        let p =
            voxpipe_config::load(&file, &opts).map_err(|e| err(format!("key `pipelines[{i}].file`: {e}")))?;
        pipelines.push((entry.clone(), p));
    }
    Ok(Loaded { config, pipelines })
}

fn check(c: &ServeConfig) -> Result<(), String> {
    if c.pipelines.is_empty() {
        return Err("key `pipelines`: expected at least one [[pipelines]] entry".into());
    }
    let mut seen = BTreeMap::new();
    for (i, p) in c.pipelines.iter().enumerate() {
        if p.name.is_empty() || !p.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
            return Err(format!(
                "key `pipelines[{i}].name`: expected letters, digits, `-`, `_` or `.`, found {:?}",
                p.name
            ));
        }
        if let Some(j) = seen.insert(p.name.clone(), i) {
            return Err(format!(
                "key `pipelines[{i}].name`: `{}` is already the name of pipelines[{j}]",
                p.name
            ));
        }
    }
    if !c.public_url.starts_with("https://") && !c.public_url.starts_with("http://") {
        return Err(format!("key `public_url`: expected an http(s):// URL, found {:?}", c.public_url));
    }
    c.listen
        .parse::<std::net::SocketAddr>()
        .map_err(|_| format!("key `listen`: expected an address like 0.0.0.0:8080, found {:?}", c.listen))?;
    if c.limits.max_calls == 0 {
        return Err("key `limits.max_calls`: expected at least 1".into());
    }
    if !(10..=7200).contains(&c.web.direct_secret_ttl_secs) {
        return Err(format!(
            "key `web.direct_secret_ttl_secs`: expected 10 to 7200 (OpenAI's bounds), found {}",
            c.web.direct_secret_ttl_secs
        ));
    }
    if c.twilio.stream.mark_interval_ms < 20 || c.twilio.stream.lead_ms < 40 {
        return Err("key `twilio.stream`: expected mark_interval_ms >= 20 and lead_ms >= 40".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "s.toml",
            "public_url = \"https://x\"\n[limits]\nmax_calls = \"many\"\n[[pipelines]]\nname = \"a\"\nfile = \"a.toml\"\n",
        );
        let e = load(&p, &[]).unwrap_err().to_string();
        assert!(e.contains("s.toml") && e.contains("limits.max_calls"), "{e}");
        let p = write(
            dir.path(),
            "u.toml",
            "public_url = \"https://x\"\nlisten_on = 1\n[[pipelines]]\nname = \"a\"\nfile = \"a.toml\"\n",
        );
        let e = load(&p, &[]).unwrap_err().to_string();
        assert!(e.contains("listen_on"), "{e}");
        let p = write(
            dir.path(),
            "m.toml",
            "public_url = \"https://x\"\n[[pipelines]]\nname = \"a\"\nfile = \"missing.toml\"\n",
        );
        let e = load(&p, &[]).unwrap_err().to_string();
        assert!(e.contains("pipelines[0].file") && e.contains("missing.toml"), "{e}");
        assert!(is_serve_file(&p));
    }
}
