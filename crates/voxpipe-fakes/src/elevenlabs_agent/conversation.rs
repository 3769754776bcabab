//! One agent conversation: the message loop, initiation, turn taking (energy VAD on the
//! caller's audio), client tools, barge-in and pings.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::config::{AgentConfig, AgentScriptedResponse, ElevenLabsAgentFakeConfig};
use super::reply::Reply;
use super::wire::{self, ClientMessage, Format, Initiation, Refusal};
use super::{AgentTurn, Shared};
use crate::fault::Fault;
use crate::vad::{Endpointing, Vad, VadEvent};

/// Outgoing queue depth (messages) between the conversation and its writer.
const OUT_QUEUE: usize = 256;
/// How long the server waits for the client's close reply after closing.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What the conversation hands the writer.
#[derive(Debug)]
pub(super) enum Out {
    Json(String),
    Close(u16, String),
    /// Drop the socket without a close frame.
    Abort,
}

/// The VAD's end-of-turn settings.
struct Turn {
    silence_ms: u64,
}

impl Endpointing for Turn {
    fn threshold(&self) -> f64 {
        0.5
    }
    fn prefix_padding_ms(&self) -> u64 {
        300
    }
    fn silence_duration_ms(&self) -> u64 {
        self.silence_ms.max(1)
    }
}

/// State of one connection. Handlers run one at a time on the connection's task.
pub(crate) struct Conversation {
    pub(super) id: usize,
    pub(super) cfg: Arc<ElevenLabsAgentFakeConfig>,
    pub(super) shared: Arc<Shared>,
    out: mpsc::Sender<Out>,
    pub(super) agent: AgentConfig,
    pub(super) out_format: Format,
    in_format: Format,
    initiated: bool,
    pub(super) history: Vec<AgentTurn>,
    ordered_used: usize,
    vad: Vad,
    pub(super) reply: Option<Reply>,
    queued: Option<AgentScriptedResponse>,
    /// Client tool calls waiting for a result: (id, name, deadline).
    pub(super) pending_tools: Vec<(String, String, Instant)>,
    pub(super) next_tool: u64,
    /// The last `audio` event id sent.
    pub(super) audio_event_id: i64,
    next_ping_at: Option<Instant>,
    next_ping_id: i64,
    /// Pings sent and not answered: (event id, sent at).
    pings: VecDeque<(i64, Instant)>,
    rtt_ms: Option<u64>,
    pub(super) chunks_sent: usize,
    pub(super) fault: Option<Fault>,
    pub(super) injected: bool,
    pub(super) stalled: bool,
    pub(super) ended: bool,
    pub(super) aborted: bool,
}

