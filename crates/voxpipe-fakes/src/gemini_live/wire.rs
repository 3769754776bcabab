//! Client messages as the service reads them: proto3 JSON of `BidiGenerateContentClientMessage`
//! (`generative_service.proto`, `content.proto`), where a name may be lowerCamel or
//! snake_case, an unknown name is an error and exactly one message type is set. A message the
//! service refuses closes the socket (there is no JSON error message on Live); [`Refusal`]
//! holds the close code and reason.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

pub(crate) use super::setup::Setup;

/// Why the server closes the socket: a WebSocket close code and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// 1007 (invalid payload: a bad field or value), 1008 (policy: auth, model, handle),
    /// 1011 (internal: the session was aborted).
    pub code: u16,
    pub reason: String,
}

impl Refusal {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self { code: 1007, reason: reason.into() }
    }
    pub(crate) fn policy(reason: impl Into<String>) -> Self {
        Self { code: 1008, reason: reason.into() }
    }
}

pub(super) type Result<T> = std::result::Result<T, Refusal>;

/// The only input audio format accepted.
pub(crate) const INPUT_MIME: &str = "audio/pcm;rate=16000";
/// The output audio format.
pub(crate) const OUTPUT_MIME: &str = "audio/pcm;rate=24000";

const MESSAGE: &[&str] = &["setup", "clientContent", "realtimeInput", "toolResponse"];
const PART: &[&str] = &[
    "text",
    "inlineData",
    "functionCall",
    "functionResponse",
    "fileData",
    "executableCode",
    "codeExecutionResult",
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "partMetadata",
];
const REALTIME: &[&str] =
    &["mediaChunks", "audio", "audioStreamEnd", "video", "text", "activityStart", "activityEnd"];
const FUNCTION_RESPONSE: &[&str] = &["id", "name", "response", "parts", "willContinue", "scheduling"];
/// `snake_case` → `lowerCamel` (proto3 JSON reads both).
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut up = false;
    for c in name.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The object at `at` with its names in lowerCamel, refusing names `known` lacks.
pub(super) fn object(v: &Value, at: &str, known: &[&str]) -> Result<Map<String, Value>> {
    let Some(obj) = v.as_object() else {
        return Err(Refusal::invalid(format!("Invalid value at '{at}': expected an object")));
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let name = camel(k);
        if !known.contains(&name.as_str()) || out.contains_key(&name) {
            return Err(Refusal::invalid(format!(
                "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
            )));
        }
        out.insert(name, v.clone());
    }
    Ok(out)
}

pub(super) fn list<'a>(v: Option<&'a Value>, at: &str) -> Result<&'a [Value]> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(Refusal::invalid(format!("Invalid value at '{at}': expected a list"))),
    }
}

pub(super) fn string<'a>(v: Option<&'a Value>, at: &str) -> Result<Option<&'a str>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Refusal::invalid(format!("Invalid value at '{at}' (TYPE_STRING), {other}"))),
    }
}

pub(super) fn boolean(v: Option<&Value>, at: &str) -> Result<bool> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(Refusal::invalid(format!("Invalid value at '{at}' (TYPE_BOOL), {other}"))),
    }
}

/// An integer field: a JSON number or (int64) a string of digits.
pub(super) fn integer(v: Option<&Value>, at: &str) -> Result<Option<i64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        Some(Value::String(s)) if s.parse::<i64>().is_ok() => Ok(s.parse().ok()),
        Some(other) => Err(Refusal::invalid(format!("Invalid value at '{at}' (TYPE_INT64), {other}"))),
    }
}

pub(super) fn number(v: Option<&Value>, at: &str, range: std::ops::RangeInclusive<f64>) -> Result<()> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|x| range.contains(&x)) => Ok(()),
        Some(other) => Err(Refusal::invalid(format!(
            "Invalid value at '{at}': {other} (expected a number from {} to {})",
            range.start(),
            range.end()
        ))),
    }
}

