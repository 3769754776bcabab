//! The `llm.local` stage: turns, streaming, tool rounds and interruption, on top of a
//! [`WorkerProcess`] that runs the model.

use crate::model::resolve;
use crate::prompt::{ChatMessage, messages, preamble, system_prompt};
use crate::protocol::{Finish, Reply, TokenUsage};
use crate::text::parse_tool_call;
use crate::worker::{WorkerProcess, locate};
use crate::{Error, LocalLlmConfig};
use async_trait::async_trait;
use std::time::Instant;
use tokio::sync::broadcast;
use tracing::{debug, warn};
use voxpipe_core::history::{AssistantPart, History};
use voxpipe_core::{
    CallContext, Control, EventKind, Frame, Inbox, ItemId, Outbox, ResponseDone, ResponseStarted,
    ResponseStatus, Stage, StageError, TextDelta, ToolAction, ToolCall, ToolSpec, Transcript, Usage,
};

/// The stage name.
pub const STAGE_NAME: &str = "llm.local";

/// The `llm.local` stage: a client of a `voxpipe-llm-worker` process running llama.cpp. See
/// the [crate docs](crate).
#[derive(Debug)]
pub struct LocalLlm {
    config: LocalLlmConfig,
    worker: Option<WorkerProcess>,
}

impl LocalLlm {
    /// A stage that starts its worker when the call starts (pulling a catalog model into the
    /// cache if needed).
    ///
    /// # Errors
    /// [`Error::Config`] for out-of-range values.
    pub fn new(config: LocalLlmConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self { config, worker: None })
    }

    /// A stage whose worker is started and whose model is loaded now, so the call starts at
    /// once and a missing worker or a bad model fails before it.
    ///
    /// # Errors
    /// As [`LocalLlm::new`], then [`Error::ModelNotFound`], [`Error::Store`],
    /// [`Error::WorkerNotFound`], or the worker's load error.
    pub async fn load(config: LocalLlmConfig) -> Result<Self, Error> {
        let mut stage = Self::new(config)?;
        stage.worker = Some(start_worker(&stage.config).await?);
        Ok(stage)
    }

    /// The running worker's process id, once started.
    pub fn worker_pid(&self) -> Option<u32> {
        self.worker.as_ref().and_then(WorkerProcess::pid)
    }
}

/// Resolves the model, finds the worker program, starts it and loads the model.
async fn start_worker(config: &LocalLlmConfig) -> Result<WorkerProcess, Error> {
    let model = resolve(&config.model).await?;
    let program = locate(config.worker.as_deref())?;
    WorkerProcess::start(&program, &model, config.settings()).await
}

#[async_trait]
impl Stage for LocalLlm {
    fn name(&self) -> &str {
        STAGE_NAME
    }

    async fn run(self: Box<Self>, ctx: CallContext, input: Inbox, out: Outbox) -> Result<(), StageError> {
        let control = ctx.control.subscribe();
        let LocalLlm { config, worker } = *self;
        let started = async {
            match worker {
                Some(w) => Ok(w),
                None => start_worker(&config).await,
            }
        };
        let specs: Vec<ToolSpec> = if config.tools { ctx.tools.specs().to_vec() } else { Vec::new() };
        check_examples(&config, &specs).map_err(|e| StageError::new(STAGE_NAME, e))?;
        let preamble =
            preamble(&system_prompt(&config.instructions, &specs), &config.examples, !specs.is_empty());
        let mut worker = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Ok(()),
            w = started => w.map_err(|e| StageError::new(STAGE_NAME, e))?,
        };
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Ok(()),
            r = warm_up(&mut worker, preamble.clone()) => r.map_err(|e| StageError::new(STAGE_NAME, e))?,
        }
        let restarts_left = config.restarts;
        let call = Call {
            config,
            worker,
            specs,
            preamble,
            history: History::new(),
            turns: 0,
            control,
            restarts_left,
        };
        call.run(ctx, input, out).await
    }
}

