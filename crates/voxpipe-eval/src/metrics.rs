//! Per-turn measurements from a call's event log.
//!
//! Events are attributed to scenario turns by time: turn *i* owns the events whose call time
//! `t_ms` falls between the start of its audio and the start of turn *i+1*'s (the last turn
//! owns the rest of the call). The WAV source replays the input in real time from the start
//! of the call, so the call clock and the input timeline agree up to the source's pacing.
//!
//! What is measured, per turn:
//! - `voice_to_voice_ms`: end of the caller's speech (the last `speech_stopped.at_ms` inside
//!   the turn's audio) to the first assistant audio played after it: the sink's
//!   `voice_to_voice_ms` metric when it falls in the turn, else computed from the first
//!   `playout_started` after that point.
//! - `response_start_ms`: end of speech to the first `response_started` (turn detection plus
//!   the time to hand the turn to the model: server VAD for Realtime, end-of-turn + ASR for a
//!   cascade).
//! - `response_to_audio_ms`: that `response_started` to the first `playout_started` (the model's
//!   time to first audio, LLM + TTS for a cascade).
//! - Per-stage time to first byte, as the stages logged it in the turn: `asr_final_ms` (end of
//!   speech → final transcript), `llm_first_token_ms` (request → first text of the turn's first
//!   spoken answer, cascade LLMs), `tts_first_audio_ms` (request → first audio); and
//!   `end_of_turn_delay_ms`, `interruption_latency_ms`.
//! - Transcript WER, tool correctness, reply checks, token usage by meter, audio played.
//! - The voice-to-voice breakdown by stage ([`crate::breakdown`]).

use crate::render::TurnSpan;
use crate::scenario::Turn;
use crate::score::{ReplyCheck, ToolVerdict, WerScore, check_reply, score_tool, score_wer};
use serde::Serialize;
use serde_json::Value;

/// Token usage of a turn, by meter (sums of `response_done.usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    /// Input text tokens.
    pub input_text: u64,
    /// Input audio tokens.
    pub input_audio: u64,
    /// Cached input tokens.
    pub cached: u64,
    /// Output text tokens.
    pub output_text: u64,
    /// Output audio tokens.
    pub output_audio: u64,
}

impl Tokens {
    fn add_usage(&mut self, u: &Value) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        let (input, output) = (n("input_tokens"), n("output_tokens"));
        let (it, ia, ot, oa) = (
            n("input_text_tokens"),
            n("input_audio_tokens"),
            n("output_text_tokens"),
            n("output_audio_tokens"),
        );
        // Providers that do not break usage down (chat completions) report text only.
        self.input_text += if it + ia == 0 { input } else { it };
        self.input_audio += ia;
        self.output_text += if ot + oa == 0 { output } else { ot };
        self.output_audio += oa;
        self.cached += n("cached_tokens");
    }
}

/// What a tool call returned (a `tool_result` event).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ToolOutcome {
    /// The tool.
    pub name: String,
    /// The result text given to the model.
    pub output: String,
    /// True when the call failed (`output` then describes the error).
    pub is_error: bool,
}

impl TurnMetrics {
    /// Each tool call `(name, arguments)` with its result: the k-th call of a tool gets the
    /// k-th result of that tool in the turn, none when it did not come back in the turn.
    pub fn tool_exchanges(&self) -> Vec<(&str, &str, Option<&ToolOutcome>)> {
        let mut used = vec![false; self.tool_results.len()];
        self.tool_calls
            .iter()
            .map(|(name, args)| {
                let result = self.tool_results.iter().enumerate().find(|(i, r)| !used[*i] && r.name == *name);
                let result = result.map(|(i, r)| {
                    used[i] = true;
                    r
                });
                (name.as_str(), args.as_str(), result)
            })
            .collect()
    }
}

