//! Failover between whole pipelines mid-call: a [`Failover`] stage runs a primary chain of
//! stages (a native speech-to-speech stage, or a cascade) and, when one of its stages fails,
//! stops it and carries the call on with a fallback chain, handing it the conversation so far
//! ([`Frame::Restore`]). The caller's audio, the output and the tools stay the same.

use crate::event::EventKind;
use crate::frame::{Frame, Line, ResponseStatus, Restore, Speaker};
use crate::stage::{CallContext, Inbox, Outbox, Stage, StageError, channel};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// A named chain of stages: what a pipeline file's `[turn]` and `[[stages]]` build.
pub struct Chain {
    /// The pipeline's name, for the log and the `failover` event.
    pub name: String,
    /// The stages, in order.
    pub stages: Vec<Box<dyn Stage>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stages: Vec<&str> = self.stages.iter().map(|s| s.name()).collect();
        f.debug_struct("Chain").field("name", &self.name).field("stages", &stages).finish()
    }
}

/// A primary chain with a fallback chain that takes over when a primary stage fails, or when
/// its replies keep failing (a provider answering 5xx or 429 turn after turn).
#[derive(Debug)]
pub struct Failover {
    primary: Chain,
    fallback: Chain,
    after_failed_turns: u32,
}

/// Default of [`Failover::after_failed_turns`].
pub const DEFAULT_FAILED_TURNS: u32 = 2;

impl Failover {
    /// `primary` runs first; `fallback` carries the call on if a stage of it fails, or after
    /// [`DEFAULT_FAILED_TURNS`] failed replies in a row.
    pub fn new(primary: Chain, fallback: Chain) -> Self {
        Self { primary, fallback, after_failed_turns: DEFAULT_FAILED_TURNS }
    }

    /// Switch after `n` replies in a row ended `failed` (the stage lived on, e.g. saying its
    /// failure line); 0: only when a stage fails.
    #[must_use]
    pub fn after_failed_turns(mut self, n: u32) -> Self {
        self.after_failed_turns = n;
        self
    }
}

/// One chain running as tasks of the call, with its own cancellation.
struct Running {
    name: String,
    input: Option<Outbox>,
    output: Inbox,
    tasks: JoinSet<(String, Result<(), StageError>)>,
    ctx: CallContext,
}

impl Running {
    fn start(chain: Chain, ctx: &CallContext) -> Self {
        let mut ctx = ctx.clone();
        ctx.cancel = ctx.cancel.child_token();
        let (input, first) = channel();
        let mut tasks = JoinSet::new();
        let output = crate::runner::spawn_stages(&mut tasks, &ctx, chain.stages, first);
        Self { name: chain.name, input: Some(input), output, tasks, ctx }
    }

    /// Stops every stage of the chain now (the call goes on without it).
    fn stop(&mut self) {
        self.ctx.cancel.cancel();
        self.tasks.abort_all();
        self.input = None;
    }
}

/// The finished utterances seen on the way out, to hand a fallback.
#[derive(Default)]
struct Conversation {
    lines: Vec<Line>,
    unanswered: bool,
    last_user_at: Option<Instant>,
}

impl Conversation {
    fn observe(&mut self, frame: &Frame) {
        match frame {
            Frame::UserTranscript(t) if t.is_final && !t.text.trim().is_empty() => {
                self.lines.push(Line { speaker: Speaker::User, text: t.text.trim().to_string() });
                self.unanswered = true;
                self.last_user_at = Some(Instant::now());
            }
            Frame::AssistantTranscript(t) if t.is_final && !t.text.trim().is_empty() => {
                self.lines.push(Line { speaker: Speaker::Assistant, text: t.text.trim().to_string() });
                self.unanswered = false;
            }
            _ => {}
        }
    }

    fn restore(&self) -> Restore {
        Restore { lines: self.lines.clone(), respond: self.unanswered }
    }
}

#[async_trait]
impl Stage for Failover {
    fn name(&self) -> &str {
        "failover"
    }

