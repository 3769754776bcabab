//! The turn gate: the second half of the local controller in a cascade, placed right after the
//! ASR stage, where the caller's words are known.
//!
//! - **End of turn.** The controller ends *speech* after a short silence (`pause_ms`), so the
//!   ASR decodes while the gate waits; the gate reads the final transcript with an
//!   [`EndOfTurnPolicy`] and waits the rest, counted from the end of speech: a complete
//!   sentence is answered soon, a trailing "and…" or half a phone number waits longer. If the
//!   caller speaks again before the turn is decided, the two utterances become one turn; when
//!   the wait is over while the VAD hears speech not yet long enough to count, the decision
//!   waits for that speech to count or to stop. Downstream sees one `SpeechStarted`, one
//!   `SpeechStopped` and one final transcript per turn, at the decision.
//! - **Interruptions.** Speech the controller flagged as overlapping the assistant is judged
//!   on its words ([`WordGuard`]): the first transcript with real words interrupts (and the
//!   utterance becomes a turn); a final made only of backchannels, too few words or no words is
//!   a false interruption: the held reply resumes and the model never sees it. Held playout
//!   also resumes if no transcript came `resume_after_ms` after the speech ended.

use crate::config::{PolicyKind, TurnConfig, TurnMode};
use crate::guard::{Verdict, WordGuard};
use crate::onsets::OnsetLine;
use crate::policy::{Completeness, EndOfTurnPolicy, TextPolicy, Waits};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::debug;
use voxpipe_core::time::sleep_until;
use voxpipe_core::{
    CallContext, EventKind, Frame, Inbox, InterruptReason, ItemId, Outbox, Stage, StageError, Transcript,
};

const NAME: &str = "turn.gate";

/// How long the gate waits for the ASR's final transcript after the end of speech before it
/// gives up on it (a decoder that never answers must not stall the call).
const FINAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the gate looks again while it holds a decision for speech being confirmed.
const ONSET_POLL: Duration = Duration::from_millis(10);
/// Beyond `min_speech_ms`, how long the gate may hold a decision for unconfirmed speech (the
/// VAD decides on frames of up to 32 ms).
const ONSET_SLACK: Duration = Duration::from_millis(50);

/// The gate stage. Made by [`TurnController::with_gate`](crate::TurnController::with_gate).
pub struct TurnGate {
    config: TurnConfig,
    shared: Arc<OnsetLine>,
    policy: Box<dyn EndOfTurnPolicy>,
    waits: Waits,
    guard: WordGuard,
    /// Hold a decision while the controller hears speech it has not confirmed yet, at most this
    /// long; `None` where the turn is already over when speech stops (push-to-talk, `silence`).
    onset_hold: Option<Duration>,
}

impl std::fmt::Debug for TurnGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnGate").field("policy", &self.policy).field("waits", &self.waits).finish()
    }
}

impl TurnGate {
    pub(crate) fn new(config: TurnConfig, shared: Arc<OnsetLine>) -> Self {
        let mut waits = Waits::new(config.min_silence_ms, &config.end_of_turn);
        let ptt = config.mode == Some(TurnMode::PushToTalk);
        if ptt || config.end_of_turn.policy == PolicyKind::Silence {
            // The button, or the controller's silence, already ended the turn.
            waits = Waits { complete: Duration::ZERO, unsure: Duration::ZERO, incomplete: Duration::ZERO };
        }
        let guard = WordGuard::new(&config.interruption);
        let onset_hold = (!waits.complete.is_zero())
            .then(|| Duration::from_millis(config.min_speech_ms as u64) + ONSET_SLACK);
        Self { config, shared, policy: Box::new(TextPolicy), waits, guard, onset_hold }
    }

    /// Replaces the transcript policy (a model-based end-of-turn detector, say).
    pub fn with_policy(mut self, policy: Box<dyn EndOfTurnPolicy>) -> Self {
        self.policy = policy;
        self
    }
}

/// Speech over the assistant, not yet judged.
#[derive(Debug)]
struct Overlap {
    onset: Duration,
    /// When the gate heard of it; held playout resumes `resume_after_ms` later.
    since: Instant,
    /// The end of speech, once the controller sent it.
    end: Option<Duration>,
    resumed: bool,
}

/// A turn whose end is being decided.
#[derive(Debug)]
struct Pending {
    item: Option<ItemId>,
    text: String,
    onset: Duration,
    speech_end: Option<Duration>,
    /// True between the end of an utterance and its final transcript.
    awaiting_final: Option<Instant>,
    /// Set once the final is in: when the turn ends unless the caller speaks again.
    deadline: Option<Instant>,
    completeness: Option<Completeness>,
    /// Since when the decision has been held for speech the controller has not confirmed.
    held_since: Option<Instant>,
}

/// What the caller is doing now.
#[derive(Debug)]
enum Current {
    Quiet,
    Overlap(Overlap),
    Turn,
}

