//! The Realtime stage: one WebSocket session per call.

use crate::config::{AudioFormat, Protocol, RealtimeConfig, TurnDetection};
use crate::events::ServerEvent;
use crate::timeline::{Placed, Timeline, VadTiming};
use crate::{Error, session};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, trace, warn};
use voxpipe_core::audio::{StreamResampler, g711, pcm, samples_for_ms};
use voxpipe_core::time::{backoff, sleep_until};
use voxpipe_core::{
    AudioChunk, CallContext, Control, EventKind, Filler, Frame, Inbox, InterruptReason, ItemId, Outbox,
    OutputAudio, PlayedItem, ResponseDone, ResponseStarted, ResponseStatus, Samples, Secret, Stage,
    StageError, ToolAction, ToolBatch, ToolCall, ToolResult, Transcript, batch_results,
};

const NAME: &str = "realtime.openai";
/// Client events queued for the socket writer: 64 events = 6.4 s of 100 ms appends.
const WRITE_CAPACITY: usize = 64;
/// Idle time after the input ended and the last reply finished before the stage closes.
const SETTLE: Duration = Duration::from_millis(600);
/// First pause between reconnect attempts, doubled per attempt (the first retry is at once).
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest server message accepted. The biggest real ones (`response.done` of a long reply,
/// `session.updated` with many tools) are tens of KB; past this a broken or hostile server is
/// cut off (and the session replaced) instead of being buffered without bound.
const MAX_MESSAGE_BYTES: usize = 8 << 20;

fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// The native speech-to-speech stage.
#[derive(Debug)]
pub struct RealtimeStage {
    config: RealtimeConfig,
    api_key: Secret,
}

impl RealtimeStage {
    /// Validates `config`; connects when the call starts.
    pub fn new(config: RealtimeConfig, api_key: Secret) -> Result<Self, Error> {
        config.validate()?;
        for w in config.warnings() {
            warn!(stage = NAME, "{w}");
        }
        Ok(Self { config, api_key })
    }
}

fn fail(e: impl Into<Error>) -> StageError {
    StageError::new(NAME, e.into())
}

/// After an `error` answering `session.update`, how long `session.updated` may take to follow
/// it (a server that ignores a field says so, then applies the rest at once).
const SESSION_ERROR_GRACE: Duration = Duration::from_millis(1000);

/// A session setting the server said it ignored, while it applied the rest of the update.
#[derive(Debug, Clone)]
struct IgnoredSetting {
    /// The field, when the server named it (`session.input_audio_format`).
    field: Option<String>,
    /// The server's words.
    message: String,
}

/// A session ready for the call.
struct Opened {
    ws: Ws,
    /// Settings the server said it ignored.
    ignored: Vec<IgnoredSetting>,
    /// The turn detection timing the server says it applies (`session.updated`).
    vad: VadTiming,
}

/// Opens the socket and completes the session handshake. An `error` the server follows with
/// `session.updated` is a warning (returned as an ignored setting); one left without it
/// rejects the session.
async fn connect(
    config: &RealtimeConfig,
    key: &Secret,
    tools: &[voxpipe_core::ToolSpec],
) -> Result<Opened, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = config.ws_url();
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::Connect { url: url.clone(), reason: e.to_string() })?;
    let headers = request.headers_mut();
    // OpenAI and Entra tokens go as a bearer token; an Azure resource key in `api-key`.
    let (name, value) = match config.azure.as_ref().map(|a| a.auth) {
        Some(crate::config::AzureAuth::ApiKey) => {
            (http::HeaderName::from_static("api-key"), key.expose().to_string())
        }
        _ => (http::header::AUTHORIZATION, format!("Bearer {}", key.expose())),
    };
    let mut value: http::HeaderValue = value.parse().map_err(|_| Error::Connect {
        url: url.clone(),
        reason: "API key is not a valid header value".into(),
    })?;
    value.set_sensitive(true);
    headers.insert(name, value);
    if config.protocol == Protocol::Beta {
        headers.insert("OpenAI-Beta", http::HeaderValue::from_static("realtime=v1"));
    }
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let connected = tokio::time::timeout(
        timeout,
        tokio_tungstenite::connect_async_with_config(request, Some(ws_config()), true),
    )
    .await
    .map_err(|_| Error::Timeout(config.connect_timeout_ms, "the WebSocket handshake"))?;
    let (mut ws, _) = connected.map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).chars().take(300).collect())
                .unwrap_or_default();
            Error::Handshake { status: resp.status().as_u16(), body }
        }
        other => Error::Connect { url: url.clone(), reason: other.to_string() },
    })?;
    // session.created always comes first.
    match tokio::time::timeout(timeout, next_event(&mut ws)).await {
        Err(_) => return Err(Error::Timeout(config.connect_timeout_ms, "session.created")),
        Ok(Ok(ServerEvent::SessionCreated { .. })) => {}
        Ok(Ok(other)) => {
            return Err(Error::WebSocket(format!("expected session.created first, got {other:?}")));
        }
        Ok(Err(e)) => return Err(e),
    }
    let update = session::session_update(config, tools);
    ws.send(Message::Text(update.to_string().into())).await.map_err(|e| Error::WebSocket(e.to_string()))?;
    let mut deadline = tokio::time::Instant::now() + timeout;
    let mut errors: Vec<crate::events::ErrorBody> = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, next_event(&mut ws)).await {
            Err(_) => {
                return Err(match errors.into_iter().next() {
                    Some(e) => Error::Session { code: e.code.unwrap_or_default(), message: e.message },
                    None => Error::Timeout(config.connect_timeout_ms, "session.updated"),
                });
            }
            Ok(Ok(ServerEvent::SessionUpdated { session })) => {
                let ignored = errors
                    .into_iter()
                    .map(|e| IgnoredSetting { field: e.field(), message: e.message })
                    .collect();
                let vad = VadTiming::from_session(&session, config);
                return Ok(Opened { ws, ignored, vad });
            }
            Ok(Ok(ServerEvent::Error { error })) => {
                deadline = deadline.min(tokio::time::Instant::now() + SESSION_ERROR_GRACE);
                errors.push(error);
            }
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Logs and records each setting the server ignored.
async fn report_ignored(ctx: &CallContext, ignored: Vec<IgnoredSetting>) {
    for IgnoredSetting { field, message } in ignored {
        let field = field.unwrap_or_else(|| "a setting".into());
        warn!(%field, server = %message, "the realtime server ignored a session setting");
        let message = format!("the server ignored {field}: {message}");
        let code = Some("session_setting_ignored".to_string());
        ctx.events.emit(EventKind::ProviderError { stage: NAME.into(), code, message }).await;
    }
}

async fn next_event(ws: &mut Ws) -> Result<ServerEvent, Error> {
    loop {
        match ws.next().await {
            None => return Err(Error::Closed("during the handshake")),
            Some(Err(e)) => return Err(Error::WebSocket(e.to_string())),
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t)
                    .map_err(|e| Error::WebSocket(format!("undecodable server event: {e}")));
            }
            Some(Ok(Message::Close(_))) => return Err(Error::Closed("during the handshake")),
            Some(Ok(_)) => continue,
        }
    }
}

