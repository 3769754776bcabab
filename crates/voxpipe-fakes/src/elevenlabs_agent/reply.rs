//! The agent's reply: `internal_tentative_agent_response` and `agent_response`, paced `audio`
//! in the agent's output format, the client tool call, the end of playback, and the
//! connection's fault applied before each audio message.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use tokio::time::Instant;

use super::config::AgentScriptedResponse;
use super::conversation::{Conversation, Out};
use crate::fault::{Fault, Injection};
use crate::voice::tone;

/// The reply being spoken.
#[derive(Debug)]
pub(super) struct Reply {
    pub text: String,
    script: AgentScriptedResponse,
    /// The conversation's first message (no tentative response before it).
    first: bool,
    /// When the next step is due.
    pub next_at: Instant,
    total_ms: u64,
    pub sent_ms: u64,
    announced: bool,
    /// When the first audio went out: the caller plays it in real time from here.
    playing_since: Option<Instant>,
    /// All audio is out; the reply ends at `next_at` (the end of playback).
    sent_all: bool,
}

impl Reply {
    pub(super) fn new(script: AgentScriptedResponse, first: bool, next_at: Instant) -> Self {
        let total_ms = script.audio_len_ms();
        Self {
            text: script.text.clone(),
            script,
            first,
            next_at,
            total_ms,
            sent_ms: 0,
            announced: false,
            playing_since: None,
            sent_all: false,
        }
    }

    /// The words of the audio the caller has heard so far.
    pub(super) fn heard_text(&self) -> String {
        let heard_ms = self.playing_since.map_or(0, |t| t.elapsed().as_millis() as u64).min(self.sent_ms);
        let chars = self.text.chars().count();
        let cut = (chars as u64 * heard_ms).checked_div(self.total_ms).unwrap_or(0) as usize;
        self.text.chars().take(cut).collect::<String>().trim_end().to_string()
    }
}

impl Conversation {
    /// One step of the reply: its text, an audio message, the tool call or its end.
    pub(super) async fn step(&mut self) {
        let Some(mut r) = self.reply.take() else { return };
        if r.sent_all {
            if !r.text.is_empty() {
                self.push_history("agent", &r.text);
            }
            self.reply_done();
            return;
        }
        if !r.announced {
            r.announced = true;
            if !r.text.is_empty() {
                if !r.first {
                    let t = json!({"tentative_agent_response": r.text});
                    self.send(json!({"type": "internal_tentative_agent_response", "tentative_agent_response_internal_event": t}))
                        .await;
                }
                self.send(
                    json!({"type": "agent_response", "agent_response_event": {"agent_response": r.text}}),
                )
                .await;
            }
        }
        if r.sent_ms < r.total_ms {
            if !self.before_chunk().await {
                self.reply = Some(r);
                return;
            }
            let pace = if self.cfg.pace > 0.0 { self.cfg.pace } else { 1.0 };
            let delta_ms = self.cfg.delta_ms.max(1);
            let mut interval = Duration::from_secs_f64(delta_ms as f64 / pace / 1000.0);
            if let Some(Fault::Slow { interval_ms }) = self.fault {
                interval = interval.max(Duration::from_millis(interval_ms));
            }
            let rate = self.out_format.rate;
            let n_ms = delta_ms.min(r.total_ms - r.sent_ms);
            let total = voxpipe_core::audio::samples_for_ms(rate, r.total_ms);
            let from = voxpipe_core::audio::samples_for_ms(rate, r.sent_ms);
            let to = voxpipe_core::audio::samples_for_ms(rate, r.sent_ms + n_ms).min(total);
            let mut samples = Vec::new();
            tone(rate, from, to - from, total, &mut samples);
            let mut bytes = Vec::with_capacity(samples.len() * 2);
            self.out_format.encode(&samples, &mut bytes);
            self.audio_event_id += 1;
            let audio = json!({"audio_base_64": B64.encode(&bytes), "event_id": self.audio_event_id});
            self.send(json!({"type": "audio", "audio_event": audio})).await;
            r.playing_since.get_or_insert(Instant::now());
            r.sent_ms += n_ms;
            self.chunks_sent += 1;
            r.next_at += interval;
            self.reply = Some(r);
            return;
        }
        if let Some(call) = r.script.tool_call.clone() {
            if !self.agent.client_tools.is_empty() && !self.agent.client_tools.contains(&call.tool_name) {
                tracing::warn!(connection = self.id, tool = %call.tool_name, "elevenlabs agent fake: the scripted call names a tool the agent does not have");
            }
            self.next_tool += 1;
            let id =
                call.tool_call_id.unwrap_or_else(|| format!("toolu_fake{:04}{:04}", self.id, self.next_tool));
            let deadline = Instant::now() + Duration::from_millis(self.cfg.tool_timeout_ms);
            self.pending_tools.push((id.clone(), call.tool_name.clone(), deadline));
            let c = json!({"tool_name": call.tool_name, "tool_call_id": id, "parameters": call.parameters});
            self.send(json!({"type": "client_tool_call", "client_tool_call": c})).await;
        }
        // The reply is over once the caller has heard it all.
        let played = r.playing_since.map_or(Duration::ZERO, |t| t.elapsed());
        r.next_at = Instant::now() + Duration::from_millis(r.total_ms).saturating_sub(played);
        r.sent_all = true;
        self.reply = Some(r);
    }

    /// Applies the connection's fault before an audio message; false when it must not be sent.
    async fn before_chunk(&mut self) -> bool {
        let n = self.chunks_sent;
        match self.fault.clone() {
            Some(Fault::CutAfter { chunks }) if n >= chunks => {
                self.shared.record_close(self.id, 1006, "fault: connection cut");
                self.send_out(Out::Abort).await;
                self.ended = true;
                self.aborted = true;
                return false;
            }
            Some(Fault::StallAfter { chunks }) if n >= chunks => {
                self.stalled = true;
                return false;
            }
            Some(f) => {
                if let Some((after, what)) = f.injection()
                    && after <= n
                    && !self.injected
                {
                    self.injected = true;
                    let raw = match what {
                        Injection::Malformed => "{\"type\": \"audio\", \"audio_event\": {\"audio_base_64\": ".to_string(),
                        Injection::Unknown => json!({"type": "fake_unknown_event", "fake_unknown_event": {"note": "a type the spec does not define"}}).to_string(),
                        Injection::Oversize(bytes) => {
                            let t = json!({"tentative_agent_response": crate::fault::padding(bytes)});
                            json!({"type": "internal_tentative_agent_response", "tentative_agent_response_internal_event": t}).to_string()
                        }
                    };
                    self.send_out(Out::Json(raw)).await;
                }
            }
            None => {}
        }
        true
    }
}
