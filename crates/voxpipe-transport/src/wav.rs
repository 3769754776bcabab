//! WAV file source and sink.

use crate::Error;
use crate::playout::{AudioOut, run_playout};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;
use voxpipe_core::audio::{CHUNK_MS, SampleRate, duration_of, resample_all, samples_for_ms};
use voxpipe_core::{
    AudioChunk, CallContext, Control, Frame, Inbox, Outbox, Samples, Sink, Source, StageError,
};

fn default_tail_silence_ms() -> u64 {
    1500
}

/// `[input] kind = "wav"`: the caller's audio from a WAV file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WavInputConfig {
    /// The file. Any PCM WAV (8/16/24/32-bit integer or 32-bit float, any channel count:
    /// channels are mixed down) at any rate.
    pub path: PathBuf,
    /// Resample to this rate before sending (Hz). Default: keep the file's rate; each stage
    /// converts to what its provider needs.
    #[serde(default)]
    pub sample_rate: Option<SampleRate>,
    /// Silence appended after the file so the last turn can end (ms). Default 1500.
    #[serde(default = "default_tail_silence_ms")]
    pub tail_silence_ms: u64,
    /// Push-to-talk button presses recorded with the call, as `[press_ms, release_ms]` pairs on
    /// the file's timeline (for `turn.mode = "push_to_talk"`). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push_to_talk: Vec<[u64; 2]>,
}

/// Reads a whole WAV file as mono PCM16 at its own rate (or `target` rate).
pub fn read_wav(path: &Path, target: Option<SampleRate>) -> Result<(Vec<i16>, SampleRate), Error> {
    let bad = |reason: String| Error::BadWav { path: path.to_path_buf(), reason };
    let file =
        std::fs::File::open(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let mut reader = hound::WavReader::new(std::io::BufReader::new(file)).map_err(|e| match e {
        hound::Error::IoError(source) => Error::Read { path: path.to_path_buf(), source },
        other => bad(other.to_string()),
    })?;
    let spec = reader.spec();
    let channels = spec.channels.max(1) as usize;
    let declared = reader.len() as u64;
    let mut mono: Vec<i16> = Vec::with_capacity(declared as usize / channels);
    let mut found = 0u64;
    let mut acc = 0i32;
    let push = |s: i32, found: &mut u64, acc: &mut i32, mono: &mut Vec<i16>| {
        *acc += s;
        *found += 1;
        if (*found).is_multiple_of(channels as u64) {
            mono.push((*acc / channels as i32).clamp(i16::MIN as i32, i16::MAX as i32) as i16);
            *acc = 0;
        }
    };
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let shift = bits as i32 - 16;
            for s in reader.samples::<i32>() {
                match s {
                    Ok(v) => {
                        let v16 = if shift >= 0 { v >> shift } else { v << -shift };
                        push(v16, &mut found, &mut acc, &mut mono)
                    }
                    Err(_) => break,
                }
            }
        }
        (hound::SampleFormat::Float, 32) => {
            for s in reader.samples::<f32>() {
                match s {
                    Ok(v) => {
                        push(voxpipe_core::audio::pcm::f32_to_i16(v) as i32, &mut found, &mut acc, &mut mono)
                    }
                    Err(_) => break,
                }
            }
        }
        (fmt, bits) => return Err(bad(format!("{bits}-bit {fmt:?} samples are not supported"))),
    }
    if found < declared {
        return Err(Error::TruncatedWav { path: path.to_path_buf(), declared, found });
    }
    if spec.sample_rate == 0 {
        return Err(bad("sample rate is 0".into()));
    }
    match target {
        Some(to) if to != spec.sample_rate => Ok((resample_all(&mono, spec.sample_rate, to)?, to)),
        _ => Ok((mono, spec.sample_rate)),
    }
}

/// Sends a WAV file as 20 ms chunks paced on the call clock (real time; on a paused tokio
/// clock, as fast as the pipeline can take it).
#[derive(Debug)]
pub struct WavSource {
    samples: Samples,
    rate: SampleRate,
    presses: Vec<[u64; 2]>,
}

impl WavSource {
    /// Reads and decodes the file up front, so format errors surface before the call starts.
    pub fn open(config: &WavInputConfig) -> Result<Self, Error> {
        let (mut samples, rate) = read_wav(&config.path, config.sample_rate)?;
        samples.resize(samples.len() + samples_for_ms(rate, config.tail_silence_ms), 0);
        Ok(Self { samples: Samples::from_vec(samples), rate, presses: config.push_to_talk.clone() })
    }