/// Audio received for one assistant item, to clamp truncation.
#[derive(Debug, Default)]
struct ItemAudio {
    samples: u64,
}

/// Filler speech while tools run: an out-of-band response (`conversation: "none"`, so the
/// model's history is not touched) that says the tool's filler line. The tool results wait for
/// it to finish, then go to the model as usual.
#[derive(Default)]
struct FillerSpeech {
    /// Asked for; `response.created` not seen yet.
    requested: bool,
    /// The filler response being spoken.
    response: Option<String>,
    /// Items of filler responses: not in the conversation, so never truncated.
    items: std::collections::HashSet<String>,
    /// Tool results that arrived while the filler was spoken.
    held: Option<Vec<ToolResult>>,
    /// The caller interrupted the filler: drop the rest of its audio.
    muted: bool,
}

impl FillerSpeech {
    fn speaking(&self) -> bool {
        self.requested || self.response.is_some()
    }
}

/// Per-call session state.
struct Session<'a> {
    config: &'a RealtimeConfig,
    ctx: CallContext,
    out: Outbox,
    tx: mpsc::Sender<Message>,
    out_rate: u32,
    active_response: Option<String>,
    muted_response: Option<String>,
    awaiting_response: bool,
    items: HashMap<String, ItemAudio>,
    item_ids: HashMap<String, ItemId>,
    last_item: Option<ItemId>,
    call_names: HashMap<String, String>,
    pending_calls: Vec<ToolCall>,
    /// The calls of the last response, running (with their filler line, if any).
    batch: Option<ToolBatch>,
    end_after_response: bool,
    /// Local turns: a turn ended while a response was still running; ask for the next reply
    /// when it is done.
    respond_after_done: bool,
    /// Filler speech while slow tools run.
    filler: FillerSpeech,
    speech_active: bool,
    transcript: Vec<String>,
    /// The conversation as items, to restore it in a new session after a drop.
    history: Vec<HistoryItem>,
    /// Connection attempts this call may still spend on reconnecting.
    reconnects_left: u32,
    decoded: Vec<u8>,
    /// Where the server's VAD events fall on the input timeline (the stage's own clock).
    timeline: Timeline,
    /// The server's prefix padding and end-of-turn silence, as its session says.
    vad: VadTiming,
}

/// One conversation item as a new session can be given it (`conversation.item.create`).
#[derive(Debug)]
enum HistoryItem {
    /// The caller's words (transcribed, or typed on the keypad).
    User(String),
    /// The assistant's words as received, cut to what the caller heard on a barge-in.
    Assistant { item_id: String, text: String, cut: bool },
    /// A tool call the model made; `settled` once its response completed.
    Call { call_id: String, name: String, arguments: String, settled: bool },
    /// A tool's result.
    Output { call_id: String, output: String },
}

impl HistoryItem {
    fn to_item(&self, protocol: Protocol) -> serde_json::Value {
        match self {
            HistoryItem::User(text) => {
                json!({ "type": "message", "role": "user", "content": [{ "type": "input_text", "text": text }] })
            }
            HistoryItem::Assistant { text, .. } => {
                let part = match protocol {
                    Protocol::Ga => "output_text",
                    Protocol::Beta => "text",
                };
                json!({ "type": "message", "role": "assistant", "content": [{ "type": part, "text": text }] })
            }
            HistoryItem::Call { call_id, name, arguments, .. } => {
                json!({ "type": "function_call", "call_id": call_id, "name": name, "arguments": arguments })
            }
            HistoryItem::Output { call_id, output } => {
                json!({ "type": "function_call_output", "call_id": call_id, "output": output })
            }
        }
    }
}

/// The first `heard_ms` of `received_ms` of speech as text: the same share of the characters,
/// back to the last word boundary (speech rate is close enough to even for a model's context).
fn heard_share(text: &str, heard_ms: u64, received_ms: u64) -> String {
    if received_ms == 0 || heard_ms >= received_ms {
        return text.to_string();
    }
    let chars = text.chars().count() as u64 * heard_ms / received_ms;
    let end = text.char_indices().nth(chars as usize).map_or(text.len(), |(i, _)| i);
    let cut = &text[..end];
    let cut = if end < text.len() { cut.rfind(char::is_whitespace).map_or("", |i| &cut[..i]) } else { cut };
    cut.trim_end().to_string()
}

