//! One WebSocket connection: the event loop, the writer task and the client-event handlers.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::config::RealtimeFakeConfig;
use super::conversation::Conversation;
use super::response::ResponseGen;
use super::session::{Dialect, Effective, Session};
use super::vad::{Vad, VadEvent};
use super::validate::ParamError;

/// Largest decoded audio accepted in one `input_audio_buffer.append`.
const MAX_APPEND_BYTES: usize = 15 * 1024 * 1024;
/// Outgoing queue depth (events) between the connection task and its writer.
pub(crate) const OUT_QUEUE: usize = 256;

/// What the connection task hands the writer.
#[derive(Debug)]
pub(crate) enum Out {
    /// A server event to send.
    Text(String),
    /// Flush what was sent, then drop the socket without a close frame.
    Abort,
}

/// State of one connection. Handlers run one at a time on the connection task, so no locks.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: usize,
    pub(crate) dialect: Dialect,
    pub(crate) cfg: Arc<RealtimeFakeConfig>,
    pub(crate) shared: Arc<Shared>,
    out: mpsc::Sender<Out>,
    pub(crate) session: Session,
    pub(crate) eff: Effective,
    pub(crate) conv: Conversation,
    next_id: u64,
    vad: Vad,
    /// Id the user item of the turn in progress will get (announced by `speech_started`).
    vad_item: Option<String>,
    /// Where on the input timeline the current speech started, in ms.
    turn_start_ms: u64,
    /// Input timeline: ms of audio appended since the session began.
    appended_ms: f64,
    /// ms appended since the last commit or clear.
    buffered_ms: f64,
    /// Where on the input timeline the current input buffer began (a compatible server counts
    /// its timestamps from here).
    buffer_origin_ms: u64,
    /// A compatible server's caller transcript, sent after the reply to it.
    pub(crate) late_transcript: Option<(String, String, u64)>,
    /// Model responses started so far (indexes the script).
    pub(crate) responses_started: usize,
    pub(crate) active: Option<ResponseGen>,
    pub(crate) audio_deltas_sent: u32,
    pub(crate) audio_produced: bool,
    pub(crate) tokens_used: u64,
    pub(crate) aborted: bool,
    raw: Vec<u8>,
    pub(crate) samples: Vec<i16>,
    /// The output buffer, on a WebRTC session (audio on the track, not in events).
    pub(crate) media: Option<super::Media>,
    /// This connection's fault (`faults` of the config), if any.
    pub(crate) fault: Option<crate::fault::Fault>,
    /// The fault's injected event has been sent.
    pub(crate) injected: bool,
    /// A stall fault struck: the active response sends nothing more.
    pub(crate) stalled: bool,
}

impl Conn {
    /// A connection's state before its first event; events go to `out`.
    pub(crate) fn new(
        id: usize,
        dialect: Dialect,
        model: &str,
        cfg: Arc<RealtimeFakeConfig>,
        shared: Arc<Shared>,
        out: mpsc::Sender<Out>,
    ) -> Conn {
        let session = Session::new(dialect, &format!("sess_fake{id:04}"), model);
        let eff = session.effective();
        Conn {
            id,
            dialect,
            cfg,
            shared,
            out,
            session,
            eff,
            conv: Conversation::default(),
            next_id: 0,
            vad: Vad::new(),
            vad_item: None,
            turn_start_ms: 0,
            appended_ms: 0.0,
            buffered_ms: 0.0,
            buffer_origin_ms: 0,
            late_transcript: None,
            responses_started: 0,
            active: None,
            audio_deltas_sent: 0,
            audio_produced: false,
            tokens_used: 0,
            aborted: false,
            raw: Vec::new(),
            samples: Vec::new(),
            media: None,
            fault: None,
            injected: false,
            stalled: false,
        }
    }

    /// Applies a client secret's session (validated when the secret was minted).
    pub(crate) fn preset(&mut self, session: &Value) {
        if let Err(e) = self.session.update(session, false) {
            tracing::warn!(connection = self.id, error = %e.message, "realtime fake: client secret's session not applied");
        }
        self.eff = self.session.effective();
    }

