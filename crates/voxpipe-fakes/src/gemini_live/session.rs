//! One Live connection: the message loop, the conversation, turn taking (server VAD or the
//! client's activity signals), paced model turns, tool calls, barge-in, `goAway` and session
//! resumption.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_util::sync::CancellationToken;

mod turn;

use super::config::{GeminiLiveFakeConfig, LiveScriptedResponse};
use super::wire::{self, ClientMessage, FunctionResponse, RealtimeInput, Refusal, Setup};
use super::{LiveTurn, Shared, Snapshot};
use crate::fault::Fault;
use crate::vad::{Vad, VadEvent};

/// Outgoing queue depth (messages) between the session and its writer.
const OUT_QUEUE: usize = 256;
/// How long the server waits for the client's close reply after closing.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Output audio sample rate.
const OUT_RATE: u32 = 24_000;
/// Input audio tokens per second (Gemini counts 32 tokens per second of audio).
const AUDIO_TOKENS_PER_S: f64 = 32.0;

/// What the session hands the writer.
#[derive(Debug)]
enum Out {
    /// A server message (sent as a binary or text frame, per the config).
    Json(String),
    /// A fault's message, sent as it is.
    Raw(String),
    /// A close frame.
    Close(u16, String),
    /// Drop the socket without a close frame.
    Abort,
}

/// The model turn being generated.
#[derive(Debug)]
struct Gen {
    script: LiveScriptedResponse,
    /// When the next step is due.
    next_at: Instant,
    total_ms: u64,
    sent_ms: u64,
    /// Characters of `script.text` sent (text parts or output transcription).
    text_sent: usize,
    /// When the first audio went out: the model assumes real-time playback from here.
    playing_since: Option<Instant>,
    /// `generationComplete` was sent; `turnComplete` is due at `next_at`.
    generated: bool,
}

/// State of one connection. Handlers run one at a time on the session task, so no locks.
pub(crate) struct Session {
    id: usize,
    cfg: Arc<GeminiLiveFakeConfig>,
    shared: Arc<Shared>,
    out: mpsc::Sender<Out>,
    setup: Option<Setup>,
    history: Vec<LiveTurn>,
    /// Ordered scripted turns used (indexes the script; carried over on resumption).
    ordered_used: usize,
    vad: Vad,
    /// Between the client's `activityStart` and `activityEnd` (manual activity detection).
    in_activity: bool,
    /// Input audio received, ms (for usage).
    input_audio_ms: f64,
    model_turn: Option<Gen>,
    /// A turn that ended while the model was speaking without barge-in: answered next.
    queued: Option<(LiveScriptedResponse, String)>,
    /// Function calls issued and not yet answered: (id, name).
    pending_calls: Vec<(String, String)>,
    next_call: u64,
    chunks_sent: usize,
    fault: Option<Fault>,
    injected: bool,
    stalled: bool,
    go_away_at: Option<Instant>,
    close_at: Option<Instant>,
    ended: bool,
    /// A fault dropped the connection: no close handshake to wait for.
    aborted: bool,
}

