//! The session object in both dialects: defaults, strict `session.update` validation, partial
//! merge, and the effective settings the rest of the fake reads.

use serde_json::{Map, Value, json};

use super::audio::AudioFormat;
use super::validate::{ParamError, bool_at, enum_at, int_at, num_at, object_at, str_at};

/// Which flavour of the protocol a connection speaks, chosen by the `OpenAI-Beta` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// The GA protocol (no beta header).
    Ga,
    /// The beta protocol (`OpenAI-Beta: realtime=v1`).
    Beta,
}

const VOICES: &[&str] =
    &["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"];
const TRANSCRIPTION_MODELS: &[&str] =
    &["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize"];
const GA_FIELDS: &[&str] = &[
    "type",
    "output_modalities",
    "model",
    "instructions",
    "audio",
    "include",
    "tracing",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "max_output_tokens",
    "truncation",
    "prompt",
];
const BETA_FIELDS: &[&str] = &[
    "modalities",
    "model",
    "instructions",
    "voice",
    "input_audio_format",
    "output_audio_format",
    "input_audio_transcription",
    "turn_detection",
    "input_audio_noise_reduction",
    "tools",
    "tool_choice",
    "temperature",
    "max_response_output_tokens",
];

/// How turns are detected, read from the session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TurnDetection {
    /// Session `threshold` (0..1); semantic VAD uses 0.5.
    pub threshold: f64,
    /// Audio kept before the speech onset, in ms.
    pub prefix_padding_ms: u64,
    /// Silence that ends the turn, in ms.
    pub silence_duration_ms: u64,
    /// Start a response when the turn ends.
    pub create_response: bool,
    /// Cancel the active response when speech starts.
    pub interrupt_response: bool,
}

/// The settings the fake acts on, derived from the session object.
#[derive(Debug, Clone)]
pub(crate) struct Effective {
    pub input_format: AudioFormat,
    pub output_format: AudioFormat,
    pub turn: Option<TurnDetection>,
    pub transcription: bool,
    pub audio_out: bool,
}

/// One connection's session object, kept in the dialect's wire shape.
#[derive(Debug)]
pub(crate) struct Session {
    dialect: Dialect,
    value: Value,
}

impl Session {
    /// The default session, as `session.created` reports it.
    pub(crate) fn new(dialect: Dialect, id: &str, model: &str) -> Self {
        let value = match dialect {
            Dialect::Ga => json!({
                "type": "realtime", "object": "realtime.session", "id": id, "model": model,
                "output_modalities": ["audio"], "instructions": "You are a helpful, witty, and friendly AI.",
                "tools": [], "tool_choice": "auto", "max_output_tokens": "inf", "tracing": null,
                "prompt": null, "expires_at": expires_at(), "include": null, "truncation": "auto",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "transcription": null, "noise_reduction": null,
                        "turn_detection": turn_defaults(dialect, "server_vad"),
                    },
                    "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
                },
            }),
            Dialect::Beta => json!({
                "id": id, "object": "realtime.session", "model": model,
                "modalities": ["text", "audio"], "instructions": "You are a helpful, witty, and friendly AI.",
                "voice": "alloy", "input_audio_format": "pcm16", "output_audio_format": "pcm16",
                "input_audio_transcription": null, "turn_detection": turn_defaults(dialect, "server_vad"),
                "input_audio_noise_reduction": null, "tools": [], "tool_choice": "auto",
                "temperature": 0.8, "max_response_output_tokens": "inf",
            }),
        };
        Self { dialect, value }
    }

    /// The full session object.
    pub(crate) fn json(&self) -> &Value {
        &self.value
    }

    /// Validates `update` strictly and merges it. Nothing changes when it fails.
    /// `voice_locked` is true once the session has produced audio.
    pub(crate) fn update(&mut self, update: &Value, voice_locked: bool) -> Result<(), ParamError> {
        let mut next = self.value.clone();
        match self.dialect {
            Dialect::Ga => merge_ga(&mut next, update)?,
            Dialect::Beta => merge_beta(&mut next, update)?,
        }
        let (old, new) = (self.voice(), voice_of(self.dialect, &next));
        if voice_locked && old != new {
            return Err(ParamError::new(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                voice_param(self.dialect),
            ));
        }
        self.value = next;
        Ok(())
    }

    /// Sets the voice without checking it (a compatible server takes any name).
    pub(crate) fn set_voice(&mut self, voice: &str) {
        match self.dialect {
            Dialect::Ga => self.value["audio"]["output"]["voice"] = json!(voice),
            Dialect::Beta => self.value["voice"] = json!(voice),
        }
    }

    fn voice(&self) -> Value {
        voice_of(self.dialect, &self.value)
    }

    /// The settings the fake acts on.
    pub(crate) fn effective(&self) -> Effective {
        let v = &self.value;
        let (input, output, turn, transcription, modalities) = match self.dialect {
            Dialect::Ga => (
                &v["audio"]["input"]["format"],
                &v["audio"]["output"]["format"],
                &v["audio"]["input"]["turn_detection"],
                &v["audio"]["input"]["transcription"],
                &v["output_modalities"],
            ),
            Dialect::Beta => (
                &v["input_audio_format"],
                &v["output_audio_format"],
                &v["turn_detection"],
                &v["input_audio_transcription"],
                &v["modalities"],
            ),
        };
        Effective {
            input_format: AudioFormat::from_session(input),
            output_format: AudioFormat::from_session(output),
            turn: turn_of(turn),
            transcription: !transcription.is_null(),
            audio_out: modalities.as_array().is_some_and(|m| m.iter().any(|x| x == "audio")),
        }
    }
}