#[async_trait]
impl Stage for RealtimeStage {
    fn name(&self) -> &str {
        NAME
    }

    async fn run(self: Box<Self>, ctx: CallContext, mut input: Inbox, out: Outbox) -> Result<(), StageError> {
        let config = self.config;
        let mut reconnects_left = config.reconnect_attempts;
        let ws = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Ok(()),
            r = connect_within(&config, &self.api_key, ctx.tools.specs(), &mut reconnects_left) => r.map_err(|(e, _)| fail(e))?.0,
        };
        let Opened { ws, ignored, vad } = ws;
        report_ignored(&ctx, ignored).await;
        info!(model = %config.model, protocol = ?config.protocol, "realtime session ready");
        let (mut stream, tx, mut writer) = open_link(ws);
        let mut control = ctx.control.subscribe();
        let wire_rate = config.audio_format.sample_rate();
        let append_samples = samples_for_ms(wire_rate, config.append_ms as u64);
        let mut resampler: Option<StreamResampler> = None;
        let mut append_buf: Vec<i16> = Vec::with_capacity(append_samples * 2);
        let mut encoded: Vec<u8> = Vec::with_capacity(append_samples * 2);
        let mut b64 = String::new();
        let mut input_ended = false;
        // Input-timeline end of the last input chunk.
        let mut input_end = Duration::ZERO;
        let mut drain_deadline = None;
        let mut last_server_event = tokio::time::Instant::now();
        let mut settle = tokio::time::interval(Duration::from_millis(100));
        // `turn_detection: none`: voxpipe's controller decides turns (local or push-to-talk).
        let local_turns = config.turn_detection == TurnDetection::None;

        let mut s = Session {
            config: &config,
            ctx: ctx.clone(),
            out,
            tx,
            out_rate: wire_rate,
            active_response: None,
            muted_response: None,
            awaiting_response: false,
            items: HashMap::new(),
            item_ids: HashMap::new(),
            last_item: None,
            call_names: HashMap::new(),
            pending_calls: Vec::new(),
            batch: None,
            end_after_response: false,
            respond_after_done: false,
            filler: FillerSpeech::default(),
            speech_active: false,
            transcript: Vec::new(),
            history: Vec::new(),
            reconnects_left,
            decoded: Vec::new(),
            timeline: Timeline::default(),
            vad,
        };