impl Conversation {
    /// Runs the connection until the client leaves, a refusal or fault closes it or the server
    /// stops.
    pub(crate) async fn run(
        socket: WebSocket,
        id: usize,
        shared: Arc<Shared>,
        stop: CancellationToken,
        fault: Option<Fault>,
        admitted: Result<AgentConfig, Refusal>,
    ) {
        let (sink, mut stream) = socket.split();
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        let writer = tokio::spawn(write_loop(sink, rx));
        let agent = admitted.clone().unwrap_or_else(|_| AgentConfig::public(""));
        let fmt = |name: &str| Format::parse(name).unwrap_or(Format { rate: 16_000, ulaw: false });
        let mut c = Conversation {
            id,
            cfg: shared.config.clone(),
            shared,
            out: tx,
            out_format: fmt(&agent.output_format),
            in_format: fmt(&agent.input_format),
            agent,
            initiated: false,
            history: Vec::new(),
            ordered_used: 0,
            vad: Vad::new(),
            reply: None,
            queued: None,
            pending_tools: Vec::new(),
            next_tool: 0,
            audio_event_id: 0,
            next_ping_at: None,
            next_ping_id: 0,
            pings: VecDeque::new(),
            rtt_ms: None,
            chunks_sent: 0,
            fault,
            injected: false,
            stalled: false,
            ended: false,
            aborted: false,
        };
        if let Err(r) = admitted {
            c.close(r).await;
        }
        while !c.ended {
            let due = c.due();
            let tick = async move {
                match due {
                    Some(d) => sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(t))) => c.on_text(t.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        c.close(Refusal { code: 1003, reason: "Binary frames are not supported: send JSON text.".into() }).await;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(connection = id, error = %e, "elevenlabs agent fake: read failed");
                        break;
                    }
                },
                () = tick => c.on_timer().await,
            }
        }
        let Conversation { out, aborted, .. } = c;
        drop(out);
        if aborted {
            drop(stream);
            let _ = writer.await;
            return;
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        let _ = writer.await;
    }

    fn due(&self) -> Option<Instant> {
        let reply = self.reply.as_ref().filter(|_| !self.stalled).map(|r| r.next_at);
        let pong = self.pings.front().map(|(_, at)| *at + Duration::from_millis(self.cfg.pong_timeout_ms));
        let tool = self.pending_tools.iter().map(|t| t.2).min();
        [reply, self.next_ping_at, pong, tool].into_iter().flatten().min()
    }

    pub(super) async fn send_out(&mut self, out: Out) {
        if self.out.send(out).await.is_err() {
            self.ended = true;
        }
    }

    /// Sends a server message.
    pub(super) async fn send(&mut self, msg: Value) {
        self.send_out(Out::Json(msg.to_string())).await;
    }

    /// Closes the socket with `r` (and records it).
    async fn close(&mut self, r: Refusal) {
        tracing::debug!(connection = self.id, code = r.code, reason = %r.reason, "elevenlabs agent fake: closing");
        self.shared.record_close(self.id, r.code, &r.reason);
        self.send_out(Out::Close(r.code, r.reason)).await;
        self.ended = true;
    }

    pub(super) fn push_history(&mut self, role: &str, text: &str) {
        self.history.push(AgentTurn { role: role.to_string(), text: text.to_string() });
        self.shared.set_history(self.id, &self.history);
    }

    async fn on_text(&mut self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            self.shared.record(self.id, Value::String(text.to_string()));
            return self.close(Refusal::invalid("Invalid message received: not JSON.")).await;
        };
        self.shared.record(self.id, recorded(&v));
        let result = match wire::read(&v) {
            Ok(m) => self.dispatch(m).await,
            Err(r) => Err(r),
        };
        if let Err(r) = result {
            self.close(r).await;
        }
    }

    async fn dispatch(&mut self, m: ClientMessage) -> Result<(), Refusal> {
        if !self.initiated {
            let ClientMessage::Initiation(init) = m else {
                return Err(Refusal::policy(
                    "Conversation not initiated: send conversation_initiation_client_data first.",
                ));
            };
            return self.on_initiation(init).await;
        }
        match m {
            ClientMessage::Initiation(_) => {
                Err(Refusal::policy("conversation_initiation_client_data may only be sent once."))
            }
            ClientMessage::Audio(bytes) => {
                self.on_audio(&bytes).await;
                Ok(())
            }
            ClientMessage::Pong(id) => {
                if let Some(i) = self.pings.iter().position(|(p, _)| *p == id) {
                    let sent = self.pings[i].1;
                    self.pings.drain(..=i);
                    self.rtt_ms = Some(sent.elapsed().as_millis() as u64);
                }
                Ok(())
            }
            ClientMessage::ToolResult { tool_call_id, result, is_error } => {
                self.on_tool_result(&tool_call_id, &result, is_error).await
            }
            ClientMessage::ContextualUpdate(text) => {
                self.push_history("context", &text);
                Ok(())
            }
            ClientMessage::UserMessage(text) => {
                self.interrupt().await;
                self.push_history("user", &text);
                self.user_turn_ended(Some(text), false).await;
                Ok(())
            }
            ClientMessage::UserActivity => Ok(()),
        }
    }

    async fn on_initiation(&mut self, init: Initiation) -> Result<(), Refusal> {
        let o = &init.overrides;
        if let Some(name) = o.names().into_iter().find(|n| !self.agent.allow_overrides.iter().any(|a| a == n))
        {
            return Err(Refusal::policy(format!("Override for field '{name}' is not allowed by config.")));
        }
        let vars = &init.dynamic_variables;
        let prompt = o.prompt.clone().unwrap_or_else(|| self.agent.prompt.clone());
        let prompt = wire::fill(&prompt, vars).map_err(|m| missing("prompt", &m))?;
        let first = o.first_message.clone().unwrap_or_else(|| self.agent.first_message.clone());
        let first = wire::fill(&first, vars).map_err(|m| missing("first message", &m))?;
        if let Some(l) = &o.language {
            self.agent.language = l.clone();
        }
        if let Some(v) = &o.voice_id {
            self.agent.voice_id = v.clone();
        }
        self.initiated = true;
        self.push_history("system", &prompt);
        let meta = json!({
            "conversation_id": format!("conv_fake{:06}", self.id),
            "agent_output_audio_format": self.agent.output_format,
            "user_input_audio_format": self.agent.input_format,
        });
        self.send(json!({"type": "conversation_initiation_metadata", "conversation_initiation_metadata_event": meta}))
            .await;
        if self.cfg.ping_interval_ms > 0 {
            self.next_ping_at = Some(Instant::now() + Duration::from_millis(self.cfg.ping_interval_ms));
        }
        if !first.is_empty() {
            self.start(AgentScriptedResponse::say(first), true);
        }
        Ok(())
    }

    async fn on_audio(&mut self, bytes: &[u8]) {
        let mut samples = Vec::new();
        self.in_format.decode(bytes, &mut samples);
        let mut events = Vec::new();
        let turn = Turn { silence_ms: self.cfg.turn_silence_ms };
        self.vad.push(&samples, self.in_format.rate, &turn, &self.cfg.vad, &mut events);
        for e in events {
            match e {
                VadEvent::Started { .. } => {
                    self.send(json!({"type": "vad_score", "vad_score_event": {"vad_score": 0.95}})).await;
                    self.interrupt().await;
                }
                VadEvent::Stopped { .. } => {
                    self.send(json!({"type": "vad_score", "vad_score_event": {"vad_score": 0.05}})).await;
                    self.user_turn_ended(None, true).await;
                }
            }
        }
    }

    /// The caller started talking (or typed): the agent stops; if audio went out, the caller
    /// gets `interruption` and the correction to the words heard.
    async fn interrupt(&mut self) {
        self.queued = None;
        let Some(r) = self.reply.take() else { return };
        if r.sent_ms == 0 {
            return;
        }
        let heard = r.heard_text();
        self.send(json!({"type": "interruption", "interruption_event": {"event_id": self.audio_event_id}}))
            .await;
        let correction = json!({"original_agent_response": r.text, "corrected_agent_response": heard});
        self.send(
            json!({"type": "agent_response_correction", "agent_response_correction_event": correction}),
        )
        .await;
        if !heard.is_empty() {
            self.push_history("agent", &heard);
        }
    }

    /// The caller's turn is over: answer it. `audio`: it was spoken (report a transcript).
    async fn user_turn_ended(&mut self, said: Option<String>, audio: bool) {
        let (script, used) = self.cfg.response(said.as_deref(), self.ordered_used);
        if used {
            self.ordered_used += 1;
        }
        if audio {
            let transcript = script.user_transcript.clone().unwrap_or_else(|| "(user speech)".to_string());
            self.send(json!({"type": "user_transcript", "user_transcription_event": {"user_transcript": transcript}}))
                .await;
            self.push_history("user", &transcript);
        }
        if self.reply.is_some() {
            self.queued = Some(script);
            return;
        }
        self.start(script, false);
    }

    pub(super) fn start(&mut self, script: AgentScriptedResponse, first: bool) {
        let delay = Duration::from_millis(self.cfg.first_audio_delay_ms);
        self.reply = Some(Reply::new(script, first, Instant::now() + delay));
    }

    /// The reply's playback is over: the next queued one starts.
    pub(super) fn reply_done(&mut self) {
        if let Some(script) = self.queued.take() {
            self.start(script, false);
        }
    }

    async fn on_tool_result(&mut self, id: &str, result: &str, is_error: bool) -> Result<(), Refusal> {
        let Some(i) = self.pending_tools.iter().position(|t| t.0 == id) else {
            return Err(Refusal::policy(format!(
                "Invalid message received: client_tool_result for unknown tool_call_id `{id}`."
            )));
        };
        let (_, name, _) = self.pending_tools.remove(i);
        let text = if is_error { format!("{name}: error: {result}") } else { format!("{name}: {result}") };
        self.push_history("tool", &text);
        self.after_tools();
        Ok(())
    }

    /// Every tool call is answered: the agent goes on with the next scripted reply.
    fn after_tools(&mut self) {
        if self.pending_tools.is_empty() && self.reply.is_none() {
            let (script, _) = self.cfg.response(None, self.ordered_used);
            self.ordered_used += 1;
            self.start(script, false);
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        let pong_timeout = Duration::from_millis(self.cfg.pong_timeout_ms);
        if self.pings.front().is_some_and(|(_, at)| *at + pong_timeout <= now) {
            return self.close(Refusal::policy("Ping timeout: no pong received.")).await;
        }
        if self.next_ping_at.is_some_and(|t| t <= now) {
            self.next_ping_id += 1;
            let id = self.next_ping_id;
            self.pings.push_back((id, now));
            self.next_ping_at = Some(now + Duration::from_millis(self.cfg.ping_interval_ms));
            // The spec types `ping_ms` an integer: left out (not null) until a round trip is known.
            let mut ping = json!({"event_id": id});
            if let Some(ms) = self.rtt_ms {
                ping["ping_ms"] = ms.into();
            }
            self.send(json!({"type": "ping", "ping_event": ping})).await;
        }
        let expired: Vec<usize> =
            self.pending_tools.iter().enumerate().filter(|(_, t)| t.2 <= now).map(|(i, _)| i).collect();
        for i in expired.into_iter().rev() {
            let (_, name, _) = self.pending_tools.remove(i);
            self.push_history("tool", &format!("{name}: error: no client_tool_result in time"));
            self.after_tools();
        }
        if self.reply.as_ref().is_some_and(|r| r.next_at <= now) && !self.stalled {
            self.step().await;
        }
    }
}

fn missing(what: &str, names: &[String]) -> Refusal {
    Refusal::policy(format!("Missing required dynamic variables in {what}: {}", names.join(", ")))
}

/// The message as recorded: `user_audio_chunk` replaced by its decoded length.
fn recorded(v: &Value) -> Value {
    use base64::Engine;
    let mut v = v.clone();
    if let Some(data) = v.get("user_audio_chunk").and_then(Value::as_str) {
        let len = base64::engine::general_purpose::STANDARD.decode(data).map_or(0, |d| d.len());
        v["user_audio_chunk"] = json!({"bytes": len});
    }
    v
}

/// Close reasons are at most 123 bytes; cut at a character boundary.
fn reason_of(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Out>,
) {
    while let Some(out) = rx.recv().await {
        let msg = match out {
            Out::Json(t) => Message::Text(t.into()),
            Out::Close(code, reason) => {
                let frame = CloseFrame { code, reason: reason_of(&reason).to_string().into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                let _ = sink.flush().await;
                while rx.recv().await.is_some() {}
                return;
            }
            Out::Abort => return,
        };
        if sink.send(msg).await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}
