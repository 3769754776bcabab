//! The RIFF/WAVE formats hound does not read: G.711 μ-law and A-law, the usual encoding of
//! telephone call recordings (contact-centre recorders, PBX voicemail, carrier exports).
//!
//! Written by hand because it is one chunk walk and two 256-entry tables (in `voxpipe-core`);
//! hound declines these format tags, and no maintained crate decodes them from WAV. Files in
//! any other format hound rejects get an error naming the format tag.

use voxpipe_core::audio::SampleRate;
use voxpipe_core::audio::g711::{alaw_to_linear, ulaw_to_linear};

const WAVE_FORMAT_PCM: u16 = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 0x0003;
const WAVE_FORMAT_ALAW: u16 = 0x0006;
const WAVE_FORMAT_MULAW: u16 = 0x0007;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// A G.711 WAV file's header and its coded bytes.
#[derive(Debug)]
pub(crate) struct G711Wav<'a> {
    pub channels: u16,
    pub sample_rate: SampleRate,
    law: Law,
    /// The data chunk as far as the file has it (one byte per sample, interleaved).
    pub data: &'a [u8],
    /// Bytes the data chunk's header declares.
    pub declared: u64,
}

#[derive(Debug, Clone, Copy)]
enum Law {
    Mu,
    A,
}

impl G711Wav<'_> {
    /// The samples, decoded to linear PCM16, interleaved as in the file.
    pub fn samples(&self) -> impl Iterator<Item = i16> + '_ {
        let law = self.law;
        self.data.iter().map(move |&b| match law {
            Law::Mu => ulaw_to_linear(b),
            Law::A => alaw_to_linear(b),
        })
    }
}

/// Parses a RIFF/WAVE file coded in G.711. `Err` says, for a human, why it cannot be read: not
/// RIFF/WAVE, a format tag other than G.711 (named), or a malformed header.
pub(crate) fn parse_g711(bytes: &[u8]) -> Result<G711Wav<'_>, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut fmt: Option<(Law, u16, SampleRate)> = None;
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let body = &bytes[at + 8..bytes.len().min(at + 8 + size)];
        match id {
            b"fmt " => fmt = Some(parse_fmt(body)?),
            b"data" => {
                let (law, channels, sample_rate) = fmt.ok_or("the data chunk comes before the fmt chunk")?;
                return Ok(G711Wav { channels, sample_rate, law, data: body, declared: size as u64 });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = at.saturating_add(8).saturating_add(size).saturating_add(size & 1);
    }
    Err(match fmt {
        None => "no fmt chunk".into(),
        Some(_) => "no data chunk".into(),
    })
}

fn parse_fmt(body: &[u8]) -> Result<(Law, u16, SampleRate), String> {
    if body.len() < 16 {
        return Err(format!("fmt chunk of {} bytes (at least 16 expected)", body.len()));
    }
    let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
    let mut tag = u16_at(0);
    // WAVE_FORMAT_EXTENSIBLE carries the real format in the first two bytes of its sub-format
    // GUID (at offset 24 of the fmt body).
    if tag == WAVE_FORMAT_EXTENSIBLE && body.len() >= 26 {
        tag = u16_at(24);
    }
    let bits = u16_at(14);
    let law = match tag {
        WAVE_FORMAT_MULAW => Law::Mu,
        WAVE_FORMAT_ALAW => Law::A,
        // hound reads PCM and float, except at depths it does not know.
        WAVE_FORMAT_PCM | WAVE_FORMAT_IEEE_FLOAT => {
            return Err(format!(
                "{bits}-bit {} samples are not supported (8, 16, 24 or 32-bit integer, or 32-bit float)",
                if tag == WAVE_FORMAT_PCM { "integer" } else { "float" }
            ));
        }
        other => {
            return Err(format!(
                "format tag {other:#06x}{} is not supported; voxpipe reads PCM, IEEE float, \
                 μ-law and A-law (convert with e.g. `sox in.wav -b 16 -e signed-integer out.wav`)",
                format_name(other).map(|n| format!(" ({n})")).unwrap_or_default()
            ));
        }
    };
    let channels = u16_at(2);
    let sample_rate = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes"));
    if bits != 8 {
        return Err(format!("G.711 with {bits} bits per sample (8 expected)"));
    }
    if channels == 0 {
        return Err("0 channels".into());
    }
    Ok((law, channels, sample_rate))
}

