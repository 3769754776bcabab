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
        let (src_out, next_in) = channel();
        spawn_named(&mut tasks, self.source.name().to_string(), {
            let ctx = ctx.clone();
            let source = self.source;
            async move { source.run(ctx, src_out).await }
        });
        let next_in = spawn_stages(&mut tasks, &ctx, self.stages, next_in);
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

/// Spawns `stages` as a chain fed by `input`, each a task of `tasks` named after its stage;
/// returns what leaves the last one.
pub(crate) fn spawn_stages(
    tasks: &mut JoinSet<(String, Result<(), StageError>)>,
    ctx: &CallContext,
    stages: Vec<Box<dyn Stage>>,
    mut input: Inbox,
) -> Inbox {
    for stage in stages {
        let (out, next) = channel();
        let stage_in = std::mem::replace(&mut input, next);
        let ctx = ctx.clone();
        spawn_named(tasks, stage.name().to_string(), async move { stage.run(ctx, stage_in, out).await });
    }
    input
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

/// Forwards the call's events to its writer on the event-log thread, as they come: the call
/// never waits on the disk. Returns the writer's first error, once everything is written.
async fn write_events(
    writer: Option<Box<dyn EventWriter>>,
    mut rx: tokio::sync::mpsc::Receiver<crate::event::Event>,
) -> std::io::Result<()> {
    let Some(writer) = writer else {
        while rx.recv().await.is_some() {}
        return Ok(());
    };
    // The writer and its first error; jobs for one call run in order on one thread.
    let state = Arc::new(std::sync::Mutex::new((writer, Ok::<(), std::io::Error>(()))));
    let log = event_log_thread();
    while let Some(ev) = rx.recv().await {
        let state = state.clone();
        let job = move || {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            if s.1.is_ok() {
                s.1 = s.0.write(&ev);
            }
        };
        if log.send(Box::new(job)).is_err() {
            return Err(std::io::Error::other("the event-log thread is gone"));
        }
    }
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let finish = move || {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let written = std::mem::replace(&mut s.1, Ok(()));
        let _ = done_tx.send(written.and(s.0.finish()));
    };
    if log.send(Box::new(finish)).is_err() {
        return Err(std::io::Error::other("the event-log thread is gone"));
    }
    done.await.unwrap_or_else(|_| Err(std::io::Error::other("the event-log thread stopped")))
}

type LogJob = Box<dyn FnOnce() + Send>;

/// The process's event-log thread: every call's log writes run there, in order per call, so
/// file I/O never blocks an async worker (a stalled disk delays logs, not calls).
fn event_log_thread() -> &'static std::sync::mpsc::Sender<LogJob> {
    static THREAD: std::sync::OnceLock<std::sync::mpsc::Sender<LogJob>> = std::sync::OnceLock::new();
    THREAD.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<LogJob>();
        std::thread::Builder::new()
            .name("voxpipe-event-log".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .expect("spawn the event-log thread");
        tx
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EVENT_CAPACITY, Event, EventSender};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};

    /// A writer stuck on a disk that does not answer until the gate opens.
    struct Stalled {
        gate: Arc<(Mutex<bool>, Condvar)>,
        written: Arc<AtomicUsize>,
    }

    impl EventWriter for Stalled {
        fn write(&mut self, _: &Event) -> std::io::Result<()> {
            let (open, cv) = &*self.gate;
            let _open = cv.wait_while(open.lock().unwrap(), |open| !*open).unwrap();
            self.written.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn finish(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_event_log_never_holds_up_the_call_and_loses_nothing() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let written = Arc::new(AtomicUsize::new(0));
        let writer = Stalled { gate: gate.clone(), written: written.clone() };
        let (events, rx) = EventSender::channel(crate::Clock::start_now());
        let log = tokio::spawn(write_events(Some(Box::new(writer)), rx));
        // Three times the channel's capacity while the disk is stuck: every emit returns (a
        // liveness guard, not a timing claim: the old writer blocked the call here for good).
        let n = 3 * EVENT_CAPACITY;
        let emitted = async {
            for _ in 0..n {
                events.emit(EventKind::Dtmf { digits: "1".into() }).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), emitted).await.expect("emit waited on the disk");
        assert_eq!(written.load(Ordering::SeqCst), 0, "the disk is still stuck");
        // The disk comes back: everything is written, in the end, before the log reports done.
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(events);
        log.await.unwrap().unwrap();
        assert_eq!(written.load(Ordering::SeqCst), n);
    }
}
