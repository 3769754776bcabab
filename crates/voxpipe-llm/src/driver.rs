//! The stage loop shared by every provider: turns, streaming, tool rounds, interruption,
//! retries and failure handling. A [`Provider`] only says how to build a request and how to
//! read its stream.

use crate::Error;
use crate::history::{AssistantPart, History, text_of};
use crate::http::{Abort, Signals};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, info, trace, warn};
use voxpipe_core::time::sleep_until;
use voxpipe_core::{
    CallContext, Control, EventKind, EventSender, Filler, Frame, Inbox, ItemId, Outbox, ResponseDone,
    ResponseStarted, ResponseStatus, Speaker, StageError, TextDelta, ToolAction, ToolBatch, ToolCall,
    ToolResult, ToolSpec, Transcript, Usage,
};

/// Longest wait for the goodbye of an `end_call` turn to start playing before the call is
/// ended anyway (a TTS that never answers must not keep the call open).
const GOODBYE_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the playout position is checked while waiting for the goodbye.
const GOODBYE_POLL: Duration = Duration::from_millis(20);

/// What an accumulator made of one SSE event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// More events follow.
    Continue,
    /// The terminal event (`[DONE]`, `message_stop`).
    Done,
}

/// One model response, accumulated.
#[derive(Clone, Debug, Default)]
pub struct RoundOutput {
    /// Text and tool calls in the order produced.
    pub parts: Vec<AssistantPart>,
    /// Token usage, when reported.
    pub usage: Option<Usage>,
    /// `finish_reason` / `stop_reason`.
    pub stop_reason: Option<String>,
}

/// Turns a provider's SSE events into text fragments and a [`RoundOutput`].
pub(crate) trait Accumulate: Default + Send {
    /// Feeds one event; text to speak goes to `deltas`.
    fn feed(&mut self, event: &crate::sse::Event, deltas: &mut Vec<String>) -> Result<Step, Error>;
    /// True once the response is complete (a stream that ends now lost nothing).
    fn is_complete(&self) -> bool;
    /// The text generated so far.
    fn partial_text(&self) -> String;
    /// The accumulated response.
    fn finish(self) -> RoundOutput;
}

/// Settings every provider shares, converted from its config.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub stage_name: String,
    pub max_tool_rounds: u32,
    pub max_retries: u32,
    pub retry_backoff: Duration,
    pub request_timeout: Duration,
    pub stall_timeout: Duration,
    pub spoken: crate::SpokenFallback,
}

impl Settings {
    /// Settings from a provider config's shared keys.
    pub(crate) fn new(
        stage_name: &str,
        max_tool_rounds: u32,
        http: &crate::http::HttpConfig,
        spoken: &crate::SpokenFallback,
    ) -> Self {
        Self {
            stage_name: stage_name.into(),
            max_tool_rounds,
            max_retries: http.max_retries,
            retry_backoff: Duration::from_millis(http.retry_backoff_ms),
            request_timeout: Duration::from_millis(http.request_timeout_ms),
            stall_timeout: Duration::from_millis(http.stall_timeout_ms),
            spoken: spoken.clone(),
        }
    }
}

/// `base_url` + `path`, refusing a base URL that is not http(s).
pub(crate) fn endpoint(provider: &'static str, base_url: &str, path: &str) -> Result<String, Error> {
    let base = base_url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        let message = format!("base_url must start with http:// or https://, got `{base_url}`");
        return Err(Error::Config { provider, message });
    }
    Ok(format!("{base}/{path}"))
}

