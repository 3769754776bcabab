//! ITU-T G.711 μ-law and A-law codecs (8 kHz telephony).
//!
//! The segment/quantisation algorithm is the classic reference one (Sun Microsystems' public
//! domain `g711.c`), which reproduces the ITU-T G.711 tables exactly. Decoding is a 256-entry
//! table built at compile time; encoding is a few shifts per sample.

const BIAS: i32 = 0x84;
const CLIP: i32 = 8159;
const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

fn segment(value: i32, table: &[i32; 8]) -> usize {
    table.iter().position(|&end| value <= end).unwrap_or(8)
}

/// Encodes one linear PCM16 sample as μ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut v = (sample as i32) >> 2;
    let mask: i32 = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    v = v.min(CLIP) + (BIAS >> 2);
    let seg = segment(v, &SEG_UEND);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let u = ((seg as i32) << 4) | ((v >> (seg + 1)) & 0xF);
    (u ^ mask) as u8
}

const fn ulaw_decode(code: u8) -> i16 {
    let u = !code as i32 & 0xFF;
    let mut t = ((u & 0x0F) << 3) + BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

/// Encodes one linear PCM16 sample as A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut v = (sample as i32) >> 3;
    let mask: i32 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &SEG_AEND);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mut a = (seg as i32) << 4;
    a |= if seg < 2 { (v >> 1) & 0xF } else { (v >> seg) & 0xF };
    (a ^ mask) as u8
}

const fn alaw_decode(code: u8) -> i16 {
    let a = (code ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

static ULAW_TABLE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode(i as u8);
        i += 1;
    }
    t
};
static ALAW_TABLE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode(i as u8);
        i += 1;
    }
    t
};

/// Decodes one μ-law byte to linear PCM16.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TABLE[code as usize]
}

/// Decodes one A-law byte to linear PCM16.
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TABLE[code as usize]
}

/// Encodes `samples` as μ-law into `out` (cleared first; reuses its capacity).
pub fn encode_ulaw(samples: &[i16], out: &mut Vec<u8>) {
    out.clear();
    out.extend(samples.iter().map(|&s| linear_to_ulaw(s)));
}

/// Encodes `samples` as A-law into `out` (cleared first; reuses its capacity).
pub fn encode_alaw(samples: &[i16], out: &mut Vec<u8>) {
    out.clear();
    out.extend(samples.iter().map(|&s| linear_to_alaw(s)));
}

/// Decodes μ-law bytes, appending the samples to `out`.
pub fn decode_ulaw(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|&b| ulaw_to_linear(b)));
}

/// Decodes A-law bytes, appending the samples to `out`.
pub fn decode_alaw(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|&b| alaw_to_linear(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from ITU-T G.711 Tables 1 and 2. The tables give decoder outputs on a
    // 13-bit (A-law) and 14-bit (μ-law) scale; PCM16 values are those times 8 and 4.
    #[test]
    fn ulaw_decoder_matches_g711_table_2() {
        // (code as transmitted, 14-bit decoder output)
        let cases: &[(u8, i32)] = &[
            (0xFF, 0),     // positive zero
            (0x7F, 0),     // negative zero
            (0xFE, 2),     // segment 0, step 1
            (0xF0, 30),    // segment 0 top
            (0xEF, 33),    // segment 1 start
            (0xDF, 99),    // segment 2 start
            (0xCF, 231),   // segment 3 start
            (0xBF, 495),   // segment 4 start
            (0xAF, 1023),  // segment 5 start
            (0x9F, 2079),  // segment 6 start
            (0x8F, 4191),  // segment 7 start
            (0x80, 8031),  // positive maximum
            (0x00, -8031), // negative maximum
        ];
        for &(code, v14) in cases {
            assert_eq!(ulaw_to_linear(code) as i32, v14 * 4, "code {code:#04x}");
        }
    }

    #[test]
    fn alaw_decoder_matches_g711_table_1() {
        // (code as transmitted, i.e. after even-bit inversion, 13-bit decoder output)
        let cases: &[(u8, i32)] = &[
            (0xD5, 1),     // smallest positive
            (0x55, -1),    // smallest negative
            (0xD4, 3),     // segment 0 step 1
            (0xC5, 33),    // segment 1 start
            (0xF5, 66),    // segment 2 start
            (0xE5, 132),   // segment 3 start
            (0x95, 264),   // segment 4 start
            (0x85, 528),   // segment 5 start
            (0xB5, 1056),  // segment 6 start
            (0xA5, 2112),  // segment 7 start
            (0xAA, 4032),  // positive maximum
            (0x2A, -4032), // negative maximum
        ];
        for &(code, v13) in cases {
            assert_eq!(alaw_to_linear(code) as i32, v13 * 8, "code {code:#04x}");
        }
    }

    #[test]
    fn encoders_match_reference_decision_points() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1) & 0xF0, 0x70); // negative, segment 0
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            let u = ulaw_to_linear(code);
            // 0x7F (negative zero) re-encodes as positive zero.
            let expect = if code == 0x7F { 0xFF } else { code };
            assert_eq!(linear_to_ulaw(u), expect, "ulaw {code:#04x}");
            assert_eq!(linear_to_alaw(alaw_to_linear(code)), code, "alaw {code:#04x}");
        }
    }

    #[test]
    fn quantisation_error_is_bounded_and_monotonic() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_to_linear(linear_to_ulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            assert!(u >= prev_u && a >= prev_a, "monotonic at {s}");
            prev_u = u;
            prev_a = a;
            let tol = (s as i32).abs() / 16 + 16;
            assert!(((u as i32) - s as i32).abs() <= tol.max(1100), "ulaw error at {s}");
            assert!(((a as i32) - s as i32).abs() <= tol.max(1100), "alaw error at {s}");
        }
    }
}