impl Session {
    /// Runs the connection until the client leaves, a refusal or fault closes it or the server
    /// stops. `refusal`: the handshake was accepted but the key was not (closed at once).
    pub(crate) async fn run(
        ws: WebSocketStream<TcpStream>,
        id: usize,
        cfg: Arc<GeminiLiveFakeConfig>,
        shared: Arc<Shared>,
        stop: CancellationToken,
        fault: Option<Fault>,
        refusal: Option<Refusal>,
    ) {
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        let writer = tokio::spawn(write_loop(sink, rx, cfg.text_frames));
        let mut s = Session {
            id,
            cfg,
            shared,
            out: tx,
            setup: None,
            history: Vec::new(),
            ordered_used: 0,
            vad: Vad::new(),
            in_activity: false,
            input_audio_ms: 0.0,
            model_turn: None,
            queued: None,
            pending_calls: Vec::new(),
            next_call: 0,
            chunks_sent: 0,
            fault,
            injected: false,
            stalled: false,
            go_away_at: None,
            close_at: None,
            ended: false,
            aborted: false,
        };
        if let Some(r) = refusal {
            s.close(r).await;
        }
        while !s.ended {
            let due =
                [s.model_turn.as_ref().filter(|_| !s.stalled).map(|g| g.next_at), s.go_away_at, s.close_at]
                    .into_iter()
                    .flatten()
                    .min();
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
                    Some(Ok(Message::Text(t))) => s.on_frame(t.as_bytes()).await,
                    Some(Ok(Message::Binary(b))) => s.on_frame(&b).await,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(connection = id, error = %e, "gemini live fake: read failed");
                        break;
                    }
                },
                () = tick => s.on_timer().await,
            }
        }
        let Session { out, aborted, .. } = s;
        drop(out);
        if aborted {
            drop(stream);
            let _ = writer.await;
            return;
        }
        // After a close frame, read until the client's reply (or give up) so that its last
        // writes do not reset the connection before it has read our close.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(m)) = stream.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
        let _ = writer.await;
    }

    async fn send_out(&mut self, out: Out) {
        if self.out.send(out).await.is_err() {
            self.ended = true;
        }
    }

    /// Sends a server message.
    async fn send(&mut self, msg: Value) {
        self.send_out(Out::Json(msg.to_string())).await;
    }

    /// Closes the socket with `r` (and records it).
    async fn close(&mut self, r: Refusal) {
        tracing::debug!(connection = self.id, code = r.code, reason = %r.reason, "gemini live fake: closing");
        self.shared.record_close(self.id, r.code, &r.reason);
        self.send_out(Out::Close(r.code, r.reason)).await;
        self.ended = true;
    }

    async fn on_frame(&mut self, bytes: &[u8]) {
        let parsed: Result<Value, _> = serde_json::from_slice(bytes);
        let Ok(v) = parsed else {
            let text = String::from_utf8_lossy(bytes).into_owned();
            self.shared.record(self.id, Value::String(text));
            return self.close(Refusal::invalid("Invalid JSON payload received.")).await;
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
        let Some(setup) = &self.setup else {
            let ClientMessage::Setup(setup) = m else {
                return Err(Refusal::invalid(
                    "Invalid argument: the first message must be setup (BidiGenerateContentSetup).",
                ));
            };
            return self.on_setup(setup).await;
        };
        let auto_vad = setup.auto_vad;
        match m {
            ClientMessage::Setup(_) => {
                Err(Refusal::invalid("Invalid argument: setup may only be sent once, in the first message."))
            }
            ClientMessage::ClientContent { turns, turn_complete } => {
                self.interrupt().await;
                let said = turns.iter().rev().find(|t| t.role == "user").map(|t| t.text.clone());
                for t in turns {
                    self.push_history(&t.role, &t.text);
                }
                if turn_complete {
                    self.user_turn_ended(said, false).await;
                }
                Ok(())
            }
            ClientMessage::Realtime(RealtimeInput::Audio(samples)) => {
                self.on_audio(&samples).await;
                Ok(())
            }
            ClientMessage::Realtime(RealtimeInput::Video) => Ok(()),
            ClientMessage::Realtime(RealtimeInput::Text(text)) => {
                self.interrupt().await;
                self.push_history("user", &text);
                self.user_turn_ended(Some(text), false).await;
                Ok(())
            }
            ClientMessage::Realtime(RealtimeInput::AudioStreamEnd) if !auto_vad => Err(Refusal::invalid(
                "realtime_input.audio_stream_end may only be sent when automatic activity detection is enabled.",
            )),
            ClientMessage::Realtime(RealtimeInput::AudioStreamEnd) => {
                if self.vad.speaking() {
                    self.vad.reset(0);
                    self.user_turn_ended(None, true).await;
                }
                Ok(())
            }
            ClientMessage::Realtime(RealtimeInput::ActivityStart | RealtimeInput::ActivityEnd)
                if auto_vad =>
            {
                Err(Refusal::invalid(
                    "realtime_input.activity_start/activity_end may only be sent when automatic activity detection is disabled.",
                ))
            }
            ClientMessage::Realtime(RealtimeInput::ActivityStart) => {
                if self.in_activity {
                    return Err(Refusal::invalid(
                        "realtime_input.activity_start: an activity is already open.",
                    ));
                }
                self.in_activity = true;
                self.interrupt().await;
                Ok(())
            }
            ClientMessage::Realtime(RealtimeInput::ActivityEnd) => {
                if !self.in_activity {
                    return Err(Refusal::invalid("realtime_input.activity_end without activity_start."));
                }
                self.in_activity = false;
                self.user_turn_ended(None, true).await;
                Ok(())
            }
            ClientMessage::ToolResponse(responses) => self.on_tool_response(responses).await,
        }
    }

    async fn on_setup(&mut self, setup: Setup) -> Result<(), Refusal> {
        if !self.cfg.models.is_empty() && !self.cfg.models.contains(&setup.model) {
            return Err(Refusal::policy(format!(
                "{} is not found for API version v1beta, or is not supported for bidiGenerateContent.",
                setup.model
            )));
        }
        if let Some(Some(handle)) = &setup.resumption {
            let Some(snap) = self.shared.resume(handle) else {
                return Err(Refusal::policy("Invalid session resumption handle."));
            };
            self.history = snap.history;
            self.ordered_used = snap.ordered_used;
            self.shared.set_history(self.id, &self.history);
        }
        if let (None | Some(None), Some(text)) = (&setup.resumption, &setup.system_text) {
            self.push_history("system", text);
        }
        let resumable = setup.resumption.is_some();
        self.setup = Some(setup);
        self.send(json!({"setupComplete": {}})).await;
        if let Some(ms) = self.cfg.go_away_after_ms {
            self.go_away_at = Some(Instant::now() + Duration::from_millis(ms));
        }
        if resumable {
            self.resumption_update().await;
        }
        Ok(())
    }

    /// Sends a `sessionResumptionUpdate`: a fresh handle while nothing is in flight, else
    /// `resumable: false` with no handle.
    async fn resumption_update(&mut self) {
        if self.setup.as_ref().is_none_or(|s| s.resumption.is_none()) {
            return;
        }
        if self.model_turn.is_some() || !self.pending_calls.is_empty() {
            self.send(json!({"sessionResumptionUpdate": {"newHandle": "", "resumable": false}})).await;
            return;
        }
        let snap = Snapshot { history: self.history.clone(), ordered_used: self.ordered_used };
        let handle = self.shared.store(snap);
        self.send(json!({"sessionResumptionUpdate": {"newHandle": handle, "resumable": true}})).await;
    }

    fn push_history(&mut self, role: &str, text: &str) {
        self.history.push(LiveTurn { role: role.to_string(), text: text.to_string() });
        self.shared.set_history(self.id, &self.history);
    }

    async fn on_audio(&mut self, samples: &[i16]) {
        self.input_audio_ms += samples.len() as f64 / 16.0;
        let Some(setup) = &self.setup else { return };
        if !setup.auto_vad {
            return;
        }
        let mut events = Vec::new();
        self.vad.push(samples, 16_000, setup, &self.cfg.vad, &mut events);
        for e in events {
            match e {
                VadEvent::Started { .. } => self.interrupt().await,
                VadEvent::Stopped { .. } => self.user_turn_ended(None, true).await,
            }
        }
    }

    /// The caller started talking (or sent content): a barge-in on the model's turn, and the
    /// cancellation of calls it has not answered.
    async fn interrupt(&mut self) {
        let barge_in = self.setup.as_ref().is_some_and(|s| s.barge_in);
        if !barge_in {
            return;
        }
        if !self.pending_calls.is_empty() {
            let ids: Vec<String> = self.pending_calls.drain(..).map(|(id, _)| id).collect();
            self.send(json!({"toolCallCancellation": {"ids": ids}})).await;
        }
        self.queued = None;
        let Some(g) = self.model_turn.take() else { return };
        // The model is cut off where the caller's playback is: the words of the audio heard.
        let heard_ms = g.playing_since.map_or(0, |t| t.elapsed().as_millis() as u64).min(g.sent_ms);
        let chars = g.script.text.chars().count();
        let cut = (chars as u64 * heard_ms).checked_div(g.total_ms).unwrap_or(0) as usize;
        let said: String = g.script.text.chars().take(cut).collect();
        if !said.is_empty() {
            self.push_history("model", &said);
        }
        self.send(json!({"serverContent": {"interrupted": true}})).await;
        self.send(json!({"serverContent": {"turnComplete": true}})).await;
    }

    /// The caller's turn is over: answer it. `audio`: it was spoken (report a transcript).
    async fn user_turn_ended(&mut self, said: Option<String>, audio: bool) {
        let (script, used) = self.cfg.response(said.as_deref(), self.ordered_used);
        if used {
            self.ordered_used += 1;
        }
        let Some(setup) = &self.setup else { return };
        if audio {
            let transcript = script.user_transcript.clone().unwrap_or_else(|| "(user speech)".to_string());
            if setup.input_transcription {
                self.send(json!({"serverContent": {"inputTranscription": {"text": transcript}}})).await;
            }
            self.push_history("user", &transcript);
        }
        if self.model_turn.is_some() {
            self.queued = Some((script, String::new()));
            return;
        }
        self.start(script);
    }

    fn start(&mut self, script: LiveScriptedResponse) {
        let total_ms = script.audio_len_ms();
        self.model_turn = Some(Gen {
            script,
            next_at: Instant::now() + Duration::from_millis(self.cfg.first_audio_delay_ms),
            total_ms,
            sent_ms: 0,
            text_sent: 0,
            playing_since: None,
            generated: false,
        });
    }

    async fn on_tool_response(&mut self, responses: Vec<FunctionResponse>) -> Result<(), Refusal> {
        for r in &responses {
            let Some(i) = self.pending_calls.iter().position(|(id, _)| *id == r.id) else {
                return Err(Refusal::invalid(format!(
                    "Invalid argument: function response id \"{}\" does not match a pending function call.",
                    r.id
                )));
            };
            let (_, name) = self.pending_calls.remove(i);
            if name != r.name {
                return Err(Refusal::invalid(format!(
                    "Invalid argument: function response \"{}\" names {} but the call was {name}.",
                    r.id, r.name
                )));
            }
            self.push_history("tool", &format!("{}: {}", r.name, r.response));
        }
        if self.pending_calls.is_empty() && self.model_turn.is_none() {
            let (script, _) = self.cfg.response(None, self.ordered_used);
            self.ordered_used += 1;
            self.start(script);
        }
        Ok(())
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.close_at.is_some_and(|t| t <= now) {
            let reason = "The session was aborted: the goAway time left has passed.";
            return self.close(Refusal { code: 1011, reason: reason.into() }).await;
        }
        if self.go_away_at.is_some_and(|t| t <= now) {
            self.go_away_at = None;
            let left = self.cfg.go_away_time_left_ms;
            self.close_at = Some(now + Duration::from_millis(left));
            self.send(json!({"goAway": {"timeLeft": duration(left)}})).await;
            return;
        }
        if self.model_turn.as_ref().is_some_and(|g| g.next_at <= now) && !self.stalled {
            self.step().await;
        }
    }
}