/// What differs between providers.
pub(crate) trait Provider: Send + Sync + 'static {
    /// The stream accumulator.
    type Acc: Accumulate;
    /// `openai` or `anthropic`, for errors.
    const NAME: &'static str;
    /// The shared settings.
    fn settings(&self) -> &Settings;
    /// The JSON request body for the conversation so far.
    fn body(&self, history: &History, tools: &[ToolSpec], tools_enabled: bool) -> serde_json::Value;
    /// A POST of `body` with the provider's URL and headers.
    fn request(&self, client: &reqwest::Client, body: &serde_json::Value) -> reqwest::RequestBuilder;
    /// How to fix an authentication failure (`check OPENAI_API_KEY`).
    fn key_hint(&self) -> String;
    /// The model asked for.
    fn model(&self) -> &str;
    /// Whether a last SSE event the body ends without its blank line still counts (see
    /// [`crate::sse::Parser::finish`]). Default: no, as the SSE spec says.
    const KEEP_UNTERMINATED_LAST_EVENT: bool = false;
    /// Whether an error response means the key was refused: 401 and 403 by default (a
    /// provider may answer a bad key with another status, and say so in `body`).
    fn key_refused(&self, status: u16, _body: &str) -> bool {
        matches!(status, 401 | 403)
    }
    /// A retry delay an error body asks for, for providers that put it there rather than in
    /// `Retry-After` (which wins when both are given). Default: none.
    fn retry_delay(&self, _body: &str) -> Option<Duration> {
        None
    }
}

/// A stage's state for one call.
#[derive(Debug)]
pub(crate) struct Driver {
    /// The primary provider, then its fallbacks in order.
    backends: Vec<Box<dyn Backend>>,
    /// The one in use: a failover moves on for the rest of the call.
    active: usize,
    pub history: History,
    turns: u64,
}

/// How a round (one HTTP request and its stream) ended.
pub(crate) enum Round {
    Complete(RoundOutput),
    /// Interrupted: the text generated so far, and what the caller heard of the item playing.
    Interrupted(String, Option<voxpipe_core::PlayedItem>),
    Failed(Error, String),
    Stop,
}

/// Whether the stage loop goes on after a turn.
enum Flow {
    Continue,
    Stop,
}

impl Driver {
    pub fn new<P: Provider + std::fmt::Debug>(provider: P) -> Result<Self, Error> {
        Ok(Self {
            backends: vec![Box::new(Http::new(provider)?)],
            active: 0,
            history: History::new(),
            turns: 0,
        })
    }

    /// Adds a fallback, tried after the ones before it.
    pub fn push_fallback(&mut self, backend: Box<dyn Backend>) {
        self.backends.push(backend);
    }

    /// The primary provider alone (to serve as another stage's fallback).
    pub fn into_primary(mut self) -> Box<dyn Backend> {
        self.backends.swap_remove(0)
    }

    /// The primary's settings: they rule the turn (stage name, tool rounds, spoken lines).
    fn primary(&self) -> &Settings {
        self.backends[0].settings()
    }

