//! Media Streams messages: every frame is a JSON text message. Twilio sends `connected`,
//! `start`, `media`, `dtmf`, `mark` and `stop`; the server sends `media`, `mark` and `clear`
//! (bidirectional `<Connect><Stream>` only). `sequenceNumber`, `chunk` and `timestamp` are
//! strings on the wire.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A message from Twilio to the server.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "event", rename_all = "lowercase", rename_all_fields = "camelCase")]
pub enum Inbound {
    /// The socket is open.
    Connected {
        /// Always `Call`.
        protocol: String,
        /// Protocol version (`1.0.0`).
        version: String,
    },
    /// The stream's metadata; sent once, before any media.
    Start {
        /// Message counter, from "1".
        sequence_number: String,
        /// The stream.
        stream_sid: String,
        /// Metadata.
        start: StartInfo,
    },
    /// 20 ms of the caller's audio.
    Media {
        /// Message counter.
        sequence_number: String,
        /// The stream.
        stream_sid: String,
        /// The audio.
        media: InboundMedia,
    },
    /// The caller pressed a key.
    Dtmf {
        /// Message counter.
        sequence_number: String,
        /// The stream.
        stream_sid: String,
        /// The key.
        dtmf: Dtmf,
    },
    /// Audio queued before a `mark` of ours has played (or was cleared).
    Mark {
        /// Message counter.
        sequence_number: String,
        /// The stream.
        stream_sid: String,
        /// Our mark's name.
        mark: MarkName,
    },
    /// The stream or the call ended; Twilio closes the socket next.
    Stop {
        /// Message counter.
        sequence_number: String,
        /// The stream.
        stream_sid: String,
        /// Which call.
        stop: StopInfo,
    },
}

/// `start.start`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartInfo {
    /// The stream.
    pub stream_sid: String,
    /// The account.
    pub account_sid: String,
    /// The call.
    pub call_sid: String,
    /// `["inbound"]` for a bidirectional stream.
    pub tracks: Vec<String>,
    /// `<Parameter>`s of the `<Stream>` TwiML.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    /// Always μ-law, 8 kHz, mono.
    pub media_format: MediaFormat,
}

/// The stream's audio format.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    /// `audio/x-mulaw`.
    pub encoding: String,
    /// 8000.
    pub sample_rate: u32,
    /// 1.
    pub channels: u32,
}

impl MediaFormat {
    /// The only format Media Streams uses.
    pub fn mulaw_8k() -> Self {
        Self { encoding: "audio/x-mulaw".into(), sample_rate: 8000, channels: 1 }
    }
}

/// `media.media` from Twilio.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct InboundMedia {
    /// `inbound`.
    pub track: String,
    /// Chunk counter, from "1".
    pub chunk: String,
    /// Milliseconds since the stream started.
    pub timestamp: String,
    /// Base64 μ-law.
    pub payload: String,
}

/// `dtmf.dtmf`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Dtmf {
    /// `inbound_track`.
    pub track: String,
    /// `0`–`9`, `*`, `#`.
    pub digit: String,
}

/// `mark.mark`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct MarkName {
    /// The label.
    pub name: String,
}

/// `stop.stop`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopInfo {
    /// The account.
    pub account_sid: String,
    /// The call.
    pub call_sid: String,
}

/// A message from the server to Twilio.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "event", rename_all = "lowercase", rename_all_fields = "camelCase")]
pub enum Outbound {
    /// Audio to play (queued in order after what was sent before).
    Media {
        /// The stream.
        stream_sid: String,
        /// The audio.
        media: OutboundMedia,
    },
    /// Echo `name` back once everything sent before it has played.
    Mark {
        /// The stream.
        stream_sid: String,
        /// The label.
        mark: MarkName,
    },
    /// Drop everything queued (barge-in).
    Clear {
        /// The stream.
        stream_sid: String,
    },
}

/// `media.media` to Twilio.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct OutboundMedia {
    /// Base64 μ-law 8 kHz, no header.
    pub payload: String,
}

/// Writes outbound messages into a reused buffer, without a serde tree per frame: the wire
/// format forces one JSON text and one base64 string per 20 ms frame, and nothing more.
#[derive(Debug)]
pub struct OutboundWriter {
    prefix_media: String,
    prefix_mark: String,
    clear: String,
}

impl OutboundWriter {
    /// A writer for `stream_sid` (a Twilio SID: letters and digits only, nothing to escape;
    /// anything else is escaped by serde_json once here).
    pub fn new(stream_sid: &str) -> Self {
        let sid = serde_json::to_string(stream_sid).unwrap_or_else(|_| "\"\"".into());
        Self {
            prefix_media: format!(r#"{{"event":"media","streamSid":{sid},"media":{{"payload":""#),
            prefix_mark: format!(r#"{{"event":"mark","streamSid":{sid},"mark":{{"name":"#),
            clear: format!(r#"{{"event":"clear","streamSid":{sid}}}"#),
        }
    }

    /// A `media` message carrying `mulaw`.
    pub fn media(&self, mulaw: &[u8]) -> String {
        let mut s = String::with_capacity(self.prefix_media.len() + mulaw.len().div_ceil(3) * 4 + 4);
        s.push_str(&self.prefix_media);
        base64::engine::general_purpose::STANDARD.encode_string(mulaw, &mut s);
        s.push_str("\"}}");
        s
    }

    /// A `mark` message named `name`.
    pub fn mark(&self, name: &str) -> String {
        let name = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".into());
        format!("{}{name}}}}}", self.prefix_mark)
    }

    /// A `clear` message.
    pub fn clear(&self) -> String {
        self.clear.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_messages_parse() {
        let start = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"customParameters":{"session":"abc"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
        let Inbound::Start { start, .. } = serde_json::from_str(start).unwrap() else { panic!() };
        assert_eq!(start.call_sid, "CA1");
        assert_eq!(start.custom_parameters["session"], "abc");
        let media = r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"//8="}}"#;
        assert!(matches!(serde_json::from_str(media).unwrap(), Inbound::Media { .. }));
        let mark = r#"{"event":"mark","sequenceNumber":"9","streamSid":"MZ1","mark":{"name":"m1"}}"#;
        assert!(matches!(serde_json::from_str(mark).unwrap(), Inbound::Mark { .. }));
        let stop = r#"{"event":"stop","sequenceNumber":"42","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#;
        assert!(matches!(serde_json::from_str(stop).unwrap(), Inbound::Stop { .. }));
        assert!(serde_json::from_str::<Inbound>(r#"{"event":"close"}"#).is_err(), "not Twilio's protocol");
    }

    #[test]
    fn the_hand_written_outbound_messages_are_what_serde_writes() {
        let w = OutboundWriter::new("MZ1");
        let parsed: Outbound = serde_json::from_str(&w.media(&[0xff, 0x7f, 0])).unwrap();
        assert_eq!(
            parsed,
            Outbound::Media { stream_sid: "MZ1".into(), media: OutboundMedia { payload: "/38A".into() } }
        );
        let parsed: Outbound = serde_json::from_str(&w.mark("r\"1")).unwrap();
        assert_eq!(
            parsed,
            Outbound::Mark { stream_sid: "MZ1".into(), mark: MarkName { name: "r\"1".into() } }
        );
        let parsed: Outbound = serde_json::from_str(&w.clear()).unwrap();
        assert_eq!(parsed, Outbound::Clear { stream_sid: "MZ1".into() });
    }
}
