//! Sample-rate conversion with rubato's FFT resampler (fixed ratios: 8, 16, 22.05, 24, 48 kHz
//! and any other pair).
//!
//! [`StreamResampler`] works on a live stream: it buffers input until it has a whole 20 ms
//! block, resamples into buffers allocated once at construction, and trims the resampler's
//! start-up delay so output stays aligned with input on the media timeline.

use super::SampleRate;
use super::pcm::{f32_to_i16, i16_to_f32};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// Why a resampler could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// The rates were rejected (zero, or a ratio rubato cannot do).
    #[error("cannot resample from {from} Hz to {to} Hz: {reason}")]
    Construction {
        /// Input rate.
        from: SampleRate,
        /// Output rate.
        to: SampleRate,
        /// rubato's message.
        reason: String,
    },
    /// Processing failed (a bug: buffer sizes are computed from the resampler itself).
    #[error("resampling failed: {0}")]
    Process(String),
}

/// A streaming mono resampler between two fixed rates. Passes audio through untouched when both
/// rates are equal.
pub struct StreamResampler {
    from: SampleRate,
    to: SampleRate,
    inner: Option<Fft<f32>>,
    pending: Vec<f32>,
    out_buf: Vec<f32>,
    /// Output samples still to drop to compensate for the resampler's delay.
    trim: usize,
    /// Input samples pushed so far, and output samples emitted (after the trim).
    in_total: u64,
    out_total: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler").field("from", &self.from).field("to", &self.to).finish()
    }
}

impl StreamResampler {
    /// Builds a resampler from `from` Hz to `to` Hz working on 20 ms blocks.
    pub fn new(from: SampleRate, to: SampleRate) -> Result<Self, ResampleError> {
        if from == 0 || to == 0 {
            return Err(ResampleError::Construction { from, to, reason: "rates must be > 0".into() });
        }
        if from == to {
            return Ok(Self {
                from,
                to,
                inner: None,
                pending: Vec::new(),
                out_buf: Vec::new(),
                trim: 0,
                in_total: 0,
                out_total: 0,
            });
        }
        let chunk = super::samples_for_ms(from, super::CHUNK_MS).max(1);
        let fft = Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Input)
            .map_err(|e| ResampleError::Construction { from, to, reason: e.to_string() })?;
        let out_buf = vec![0.0; fft.output_frames_max()];
        let trim = fft.output_delay();
        Ok(Self {
            from,
            to,
            pending: Vec::with_capacity(chunk * 2),
            out_buf,
            trim,
            in_total: 0,
            out_total: 0,
            inner: Some(fft),
        })
    }

    /// Input rate.
    pub fn from_rate(&self) -> SampleRate {
        self.from
    }

    /// Output rate.
    pub fn to_rate(&self) -> SampleRate {
        self.to
    }

    /// Resamples `input`, appending every output sample that is ready to `out`.
    pub fn push(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        self.in_total += input.len() as u64;
        self.push_inner(input, out)
    }

    fn push_inner(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        let Some(fft) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        self.pending.extend(input.iter().map(|&s| i16_to_f32(s)));
        let need = fft.input_frames_next();
        let mut offset = 0;
        while self.pending.len() - offset >= need {
            let block = &self.pending[offset..offset + need];
            let inp =
                InterleavedSlice::new(block, 1, need).map_err(|e| ResampleError::Process(e.to_string()))?;
            let frames_out = self.out_buf.len();
            let mut outp = InterleavedSlice::new_mut(&mut self.out_buf[..], 1, frames_out)
                .map_err(|e| ResampleError::Process(e.to_string()))?;
            let (_, produced) = fft
                .process_into_buffer(&inp, &mut outp, None)
                .map_err(|e| ResampleError::Process(e.to_string()))?;
            let skip = self.trim.min(produced);
            self.trim -= skip;
            out.extend(self.out_buf[skip..produced].iter().map(|&s| f32_to_i16(s)));
            self.out_total += (produced - skip) as u64;
            offset += need;
        }
        self.pending.drain(..offset);
        Ok(())
    }

    /// Pushes silence through so that every input sample given so far comes out, appending to
    /// `out`. Call once at end of stream.
    pub fn flush(&mut self, out: &mut Vec<i16>) -> Result<(), ResampleError> {
        let Some(fft) = self.inner.as_ref() else { return Ok(()) };
        let expected = (self.in_total as u128 * self.to as u128 / self.from as u128) as u64;
        let zeros = vec![0i16; fft.input_frames_next()];
        let start = out.len() as u64;
        let produced_before = self.out_total;
        while self.out_total < expected {
            self.push_inner(&zeros, out)?;
        }
        // Drop what the padding produced beyond the real input.
        let keep = start + expected.saturating_sub(produced_before);
        out.truncate(keep as usize);
        self.pending.clear();
        Ok(())
    }
}

/// Resamples a whole clip at once (for files). Returns the input unchanged when rates match.
pub fn resample_all(input: &[i16], from: SampleRate, to: SampleRate) -> Result<Vec<i16>, ResampleError> {
    if from == to {
        return Ok(input.to_vec());
    }
    let mut r = StreamResampler::new(from, to)?;
    let mut out = Vec::with_capacity(input.len() * to as usize / from as usize + 64);
    r.push(input, &mut out)?;
    r.flush(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: SampleRate, hz: f32, ms: u64) -> Vec<i16> {
        let n = super::super::samples_for_ms(rate, ms);
        (0..n)
            .map(|i| f32_to_i16(0.5 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin()))
            .collect()
    }

    /// Estimates the frequency of a sine from its zero crossings.
    fn zero_crossing_hz(s: &[i16], rate: SampleRate) -> f32 {
        let crossings = s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        crossings as f32 / 2.0 / (s.len() as f32 / rate as f32)
    }

    #[test]
    fn every_supported_rate_pair_keeps_length_pitch_and_level() {
        let rates = [8_000, 16_000, 22_050, 24_000, 48_000];
        for &from in &rates {
            for &to in &rates {
                let input = sine(from, 440.0, 1000);
                let out = resample_all(&input, from, to).unwrap();
                let expected = to as usize;
                assert!(out.len().abs_diff(expected) <= 2, "{from}->{to}: {} samples", out.len());
                // Skip edges; check pitch and level in the steady state.
                let mid = &out[out.len() / 10..out.len() * 9 / 10];
                let hz = zero_crossing_hz(mid, to);
                assert!((hz - 440.0).abs() < 5.0, "{from}->{to}: {hz} Hz");
                let peak = mid.iter().map(|s| s.unsigned_abs()).max().unwrap();
                assert!((15_000..=17_500).contains(&peak), "{from}->{to}: peak {peak}");
            }
        }
    }

    #[test]
    fn streaming_matches_timeline() {
        // Feeding 20 ms pieces must produce output aligned with the input: a click at 500 ms in
        // the input appears near 500 ms in the output.
        let mut input = vec![0i16; 16_000];
        input[8_000] = 30_000;
        let mut r = StreamResampler::new(16_000, 24_000).unwrap();
        let mut out = Vec::new();
        for piece in input.chunks(320) {
            r.push(piece, &mut out).unwrap();
        }
        r.flush(&mut out).unwrap();
        let (pos, _) = out.iter().enumerate().max_by_key(|(_, s)| s.unsigned_abs()).unwrap();
        assert!(pos.abs_diff(12_000) <= 24, "click at {pos}");
    }
}