/// An example's tool call must name one of the tools offered to the model.
fn check_examples(config: &LocalLlmConfig, specs: &[ToolSpec]) -> Result<(), Error> {
    let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let Some((i, name)) = config.unknown_example_tool(&known) else { return Ok(()) };
    let declared = if known.is_empty() { "none are declared".to_string() } else { known.join(", ") };
    let message =
        format!("`examples[{i}].tool_call.name` = `{name}` is not one of the pipeline's tools ({declared})");
    Err(Error::Config { message })
}

/// Evaluates the fixed start of every request (system prompt, tools, examples) into the
/// worker's KV cache before the caller's first turn, so that turn's first token does not wait
/// for it. A failure is logged: the first request evaluates the prompt instead.
async fn warm_up(worker: &mut WorkerProcess, preamble: Vec<ChatMessage>) -> Result<(), Error> {
    if preamble.is_empty() {
        return Ok(());
    }
    let id = worker.prefill(preamble).await?;
    loop {
        match worker.recv().await? {
            Reply::Prefilled { id: i, usage, ms, .. } if i == id => {
                debug!(tokens = usage.prompt_tokens, ms, "prompt prefix evaluated");
                return Ok(());
            }
            Reply::Error { id: i, code, message, fatal } if i.is_none_or(|i| i == id) => {
                let error = Error::Worker { code, message, fatal };
                if error.is_fatal() {
                    return Err(error);
                }
                warn!(%error, "warming the model up failed; the first reply will evaluate the prompt");
                return Ok(());
            }
            other => debug!(?other, "unexpected reply while warming up"),
        }
    }
}

/// How one generation request ended, as the worker reported it.
#[derive(Debug)]
struct Outcome {
    finish: Finish,
    tool_call: Option<String>,
    usage: TokenUsage,
}

/// The call was cancelled or downstream is gone: return without error.
struct Stop;

/// A stage's state for one call.
struct Call {
    config: LocalLlmConfig,
    worker: WorkerProcess,
    /// The tools offered to the model (none when `tools` is off).
    specs: Vec<ToolSpec>,
    /// The fixed start of every request: system prompt with the tools, then the examples.
    preamble: Vec<ChatMessage>,
    history: History,
    turns: u64,
    control: broadcast::Receiver<Control>,
    /// Worker restarts still allowed in this call.
    restarts_left: u32,
}

/// How one generation request ended.
enum RoundEnd {
    /// It ran to an end of its own; `text` is what was sent downstream.
    Done { text: String, outcome: Outcome },
    /// `Control::Interrupt` stopped it.
    Interrupted { text: String, outcome: Option<Outcome> },
    /// It failed.
    Failed { text: String, error: Error },
}

