//! Server events the client acts on, decoded from JSON. GA and beta names map to the same
//! variants (serde aliases); anything else decodes as [`ServerEvent::Other`] and is logged and
//! ignored.

use serde::Deserialize;
use serde_json::Value;

/// A decoded server event.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ServerEvent {
    /// First event after connecting.
    #[serde(rename = "session.created")]
    SessionCreated {
        /// The default session.
        session: Value,
    },
    /// Reply to `session.update`.
    #[serde(rename = "session.updated")]
    SessionUpdated {
        /// The effective session.
        session: Value,
    },
    /// Server VAD heard the caller start.
    #[serde(rename = "input_audio_buffer.speech_started")]
    SpeechStarted {
        /// Input-buffer ms of the onset (including prefix padding).
        audio_start_ms: u64,
        /// The user item to be.
        #[serde(default)]
        item_id: Option<String>,
    },
    /// Server VAD heard the caller stop.
    #[serde(rename = "input_audio_buffer.speech_stopped")]
    SpeechStopped {
        /// Input-buffer ms of the end (including the silence duration).
        audio_end_ms: u64,
    },
    /// The input buffer became a user item.
    #[serde(rename = "input_audio_buffer.committed")]
    Committed {
        /// The user item.
        item_id: String,
    },
    /// Caller transcription fragment.
    #[serde(rename = "conversation.item.input_audio_transcription.delta")]
    InputTranscriptDelta {
        /// The user item.
        item_id: String,
        /// Text fragment.
        delta: String,
    },
    /// Caller transcription finished.
    #[serde(rename = "conversation.item.input_audio_transcription.completed")]
    InputTranscriptCompleted {
        /// The user item.
        item_id: String,
        /// Whole transcript.
        transcript: String,
    },
    /// Caller transcription failed.
    #[serde(rename = "conversation.item.input_audio_transcription.failed")]
    InputTranscriptFailed {
        /// The user item.
        item_id: String,
        /// Provider error.
        #[serde(default)]
        error: Value,
    },
    /// A response started.
    #[serde(rename = "response.created")]
    ResponseCreated {
        /// The response.
        response: ResponseInfo,
    },
    /// A response ended (always sent, whatever the outcome).
    #[serde(rename = "response.done")]
    ResponseDone {
        /// The response, with status and usage.
        response: ResponseInfo,
    },
    /// An output item was added to a response.
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        /// The item.
        item: OutputItem,
    },
    /// Assistant audio.
    #[serde(rename = "response.output_audio.delta", alias = "response.audio.delta")]
    AudioDelta {
        /// Response.
        response_id: String,
        /// Assistant item.
        item_id: String,
        /// Base64 audio in the session's output format.
        delta: String,
    },
    /// Assistant audio transcript fragment.
    #[serde(rename = "response.output_audio_transcript.delta", alias = "response.audio_transcript.delta")]
    AudioTranscriptDelta {
        /// Response.
        response_id: String,
        /// Assistant item.
        item_id: String,
        /// Text fragment.
        delta: String,
    },
    /// Assistant audio transcript complete.
    #[serde(rename = "response.output_audio_transcript.done", alias = "response.audio_transcript.done")]
    AudioTranscriptDone {
        /// Response.
        response_id: String,
        /// Assistant item.
        item_id: String,
        /// Whole transcript.
        transcript: String,
    },
    /// Assistant text fragment (text modality).
    #[serde(rename = "response.output_text.delta", alias = "response.text.delta")]
    TextDelta {
        /// Response.
        response_id: String,
        /// Assistant item.
        item_id: String,
        /// Text fragment.
        delta: String,
    },
    /// Assistant text complete.
    #[serde(rename = "response.output_text.done", alias = "response.text.done")]
    TextDone {
        /// Response.
        response_id: String,
        /// Assistant item.
        item_id: String,
        /// Whole text.
        text: String,
    },
    /// Function-call arguments fragment.
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionArgsDelta {
        /// Call id.
        call_id: String,
        /// Fragment of the JSON string.
        delta: String,
    },
    /// Function-call arguments complete (`name` is GA only).
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionArgsDone {
        /// Call id.
        call_id: String,
        /// Function name (absent in beta).
        #[serde(default)]
        name: Option<String>,
        /// The whole arguments JSON string.
        arguments: String,
    },
    /// An item was truncated.
    #[serde(rename = "conversation.item.truncated")]
    Truncated {
        /// Item.
        item_id: String,
        /// Kept audio.
        audio_end_ms: u64,
    },
    /// Rate limits.
    #[serde(rename = "rate_limits.updated")]
    RateLimits {
        /// As sent.
        rate_limits: Value,
    },
    /// An error; most are recoverable.
    #[serde(rename = "error")]
    Error {
        /// `{type, code, message, param, event_id}`.
        error: ErrorBody,
    },
    /// Anything else.
    #[serde(other)]
    Other,
}