/// An enum field given by name (or number): its name, checked against `names` (index = number).
pub(super) fn enumeration(v: Option<&Value>, at: &str, ty: &str, names: &[&str]) -> Result<Option<String>> {
    let name = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => names.iter().find(|n| *n == s).map(|n| n.to_string()),
        Some(Value::Number(n)) => n.as_u64().and_then(|i| names.get(i as usize)).map(|n| n.to_string()),
        Some(_) => None,
    };
    name.map(Some).ok_or_else(|| {
        let given = v.map(Value::to_string).unwrap_or_default();
        Refusal::invalid(format!("Invalid value at '{at}' ({ty}), {given}"))
    })
}

/// A base64 `bytes` field, decoded.
fn bytes(v: Option<&Value>, at: &str) -> Result<Vec<u8>> {
    let Some(s) = string(v, at)? else { return Ok(Vec::new()) };
    B64.decode(s).or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s)).map_err(|_| {
        Refusal::invalid(format!(
            "Invalid value at '{at}' (TYPE_BYTES), Base64 decoding failed for \"{}\"",
            short(s)
        ))
    })
}

fn short(s: &str) -> &str {
    let end = s.char_indices().nth(24).map_or(s.len(), |(i, _)| i);
    &s[..end]
}

/// One client message, read.
#[derive(Debug)]
pub(crate) enum ClientMessage {
    Setup(Setup),
    ClientContent { turns: Vec<Turn>, turn_complete: bool },
    Realtime(RealtimeInput),
    ToolResponse(Vec<FunctionResponse>),
}

/// One content turn's role and its text.
#[derive(Debug, Clone)]
pub(crate) struct Turn {
    pub role: String,
    pub text: String,
}

/// What one `realtimeInput` carries (exactly one field).
#[derive(Debug)]
pub(crate) enum RealtimeInput {
    /// PCM16 16 kHz samples.
    Audio(Vec<i16>),
    Video,
    Text(String),
    AudioStreamEnd,
    ActivityStart,
    ActivityEnd,
}

/// One `functionResponses[]` entry.
#[derive(Debug, Clone)]
pub(crate) struct FunctionResponse {
    pub id: String,
    pub name: String,
    pub response: Value,
}

/// Reads one client message (already parsed as JSON).
pub(crate) fn read(v: &Value) -> Result<ClientMessage> {
    let msg = object(v, "", MESSAGE)?;
    let mut set = msg.iter().filter(|(_, v)| !v.is_null());
    let Some((kind, body)) = set.next() else {
        return Err(Refusal::invalid(
            "Invalid argument: the client message sets none of setup, client_content, realtime_input, tool_response.",
        ));
    };
    if let Some((other, _)) = set.next() {
        return Err(Refusal::invalid(format!(
            "Invalid JSON payload received. Oneof field 'message_type' is already set. Cannot set '{other}'"
        )));
    }
    match kind.as_str() {
        "setup" => super::setup::setup(body).map(ClientMessage::Setup),
        "clientContent" => {
            let c = object(body, "client_content", &["turns", "turnComplete"])?;
            let turns = list(c.get("turns"), "client_content.turns")?
                .iter()
                .enumerate()
                .map(|(i, t)| content(t, &format!("client_content.turns[{i}]"), false))
                .collect::<Result<_>>()?;
            Ok(ClientMessage::ClientContent {
                turns,
                turn_complete: boolean(c.get("turnComplete"), "client_content.turn_complete")?,
            })
        }
        "realtimeInput" => realtime(body).map(ClientMessage::Realtime),
        _ => tool_response(body).map(ClientMessage::ToolResponse),
    }
}

