//! The fakes' energy VAD: 20 ms windows on the input-audio timeline, with prefix padding and
//! a silence hangover taken from the session (OpenAI Realtime's `turn_detection`, Gemini
//! Live's `automaticActivityDetection`), through [`Endpointing`].

use voxpipe_core::audio::{CHUNK_MS, SampleRate, rms_dbfs, samples_for_ms};

use crate::realtime::VadConfig;
use crate::realtime::session::TurnDetection;

/// The session settings the VAD reads.
pub(crate) trait Endpointing {
    /// Sensitivity from 0 to 1: at 0.5 a window must exceed [`VadConfig::threshold_dbfs`],
    /// and each unit above shifts that by 40 dB.
    fn threshold(&self) -> f64;
    /// Audio counted into the turn before the speech onset, in ms.
    fn prefix_padding_ms(&self) -> u64;
    /// Silence that ends the turn, in ms.
    fn silence_duration_ms(&self) -> u64;
}

impl Endpointing for TurnDetection {
    fn threshold(&self) -> f64 {
        self.threshold
    }
    fn prefix_padding_ms(&self) -> u64 {
        self.prefix_padding_ms
    }
    fn silence_duration_ms(&self) -> u64 {
        self.silence_duration_ms
    }
}

/// What the VAD saw in the audio just pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VadEvent {
    /// Speech began; `audio_start_ms` includes the prefix padding.
    Started { audio_start_ms: u64 },
    /// Speech ended; `audio_end_ms` includes the silence that ended it.
    Stopped { audio_end_ms: u64 },
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for speech: `run` consecutive loud windows, the first starting at `run_start_ms`.
    Idle { run: u32, run_start_ms: u64 },
    /// In speech: `silence_ms` of quiet windows since the last loud one.
    Speaking { silence_ms: u64 },
}

/// Energy VAD over the input timeline (ms of audio appended since the session began).
#[derive(Debug)]
pub(crate) struct Vad {
    carry: Vec<i16>,
    rate: SampleRate,
    /// Timeline position of the next whole window, in ms.
    pos_ms: u64,
    /// Earliest position a turn may start at (the last commit or clear).
    floor_ms: u64,
    state: State,
}

impl Vad {
    pub(crate) fn new() -> Self {
        Self {
            carry: Vec::new(),
            rate: 24_000,
            pos_ms: 0,
            floor_ms: 0,
            state: State::Idle { run: 0, run_start_ms: 0 },
        }
    }

    /// True while the VAD is inside a speech segment.
    pub(crate) fn speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// Forgets any turn in progress; a new turn can start no earlier than `at_ms`.
    pub(crate) fn reset(&mut self, at_ms: u64) {
        self.floor_ms = at_ms.max(self.pos_ms);
        self.state = State::Idle { run: 0, run_start_ms: 0 };
    }

    /// Feeds samples at `rate` and appends what happened to `events`.
    pub(crate) fn push(
        &mut self,
        samples: &[i16],
        rate: SampleRate,
        turn: &impl Endpointing,
        cfg: &VadConfig,
        events: &mut Vec<VadEvent>,
    ) {
        if rate != self.rate {
            self.carry.clear();
            self.rate = rate;
        }
        let window = samples_for_ms(rate, CHUNK_MS);
        let threshold = cfg.threshold_dbfs + ((turn.threshold() - 0.5) * 40.0) as f32;
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (window - self.carry.len()).min(rest.len());
            self.carry.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.carry.len() == window {
                let loud = rms_dbfs(&self.carry) > threshold;
                self.carry.clear();
                self.window(loud, turn, cfg, events);
            }
        }
    }

    fn window(&mut self, loud: bool, turn: &impl Endpointing, cfg: &VadConfig, events: &mut Vec<VadEvent>) {
        let start = self.pos_ms;
        self.pos_ms += CHUNK_MS;
        self.state = match self.state {
            State::Idle { run, run_start_ms } if loud => {
                let run_start_ms = if run == 0 { start } else { run_start_ms };
                if run + 1 >= cfg.min_speech_windows.max(1) {
                    let audio_start_ms =
                        run_start_ms.saturating_sub(turn.prefix_padding_ms()).max(self.floor_ms);
                    events.push(VadEvent::Started { audio_start_ms });
                    State::Speaking { silence_ms: 0 }
                } else {
                    State::Idle { run: run + 1, run_start_ms }
                }
            }
            State::Idle { .. } => State::Idle { run: 0, run_start_ms: 0 },
            State::Speaking { .. } if loud => State::Speaking { silence_ms: 0 },
            State::Speaking { silence_ms } => {
                let silence_ms = silence_ms + CHUNK_MS;
                if silence_ms >= turn.silence_duration_ms() {
                    events.push(VadEvent::Stopped { audio_end_ms: self.pos_ms });
                    self.floor_ms = self.pos_ms;
                    State::Idle { run: 0, run_start_ms: 0 }
                } else {
                    State::Speaking { silence_ms }
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn() -> TurnDetection {
        TurnDetection {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 200,
            create_response: true,
            interrupt_response: true,
        }
    }

    #[test]
    fn speech_between_silences_gives_padded_start_and_hangover_end() {
        let mut vad = Vad::new();
        let mut ev = Vec::new();
        let loud: Vec<i16> = (0..240).map(|i| if i % 2 == 0 { 10_000 } else { -10_000 }).collect();
        let quiet = vec![0i16; 240];
        // 1 s silence, 0.5 s loud, 1 s silence, in 10 ms pushes (half windows).
        for _ in 0..100 {
            vad.push(&quiet, 24_000, &turn(), &VadConfig::default(), &mut ev);
        }
        for _ in 0..50 {
            vad.push(&loud, 24_000, &turn(), &VadConfig::default(), &mut ev);
        }
        for _ in 0..100 {
            vad.push(&quiet, 24_000, &turn(), &VadConfig::default(), &mut ev);
        }
        assert_eq!(
            ev,
            vec![VadEvent::Started { audio_start_ms: 700 }, VadEvent::Stopped { audio_end_ms: 1700 }]
        );
    }
}