/// Unix time 30 minutes from now (the real service's session lifetime).
fn expires_at() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_secs() + 30 * 60
}

fn voice_param(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Ga => "session.audio.output.voice",
        Dialect::Beta => "session.voice",
    }
}

fn voice_of(dialect: Dialect, v: &Value) -> Value {
    match dialect {
        Dialect::Ga => v["audio"]["output"]["voice"].clone(),
        Dialect::Beta => v["voice"].clone(),
    }
}

fn turn_of(t: &Value) -> Option<TurnDetection> {
    let kind = t.get("type")?.as_str()?;
    let flag = |k: &str| t.get(k).and_then(Value::as_bool).unwrap_or(true);
    let (threshold, prefix, silence) = if kind == "semantic_vad" {
        // The fake's stand-in for semantic end-of-turn: eagerness sets how much silence ends it.
        let silence = match t.get("eagerness").and_then(Value::as_str).unwrap_or("auto") {
            "high" => 300,
            "low" => 1500,
            _ => 800,
        };
        (0.5, 300, silence)
    } else {
        let int = |k: &str, d: u64| t.get(k).and_then(Value::as_u64).unwrap_or(d);
        (
            t.get("threshold").and_then(Value::as_f64).unwrap_or(0.5),
            int("prefix_padding_ms", 300),
            int("silence_duration_ms", 200),
        )
    };
    Some(TurnDetection {
        threshold,
        prefix_padding_ms: prefix,
        silence_duration_ms: silence,
        create_response: flag("create_response"),
        interrupt_response: flag("interrupt_response"),
    })
}

fn turn_defaults(dialect: Dialect, kind: &str) -> Value {
    match (kind, dialect) {
        ("semantic_vad", _) => json!({"type": "semantic_vad", "eagerness": "auto",
            "create_response": true, "interrupt_response": true}),
        (_, Dialect::Ga) => json!({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 200, "idle_timeout_ms": null, "create_response": true, "interrupt_response": true}),
        (_, Dialect::Beta) => json!({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 200, "create_response": true, "interrupt_response": true}),
    }
}

fn merge_ga(next: &mut Value, update: &Value) -> Result<(), ParamError> {
    let u = object_at(update, "session", GA_FIELDS)?;
    match u.get("type") {
        None => return Err(ParamError::missing("session.type")),
        Some(t) => enum_at(t, "session.type", &["realtime"])?,
    }
    for (k, v) in u {
        let p = format!("session.{k}");
        match k.as_str() {
            "type" | "model" | "tracing" | "prompt" | "reasoning" => {}
            "output_modalities" => check_modalities(v, &p, true)?,
            "instructions" => str_at(v, &p)?,
            "audio" => {
                merge_ga_audio(next, v)?;
                continue;
            }
            "include" => check_include(v, &p)?,
            "tools" => check_tools(v, &p)?,
            "tool_choice" => check_tool_choice(v, &p)?,
            "parallel_tool_calls" => bool_at(v, &p)?,
            "max_output_tokens" => check_max_tokens(v, &p)?,
            "truncation" => check_truncation(v, &p)?,
            _ => unreachable!("filtered by object_at"),
        }
        if k != "model" {
            next[k.as_str()] = v.clone();
        }
    }
    Ok(())
}

fn merge_ga_audio(next: &mut Value, audio: &Value) -> Result<(), ParamError> {
    let a = object_at(audio, "session.audio", &["input", "output"])?;
    if let Some(input) = a.get("input") {
        let i = object_at(
            input,
            "session.audio.input",
            &["format", "transcription", "noise_reduction", "turn_detection"],
        )?;
        for (k, v) in i {
            let p = format!("session.audio.input.{k}");
            let merged = match k.as_str() {
                "format" => ga_format(v, &p)?,
                "transcription" => check_transcription(v, &p)?,
                "noise_reduction" => check_noise_reduction(v, &p)?,
                _ => check_turn_detection(v, &p, Dialect::Ga)?,
            };
            next["audio"]["input"][k.as_str()] = merged;
        }
    }
    if let Some(output) = a.get("output") {
        let o = object_at(output, "session.audio.output", &["format", "voice", "speed"])?;
        for (k, v) in o {
            let p = format!("session.audio.output.{k}");
            let merged = match k.as_str() {
                "format" => ga_format(v, &p)?,
                "voice" => check_voice(v, &p)?,
                _ => {
                    num_at(v, &p, 0.25, 1.5)?;
                    v.clone()
                }
            };
            next["audio"]["output"][k.as_str()] = merged;
        }
    }
    Ok(())
}

