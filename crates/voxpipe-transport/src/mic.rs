//! The caller's audio from the default input device (feature `mic`; `voxpipe run --mic`).
//!
//! cpal's stream is not `Send`, so it lives on its own thread; its callback mixes each buffer
//! down to mono PCM16 and hands it over a channel. The source resamples to [`MIC_RATE`] and
//! sends 20 ms `InputAudio` chunks stamped with their place on the input timeline, until the
//! call is cancelled (Ctrl-C), then ends the stream.

use async_trait::async_trait;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use std::time::Duration;
use tokio::sync::mpsc;
use voxpipe_core::audio::{CHUNK_MS, StreamResampler};
use voxpipe_core::{AudioChunk, CallContext, Frame, Outbox, Source, StageError};

/// The rate the microphone's audio is resampled to (what the VADs and whisper want).
pub const MIC_RATE: u32 = 16_000;

/// Why the microphone could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum MicError {
    /// The audio host lists no input device.
    #[error(
        "--mic: no audio input device (audio host `{host}`): connect a microphone, or run the pipeline on a WAV file with --input"
    )]
    NoDevice {
        /// The cpal host.
        host: String,
    },
    /// The device exists but cannot be opened or configured.
    #[error(
        "--mic: cannot open the audio input device `{device}`: {message} (is a microphone connected? `arecord -l` lists capture devices)"
    )]
    Open {
        /// The device's name.
        device: String,
        /// What cpal said.
        message: String,
    },
}

/// The default input device, opened and capturing.
#[derive(Debug)]
pub struct MicSource {
    device: String,
    rate: u32,
    audio: mpsc::Receiver<Vec<i16>>,
    /// Dropping it stops the capture thread.
    _stop: std::sync::mpsc::Sender<()>,
}

impl MicSource {
    /// Opens the default input device of the default host and starts capturing.
    ///
    /// # Errors
    /// [`MicError::NoDevice`] when there is none, [`MicError::Open`] when it cannot be used.
    pub fn open() -> Result<Self, MicError> {
        let host = cpal::default_host();
        let device = host
            .default_input_device()
            .ok_or_else(|| MicError::NoDevice { host: host.id().name().into() })?;
        #[allow(deprecated)]
        let name = device.name().unwrap_or_else(|_| "default".into());
        let open_err = |message: String| MicError::Open { device: name.clone(), message };
        let config = device.default_input_config().map_err(|e| open_err(e.to_string()))?;
        let (tx, audio) = mpsc::channel::<Vec<i16>>(256);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel::<Result<(), String>>();
        let channels = usize::from(config.channels()).max(1);
        let rate = config.sample_rate().0;
        let format = config.sample_format();
        let stream_config: cpal::StreamConfig = config.into();
        std::thread::Builder::new()
            .name("mic".into())
            .spawn(move || {
                let on_error = |e: cpal::StreamError| tracing::warn!(error = %e, "microphone stream error");
                let built = match format {
                    cpal::SampleFormat::F32 => device.build_input_stream(
                        &stream_config,
                        move |data: &[f32], _: &_| {
                            let _ =
                                tx.try_send(mono(data, channels, |s| (s.clamp(-1.0, 1.0) * 32767.0) as i16));
                        },
                        on_error,
                        None,
                    ),
                    cpal::SampleFormat::I16 => device.build_input_stream(
                        &stream_config,
                        move |data: &[i16], _: &_| {
                            let _ = tx.try_send(mono(data, channels, |s| s));
                        },
                        on_error,
                        None,
                    ),
                    other => {
                        let _ = ready_tx.send(Err(format!("unsupported sample format {other}")));
                        return;
                    }
                };
                let stream = match built
                    .map_err(|e| e.to_string())
                    .and_then(|s| s.play().map(|()| s).map_err(|e| e.to_string()))
                {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                // Capture until the source is dropped.
                let _ = stopped.recv();
                drop(stream);
            })
            .map_err(|e| open_err(format!("cannot start the capture thread: {e}")))?;
        match ready.recv() {
            Ok(Ok(())) => Ok(Self { device: name, rate, audio, _stop: stop }),
            Ok(Err(message)) => Err(open_err(message)),
            Err(_) => Err(open_err("the capture thread stopped".into())),
        }
    }
}

/// Mixes interleaved `channels` down to mono PCM16.
fn mono<T: Copy>(data: &[T], channels: usize, to_i16: impl Fn(T) -> i16) -> Vec<i16> {
    data.chunks(channels)
        .map(|frame| {
            let sum: i32 = frame.iter().map(|&s| i32::from(to_i16(s))).sum();
            (sum / frame.len() as i32) as i16
        })
        .collect()
}

#[async_trait]
impl Source for MicSource {
    fn name(&self) -> &str {
        "microphone"
    }

    async fn run(mut self: Box<Self>, ctx: CallContext, out: Outbox) -> Result<(), StageError> {
        tracing::info!(device = %self.device, rate = self.rate, "listening on the microphone (Ctrl-C ends the call)");
        let mut resampler =
            StreamResampler::new(self.rate, MIC_RATE).map_err(|e| StageError::new("microphone", e))?;
        let per = (MIC_RATE as u64 * CHUNK_MS / 1000) as usize;
        let (mut pending, mut sent) = (Vec::new(), 0u64);
        loop {
            let buffer = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => break,
                b = self.audio.recv() => b,
            };
            let Some(buffer) = buffer else { break };
            resampler.push(&buffer, &mut pending).map_err(|e| StageError::new("microphone", e))?;
            while pending.len() >= per {
                let chunk: Vec<i16> = pending.drain(..per).collect();
                let pts = Duration::from_micros(sent * 1_000_000 / u64::from(MIC_RATE));
                sent += per as u64;
                if out.send(Frame::InputAudio(AudioChunk::new(MIC_RATE, pts, chunk.into()))).await.is_err() {
                    return Ok(());
                }
            }
        }
        let _ = out.send(Frame::EndOfStream).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without a microphone (CI, the build box) opening fails with an error that
    /// says so; where there is one, it opens and capture stops when the source is dropped.
    #[test]
    fn opening_the_default_microphone_succeeds_or_says_why_not() {
        match MicSource::open() {
            Ok(mic) => {
                eprintln!("a microphone is present ({}): the no-device error is not exercised", mic.device)
            }
            Err(e) => {
                let message = e.to_string();
                assert!(message.starts_with("--mic: "), "{message}");
                assert!(message.contains("audio input device"), "{message}");
                eprintln!("{message}");
            }
        }
    }

    #[test]
    fn stereo_is_mixed_down_to_mono() {
        assert_eq!(mono(&[100i16, 300, -50, 50], 2, |s| s), vec![200, 0]);
        assert_eq!(mono(&[1.0f32, 0.0], 2, |s| (s * 32767.0) as i16), vec![16383]);
    }
}