    /// Runs the connection until the client leaves, a fault closes it or the server stops.
    /// `preset` is the session of the client secret it authenticated with, if any.
    #[expect(clippy::too_many_arguments, reason = "one call site; the parts of an accepted socket")]
    pub(crate) async fn run(
        ws: WebSocketStream<TcpStream>,
        id: usize,
        dialect: Dialect,
        model: String,
        preset: Option<Value>,
        cfg: Arc<RealtimeFakeConfig>,
        shared: Arc<Shared>,
        stop: CancellationToken,
        fault: Option<crate::fault::Fault>,
    ) {
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        let writer = tokio::spawn(write_loop(sink, rx));
        let mut conn = Conn::new(id, dialect, &model, cfg, shared, tx);
        conn.fault = fault;
        if let Some(p) = &preset {
            conn.preset(p);
        }
        let created = json!({"type": "session.created", "session": conn.session.json()});
        conn.send(created).await;
        while !conn.aborted {
            let deadline = conn.active.as_ref().filter(|_| !conn.stalled).map(|r| r.next_at);
            let tick = async move {
                match deadline {
                    Some(d) => sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(t))) => conn.on_text(t.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        conn.error(ParamError::general("invalid_event", "Binary frames are not supported; send JSON text frames."), None).await;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(connection = id, error = %e, "realtime fake: read failed");
                        break;
                    }
                },
                _ = tick => conn.step_response().await,
            }
        }
        if conn.aborted {
            let _ = conn.out.send(Out::Abort).await;
        }
        drop(conn);
        let _ = writer.await;
        drop(stream);
    }

    /// A fresh server id with `prefix` (`item`, `resp`, `call`, …).
    pub(crate) fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_fake{:04}{:06}", self.id, self.next_id)
    }

    /// Sends a server event, adding its `event_id`.
    pub(crate) async fn send(&mut self, mut event: Value) {
        let id = self.new_id("event");
        event["event_id"] = Value::String(id);
        if self.out.send(Out::Text(event.to_string())).await.is_err() {
            self.aborted = true;
        }
    }

    /// Sends `text` as it is (a fault's malformed or unknown event).
    pub(crate) async fn send_raw(&mut self, text: String) {
        if self.out.send(Out::Text(text)).await.is_err() {
            self.aborted = true;
        }
    }

    /// A compatible server's complaint: an `invalid_request_error` with no `code` or `param`.
    pub(crate) async fn compat_error(&mut self, message: String, event_id: Option<&str>) {
        let event = json!({"type": "error", "error": {
            "type": "invalid_request_error", "message": message, "event_id": event_id,
        }});
        self.send(event).await;
    }

    /// Sends an `invalid_request_error`, echoing the client's `event_id`.
    pub(crate) async fn error(&mut self, e: ParamError, event_id: Option<&str>) {
        let event = json!({"type": "error", "error": {
            "type": "invalid_request_error", "code": e.code, "message": e.message,
            "param": e.param, "event_id": event_id,
        }});
        self.send(event).await;
    }

    pub(crate) async fn on_text(&mut self, text: &str) {
        let parsed: Result<Value, _> = serde_json::from_str(text);
        let Ok(Value::Object(mut ev)) = parsed else {
            self.shared.record(self.id, Value::String(text.to_string()));
            let msg = match parsed {
                Err(e) => format!("Invalid JSON in client event: {e}."),
                Ok(_) => "The client event must be a JSON object.".to_string(),
            };
            let id = scan_event_id(text);
            return self.error(ParamError::general("invalid_json", msg), id.as_deref()).await;
        };
        let is_append = ev.get("type").and_then(Value::as_str) == Some("input_audio_buffer.append");
        let audio = if is_append { ev.remove("audio") } else { None };
        let mut recorded = Value::Object(ev.clone());
        if let Some(a) = &audio {
            let len = a.as_str().map(b64_len);
            recorded["audio_bytes"] = json!(len);
            ev.insert("audio".into(), Value::Null);
        }
        self.shared.record(self.id, recorded);
        let event_id = ev.get("event_id").and_then(Value::as_str).map(str::to_string);
        if let Err(e) = self.dispatch(&ev, audio).await {
            self.error(e, event_id.as_deref()).await;
        }
    }

    async fn dispatch(&mut self, ev: &Map<String, Value>, audio: Option<Value>) -> Result<(), ParamError> {
        let Some(ty) = ev.get("type") else {
            return Err(ParamError::general("invalid_event", "The 'type' field is missing."));
        };
        let ty = ty.as_str().ok_or_else(|| ParamError::invalid_type("type", "a string", ty))?;
        let (allowed, required): (&[&str], &[&str]) = match ty {
            "session.update" => (&["session"], &["session"]),
            "input_audio_buffer.append" => (&["audio"], &["audio"]),
            "input_audio_buffer.commit" | "input_audio_buffer.clear" | "output_audio_buffer.clear" => {
                (&[], &[])
            }
            "conversation.item.create" => (&["item", "previous_item_id"], &["item"]),
            "conversation.item.delete" | "conversation.item.retrieve" => (&["item_id"], &["item_id"]),
            "conversation.item.truncate" => {
                (&["item_id", "content_index", "audio_end_ms"], &["item_id", "content_index", "audio_end_ms"])
            }
            "response.create" => (&["response"], &[]),
            "response.cancel" => (&["response_id"], &[]),
            "transcription_session.update" if self.dialect == Dialect::Beta => (&["session"], &["session"]),
            _ => return Err(ParamError::invalid_value("type", &Value::String(ty.into()), CLIENT_EVENTS)),
        };
        if let Some(k) =
            ev.keys().find(|k| !matches!(k.as_str(), "type" | "event_id") && !allowed.contains(&k.as_str()))
        {
            return Err(ParamError::unknown(k));
        }
        if let Some(k) = required.iter().find(|k| !ev.contains_key(**k)) {
            return Err(ParamError::missing(k));
        }
        if let Some(id) = ev.get("event_id").filter(|v| !v.is_string()) {
            return Err(ParamError::invalid_type("event_id", "a string", id));
        }
        match ty {
            "session.update" => self.on_session_update(&ev["session"]).await,
            "input_audio_buffer.append" => self.on_append(audio.unwrap_or_default()).await,
            "input_audio_buffer.commit" => self.on_commit().await,
            "input_audio_buffer.clear" => {
                self.clear_buffer();
                self.send(json!({"type": "input_audio_buffer.cleared"})).await;
                Ok(())
            }
            "output_audio_buffer.clear" if self.media.is_some() => {
                self.clear_output().await;
                Ok(())
            }
            "output_audio_buffer.clear" => Err(ParamError::general(
                "invalid_event",
                "output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
            )),
            "transcription_session.update" => Err(ParamError::general(
                "invalid_event",
                "Transcription sessions are not supported on a realtime conversation session.",
            )),
            "conversation.item.create" => self.on_item_create(ev).await,
            "conversation.item.delete" => self.on_item_delete(ev).await,
            "conversation.item.retrieve" => self.on_item_retrieve(ev).await,
            "conversation.item.truncate" if self.cfg.compatible.is_some() => {
                let id = ev.get("event_id").and_then(Value::as_str);
                let msg = "Truncating conversation items is not supported by this server.".to_string();
                self.compat_error(msg, id).await;
                Ok(())
            }
            "conversation.item.truncate" => self.on_truncate(ev).await,
            "response.create" => self.on_response_create(ev.get("response")).await,
            _ => self.on_response_cancel(ev.get("response_id")).await,
        }
    }

    async fn on_session_update(&mut self, update: &Value) -> Result<(), ParamError> {
        let mut update = update.clone();
        if self.cfg.compatible.is_some() {
            self.drop_unsupported(&mut update).await;
        }
        let update = &update;
        self.session.update(update, self.audio_produced)?;
        let new = self.session.effective();
        if new.input_format != self.eff.input_format {
            self.clear_buffer();
        }
        self.eff = new;
        let event = json!({"type": "session.updated", "session": self.session.json()});
        self.send(event).await;
        Ok(())
    }

    /// A compatible server: each session field it does not support gets an `error` and is
    /// ignored (the rest of the update applies); a voice it does not know is taken as is.
    async fn drop_unsupported(&mut self, update: &mut Value) {
        let Some(session) = update.as_object_mut() else { return };
        let mut ignored = Vec::new();
        for field in ["input_audio_format", "output_audio_format"] {
            if session.remove(field).is_some() {
                ignored.push(format!("session.{field}"));
            }
        }
        if let Some(td) = session.get_mut("turn_detection").and_then(Value::as_object_mut)
            && td.remove("prefix_padding_ms").is_some()
        {
            ignored.push("session.turn_detection.prefix_padding_ms".to_string());
        }
        for field in ignored {
            let msg = format!(
                "Specifying `{field}` is not supported. The server either does not support this field or it is not configurable."
            );
            self.compat_error(msg, None).await;
        }
        if let Some(voice) = session.get("voice").and_then(Value::as_str).map(str::to_string) {
            // Any name goes: the server maps it to one of its own voices.
            session.remove("voice");
            self.session.set_voice(&voice);
        }
    }

    async fn on_append(&mut self, audio: Value) -> Result<(), ParamError> {
        let b64 = audio.as_str().ok_or_else(|| ParamError::invalid_type("audio", "a string", &audio))?;
        if b64.len() / 4 * 3 > MAX_APPEND_BYTES + 3 {
            return Err(too_large(b64.len() / 4 * 3));
        }
        self.raw.clear();
        B64.decode_vec(b64, &mut self.raw).map_err(|_| {
            ParamError::new("invalid_value", "Invalid 'audio'. Expected base64-encoded audio bytes.", "audio")
        })?;
        if self.raw.len() > MAX_APPEND_BYTES {
            return Err(too_large(self.raw.len()));
        }
        self.shared.record_audio(self.id, &self.raw);
        let format = self.eff.input_format;
        self.samples.clear();
        format.decode(&self.raw, &mut self.samples);
        self.on_samples(format.rate()).await;
        Ok(())
    }

    /// Input audio in `self.samples` at `rate`: onto the input timeline and through the VAD.
    pub(crate) async fn on_samples(&mut self, rate: u32) {
        let ms = self.samples.len() as f64 * 1000.0 / rate as f64;
        self.appended_ms += ms;
        self.buffered_ms += ms;
        let Some(turn) = self.eff.turn else { return };
        let mut events = Vec::new();
        self.vad.push(&self.samples, rate, &turn, &self.cfg.vad, &mut events);
        for e in events {
            match e {
                VadEvent::Started { audio_start_ms } => {
                    self.on_speech_started(audio_start_ms, turn.interrupt_response).await
                }
                VadEvent::Stopped { audio_end_ms } => {
                    self.on_speech_stopped(audio_end_ms, turn.create_response).await
                }
            }
        }
    }

    async fn on_speech_started(&mut self, audio_start_ms: u64, interrupt: bool) {
        let item_id = self.new_id("item");
        self.vad_item = Some(item_id.clone());
        self.turn_start_ms = audio_start_ms;
        // A compatible server counts from the start of the turn's buffer.
        let shown = if self.cfg.compatible.is_some() {
            audio_start_ms.saturating_sub(self.buffer_origin_ms)
        } else {
            audio_start_ms
        };
        let event =
            json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": shown, "item_id": item_id});
        self.send(event).await;
        if interrupt && self.active.is_some() {
            self.cancel_response("turn_detected").await;
        }
        if interrupt && self.media.as_ref().is_some_and(|m| m.playing()) {
            self.clear_output().await;
        }
    }

    /// WebRTC: drops the queued output audio, says so, and truncates the item to what was sent.
    pub(crate) async fn clear_output(&mut self) {
        let Some((response_id, item_id, sent_ms)) = self.media.as_mut().and_then(|m| m.clear()) else {
            return;
        };
        self.send(json!({"type": "output_audio_buffer.cleared", "response_id": response_id})).await;
        let truncate = json!({"item_id": item_id, "content_index": 0, "audio_end_ms": sent_ms});
        if let Some(ev) = truncate.as_object()
            && let Err(e) = self.on_truncate(ev).await
        {
            tracing::debug!(connection = self.id, error = %e.message, "realtime fake: server truncation skipped");
        }
    }

    async fn on_speech_stopped(&mut self, audio_end_ms: u64, create_response: bool) {
        let item_id = self.vad_item.take().unwrap_or_else(|| self.new_id("item"));
        // A compatible server reports where speech ended (not the silence after it), from the
        // start of the turn's buffer.
        let shown = match (&self.cfg.compatible, self.eff.turn) {
            (Some(_), Some(turn)) => {
                audio_end_ms.saturating_sub(turn.silence_duration_ms).saturating_sub(self.buffer_origin_ms)
            }
            _ => audio_end_ms,
        };
        let event =
            json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": shown, "item_id": item_id});
        self.send(event).await;
        let audio_ms = audio_end_ms.saturating_sub(self.turn_start_ms);
        self.commit_user_audio(item_id, audio_ms).await;
        if create_response {
            if self.active.is_some() {
                tracing::debug!(connection = self.id, "realtime fake: turn ended while a response is active");
            } else {
                self.start_response(None).await;
            }
        }
    }

    async fn on_commit(&mut self) -> Result<(), ParamError> {
        if self.buffered_ms < 100.0 {
            return Err(ParamError::general(
                "input_audio_buffer_commit_empty",
                format!(
                    "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has {:.2}ms of audio.",
                    self.buffered_ms
                ),
            ));
        }
        let item_id = self.vad_item.take().unwrap_or_else(|| self.new_id("item"));
        let audio_ms = self.buffered_ms as u64;
        self.commit_user_audio(item_id, audio_ms).await;
        Ok(())
    }

    fn clear_buffer(&mut self) {
        self.buffered_ms = 0.0;
        self.buffer_origin_ms = self.appended_ms as u64;
        self.vad_item = None;
        self.vad.reset(self.appended_ms as u64);
    }

    /// `committed`, the user item's events and (if configured) its transcription.
    async fn commit_user_audio(&mut self, item_id: String, audio_ms: u64) {
        use super::conversation::{Item, ItemKind, Part};
        self.buffered_ms = 0.0;
        self.buffer_origin_ms = self.appended_ms as u64;
        if self.vad.speaking() {
            self.vad.reset(self.appended_ms as u64);
        }
        let previous = self.conv.last_id();
        let event =
            json!({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id});
        self.send(event).await;
        let parts = vec![Part::InputAudio { transcript: None, audio_ms }];
        let item = Item {
            id: item_id.clone(),
            status: "completed",
            kind: ItemKind::Message { role: "user".into(), parts },
        };
        self.add_item(item, None).await;
        if self.eff.transcription {
            let script = self.cfg.response(self.responses_started);
            let text = script.user_transcript.unwrap_or_else(|| "(user speech)".to_string());
            if self.cfg.compatible.is_some() {
                // Transcribed beside the reply, and done after it.
                self.late_transcript = Some((item_id, text, audio_ms));
            } else {
                self.transcribe(&item_id, &text, audio_ms).await;
            }
        }
    }

    pub(crate) async fn transcribe(&mut self, item_id: &str, text: &str, audio_ms: u64) {
        use super::conversation::{ItemKind, Part};
        for word in text.split_inclusive(' ') {
            let event = json!({"type": "conversation.item.input_audio_transcription.delta",
                "item_id": item_id, "content_index": 0, "delta": word});
            self.send(event).await;
        }
        // `usage` in both dialects: the official SDK's beta types require it too.
        let (input, output) = (audio_ms / 100, text.len().div_ceil(4) as u64);
        let usage = json!({"type": "tokens", "total_tokens": input + output, "input_tokens": input,
            "input_token_details": {"text_tokens": 0, "audio_tokens": input}, "output_tokens": output});
        let event = json!({"type": "conversation.item.input_audio_transcription.completed",
            "item_id": item_id, "content_index": 0, "transcript": text, "usage": usage});
        self.send(event).await;
        if let Some(item) = self.conv.get_mut(item_id)
            && let ItemKind::Message { parts, .. } = &mut item.kind
            && let Some(Part::InputAudio { transcript, .. }) = parts.first_mut()
        {
            *transcript = Some(text.to_string());
        }
    }

    /// Inserts an item and announces it: `added` + `done` (GA) or `created` (beta).
    pub(crate) async fn add_item(&mut self, item: super::conversation::Item, previous: Option<&str>) {
        let json = item.json(self.dialect);
        let previous = self.conv.insert(item, previous);
        self.announce_item(json, previous).await;
    }

    /// Sends the item-appeared events for an item already in the conversation.
    pub(crate) async fn announce_item(&mut self, item: Value, previous: Option<String>) {
        match self.dialect {
            Dialect::Ga => {
                let added =
                    json!({"type": "conversation.item.added", "previous_item_id": previous, "item": item});
                self.send(added).await;
                let done =
                    json!({"type": "conversation.item.done", "previous_item_id": previous, "item": item});
                self.send(done).await;
            }
            Dialect::Beta => {
                self.send(
                    json!({"type": "conversation.item.created", "previous_item_id": previous, "item": item}),
                )
                .await;
            }
        }
    }
}

