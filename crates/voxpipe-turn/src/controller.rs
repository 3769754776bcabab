//! The local turn controller: a stage that sits right after the source, runs the VAD on the
//! caller's audio, puts `SpeechStarted`/`SpeechStopped` on the data path at the decided
//! moments, and interrupts the assistant when the caller talks over it.

use crate::config::TurnConfig;
use crate::vad::Vad;
use async_trait::async_trait;
use std::time::Duration;
use tracing::{debug, warn};
use voxpipe_core::audio::{StreamResampler, duration_of};
use voxpipe_core::{CallContext, EventKind, Frame, Inbox, InterruptReason, Outbox, Stage, StageError};

const NAME: &str = "turn";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Quiet,
    Speaking,
}

/// The local turn controller stage.
pub struct TurnController {
    config: TurnConfig,
    vad: Box<dyn Vad>,
}

impl std::fmt::Debug for TurnController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnController").field("config", &self.config).finish()
    }
}

impl TurnController {
    /// A controller using `vad`.
    pub fn new(config: TurnConfig, vad: Box<dyn Vad>) -> Self {
        Self { config, vad }
    }
}

/// The controller's decisions, separate from I/O so they can be unit-tested frame by frame.
#[derive(Debug)]
struct Detector {
    state: State,
    threshold: f32,
    release: f32,
    min_speech: Duration,
    min_silence: Duration,
    speech_run: Duration,
    silence_run: Duration,
    onset: Duration,
    last_speech_end: Duration,
}

/// What a frame decided.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    None,
    Started { onset: Duration },
    Stopped { end: Duration },
}

impl Detector {
    fn new(c: &TurnConfig) -> Self {
        Self {
            state: State::Quiet,
            threshold: c.threshold,
            // Hysteresis: speech must fall clearly below the threshold to count as silence.
            release: (c.threshold - 0.15).max(0.05),
            min_speech: Duration::from_millis(c.min_speech_ms as u64),
            min_silence: Duration::from_millis(c.min_silence_ms as u64),
            speech_run: Duration::ZERO,
            silence_run: Duration::ZERO,
            onset: Duration::ZERO,
            last_speech_end: Duration::ZERO,
        }
    }

    /// Feeds one VAD frame that starts at `start` and lasts `len`.
    fn step(&mut self, p: f32, start: Duration, len: Duration) -> Decision {
        match self.state {
            State::Quiet => {
                if p >= self.threshold {
                    if self.speech_run.is_zero() {
                        self.onset = start;
                    }
                    self.speech_run += len;
                    if self.speech_run >= self.min_speech {
                        self.state = State::Speaking;
                        self.silence_run = Duration::ZERO;
                        self.last_speech_end = start + len;
                        return Decision::Started { onset: self.onset };
                    }
                } else {
                    self.speech_run = Duration::ZERO;
                }
            }
            State::Speaking => {
                if p < self.release {
                    self.silence_run += len;
                    if self.silence_run >= self.min_silence {
                        self.state = State::Quiet;
                        self.speech_run = Duration::ZERO;
                        return Decision::Stopped { end: self.last_speech_end };
                    }
                } else {
                    self.silence_run = Duration::ZERO;
                    self.last_speech_end = start + len;
                }
            }
        }
        Decision::None
    }

    /// How long the caller has been speaking in the current turn.
    fn speaking_for(&self, now: Duration) -> Duration {
        if self.state == State::Speaking { now.saturating_sub(self.onset) } else { Duration::ZERO }
    }
}

#[async_trait]
impl Stage for TurnController {
    fn name(&self) -> &str {
        NAME
    }