    /// The stage loop.
    pub async fn run(mut self, ctx: CallContext, mut input: Inbox, out: Outbox) -> Result<(), StageError> {
        let mut sig = Signals::new(&ctx);
        loop {
            let frame = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Ok(()),
                msg = sig.control.recv() => {
                    if let Ok(Control::Interrupt { played, .. }) = msg {
                        let dropped = input.flush_interruptible();
                        // The reply finished streaming but was still playing: cut it in history
                        // to the words the caller heard.
                        let last: ItemId = format!("reply_{}", self.turns).into();
                        if played.as_ref().is_some_and(|p| p.item == last) {
                            let heard = heard_of(&last, played.as_ref());
                            self.history.truncate_last_assistant(&heard);
                            debug!(dropped, %heard, "interrupt during playout: history cut to what was heard");
                        }
                    }
                    continue;
                }
                f = input.recv() => f,
            };
            let Some(frame) = frame else { return Ok(()) };
            let respond = match frame {
                Frame::UserTranscript(t) if t.is_final && !t.text.trim().is_empty() => {
                    let text = t.text.trim().to_string();
                    if sig.send(&out, Frame::UserTranscript(t)).await.is_err() {
                        return Ok(());
                    }
                    self.history.push_user(text);
                    true
                }
                // Taking over a call: the conversation so far becomes history.
                Frame::Restore(r) => {
                    for line in &r.lines {
                        match line.speaker {
                            Speaker::User => self.history.push_user(line.text.clone()),
                            Speaker::Assistant => {
                                self.history.push_assistant(vec![AssistantPart::Text(line.text.clone())])
                            }
                        }
                    }
                    info!(lines = r.lines.len(), respond = r.respond, "conversation restored");
                    r.respond
                }
                Frame::EndOfStream => {
                    let _ = sig.send(&out, Frame::EndOfStream).await;
                    return Ok(());
                }
                other => {
                    if sig.send(&out, other).await.is_err() {
                        return Ok(());
                    }
                    false
                }
            };
            if respond {
                match self.turn(&ctx, &mut sig, &mut input, &out).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Stop) => return Ok(()),
                    Err(e) => return Err(StageError::new(self.primary().stage_name.clone(), e)),
                }
            }
        }
    }

    /// One model turn: rounds of requests and tool calls until a spoken answer.
    async fn turn(
        &mut self,
        ctx: &CallContext,
        sig: &mut Signals,
        input: &mut Inbox,
        out: &Outbox,
    ) -> Result<Flow, Error> {
        self.turns += 1;
        let reply: ItemId = format!("reply_{}", self.turns).into();
        // Filler speech is its own item, so the TTS closes and speaks it at once.
        let filler_item: ItemId = format!("filler_{}", self.turns).into();
        let mut first_token_pending = true;
        let started = Frame::ResponseStarted(ResponseStarted { response_id: reply.to_string() });
        if sig.send(out, started).await.is_err() {
            return Ok(Flow::Stop);
        }
        let tools: Arc<dyn voxpipe_core::ToolRuntime> = ctx.tools.clone();
        let max_rounds = self.primary().max_tool_rounds;
        let (mut spoken, mut usage, mut end_call) = (String::new(), None::<Usage>, false);
        let mut round = 0;
        let turn_started = Instant::now();
        // A slow line said by a provider that then failed over.
        let mut said_before: Option<String> = None;
        let (status, reason, failure) = loop {
            let tools_enabled = !tools.specs().is_empty() && round < max_rounds;
            if !tools.specs().is_empty() && round == max_rounds {
                warn!(max_rounds, "tool round limit reached: asking for an answer without tools");
            }
            let first_token = first_token_pending.then_some(&ctx.events);
            let rq = RoundRequest {
                out,
                reply: &reply,
                specs: tools.specs(),
                tools_enabled,
                first_token,
                turn: self.turns,
            };
            let (outcome, said_now) = self.backends[self.active].round(&self.history, rq, sig).await;
            let said = said_now.or(said_before.take());
            // A provider that failed before saying anything: the next one takes over, for the
            // rest of the call, and this round is asked of it.
            if let Round::Failed(error, partial) = &outcome
                && partial.is_empty()
                && self.active + 1 < self.backends.len()
            {
                let (from, to) = (self.backends[self.active].label(), self.backends[self.active + 1].label());
                let after_ms = turn_started.elapsed().as_millis() as u64;
                warn!(%from, %to, %error, after_ms, "LLM failover");
                let (stage, reason) = (self.primary().stage_name.clone(), error.to_string());
                ctx.events.emit(EventKind::Failover { stage, from, to, reason, after_ms }).await;
                self.active += 1;
                said_before = said;
                continue;
            }
            // The caller heard the slow-provider line before this round's words: so does history.
            let with_said = |mut parts: Vec<AssistantPart>| {
                if let Some(l) = &said {
                    parts.insert(0, AssistantPart::Text(format!("{l} ")));
                }
                parts
            };
            if let Round::Complete(o) = &outcome
                && !text_of(&o.parts).is_empty()
            {
                first_token_pending = false;
            }
            match outcome {
                Round::Complete(output) => {
                    add_usage(&mut usage, output.usage.as_ref());
                    spoken.push_str(&text_of(&output.parts));
                    let calls: Vec<ToolCall> = output
                        .parts
                        .iter()
                        .filter_map(|p| match p {
                            AssistantPart::ToolUse { call, .. } => Some(call.clone()),
                            _ => None,
                        })
                        .collect();
                    self.history.push_assistant(with_said(output.parts));
                    if calls.is_empty() {
                        break (completion_status(output.stop_reason.as_deref()), output.stop_reason, None);
                    }
                    let Ok(ToolRun { results, interrupted, filler }) =
                        run_tools(sig, input, out, &tools, calls, tools_enabled, &filler_item).await
                    else {
                        return Ok(Flow::Stop);
                    };
                    if let Some(filler) = filler {
                        // Said while the tools ran: part of what the caller heard of this turn.
                        self.history.append_to_last_assistant(&filler);
                    }
                    end_call |= results.iter().any(|r| r.action == Some(ToolAction::EndCall));
                    for r in &results {
                        if let Some(ToolAction::Handoff { reason, target }) = &r.action {
                            let transcript = self.history.transcript();
                            info!(tool = %r.name, %reason, ?target, lines = transcript.len(), "handoff");
                            let (reason, target) = (reason.clone(), target.clone());
                            ctx.events.emit(EventKind::Handoff { reason, target, transcript }).await;
                        }
                    }
                    self.history.push_tool_results(results);
                    if interrupted {
                        break (ResponseStatus::Cancelled, Some("interrupted".into()), None);
                    }
                    if !tools_enabled {
                        // The model called tools although told not to: stop here.
                        break (ResponseStatus::Incomplete, Some("tool_round_limit".into()), None);
                    }
                    round += 1;
                }
                Round::Interrupted(partial, played) => {
                    let dropped = input.flush_interruptible();
                    // History keeps only the words the caller heard of this reply: none if its
                    // audio had not started playing.
                    let heard = heard_of(&reply, played.as_ref());
                    debug!(dropped, generated = partial.len(), heard = %heard, "response interrupted");
                    self.history.push_assistant(with_said(vec![AssistantPart::Text(heard)]));
                    break (ResponseStatus::Cancelled, Some("interrupted".into()), None);
                }
                Round::Failed(error, partial) => {
                    spoken.push_str(&partial);
                    self.history.push_assistant(with_said(vec![AssistantPart::Text(partial)]));
                    break (ResponseStatus::Failed, Some(error.code()), Some(error));
                }
                Round::Stop => return Ok(Flow::Stop),
            }
        };
        if let Some(error) = &failure {
            warn!(%error, "response failed");
            if !error.is_fatal() {
                let stage = self.primary().stage_name.clone();
                let kind =
                    EventKind::ProviderError { stage, code: Some(error.code()), message: error.to_string() };
                ctx.events.emit(kind).await;
            }
        }
        let mut frames = Vec::new();
        if failure.as_ref().is_some_and(|e| !e.is_fatal())
            && let Some(line) = crate::SpokenFallback::line(&self.primary().spoken.failed).map(str::to_string)
        {
            let line = line.as_str();
            // The caller is not left in silence: the failure line, as its own item.
            info!(line, "turn failed: speaking the failure line");
            let item: ItemId = format!("failed_{}", self.turns).into();
            frames.push(Frame::TextDelta(TextDelta { item: item.clone(), text: line.to_string() }));
            frames.push(Frame::AssistantTranscript(Transcript {
                item: Some(item),
                text: line.to_string(),
                is_final: true,
            }));
            if !self.history.append_to_last_assistant(line) {
                self.history.push_assistant(vec![AssistantPart::Text(line.to_string())]);
            }
        }
        let speaks = !spoken.is_empty() && status != ResponseStatus::Cancelled;
        if speaks {
            let text = Transcript { item: Some(reply.clone()), text: spoken, is_final: true };
            frames.push(Frame::AssistantTranscript(text));
        }
        let done = ResponseDone { response_id: reply.to_string(), status, reason, usage };
        frames.push(Frame::ResponseDone(done));
        for f in frames {
            if sig.send(out, f).await.is_err() {
                return Ok(Flow::Stop);
            }
        }
        match failure {
            Some(e) if e.is_fatal() => return Err(e),
            _ => {}
        }
        if end_call {
            // The reply is on its way to TTS; end the call once it has played.
            tokio::spawn(end_call_after_goodbye(ctx.clone(), speaks.then_some(reply)));
        }
        Ok(Flow::Continue)
    }
}

