//! The local turn controller: a stage that sits right after the source, runs the VAD on the
//! caller's audio, puts `SpeechStarted`/`SpeechStopped` on the data path at the decided
//! moments, and interrupts the assistant when the caller talks over it.
//!
//! Speech that starts while the assistant is audible is an *overlap*, and the false-interruption
//! guards apply: an onset inside the echo warm-up of a reply is ignored; otherwise playout is
//! held (`pause_on_uncertain`) while the controller decides. Without a transcript (native
//! pipelines, or `min_words = 0`) it decides on duration: `interruption.min_speech_ms` of speech
//! interrupts and the turn goes on as usual; speech that ends sooner resumes the held reply and
//! never reaches the model. With a transcript the [`TurnGate`](crate::TurnGate) after the ASR
//! decides on words.
//!
//! In `push_to_talk` mode the VAD is off: `Control::UserTurnStart`/`UserTurnEnd` delimit turns,
//! and a press while the assistant is audible interrupts it.

use crate::config::{PolicyKind, TurnConfig, TurnMode};
use crate::gate::TurnGate;
use crate::onsets::OnsetLine;
use crate::policy::Waits;
use crate::vad::CallVad;
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};
use voxpipe_core::audio::{StreamResampler, duration_of};
use voxpipe_core::{
    CallContext, Control, EventKind, Frame, Inbox, InterruptReason, Outbox, Stage, StageError,
};

const NAME: &str = "turn";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Quiet,
    Speaking,
}

/// The local turn controller stage.
pub struct TurnController {
    config: TurnConfig,
    vad: CallVad,
    /// The onset line to the gate, when there is one.
    gate: Option<Arc<OnsetLine>>,
    /// The gate judges overlaps on their words (otherwise this controller does, on duration).
    judge_words: bool,
    /// Silence that ends speech.
    silence: Silence,
}

/// How much silence ends the caller's speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Silence {
    /// For a turn (the gate waits out the rest of the end-of-turn wait).
    turn: Duration,
    /// For speech over the assistant and echo (judged as before `pause_ms` existed).
    overlap: Duration,
}

impl std::fmt::Debug for TurnController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnController").field("config", &self.config).finish()
    }
}

impl TurnController {
    /// A controller using `vad` that decides turns and interruptions on its own, from the
    /// audio: for pipelines without a transcript before the model (native), or with
    /// `min_words = 0`.
    pub fn new(config: TurnConfig, vad: impl Into<CallVad>) -> Self {
        let vad = vad.into();
        let s = Duration::from_millis(config.min_silence_ms as u64);
        Self { config, vad, gate: None, judge_words: false, silence: Silence { turn: s, overlap: s } }
    }

    /// A controller and the [`TurnGate`] that goes right after the ASR stage, for cascades:
    /// the gate applies the transcript policy for end of turn and the word guards for
    /// interruptions. With the `text` policy the controller ends a turn's *speech* after
    /// `pause_ms` of silence (at most the policy's shortest wait), so the ASR's final decode
    /// overlaps the rest of the wait, which the gate waits out; speech over the assistant ends
    /// after the policy's shortest wait.
    pub fn with_gate(config: TurnConfig, vad: impl Into<CallVad>) -> (Self, TurnGate) {
        let vad = vad.into();
        let waits = Waits::new(config.min_silence_ms, &config.end_of_turn);
        let silence = match config.end_of_turn.policy {
            PolicyKind::Text => Silence {
                turn: Duration::from_millis(config.pause_ms as u64).min(waits.complete),
                overlap: waits.complete,
            },
            PolicyKind::Silence => {
                let s = Duration::from_millis(config.min_silence_ms as u64);
                Silence { turn: s, overlap: s }
            }
        };
        let shared = Arc::new(OnsetLine::default());
        let gate = TurnGate::new(config.clone(), shared.clone());
        // Without a word threshold the words add nothing: decide overlaps on duration here.
        let judge_words = config.interruption.min_words > 0;
        (Self { config, vad, gate: Some(shared), judge_words, silence }, gate)
    }
}

/// What the controller made of the caller's current utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Utterance {
    /// Nothing is being said.
    None,
    /// An ordinary turn (or an overlap that became an interruption).
    Turn,
    /// Speech over the assistant, not yet an interruption. `forwarded`: its `SpeechStarted`
    /// went downstream (the gate judges it); otherwise it is held here.
    Overlap { forwarded: bool },
    /// Taken for echo of the assistant: ignored.
    Echo,
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
    /// Voiced time since the onset of the current speech (pauses excluded).
    voiced: Duration,
}

/// What a frame decided.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    None,
    Started { onset: Duration },
    Stopped { end: Duration },
}