/// Everything measured for one turn of one call.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnMetrics {
    /// Turn number, from 1.
    pub turn: usize,
    /// End of the caller's speech on the input timeline, ms (none when no VAD event fell in
    /// the turn).
    pub speech_end_ms: Option<u64>,
    /// End of speech → first assistant audio, ms.
    pub voice_to_voice_ms: Option<u64>,
    /// End of speech → first `response_started`, ms.
    pub response_start_ms: Option<u64>,
    /// `response_started` → first assistant audio, ms.
    pub response_to_audio_ms: Option<u64>,
    /// The ASR stage's end of speech → final transcript, ms.
    pub asr_final_ms: Option<u64>,
    /// The LLM stage's request → first text token, ms (the first round that produced text).
    pub llm_first_token_ms: Option<u64>,
    /// The TTS stage's request → first audio, ms.
    pub tts_first_audio_ms: Option<u64>,
    /// The local turn controller's end-of-turn delay, ms.
    pub end_of_turn_delay_ms: Option<u64>,
    /// Caller onset → assistant silent, ms (barge-in turns).
    pub interruption_latency_ms: Option<u64>,
    /// Final user transcripts of the turn, joined.
    pub user_transcript: String,
    /// WER against the reference, when the turn has one.
    pub wer: Option<WerScore>,
    /// Tools called: `(name, raw arguments)`.
    pub tool_calls: Vec<(String, String)>,
    /// Tool results, in the order they came back.
    pub tool_results: Vec<ToolOutcome>,
    /// Tool verdict, when a tool was expected.
    pub tool: Option<ToolVerdict>,
    /// What the assistant said in the turn, joined.
    pub reply: String,
    /// Reply phrase checks, when the turn has any.
    pub reply_check: Option<ReplyCheck>,
    /// Token usage.
    pub tokens: Tokens,
    /// Assistant audio played, ms.
    pub played_ms: u64,
    /// Caller audio of the turn, ms (for per-minute ASR pricing).
    pub user_audio_ms: u64,
    /// Provider or component errors in the turn.
    pub errors: Vec<String>,
    /// Voice-to-voice split into the stages it waited on ([`crate::breakdown`]); set by
    /// [`crate::breakdown::attach`] when the turn has a voice-to-voice time.
    pub breakdown: Option<crate::breakdown::Breakdown>,
    /// The LLM judge's scores of the reply ([`crate::judge`]), when the run has a judge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<crate::judge::Judgement>,
}

/// Measures every turn of a call from its events.
pub fn measure(events: &[Value], spans: &[TurnSpan], turns: &[Turn]) -> Vec<TurnMetrics> {
    spans
        .iter()
        .enumerate()
        .map(|(i, span)| {
            let end = spans.get(i + 1).map_or(u64::MAX, |s| s.start_ms);
            let window: Vec<&Value> =
                events.iter().filter(|e| (span.start_ms..end).contains(&t_ms(e))).collect();
            measure_turn(i + 1, span, end, &window, events, &turns[i])
        })
        .collect()
}

fn t_ms(e: &Value) -> u64 {
    e["t_ms"].as_u64().unwrap_or(0)
}

fn kind(e: &Value) -> &str {
    e["type"].as_str().unwrap_or("")
}