/// One provider behind a stage: its primary, or one of its fallbacks. Object-safe, so one
/// stage can hold providers of different kinds (`llm.openai` falling back to `llm.anthropic`).
#[async_trait::async_trait]
pub(crate) trait Backend: Send + Sync + std::fmt::Debug {
    /// Its settings (retries and timeouts; the primary's also rule the turn).
    fn settings(&self) -> &Settings;
    /// `llm.openai gpt-4o-mini`, for logs and the failover event.
    fn label(&self) -> String;
    /// One request for the conversation so far and its stream; also the slow line, if it was
    /// said while waiting.
    async fn round(
        &self,
        history: &History,
        rq: RoundRequest<'_>,
        sig: &mut Signals,
    ) -> (Round, Option<String>);
}

/// What one round asks of a [`Backend`].
pub(crate) struct RoundRequest<'a> {
    pub out: &'a Outbox,
    pub reply: &'a ItemId,
    pub specs: &'a [ToolSpec],
    pub tools_enabled: bool,
    /// Set while the turn has said nothing: the first text is logged as `llm_first_token_ms`.
    pub first_token: Option<&'a EventSender>,
    pub turn: u64,
}

/// An HTTP [`Provider`] with its client.
#[derive(Debug)]
pub(crate) struct Http<P> {
    provider: P,
    client: reqwest::Client,
}