/// A `Content`: its role and its text parts joined. `system`: text parts only, no role check.
pub(super) fn content(v: &Value, at: &str, system: bool) -> Result<Turn> {
    let c = object(v, at, &["role", "parts"])?;
    let role = string(c.get("role"), &format!("{at}.role"))?.unwrap_or(if system { "" } else { "user" });
    if !system && !matches!(role, "user" | "model") {
        return Err(Refusal::invalid(format!("{at}.role: Please use a valid role: user, model.")));
    }
    let mut text = Vec::new();
    for (i, p) in list(c.get("parts"), &format!("{at}.parts"))?.iter().enumerate() {
        let pat = format!("{at}.parts[{i}]");
        let p = object(p, &pat, PART)?;
        let data: Vec<&String> = p
            .keys()
            .filter(|k| {
                !matches!(k.as_str(), "thought" | "thoughtSignature" | "videoMetadata" | "partMetadata")
            })
            .collect();
        if data.len() != 1 {
            return Err(Refusal::invalid(format!(
                "{pat}: a part must set exactly one of text, inline_data, function_call, function_response, file_data, executable_code, code_execution_result."
            )));
        }
        match (data[0].as_str(), system) {
            ("text", _) => {
                text.push(string(p.get("text"), &format!("{pat}.text"))?.unwrap_or_default().to_string())
            }
            (other, true) => {
                return Err(Refusal::invalid(format!(
                    "{pat}: system instruction parts may only be text, got {other}."
                )));
            }
            ("inlineData", false) => {
                let b = object(&p["inlineData"], &format!("{pat}.inline_data"), &["mimeType", "data"])?;
                bytes(b.get("data"), &format!("{pat}.inline_data.data"))?;
            }
            ("functionCall" | "functionResponse", false) => {
                return Err(Refusal::invalid(format!(
                    "{pat}: function calls and responses go in tool_response on the Live API, not in client_content."
                )));
            }
            _ => {}
        }
    }
    Ok(Turn { role: role.to_string(), text: text.join(if system { "\n\n" } else { " " }) })
}

fn realtime(v: &Value) -> Result<RealtimeInput> {
    let r = object(v, "realtime_input", REALTIME)?;
    let mut set = r.iter().filter(|(_, v)| !v.is_null());
    let Some((kind, body)) = set.next() else {
        return Err(Refusal::invalid(
            "realtime_input: set one of audio, video, text, audio_stream_end, activity_start, activity_end.",
        ));
    };
    if let Some((other, _)) = set.next() {
        return Err(Refusal::invalid(format!(
            "realtime_input: only one of audio, video, text, audio_stream_end, activity_start, activity_end may be set per message; got {kind} and {other}."
        )));
    }
    match kind.as_str() {
        "audio" => audio(body, "realtime_input.audio").map(RealtimeInput::Audio),
        "mediaChunks" => {
            let chunks = list(Some(body), "realtime_input.media_chunks")?;
            let Some(first) = chunks.first() else {
                return Err(Refusal::invalid("realtime_input.media_chunks: empty."));
            };
            audio(first, "realtime_input.media_chunks[0]").map(RealtimeInput::Audio)
        }
        "video" => {
            let b = object(body, "realtime_input.video", &["mimeType", "data"])?;
            let mime = string(b.get("mimeType"), "realtime_input.video.mime_type")?.unwrap_or_default();
            if !mime.starts_with("image/") {
                return Err(Refusal::invalid(format!(
                    "realtime_input.video.mime_type: unsupported \"{mime}\"; send image/jpeg or image/png frames."
                )));
            }
            bytes(b.get("data"), "realtime_input.video.data")?;
            Ok(RealtimeInput::Video)
        }
        "text" => Ok(RealtimeInput::Text(
            string(Some(body), "realtime_input.text")?.unwrap_or_default().to_string(),
        )),
        "audioStreamEnd" => match boolean(Some(body), "realtime_input.audio_stream_end")? {
            true => Ok(RealtimeInput::AudioStreamEnd),
            false => Err(Refusal::invalid("realtime_input.audio_stream_end: send true, or leave it out.")),
        },
        "activityStart" => {
            object(body, "realtime_input.activity_start", &[]).map(|_| RealtimeInput::ActivityStart)
        }
        _ => object(body, "realtime_input.activity_end", &[]).map(|_| RealtimeInput::ActivityEnd),
    }
}

