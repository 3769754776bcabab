//! Model responses: the ordered, paced event sequence of PROTOCOLS.md 1.6, cancellation and
//! `response.create` / `response.cancel`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use tokio::time::Instant;
use voxpipe_core::audio::samples_for_ms;

use super::audio::{AudioFormat, tone};
use super::config::ScriptedResponse;
use super::conn::Conn;
use super::conversation::{Item, ItemKind, Part};
use super::session::{Dialect, check_max_tokens, check_modalities, check_tool_choice, check_tools};
use super::validate::{ParamError, enum_at, object_at};

/// Where a response is in its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sending audio (or text) deltas, one per tick.
    Deltas,
    /// Sending the message's `.done` events.
    CloseMessage,
    /// Sending the function call.
    FunctionCall,
    /// Sending `response.done`.
    Done,
}

/// The assistant message being generated.
#[derive(Debug)]
struct Msg {
    item_id: String,
    previous: Option<String>,
    total_samples: usize,
    samples_per_delta: usize,
    n_deltas: usize,
    next_delta: usize,
    words: Vec<String>,
    words_sent: usize,
    transcript: String,
}

/// A response in progress.
#[derive(Debug)]
pub(crate) struct ResponseGen {
    pub(crate) id: String,
    /// When the next step is due.
    pub(crate) next_at: Instant,
    interval: Duration,
    script: ScriptedResponse,
    audio: bool,
    format: AudioFormat,
    in_conversation: bool,
    phase: Phase,
    msg: Option<Msg>,
    output: Vec<Value>,
    input: (u64, usize),
    out_chars: usize,
    out_audio_ms: u64,
    /// Reused per-delta buffers: tone samples and encoded bytes.
    pcm: Vec<i16>,
    wire: Vec<u8>,
    /// A compatible server's bursts: when the current one began and the audio it has sent.
    burst: Option<(Instant, u64)>,
}

