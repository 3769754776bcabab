//! Building the client events whose shape differs between GA and beta: `session.update`.

use crate::config::{AudioFormat, Eagerness, NoiseReduction, Protocol, RealtimeConfig, TurnDetection};
use serde_json::{Value, json};
use voxpipe_core::ToolSpec;

fn eagerness(e: Eagerness) -> &'static str {
    match e {
        Eagerness::Low => "low",
        Eagerness::Medium => "medium",
        Eagerness::High => "high",
        Eagerness::Auto => "auto",
    }
}

fn turn_detection(td: &TurnDetection, ga: bool) -> Value {
    match td {
        TurnDetection::ServerVad {
            threshold,
            prefix_padding_ms,
            silence_duration_ms,
            idle_timeout_ms,
            create_response,
            interrupt_response,
        } => {
            let mut v = json!({
                "type": "server_vad",
                "threshold": threshold,
                "prefix_padding_ms": prefix_padding_ms,
                "silence_duration_ms": silence_duration_ms,
                "create_response": create_response,
                "interrupt_response": interrupt_response,
            });
            if ga {
                v["idle_timeout_ms"] = json!(idle_timeout_ms);
            }
            v
        }
        TurnDetection::SemanticVad { eagerness: e, create_response, interrupt_response } => json!({
            "type": "semantic_vad",
            "eagerness": eagerness(*e),
            "create_response": create_response,
            "interrupt_response": interrupt_response,
        }),
        TurnDetection::None => Value::Null,
    }
}

fn tool_choice(choice: &str) -> Value {
    match choice {
        "auto" | "none" | "required" => json!(choice),
        name => json!({ "type": "function", "name": name }),
    }
}

/// Tools in the Realtime *flat* shape: `{type, name, description, parameters}`.
pub fn tools(specs: &[ToolSpec]) -> Value {
    Value::Array(
        specs
            .iter()
            .map(|t| json!({ "type": "function", "name": t.name, "description": t.description, "parameters": t.parameters }))
            .collect(),
    )
}

fn noise(n: Option<NoiseReduction>) -> Value {
    match n {
        None => Value::Null,
        Some(NoiseReduction::NearField) => json!({ "type": "near_field" }),
        Some(NoiseReduction::FarField) => json!({ "type": "far_field" }),
    }
}

/// The `session.update` event for `config` in its dialect.
pub fn session_update(config: &RealtimeConfig, specs: &[ToolSpec]) -> Value {
    let session = match config.protocol {
        Protocol::Ga => ga_session(config, specs),
        Protocol::Beta => beta_session(config, specs),
    };
    json!({ "type": "session.update", "event_id": "evt_voxpipe_session", "session": session })
}

fn ga_session(c: &RealtimeConfig, specs: &[ToolSpec]) -> Value {
    let format = match c.audio_format {
        AudioFormat::Pcm => json!({ "type": "audio/pcm", "rate": 24000 }),
        AudioFormat::Pcmu => json!({ "type": "audio/pcmu" }),
        AudioFormat::Pcma => json!({ "type": "audio/pcma" }),
    };
    let mut output = json!({ "format": format, "voice": c.voice });
    if let Some(speed) = c.speed {
        output["speed"] = json!(speed);
    }
    let transcription = c.transcription.as_ref().map(|t| {
        let mut v = json!({ "model": t.model });
        if let Some(l) = &t.language {
            v["language"] = json!(l);
        }
        if let Some(p) = &t.prompt {
            v["prompt"] = json!(p);
        }
        v
    });
    let mut s = json!({
        "type": "realtime",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": format,
                "transcription": transcription,
                "noise_reduction": noise(c.noise_reduction),
                "turn_detection": turn_detection(&c.turn_detection, true),
            },
            "output": output,
        },
        "tools": tools(specs),
        "tool_choice": tool_choice(&c.tool_choice),
    });
    if let Some(i) = &c.instructions {
        s["instructions"] = json!(i);
    }
    if let Some(m) = c.max_output_tokens {
        s["max_output_tokens"] = json!(m);
    }
    s
}