struct Gate<'a> {
    g: &'a TurnGate,
    ctx: CallContext,
    out: Outbox,
    current: Current,
    pending: Option<Pending>,
    turn: u32,
}

#[async_trait]
impl Stage for TurnGate {
    fn name(&self) -> &str {
        NAME
    }

    async fn run(self: Box<Self>, ctx: CallContext, mut input: Inbox, out: Outbox) -> Result<(), StageError> {
        let mut s = Gate { g: &self, ctx: ctx.clone(), out, current: Current::Quiet, pending: None, turn: 0 };
        loop {
            // Held playout waits for the words while the caller speaks, and at most
            // `resume_after_ms` after the speech ended.
            let resume_at = match &s.current {
                Current::Overlap(Overlap { end: Some(end), resumed: false, .. }) => Some(
                    ctx.clock.at(*end)
                        + Duration::from_millis(self.config.interruption.resume_after_ms as u64),
                ),
                _ => None,
            };
            let decide_at =
                s.pending.as_ref().and_then(|p| match (&s.current, p.deadline, p.awaiting_final) {
                    (Current::Quiet, Some(d), None) => Some(d),
                    (_, _, Some(since)) => Some(since + FINAL_TIMEOUT),
                    _ => None,
                });
            let ok = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Ok(()),
                () = sleep_until(resume_at) => {
                    if let Current::Overlap(o) = &mut s.current {
                        o.resumed = true;
                        resume(&ctx, o.since).await;
                    }
                    true
                }
                () = sleep_until(decide_at) => {
                    if let Some(p) = &mut s.pending && let Some(since) = p.awaiting_final.take() {
                        debug!(waited = ?since.elapsed(), "no final transcript came; deciding without it");
                        p.deadline = Some(Instant::now());
                        true
                    } else {
                        s.decide().await
                    }
                }
                f = input.recv() => match f {
                    None => return Ok(()),
                    Some(Frame::EndOfStream) => {
                        if let Current::Overlap(o) = &s.current && !o.resumed {
                            resume(&ctx, o.since).await;
                        }
                        if s.pending.is_some() {
                            s.commit().await;
                        }
                        let _ = s.out.send(Frame::EndOfStream).await;
                        return Ok(());
                    }
                    Some(f) => s.on_frame(f).await,
                },
            };
            if !ok {
                return Ok(());
            }
        }
    }
}

async fn resume(ctx: &CallContext, since: Instant) {
    resume_playout(ctx, since.elapsed()).await;
}

/// Lets held playout continue and logs how long it was held (nothing if it was not held).
pub(crate) async fn resume_playout(ctx: &CallContext, held: Duration) {
    if ctx.playout.resume() {
        let held_ms = held.as_millis() as u64;
        debug!(held_ms, "resumed the held reply");
        ctx.events.emit(EventKind::PlayoutResumed { held_ms }).await;
    }
}

