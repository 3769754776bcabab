//! The fakes' deterministic assistant voice: a faded 220 Hz tone, the same for the same sample
//! indices (the OpenAI Realtime and Gemini Live fakes speak with it).

use std::f64::consts::PI;

use voxpipe_core::audio::{SampleRate, samples_for_ms};

/// Frequency of the assistant's "voice".
const TONE_HZ: f64 = 220.0;
/// Peak amplitude (about -12 dBFS).
const TONE_AMPLITUDE: f64 = 8000.0;
/// Fade in and out at each end of an item's audio.
const FADE_MS: u64 = 10;

/// Fills `out` with samples `[from, from + n)` of a 220 Hz tone of `total` samples at `rate`,
/// faded in and out over 10 ms at each end. Deterministic: the same indices give the same
/// samples.
pub(crate) fn tone(rate: SampleRate, from: usize, n: usize, total: usize, out: &mut Vec<i16>) {
    let fade = samples_for_ms(rate, FADE_MS).max(1);
    out.clear();
    out.extend((from..from + n).map(|i| {
        let edge = i.min(total.saturating_sub(i + 1));
        let gain = if edge < fade { edge as f64 / fade as f64 } else { 1.0 };
        let x = (2.0 * PI * TONE_HZ * i as f64 / rate as f64).sin();
        (x * TONE_AMPLITUDE * gain).round() as i16
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_is_faded_and_deterministic() {
        let mut a = Vec::new();
        tone(24_000, 0, 2400, 2400, &mut a);
        assert_eq!(a[0], 0);
        assert_eq!(*a.last().unwrap(), 0);
        let mut b = Vec::new();
        tone(24_000, 1200, 100, 2400, &mut b);
        assert_eq!(&a[1200..1300], &b[..]);
        let level = voxpipe_core::audio::rms_dbfs(&a[240..2160]);
        assert!((-16.0..-10.0).contains(&level), "{level}");
    }
}
