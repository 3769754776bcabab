//! Audio formats on the wire and input decoding; the assistant's voice is the fakes' shared
//! tone ([`crate::voice`]).

use serde_json::Value;
use voxpipe_core::audio::{SampleRate, g711, pcm};

/// An audio format the session may select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudioFormat {
    /// PCM16 little-endian, 24 kHz (GA `audio/pcm`, beta `pcm16`).
    Pcm24k,
    /// G.711 μ-law, 8 kHz (GA `audio/pcmu`, beta `g711_ulaw`).
    Pcmu,
    /// G.711 A-law, 8 kHz (GA `audio/pcma`, beta `g711_alaw`).
    Pcma,
}

impl AudioFormat {
    /// Reads a format from a validated session value in either dialect.
    pub(crate) fn from_session(v: &Value) -> Self {
        let s = v.get("type").unwrap_or(v).as_str().unwrap_or("audio/pcm");
        match s {
            "audio/pcmu" | "g711_ulaw" => Self::Pcmu,
            "audio/pcma" | "g711_alaw" => Self::Pcma,
            _ => Self::Pcm24k,
        }
    }

    /// Sample rate of the format.
    pub(crate) fn rate(self) -> SampleRate {
        match self {
            Self::Pcm24k => 24_000,
            Self::Pcmu | Self::Pcma => 8_000,
        }
    }

    /// Bytes per sample.
    pub(crate) fn sample_bytes(self) -> usize {
        match self {
            Self::Pcm24k => 2,
            Self::Pcmu | Self::Pcma => 1,
        }
    }

    /// Decodes wire bytes, appending samples to `out`.
    pub(crate) fn decode(self, bytes: &[u8], out: &mut Vec<i16>) {
        match self {
            Self::Pcm24k => pcm::decode_pcm16le(bytes, out),
            Self::Pcmu => g711::decode_ulaw(bytes, out),
            Self::Pcma => g711::decode_alaw(bytes, out),
        }
    }

    /// Encodes samples, appending wire bytes to `out`.
    pub(crate) fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        match self {
            Self::Pcm24k => pcm::encode_pcm16le(samples, out),
            Self::Pcmu => g711::encode_ulaw(samples, out),
            Self::Pcma => g711::encode_alaw(samples, out),
        }
    }
}

pub(crate) use crate::voice::tone;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_formats_round_trip_through_the_codec() {
        let mut s = Vec::new();
        tone(8000, 0, 160, 160, &mut s);
        for f in [AudioFormat::Pcmu, AudioFormat::Pcma, AudioFormat::Pcm24k] {
            let mut bytes = Vec::new();
            f.encode(&s, &mut bytes);
            assert_eq!(bytes.len(), s.len() * f.sample_bytes());
            let mut back = Vec::new();
            f.decode(&bytes, &mut back);
            assert_eq!(back.len(), s.len());
        }
    }
}