impl Call {
    async fn run(mut self, ctx: CallContext, mut input: Inbox, out: Outbox) -> Result<(), StageError> {
        loop {
            let frame = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Ok(()),
                () = interrupted(&mut self.control) => {
                    let dropped = input.flush_interruptible();
                    debug!(dropped, "interrupt while idle");
                    continue;
                }
                f = input.recv() => f,
            };
            let Some(frame) = frame else { return Ok(()) };
            let result = match frame {
                Frame::UserTranscript(t) if t.is_final && !t.text.trim().is_empty() => {
                    let text = t.text.trim().to_string();
                    if send(&ctx, &out, Frame::UserTranscript(t)).await.is_err() {
                        return Ok(());
                    }
                    self.history.push_user(text);
                    self.turn(&ctx, &mut input, &out).await
                }
                Frame::EndOfStream => {
                    let _ = send(&ctx, &out, Frame::EndOfStream).await;
                    return Ok(());
                }
                other => send(&ctx, &out, other).await.map_err(|_| None),
            };
            match result {
                Ok(()) => {}
                Err(None) => return Ok(()),
                Err(Some(e)) => return Err(StageError::new(STAGE_NAME, e)),
            }
        }
    }

    /// One model turn: generation rounds and tool calls until a spoken answer. `Err(None)`
    /// means stop quietly, `Err(Some(e))` a fatal error.
    async fn turn(
        &mut self,
        ctx: &CallContext,
        input: &mut Inbox,
        out: &Outbox,
    ) -> Result<(), Option<Error>> {
        self.turns += 1;
        let turn = self.turns;
        let reply: ItemId = format!("reply_{turn}").into();
        let started = Frame::ResponseStarted(ResponseStarted { response_id: reply.to_string() });
        send(ctx, out, started).await.map_err(|_| None)?;
        let (mut spoken, mut usage, mut end_call, mut round) = (String::new(), Usage::default(), false, 0);
        let requested_at = Instant::now();
        let mut first_token_pending = true;
        let (status, reason, failure) = loop {
            // The prompt stays the same when the rounds run out (so the KV cache still holds
            // it); a tool call then ends the reply instead of running.
            let tools = !self.specs.is_empty();
            let offer = tools && round < self.config.max_tool_rounds;
            let request = messages(&self.preamble, &self.history);
            let first_token = first_token_pending.then_some(requested_at);
            let end = self.round(ctx, out, &reply, request, tools, first_token).await.map_err(|Stop| None)?;
            first_token_pending &= matches!(&end, RoundEnd::Done { text, .. } if text.is_empty());
            match end {
                RoundEnd::Done { text, outcome } => {
                    add_usage(&mut usage, Some(&outcome));
                    spoken.push_str(&text);
                    let body = match (outcome.finish, outcome.tool_call) {
                        (Finish::ToolCall, Some(body)) => body,
                        (finish, _) => {
                            self.history.push_assistant(vec![AssistantPart::Text(text)]);
                            break match finish {
                                Finish::Length => {
                                    (ResponseStatus::Incomplete, Some("max_tokens".into()), None)
                                }
                                Finish::Cancelled => (ResponseStatus::Cancelled, None, None),
                                _ => (ResponseStatus::Completed, None, None),
                            };
                        }
                    };
                    if !offer {
                        warn!(rounds = round, "the model asked for another tool after the last tool round");
                        self.history.push_assistant(vec![AssistantPart::Text(text)]);
                        break (ResponseStatus::Incomplete, Some("max_tool_rounds".into()), None);
                    }
                    let call = match parse_tool_call(&body) {
                        Ok(call) => call,
                        Err(message) => {
                            warn!(%message, "the model produced an unusable tool call");
                            self.history.push_assistant(vec![AssistantPart::Text(text)]);
                            break (ResponseStatus::Incomplete, Some("bad_tool_call".into()), None);
                        }
                    };
                    let call = ToolCall {
                        call_id: format!("call_{turn}_{round}"),
                        name: call.name,
                        arguments: call.arguments.to_string(),
                    };
                    let (result, was_interrupted) = self.run_tool(ctx, input, out, &call).await?;
                    end_call |= result.action == Some(ToolAction::EndCall);
                    let input_json = serde_json::from_str(&call.arguments).unwrap_or_default();
                    let parts =
                        vec![AssistantPart::Text(text), AssistantPart::ToolUse { call, input: input_json }];
                    self.history.push_assistant(parts);
                    self.history.push_tool_results(vec![result]);
                    if was_interrupted {
                        break (ResponseStatus::Cancelled, Some("interrupted".into()), None);
                    }
                    round += 1;
                }
                RoundEnd::Interrupted { text, outcome } => {
                    let dropped = input.flush_interruptible();
                    add_usage(&mut usage, outcome.as_ref());
                    debug!(dropped, generated = text.len(), "response interrupted");
                    self.history.push_assistant(vec![AssistantPart::Text(text)]);
                    break (ResponseStatus::Cancelled, Some("interrupted".into()), None);
                }
                RoundEnd::Failed { text, error } if self.may_restart(&error) => {
                    self.restart(ctx, &error).await?;
                    if text.is_empty() {
                        // Nothing was said yet: ask the new worker the same question.
                        continue;
                    }
                    spoken.push_str(&text);
                    self.history.push_assistant(vec![AssistantPart::Text(text)]);
                    break (ResponseStatus::Failed, Some(error.code().to_string()), None);
                }
                RoundEnd::Failed { text, error } => {
                    spoken.push_str(&text);
                    self.history.push_assistant(vec![AssistantPart::Text(text)]);
                    break (ResponseStatus::Failed, Some(error.code().to_string()), Some(error));
                }
            }
        };
        self.finish_turn(ctx, out, &reply, spoken, (status, reason), usage, failure.as_ref()).await?;
        if let Some(e) = failure.filter(Error::is_fatal) {
            return Err(Some(e));
        }
        if end_call {
            ctx.control.send(Control::EndCall);
        }
        Ok(())
    }

    /// Whether a failed request is a crashed worker that may be replaced.
    fn may_restart(&self, error: &Error) -> bool {
        matches!(error, Error::WorkerDied { .. }) && self.restarts_left > 0
    }

    /// Reports a crashed worker, then starts and warms up a new one: the conversation lives
    /// here, so the next request carries all of it. `Err(Some(_))` when the new one fails too.
    async fn restart(&mut self, ctx: &CallContext, crash: &Error) -> Result<(), Option<Error>> {
        self.restarts_left -= 1;
        warn!(error = %crash, restarts_left = self.restarts_left, "llm worker crashed; starting a new one");
        let kind = EventKind::ProviderError {
            stage: STAGE_NAME.into(),
            code: Some(crash.code().into()),
            message: format!("{crash} (restarting it; {} restart(s) left)", self.restarts_left),
        };
        ctx.events.emit(kind).await;
        let started = Instant::now();
        let restarted = async {
            let mut worker = start_worker(&self.config).await?;
            warm_up(&mut worker, self.preamble.clone()).await?;
            Ok::<_, Error>(worker)
        };
        let worker = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Err(None),
            w = restarted => w.map_err(Some)?,
        };
        self.worker = worker;
        debug!(took = ?started.elapsed(), "llm worker restarted");
        Ok(())
    }

    /// Sends the final transcript and `ResponseDone`, and logs a non-fatal failure.
    #[allow(clippy::too_many_arguments)]
    async fn finish_turn(
        &self,
        ctx: &CallContext,
        out: &Outbox,
        reply: &ItemId,
        spoken: String,
        (status, reason): (ResponseStatus, Option<String>),
        usage: Usage,
        failure: Option<&Error>,
    ) -> Result<(), Option<Error>> {
        if let Some(error) = failure {
            warn!(%error, "response failed");
            if !error.is_fatal() {
                let kind = EventKind::ProviderError {
                    stage: STAGE_NAME.into(),
                    code: Some(error.code().into()),
                    message: error.to_string(),
                };
                ctx.events.emit(kind).await;
            }
        }
        if !spoken.is_empty() && status != ResponseStatus::Cancelled {
            let text = Transcript { item: Some(reply.clone()), text: spoken, is_final: true };
            send(ctx, out, Frame::AssistantTranscript(text)).await.map_err(|_| None)?;
        }
        let done = ResponseDone { response_id: reply.to_string(), status, reason, usage: Some(usage) };
        send(ctx, out, Frame::ResponseDone(done)).await.map_err(|_| None)
    }

    /// One generation request; text pieces go downstream as `TextDelta`s as they arrive.
    /// With `first_token`, the time from then to the first text is the turn's
    /// `llm_first_token_ms` metric.
    async fn round(
        &mut self,
        ctx: &CallContext,
        out: &Outbox,
        reply: &ItemId,
        messages: Vec<crate::prompt::ChatMessage>,
        tools: bool,
        mut first_token: Option<Instant>,
    ) -> Result<RoundEnd, Stop> {
        let mut text = String::new();
        let id = match self.worker.generate(messages, tools).await {
            Ok(id) => id,
            Err(error) => return Ok(RoundEnd::Failed { text, error }),
        };
        loop {
            let received = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Err(Stop),
                () = interrupted(&mut self.control) => return drain(ctx, &mut self.worker, id, text).await,
                r = self.worker.recv() => r,
            };
            let reply_msg = match received {
                Ok(r) => r,
                Err(error) => return Ok(RoundEnd::Failed { text, error }),
            };
            match reply_msg {
                Reply::Delta { id: i, text: piece, .. } if i == id => {
                    let permit = tokio::select! {
                        biased;
                        () = ctx.cancel.cancelled() => return Err(Stop),
                        () = interrupted(&mut self.control) => return drain(ctx, &mut self.worker, id, text).await,
                        p = out.reserve() => p.map_err(|_| Stop)?,
                    };
                    if let Some(at) = first_token.take() {
                        let value_ms = at.elapsed().as_millis() as u64;
                        let turn = u32::try_from(self.turns).unwrap_or(u32::MAX);
                        debug!(value_ms, "first token");
                        ctx.events
                            .emit(EventKind::Metric { name: "llm_first_token_ms".into(), turn, value_ms })
                            .await;
                    }
                    text.push_str(&piece);
                    permit.send(Frame::TextDelta(TextDelta { item: reply.clone(), text: piece }));
                }
                Reply::Done { id: i, finish, tool_call, usage, ttft_ms, .. } if i == id => {
                    debug!(?finish, ?usage, ?ttft_ms, "generation done");
                    return Ok(RoundEnd::Done { text, outcome: Outcome { finish, tool_call, usage } });
                }
                Reply::Error { id: i, code, message, fatal } if i.is_none_or(|i| i == id) => {
                    return Ok(RoundEnd::Failed { text, error: Error::Worker { code, message, fatal } });
                }
                stale => debug!(?stale, "reply to an earlier request ignored"),
            }
        }
    }

    /// Runs one tool call and reports it downstream. An interruption does not stop the tool
    /// (its result stays in history); it is returned as `true`.
    async fn run_tool(
        &mut self,
        ctx: &CallContext,
        input: &mut Inbox,
        out: &Outbox,
        call: &ToolCall,
    ) -> Result<(voxpipe_core::ToolResult, bool), Option<Error>> {
        send(ctx, out, Frame::ToolCall(call.clone())).await.map_err(|_| None)?;
        let tools = ctx.tools.clone();
        let running = tools.call(call);
        tokio::pin!(running);
        let mut was_interrupted = false;
        let result = loop {
            tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Err(None),
                () = interrupted(&mut self.control) => {
                    input.flush_interruptible();
                    was_interrupted = true;
                }
                r = &mut running => break r,
            }
        };
        send(ctx, out, Frame::ToolResult(result.clone())).await.map_err(|_| None)?;
        Ok((result, was_interrupted))
    }
}

