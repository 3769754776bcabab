//! The pipeline runner: wires a source, stages and sinks with bounded channels, runs them as
//! tasks of one call, and shuts the call down cleanly on end of input, error, `end_call` or
//! Ctrl-C, flushing every sink and the event log.

use crate::control::Control;
use crate::event::{EventKind, EventWriter};
use crate::frame::Frame;
use crate::stage::{CallContext, Inbox, Outbox, Sink, Source, Stage, StageError, channel};
use crate::tool::{NoTools, ToolRuntime};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

/// How long components get to finish after the call is cancelled before they are aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A call's components, ready to run.
pub struct Pipeline {
    /// Pipeline name, for the log.
    pub name: String,
    /// The caller's audio.
    pub source: Box<dyn Source>,
    /// The stages, in order.
    pub stages: Vec<Box<dyn Stage>>,
    /// Every sink receives every frame that leaves the last stage.
    pub sinks: Vec<Box<dyn Sink>>,
    /// Where the event log goes, if anywhere.
    pub events: Option<Box<dyn EventWriter>>,
    /// Tools the stages may call.
    pub tools: Arc<dyn ToolRuntime>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("source", &self.source.name())
            .field("stages", &self.stages.iter().map(|s| s.name().to_string()).collect::<Vec<_>>())
            .field("sinks", &self.sinks.iter().map(|s| s.name().to_string()).collect::<Vec<_>>())
            .finish()
    }
}

/// Options for one run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// End the call cleanly on Ctrl-C (the CLI sets this; tests do not).
    pub handle_ctrl_c: bool,
    /// A token the embedder can cancel to end the call.
    pub cancel: Option<CancellationToken>,
}

/// How the call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The input ended and every component drained.
    EndOfInput,
    /// A tool ended the call.
    EndCall,
    /// Ctrl-C or the embedder's token.
    Cancelled,
}

/// The call failed; what was written so far has been flushed.
#[derive(Debug, thiserror::Error)]
#[error("{}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct RunError {
    /// Every component failure, first one first.
    pub errors: Vec<StageError>,
}

impl Pipeline {
    /// A pipeline with no tools and no event log.
    pub fn new(
        name: impl Into<String>,
        source: Box<dyn Source>,
        stages: Vec<Box<dyn Stage>>,
        sinks: Vec<Box<dyn Sink>>,
    ) -> Self {
        Self { name: name.into(), source, stages, sinks, events: None, tools: Arc::new(NoTools) }
    }

