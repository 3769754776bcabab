//! Decoding provider audio bytes to PCM16 samples.

use voxpipe_core::audio::g711;
use voxpipe_core::audio::pcm::Pcm16Decoder;

/// A streaming decoder for one provider stream. A PCM16 sample split across network reads is
/// carried over to the next read.
#[derive(Debug)]
pub enum AudioDecoder {
    /// Raw little-endian PCM16.
    Pcm16(Pcm16Decoder),
    /// G.711 μ-law, one byte per sample.
    Ulaw,
}

impl AudioDecoder {
    /// A PCM16 decoder.
    pub fn pcm16() -> Self {
        Self::Pcm16(Pcm16Decoder::default())
    }

    /// Decodes `bytes`, appending whole samples to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<i16>) {
        match self {
            Self::Pcm16(d) => d.push(bytes, out),
            Self::Ulaw => g711::decode_ulaw(bytes, out),
        }
    }

    /// Samples `bytes` decode to, at most (for reserving capacity).
    pub fn max_samples(&self, bytes: usize) -> usize {
        match self {
            Self::Pcm16(_) => bytes / 2 + 1,
            Self::Ulaw => bytes,
        }
    }
}