impl Detector {
    fn new(c: &TurnConfig, min_silence: Duration) -> Self {
        Self {
            state: State::Quiet,
            threshold: c.threshold,
            // Hysteresis: speech must fall clearly below the threshold to count as silence.
            release: (c.threshold - 0.15).max(0.05),
            min_speech: Duration::from_millis(c.min_speech_ms as u64),
            min_silence,
            speech_run: Duration::ZERO,
            silence_run: Duration::ZERO,
            onset: Duration::ZERO,
            last_speech_end: Duration::ZERO,
            voiced: Duration::ZERO,
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
                        self.voiced = self.speech_run;
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
                    self.voiced += len;
                }
            }
        }
        Decision::None
    }

    /// How much voiced audio the current speech has had (0 when quiet).
    fn voiced(&self) -> Duration {
        if self.state == State::Speaking { self.voiced } else { Duration::ZERO }
    }

    /// True while speech is heard that is not yet `min_speech` long (an onset being confirmed,
    /// or a blip that will come to nothing).
    fn onset_pending(&self) -> bool {
        self.state == State::Quiet && !self.speech_run.is_zero()
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
        let TurnController { config, mut vad, gate, judge_words, silence } = *self;
        let ptt = config.mode == Some(TurnMode::PushToTalk);
        let mut control = ctx.control.subscribe();
        let rate = vad.sample_rate();
        let frame = vad.frame_samples();
        let frame_len = duration_of(frame, rate);
        let mut run = Run {
            det: Detector::new(&config, silence.turn),
            utterance: Utterance::None,
            turn: 0,
            paused_at: None,
            position: Duration::ZERO,
            presses: VecDeque::new(),
        };
        let mut resampler: Option<StreamResampler> = None;
        let mut buf: Vec<i16> = Vec::with_capacity(frame * 4);
        let mut processed: usize = 0;
        // Everything the decisions need, without the VAD (which is not `Sync`).
        let this = Rules { config, gate, judge_words, silence };
        loop {
            let frame_in = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Ok(()),
                msg = control.recv(), if ptt => {
                    match msg {
                        Ok(Control::UserTurnStart { at }) => run.presses.push_back((true, at)),
                        Ok(Control::UserTurnEnd { at }) => run.presses.push_back((false, at)),
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => {}
                    }
                    // Presses stamped "now" (or already passed) apply at once.
                    if !this.apply_presses(&ctx, &out, &mut run).await {
                        return Ok(());
                    }
                    continue;
                }
                f = input.recv() => f,
            };
            let Some(f) = frame_in else { return Ok(()) };
            match f {
                Frame::InputAudio(chunk) => {
                    run.position = chunk.pts + duration_of(chunk.samples.len(), chunk.sample_rate);
                    if ptt {
                        if out.send(Frame::InputAudio(chunk)).await.is_err() {
                            return Ok(());
                        }
                        if !this.apply_presses(&ctx, &out, &mut run).await {
                            return Ok(());
                        }
                        continue;
                    }
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
                        let p = match vad.process(&buf[offset..offset + frame]).await {
                            Ok(p) => p,
                            Err(e) => {
                                warn!(error = %e, "VAD failed on a frame; treating it as silence");
                                0.0
                            }
                        };
                        offset += frame;
                        processed += frame;
                        let decision = run.det.step(p, start, frame_len);
                        if !this.on_frame(&ctx, &out, &mut run, decision, start + frame_len).await {
                            return Ok(());
                        }
                        if let Some(g) = &this.gate {
                            g.set_onset_pending(run.det.onset_pending());
                        }
                    }
                    buf.drain(..offset);
                }
                Frame::EndOfStream => {
                    if run.det.state == State::Speaking
                        && matches!(run.utterance, Utterance::Turn | Utterance::Overlap { forwarded: true })
                    {
                        let _ = out.send(Frame::SpeechStopped { at: run.det.last_speech_end }).await;
                    }
                    if run.paused_at.is_some() {
                        resume(&ctx, &mut run).await;
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

/// Per-call state of the controller.
struct Run {
    det: Detector,
    utterance: Utterance,
    turn: u32,
    /// Call-clock ms at which this controller held playout, while it is held.
    paused_at: Option<u64>,
    /// Input timeline position: the end of the last audio received.
    position: Duration,
    /// Push-to-talk presses (true) and releases (false) not yet applied, with their
    /// input-timeline time (`None`: now).
    presses: VecDeque<(bool, Option<Duration>)>,
}

async fn resume(ctx: &CallContext, run: &mut Run) {
    if let Some(at) = run.paused_at.take() {
        crate::gate::resume_playout(ctx, Duration::from_millis(ctx.clock.now_ms().saturating_sub(at))).await;
    }
}

/// Logs the end of turn `turn`: speech ended at `end`, decided at `decided` (input timeline).
async fn turn_ended(ctx: &CallContext, turn: u32, end: Duration, decided: Duration) {
    let speech_end_ms = end.as_millis() as u64;
    ctx.events.emit(EventKind::TurnEnded { turn, speech_end_ms, completeness: None }).await;
    let value_ms = decided.saturating_sub(end).as_millis() as u64;
    ctx.events.emit(EventKind::Metric { name: "end_of_turn_delay_ms".into(), turn, value_ms }).await;
}

async fn false_interruption(ctx: &CallContext, reason: &str, onset: Duration) {
    debug!(reason, ?onset, "not an interruption");
    ctx.events
        .emit(EventKind::FalseInterruption {
            reason: reason.into(),
            text: None,
            onset_ms: onset.as_millis() as u64,
        })
        .await;
}

/// The controller's settings, apart from the VAD.
struct Rules {
    config: TurnConfig,
    gate: Option<Arc<OnsetLine>>,
    judge_words: bool,
    silence: Silence,
}

impl Rules {
    /// Acts on one VAD frame's decision; `now` is the input time at the end of the frame.
    /// Returns false once downstream is gone.
    async fn on_frame(
        &self,
        ctx: &CallContext,
        out: &Outbox,
        run: &mut Run,
        d: Decision,
        now: Duration,
    ) -> bool {
        let guard = &self.config.interruption;
        match d {
            Decision::Started { onset } => {
                debug!(?onset, "caller started speaking");
                let overlap = guard.enabled && ctx.playout.is_audible();
                if overlap
                    && ctx.playout.current().is_some_and(|c| {
                        // How far into the reply the onset fell.
                        let into =
                            Duration::from_millis(c.played_ms).saturating_sub(now.saturating_sub(onset));
                        into < Duration::from_millis(guard.echo_warmup_ms as u64)
                    })
                {
                    false_interruption(ctx, "echo_warmup", onset).await;
                    run.utterance = Utterance::Echo;
                    run.det.min_silence = self.silence.overlap;
                    return true;
                }
                self.begin(ctx, out, run, onset, overlap).await
            }
            Decision::Stopped { end } => {
                let utterance = std::mem::replace(&mut run.utterance, Utterance::None);
                match utterance {
                    Utterance::Turn | Utterance::Overlap { forwarded: true } => {
                        if utterance == Utterance::Turn {
                            run.turn += 1;
                            debug!(?end, turn = run.turn, "end of speech");
                            if self.gate.is_none() {
                                turn_ended(ctx, run.turn, end, now).await;
                            }
                        }
                        out.send(Frame::SpeechStopped { at: end }).await.is_ok()
                    }
                    Utterance::Overlap { forwarded: false } => {
                        // Ended before it counted: a cough, a click, a short "mm".
                        false_interruption(ctx, "too_short", run.det.onset).await;
                        resume(ctx, run).await;
                        true
                    }
                    Utterance::Echo | Utterance::None => true,
                }
            }
            Decision::None => {
                // Echo of a reply fades once the far end's echo canceller has converged, and
                // ends with the reply: speech that outlasts either is the caller, who began
                // talking just as the reply did.
                if run.utterance == Utterance::Echo {
                    let audible = ctx.playout.is_audible();
                    if !audible || run.det.voiced() >= Duration::from_millis(guard.echo_max_ms as u64) {
                        debug!(onset = ?run.det.onset, audible, "speech outlasted the echo warm-up: the caller");
                        let onset = run.det.onset;
                        return self.begin(ctx, out, run, onset, audible).await;
                    }
                }
                // Duration rule for overlaps held here.
                if run.utterance == (Utterance::Overlap { forwarded: false })
                    && run.det.voiced() >= Duration::from_millis(guard.min_speech_ms as u64)
                {
                    run.utterance = Utterance::Turn;
                    run.det.min_silence = self.silence.turn;
                    run.paused_at = None;
                    let onset = run.det.onset;
                    ctx.interrupt(InterruptReason::BargeIn, Some(onset)).await;
                    if let Some(g) = &self.gate {
                        g.push_onset(false);
                    }
                    return out.send(Frame::SpeechStarted { at: onset }).await.is_ok();
                }
                true
            }
        }
    }

    /// Starts an utterance at `onset`: the caller's turn, or, over an audible reply, an
    /// overlap that may interrupt it (playout held while that is decided).
    async fn begin(
        &self,
        ctx: &CallContext,
        out: &Outbox,
        run: &mut Run,
        onset: Duration,
        overlap: bool,
    ) -> bool {
        let guard = &self.config.interruption;
        run.utterance = if !overlap {
            Utterance::Turn
        } else {
            if guard.pause_on_uncertain && ctx.playout.pause() {
                run.paused_at = Some(ctx.clock.now_ms());
                ctx.events.emit(EventKind::PlayoutPaused { onset_ms: onset.as_millis() as u64 }).await;
            }
            Utterance::Overlap { forwarded: self.judge_words }
        };
        run.det.min_silence =
            if run.utterance == Utterance::Turn { self.silence.turn } else { self.silence.overlap };
        let overlap = match run.utterance {
            Utterance::Turn => false,
            Utterance::Overlap { forwarded: true } => true,
            _ => return true,
        };
        if let Some(g) = &self.gate {
            g.push_onset(overlap);
        }
        out.send(Frame::SpeechStarted { at: onset }).await.is_ok()
    }

    /// Applies push-to-talk presses that are due at the current input position.
    async fn apply_presses(&self, ctx: &CallContext, out: &Outbox, run: &mut Run) -> bool {
        while let Some(&(down, at)) = run.presses.front() {
            let at = match at {
                Some(at) if at > run.position => return true,
                Some(at) => at,
                None => run.position,
            };
            run.presses.pop_front();
            match (down, run.utterance) {
                (true, Utterance::None) => {
                    run.utterance = Utterance::Turn;
                    if self.config.interruption.enabled && ctx.playout.is_audible() {
                        ctx.interrupt(InterruptReason::Requested, Some(at)).await;
                    }
                    if let Some(g) = &self.gate {
                        g.push_onset(false);
                    }
                    if out.send(Frame::SpeechStarted { at }).await.is_err() {
                        return false;
                    }
                }
                (false, Utterance::Turn) => {
                    run.utterance = Utterance::None;
                    run.turn += 1;
                    turn_ended(ctx, run.turn, at, at).await;
                    if out.send(Frame::SpeechStopped { at }).await.is_err() {
                        return false;
                    }
                }
                // A second press while held, or a release without a press.
                _ => {}
            }
        }
        true
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
        let mut d = Detector::new(&TurnConfig::default(), ms(500));
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
    fn a_turn_pauses_after_pause_ms_and_resumed_speech_is_pending_until_it_counts() {
        let config = TurnConfig { pause_ms: 120, ..TurnConfig::default() };
        let vad = Box::new(crate::EnergyVad::new(16_000));
        let (c, _gate) = TurnController::with_gate(config.clone(), vad);
        // medium eagerness, min_silence 500: the complete wait is 300 ms; turns pause at 120.
        assert_eq!(c.silence, Silence { turn: ms(120), overlap: ms(300) });
        let capped = TurnConfig { pause_ms: 1000, ..config.clone() };
        let (c, _) = TurnController::with_gate(capped, Box::new(crate::EnergyVad::new(16_000)));
        assert_eq!(c.silence.turn, ms(300), "capped at the shortest wait");
        let silence_policy = TurnConfig {
            end_of_turn: crate::EndOfTurnConfig { policy: PolicyKind::Silence, ..Default::default() },
            ..config.clone()
        };
        let (c, _) = TurnController::with_gate(silence_policy, Box::new(crate::EnergyVad::new(16_000)));
        assert_eq!(c.silence.turn, ms(500), "the silence policy ignores pause_ms");

        let mut d = Detector::new(&config, ms(120));
        let f = ms(20);
        let mut t = Duration::ZERO;
        let mut decisions = Vec::new();
        let mut pending = Vec::new();
        // 1 s speech, a 200 ms pause, 400 ms speech, 700 ms silence.
        for (p, n) in [(0.9, 50), (0.0, 10), (0.9, 20), (0.0, 35)] {
            for _ in 0..n {
                let decision = d.step(p, t, f);
                if decision != Decision::None {
                    decisions.push((t, decision));
                }
                if d.onset_pending() {
                    pending.push(t);
                }
                t += f;
            }
        }
        assert_eq!(
            decisions,
            [
                (ms(140), Decision::Started { onset: ms(0) }),
                (ms(1100), Decision::Stopped { end: ms(1000) }),
                (ms(1340), Decision::Started { onset: ms(1200) }),
                (ms(1700), Decision::Stopped { end: ms(1600) }),
            ],
            "120 ms of silence end the speech; 150 ms of speech start it again"
        );
        let want: Vec<Duration> = (0..=6).chain(60..=66).map(|i| ms(i * 20)).collect();
        assert_eq!(pending, want, "speech is pending from its first frame until the frame before it counts");
    }

    #[test]
    fn short_blips_and_short_pauses_are_ignored() {
        let mut d = Detector::new(&TurnConfig::default(), ms(500));
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