    /// Runs the call to its end.
    pub async fn run(self, opts: RunOptions) -> Result<EndReason, RunError> {
        let (mut ctx, event_rx) = CallContext::new(self.tools);
        let cancel = opts.cancel.unwrap_or_default();
        ctx.cancel = cancel.clone();
        let writer = tokio::spawn(write_events(self.events, event_rx));
        ctx.events.emit(EventKind::CallStarted { pipeline: self.name.clone() }).await;
        info!(pipeline = %self.name, "call started");

        let mut tasks: JoinSet<(String, Result<(), StageError>)> = JoinSet::new();
        let (src_out, mut next_in) = channel();
        spawn_named(&mut tasks, self.source.name().to_string(), {
            let ctx = ctx.clone();
            let source = self.source;
            async move { source.run(ctx, src_out).await }
        });
        for stage in self.stages {
            let (out, inbox) = channel();
            let input = std::mem::replace(&mut next_in, inbox);
            let ctx = ctx.clone();
            spawn_named(
                &mut tasks,
                stage.name().to_string(),
                async move { stage.run(ctx, input, out).await },
            );
        }
        let mut sink_outs = Vec::new();
        for sink in self.sinks {
            let (out, inbox) = channel();
            sink_outs.push(out);
            let ctx = ctx.clone();
            spawn_named(&mut tasks, sink.name().to_string(), async move { sink.run(ctx, inbox).await });
        }
        spawn_named(&mut tasks, "fanout".into(), fanout(ctx.clone(), next_in, sink_outs));

        let mut errors = Vec::new();
        let mut reason = EndReason::EndOfInput;
        let mut control = ctx.control.subscribe();
        let mut end_call_requested = false;
        let ctrl_c = async {
            if opts.handle_ctrl_c {
                let _ = tokio::signal::ctrl_c().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(ctrl_c);
        let mut idle_check = tokio::time::interval(Duration::from_millis(20));
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                biased;
                joined = tasks.join_next() => {
                    let Some(joined) = joined else { break };
                    match joined {
                        Ok((name, Ok(()))) => debug!(component = %name, "component finished"),
                        Ok((name, Err(e))) => {
                            error!(component = %name, error = %e, "component failed");
                            ctx.events.emit(EventKind::Error { stage: e.stage.clone(), message: e.source.to_string() }).await;
                            errors.push(e);
                            cancel.cancel();
                        }
                        Err(join) => {
                            let e = StageError::new("runtime", format!("a component task panicked or was aborted: {join}"));
                            ctx.events.emit(EventKind::Error { stage: e.stage.clone(), message: e.source.to_string() }).await;
                            errors.push(e);
                            cancel.cancel();
                        }
                    }
                }
                () = &mut ctrl_c, if !cancel.is_cancelled() => {
                    warn!("interrupted: ending the call");
                    reason = EndReason::Cancelled;
                    cancel.cancel();
                }
                () = cancel.cancelled(), if deadline.is_none() => {
                    if reason == EndReason::EndOfInput && errors.is_empty() && !end_call_requested {
                        reason = EndReason::Cancelled;
                    }
                    deadline = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                }
                () = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                    warn!("components did not stop within {:?}; aborting them", SHUTDOWN_GRACE);
                    tasks.abort_all();
                    deadline = None;
                }
                msg = control.recv() => {
                    if let Ok(Control::EndCall) = msg {
                        end_call_requested = true;
                        reason = EndReason::EndCall;
                    }
                }
                _ = idle_check.tick(), if end_call_requested && !cancel.is_cancelled() => {
                    // End the call once the goodbye has played.
                    if !ctx.playout.is_audible() {
                        info!("end_call: the goodbye has played; ending the call");
                        cancel.cancel();
                    }
                }
            }
        }
        let reason_str = match (&reason, errors.is_empty()) {
            (_, false) => "error",
            (EndReason::EndOfInput, _) => "end_of_input",
            (EndReason::EndCall, _) => "end_call",
            (EndReason::Cancelled, _) => "cancelled",
        };
        ctx.events.emit(EventKind::CallEnded { reason: reason_str.into() }).await;
        info!(reason = reason_str, "call ended");
        drop(ctx);
        if let Ok(Err(e)) = writer.await {
            error!(error = %e, "event log could not be written");
        }
        if errors.is_empty() { Ok(reason) } else { Err(RunError { errors }) }
    }
}

fn spawn_named<F>(tasks: &mut JoinSet<(String, Result<(), StageError>)>, name: String, fut: F)
where
    F: std::future::Future<Output = Result<(), StageError>> + Send + 'static,
{
    let span = info_span!("component", name = %name);
    tasks.spawn(async move { (name, fut.await) }.instrument(span));
}

/// Copies each frame leaving the last stage to every sink and logs the ones worth logging.
async fn fanout(ctx: CallContext, mut input: Inbox, mut sinks: Vec<Outbox>) -> Result<(), StageError> {
    loop {
        let frame = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Ok(()),
            f = input.recv() => f,
        };
        let Some(frame) = frame else { break };
        if let Some(kind) = EventKind::from_frame(&frame) {
            ctx.events.emit(kind).await;
        }
        let eos = matches!(frame, Frame::EndOfStream);
        let mut i = 0;
        while i < sinks.len() {
            let f = frame.clone();
            let sent = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Ok(()),
                r = sinks[i].send(f) => r,
            };
            if sent.is_err() {
                sinks.swap_remove(i);
            } else {
                i += 1;
            }
        }
        if eos {
            break;
        }
    }
    Ok(())
}

async fn write_events(
    writer: Option<Box<dyn EventWriter>>,
    mut rx: tokio::sync::mpsc::Receiver<crate::event::Event>,
) -> std::io::Result<()> {
    let Some(mut writer) = writer else {
        while rx.recv().await.is_some() {}
        return Ok(());
    };
    let mut result = Ok(());
    while let Some(ev) = rx.recv().await {
        if result.is_ok() {
            result = writer.write(&ev).await;
        }
    }
    let finished = writer.finish().await;
    result.and(finished)
}
