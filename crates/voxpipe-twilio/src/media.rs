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

/// A `media` message read in place: the hot path's view of 20 ms of caller audio.
///
/// Parsing [`Inbound`] (an internally tagged enum) buffers every field of every message as owned
/// strings before it can pick the variant: about a dozen allocations per 20 ms frame. This view
/// borrows the three fields the transport needs from the message text and skips the rest, so a
/// frame costs no allocation before its audio is decoded. Anything else (another event, a
/// string with escapes) gives `None`, and the caller parses [`Inbound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaView<'a> {
    /// The stream.
    pub stream_sid: &'a str,
    /// Milliseconds since the stream started (a decimal string on the wire).
    pub timestamp: &'a str,
    /// Base64 μ-law.
    pub payload: &'a str,
}

impl<'a> MediaView<'a> {
    /// The view of a `media` message already parsed into [`Inbound::Media`].
    pub fn of(stream_sid: &'a str, media: &'a InboundMedia) -> Self {
        Self { stream_sid, timestamp: &media.timestamp, payload: &media.payload }
    }

    /// The view of `text` when it is a `media` message.
    pub fn parse(text: &'a str) -> Option<Self> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Msg<'a> {
            event: &'a str,
            // Required as the full parser requires them, though unread: the view accepts
            // nothing the full parser refuses.
            #[serde(rename = "sequenceNumber")]
            _sequence_number: &'a str,
            stream_sid: &'a str,
            #[serde(borrow)]
            media: Option<Body<'a>>,
        }
        #[derive(Deserialize)]
        struct Body<'a> {
            #[serde(rename = "track")]
            _track: &'a str,
            #[serde(rename = "chunk")]
            _chunk: &'a str,
            timestamp: &'a str,
            payload: &'a str,
        }
        let m: Msg<'a> = serde_json::from_str(text).ok()?;
        let body = m.media.filter(|_| m.event == "media")?;
        Some(Self { stream_sid: m.stream_sid, timestamp: body.timestamp, payload: body.payload })
    }
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
    fn the_media_view_reads_media_and_declines_everything_else() {
        let media = r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"//8="}}"#;
        assert_eq!(
            MediaView::parse(media),
            Some(MediaView { stream_sid: "MZ1", timestamp: "5", payload: "//8=" })
        );
        // Field order is free, as in any JSON object.
        let reordered = r#"{"media":{"payload":"//8=","timestamp":"5","chunk":"1","track":"inbound"},"streamSid":"MZ1","event":"media","sequenceNumber":"2"}"#;
        assert_eq!(MediaView::parse(reordered), MediaView::parse(media));
        // An escaped string cannot be borrowed: the full parser takes it.
        let escaped = media.replace("//8=", r"\/\/8=");
        assert_eq!(MediaView::parse(&escaped), None);
        let Inbound::Media { media: m, .. } = serde_json::from_str(&escaped).unwrap() else { panic!() };
        assert_eq!(m.payload, "//8=");
        for other in [
            r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
            r#"{"event":"mark","sequenceNumber":"9","streamSid":"MZ1","mark":{"name":"m1"}}"#,
            r#"{"event":"mark","sequenceNumber":"9","streamSid":"MZ1","media":{"timestamp":"5","payload":"//8="}}"#,
            // A media message missing what Twilio always sends is no media message.
            r#"{"event":"media","streamSid":"MZ1","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"//8="}}"#,
            r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{"chunk":"1","timestamp":"5","payload":"//8="}}"#,
            r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{"track":"inbound","timestamp":"5","payload":"//8="}}"#,
            "not json",
        ] {
            assert_eq!(MediaView::parse(other), None, "{other}");
        }
    }

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