impl<P: Provider + std::fmt::Debug> Http<P> {
    pub(crate) fn new(provider: P) -> Result<Self, Error> {
        let s = provider.settings();
        let settings =
            voxpipe_http::Settings { connect_timeout: Some(s.request_timeout), ..Default::default() };
        let client = voxpipe_http::client(settings).map_err(|e| Error::Config {
            provider: P::NAME,
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Self { provider, client })
    }
}

#[async_trait::async_trait]
impl<P: Provider + std::fmt::Debug> Backend for Http<P> {
    fn settings(&self) -> &Settings {
        self.provider.settings()
    }

    fn label(&self) -> String {
        format!("{} {}", self.provider.settings().stage_name, self.provider.model())
    }

    /// One request and its stream, text deltas sent downstream as they arrive. With
    /// `first_token`, the time from the request to the first text is logged as the turn's
    /// `llm_first_token_ms` metric.
    async fn round(
        &self,
        history: &History,
        rq: RoundRequest<'_>,
        sig: &mut Signals,
    ) -> (Round, Option<String>) {
        let RoundRequest { out, reply, specs, tools_enabled, mut first_token, turn } = rq;
        let body = self.provider.body(history, specs, tools_enabled);
        let requested_at = Instant::now();
        let spoken = &self.provider.settings().spoken;
        // The slow line: only while the turn has said nothing yet.
        let slow = crate::SpokenFallback::line(&spoken.slow)
            .filter(|_| first_token.is_some())
            .map(|line| (line.to_string(), requested_at + Duration::from_millis(spoken.slow_after_ms)));
        let slow_item: ItemId = format!("wait_{turn}").into();
        let send = crate::http::send_with_retries(&self.provider, &self.client, &body, sig);
        let (sent, said) = say_if_slow(send, slow, &slow_item, out).await;
        let response = match sent {
            Ok(r) => r,
            Err(Abort::Interrupted(played)) => return (Round::Interrupted(String::new(), played), said),
            Err(Abort::Stop) => return (Round::Stop, said),
            Err(Abort::Failed(e)) => return (Round::Failed(e, String::new()), said),
        };
        let round = self.stream(response, sig, out, reply, first_token.take(), requested_at, turn).await;
        (round, said)
    }
}

impl<P: Provider + std::fmt::Debug> Http<P> {
    /// Reads one response's stream, sending text downstream as it comes.
    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        response: reqwest::Response,
        sig: &mut Signals,
        out: &Outbox,
        reply: &ItemId,
        mut first_token: Option<&EventSender>,
        requested_at: Instant,
        turn: u64,
    ) -> Round {
        let stall = self.provider.settings().stall_timeout;
        let mut events = crate::sse::EventReader::new(response.bytes_stream())
            .keep_unterminated_last_event(P::KEEP_UNTERMINATED_LAST_EVENT);
        let mut acc = P::Acc::default();
        let mut deltas = Vec::new();
        loop {
            let deadline = tokio::time::Instant::now() + stall;
            let next = match sig.race(tokio::time::timeout_at(deadline, events.next())).await {
                Ok(next) => next,
                Err(Abort::Interrupted(played)) => return Round::Interrupted(acc.partial_text(), played),
                Err(_) => return Round::Stop,
            };
            let event = match next {
                Err(_) => {
                    return Round::Failed(
                        Error::Stalled { provider: P::NAME, after: stall },
                        acc.partial_text(),
                    );
                }
                Ok(None) if acc.is_complete() => return Round::Complete(acc.finish()),
                Ok(None) => {
                    let e =
                        Error::StreamBroken { provider: P::NAME, message: "the stream ended early".into() };
                    return Round::Failed(e, acc.partial_text());
                }
                Ok(Some(Err(crate::sse::ReadError::TooLarge(e)))) => {
                    let e = Error::TooLarge { provider: P::NAME, what: "SSE event", limit: e.limit };
                    return Round::Failed(e, acc.partial_text());
                }
                Ok(Some(Err(crate::sse::ReadError::Body(message)))) => {
                    let e = Error::StreamBroken { provider: P::NAME, message };
                    return Round::Failed(e, acc.partial_text());
                }
                Ok(Some(Ok(event))) => event,
            };
            trace!(event = %event.event, "sse event");
            let step = match acc.feed(&event, &mut deltas) {
                Ok(step) => step,
                Err(e) => return Round::Failed(e, acc.partial_text()),
            };
            if !deltas.is_empty()
                && let Some(events) = first_token.take()
            {
                let value_ms = requested_at.elapsed().as_millis() as u64;
                let turn = u32::try_from(turn).unwrap_or(u32::MAX);
                debug!(value_ms, "first token");
                events.emit(EventKind::Metric { name: "llm_first_token_ms".into(), turn, value_ms }).await;
            }
            for text in deltas.drain(..) {
                let frame = Frame::TextDelta(TextDelta { item: reply.clone(), text });
                match sig.race(out.reserve()).await {
                    Ok(Ok(permit)) => permit.send(frame),
                    Err(Abort::Interrupted(played)) => return Round::Interrupted(acc.partial_text(), played),
                    Ok(Err(_)) | Err(_) => return Round::Stop,
                }
            }
            if step == Step::Done {
                return Round::Complete(acc.finish());
            }
        }
    }
}