/// An audio `Blob`: `audio/pcm;rate=16000`, base64 PCM16 little-endian.
fn audio(v: &Value, at: &str) -> Result<Vec<i16>> {
    let b = object(v, at, &["mimeType", "data"])?;
    let mime = string(b.get("mimeType"), &format!("{at}.mime_type"))?.unwrap_or_default();
    let normal: String = mime.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    if normal != INPUT_MIME {
        return Err(Refusal::invalid(format!(
            "{at}.mime_type: unsupported audio \"{mime}\"; this server takes {INPUT_MIME} (16-bit PCM, little-endian, mono)."
        )));
    }
    let data = bytes(b.get("data"), &format!("{at}.data"))?;
    if data.len() % 2 != 0 {
        return Err(Refusal::invalid(format!(
            "{at}.data: 16-bit PCM needs an even number of bytes, got {}.",
            data.len()
        )));
    }
    let mut samples = Vec::with_capacity(data.len() / 2);
    voxpipe_core::audio::pcm::decode_pcm16le(&data, &mut samples);
    Ok(samples)
}

fn tool_response(v: &Value) -> Result<Vec<FunctionResponse>> {
    let t = object(v, "tool_response", &["functionResponses"])?;
    let mut out = Vec::new();
    for (i, r) in list(t.get("functionResponses"), "tool_response.function_responses")?.iter().enumerate() {
        let at = format!("tool_response.function_responses[{i}]");
        let r = object(r, &at, FUNCTION_RESPONSE)?;
        let id = string(r.get("id"), &format!("{at}.id"))?.unwrap_or_default();
        if id.is_empty() {
            return Err(Refusal::invalid(format!("{at}.id: the id of the function call is required.")));
        }
        let name = string(r.get("name"), &format!("{at}.name"))?.unwrap_or_default();
        if name.is_empty() {
            return Err(Refusal::invalid(format!("{at}.name: the function name is required.")));
        }
        let response = r.get("response").cloned().unwrap_or(Value::Null);
        if !response.is_object() {
            return Err(Refusal::invalid(format!(
                "{at}.response: a JSON object (google.protobuf.Struct) is required."
            )));
        }
        boolean(r.get("willContinue"), &format!("{at}.will_continue"))?;
        enumeration(
            r.get("scheduling"),
            &format!("{at}.scheduling"),
            "FunctionResponse.Scheduling",
            &["SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"],
        )?;
        out.push(FunctionResponse { id: id.to_string(), name: name.to_string(), response });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snake_case_names_read_like_lower_camel_and_unknown_names_are_refused() {
        let m = read(
            &json!({"setup": {"model": "models/x", "generation_config": {"response_modalities": ["AUDIO"]},
            "input_audio_transcription": {}}}),
        )
        .unwrap();
        let ClientMessage::Setup(s) = m else { panic!() };
        assert!(s.audio_out && s.input_transcription && !s.output_transcription && s.auto_vad);
        let e = read(&json!({"setup": {"model": "models/x", "proactivity": {}}})).unwrap_err();
        assert_eq!(e.code, 1007);
        assert!(e.reason.contains("Unknown name \"proactivity\" at 'setup'"), "{}", e.reason);
        let e = read(
            &json!({"setup": {"model": "models/x", "generationConfig": {"responseMimeType": "text/plain"}}}),
        )
        .unwrap_err();
        assert!(e.reason.contains("not supported in the Live API"), "{}", e.reason);
    }

    #[test]
    fn audio_must_be_16_khz_pcm() {
        let ok =
            json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "AAABAA=="}}});
        assert!(
            matches!(read(&ok).unwrap(), ClientMessage::Realtime(RealtimeInput::Audio(s)) if s == [0, 1])
        );
        let bad = json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=24000", "data": "AAAA"}}});
        assert!(read(&bad).unwrap_err().reason.contains("audio/pcm;rate=16000"));
        let two = json!({"realtimeInput": {"activityStart": {}, "activityEnd": {}}});
        assert!(read(&two).unwrap_err().reason.contains("only one of"));
    }
}