    async fn run(self: Box<Self>, ctx: CallContext, mut input: Inbox, out: Outbox) -> Result<(), StageError> {
        let after_failed_turns = self.after_failed_turns;
        let mut fallback = Some(self.fallback);
        let mut running = Running::start(self.primary, &ctx);
        // Replies in a row that ended `failed`, while a fallback remains.
        let mut failed_turns = 0u32;
        let mut convo = Conversation::default();
        // Frames from upstream waiting for room in the running chain.
        let mut pending: VecDeque<Frame> = VecDeque::new();
        let mut input_open = true;
        let mut output_open = true;
        // After a switch: when it happened, until the fallback's first audio.
        let mut switched_at: Option<Instant> = None;
        loop {
            if !output_open && running.tasks.is_empty() {
                return Ok(());
            }
            let chain_in = running.input.clone();
            // Set by an arm when the fallback should take over: the component and the reason.
            let mut switch: Option<(String, String)> = None;
            tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => {
                    running.stop();
                    return Ok(());
                }
                joined = running.tasks.join_next(), if !running.tasks.is_empty() => {
                    let failure = match joined {
                        Some(Ok((_, Ok(())))) | None => continue,
                        Some(Ok((name, Err(e)))) => (name, e),
                        Some(Err(join)) => {
                            let e = StageError::new("runtime", format!("a stage task panicked or was aborted: {join}"));
                            ("runtime".to_string(), e)
                        }
                    };
                    let (name, error) = failure;
                    if fallback.is_none() {
                        running.stop();
                        return Err(error);
                    }
                    switch = Some((name, error.to_string()));
                }
                frame = running.output.recv(), if output_open => match frame {
                    // A chain whose stage failed closes its later stages, and they say
                    // EndOfStream: the call has not ended unless its input has.
                    Some(Frame::EndOfStream) if input_open => debug!("a chain ended before the input; held back"),
                    Some(frame) => {
                        convo.observe(&frame);
                        if let Frame::ResponseDone(done) = &frame {
                            failed_turns = if done.status == ResponseStatus::Failed { failed_turns + 1 } else { 0 };
                            if fallback.is_some() && after_failed_turns > 0 && failed_turns >= after_failed_turns {
                                let why = done.reason.as_deref().unwrap_or("failed");
                                switch = Some(("replies".into(), format!("{failed_turns} replies in a row failed (last: {why})")));
                                // The caller's last words get an answer from the fallback.
                                convo.unanswered = true;
                            }
                        }
                        if let (Some(at), Frame::OutputAudio(_)) = (switched_at, &frame) {
                            switched_at = None;
                            let value_ms = at.elapsed().as_millis() as u64;
                            info!(value_ms, "the fallback's first audio after the failover");
                            ctx.events.emit(EventKind::Metric { name: "failover_silence_ms".into(), turn: 0, value_ms }).await;
                        }
                        if out.send(frame).await.is_err() {
                            running.stop();
                            return Ok(());
                        }
                    }
                    None => output_open = false,
                },
                permit = async { chain_in.as_ref().expect("guarded").reserve().await }, if !pending.is_empty() && chain_in.is_some() => {
                    match permit {
                        Ok(permit) => permit.send(pending.pop_front().expect("guarded")),
                        // The chain's first stage ended: nothing more goes in.
                        Err(_) => { pending.clear(); running.input = None; }
                    }
                }
                frame = input.recv(), if input_open && pending.is_empty() => match frame {
                    Some(frame) => {
                        if matches!(frame, Frame::EndOfStream) {
                            input_open = false;
                        }
                        pending.push_back(frame);
                    }
                    None => {
                        input_open = false;
                        // Upstream closed without an EndOfStream: close the chain's input.
                        if pending.is_empty() { running.input = None; }
                    }
                },
            }
            let Some((component, reason)) = switch else { continue };
            let Some(next) = fallback.take() else { continue };
            failed_turns = 0;
            // What the failing chain already produced still reaches the caller.
            while let Ok(Some(frame)) =
                tokio::time::timeout(std::time::Duration::ZERO, running.output.recv()).await
            {
                if !matches!(frame, Frame::EndOfStream) {
                    convo.observe(&frame);
                    let _ = out.send(frame).await;
                }
            }
            running.stop();
            let after_ms = convo.last_user_at.map_or(0, |t| t.elapsed().as_millis() as u64);
            warn!(from = %running.name, to = %next.name, %component, %reason, "pipeline failover");
            ctx.events
                .emit(EventKind::Failover {
                    stage: "pipeline".into(),
                    from: running.name.clone(),
                    to: next.name.clone(),
                    reason,
                    after_ms,
                })
                .await;
            running = Running::start(next, &ctx);
            pending.push_front(Frame::Restore(Arc::new(convo.restore())));
            if !input_open {
                pending.push_back(Frame::EndOfStream);
            }
            output_open = true;
            switched_at = Some(Instant::now());
        }
    }
}
