//! A deterministic, speech-like test signal for benches and tests.

/// `samples` at `rate`: half a second of a voiced vowel (a 130 Hz pulse train through a
/// 700 Hz resonator) alternating with half a second of silence.
pub fn vowel_and_silence(rate: u32, samples: usize) -> Vec<i16> {
    let fs = f64::from(rate);
    let r: f64 = (-std::f64::consts::PI * 80.0 / fs).exp();
    let (a1, a2) = (2.0 * r * (2.0 * std::f64::consts::PI * 700.0 / fs).cos(), -r * r);
    let period = (fs / 130.0) as usize;
    let (mut y1, mut y2) = (0.0, 0.0);
    (0..samples)
        .map(|i| {
            let voiced = (i / (rate as usize / 2)).is_multiple_of(2);
            let pulse = if voiced && i.is_multiple_of(period) { 1.0 } else { 0.0 };
            let y = a1 * y1 + a2 * y2 + pulse;
            (y2, y1) = (y1, y);
            (y * 300.0).clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn voiced_halves_are_loud_and_silent_halves_silent() {
        let s = super::vowel_and_silence(16_000, 16_000);
        let peak = |x: &[i16]| x.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        assert!(peak(&s[..8000]) > 1000);
        assert!(peak(&s[8200..]) < 50, "the resonator rings out within 200 samples");
    }
}