/// Names of format tags met in call recordings, for the error message.
fn format_name(tag: u16) -> Option<&'static str> {
    Some(match tag {
        0x0002 => "Microsoft ADPCM",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0040 => "G.721 ADPCM",
        0x0055 => "MPEG layer 3",
        0x0064 => "G.726 ADPCM",
        0x0065 => "G.722 ADPCM",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(tag: u16, channels: u16, rate: u32, extra_chunk: bool, data: &[u8]) -> Vec<u8> {
        let mut fmt = Vec::new();
        let ext = tag == WAVE_FORMAT_EXTENSIBLE;
        fmt.extend(tag.to_le_bytes());
        fmt.extend(channels.to_le_bytes());
        fmt.extend(rate.to_le_bytes());
        fmt.extend((rate * channels as u32).to_le_bytes());
        fmt.extend(channels.to_le_bytes());
        fmt.extend(8u16.to_le_bytes());
        fmt.extend(if ext { 22u16 } else { 0 }.to_le_bytes());
        if ext {
            fmt.extend(8u16.to_le_bytes());
            fmt.extend(0u32.to_le_bytes());
            // KSDATAFORMAT_SUBTYPE_MULAW: 00000007-0000-0010-8000-00aa00389b71
            fmt.extend([7, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71]);
        }
        let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
        out.extend(b"fmt ");
        out.extend((fmt.len() as u32).to_le_bytes());
        out.extend(&fmt);
        if extra_chunk {
            // An odd-sized chunk, padded to even, before the data (as `fact` or `LIST` are).
            out.extend(b"LIST");
            out.extend(3u32.to_le_bytes());
            out.extend([1, 2, 3, 0]);
        }
        out.extend(b"data");
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        let riff = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&riff.to_le_bytes());
        out
    }

    #[test]
    fn mu_law_and_a_law_decode_through_the_itu_tables() {
        // 0xFF is μ-law's +0, 0x80 its largest positive step; 0xD5 is A-law's smallest positive.
        let f = wav(WAVE_FORMAT_MULAW, 1, 8000, true, &[0xFF, 0x80]);
        let w = parse_g711(&f).unwrap();
        assert_eq!((w.channels, w.sample_rate, w.declared), (1, 8000, 2));
        assert_eq!(w.samples().collect::<Vec<_>>(), [0, 32124]);
        let f = wav(WAVE_FORMAT_ALAW, 2, 8000, false, &[0xD5, 0x55]);
        assert_eq!(parse_g711(&f).unwrap().samples().collect::<Vec<_>>(), [8, -8]);
    }

    #[test]
    fn the_extensible_header_names_its_law_in_the_sub_format() {
        let f = wav(WAVE_FORMAT_EXTENSIBLE, 1, 8000, false, &[0xFF]);
        assert_eq!(parse_g711(&f).unwrap().samples().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn other_formats_are_named_in_the_error() {
        let e = parse_g711(&wav(0x0031, 1, 8000, false, &[0])).unwrap_err();
        assert!(e.contains("0x0031 (GSM 6.10) is not supported") && e.contains("sox"), "{e}");
        assert_eq!(parse_g711(b"RIFX\0\0\0\0WAVE").unwrap_err(), "not a RIFF/WAVE file");
        let mut pcm12 = wav(WAVE_FORMAT_PCM, 1, 8000, false, &[0, 0]);
        pcm12[34] = 12; // bits per sample
        assert!(parse_g711(&pcm12).unwrap_err().starts_with("12-bit integer samples are not supported"));
        let f = wav(WAVE_FORMAT_MULAW, 1, 8000, false, &[]);
        let header_only = &f[..f.len() - 8];
        assert_eq!(parse_g711(header_only).unwrap_err(), "no data chunk");
    }

    #[test]
    fn a_short_data_chunk_keeps_what_is_there_and_its_declared_size() {
        let mut f = wav(WAVE_FORMAT_MULAW, 1, 8000, false, &[0xFF; 10]);
        f.truncate(f.len() - 4);
        let w = parse_g711(&f).unwrap();
        assert_eq!((w.data.len(), w.declared), (6, 10));
    }
}
