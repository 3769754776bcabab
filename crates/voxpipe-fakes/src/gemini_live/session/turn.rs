//! The model's turn: paced chunks (audio with its transcription, or text parts), the tool
//! call, `generationComplete`, `turnComplete` with usage once the audio has had time to play,
//! and the connection's fault applied before each chunk.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use tokio::time::Instant;

use super::{AUDIO_TOKENS_PER_S, Gen, OUT_RATE, Out, Session};
use crate::fault::{Fault, Injection};
use crate::gemini_live::wire::OUTPUT_MIME;
use crate::voice::tone;

impl Session {
    /// One step of the model turn: a chunk, the tool call, `generationComplete` or
    /// `turnComplete`.
    pub(super) async fn step(&mut self) {
        let Some(mut g) = self.model_turn.take() else { return };
        let audio_out = self.setup.as_ref().is_some_and(|s| s.audio_out);
        let chars = g.script.text.chars().count();
        let more = if audio_out { g.sent_ms < g.total_ms } else { g.text_sent < chars };
        if g.generated {
            // Playback is over: the turn is complete.
            self.finish_turn(g).await;
            return;
        }
        if more {
            if !self.before_chunk().await {
                self.model_turn = Some(g);
                return;
            }
            let pace = if self.cfg.pace > 0.0 { self.cfg.pace } else { 1.0 };
            let delta_ms = self.cfg.delta_ms.max(1);
            let mut interval = Duration::from_secs_f64(delta_ms as f64 / pace / 1000.0);
            if let Some(Fault::Slow { interval_ms }) = self.fault {
                interval = interval.max(Duration::from_millis(interval_ms));
            }
            if audio_out {
                let n_ms = delta_ms.min(g.total_ms - g.sent_ms);
                let total = voxpipe_core::audio::samples_for_ms(OUT_RATE, g.total_ms);
                let from = voxpipe_core::audio::samples_for_ms(OUT_RATE, g.sent_ms);
                let to = voxpipe_core::audio::samples_for_ms(OUT_RATE, g.sent_ms + n_ms).min(total);
                let mut samples = Vec::new();
                tone(OUT_RATE, from, to - from, total, &mut samples);
                let mut bytes = Vec::with_capacity(samples.len() * 2);
                voxpipe_core::audio::pcm::encode_pcm16le(&samples, &mut bytes);
                let part = json!({"inlineData": {"mimeType": OUTPUT_MIME, "data": B64.encode(&bytes)}});
                self.send(json!({"serverContent": {"modelTurn": {"parts": [part]}}})).await;
                g.playing_since.get_or_insert(Instant::now());
                g.sent_ms += n_ms;
                // The words of this audio, as output transcription.
                let upto = (chars as u64 * g.sent_ms).checked_div(g.total_ms).unwrap_or(0) as usize;
                let words = take_words(&g.script.text, g.text_sent, upto, g.sent_ms >= g.total_ms);
                if self.setup.as_ref().is_some_and(|s| s.output_transcription) && !words.1.is_empty() {
                    self.send(json!({"serverContent": {"outputTranscription": {"text": words.1}}})).await;
                }
                g.text_sent = words.0;
            } else {
                let upto = (g.text_sent + 12).min(chars);
                let (end, piece) = take_words(&g.script.text, g.text_sent, upto, upto >= chars);
                g.text_sent = end;
                self.send(json!({"serverContent": {"modelTurn": {"parts": [{"text": piece}]}}})).await;
            }
            self.chunks_sent += 1;
            g.next_at += interval;
            self.model_turn = Some(g);
            return;
        }
        if let Some(call) = g.script.function_call.clone() {
            if self.setup.as_ref().is_some_and(|s| !s.functions.contains(&call.name)) {
                tracing::warn!(connection = self.id, function = %call.name, "gemini live fake: the scripted call names a function the setup did not declare");
            }
            self.next_call += 1;
            let id = call.id.unwrap_or_else(|| format!("fc_fake{:04}{:04}", self.id, self.next_call));
            if !g.script.text.is_empty() {
                self.push_history("model", &g.script.text);
            }
            self.pending_calls.push((id.clone(), call.name.clone()));
            let fc = json!({"id": id, "name": call.name, "args": call.args});
            self.send(json!({"toolCall": {"functionCalls": [fc]}})).await;
            self.resumption_update().await;
            return;
        }
        self.send(json!({"serverContent": {"generationComplete": true}})).await;
        g.generated = true;
        // Waits for the caller's real-time playback of what was sent.
        let played = g.playing_since.map_or(Duration::ZERO, |t| t.elapsed());
        let left = Duration::from_millis(if audio_out { g.total_ms } else { 0 }).saturating_sub(played);
        g.next_at = Instant::now() + left;
        self.model_turn = Some(g);
    }

    async fn finish_turn(&mut self, g: Gen) {
        if !g.script.text.is_empty() {
            self.push_history("model", &g.script.text);
        }
        let prompt_text: usize = self.history.iter().map(|t| t.text.len() / 4).sum();
        let prompt_audio = (self.input_audio_ms / 1000.0 * AUDIO_TOKENS_PER_S) as u64;
        let audio_out = self.setup.as_ref().is_some_and(|s| s.audio_out);
        let response = if audio_out {
            (g.total_ms as f64 / 1000.0 * 25.0) as u64
        } else {
            (g.script.text.len() / 4).max(1) as u64
        };
        let prompt = prompt_text as u64 + prompt_audio;
        let out_modality = if audio_out { "AUDIO" } else { "TEXT" };
        let usage = json!({
            "promptTokenCount": prompt, "responseTokenCount": response, "totalTokenCount": prompt + response,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_text}, {"modality": "AUDIO", "tokenCount": prompt_audio}],
            "responseTokensDetails": [{"modality": out_modality, "tokenCount": response}],
        });
        self.send(json!({"serverContent": {"turnComplete": true}, "usageMetadata": usage})).await;
        if let Some((script, _)) = self.queued.take() {
            self.start(script);
        }
        self.resumption_update().await;
    }

    /// Applies the connection's fault before a chunk; false when the chunk must not be sent.
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
                        Injection::Malformed => "{\"serverContent\": {\"modelTurn\": {\"parts\": [".to_string(),
                        Injection::Unknown => {
                            json!({"fakeUnknownMessage": {"note": "a message type the Live API does not define"}})
                                .to_string()
                        }
                        Injection::Oversize(bytes) => {
                            json!({"serverContent": {"modelTurn": {"parts": [{"text": crate::fault::padding(bytes)}]}}})
                                .to_string()
                        }
                    };
                    self.send_out(Out::Raw(raw)).await;
                }
            }
            None => {}
        }
        true
    }
}

/// The text from char `from` to about char `to`, extended to a word end unless `last` (then to
/// the end): (the new position, the piece).
fn take_words(text: &str, from: usize, to: usize, last: bool) -> (usize, String) {
    let chars: Vec<char> = text.chars().collect();
    let mut end = if last { chars.len() } else { to.min(chars.len()) };
    while end < chars.len() && end > from && !chars[end - 1].is_whitespace() {
        end += 1;
    }
    if end <= from {
        return (from, String::new());
    }
    (end, chars[from..end].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::take_words;

    #[test]
    fn words_are_cut_at_word_ends() {
        assert_eq!(take_words("Hello there you", 0, 3, false), (6, "Hello ".to_string()));
        assert_eq!(take_words("Hello there you", 6, 8, true), (15, "there you".to_string()));
    }
}