/// Awaits `fut`; if it is still pending at `slow`'s instant, sends `slow`'s line downstream
/// as item `item` first (the TTS speaks it at once) and goes on waiting. Returns the output
/// and the line, if it was said.
async fn say_if_slow<T>(
    fut: impl std::future::Future<Output = T>,
    slow: Option<(String, Instant)>,
    item: &ItemId,
    out: &Outbox,
) -> (T, Option<String>) {
    let Some((line, at)) = slow else { return (fut.await, None) };
    tokio::pin!(fut);
    tokio::select! {
        biased;
        r = &mut fut => return (r, None),
        () = tokio::time::sleep_until(at) => {}
    }
    info!(line, "the provider has not started answering: speaking the slow line");
    let delta = Frame::TextDelta(TextDelta { item: item.clone(), text: line.clone() });
    let done = Frame::AssistantTranscript(Transcript {
        item: Some(item.clone()),
        text: line.clone(),
        is_final: true,
    });
    // Sent while the request goes on; a closed output only means the call is ending.
    let say = async {
        let _ = out.send(delta).await;
        let _ = out.send(done).await;
    };
    let (r, ()) = tokio::join!(fut, say);
    (r, Some(line))
}

/// What running the tool calls of one model response gave.
struct ToolRun {
    /// One result per call, in call order.
    results: Vec<ToolResult>,
    /// The caller barged in while the tools ran.
    interrupted: bool,
    /// The filler spoken while they ran, if any.
    filler: Option<String>,
}