fn too_large(bytes: usize) -> ParamError {
    ParamError::new(
        "invalid_value",
        format!(
            "Audio content of {bytes} bytes exceeds the maximum of 15 MiB per input_audio_buffer.append event."
        ),
        "audio",
    )
}

const CLIENT_EVENTS: &[&str] = &[
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "output_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "response.create",
    "response.cancel",
];

/// Best-effort `event_id` from text that is not valid JSON, so the error can echo it.
fn scan_event_id(text: &str) -> Option<String> {
    let at = text.find("\"event_id\"")? + "\"event_id\"".len();
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<TcpStream>, Message>,
    mut rx: mpsc::Receiver<Out>,
) {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Text(t) => {
                if sink.send(Message::text(t)).await.is_err() {
                    return;
                }
            }
            // Dropping the sink (and the reader's half) closes TCP with no close frame.
            Out::Abort => return,
        }
    }
    let _ = sink.close().await;
}

/// Decoded length of a base64 string, without decoding it.
fn b64_len(s: &str) -> usize {
    let pad = s.bytes().rev().take_while(|&b| b == b'=').count().min(2);
    (s.len() / 4 * 3).saturating_sub(pad)
}

#[cfg(test)]
mod tests {
    use super::scan_event_id;

    #[test]
    fn event_id_is_found_in_broken_json() {
        assert_eq!(scan_event_id(r#"{"event_id": "evt_7", "type": "#).as_deref(), Some("evt_7"));
        assert_eq!(scan_event_id("nonsense"), None);
    }
}