fn merge_beta(next: &mut Value, update: &Value) -> Result<(), ParamError> {
    let u = object_at(update, "session", BETA_FIELDS)?;
    for (k, v) in u {
        let p = format!("session.{k}");
        let merged = match k.as_str() {
            "model" => continue,
            "modalities" => check_modalities(v, &p, false).map(|_| v.clone())?,
            "instructions" => str_at(v, &p).map(|_| v.clone())?,
            "voice" => check_voice(v, &p)?,
            "input_audio_format" | "output_audio_format" => {
                enum_at(v, &p, &["pcm16", "g711_ulaw", "g711_alaw"]).map(|_| v.clone())?
            }
            "input_audio_transcription" => check_transcription(v, &p)?,
            "turn_detection" => check_turn_detection(v, &p, Dialect::Beta)?,
            "input_audio_noise_reduction" => check_noise_reduction(v, &p)?,
            "tools" => check_tools(v, &p).map(|_| v.clone())?,
            "tool_choice" => check_tool_choice(v, &p).map(|_| v.clone())?,
            "temperature" => num_at(v, &p, 0.6, 1.2).map(|_| v.clone())?,
            _ => check_max_tokens(v, &p).map(|_| v.clone())?,
        };
        next[k.as_str()] = merged;
    }
    Ok(())
}

fn ga_format(v: &Value, p: &str) -> Result<Value, ParamError> {
    let f = object_at(v, p, &["type", "rate"])?;
    let t = f.get("type").ok_or_else(|| ParamError::missing(&format!("{p}.type")))?;
    enum_at(t, &format!("{p}.type"), &["audio/pcm", "audio/pcmu", "audio/pcma"])?;
    if t == "audio/pcm" {
        if let Some(rate) = f.get("rate") {
            int_at(rate, &format!("{p}.rate"), 24000, 24000)?;
        }
        return Ok(json!({"type": "audio/pcm", "rate": 24000}));
    }
    if f.contains_key("rate") {
        return Err(ParamError::unknown(&format!("{p}.rate")));
    }
    Ok(json!({"type": t}))
}

/// Checks `output_modalities` (GA: exactly one of audio/text) or `modalities` (beta).
pub(crate) fn check_modalities(v: &Value, p: &str, ga: bool) -> Result<(), ParamError> {
    let arr = v.as_array().ok_or_else(|| ParamError::invalid_type(p, "an array", v))?;
    for (i, m) in arr.iter().enumerate() {
        enum_at(m, &format!("{p}[{i}]"), &["audio", "text"])?;
    }
    let has = |s: &str| arr.iter().any(|m| m == s);
    if arr.is_empty() || (ga && has("audio") && has("text")) {
        let msg = if ga {
            "Invalid modalities: output_modalities must be either ['audio'] or ['text']."
        } else {
            "Invalid modalities: expected ['text'] or ['text', 'audio']."
        };
        return Err(ParamError::new("invalid_value", msg, p));
    }
    Ok(())
}

fn check_voice(v: &Value, p: &str) -> Result<Value, ParamError> {
    if v.is_object() {
        let o = object_at(v, p, &["id"])?;
        let id = o.get("id").ok_or_else(|| ParamError::missing(&format!("{p}.id")))?;
        str_at(id, &format!("{p}.id"))?;
    } else {
        enum_at(v, p, VOICES)?;
    }
    Ok(v.clone())
}

fn check_transcription(v: &Value, p: &str) -> Result<Value, ParamError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let o = object_at(v, p, &["model", "language", "prompt"])?;
    let mut out = json!({"model": "whisper-1"});
    for (k, x) in o {
        let kp = format!("{p}.{k}");
        if k == "model" {
            enum_at(x, &kp, TRANSCRIPTION_MODELS)?;
        } else {
            str_at(x, &kp)?;
        }
        out[k.as_str()] = x.clone();
    }
    Ok(out)
}

fn check_noise_reduction(v: &Value, p: &str) -> Result<Value, ParamError> {
    if !v.is_null() {
        let o = object_at(v, p, &["type"])?;
        let t = o.get("type").ok_or_else(|| ParamError::missing(&format!("{p}.type")))?;
        enum_at(t, &format!("{p}.type"), &["near_field", "far_field"])?;
    }
    Ok(v.clone())
}