/// The `response` object of `response.created` / `response.done`.
#[derive(Debug, Deserialize)]
pub struct ResponseInfo {
    /// `resp_…`.
    pub id: String,
    /// `in_progress`, `completed`, `cancelled`, `failed`, `incomplete`.
    #[serde(default)]
    pub status: Option<String>,
    /// `{type, reason, error}`.
    #[serde(default)]
    pub status_details: Option<Value>,
    /// Token usage.
    #[serde(default)]
    pub usage: Option<UsageBody>,
}

/// `response.output_item.added.item`.
#[derive(Debug, Deserialize)]
pub struct OutputItem {
    /// `item_…`.
    #[serde(default)]
    pub id: Option<String>,
    /// `message`, `function_call`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Function name (function_call items).
    #[serde(default)]
    pub name: Option<String>,
    /// Call id (function_call items).
    #[serde(default)]
    pub call_id: Option<String>,
}

/// `error.error`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// Error class.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Machine-readable code.
    #[serde(default)]
    pub code: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// The client event it refers to.
    #[serde(default)]
    pub event_id: Option<String>,
    /// The field it is about (`session.voice`), when the server names one.
    #[serde(default)]
    pub param: Option<String>,
}

impl ErrorBody {
    /// The session field the error is about: its `param`, else the first name quoted in the
    /// message (`` `session.voice` `` or `'session.voice'`), as servers without `param` write it.
    pub fn field(&self) -> Option<String> {
        if let Some(p) = self.param.as_deref().filter(|p| !p.is_empty()) {
            return Some(p.to_string());
        }
        ['`', '\''].into_iter().find_map(|q| {
            let mut parts = self.message.split(q);
            let quoted = parts.nth(1)?;
            parts.next()?;
            // A key path (`session.voice`), not a quoted value.
            let name = quoted.contains('.')
                && quoted.chars().all(|c| c.is_ascii_alphanumeric() || "._[]".contains(c));
            name.then(|| quoted.to_string())
        })
    }
}

/// `response.usage`.
#[derive(Debug, Default, Deserialize)]
pub struct UsageBody {
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input breakdown.
    #[serde(default)]
    pub input_token_details: Option<TokenDetails>,
    /// Output breakdown.
    #[serde(default)]
    pub output_token_details: Option<TokenDetails>,
}

/// Token breakdown by modality.
#[derive(Debug, Default, Deserialize)]
pub struct TokenDetails {
    /// Text tokens.
    #[serde(default)]
    pub text_tokens: u64,
    /// Audio tokens.
    #[serde(default)]
    pub audio_tokens: u64,
    /// Cached tokens.
    #[serde(default)]
    pub cached_tokens: u64,
}

