//! A call recording: a stereo WAV, the caller on the left channel and the agent on the right,
//! both on the call's timeline.
//!
//! The two sides arrive separately and out of step (the caller's audio as it comes in, the
//! agent's once the carrier confirms it played), so each side is placed at its own position
//! in a short window, and the window is written out, interleaved, once both sides are past it.
//! Memory per call is the window (a second or two of two 8 kHz tracks), not the call.

use std::collections::VecDeque;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

type Writer = hound::WavWriter<BufWriter<std::fs::File>>;

struct State {
    writer: Option<Writer>,
    /// Sample position of the first sample in the tracks.
    base: u64,
    left: VecDeque<i16>,
    right: VecDeque<i16>,
    error: Option<String>,
    path: PathBuf,
}

/// A stereo call recording being written. Cheap to clone; every clone writes the same file.
#[derive(Clone)]
pub struct CallRecorder {
    state: Arc<Mutex<State>>,
    rate: u32,
}

impl std::fmt::Debug for CallRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecorder").field("rate", &self.rate).finish_non_exhaustive()
    }
}

impl CallRecorder {
    /// Creates `path` (16-bit stereo at `rate`).
    pub fn create(path: &Path, rate: u32) -> Result<Self, crate::Error> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| crate::Error::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self {
            state: Arc::new(Mutex::new(State {
                writer: Some(writer),
                base: 0,
                left: VecDeque::new(),
                right: VecDeque::new(),
                error: None,
                path: path.to_path_buf(),
            })),
            rate,
        })
    }

    /// The recording's sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The caller's `samples`, starting at sample `at` of the call.
    pub fn caller(&self, at: u64, samples: &[i16]) {
        let mut s = self.lock();
        let base = s.base;
        place(&mut s.left, base, at, samples);
    }

    /// The agent's `samples`, starting at sample `at` of the call (mixed over anything there).
    pub fn agent(&self, at: u64, samples: &[i16]) {
        let mut s = self.lock();
        let base = s.base;
        place(&mut s.right, base, at, samples);
    }

    /// Writes out everything before sample `upto` (neither side may add there afterwards).
    pub fn flush_before(&self, upto: u64) {
        let mut s = self.lock();
        write_out(&mut s, upto);
        if let Some(w) = s.writer.as_mut()
            && let Err(e) = w.flush()
        {
            s.error.get_or_insert(e.to_string());
        }
    }

    /// Writes everything and closes the file. Returns the first write error, if any.
    pub fn finish(&self) -> Result<(), crate::Error> {
        let mut s = self.lock();
        write_out(&mut s, u64::MAX);
        if let Some(w) = s.writer.take()
            && let Err(e) = w.finalize()
        {
            s.error.get_or_insert(e.to_string());
        }
        match s.error.take() {
            Some(e) => Err(crate::Error::Write { path: s.path.clone(), source: std::io::Error::other(e) }),
            None => Ok(()),
        }
    }
}

fn place(track: &mut VecDeque<i16>, base: u64, at: u64, samples: &[i16]) {
    // Audio before the window has already been written: drop that part.
    let skip = base.saturating_sub(at) as usize;
    if skip >= samples.len() {
        return;
    }
    let start = (at.max(base) - base) as usize;
    let samples = &samples[skip..];
    let end = start + samples.len();
    if track.len() < end {
        track.resize(end, 0);
    }
    for (slot, &v) in track.range_mut(start..end).zip(samples) {
        *slot = slot.saturating_add(v);
    }
}

fn write_out(s: &mut State, upto: u64) {
    let available = s.left.len().max(s.right.len()) as u64;
    let n = upto.saturating_sub(s.base).min(available) as usize;
    if n == 0 {
        return;
    }
    if let Some(w) = s.writer.as_mut() {
        for i in 0..n {
            let l = s.left.get(i).copied().unwrap_or(0);
            let r = s.right.get(i).copied().unwrap_or(0);
            if let Err(e) = w.write_sample(l).and_then(|()| w.write_sample(r)) {
                s.error.get_or_insert(e.to_string());
                s.writer = None;
                break;
            }
        }
    }
    let dl = n.min(s.left.len());
    s.left.drain(..dl);
    let dr = n.min(s.right.len());
    s.right.drain(..dr);
    s.base += n as u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_land_at_their_times_whatever_order_they_come_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("call.wav");
        let r = CallRecorder::create(&path, 8000).unwrap();
        r.caller(0, &[1; 100]);
        r.agent(150, &[2; 50]);
        r.caller(100, &[3; 100]);
        r.flush_before(120);
        r.agent(110, &[9; 20]); // partly before the window: only 120.. lands
        r.finish().unwrap();
        let mut reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.spec().channels, 2);
        let s: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        let (left, right): (Vec<i16>, Vec<i16>) = s.chunks(2).map(|c| (c[0], c[1])).unzip();
        assert_eq!(left.len(), 200);
        assert!(left[..100].iter().all(|&v| v == 1) && left[100..].iter().all(|&v| v == 3));
        assert!(right[..120].iter().all(|&v| v == 0));
        assert!(right[120..130].iter().all(|&v| v == 9));
        assert!(right[130..150].iter().all(|&v| v == 0));
        assert!(right[150..200].iter().all(|&v| v == 2));
    }
}