/// Runs every call of one model turn concurrently and reports them downstream. Calls made
/// after the round limit are answered with an error without running. An interruption does
/// not stop running tools (their results stay in history); it is reported in
/// [`ToolRun::interrupted`].
///
/// Filler: when a called tool has one ([`ToolRuntime::filler`](voxpipe_core::ToolRuntime))
/// and the calls are still running after its delay, its text is sent to TTS as item
/// `filler_item` (the shortest delay among the calls wins; at most one filler per response;
/// none after a barge-in).
async fn run_tools(
    sig: &mut Signals,
    input: &mut Inbox,
    out: &Outbox,
    tools: &Arc<dyn voxpipe_core::ToolRuntime>,
    calls: Vec<ToolCall>,
    allowed: bool,
    filler_item: &ItemId,
) -> Result<ToolRun, Abort> {
    for call in &calls {
        sig.send(out, Frame::ToolCall(call.clone())).await?;
    }
    let mut run = ToolRun { results: Vec::new(), interrupted: false, filler: None };
    if allowed {
        let mut batch = ToolBatch::start(tools.clone(), calls);
        run.results = loop {
            let filler_at = batch.filler_at();
            tokio::select! {
                biased;
                r = sig.race(&mut batch) => match r {
                    Ok(results) => break results,
                    Err(Abort::Interrupted(_)) => {
                        input.flush_interruptible();
                        run.interrupted = true;
                        batch.cancel_filler();
                    }
                    Err(e) => return Err(e),
                },
                () = sleep_until(filler_at) => {
                    let Some(Filler { tool, text, after }) = batch.take_filler() else { continue };
                    info!(tool, after_ms = after.as_millis() as u64, filler = %text, "tool still running: speaking the filler");
                    let delta = TextDelta { item: filler_item.clone(), text: text.clone() };
                    sig.send(out, Frame::TextDelta(delta)).await?;
                    let item = Some(filler_item.clone());
                    let done = Transcript { item, text: text.clone(), is_final: true };
                    sig.send(out, Frame::AssistantTranscript(done)).await?;
                    run.filler = Some(text);
                }
            }
        };
    } else {
        run.results = calls
            .iter()
            .map(|c| {
                ToolResult::error(
                    c,
                    "tool call limit for this turn reached; answer without tools",
                    Duration::ZERO,
                )
            })
            .collect();
    }
    for r in &run.results {
        sig.send(out, Frame::ToolResult(r.clone())).await?;
    }
    Ok(run)
}

/// Sends `Control::EndCall` once the goodbye `reply` has started playing (the runner then ends
/// the call when playout goes quiet), or at once when the turn said nothing. Gives up waiting
/// after [`GOODBYE_START_TIMEOUT`].
async fn end_call_after_goodbye(ctx: CallContext, reply: Option<ItemId>) {
    if let Some(reply) = reply {
        let deadline = Instant::now() + GOODBYE_START_TIMEOUT;
        while ctx.playout.current().is_none_or(|p| p.item != reply) {
            if Instant::now() >= deadline {
                warn!(item = %reply, "end_call: the goodbye did not start playing; ending the call anyway");
                break;
            }
            tokio::select! {
                () = ctx.cancel.cancelled() => return,
                () = tokio::time::sleep(GOODBYE_POLL) => {}
            }
        }
    }
    info!("end_call: ending the call once the goodbye has played");
    ctx.control.send(Control::EndCall);
}

fn add_usage(total: &mut Option<Usage>, more: Option<&Usage>) {
    let Some(more) = more else { return };
    let t = total.get_or_insert_with(Usage::default);
    // Saturating: the counts come from the server.
    t.input_tokens = t.input_tokens.saturating_add(more.input_tokens);
    t.output_tokens = t.output_tokens.saturating_add(more.output_tokens);
    t.cached_tokens = t.cached_tokens.saturating_add(more.cached_tokens);
}

fn completion_status(stop_reason: Option<&str>) -> ResponseStatus {
    match stop_reason {
        Some("length" | "max_tokens" | "content_filter" | "refusal") => ResponseStatus::Incomplete,
        _ => ResponseStatus::Completed,
    }
}

/// The words of `reply` the caller heard, per the sink's report (empty when another item, or
/// nothing, was playing).
fn heard_of(reply: &ItemId, played: Option<&voxpipe_core::PlayedItem>) -> String {
    match played {
        Some(p) if &p.item == reply => p.heard.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found reading the code beside `fuzz_anthropic_stream`'s usage finding: the usage of a
    /// turn's rounds (tool calls make several) is summed, and two rounds reporting counts near
    /// `u64::MAX` overflowed the sum.
    #[test]
    fn usage_summed_over_rounds_saturates() {
        let huge = Usage {
            input_tokens: u64::MAX,
            output_tokens: u64::MAX - 1,
            cached_tokens: 7,
            ..Usage::default()
        };
        let mut total = None;
        add_usage(&mut total, Some(&huge));
        add_usage(&mut total, Some(&huge));
        let t = total.unwrap();
        assert_eq!((t.input_tokens, t.output_tokens, t.cached_tokens), (u64::MAX, u64::MAX, 14));
    }
}