    /// A source over samples already in memory.
    pub fn from_samples(samples: Vec<i16>, rate: SampleRate) -> Self {
        Self { samples: Samples::from_vec(samples), rate, presses: Vec::new() }
    }

    /// Duration of the input, including the appended silence.
    pub fn duration(&self) -> Duration {
        duration_of(self.samples.len(), self.rate)
    }
}

#[async_trait]
impl Source for WavSource {
    fn name(&self) -> &str {
        "wav input"
    }

    async fn run(self: Box<Self>, ctx: CallContext, out: Outbox) -> Result<(), StageError> {
        // Recorded button presses go on the control bus when their time comes, stamped with
        // their place on the input timeline.
        let presses = (!self.presses.is_empty()).then(|| {
            let (ctx, presses) = (ctx.clone(), self.presses.clone());
            tokio::spawn(async move {
                for [down, up] in presses {
                    for (ms, press) in [(down, true), (up, false)] {
                        let at = Duration::from_millis(ms);
                        tokio::time::sleep_until(ctx.clock.at(at)).await;
                        ctx.control.send(if press {
                            Control::UserTurnStart { at: Some(at) }
                        } else {
                            Control::UserTurnEnd { at: Some(at) }
                        });
                    }
                }
            })
        });
        send_paced(&ctx, &out, &self.samples, self.rate).await;
        if let Some(p) = presses {
            p.abort();
        }
        let _ = out.send(Frame::EndOfStream).await;
        Ok(())
    }
}

/// Sends `samples` in 20 ms chunks, each when its media time comes on the call clock.
pub(crate) async fn send_paced(ctx: &CallContext, out: &Outbox, samples: &Samples, rate: SampleRate) {
    let per = samples_for_ms(rate, CHUNK_MS);
    for (i, chunk) in samples.chunks(per).enumerate() {
        let pts = duration_of(i * per, rate);
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return,
            () = tokio::time::sleep_until(ctx.clock.at(pts)) => {}
        }
        let frame = Frame::InputAudio(AudioChunk::new(rate, pts, chunk));
        let sent = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return,
            r = out.send(frame) => r,
        };
        if sent.is_err() {
            return;
        }
    }
}

fn default_output_rate() -> SampleRate {
    24_000
}

/// `[output] kind = "wav"`: the assistant's audio on the conversation timeline.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WavOutputConfig {
    /// The file to write (parent directories are created).
    pub path: PathBuf,
    /// Output rate (Hz). Default 24000.
    #[serde(default = "default_output_rate")]
    pub sample_rate: SampleRate,
}

/// Writes assistant audio to a 16-bit mono WAV, silence where the assistant is quiet, so the
/// file lines up sample for sample with the caller's input.
#[derive(Debug)]
pub struct WavSink {
    config: WavOutputConfig,
}

impl WavSink {
    /// A sink writing to `config.path` (created when the call starts).
    pub fn new(config: WavOutputConfig) -> Self {
        Self { config }
    }
}

struct WavOut {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<std::fs::File>>>,
}

impl WavOut {
    fn err(&self, e: hound::Error) -> Error {
        let source = match e {
            hound::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        };
        Error::Write { path: self.path.clone(), source }
    }
}

#[async_trait]
impl AudioOut for WavOut {
    async fn write(&mut self, samples: &[i16]) -> Result<(), Error> {
        let Some(w) = self.writer.as_mut() else { return Ok(()) };
        // Buffered writes of 20 ms blocks: microseconds, done inline on purpose (see jsonl.rs).
        let mut w16 = w.get_i16_writer(samples.len() as u32);
        for &s in samples {
            w16.write_sample(s);
        }
        w16.flush().map_err(|e| self.err(e))
    }

    async fn flush(&mut self) -> Result<(), Error> {
        match self.writer.as_mut() {
            Some(w) => w.flush().map_err(|e| self.err(e)),
            None => Ok(()),
        }
    }

    async fn finish(&mut self) -> Result<(), Error> {
        match self.writer.take() {
            Some(w) => w.finalize().map_err(|e| self.err(e)),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Sink for WavSink {
    fn name(&self) -> &str {
        "wav output"
    }

    async fn run(self: Box<Self>, ctx: CallContext, input: Inbox) -> Result<(), StageError> {
        let path = self.config.path.clone();
        let fail = |e: Error| StageError::new("wav output", e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| fail(Error::Write { path: path.clone(), source }))?;
        }
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: self.config.sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(&path, spec).map_err(|e| {
            fail(Error::Write { path: path.clone(), source: std::io::Error::other(e.to_string()) })
        })?;
        let mut out = WavOut { path, writer: Some(writer) };
        run_playout("wav output", ctx, input, self.config.sample_rate, &mut out).await
    }
}
