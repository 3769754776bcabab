//! PCM16 little-endian byte conversions and float conversions.

/// Appends the samples decoded from little-endian PCM16 `bytes` to `out`.
///
/// An odd trailing byte is ignored; streaming callers carry it over with [`Pcm16Decoder`].
pub fn decode_pcm16le(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
}

/// Appends `samples` as little-endian PCM16 bytes to `out`.
pub fn encode_pcm16le(samples: &[i16], out: &mut Vec<u8>) {
    out.reserve(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
}

/// Decodes a PCM16 LE byte stream whose chunk boundaries may split a sample (HTTP chunked
/// bodies do): an odd trailing byte is carried over into the next call.
#[derive(Debug, Default)]
pub struct Pcm16Decoder {
    carry: Option<u8>,
}

impl Pcm16Decoder {
    /// Decodes `bytes`, appending whole samples to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<i16>) {
        if let Some(lo) = self.carry.take() {
            match bytes.split_first() {
                Some((&hi, rest)) => {
                    out.push(i16::from_le_bytes([lo, hi]));
                    bytes = rest;
                }
                None => {
                    self.carry = Some(lo);
                    return;
                }
            }
        }
        decode_pcm16le(bytes, out);
        if bytes.len() % 2 == 1 {
            self.carry = bytes.last().copied();
        }
    }

    /// True when half a sample is waiting for its second byte.
    pub fn has_carry(&self) -> bool {
        self.carry.is_some()
    }
}

/// Converts a PCM16 sample to f32 in [-1, 1).
#[inline]
pub fn i16_to_f32(s: i16) -> f32 {
    s as f32 / 32768.0
}

/// Converts an f32 sample to PCM16, clamping to range.
#[inline]
pub fn f32_to_i16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm16_round_trip() {
        let samples = [0i16, 1, -1, i16::MAX, i16::MIN, 12345];
        let mut bytes = Vec::new();
        encode_pcm16le(&samples, &mut bytes);
        assert_eq!(&bytes[..4], &[0, 0, 1, 0]);
        assert_eq!(&bytes[4..6], &[0xFF, 0xFF]);
        let mut back = Vec::new();
        decode_pcm16le(&bytes, &mut back);
        assert_eq!(back, samples);
    }

    #[test]
    fn decoder_carries_odd_bytes_across_chunks() {
        let samples: Vec<i16> = (0..50).map(|i: i32| (i * 1000 - 25_000) as i16).collect();
        let mut bytes = Vec::new();
        encode_pcm16le(&samples, &mut bytes);
        let mut dec = Pcm16Decoder::default();
        let mut out = Vec::new();
        for piece in bytes.chunks(7) {
            dec.push(piece, &mut out);
        }
        dec.push(&[], &mut out);
        assert!(!dec.has_carry());
        assert_eq!(out, samples);
    }

    #[test]
    fn float_conversion_clamps() {
        assert_eq!(f32_to_i16(2.0), 32767);
        assert_eq!(f32_to_i16(-2.0), -32768);
        assert_eq!(f32_to_i16(i16_to_f32(-1234)), -1234);
    }
}