impl From<UsageBody> for voxpipe_core::Usage {
    fn from(u: UsageBody) -> Self {
        let i = u.input_token_details.unwrap_or_default();
        let o = u.output_token_details.unwrap_or_default();
        voxpipe_core::Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            input_text_tokens: i.text_tokens,
            input_audio_tokens: i.audio_tokens,
            cached_tokens: i.cached_tokens,
            output_text_tokens: o.text_tokens,
            output_audio_tokens: o.audio_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ga_and_beta_names_decode_to_the_same_event() {
        for name in ["response.output_audio.delta", "response.audio.delta"] {
            let raw = format!(
                r#"{{"type":"{name}","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"AAA="}}"#
            );
            assert!(matches!(
                serde_json::from_str::<ServerEvent>(&raw).unwrap(),
                ServerEvent::AudioDelta { .. }
            ));
        }
    }

    /// Content parts are `audio`/`text` per the spec and the SDK types, but GA item content
    /// says `output_audio`/`output_text` (and an older fake sent those in parts too): the client
    /// decodes every spelling, in parts and in items, without failing.
    #[test]
    fn content_parts_and_items_decode_in_every_spelling() {
        for part in ["audio", "output_audio", "text", "output_text"] {
            for ty in ["response.content_part.added", "response.content_part.done"] {
                let raw = format!(
                    r#"{{"type":"{ty}","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":0,"part":{{"type":"{part}","transcript":""}}}}"#
                );
                let ev = serde_json::from_str::<ServerEvent>(&raw);
                assert!(matches!(ev, Ok(ServerEvent::Other)), "{raw}: {ev:?}");
            }
            let raw = format!(
                r#"{{"type":"response.output_item.added","event_id":"e","response_id":"r","output_index":0,"item":{{"id":"i","type":"message","role":"assistant","status":"in_progress","content":[{{"type":"{part}","transcript":""}}]}}}}"#
            );
            match serde_json::from_str::<ServerEvent>(&raw) {
                Ok(ServerEvent::OutputItemAdded { item }) => {
                    assert_eq!((item.id.as_deref(), item.kind.as_str()), (Some("i"), "message"));
                }
                other => panic!("{raw}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_error_names_its_field_by_param_or_by_the_name_quoted_in_its_message() {
        let body = |param: Option<&str>, message: &str| ErrorBody {
            kind: None,
            code: None,
            message: message.into(),
            event_id: None,
            param: param.map(str::to_string),
        };
        let field = |b: ErrorBody| b.field();
        assert_eq!(field(body(Some("session.voice"), "Invalid value")).as_deref(), Some("session.voice"));
        let speaches = "Specifying `session.input_audio_format` is not supported. The server either does not support this field or it is not configurable.";
        assert_eq!(field(body(None, speaches)).as_deref(), Some("session.input_audio_format"));
        let openai = "Unknown parameter: 'session.foo'.";
        assert_eq!(field(body(None, openai)).as_deref(), Some("session.foo"));
        assert_eq!(field(body(None, "Invalid value: 'joe'. Supported values are: 'alloy'.")), None);
        assert_eq!(field(body(None, "Something went wrong.")), None);
        assert_eq!(field(body(None, "It's `not a name` here")), None);
    }

    #[test]
    fn unknown_events_are_other() {
        let ev: ServerEvent =
            serde_json::from_str(r#"{"type":"mcp_list_tools.in_progress","event_id":"e"}"#).unwrap();
        assert!(matches!(ev, ServerEvent::Other));
    }

    #[test]
    fn error_event_carries_code() {
        let raw = r#"{"type":"error","event_id":"event_890","error":{"type":"invalid_request_error","code":"invalid_event","message":"The 'type' field is missing.","param":null,"event_id":"event_567"}}"#;
        match serde_json::from_str::<ServerEvent>(raw).unwrap() {
            ServerEvent::Error { error } => {
                assert_eq!(error.code.as_deref(), Some("invalid_event"));
                assert_eq!(error.event_id.as_deref(), Some("event_567"));
            }
            other => panic!("{other:?}"),
        }
    }
}