/// After an interrupt: asks the worker to stop (within one token step) and waits for it to
/// confirm, discarding text generated meanwhile.
async fn drain(
    ctx: &CallContext,
    worker: &mut WorkerProcess,
    id: u64,
    text: String,
) -> Result<RoundEnd, Stop> {
    if worker.cancel(id).await.is_err() {
        return Ok(RoundEnd::Interrupted { text, outcome: None });
    }
    loop {
        let received = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Err(Stop),
            r = worker.recv() => r,
        };
        match received {
            Ok(Reply::Done { id: i, finish, tool_call, usage, cancelled_at, .. }) if i == id => {
                debug!(?cancelled_at, generated = usage.generated_tokens, "generation cancelled");
                return Ok(RoundEnd::Interrupted {
                    text,
                    outcome: Some(Outcome { finish, tool_call, usage }),
                });
            }
            Ok(Reply::Error { id: i, .. }) if i.is_none_or(|i| i == id) => {
                return Ok(RoundEnd::Interrupted { text, outcome: None });
            }
            Ok(_) => {}
            Err(_) => return Ok(RoundEnd::Interrupted { text, outcome: None }),
        }
    }
}

/// Resolves when a `Control::Interrupt` arrives; other messages are skipped. Cancel-safe.
async fn interrupted(control: &mut broadcast::Receiver<Control>) {
    loop {
        match control.recv().await {
            Ok(Control::Interrupt { .. }) => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// Sends a frame that interruption does not discard, unless the call is cancelled.
async fn send(ctx: &CallContext, out: &Outbox, frame: Frame) -> Result<(), Stop> {
    tokio::select! {
        biased;
        () = ctx.cancel.cancelled() => Err(Stop),
        r = out.send(frame) => r.map_err(|_| Stop),
    }
}

fn add_usage(total: &mut Usage, outcome: Option<&Outcome>) {
    let Some(o) = outcome else { return };
    total.input_tokens += o.usage.prompt_tokens;
    total.input_text_tokens += o.usage.prompt_tokens;
    total.cached_tokens += o.usage.reused_tokens;
    total.output_tokens += o.usage.generated_tokens;
    total.output_text_tokens += o.usage.generated_tokens;
}