fn check_turn_detection(v: &Value, p: &str, dialect: Dialect) -> Result<Value, ParamError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if !v.is_object() {
        return Err(ParamError::invalid_type(p, "an object", v));
    }
    let kind = v.get("type").ok_or_else(|| ParamError::missing(&format!("{p}.type")))?;
    enum_at(kind, &format!("{p}.type"), &["server_vad", "semantic_vad"])?;
    let server: &[&str] = match dialect {
        Dialect::Ga => &[
            "type",
            "threshold",
            "prefix_padding_ms",
            "silence_duration_ms",
            "idle_timeout_ms",
            "create_response",
            "interrupt_response",
        ],
        Dialect::Beta => &[
            "type",
            "threshold",
            "prefix_padding_ms",
            "silence_duration_ms",
            "create_response",
            "interrupt_response",
        ],
    };
    let allowed = if kind == "semantic_vad" {
        &["type", "eagerness", "create_response", "interrupt_response"]
    } else {
        server
    };
    let o: &Map<String, Value> = object_at(v, p, allowed)?;
    let mut out = turn_defaults(dialect, kind.as_str().unwrap_or_default());
    for (k, x) in o {
        let kp = format!("{p}.{k}");
        match k.as_str() {
            "type" => {}
            "threshold" => num_at(x, &kp, 0.0, 1.0)?,
            "prefix_padding_ms" | "silence_duration_ms" => int_at(x, &kp, 0, 10_000)?,
            "idle_timeout_ms" if !x.is_null() => int_at(x, &kp, 5000, 30_000)?,
            "idle_timeout_ms" => {}
            "eagerness" => enum_at(x, &kp, &["low", "medium", "high", "auto"])?,
            _ => bool_at(x, &kp)?,
        }
        out[k.as_str()] = x.clone();
    }
    Ok(out)
}

/// Checks a `tools` array (flat function tools).
pub(crate) fn check_tools(v: &Value, p: &str) -> Result<(), ParamError> {
    let arr = v.as_array().ok_or_else(|| ParamError::invalid_type(p, "an array", v))?;
    for (i, t) in arr.iter().enumerate() {
        let tp = format!("{p}[{i}]");
        let o = object_at(t, &tp, &["type", "name", "description", "parameters"])?;
        if let Some(ty) = o.get("type") {
            enum_at(ty, &format!("{tp}.type"), &["function"])?;
        }
        let name = o.get("name").ok_or_else(|| ParamError::missing(&format!("{tp}.name")))?;
        str_at(name, &format!("{tp}.name"))?;
        if let Some(d) = o.get("description") {
            str_at(d, &format!("{tp}.description"))?;
        }
        if let Some(params) = o.get("parameters").filter(|x| !x.is_object()) {
            return Err(ParamError::invalid_type(&format!("{tp}.parameters"), "an object", params));
        }
    }
    Ok(())
}

/// Checks `tool_choice`.
pub(crate) fn check_tool_choice(v: &Value, p: &str) -> Result<(), ParamError> {
    if v.is_object() {
        let o = object_at(v, p, &["type", "name"])?;
        enum_at(o.get("type").unwrap_or(&Value::Null), &format!("{p}.type"), &["function"])?;
        str_at(o.get("name").unwrap_or(&Value::Null), &format!("{p}.name"))
    } else {
        enum_at(v, p, &["auto", "none", "required"])
    }
}

/// Checks `max_output_tokens` / `max_response_output_tokens`.
pub(crate) fn check_max_tokens(v: &Value, p: &str) -> Result<(), ParamError> {
    if v.is_string() { enum_at(v, p, &["inf"]) } else { int_at(v, p, 1, 4096) }
}

fn check_include(v: &Value, p: &str) -> Result<(), ParamError> {
    if v.is_null() {
        return Ok(());
    }
    let arr = v.as_array().ok_or_else(|| ParamError::invalid_type(p, "an array", v))?;
    for (i, x) in arr.iter().enumerate() {
        enum_at(x, &format!("{p}[{i}]"), &["item.input_audio_transcription.logprobs"])?;
    }
    Ok(())
}

fn check_truncation(v: &Value, p: &str) -> Result<(), ParamError> {
    if v.is_string() {
        return enum_at(v, p, &["auto", "disabled"]);
    }
    let o = object_at(v, p, &["type", "retention_ratio", "token_limits"])?;
    enum_at(o.get("type").unwrap_or(&Value::Null), &format!("{p}.type"), &["retention_ratio"])?;
    num_at(o.get("retention_ratio").unwrap_or(&Value::Null), &format!("{p}.retention_ratio"), 0.0, 1.0)
}