fn beta_session(c: &RealtimeConfig, specs: &[ToolSpec]) -> Value {
    let format = match c.audio_format {
        AudioFormat::Pcm => "pcm16",
        AudioFormat::Pcmu => "g711_ulaw",
        AudioFormat::Pcma => "g711_alaw",
    };
    let mut s = json!({
        "modalities": ["text", "audio"],
        // Beta takes a voice by name only: a custom voice goes by its id.
        "voice": c.voice.as_str(),
        "input_audio_format": format,
        "output_audio_format": format,
        "input_audio_transcription": c.transcription.as_ref().map(|t| {
            let mut v = json!({ "model": t.model });
            if let Some(l) = &t.language { v["language"] = json!(l); }
            if let Some(p) = &t.prompt { v["prompt"] = json!(p); }
            v
        }),
        "input_audio_noise_reduction": noise(c.noise_reduction),
        "turn_detection": turn_detection(&c.turn_detection, false),
        "tools": tools(specs),
        "tool_choice": tool_choice(&c.tool_choice),
    });
    if let Some(i) = &c.instructions {
        s["instructions"] = json!(i);
    }
    if let Some(t) = c.temperature {
        s["temperature"] = json!(t);
    }
    if let Some(m) = c.max_output_tokens {
        s["max_response_output_tokens"] = json!(m);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ga_session_has_type_nested_audio_and_flat_tools() {
        let specs = vec![ToolSpec {
            name: "lookup".into(),
            description: "d".into(),
            parameters: json!({"type":"object","properties":{}}),
        }];
        let c = RealtimeConfig { audio_format: AudioFormat::Pcmu, ..Default::default() };
        let v = session_update(&c, &specs);
        let s = &v["session"];
        assert_eq!(s["type"], "realtime");
        assert_eq!(s["audio"]["input"]["format"]["type"], "audio/pcmu");
        assert_eq!(s["audio"]["output"]["voice"], "marin");
        assert_eq!(s["audio"]["input"]["turn_detection"]["type"], "server_vad");
        assert_eq!(s["tools"][0]["name"], "lookup");
        assert!(s["tools"][0].get("function").is_none());
        assert!(s.get("modalities").is_none());
    }

    #[test]
    fn any_voice_name_and_a_custom_voice_id_go_to_the_server() {
        let parse = |toml: &str| -> RealtimeConfig { serde_json::from_value(toml_like(toml)).unwrap() };
        let joe = parse(r#"{"voice": "joe"}"#);
        assert_eq!(joe.voice, crate::Voice::Name("joe".into()));
        assert!(joe.validate().is_ok(), "a name voxpipe does not know is allowed");
        assert_eq!(joe.warnings().len(), 1, "and warned about: {:?}", joe.warnings());
        assert_eq!(session_update(&joe, &[])["session"]["audio"]["output"]["voice"], "joe");

        let custom = parse(r#"{"voice": {"id": "voice_1234"}, "protocol": "ga"}"#);
        assert_eq!(custom.voice, crate::Voice::Custom { id: "voice_1234".into() });
        assert!(custom.warnings().is_empty());
        let ga = session_update(&custom, &[]);
        assert_eq!(ga["session"]["audio"]["output"]["voice"], json!({"id": "voice_1234"}));
        let beta = RealtimeConfig { protocol: Protocol::Beta, ..custom };
        assert_eq!(session_update(&beta, &[])["session"]["voice"], "voice_1234");

        assert!(parse(r#"{"voice": "marin"}"#).warnings().is_empty());
        let bad = serde_json::from_value::<RealtimeConfig>(toml_like(r#"{"voice": {"name": "x"}}"#));
        assert!(bad.unwrap_err().to_string().contains("unknown field `name`, expected `id`"));
        let empty = parse(r#"{"voice": " "}"#);
        assert_eq!(empty.validate().unwrap_err().key, "voice");
    }

    fn toml_like(json: &str) -> serde_json::Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn beta_session_is_flat_and_none_turn_detection_is_null() {
        let c = RealtimeConfig {
            protocol: Protocol::Beta,
            turn_detection: TurnDetection::None,
            ..Default::default()
        };
        let s = &session_update(&c, &[])["session"];
        assert_eq!(s["input_audio_format"], "pcm16");
        assert_eq!(s["voice"], "marin");
        assert!(s["turn_detection"].is_null());
        assert!(s.get("type").is_none());
        assert!(s.get("audio").is_none());
    }
}
