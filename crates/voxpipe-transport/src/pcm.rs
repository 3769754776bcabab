//! Raw PCM16 LE mono on stdin (the caller) and stdout (the assistant), for piping voxpipe into
//! other programs: `sox -d -t raw -r 16000 -e signed -b 16 -c 1 - | voxpipe run … | play …`.

use crate::Error;
use crate::playout::{AudioOut, run_playout};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use voxpipe_core::audio::pcm::Pcm16Decoder;
use voxpipe_core::audio::{CHUNK_MS, SampleRate, duration_of, samples_for_ms};
use voxpipe_core::{AudioChunk, CallContext, Frame, Inbox, Outbox, Samples, Sink, Source, StageError};

/// `[input] kind = "stdin"`: raw PCM16 LE mono at `sample_rate`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Rate of the incoming samples (Hz).
    pub sample_rate: SampleRate,
}

/// `[output] kind = "stdout"`: raw PCM16 LE mono at `sample_rate`, played on the call clock.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// Output rate (Hz). Default 24000.
    #[serde(default = "default_rate")]
    pub sample_rate: SampleRate,
}

fn default_rate() -> SampleRate {
    24_000
}

/// Reads the caller's audio from stdin in 20 ms chunks, as it arrives (a live pipe is already
/// paced by its producer).
#[derive(Debug)]
pub struct StdinSource {
    rate: SampleRate,
}

impl StdinSource {
    /// A source at `config.sample_rate`.
    pub fn new(config: &StdinConfig) -> Self {
        Self { rate: config.sample_rate }
    }
}

#[async_trait]
impl Source for StdinSource {
    fn name(&self) -> &str {
        "stdin input"
    }

    async fn run(self: Box<Self>, ctx: CallContext, out: Outbox) -> Result<(), StageError> {
        let mut stdin = tokio::io::stdin();
        let per = samples_for_ms(self.rate, CHUNK_MS);
        let mut buf = vec![0u8; per * 2];
        let mut decoder = Pcm16Decoder::default();
        let mut sent = 0usize;
        loop {
            let n = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Ok(()),
                r = stdin.read(&mut buf) => r.map_err(|e| StageError::new("stdin input", Error::Stdio(e)))?,
            };
            if n == 0 {
                break;
            }
            // One allocation per read: the chunk is shared downstream without copies.
            let mut samples = Vec::with_capacity(n / 2 + 1);
            decoder.push(&buf[..n], &mut samples);
            if samples.is_empty() {
                continue;
            }
            let pts = duration_of(sent, self.rate);
            sent += samples.len();
            if out
                .send(Frame::InputAudio(AudioChunk::new(self.rate, pts, Samples::from_vec(samples))))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        let _ = out.send(Frame::EndOfStream).await;
        Ok(())
    }
}

/// Plays the assistant's audio to stdout on the call clock.
#[derive(Debug)]
pub struct StdoutSink {
    rate: SampleRate,
}

impl StdoutSink {
    /// A sink at `config.sample_rate`.
    pub fn new(config: &StdoutConfig) -> Self {
        Self { rate: config.sample_rate }
    }
}

struct StdoutOut {
    out: tokio::io::Stdout,
    bytes: Vec<u8>,
}

#[async_trait]
impl AudioOut for StdoutOut {
    async fn write(&mut self, samples: &[i16]) -> Result<(), Error> {
        self.bytes.clear();
        voxpipe_core::audio::pcm::encode_pcm16le(samples, &mut self.bytes);
        self.out.write_all(&self.bytes).await.map_err(Error::Stdio)
    }
    async fn flush(&mut self) -> Result<(), Error> {
        self.out.flush().await.map_err(Error::Stdio)
    }
    async fn finish(&mut self) -> Result<(), Error> {
        self.out.flush().await.map_err(Error::Stdio)
    }
}

#[async_trait]
impl Sink for StdoutSink {
    fn name(&self) -> &str {
        "stdout output"
    }

    async fn run(self: Box<Self>, ctx: CallContext, input: Inbox) -> Result<(), StageError> {
        let mut out = StdoutOut { out: tokio::io::stdout(), bytes: Vec::with_capacity(4096) };
        run_playout("stdout output", ctx, input, self.rate, &mut out).await
    }
}