/// The message as recorded: audio and video `data` replaced by their decoded length.
fn recorded(v: &Value) -> Value {
    let mut v = v.clone();
    for key in ["realtimeInput", "realtime_input"] {
        let Some(r) = v.get_mut(key).and_then(Value::as_object_mut) else { continue };
        for (_, blob) in r.iter_mut() {
            if let Some(data) = blob.get("data").and_then(Value::as_str) {
                let len = B64.decode(data).map_or(0, |d| d.len());
                blob["data"] = json!({"bytes": len});
            }
        }
    }
    v
}

/// A `google.protobuf.Duration` in JSON: `"10s"`, `"1.5s"`.
fn duration(ms: u64) -> String {
    match ms % 1000 {
        0 => format!("{}s", ms / 1000),
        frac => format!("{}.{}s", ms / 1000, format!("{frac:03}").trim_end_matches('0')),
    }
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
    mut sink: futures_util::stream::SplitSink<WebSocketStream<TcpStream>, Message>,
    mut rx: mpsc::Receiver<Out>,
    text_frames: bool,
) {
    while let Some(out) = rx.recv().await {
        let msg = match out {
            Out::Json(t) | Out::Raw(t) if text_frames => Message::text(t),
            Out::Json(t) | Out::Raw(t) => Message::binary(t.into_bytes()),
            Out::Close(code, reason) => {
                let frame = CloseFrame { code: code.into(), reason: reason_of(&reason).to_string().into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                let _ = sink.flush().await;
                // Keep the write half until the reader has seen the client's reply.
                while rx.recv().await.is_some() {}
                return;
            }
            // Dropping the sink (and the reader's half) closes TCP with no close frame.
            Out::Abort => return,
        };
        if sink.send(msg).await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_protobuf_json() {
        assert_eq!(duration(10_000), "10s");
        assert_eq!(duration(1_500), "1.5s");
        assert_eq!(duration(250), "0.25s");
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        assert_eq!(reason_of(&"é".repeat(100)).len(), 122);
    }
}