impl Conn {
    fn name(&self, ga: &'static str, beta: &'static str) -> &'static str {
        if self.dialect == Dialect::Ga { ga } else { beta }
    }

    pub(crate) async fn on_response_create(&mut self, overrides: Option<&Value>) -> Result<(), ParamError> {
        if let Some(active) = &self.active {
            return Err(ParamError::general(
                "conversation_already_has_active_response",
                format!(
                    "Conversation already has an active response in progress: {}. Wait until the response is finished before creating a new one.",
                    active.id
                ),
            ));
        }
        if let Some(o) = overrides {
            self.check_overrides(o)?;
        }
        self.start_response(overrides).await;
        Ok(())
    }

    fn check_overrides(&self, o: &Value) -> Result<(), ParamError> {
        let allowed: &[&str] = match self.dialect {
            Dialect::Ga => &[
                "conversation",
                "metadata",
                "prompt",
                "instructions",
                "audio",
                "output_modalities",
                "tools",
                "tool_choice",
                "max_output_tokens",
                "input",
                "tracing",
            ],
            Dialect::Beta => &[
                "conversation",
                "metadata",
                "modalities",
                "instructions",
                "voice",
                "output_audio_format",
                "tools",
                "tool_choice",
                "temperature",
                "max_response_output_tokens",
                "input",
            ],
        };
        let o = object_at(o, "response", allowed)?;
        for (k, v) in o {
            let p = format!("response.{k}");
            match k.as_str() {
                "conversation" => enum_at(v, &p, &["auto", "none"])?,
                "output_modalities" => check_modalities(v, &p, true)?,
                "modalities" => check_modalities(v, &p, false)?,
                "tools" => check_tools(v, &p)?,
                "tool_choice" => check_tool_choice(v, &p)?,
                "max_output_tokens" | "max_response_output_tokens" => check_max_tokens(v, &p)?,
                "output_audio_format" => enum_at(v, &p, &["pcm16", "g711_ulaw", "g711_alaw"])?,
                "audio" => {
                    let a = object_at(v, &p, &["output"])?;
                    if let Some(out) = a.get("output") {
                        object_at(out, &format!("{p}.output"), &["format", "voice"])?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Starts the next scripted response: `response.created`, `rate_limits.updated` and, for a
    /// message, the item and content-part openers. Deltas follow on the connection's ticks.
    pub(crate) async fn start_response(&mut self, overrides: Option<&Value>) {
        let ov = |k: &str| overrides.and_then(|o| o.get(k));
        let out_of_band = ov("conversation").and_then(Value::as_str) == Some("none");
        let script = if out_of_band {
            // Out of band (a filler line, a summary): the fake "follows" the instructions by
            // saying their quoted text, and leaves the script alone.
            let instructions = ov("instructions").and_then(Value::as_str).unwrap_or("");
            let quoted = instructions.split('"').nth(1).filter(|q| !q.is_empty());
            super::ScriptedResponse::say(quoted.unwrap_or(instructions))
        } else {
            self.responses_started += 1;
            self.cfg.response(self.responses_started - 1)
        };
        let audio = match ov("output_modalities").or(ov("modalities")) {
            Some(m) => m.as_array().is_some_and(|m| m.iter().any(|x| x == "audio")),
            None => self.eff.audio_out,
        };
        let format =
            match ov("output_audio_format").or(overrides.and_then(|o| o.pointer("/audio/output/format"))) {
                // Over WebRTC the audio goes on the Opus track whatever the session's format.
                _ if self.media.is_some() => AudioFormat::Pcm24k,
                Some(f) => AudioFormat::from_session(f),
                None => self.eff.output_format,
            };
        let (audio_ms, chars) = self.conv.input_size();
        let instructions = self.session.json()["instructions"].as_str().map_or(0, str::len);
        let now = Instant::now();
        let pace = if self.cfg.pace > 0.0 { self.cfg.pace } else { 1.0 };
        let mut rg = ResponseGen {
            id: self.new_id("resp"),
            next_at: now,
            interval: Duration::from_secs_f64(self.cfg.delta_ms.max(1) as f64 / pace / 1000.0).max(
                match self.fault {
                    Some(crate::fault::Fault::Slow { interval_ms }) => Duration::from_millis(interval_ms),
                    _ => Duration::ZERO,
                },
            ),
            audio,
            format,
            in_conversation: ov("conversation").and_then(Value::as_str) != Some("none"),
            phase: if script.has_message() { Phase::Deltas } else { Phase::FunctionCall },
            script,
            msg: None,
            output: Vec::new(),
            input: (audio_ms, chars + instructions),
            out_chars: 0,
            out_audio_ms: 0,
            pcm: Vec::new(),
            wire: Vec::new(),
            burst: None,
        };
        let created = json!({"type": "response.created", "response": self.response_json(&rg, "in_progress", Value::Null, Value::Null)});
        self.send(created).await;
        let limits = json!({"type": "rate_limits.updated", "rate_limits": [
            {"name": "requests", "limit": 1000, "remaining": 1000usize.saturating_sub(self.responses_started), "reset_seconds": 60},
            {"name": "tokens", "limit": 50000, "remaining": 50000u64.saturating_sub(self.tokens_used), "reset_seconds": 60},
        ]});
        self.send(limits).await;
        if rg.phase == Phase::Deltas {
            self.open_message(&mut rg).await;
            rg.next_at = now + Duration::from_millis(self.cfg.first_audio_delay_ms);
        }
        self.active = Some(rg);
    }

    async fn open_message(&mut self, rg: &mut ResponseGen) {
        let item_id = self.new_id("item");
        let mut item = Item {
            id: item_id.clone(),
            status: "in_progress",
            kind: ItemKind::Message { role: "assistant".into(), parts: Vec::new() },
        };
        let item_json = item.json(self.dialect);
        let output_index = rg.output.len();
        let added = json!({"type": "response.output_item.added", "response_id": rg.id, "output_index": output_index, "item": item_json});
        self.send(added).await;
        let previous = self.conv.last_id();
        let part = if rg.audio {
            Part::Audio { transcript: String::new(), audio_ms: 0 }
        } else {
            Part::Text(String::new())
        };
        let part_json = super::conversation::response_part_json(&part);
        if rg.in_conversation {
            let ItemKind::Message { parts, .. } = &mut item.kind else { unreachable!() };
            parts.push(part);
            self.conv.insert(item, None);
            let ty = self.name("conversation.item.added", "conversation.item.created");
            self.send(json!({"type": ty, "previous_item_id": previous, "item": item_json})).await;
        }
        let added = json!({"type": "response.content_part.added", "response_id": rg.id, "item_id": item_id,
            "output_index": output_index, "content_index": 0, "part": part_json});
        self.send(added).await;
        let words: Vec<String> = rg.script.text.split_inclusive(' ').map(str::to_string).collect();
        let rate = rg.format.rate();
        let total_samples = if rg.audio { samples_for_ms(rate, rg.script.audio_len_ms()) } else { 0 };
        let samples_per_delta = samples_for_ms(rate, self.cfg.delta_ms.max(1)).max(1);
        let n_deltas = if rg.audio { total_samples.div_ceil(samples_per_delta) } else { words.len() };
        rg.msg = Some(Msg {
            item_id,
            previous,
            total_samples,
            samples_per_delta,
            n_deltas,
            next_delta: 0,
            words,
            words_sent: 0,
            transcript: String::new(),
        });
    }

    /// Runs the step that is due.
    pub(crate) async fn step_response(&mut self) {
        let Some(mut rg) = self.active.take() else { return };
        match rg.phase {
            Phase::Deltas => {
                self.send_delta(&mut rg).await;
                let msg = rg.msg.as_ref().expect("deltas belong to a message");
                if msg.next_delta >= msg.n_deltas {
                    rg.phase = Phase::CloseMessage;
                } else {
                    rg.next_at += rg.interval;
                    self.pause_between_bursts(&mut rg);
                }
            }
            Phase::CloseMessage => {
                self.close_message(&mut rg, "completed").await;
                rg.phase = if rg.script.function_call.is_some() { Phase::FunctionCall } else { Phase::Done };
            }
            Phase::FunctionCall => {
                self.function_call(&mut rg).await;
                rg.phase = Phase::Done;
            }
            Phase::Done => return self.finish(rg, "completed", Value::Null).await,
        }
        self.active = Some(rg);
    }

    /// A compatible server sends a reply in bursts: after `burst_ms` of audio, the next burst
    /// waits until the client has played this one and then `burst_gap_ms` more.
    fn pause_between_bursts(&self, rg: &mut ResponseGen) {
        let Some(c) = &self.cfg.compatible else { return };
        if !rg.audio || self.media.is_some() {
            return;
        }
        let now = Instant::now();
        let (started, sent_ms) = rg.burst.get_or_insert((now, 0));
        *sent_ms += self.cfg.delta_ms;
        if *sent_ms >= c.burst_ms.max(1) {
            let next = *started + Duration::from_millis(*sent_ms + c.burst_gap_ms);
            rg.next_at = rg.next_at.max(next);
            rg.burst = Some((next, 0));
        }
    }

    async fn send_delta(&mut self, rg: &mut ResponseGen) {
        let Some(msg) = rg.msg.as_mut().filter(|m| m.n_deltas > 0) else { return };
        let i = msg.next_delta;
        msg.next_delta += 1;
        let (rid, item_id) = (rg.id.clone(), msg.item_id.clone());
        if rg.audio && self.fault_before_delta(&rid, &item_id).await {
            msg.next_delta -= 1;
            return;
        }
        if rg.audio {
            let from = i * msg.samples_per_delta;
            let n = msg.samples_per_delta.min(msg.total_samples - from);
            tone(rg.format.rate(), from, n, msg.total_samples, &mut rg.pcm);
            rg.out_audio_ms = ((from + n) as u64 * 1000) / rg.format.rate() as u64;
            if let Some(media) = self.media.as_mut() {
                // WebRTC: the audio goes to the output buffer and the track, not into events.
                if media.push(&rid, &item_id, &rg.pcm) {
                    self.send(json!({"type": "output_audio_buffer.started", "response_id": rid})).await;
                }
            } else {
                rg.wire.clear();
                rg.format.encode(&rg.pcm, &mut rg.wire);
                let ty = self.name("response.output_audio.delta", "response.audio.delta");
                let ev = json!({"type": ty, "response_id": rid, "item_id": item_id, "output_index": rg.output.len(),
                    "content_index": 0, "delta": B64.encode(&rg.wire)});
                self.send(ev).await;
            }
            self.audio_produced = true;
            self.audio_deltas_sent += 1;
            tracing::trace!(connection = self.id, delta = i, "realtime fake: audio delta");
            let faulty =
                self.cfg.fault_connections.is_empty() || self.cfg.fault_connections.contains(&self.id);
            if faulty && self.cfg.close_after_audio_deltas.is_some_and(|n| self.audio_deltas_sent >= n) {
                tracing::debug!(connection = self.id, "realtime fake: closing abruptly (fault knob)");
                self.aborted = true;
                return;
            }
        }
        let ty = if rg.audio {
            self.name("response.output_audio_transcript.delta", "response.audio_transcript.delta")
        } else {
            self.name("response.output_text.delta", "response.text.delta")
        };
        let (n, nw) = (msg.n_deltas, msg.words.len());
        while msg.words_sent < nw && (msg.words_sent * n / nw <= i || msg.next_delta >= n) {
            let word = msg.words[msg.words_sent].clone();
            msg.words_sent += 1;
            msg.transcript.push_str(&word);
            let ev = json!({"type": ty, "response_id": rid, "item_id": item_id, "output_index": rg.output.len(),
                "content_index": 0, "delta": word});
            self.send(ev).await;
        }
        self.sync_item(rg);
    }

    /// Applies the connection's fault before an audio delta: injects its malformed, unknown or
    /// oversize event when as many deltas as it asks have gone out, or cuts or stalls. True
    /// when the delta must not be sent.
    async fn fault_before_delta(&mut self, rid: &str, item_id: &str) -> bool {
        use crate::fault::{Fault, Injection};
        let Some(fault) = self.fault.clone() else { return false };
        let sent = self.audio_deltas_sent as usize;
        match fault {
            Fault::CutAfter { chunks } if sent >= chunks => {
                tracing::debug!(connection = self.id, "realtime fake: closing abruptly (fault)");
                self.aborted = true;
                return true;
            }
            Fault::StallAfter { chunks } if sent >= chunks => {
                tracing::debug!(connection = self.id, "realtime fake: stalling the response (fault)");
                self.stalled = true;
                return true;
            }
            _ => {}
        }
        if let Some((after, what)) = fault.injection()
            && after == sent
            && !self.injected
        {
            self.injected = true;
            let id = self.new_id("event");
            let text = match what {
                Injection::Malformed => format!(
                    "{{\"type\":\"response.output_audio.delta\",\"event_id\":\"{id}\",\"response_id\":\"{rid}\",\"item_id\":\"{item_id}\",\"delta\":\"AAAA"
                ),
                Injection::Unknown => json!({"type": "response.fake_unknown_event", "event_id": id,
                    "response_id": rid, "note": "an event type this API does not define"})
                .to_string(),
                Injection::Oversize(bytes) => json!({"type": "rate_limits.updated", "event_id": id,
                    "rate_limits": [], "x_fake_padding": crate::fault::padding(bytes)})
                .to_string(),
            };
            self.send_raw(text).await;
        }
        false
    }

    /// Mirrors what has been generated into the conversation item.
    fn sync_item(&mut self, rg: &ResponseGen) {
        let Some(msg) = &rg.msg else { return };
        if let Some(item) = self.conv.get_mut(&msg.item_id)
            && let ItemKind::Message { parts, .. } = &mut item.kind
        {
            match parts.first_mut() {
                Some(Part::Audio { transcript, audio_ms }) => {
                    transcript.clone_from(&msg.transcript);
                    *audio_ms = rg.out_audio_ms;
                }
                Some(Part::Text(t)) => t.clone_from(&msg.transcript),
                _ => {}
            }
        }
    }

    async fn close_message(&mut self, rg: &mut ResponseGen, status: &'static str) {
        let Some(mut msg) = rg.msg.take() else { return };
        if status == "completed" && msg.words_sent < msg.words.len() {
            msg.transcript = msg.words.concat();
        }
        rg.out_chars += msg.transcript.len();
        rg.msg = Some(msg);
        self.sync_item(rg);
        let msg = rg.msg.take().expect("just put back");
        let ids = json!({"response_id": rg.id, "item_id": msg.item_id, "output_index": rg.output.len(), "content_index": 0});
        let with = |extra: Value| {
            let mut v = ids.clone();
            v.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
            v
        };
        let part = if rg.audio {
            Part::Audio { transcript: msg.transcript.clone(), audio_ms: rg.out_audio_ms }
        } else {
            Part::Text(msg.transcript.clone())
        };
        if rg.audio {
            self.send(with(json!({"type": self.name("response.output_audio.done", "response.audio.done")})))
                .await;
            let ty = self.name("response.output_audio_transcript.done", "response.audio_transcript.done");
            self.send(with(json!({"type": ty, "transcript": msg.transcript}))).await;
        } else {
            let ty = self.name("response.output_text.done", "response.text.done");
            self.send(with(json!({"type": ty, "text": msg.transcript}))).await;
        }
        let part_json = super::conversation::response_part_json(&part);
        self.send(with(json!({"type": "response.content_part.done", "part": part_json}))).await;
        let item = Item {
            id: msg.item_id.clone(),
            status,
            kind: ItemKind::Message { role: "assistant".into(), parts: vec![part] },
        };
        if let Some(stored) = self.conv.get_mut(&msg.item_id) {
            stored.status = status;
        }
        self.finish_item(rg, item.json(self.dialect), msg.previous).await;
    }

    /// `response.output_item.done` (+ GA `conversation.item.done`) for an output item.
    async fn finish_item(&mut self, rg: &mut ResponseGen, item: Value, previous: Option<String>) {
        let done = json!({"type": "response.output_item.done", "response_id": rg.id, "output_index": rg.output.len(), "item": item});
        self.send(done).await;
        if rg.in_conversation && self.dialect == Dialect::Ga {
            self.send(json!({"type": "conversation.item.done", "previous_item_id": previous, "item": item}))
                .await;
        }
        rg.output.push(item);
    }

    async fn function_call(&mut self, rg: &mut ResponseGen) {
        let Some(call) = rg.script.function_call.clone() else { return };
        let call_id = call.call_id.clone().unwrap_or_else(|| self.new_id("call"));
        let item_id = self.new_id("item");
        let mut item = Item {
            id: item_id.clone(),
            status: "in_progress",
            kind: ItemKind::FunctionCall {
                call_id: call_id.clone(),
                name: call.name.clone(),
                arguments: String::new(),
            },
        };
        let output_index = rg.output.len();
        let added = json!({"type": "response.output_item.added", "response_id": rg.id, "output_index": output_index, "item": item.json(self.dialect)});
        self.send(added).await;
        let previous = self.conv.last_id();
        if rg.in_conversation {
            let ty = self.name("conversation.item.added", "conversation.item.created");
            self.send(json!({"type": ty, "previous_item_id": previous, "item": item.json(self.dialect)}))
                .await;
        }
        let chars: Vec<char> = call.arguments.chars().collect();
        for piece in chars.chunks(5) {
            let delta: String = piece.iter().collect();
            let ev = json!({"type": "response.function_call_arguments.delta", "response_id": rg.id, "item_id": item_id,
                "output_index": output_index, "call_id": call_id, "delta": delta});
            self.send(ev).await;
        }
        let mut done = json!({"type": "response.function_call_arguments.done", "response_id": rg.id, "item_id": item_id,
            "output_index": output_index, "call_id": call_id, "arguments": call.arguments});
        if self.dialect == Dialect::Ga {
            done["name"] = json!(call.name);
        }
        self.send(done).await;
        item.status = "completed";
        item.kind = ItemKind::FunctionCall { call_id, name: call.name, arguments: call.arguments.clone() };
        rg.out_chars += call.arguments.len();
        let json = item.json(self.dialect);
        if rg.in_conversation {
            self.conv.insert(item, None);
        }
        self.finish_item(rg, json, previous).await;
    }

    /// Cancels the active response: the pending `.done` events, then `response.done` with
    /// status `cancelled` and `reason`.
    pub(crate) async fn cancel_response(&mut self, reason: &str) {
        let Some(mut rg) = self.active.take() else { return };
        match rg.phase {
            Phase::Deltas => self.close_message(&mut rg, "incomplete").await,
            Phase::CloseMessage => self.close_message(&mut rg, "completed").await,
            Phase::FunctionCall | Phase::Done => {}
        }
        self.finish(rg, "cancelled", json!({"type": "cancelled", "reason": reason})).await;
    }

    pub(crate) async fn on_response_cancel(&mut self, response_id: Option<&Value>) -> Result<(), ParamError> {
        let wanted = response_id.and_then(Value::as_str);
        match &self.active {
            Some(a) if wanted.is_none_or(|w| w == a.id) => {
                self.cancel_response("client_cancelled").await;
                Ok(())
            }
            _ => Err(ParamError::general(
                "response_cancel_not_active",
                "Cancellation failed: no active response found.",
            )),
        }
    }

    async fn finish(&mut self, rg: ResponseGen, status: &str, details: Value) {
        let (in_audio, in_chars) = rg.input;
        let (in_audio, in_text) = (in_audio / 100, (in_chars / 4) as u64);
        let (out_audio, out_text) = (rg.out_audio_ms / 50, rg.out_chars.div_ceil(4) as u64);
        let (input, output) = (in_audio + in_text, out_audio + out_text);
        self.tokens_used += input + output;
        let usage = json!({"total_tokens": input + output, "input_tokens": input, "output_tokens": output,
            "input_token_details": {"text_tokens": in_text, "audio_tokens": in_audio, "image_tokens": 0, "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}},
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio}});
        let response = self.response_json(&rg, status, details, usage);
        self.send(json!({"type": "response.done", "response": response})).await;
        if let Some((item_id, text, audio_ms)) = self.late_transcript.take() {
            self.transcribe(&item_id, &text, audio_ms).await;
        }
    }

    fn response_json(&self, rg: &ResponseGen, status: &str, details: Value, usage: Value) -> Value {
        let s = self.session.json();
        let conversation = rg.in_conversation.then(|| format!("conv_fake{:04}", self.id));
        let mut v = json!({"object": "realtime.response", "id": rg.id, "status": status, "status_details": details,
            "output": rg.output, "conversation_id": conversation, "usage": usage, "metadata": null});
        let modalities = if rg.audio { json!(["audio"]) } else { json!(["text"]) };
        match self.dialect {
            Dialect::Ga => {
                v["output_modalities"] = modalities;
                v["max_output_tokens"] = s["max_output_tokens"].clone();
                v["audio"] = json!({"output": {"format": ga_format(rg.format), "voice": s["audio"]["output"]["voice"]}});
            }
            Dialect::Beta => {
                v["modalities"] = if rg.audio { json!(["text", "audio"]) } else { json!(["text"]) };
                v["voice"] = s["voice"].clone();
                v["output_audio_format"] = json!(match rg.format {
                    AudioFormat::Pcm24k => "pcm16",
                    AudioFormat::Pcmu => "g711_ulaw",
                    AudioFormat::Pcma => "g711_alaw",
                });
                v["temperature"] = s["temperature"].clone();
                v["max_output_tokens"] = s["max_response_output_tokens"].clone();
            }
        }
        v
    }
}

fn ga_format(f: AudioFormat) -> Value {
    match f {
        AudioFormat::Pcm24k => json!({"type": "audio/pcm", "rate": 24000}),
        AudioFormat::Pcmu => json!({"type": "audio/pcmu"}),
        AudioFormat::Pcma => json!({"type": "audio/pcma"}),
    }
}
