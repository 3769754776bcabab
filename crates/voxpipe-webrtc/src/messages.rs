//! What the page sends over the data channel (the server's messages to the page are the call's
//! events, as JSON, see `voxpipe-serve`).

use serde::Deserialize;

/// A control message from the page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PageMessage {
    /// The caller muted (or unmuted) the microphone: silence goes to the pipeline meanwhile, so
    /// the call's timeline goes on.
    Mute {
        /// Muted from now on.
        muted: bool,
    },
    /// Push-to-talk: the talk button went down (`true`) or up.
    Ptt {
        /// Pressed.
        down: bool,
    },
    /// The caller ended the call.
    End,
    /// What the page is playing now: the RTP timestamp of the last audio frame played out
    /// (`RTCRtpReceiver.getSynchronizationSources()`), sent a few times a second.
    Playout {
        /// RTP timestamp (48 kHz ticks, 32 bits).
        rtp: u32,
    },
}

impl PageMessage {
    /// Parses one data-channel message; the error says what was wrong, for the log.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > 4096 {
            return Err(format!("a message of {} bytes (at most 4096)", text.len()));
        }
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_messages_parse_and_nonsense_is_refused() {
        assert_eq!(
            PageMessage::parse(r#"{"type":"mute","muted":true}"#),
            Ok(PageMessage::Mute { muted: true })
        );
        assert_eq!(
            PageMessage::parse(r#"{"type":"ptt","down":false}"#),
            Ok(PageMessage::Ptt { down: false })
        );
        assert_eq!(PageMessage::parse(r#"{"type":"end"}"#), Ok(PageMessage::End));
        assert_eq!(
            PageMessage::parse(r#"{"type":"playout","rtp":4294967295}"#),
            Ok(PageMessage::Playout { rtp: u32::MAX })
        );
        assert!(PageMessage::parse(r#"{"type":"playout","rtp":-1}"#).is_err());
        assert!(PageMessage::parse(r#"{"type":"reboot"}"#).is_err());
        assert!(PageMessage::parse("not json").is_err());
        assert!(PageMessage::parse(&format!(r#"{{"type":"end","x":"{}"}}"#, "a".repeat(5000))).is_err());
    }
}
