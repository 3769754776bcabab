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

/// The highest sample rate a WAV file may declare: 768 kHz, above any recording format in use.
/// The header's rate is whatever the file says, and converting from a rate near `u32::MAX` makes
/// the FFT resampler allocate tens of gigabytes (found by the `fuzz_wav_reader` target).
pub const MAX_SAMPLE_RATE: u32 = 768_000;

fn default_tail_silence_ms() -> u64 {
    1500
}

/// `[input] kind = "wav"`: the caller's audio from a WAV file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WavInputConfig {
    /// The file: PCM (8/16/24/32-bit integer or 32-bit float) or G.711 μ-law/A-law, any
    /// channel count, any rate.
    pub path: PathBuf,
    /// The caller's channel of a multi-channel recording, counting from 0 (a contact centre's
    /// stereo recording usually has the caller on one side and the agent on the other).
    /// Default: all channels mixed down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<u16>,
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

/// Reads a whole WAV file as mono PCM16 at its own rate (or `target` rate), all channels
/// mixed down.
pub fn read_wav(path: &Path, target: Option<SampleRate>) -> Result<(Vec<i16>, SampleRate), Error> {
    read_wav_channel(path, None, target)
}

/// Reads a whole WAV file as mono PCM16 at its own rate (or `target` rate): one channel
/// (`Some(0)` is the first, the left of a stereo file), or all channels mixed down (`None`).
///
/// Reads PCM (8/16/24/32-bit integer), 32-bit float, and G.711 μ-law and A-law, the usual
/// encoding of telephone call recordings.
pub fn read_wav_channel(
    path: &Path,
    channel: Option<u16>,
    target: Option<SampleRate>,
) -> Result<(Vec<i16>, SampleRate), Error> {
    let bad = |reason: String| Error::BadWav { path: path.to_path_buf(), reason };
    let file =
        std::fs::File::open(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    // Samples the file can hold at most, whatever its header claims (sizes the buffer).
    let room = file.metadata().map_or(0, |m| m.len());
    let mut reader = match hound::WavReader::new(std::io::BufReader::new(file)) {
        Ok(r) => r,
        // hound declines G.711 (and every other coded format): read it here, or name it.
        Err(hound::Error::Unsupported) => return read_g711(path, channel, target),
        Err(hound::Error::IoError(source)) => return Err(Error::Read { path: path.to_path_buf(), source }),
        Err(other) => return Err(bad(other.to_string())),
    };
    let spec = reader.spec();
    let declared = reader.len() as u64;
    let mut mono = Downmix::new(path, spec.channels, channel, declared.min(room))?;
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let shift = bits as i32 - 16;
            for v in reader.samples::<i32>().map_while(Result::ok) {
                mono.push(if shift >= 0 { v >> shift } else { v << -shift });
            }
        }
        (hound::SampleFormat::Float, 32) => {
            for v in reader.samples::<f32>().map_while(Result::ok) {
                mono.push(voxpipe_core::audio::pcm::f32_to_i16(v) as i32);
            }
        }
        (fmt, bits) => return Err(bad(format!("{bits}-bit {fmt:?} samples are not supported"))),
    }
    finish(path, mono, declared, spec.sample_rate, target)
}

/// A G.711 (μ-law or A-law) WAV file, which hound does not read.
fn read_g711(
    path: &Path,
    channel: Option<u16>,
    target: Option<SampleRate>,
) -> Result<(Vec<i16>, SampleRate), Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let wav = crate::riff::parse_g711(&bytes)
        .map_err(|reason| Error::BadWav { path: path.to_path_buf(), reason })?;
    let mut mono = Downmix::new(path, wav.channels, channel, wav.data.len() as u64)?;
    wav.samples().for_each(|s| mono.push(s as i32));
    finish(path, mono, wav.declared, wav.sample_rate, target)
}

fn finish(
    path: &Path,
    mono: Downmix,
    declared: u64,
    rate: SampleRate,
    target: Option<SampleRate>,
) -> Result<(Vec<i16>, SampleRate), Error> {
    if mono.found < declared {
        return Err(Error::TruncatedWav { path: path.to_path_buf(), declared, found: mono.found });
    }
    if rate == 0 {
        return Err(Error::BadWav { path: path.to_path_buf(), reason: "sample rate is 0".into() });
    }
    if rate > MAX_SAMPLE_RATE {
        let reason = format!("sample rate {rate} Hz is above the {MAX_SAMPLE_RATE} Hz this reader accepts");
        return Err(Error::BadWav { path: path.to_path_buf(), reason });
    }
    match target {
        Some(to) if to != rate => Ok((resample_all(&mono.out, rate, to)?, to)),
        _ => Ok((mono.out, rate)),
    }
}

/// Interleaved samples in, one mono sample per frame out: the chosen channel, or the mean.
struct Downmix {
    channels: u64,
    pick: Option<u64>,
    /// Interleaved samples seen.
    found: u64,
    acc: i32,
    out: Vec<i16>,
}

impl Downmix {
    /// `expected`: interleaved samples to make room for.
    fn new(path: &Path, channels: u16, pick: Option<u16>, expected: u64) -> Result<Self, Error> {
        let channels = channels.max(1);
        if let Some(channel) = pick.filter(|&c| c >= channels) {
            return Err(Error::NoSuchChannel { path: path.to_path_buf(), channel, channels });
        }
        let channels = channels as u64;
        let out = Vec::with_capacity((expected / channels) as usize);
        Ok(Self { channels, pick: pick.map(u64::from), found: 0, acc: 0, out })
    }

    fn push(&mut self, s: i32) {
        let at = self.found % self.channels;
        self.found += 1;
        match self.pick {
            Some(c) if c == at => self.out.push(s.clamp(i16::MIN as i32, i16::MAX as i32) as i16),
            Some(_) => {}
            None => {
                self.acc += s;
                if at + 1 == self.channels {
                    let mean = self.acc / self.channels as i32;
                    self.out.push(mean.clamp(i16::MIN as i32, i16::MAX as i32) as i16);
                    self.acc = 0;
                }
            }
        }
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
        let (mut samples, rate) = read_wav_channel(&config.path, config.channel, config.sample_rate)?;
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
