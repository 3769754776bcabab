//! Audio types and utilities: shared sample buffers, 20 ms chunks, PCM16 and G.711 codecs,
//! resampling and framing.
//!
//! Vocabulary: a *sample* is one mono `i16` value; an [`AudioChunk`] is a run of samples with a
//! sample rate and a media timestamp. voxpipe is mono throughout: every provider it speaks to is.

pub mod g711;
pub mod pcm;
mod resample;
pub mod synth;

pub use resample::{ResampleError, StreamResampler, resample_all};

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// Samples per second.
pub type SampleRate = u32;

/// The default chunk length used by sources and sinks: 20 ms.
pub const CHUNK_MS: u64 = 20;

/// Number of samples in `ms` milliseconds at `rate`.
pub const fn samples_for_ms(rate: SampleRate, ms: u64) -> usize {
    (rate as u64 * ms / 1000) as usize
}

/// Duration of `samples` samples at `rate`.
pub fn duration_of(samples: usize, rate: SampleRate) -> Duration {
    Duration::from_nanos(samples as u64 * 1_000_000_000 / rate as u64)
}

/// Milliseconds covered by `samples` samples at `rate`, rounded down.
pub const fn ms_of(samples: u64, rate: SampleRate) -> u64 {
    samples * 1000 / rate as u64
}

/// An immutable, cheaply cloneable view into a shared buffer of mono PCM16 samples.
///
/// Cloning or slicing bumps a reference count and never copies or allocates, so a source can
/// decode a whole file once and hand out 20 ms views of it.
#[derive(Clone)]
pub struct Samples {
    // `Arc<Vec>` rather than `Arc<[i16]>`: wrapping a decoded buffer moves it instead of copying
    // every sample into a new allocation.
    buf: Arc<Vec<i16>>,
    start: usize,
    len: usize,
}

impl Samples {
    /// Wraps an owned vector without copying it (one small allocation for the `Arc`).
    pub fn from_vec(v: Vec<i16>) -> Self {
        let len = v.len();
        Self { buf: Arc::new(v), start: 0, len }
    }

    /// A view of `range` within this view.
    ///
    /// # Panics
    /// If the range is out of bounds, like slice indexing.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        assert!(range.start <= range.end && range.end <= self.len, "Samples::slice out of bounds");
        Self { buf: self.buf.clone(), start: self.start + range.start, len: range.end - range.start }
    }

    /// Splits the view into consecutive views of `n` samples; the last may be shorter.
    pub fn chunks(&self, n: usize) -> impl Iterator<Item = Samples> + '_ {
        let n = n.max(1);
        (0..self.len).step_by(n).map(move |s| self.slice(s..(s + n).min(self.len)))
    }
}

impl Deref for Samples {
    type Target = [i16];
    fn deref(&self) -> &[i16] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl fmt::Debug for Samples {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Samples({} samples)", self.len)
    }
}

impl From<Vec<i16>> for Samples {
    fn from(v: Vec<i16>) -> Self {
        Self::from_vec(v)
    }
}

/// A run of mono PCM16 audio with its sample rate and media timestamp.
#[derive(Clone, Debug)]
pub struct AudioChunk {
    /// Sample rate of `samples`.
    pub sample_rate: SampleRate,
    /// Media timestamp of the first sample, from the start of its stream.
    pub pts: Duration,
    /// The samples.
    pub samples: Samples,
}

impl AudioChunk {
    /// Creates a chunk.
    pub fn new(sample_rate: SampleRate, pts: Duration, samples: Samples) -> Self {
        Self { sample_rate, pts, samples }
    }

    /// Duration of the chunk.
    pub fn duration(&self) -> Duration {
        duration_of(self.samples.len(), self.sample_rate)
    }

    /// Root-mean-square level in dBFS (−inf for digital silence clamps to −120).
    pub fn rms_dbfs(&self) -> f32 {
        rms_dbfs(&self.samples)
    }
}

/// Root-mean-square level of `samples` in dBFS, floored at −120.
pub fn rms_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return -120.0;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let rms = (sum / samples.len() as f64).sqrt() / 32768.0;
    if rms <= 1e-6 { -120.0 } else { (20.0 * rms.log10()) as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slicing_shares_the_buffer() {
        let s = Samples::from_vec((0..100).collect());
        let a = s.slice(10..20);
        assert_eq!(&a[..], &(10..20).collect::<Vec<i16>>()[..]);
        let parts: Vec<_> = s.chunks(32).map(|c| c.len()).collect();
        assert_eq!(parts, vec![32, 32, 32, 4]);
        assert!(Arc::ptr_eq(&a.buf, &s.buf));
    }

    #[test]
    fn sizes_and_levels() {
        assert_eq!(samples_for_ms(24_000, 20), 480);
        assert_eq!(samples_for_ms(22_050, 20), 441);
        assert_eq!(ms_of(48_000, 24_000), 2000);
        assert_eq!(rms_dbfs(&[0; 10]), -120.0);
        let full: Vec<i16> = (0..1000).map(|i| if i % 2 == 0 { 32767 } else { -32767 }).collect();
        assert!(rms_dbfs(&full) > -0.01);
    }
}