    async fn run(
        mut self: Box<Self>,
        ctx: CallContext,
        mut input: Inbox,
        out: Outbox,
    ) -> Result<(), StageError> {
        let rate = self.vad.sample_rate();
        let frame = self.vad.frame_samples();
        let frame_len = duration_of(frame, rate);
        let mut det = Detector::new(&self.config);
        let mut resampler: Option<StreamResampler> = None;
        let mut buf: Vec<i16> = Vec::with_capacity(frame * 4);
        let mut processed: usize = 0;
        let mut interrupted_this_turn = false;
        let mut turn: u32 = 0;
        let interrupt_after = Duration::from_millis(self.config.interruption.min_speech_ms as u64);
        loop {
            let frame_in = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Ok(()),
                f = input.recv() => f,
            };
            let Some(f) = frame_in else { return Ok(()) };
            match f {
                Frame::InputAudio(chunk) => {
                    let r = match &mut resampler {
                        Some(r) if r.from_rate() == chunk.sample_rate => r,
                        r => r.insert(
                            StreamResampler::new(chunk.sample_rate, rate)
                                .map_err(|e| StageError::new(NAME, e))?,
                        ),
                    };
                    r.push(&chunk.samples, &mut buf).map_err(|e| StageError::new(NAME, e))?;
                    if out.send(Frame::InputAudio(chunk)).await.is_err() {
                        return Ok(());
                    }
                    let mut offset = 0;
                    while buf.len() - offset >= frame {
                        let start = duration_of(processed, rate);
                        let p = match self.vad.process(&buf[offset..offset + frame]) {
                            Ok(p) => p,
                            Err(e) => {
                                warn!(error = %e, "VAD failed on a frame; treating it as silence");
                                0.0
                            }
                        };
                        offset += frame;
                        processed += frame;
                        match det.step(p, start, frame_len) {
                            Decision::Started { onset } => {
                                debug!(?onset, "caller started speaking");
                                interrupted_this_turn = false;
                                if out.send(Frame::SpeechStarted { at: onset }).await.is_err() {
                                    return Ok(());
                                }
                            }
                            Decision::Stopped { end } => {
                                turn += 1;
                                debug!(?end, turn, "end of turn");
                                ctx.events
                                    .emit(EventKind::Metric {
                                        name: "end_of_turn_delay_ms".into(),
                                        turn,
                                        value_ms: (start + frame_len).saturating_sub(end).as_millis() as u64,
                                    })
                                    .await;
                                if out.send(Frame::SpeechStopped { at: end }).await.is_err() {
                                    return Ok(());
                                }
                            }
                            Decision::None => {}
                        }
                        let now = start + frame_len;
                        if self.config.interruption.enabled
                            && !interrupted_this_turn
                            && det.speaking_for(now) >= interrupt_after
                            && ctx.playout.is_audible()
                        {
                            interrupted_this_turn = true;
                            ctx.interrupt(InterruptReason::BargeIn, Some(det.onset)).await;
                        }
                    }
                    buf.drain(..offset);
                }
                Frame::EndOfStream => {
                    if det.state == State::Speaking {
                        let _ = out.send(Frame::SpeechStopped { at: det.last_speech_end }).await;
                    }
                    let _ = out.send(Frame::EndOfStream).await;
                    return Ok(());
                }
                other => {
                    if out.send(other).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn a_turn_starts_after_min_speech_and_ends_after_min_silence() {
        let mut d = Detector::new(&TurnConfig::default());
        let f = ms(20);
        let mut t = Duration::ZERO;
        let mut decisions = Vec::new();
        // 200 ms silence, 1 s speech, 700 ms silence.
        for (p, n) in [(0.0, 10), (0.9, 50), (0.0, 35)] {
            for _ in 0..n {
                let d = d.step(p, t, f);
                if d != Decision::None {
                    decisions.push((t, d));
                }
                t += f;
            }
        }
        assert_eq!(
            decisions[0],
            (ms(340), Decision::Started { onset: ms(200) }),
            "150 ms of speech confirm the onset"
        );
        assert_eq!(
            decisions[1],
            (ms(1680), Decision::Stopped { end: ms(1200) }),
            "500 ms of silence end the turn"
        );
        assert_eq!(decisions.len(), 2);
    }

    #[test]
    fn short_blips_and_short_pauses_are_ignored() {
        let mut d = Detector::new(&TurnConfig::default());
        let f = ms(20);
        let mut t = Duration::ZERO;
        let mut n_decisions = 0;
        for (p, n) in [(0.9, 5), (0.0, 10), (0.9, 20), (0.1, 10), (0.9, 20)] {
            for _ in 0..n {
                if d.step(p, t, f) != Decision::None {
                    n_decisions += 1;
                }
                t += f;
            }
        }
        assert_eq!(n_decisions, 1, "a 100 ms blip starts nothing; a 200 ms pause ends nothing");
    }
}