        let stall_timeout = Duration::from_millis(config.stall_timeout_ms);
        let mut stall_check = tokio::time::interval(Duration::from_millis(250));
        let result: Result<(), StageError> = loop {
            let filler_at = s.batch.as_ref().and_then(ToolBatch::filler_at);
            // Set when the session is lost (dropped, broken or silent): a new one is opened.
            let mut lost: Option<Error> = None;
            tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => break Ok(()),
                msg = control.recv() => match msg {
                    Ok(Control::Interrupt { played, .. }) => {
                        // The local turn controller interrupted: the reply stops here.
                        if local_turns {
                            s.cut(played).await;
                        } else {
                            s.muted_response = s.active_response.clone();
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => {}
                },
                ev = stream.next() => {
                    last_server_event = tokio::time::Instant::now();
                    let active = s.active_response.is_some();
                    let dropped = match ev {
                        Some(Ok(Message::Text(t))) => {
                            match serde_json::from_str::<ServerEvent>(&t) {
                                Ok(ev) => if let Err(e) = s.on_event(ev).await { break Err(e) },
                                Err(e) => s.on_undecodable(&t, &e).await,
                            }
                            None
                        }
                        Some(Ok(Message::Close(frame))) => {
                            if input_ended && s.idle() { break Ok(()) }
                            debug!(?frame, "server closed the session");
                            Some(Error::Closed(if active { "in the middle of a response" } else { "before the call ended" }))
                        }
                        Some(Ok(_)) => None,
                        Some(Err(e)) => {
                            use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
                            let reset = matches!(e, WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_)
                                | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake));
                            Some(if reset {
                                Error::Closed(if active { "abruptly in the middle of a response" } else { "abruptly" })
                            } else {
                                Error::WebSocket(e.to_string())
                            })
                        }
                        None => {
                            if input_ended && s.idle() { break Ok(()) }
                            Some(Error::Closed(if active { "in the middle of a response" } else { "before the call ended" }))
                        }
                    };
                    lost = dropped;
                }
                _ = stall_check.tick(), if !input_ended && (s.active_response.is_some() || s.awaiting_response) => {
                    // A reply is due and the server has gone quiet: the session is as good as lost.
                    if last_server_event.elapsed() >= stall_timeout {
                        lost = Some(Error::Stalled(config.stall_timeout_ms));
                    }
                }
                results = batch_results(&mut s.batch) => {
                    if s.filler.speaking() {
                        // The filler is still being spoken: the reply follows it.
                        s.filler.held = Some(results);
                    } else if let Err(e) = s.on_tool_results(results).await { break Err(e) }
                }
                () = sleep_until(filler_at) => s.speak_filler().await,
                frame = input.recv(), if !input_ended => match frame {
                    Some(Frame::InputAudio(chunk)) => {
                        let r = match &mut resampler {
                            Some(r) if r.from_rate() == chunk.sample_rate => r,
                            r => r.insert(StreamResampler::new(chunk.sample_rate, wire_rate).map_err(fail)?),
                        };
                        r.push(&chunk.samples, &mut append_buf).map_err(fail)?;
                        while append_buf.len() >= append_samples {
                            send_append(&s.tx, config.audio_format, &append_buf[..append_samples], &mut encoded, &mut b64).await;
                            append_buf.drain(..append_samples);
                        }
                        // The input timeline up to here is sent, but for what waits in the buffer.
                        input_end = chunk.pts + chunk.duration();
                        let waiting = voxpipe_core::audio::duration_of(append_buf.len(), wire_rate);
                        s.timeline.sent(input_end.saturating_sub(waiting).as_millis() as u64);
                    }
                    Some(Frame::EndOfStream) | None => {
                        if !append_buf.is_empty() {
                            send_append(&s.tx, config.audio_format, &append_buf, &mut encoded, &mut b64).await;
                            append_buf.clear();
                            s.timeline.sent(input_end.as_millis() as u64);
                        }
                        input_ended = true;
                        drain_deadline = Some(tokio::time::Instant::now() + Duration::from_millis(config.drain_timeout_ms));
                    }
                    Some(f @ Frame::SpeechStarted { .. }) if local_turns => {
                        s.speech_active = true;
                        let _ = s.out.send(f).await;
                    }
                    Some(f @ Frame::SpeechStopped { .. }) if local_turns => {
                        // The local controller ended the turn: everything heard so far goes in
                        // the buffer, then commit and ask for the reply.
                        if !append_buf.is_empty() {
                            send_append(&s.tx, config.audio_format, &append_buf, &mut encoded, &mut b64).await;
                            append_buf.clear();
                            s.timeline.sent(input_end.as_millis() as u64);
                        }
                        s.speech_active = false;
                        let _ = s.out.send(f).await;
                        s.end_of_turn().await;
                    }
                    // Text from the caller that is not speech (keypad digits): a user message,
                    // answered like a turn.
                    Some(Frame::UserTranscript(t)) if t.is_final => s.user_text(t).await,
                    // Taking over a call: the conversation so far, then the answer it awaits.
                    Some(Frame::Restore(r)) => s.restore(&r).await,
                    Some(other) => { let _ = s.out.send(other).await; }
                },
                _ = settle.tick(), if input_ended => {
                    if s.idle() && last_server_event.elapsed() >= SETTLE {
                        break Ok(());
                    }
                    if drain_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        warn!("input ended but the session did not go idle within {} ms; closing", config.drain_timeout_ms);
                        break Ok(());
                    }
                }
            }
            if let Some(error) = lost {
                // The caller is still there: open a new session and carry on.
                if input_ended || s.reconnects_left == 0 {
                    break Err(fail(error));
                }
                let restored = tokio::select! {
                    biased;
                    () = ctx.cancel.cancelled() => break Ok(()),
                    r = s.reconnect(&self.api_key, &error) => r,
                };
                match restored {
                    Ok((events, new_writer)) => {
                        writer.abort();
                        (stream, writer) = (events, new_writer);
                        last_server_event = tokio::time::Instant::now();
                    }
                    Err(e) => break Err(fail(e)),
                }
            }
        };
        drop(s.tx);
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        if result.is_ok() && !ctx.cancel.is_cancelled() {
            let _ = s.out.send(Frame::EndOfStream).await;
        }
        result
    }
}

