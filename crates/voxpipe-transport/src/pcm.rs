//! Raw mono audio on stdin (the caller) and stdout (the assistant), for piping voxpipe into
//! other programs: `sox -d -t raw -r 16000 -e signed -b 16 -c 1 - | voxpipe run … | play …`.
//! PCM16 LE by default; G.711 μ-law or A-law for telephone bridges (`encoding`).

use crate::Error;
use crate::playout::{AudioOut, run_playout};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use voxpipe_core::audio::g711;
use voxpipe_core::audio::pcm::Pcm16Decoder;
use voxpipe_core::audio::{CHUNK_MS, SampleRate, duration_of, samples_for_ms};
use voxpipe_core::{AudioChunk, CallContext, Frame, Inbox, Outbox, Samples, Sink, Source, StageError};

/// How raw audio bytes on stdin or stdout are coded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Encoding {
    /// 16-bit signed little-endian PCM.
    #[default]
    #[serde(rename = "pcm16")]
    Pcm16,
    /// G.711 μ-law, one byte per sample (North American and Japanese telephony).
    #[serde(rename = "mulaw", alias = "ulaw")]
    Mulaw,
    /// G.711 A-law, one byte per sample (European telephony).
    #[serde(rename = "alaw")]
    Alaw,
}

impl Encoding {
    fn bytes_per_sample(self) -> usize {
        match self {
            Encoding::Pcm16 => 2,
            Encoding::Mulaw | Encoding::Alaw => 1,
        }
    }

    fn is_default(&self) -> bool {
        *self == Encoding::Pcm16
    }
}

/// `[input] kind = "stdin"`: raw mono audio at `sample_rate`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Rate of the incoming samples (Hz).
    pub sample_rate: SampleRate,
    /// `pcm16` (LE), `mulaw` or `alaw`. Default `pcm16`.
    #[serde(default, skip_serializing_if = "Encoding::is_default")]
    pub encoding: Encoding,
}

/// `[output] kind = "stdout"`: raw mono audio at `sample_rate`, played on the call clock.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// Output rate (Hz). Default 24000.
    #[serde(default = "default_rate")]
    pub sample_rate: SampleRate,
    /// `pcm16` (LE), `mulaw` or `alaw`. Default `pcm16`.
    #[serde(default, skip_serializing_if = "Encoding::is_default")]
    pub encoding: Encoding,
}

fn default_rate() -> SampleRate {
    24_000
}

/// Reads the caller's audio from stdin in 20 ms chunks, as it arrives (a live pipe is already
/// paced by its producer).
#[derive(Debug)]
pub struct StdinSource {
    rate: SampleRate,
    encoding: Encoding,
}

impl StdinSource {
    /// A source at `config.sample_rate`, decoding `config.encoding`.
    pub fn new(config: &StdinConfig) -> Self {
        Self { rate: config.sample_rate, encoding: config.encoding }
    }
}

#[async_trait]
impl Source for StdinSource {
    fn name(&self) -> &str {
        "stdin input"
    }

    async fn run(self: Box<Self>, ctx: CallContext, out: Outbox) -> Result<(), StageError> {
        read_audio(tokio::io::stdin(), self.rate, self.encoding, &ctx, &out)
            .await
            .map_err(|e| StageError::new("stdin input", Error::Stdio(e)))?;
        let _ = out.send(Frame::EndOfStream).await;
        Ok(())
    }
}

/// Sends what `reader` gives, decoded, as input audio until it ends (or the call does).
async fn read_audio(
    mut reader: impl AsyncRead + Unpin,
    rate: SampleRate,
    encoding: Encoding,
    ctx: &CallContext,
    out: &Outbox,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; samples_for_ms(rate, CHUNK_MS) * encoding.bytes_per_sample()];
    let mut decoder = Pcm16Decoder::default();
    let mut sent = 0usize;
    loop {
        let n = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Ok(()),
            r = reader.read(&mut buf) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        // One allocation per read: the chunk is shared downstream without copies.
        let mut samples = Vec::with_capacity(n / encoding.bytes_per_sample() + 1);
        match encoding {
            Encoding::Pcm16 => decoder.push(&buf[..n], &mut samples),
            Encoding::Mulaw => g711::decode_ulaw(&buf[..n], &mut samples),
            Encoding::Alaw => g711::decode_alaw(&buf[..n], &mut samples),
        }
        if samples.is_empty() {
            continue;
        }
        let pts = duration_of(sent, rate);
        sent += samples.len();
        if out.send(Frame::InputAudio(AudioChunk::new(rate, pts, Samples::from_vec(samples)))).await.is_err()
        {
            return Ok(());
        }
    }
}