impl Gate<'_> {
    async fn send(&self, f: Frame) -> bool {
        self.out.send(f).await.is_ok()
    }

    /// Handles one frame; false once downstream is gone.
    async fn on_frame(&mut self, f: Frame) -> bool {
        match f {
            Frame::SpeechStarted { at } => {
                let overlap = self.g.shared.pop_onset();
                if let Some(p) = &mut self.pending {
                    // The caller went on before the turn was over: one turn, not two.
                    debug!(?at, "caller continued the turn");
                    p.deadline = None;
                    p.held_since = None;
                    self.current = Current::Turn;
                    true
                } else if overlap {
                    self.current = Current::Overlap(Overlap {
                        onset: at,
                        since: Instant::now(),
                        end: None,
                        resumed: false,
                    });
                    true
                } else {
                    self.start_turn(at);
                    self.send(f).await
                }
            }
            Frame::UserTranscript(t) if !t.is_final => match &self.current {
                Current::Overlap(o) => {
                    if self.g.guard.judge(&t.text) == Verdict::Interrupt {
                        let (onset, end) = (o.onset, o.end);
                        if !self.promote(onset, end).await {
                            return false;
                        }
                        if let (Some(p), Some(end)) = (&mut self.pending, end) {
                            p.speech_end = Some(end);
                            p.awaiting_final = Some(Instant::now());
                        }
                        return self.send(Frame::UserTranscript(t)).await;
                    }
                    true
                }
                _ => self.send(Frame::UserTranscript(t)).await,
            },
            Frame::SpeechStopped { at } => match &mut self.current {
                Current::Overlap(o) => {
                    o.end = Some(at);
                    true
                }
                _ => {
                    self.current = Current::Quiet;
                    if let Some(p) = &mut self.pending {
                        p.speech_end = Some(at);
                        p.awaiting_final = Some(Instant::now());
                    }
                    true
                }
            },
            Frame::UserTranscript(t) => {
                // A final.
                if let Current::Overlap(o) = &self.current {
                    let verdict = self.g.guard.judge(&t.text);
                    if verdict != Verdict::Interrupt {
                        let (onset, since, resumed) = (o.onset, o.since, o.resumed);
                        self.current = Current::Quiet;
                        debug!(reason = verdict.reason(), text = %t.text, "not an interruption");
                        self.ctx
                            .events
                            .emit(EventKind::FalseInterruption {
                                reason: verdict.reason().into(),
                                text: Some(t.text.clone()).filter(|s| !s.is_empty()),
                                onset_ms: onset.as_millis() as u64,
                            })
                            .await;
                        if !resumed {
                            resume(&self.ctx, since).await;
                        }
                        return true;
                    }
                    let (onset, end) = (o.onset, o.end);
                    if !self.promote(onset, end).await {
                        return false;
                    }
                    if let Some(p) = &mut self.pending {
                        p.speech_end = end;
                    }
                }
                self.on_final(t).await
            }
            other => self.send(other).await,
        }
    }

    fn start_turn(&mut self, onset: Duration) {
        self.current = Current::Turn;
        self.pending = Some(Pending {
            item: None,
            text: String::new(),
            onset,
            speech_end: None,
            awaiting_final: None,
            deadline: None,
            completeness: None,
            held_since: None,
        });
    }

    /// Speech over the assistant turned out to be real words: interrupt, and make it a turn.
    /// `end`: when the speech already stopped, the turn is quiet, waiting for its decision.
    async fn promote(&mut self, onset: Duration, end: Option<Duration>) -> bool {
        debug!(?onset, "interruption confirmed by the transcript");
        self.ctx.interrupt(InterruptReason::BargeIn, Some(onset)).await;
        self.start_turn(onset);
        if end.is_some() {
            // Its words came after the speech ended (no interims): left as `Turn`, the turn
            // would wait for a `SpeechStopped` already past, i.e. for the caller's next words.
            self.current = Current::Quiet;
        }
        self.send(Frame::SpeechStarted { at: onset }).await
    }

    async fn on_final(&mut self, t: Transcript) -> bool {
        let Some(p) = &mut self.pending else {
            // A transcript outside any turn the gate knows of: pass it on.
            return self.send(Frame::UserTranscript(t)).await;
        };
        p.awaiting_final = None;
        let text = t.text.trim();
        if !text.is_empty() {
            if !p.text.is_empty() {
                p.text.push(' ');
            }
            p.text.push_str(text);
        }
        if p.item.is_none() {
            p.item = t.item;
        }
        let c = self.g.policy.classify(&p.text);
        p.completeness = Some(c);
        let wait = self.g.waits.for_(c);
        let end = p.speech_end.unwrap_or(p.onset);
        p.deadline = Some(self.ctx.clock.at(end + wait));
        debug!(completeness = c.as_str(), ?wait, text = %p.text, "end-of-turn policy");
        if matches!(self.current, Current::Quiet) && p.deadline.is_some_and(|d| d <= Instant::now()) {
            return self.decide().await;
        }
        true
    }

    /// The wait is over: end the turn, unless the caller has started talking again. While the
    /// VAD hears speech not yet long enough to count (the caller may be going on after a
    /// pause), the decision waits for it to count or to stop, at most `min_speech_ms` and a
    /// little more.
    async fn decide(&mut self) -> bool {
        if self.g.shared.caller_resumed() {
            if let Some(p) = &mut self.pending {
                debug!("the caller is talking again; the turn goes on");
                p.deadline = None;
            }
            return true;
        }
        if let (Some(hold), Some(p)) = (self.g.onset_hold, &mut self.pending)
            && self.g.shared.onset_pending()
        {
            let now = Instant::now();
            let since = *p.held_since.get_or_insert(now);
            if now.duration_since(since) < hold {
                debug!("speech is starting; the decision waits to see whether it counts");
                p.deadline = Some(now + ONSET_POLL);
                return true;
            }
        }
        self.commit().await
    }

    /// The turn is over: send its end and its transcript downstream.
    async fn commit(&mut self) -> bool {
        let Some(p) = self.pending.take() else { return true };
        self.turn += 1;
        let end = p.speech_end.unwrap_or(p.onset);
        let decided = self.ctx.clock.elapsed();
        self.ctx
            .events
            .emit(EventKind::TurnEnded {
                turn: self.turn,
                speech_end_ms: end.as_millis() as u64,
                completeness: p.completeness.map(|c| c.as_str().to_string()),
            })
            .await;
        self.ctx
            .events
            .emit(EventKind::Metric {
                name: "end_of_turn_delay_ms".into(),
                turn: self.turn,
                value_ms: decided.saturating_sub(end).as_millis() as u64,
            })
            .await;
        if !self.send(Frame::SpeechStopped { at: end }).await {
            return false;
        }
        if p.text.is_empty() {
            debug!(turn = self.turn, "no words in this turn; nothing to answer");
            return true;
        }
        self.send(Frame::UserTranscript(Transcript { item: p.item, text: p.text, is_final: true })).await
    }
}