/// Connects, retrying a refused or failed connection (429, 5xx, network, timeout) while
/// `budget` allows, backing off; each retry spends one. Returns the session and the number of
/// attempts it took, or the last error and the attempts made.
async fn connect_within(
    config: &RealtimeConfig,
    key: &Secret,
    tools: &[voxpipe_core::ToolSpec],
    budget: &mut u32,
) -> Result<(Opened, u32), (Error, u32)> {
    let mut attempt = 1;
    loop {
        match connect(config, key, tools).await {
            Ok(ws) => return Ok((ws, attempt)),
            Err(e) if *budget == 0 || !e.is_retryable() => return Err((e, attempt)),
            Err(e) => {
                warn!(attempt, error = %e, "realtime connection failed; retrying");
                *budget -= 1;
                tokio::time::sleep(backoff(RECONNECT_BACKOFF, attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// The sending half of a session goes to a writer task fed by a queue; the stage keeps the
/// receiving half and the queue's sender.
fn open_link(ws: Ws) -> (SplitStream<Ws>, mpsc::Sender<Message>, tokio::task::JoinHandle<()>) {
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel::<Message>(WRITE_CAPACITY);
    (stream, tx, tokio::spawn(write_all(sink, rx)))
}

async fn write_all(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::Receiver<Message>) {
    while let Some(msg) = rx.recv().await {
        if let Err(e) = sink.send(msg).await {
            debug!(error = %e, "realtime writer stopped");
            return;
        }
    }
    let _ = sink.close().await;
}

async fn send_append(
    tx: &mpsc::Sender<Message>,
    format: AudioFormat,
    samples: &[i16],
    encoded: &mut Vec<u8>,
    b64: &mut String,
) {
    encoded.clear();
    match format {
        AudioFormat::Pcm => pcm::encode_pcm16le(samples, encoded),
        AudioFormat::Pcmu => g711::encode_ulaw(samples, encoded),
        AudioFormat::Pcma => g711::encode_alaw(samples, encoded),
    }
    b64.clear();
    B64.encode_string(&encoded[..], b64);
    // The wire forces one JSON text per append; build it directly rather than via a Value.
    let mut text = String::with_capacity(b64.len() + 48);
    text.push_str(r#"{"type":"input_audio_buffer.append","audio":""#);
    text.push_str(b64);
    text.push_str(r#""}"#);
    trace!(bytes = encoded.len(), "append");
    let _ = tx.send(Message::Text(text.into())).await;
}

impl Session<'_> {
    /// Tool calls are running, or their results wait for the filler to finish.
    fn tools_running(&self) -> bool {
        self.batch.is_some() || self.filler.held.is_some()
    }

    fn idle(&self) -> bool {
        self.active_response.is_none()
            && !self.awaiting_response
            && !self.tools_running()
            && !self.filler.speaking()
            && !self.speech_active
    }

    async fn send(&self, v: serde_json::Value) {
        let _ = self.tx.send(Message::Text(v.to_string().into())).await;
    }

    /// `conversation.item.create` for a history item (a restore or a reconnect replays them).
    async fn send_item(&self, item: &HistoryItem) {
        self.send(json!({ "type": "conversation.item.create", "item": item.to_item(self.config.protocol) }))
            .await;
    }

    async fn emit(&self, frame: Frame) {
        let _ = self.out.send(frame).await;
    }

    fn item_id(&mut self, id: &str) -> ItemId {
        if let Some(i) = self.item_ids.get(id) {
            return i.clone();
        }
        let i: ItemId = Arc::from(id);
        self.item_ids.insert(id.to_string(), i.clone());
        i
    }

    async fn on_event(&mut self, ev: ServerEvent) -> Result<(), StageError> {
        match ev {
            ServerEvent::SpeechStarted { audio_start_ms, .. } => {
                self.speech_active = true;
                let (onset_ms, placed) = self.timeline.onset(audio_start_ms, self.vad.prefix_padding_ms);
                if placed == Placed::OwnClock {
                    debug!(
                        audio_start_ms,
                        onset_ms,
                        "server speech onset disagrees with the audio sent; placed by the stage's clock"
                    );
                }
                let onset = Duration::from_millis(onset_ms);
                self.emit(Frame::SpeechStarted { at: onset }).await;
                self.barge_in(onset).await;
            }
            ServerEvent::SpeechStopped { audio_end_ms } => {
                self.speech_active = false;
                // The speech end, read from audio_end_ms where it agrees with the audio sent.
                let (end, placed) = self.timeline.speech_end(audio_end_ms, self.vad.silence_ms);
                if placed == Placed::OwnClock {
                    debug!(
                        audio_end_ms,
                        end, "server speech end disagrees with the audio sent; placed by the stage's clock"
                    );
                }
                self.emit(Frame::SpeechStopped { at: Duration::from_millis(end) }).await;
            }
            ServerEvent::Committed { .. } => self.timeline.committed(),
            ServerEvent::InputTranscriptDelta { item_id, delta } => {
                let item = Some(self.item_id(&item_id));
                self.emit(Frame::UserTranscript(Transcript { item, text: delta, is_final: false })).await;
            }
            ServerEvent::InputTranscriptCompleted { item_id, transcript } => {
                self.transcript.push(format!("user: {}", transcript.trim()));
                self.history.push(HistoryItem::User(transcript.trim().to_string()));
                let item = Some(self.item_id(&item_id));
                self.emit(Frame::UserTranscript(Transcript { item, text: transcript, is_final: true })).await;
            }
            ServerEvent::InputTranscriptFailed { item_id, error } => {
                warn!(%item_id, %error, "input transcription failed");
            }
            ServerEvent::ResponseCreated { response } if self.filler.requested => {
                self.filler.requested = false;
                self.filler.muted = false;
                self.filler.response = Some(response.id);
            }
            ServerEvent::ResponseCreated { response } => {
                self.awaiting_response = false;
                self.active_response = Some(response.id.clone());
                self.pending_calls.clear();
                self.emit(Frame::ResponseStarted(ResponseStarted { response_id: response.id })).await;
            }
            ServerEvent::ResponseDone { response } => self.on_response_done(response).await,
            ServerEvent::OutputItemAdded { item } => {
                if let (Some(call_id), Some(name)) = (item.call_id, item.name) {
                    self.call_names.insert(call_id, name);
                }
            }
            ServerEvent::AudioDelta { response_id, item_id, delta } => {
                if self.muted_response.as_deref() == Some(response_id.as_str())
                    || (self.filler.muted && self.filler.response.as_deref() == Some(response_id.as_str()))
                {
                    return Ok(());
                }
                self.on_audio(&response_id, &item_id, &delta).await;
            }
            ServerEvent::AudioTranscriptDelta { response_id, item_id, delta }
            | ServerEvent::TextDelta { response_id, item_id, delta } => {
                if self.muted_response.as_deref() != Some(response_id.as_str()) {
                    if self.filler.response.as_deref() != Some(response_id.as_str()) {
                        self.assistant_history(&item_id, |text, _| text.push_str(&delta));
                    }
                    let item = Some(self.item_id(&item_id));
                    self.emit(Frame::AssistantTranscript(Transcript { item, text: delta, is_final: false }))
                        .await;
                }
            }
            ServerEvent::AudioTranscriptDone { item_id, transcript, .. }
            | ServerEvent::TextDone { item_id, text: transcript, .. } => {
                self.transcript.push(format!("assistant: {}", transcript.trim()));
                if !self.filler.items.contains(&item_id) {
                    // The whole text, unless a barge-in already cut it to what was heard.
                    self.assistant_history(&item_id, |text, cut| {
                        if !*cut {
                            *text = transcript.trim().to_string();
                        }
                    });
                }
                let item = Some(self.item_id(&item_id));
                self.emit(Frame::AssistantTranscript(Transcript { item, text: transcript, is_final: true }))
                    .await;
            }
            ServerEvent::FunctionArgsDelta { call_id, delta } => {
                trace!(%call_id, bytes = delta.len(), "function arguments fragment");
            }
            ServerEvent::FunctionArgsDone { call_id, name, arguments } => {
                let name = name.or_else(|| self.call_names.get(&call_id).cloned()).unwrap_or_default();
                let call = ToolCall { call_id, name, arguments };
                self.history.push(HistoryItem::Call {
                    call_id: call.call_id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    settled: false,
                });
                self.emit(Frame::ToolCall(call.clone())).await;
                self.pending_calls.push(call);
            }
            ServerEvent::Truncated { item_id, audio_end_ms } => debug!(%item_id, audio_end_ms, "truncated"),
            ServerEvent::RateLimits { rate_limits } => {
                self.ctx.events.emit(EventKind::RateLimits { limits: rate_limits }).await;
            }
            ServerEvent::Error { error } => {
                warn!(code = ?error.code, message = %error.message, "realtime error event");
                self.ctx
                    .events
                    .emit(EventKind::ProviderError {
                        stage: NAME.into(),
                        code: error.code,
                        message: error.message,
                    })
                    .await;
            }
            ServerEvent::SessionCreated { .. } | ServerEvent::SessionUpdated { .. } => {}
            ServerEvent::Other => trace!("unhandled server event"),
        }
        Ok(())
    }

    async fn on_audio(&mut self, response_id: &str, item_id: &str, delta: &str) {
        if self.filler.response.as_deref() == Some(response_id) && !self.filler.items.contains(item_id) {
            self.filler.items.insert(item_id.to_string());
        }
        self.decoded.clear();
        if let Err(e) = B64.decode_vec(delta, &mut self.decoded) {
            warn!(error = %e, "undecodable audio delta dropped");
            return;
        }
        let mut samples = Vec::with_capacity(self.decoded.len());
        match self.config.audio_format {
            AudioFormat::Pcm => pcm::decode_pcm16le(&self.decoded, &mut samples),
            AudioFormat::Pcmu => g711::decode_ulaw(&self.decoded, &mut samples),
            AudioFormat::Pcma => g711::decode_alaw(&self.decoded, &mut samples),
        }
        let item = self.item_id(item_id);
        let received = self.items.entry(item_id.to_string()).or_default();
        received.samples += samples.len() as u64;
        self.last_item = Some(item.clone());
        let chunk = AudioChunk::new(self.out_rate, self.ctx.clock.elapsed(), Samples::from_vec(samples));
        let epoch = self.ctx.playout.epoch();
        self.emit(Frame::OutputAudio(OutputAudio { item, epoch, chunk, text: None })).await;
    }

    /// The caller spoke over the assistant (server VAD): stop playout and cut the item to what
    /// was heard. The server cancels its own response.
    async fn barge_in(&mut self, onset: Duration) {
        let generating = self.active_response.is_some() && self.muted_response != self.active_response;
        if !self.ctx.playout.is_audible() && !generating {
            return;
        }
        let played = self.ctx.interrupt(InterruptReason::BargeIn, Some(onset)).await;
        self.muted_response = self.active_response.clone();
        self.stop_filler().await;
        self.truncate(played).await;
    }

    /// A local interruption: cancel the response still being generated (the server does not
    /// know the caller spoke) and cut the item to what was heard.
    async fn cut(&mut self, played: Option<PlayedItem>) {
        if let Some(id) = self.active_response.clone()
            && self.muted_response.as_ref() != Some(&id)
        {
            self.send(json!({ "type": "response.cancel", "response_id": id })).await;
            debug!(response = %id, "cancelled the interrupted response");
        }
        self.muted_response = self.active_response.clone();
        self.respond_after_done = false;
        self.stop_filler().await;
        self.truncate(played).await;
    }

    /// The caller spoke over the filler: cancel it and drop what is left of it.
    async fn stop_filler(&mut self) {
        if let Some(batch) = &mut self.batch {
            batch.cancel_filler();
        }
        if let Some(id) = self.filler.response.clone()
            && !self.filler.muted
        {
            self.filler.muted = true;
            self.send(json!({ "type": "response.cancel", "response_id": id })).await;
        }
    }

    /// `conversation.item.truncate` to what the caller heard.
    async fn truncate(&mut self, played: Option<PlayedItem>) {
        let target = match played {
            Some(p) => Some((p.item, p.played_ms)),
            // Audio was on its way but nothing played yet: the caller heard none of it.
            None => self.last_item.clone().filter(|i| self.items.contains_key(&**i)).map(|i| (i, 0)),
        };
        let Some((item, played_ms)) = target else { return };
        if self.filler.items.contains(&*item) {
            // Out of band: not in the conversation, nothing to cut.
            return;
        }
        let received_ms =
            self.items.get(&*item).map(|a| a.samples * 1000 / self.out_rate as u64).unwrap_or(0);
        let audio_end_ms = played_ms.min(received_ms);
        self.assistant_history(&item, |text, cut| {
            *text = heard_share(text, audio_end_ms, received_ms);
            *cut = true;
        });
        self.send(json!({
            "type": "conversation.item.truncate",
            "item_id": &*item,
            "content_index": 0,
            "audio_end_ms": audio_end_ms,
        }))
        .await;
        info!(item = %item, audio_end_ms, "barge-in: truncated the assistant item to what was heard");
        self.ctx.events.emit(EventKind::Truncate { item: item.to_string(), audio_end_ms }).await;
    }

    /// The caller's words as text (e.g. keypad digits): a user message item, then a reply
    /// (after the response in progress, if one still runs).
    async fn user_text(&mut self, t: Transcript) {
        self.send(json!({
            "type": "conversation.item.create",
            "item": { "type": "message", "role": "user", "content": [{ "type": "input_text", "text": t.text }] },
        }))
        .await;
        self.transcript.push(format!("user: {}", t.text));
        self.history.push(HistoryItem::User(t.text.clone()));
        let _ = self.out.send(Frame::UserTranscript(t)).await;
        if self.active_response.is_some() && self.muted_response != self.active_response {
            self.respond_after_done = true;
        } else {
            self.awaiting_response = true;
            self.send(json!({ "type": "response.create" })).await;
        }
    }

    /// The conversation of a call this stage takes over (failover): items for the model, and
    /// a reply if the caller's last words are unanswered.
    async fn restore(&mut self, restore: &voxpipe_core::Restore) {
        for line in &restore.lines {
            let item = match line.speaker {
                voxpipe_core::Speaker::User => HistoryItem::User(line.text.clone()),
                voxpipe_core::Speaker::Assistant => {
                    HistoryItem::Assistant { item_id: String::new(), text: line.text.clone(), cut: true }
                }
            };
            self.send_item(&item).await;
            self.history.push(item);
        }
        info!(lines = restore.lines.len(), respond = restore.respond, "conversation restored");
        if restore.respond {
            self.awaiting_response = true;
            self.send(json!({ "type": "response.create" })).await;
        }
    }

    /// Local turns: the caller's turn is over. Commit the buffer and ask for a reply (after the
    /// response in progress, if one still runs: the server allows one at a time).
    async fn end_of_turn(&mut self) {
        self.send(json!({ "type": "input_audio_buffer.commit" })).await;
        if self.active_response.is_some() && self.muted_response != self.active_response {
            self.respond_after_done = true;
        } else {
            self.awaiting_response = true;
            self.send(json!({ "type": "response.create" })).await;
        }
    }

    async fn on_response_done(&mut self, response: crate::events::ResponseInfo) {
        if self.filler.response.as_deref() == Some(response.id.as_str()) {
            self.filler.response = None;
            let usage = response.usage.map(Into::into);
            let status = if response.status.as_deref() == Some("cancelled") {
                ResponseStatus::Cancelled
            } else {
                ResponseStatus::Completed
            };
            let reason = Some("filler".to_string());
            self.emit(Frame::ResponseDone(ResponseDone { response_id: response.id, status, reason, usage }))
                .await;
            if let Some(results) = self.filler.held.take()
                && let Err(e) = self.on_tool_results(results).await
            {
                warn!(error = %e, "tool results after the filler");
            }
            return;
        }
        let status = match response.status.as_deref() {
            Some("cancelled") => ResponseStatus::Cancelled,
            Some("failed") => ResponseStatus::Failed,
            Some("incomplete") => ResponseStatus::Incomplete,
            _ => ResponseStatus::Completed,
        };
        let reason = response
            .status_details
            .as_ref()
            .and_then(|d| d.get("reason"))
            .and_then(|r| r.as_str())
            .map(str::to_string);
        if self.active_response.as_deref() == Some(response.id.as_str()) {
            self.active_response = None;
        }
        self.emit(Frame::ResponseDone(ResponseDone {
            response_id: response.id,
            status,
            reason,
            usage: response.usage.map(Into::into),
        }))
        .await;
        let calls = std::mem::take(&mut self.pending_calls);
        // With tool calls the reply to the caller's new turn comes after their results.
        if std::mem::take(&mut self.respond_after_done) && calls.is_empty() {
            self.awaiting_response = true;
            self.send(json!({ "type": "response.create" })).await;
        }
        if status == ResponseStatus::Completed {
            for h in &mut self.history {
                if let HistoryItem::Call { settled, .. } = h {
                    *settled = true;
                }
            }
        }
        if !calls.is_empty() && status == ResponseStatus::Completed {
            // The calls run concurrently beside the event loop; dropped with the session.
            self.batch = Some(ToolBatch::start(self.ctx.tools.clone(), calls));
        } else if self.end_after_response && status == ResponseStatus::Completed {
            self.ctx.control.send(Control::EndCall);
        }
    }

    /// The history entry of assistant item `item_id` (created on first use), for `f` to edit
    /// (its text, and whether a barge-in cut it).
    fn assistant_history(&mut self, item_id: &str, f: impl FnOnce(&mut String, &mut bool)) {
        let found = self
            .history
            .iter()
            .rposition(|h| matches!(h, HistoryItem::Assistant { item_id: id, .. } if id == item_id));
        let i = found.unwrap_or_else(|| {
            self.history.push(HistoryItem::Assistant {
                item_id: item_id.to_string(),
                text: String::new(),
                cut: false,
            });
            self.history.len() - 1
        });
        if let HistoryItem::Assistant { text, cut, .. } = &mut self.history[i] {
            f(text, cut);
        }
    }

    /// A server event that did not decode. Reported; a malformed `response.done` still ends
    /// its response (as failed), or the call would wait on it until the drain timeout.
    async fn on_undecodable(&mut self, text: &str, error: &serde_json::Error) {
        #[derive(serde::Deserialize)]
        struct Kind<'a> {
            #[serde(rename = "type", borrow)]
            ty: std::borrow::Cow<'a, str>,
        }
        let kind = serde_json::from_str::<Kind>(text).map(|k| k.ty.into_owned()).unwrap_or_default();
        warn!(event = %kind, error = %error, "undecodable server event");
        let message = format!("undecodable server event `{kind}`: {error}");
        self.ctx
            .events
            .emit(EventKind::ProviderError {
                stage: NAME.into(),
                code: Some("malformed_event".into()),
                message,
            })
            .await;
        if kind == "response.done"
            && let Some(id) = self.filler.response.clone().or_else(|| self.active_response.clone())
        {
            let details = json!({ "reason": "malformed_response_done" });
            let info = crate::events::ResponseInfo {
                id,
                status: Some("failed".into()),
                status_details: Some(details),
                usage: None,
            };
            self.on_response_done(info).await;
        }
    }

    /// The session dropped mid-call: open a new one (same `session.update`), give it the
    /// conversation so far, and ask again for a reply that was pending. Returns the new
    /// session's events and writer; the queue's sender is replaced in place.
    async fn reconnect(
        &mut self,
        key: &Secret,
        why: &Error,
    ) -> Result<(SplitStream<Ws>, tokio::task::JoinHandle<()>), Error> {
        let started = tokio::time::Instant::now();
        warn!(reason = %why, "realtime session dropped; reconnecting");
        // Every attempt spends one of the call's (the first one here, the retries in
        // `connect_within`), so a session that keeps dropping ends the call.
        self.reconnects_left = self.reconnects_left.saturating_sub(1);
        let (ws, attempt) =
            connect_within(self.config, key, self.ctx.tools.specs(), &mut self.reconnects_left)
                .await
                .map_err(|(e, attempts)| Error::Reconnect { attempts, last: e.to_string() })?;
        let Opened { ws, ignored, vad } = ws;
        report_ignored(&self.ctx, ignored).await;
        self.vad = vad;
        let (events, tx, writer) = open_link(ws);
        self.tx = tx;
        // The new session counts its audio from here.
        self.timeline.session_started();

        // What the old session was doing that the new one must do again.
        let mut reply_pending = self.awaiting_response || self.respond_after_done;
        if let Some(id) = self.active_response.take() {
            if self.muted_response.as_deref() != Some(id.as_str()) {
                reply_pending = true;
            }
            let reason = Some("disconnected".to_string());
            let done = ResponseDone { response_id: id, status: ResponseStatus::Failed, reason, usage: None };
            self.emit(Frame::ResponseDone(done)).await;
        }
        // Calls of a response that never completed were not run: the model makes them again.
        let before = self.history.len();
        self.history.retain(|h| !matches!(h, HistoryItem::Call { settled: false, .. }));
        reply_pending |= self.history.len() < before;
        self.pending_calls.clear();
        self.awaiting_response = false;
        self.respond_after_done = false;
        self.muted_response = None;
        self.speech_active = false;
        // Old item ids mean nothing to the new session: nothing of theirs can be truncated.
        self.items.clear();
        self.last_item = None;
        let held = self.filler.held.take();
        self.filler = FillerSpeech::default();

        for h in &self.history {
            self.send_item(h).await;
        }
        let replayed_items = self.history.len();
        if let Some(results) = held {
            // The filler was cut off with the session; the results go in now.
            if let Err(e) = self.on_tool_results(results).await {
                warn!(error = %e, "tool results after a reconnect");
            }
        } else if reply_pending && self.batch.is_none() {
            self.awaiting_response = true;
            self.send(json!({ "type": "response.create" })).await;
        }
        let took_ms = started.elapsed().as_millis() as u64;
        info!(attempts = attempt, took_ms, replayed_items, "realtime session restored");
        self.ctx
            .events
            .emit(EventKind::Reconnected {
                stage: NAME.into(),
                reason: why.to_string(),
                attempts: attempt,
                took_ms,
                replayed_items,
            })
            .await;
        Ok((events, writer))
    }

    /// A tool is still running after its filler delay: say the filler line.
    async fn speak_filler(&mut self) {
        let Some(Filler { tool, text, after }) = self.batch.as_mut().and_then(ToolBatch::take_filler) else {
            return;
        };
        info!(tool, after_ms = after.as_millis() as u64, filler = %text, "tool still running: speaking the filler");
        self.filler.requested = true;
        let modalities = match self.config.protocol {
            Protocol::Ga => "output_modalities",
            Protocol::Beta => "modalities",
        };
        let mut response = json!({
            "conversation": "none",
            "instructions": format!("Say exactly this, and nothing else: \"{text}\""),
            "tools": [],
            "metadata": { "voxpipe": "filler" },
        });
        response[modalities] = match self.config.protocol {
            Protocol::Ga => json!(["audio"]),
            Protocol::Beta => json!(["audio", "text"]),
        };
        self.send(json!({ "type": "response.create", "response": response })).await;
    }

    async fn on_tool_results(&mut self, results: Vec<ToolResult>) -> Result<(), StageError> {
        for r in &results {
            self.history.push(HistoryItem::Output { call_id: r.call_id.clone(), output: r.output.clone() });
            self.emit(Frame::ToolResult(r.clone())).await;
            self.send(json!({
                "type": "conversation.item.create",
                "item": { "type": "function_call_output", "call_id": r.call_id, "output": r.output },
            }))
            .await;
            match &r.action {
                Some(ToolAction::EndCall) => self.end_after_response = true,
                Some(ToolAction::Handoff { reason, target }) => {
                    self.ctx
                        .events
                        .emit(EventKind::Handoff {
                            reason: reason.clone(),
                            target: target.clone(),
                            transcript: self.transcript.clone(),
                        })
                        .await;
                }
                None => {}
            }
        }
        // The model does not resume by itself after a tool output.
        self.awaiting_response = true;
        self.send(json!({ "type": "response.create" })).await;
        Ok(())
    }
}