/// Plays the assistant's audio to stdout on the call clock.
#[derive(Debug)]
pub struct StdoutSink {
    rate: SampleRate,
    encoding: Encoding,
}

impl StdoutSink {
    /// A sink at `config.sample_rate`, coding `config.encoding`.
    pub fn new(config: &StdoutConfig) -> Self {
        Self { rate: config.sample_rate, encoding: config.encoding }
    }
}

/// Coded audio to a byte stream; one buffer reused for every write.
struct RawOut<W> {
    out: W,
    encoding: Encoding,
    bytes: Vec<u8>,
}

#[async_trait]
impl<W: AsyncWrite + Unpin + Send> AudioOut for RawOut<W> {
    async fn write(&mut self, samples: &[i16]) -> Result<(), Error> {
        match self.encoding {
            Encoding::Pcm16 => {
                self.bytes.clear();
                voxpipe_core::audio::pcm::encode_pcm16le(samples, &mut self.bytes);
            }
            Encoding::Mulaw => g711::encode_ulaw(samples, &mut self.bytes),
            Encoding::Alaw => g711::encode_alaw(samples, &mut self.bytes),
        }
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
        let mut out =
            RawOut { out: tokio::io::stdout(), encoding: self.encoding, bytes: Vec::with_capacity(4096) };
        run_playout("stdout output", ctx, input, self.rate, &mut out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxpipe_core::audio::g711::{encode_alaw, encode_ulaw, ulaw_to_linear};

    fn call_context() -> CallContext {
        CallContext::new(std::sync::Arc::new(voxpipe_core::NoTools)).0
    }

    fn tone(n: usize) -> Vec<i16> {
        (0..n).map(|i| ((i as f32 * 0.3).sin() * 9000.0) as i16).collect()
    }

    #[tokio::test]
    async fn mu_law_bytes_in_become_input_audio_on_a_continuous_timeline() {
        let mut bytes = Vec::new();
        encode_ulaw(&tone(8000), &mut bytes);
        let (tx, mut rx) = voxpipe_core::channel();
        let ctx = call_context();
        let reading = async {
            read_audio(&bytes[..], 8000, Encoding::Mulaw, &ctx, &tx).await.unwrap();
            drop(tx);
        };
        let receiving = async {
            let mut got = Vec::new();
            while let Some(Frame::InputAudio(chunk)) = rx.recv().await {
                assert_eq!(chunk.sample_rate, 8000);
                assert_eq!(chunk.pts, duration_of(got.len(), 8000), "chunks follow each other");
                got.extend_from_slice(&chunk.samples);
            }
            got
        };
        let ((), got) = tokio::join!(reading, receiving);
        let expected: Vec<i16> = bytes.iter().map(|&b| ulaw_to_linear(b)).collect();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn each_encoding_is_written_as_its_bytes() {
        let samples = tone(160);
        let coded = |f: fn(&[i16], &mut Vec<u8>)| {
            let mut b = Vec::new();
            f(&samples, &mut b);
            b
        };
        for (encoding, expected) in [
            (Encoding::Pcm16, samples.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>()),
            (Encoding::Mulaw, coded(encode_ulaw)),
            (Encoding::Alaw, coded(encode_alaw)),
        ] {
            let mut out = RawOut { out: Vec::new(), encoding, bytes: Vec::new() };
            out.write(&samples[..80]).await.unwrap();
            out.write(&samples[80..]).await.unwrap();
            assert_eq!(out.out, expected, "{encoding:?}");
        }
    }

    #[test]
    fn the_encoding_key_takes_pcm16_mulaw_ulaw_and_alaw() {
        let parse = |json: &str| serde_json::from_str::<StdinConfig>(json);
        assert_eq!(parse(r#"{"sample_rate":8000}"#).unwrap().encoding, Encoding::Pcm16);
        assert_eq!(parse(r#"{"sample_rate":8000,"encoding":"ulaw"}"#).unwrap().encoding, Encoding::Mulaw);
        assert_eq!(parse(r#"{"sample_rate":8000,"encoding":"alaw"}"#).unwrap().encoding, Encoding::Alaw);
        let e = parse(r#"{"sample_rate":8000,"encoding":"opus"}"#).unwrap_err().to_string();
        assert!(
            e.contains("unknown variant `opus`, expected one of `pcm16`, `mulaw`, `ulaw`, `alaw`"),
            "{e}"
        );
        let out = StdoutConfig { sample_rate: 8000, encoding: Encoding::Mulaw };
        assert_eq!(serde_json::to_string(&out).unwrap(), r#"{"sample_rate":8000,"encoding":"mulaw"}"#);
    }
}