fn measure_turn(
    n: usize,
    span: &TurnSpan,
    end: u64,
    window: &[&Value],
    all: &[Value],
    turn: &Turn,
) -> TurnMetrics {
    let mut m = TurnMetrics { turn: n, user_audio_ms: span.end_ms - span.start_ms, ..Default::default() };
    // VAD events are on the input timeline and may be logged after the window (a slow ASR
    // path), so they are looked up by `at_ms` over the whole log.
    m.speech_end_ms = all
        .iter()
        .filter(|e| kind(e) == "speech_stopped")
        .filter_map(|e| e["at_ms"].as_u64())
        .filter(|at| (span.start_ms..end).contains(at))
        .max();
    let metric = |name: &str| {
        window
            .iter()
            .rev()
            .filter(|e| kind(e) == "metric" && e["name"] == name)
            .find_map(|e| e["value_ms"].as_u64())
    };
    m.asr_final_ms = metric("asr_final_ms");
    m.llm_first_token_ms = metric("llm_first_token_ms");
    m.tts_first_audio_ms = metric("tts_first_audio_ms");
    m.end_of_turn_delay_ms = metric("end_of_turn_delay_ms");
    m.interruption_latency_ms = metric("interruption_latency_ms");
    if let Some(stop) = m.speech_end_ms {
        let after = |k: &str| window.iter().filter(|e| kind(e) == k).map(|e| t_ms(e)).find(|t| *t >= stop);
        let playout = after("playout_started");
        let sink_metric = window
            .iter()
            .filter(|e| kind(e) == "metric" && e["name"] == "voice_to_voice_ms" && t_ms(e) >= stop)
            .find_map(|e| e["value_ms"].as_u64());
        m.voice_to_voice_ms = sink_metric.or(playout.map(|p| p - stop));
        let response = after("response_started");
        m.response_start_ms = response.map(|r| r - stop);
        if let (Some(r), Some(p)) = (response, playout) {
            m.response_to_audio_ms = p.checked_sub(r);
        }
    }
    let mut users = Vec::new();
    let mut replies = Vec::new();
    for e in window {
        match kind(e) {
            "user_transcript" => users.push(e["text"].as_str().unwrap_or("").trim().to_string()),
            "assistant_transcript" => replies.push(e["text"].as_str().unwrap_or("").trim().to_string()),
            "tool_call" => m.tool_calls.push((
                e["name"].as_str().unwrap_or("").to_string(),
                e["arguments"].as_str().unwrap_or("").to_string(),
            )),
            "tool_result" => m.tool_results.push(ToolOutcome {
                name: e["name"].as_str().unwrap_or("").to_string(),
                output: e["output"].as_str().unwrap_or("").to_string(),
                is_error: e["is_error"].as_bool().unwrap_or(false),
            }),
            "response_done" => m.tokens.add_usage(&e["usage"]),
            "playout_finished" => m.played_ms += e["played_ms"].as_u64().unwrap_or(0),
            "provider_error" | "error" => m.errors.push(format!(
                "{}: {}",
                e["stage"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("")
            )),
            _ => {}
        }
    }
    m.user_transcript = users.join(" ");
    m.reply = replies.join(" ");
    m.wer = turn.reference().map(|r| score_wer(r, &m.user_transcript));
    m.tool = turn.tool.as_ref().map(|t| score_tool(t, &m.tool_calls));
    if !turn.reply_must_contain.is_empty() || !turn.reply_must_not_contain.is_empty() {
        m.reply_check = Some(check_reply(&m.reply, &turn.reply_must_contain, &turn.reply_must_not_contain));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn turn(say: &str) -> Turn {
        toml::from_str(&format!("say = \"{say}\"\nreply_must_contain = [\"shipped\"]")).unwrap()
    }

    #[test]
    fn events_are_attributed_to_turns_and_latencies_measured_from_the_end_of_speech() {
        let spans = [TurnSpan { start_ms: 500, end_ms: 2000 }, TurnSpan { start_ms: 6000, end_ms: 7000 }];
        let events = vec![
            json!({"t_ms": 0, "type": "call_started", "pipeline": "x"}),
            json!({"t_ms": 2100, "type": "speech_stopped", "at_ms": 2050}),
            json!({"t_ms": 2600, "type": "response_started", "response_id": "r1"}),
            json!({"t_ms": 2700, "type": "user_transcript", "text": "Where is my order?", "is_final": true, "item": null}),
            json!({"t_ms": 2750, "type": "metric", "name": "llm_first_token_ms", "turn": 1, "value_ms": 120}),
            json!({"t_ms": 2760, "type": "tool_call", "call_id": "c1", "name": "lookup", "arguments": "{\"id\":1}"}),
            json!({"t_ms": 2761, "type": "tool_call", "call_id": "c2", "name": "lookup", "arguments": "{\"id\":2}"}),
            json!({"t_ms": 2770, "type": "tool_result", "call_id": "c1", "name": "lookup", "output": "shipped",
                   "is_error": false, "duration_ms": 3}),
            json!({"t_ms": 2850, "type": "playout_started", "item": "i1"}),
            json!({"t_ms": 2850, "type": "metric", "name": "voice_to_voice_ms", "turn": 1, "value_ms": 800}),
            json!({"t_ms": 3000, "type": "assistant_transcript", "text": "It has shipped.", "is_final": true, "item": "i1"}),
            json!({"t_ms": 3100, "type": "response_done", "response_id": "r1", "status": "completed",
                   "usage": {"input_tokens": 30, "output_tokens": 50, "input_text_tokens": 10, "input_audio_tokens": 20,
                             "cached_tokens": 0, "output_text_tokens": 5, "output_audio_tokens": 45}}),
            json!({"t_ms": 4000, "type": "playout_finished", "item": "i1", "played_ms": 1150, "interrupted": false}),
            json!({"t_ms": 7300, "type": "speech_stopped", "at_ms": 7040}),
            json!({"t_ms": 7900, "type": "playout_started", "item": "i2"}),
        ];
        let m = measure(&events, &spans, &[turn("Where is my order?"), turn("Thanks")]);
        assert_eq!(m[0].speech_end_ms, Some(2050));
        assert_eq!(m[0].voice_to_voice_ms, Some(800), "the sink's metric");
        assert_eq!(m[0].response_start_ms, Some(550));
        assert_eq!(m[0].response_to_audio_ms, Some(250));
        assert_eq!(m[0].llm_first_token_ms, Some(120));
        assert_eq!(m[1].llm_first_token_ms, None);
        assert_eq!(m[0].wer.unwrap().errors, 0);
        assert!(m[0].reply_check.as_ref().unwrap().passed());
        assert_eq!(
            m[0].tokens,
            Tokens { input_text: 10, input_audio: 20, cached: 0, output_text: 5, output_audio: 45 }
        );
        assert_eq!(m[0].played_ms, 1150);
        let tools = m[0].tool_exchanges();
        assert_eq!(tools.len(), 2);
        assert_eq!((tools[0].0, tools[0].1), ("lookup", "{\"id\":1}"));
        assert_eq!(tools[0].2.map(|r| r.output.as_str()), Some("shipped"));
        assert_eq!(tools[1].2, None, "the second call's result did not come back in the turn");
        assert_eq!(m[1].voice_to_voice_ms, Some(860), "computed from playout_started");
        assert_eq!(m[1].wer.unwrap().errors, 1, "no transcript: one deletion");
        assert!(!m[1].reply_check.as_ref().unwrap().passed());
    }
}
