//! The Slaney-style mel filter bank that whisper uses (librosa's `filters.mel` with
//! `htk=False, norm="slaney"`), and GPT-2's byte-to-unicode table used by whisper vocabularies.

/// Hz to mel on the Slaney scale: linear below 1 kHz, logarithmic above.
pub fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ { min_log_mel + (hz / MIN_LOG_HZ).ln() / logstep } else { hz / F_SP }
}

/// Mel (Slaney scale) to Hz.
pub fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel { MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp() } else { F_SP * mel }
}

/// The mel filter bank: `n_mels` rows of `n_fft / 2 + 1` weights, row-major, covering 0 Hz to
/// `sample_rate / 2`, with Slaney area normalisation.
pub fn mel_filters(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    let nyquist = sample_rate as f64 / 2.0;
    let fft_freqs: Vec<f64> = (0..n_bins).map(|i| i as f64 * nyquist / (n_bins - 1) as f64).collect();
    let (mel_lo, mel_hi) = (hz_to_mel(0.0), hz_to_mel(nyquist));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(mel_lo + (mel_hi - mel_lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut weights = vec![0f32; n_mels * n_bins];
    for m in 0..n_mels {
        let (lo, c, hi) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
        let enorm = 2.0 / (hi - lo);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - lo) / (c - lo);
            let upper = (hi - f) / (hi - c);
            weights[m * n_bins + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    weights
}

/// GPT-2's byte-to-unicode table: the printable character standing for each byte value in a
/// BPE vocabulary.
pub fn byte_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0u32..256 {
        let printable = (b'!' as u32..=b'~' as u32).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b);
        let c = if printable {
            b
        } else {
            extra += 1;
            255 + extra
        };
        table[b as usize] = char::from_u32(c).expect("code points below 0x200 are valid");
    }
    table
}

/// The inverse of [`byte_to_unicode`]: the bytes a vocabulary token stands for, or `None` if
/// it contains a character outside the table.
pub fn token_to_bytes(token: &str, inverse: &std::collections::HashMap<char, u8>) -> Option<Vec<u8>> {
    token.chars().map(|c| inverse.get(&c).copied()).collect()
}

/// The inverse table for [`token_to_bytes`].
pub fn unicode_to_byte() -> std::collections::HashMap<char, u8> {
    byte_to_unicode().iter().enumerate().map(|(b, &c)| (c, b as u8)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_bank_has_whisper_shape_and_non_negative_weights() {
        let f = mel_filters(16_000, 400, 80);
        assert_eq!(f.len(), 80 * 201);
        assert!(f.iter().all(|&w| w >= 0.0 && w.is_finite()));
        // Every filter has some weight, and nothing lands on the Nyquist bin.
        for m in 0..80 {
            assert!(f[m * 201..(m + 1) * 201].iter().any(|&w| w > 0.0), "filter {m} is empty");
        }
    }

    #[test]
    fn each_filter_peaks_at_the_bin_nearest_its_centre() {
        let f = mel_filters(16_000, 400, 80);
        let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(8000.0));
        for m in 0..80 {
            let centre_hz = mel_to_hz(lo + (hi - lo) * (m + 1) as f64 / 81.0);
            let row = &f[m * 201..(m + 1) * 201];
            let peak = (0..201).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            let centre_bin = centre_hz / 40.0;
            assert!(
                peak == centre_bin.floor() as usize || peak == centre_bin.ceil() as usize,
                "filter {m}: peak at bin {peak}, centre at bin {centre_bin:.2}"
            );
        }
    }

    #[test]
    fn filter_bank_matches_reference_values() {
        // Reference values computed independently (plain Python port of librosa 0.10's
        // `filters.mel(sr=16000, n_fft=400, n_mels=80)`).
        let f = mel_filters(16_000, 400, 80);
        let at = |m: usize, k: usize| f[m * 201 + k];
        for (m, k, want) in REFERENCE {
            assert!((at(*m, *k) - want).abs() < 1e-6, "[{m}][{k}] = {} want {want}", at(*m, *k));
        }
        // Slaney scale anchors.
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((mel_to_hz(hz_to_mel(4321.0)) - 4321.0).abs() < 1e-9);
    }

    const REFERENCE: &[(usize, usize, f32)] = &[
        (0, 1, 0.024_862_594),
        (1, 1, 0.001_990_822),
        (1, 2, 0.022_871_772),
        (10, 10, 0.019_908_22),
        (40, 40, 0.0),
        (60, 90, 0.001_434_534),
        (79, 180, 0.0),
        (79, 190, 0.002_232_055),
    ];

    #[test]
    fn byte_table_matches_gpt2() {
        let t = byte_to_unicode();
        assert_eq!(t[b'!' as usize], '!');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[0xA0], 'ł');
        assert_eq!(t[0xAD], 'Ń');
        assert_eq!(t[0xFF], 'ÿ');
        let inv = unicode_to_byte();
        assert_eq!(inv.len(), 256, "the table is a bijection");
        assert_eq!(token_to_bytes("Ġhello", &inv).unwrap(), b" hello");
        assert_eq!(token_to_bytes("âĢĻ", &inv).unwrap(), "\u{2019}".as_bytes());
        assert!(token_to_bytes("日", &inv).is_none());
    }
}
