//! Where the time goes: each turn's voice-to-voice time split into the stages it waited on.
//!
//! A turn's voice-to-voice runs from the end of the caller's speech (`speech_end_ms`, input
//! timeline) to the first assistant audio played (`speech_end_ms + voice_to_voice_ms`). Each
//! stage ends at a moment the event log records, on the call clock:
//!
//! | stage | ends at |
//! |---|---|
//! | `end_of_turn` | cascade: the turn controller's `turn_ended`; native: the server VAD's `speech_stopped` arriving |
//! | `asr_final` | the ASR's `asr_final_ms` metric (the final transcript) |
//! | `llm_first_token` | the LLM's `llm_first_token_ms` metric (first text of the spoken answer, after any tool rounds) |
//! | `first_clause` | the TTS request of the first speakable clause (`tts_first_audio_ms` metric time minus its value) |
//! | `tts_first_audio` | the TTS stage's `tts_first_audio_ms` metric |
//! | `model_first_audio` | native: `playout_started` (the Realtime stage logs no arrival of its first audio) |
//! | `transport_playout` | the first audio played: the remainder |
//!
//! The stages are the critical path: each end is clamped between the previous one and the end
//! of the turn, so a stage that finished while an earlier one was still running counts 0, a
//! stage whose event is missing counts 0 and its time goes to the next one, and the stages sum
//! to voice-to-voice exactly. One exception: when the final transcript came before the turn
//! controller's decision (the controller waited on the words), `asr_final` is the
//! transcription's own time (the `asr_final_ms` value) and `end_of_turn` the rest of the wait
//! (detecting the end of speech, and anything the controller waited after the words).

use crate::metrics::TurnMetrics;
use serde::Serialize;
use serde_json::Value;

/// The two shapes of pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// One speech-to-speech stage (`realtime.openai`).
    Native,
    /// ASR → LLM → TTS.
    Cascade,
}

impl Architecture {
    /// The architecture of a pipeline with these stage kinds: native when one of them is a
    /// speech-to-speech stage.
    pub fn of<'a>(kinds: impl IntoIterator<Item = &'a str>) -> Self {
        let native = kinds.into_iter().any(|k| {
            voxpipe_config::StageKind::get(k).is_some_and(|k| k.role == voxpipe_config::Role::Native)
        });
        if native { Self::Native } else { Self::Cascade }
    }

    /// Its stages, in order; the last is the remainder.
    pub fn stages(self) -> &'static [Stage] {
        match self {
            Self::Native => &[Stage::EndOfTurn, Stage::ModelFirstAudio, Stage::TransportPlayout],
            Self::Cascade => &[
                Stage::EndOfTurn,
                Stage::AsrFinal,
                Stage::LlmFirstToken,
                Stage::FirstClause,
                Stage::TtsFirstAudio,
                Stage::TransportPlayout,
            ],
        }
    }
}

/// A stage of the voice-to-voice path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// End of speech → the turn is declared over.
    EndOfTurn,
    /// → the final transcript (what of it was not done already).
    AsrFinal,
    /// → the LLM's first token of the spoken answer.
    LlmFirstToken,
    /// → the first speakable clause is sent to the TTS.
    FirstClause,
    /// → the TTS's first audio.
    TtsFirstAudio,
    /// → the native model's first audio reaches the sink.
    ModelFirstAudio,
    /// → the first audio is played (the remainder).
    TransportPlayout,
}

/// Every stage in report order (cascade stages, then the native one, then the remainder).
pub const ALL_STAGES: [Stage; 7] = [
    Stage::EndOfTurn,
    Stage::AsrFinal,
    Stage::LlmFirstToken,
    Stage::FirstClause,
    Stage::TtsFirstAudio,
    Stage::ModelFirstAudio,
    Stage::TransportPlayout,
];

impl Stage {
    /// The name in the report and in `results.jsonl`.
    pub fn name(self) -> &'static str {
        match self {
            Self::EndOfTurn => "end_of_turn",
            Self::AsrFinal => "asr_final",
            Self::LlmFirstToken => "llm_first_token",
            Self::FirstClause => "first_clause",
            Self::TtsFirstAudio => "tts_first_audio",
            Self::ModelFirstAudio => "model_first_audio",
            Self::TransportPlayout => "transport_playout",
        }
    }

    /// A short human label.
    pub fn label(self) -> &'static str {
        match self {
            Self::EndOfTurn => "end-of-turn wait",
            Self::AsrFinal => "ASR final",
            Self::LlmFirstToken => "LLM first token",
            Self::FirstClause => "first speakable clause",
            Self::TtsFirstAudio => "TTS first audio",
            Self::ModelFirstAudio => "model first audio",
            Self::TransportPlayout => "transport/playout",
        }
    }
}

/// One stage's share of a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StageTime {
    /// The stage.
    pub stage: Stage,
    /// Its time, ms.
    pub ms: u64,
}

/// A turn's voice-to-voice time, stage by stage; the times sum to voice-to-voice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breakdown {
    /// The pipeline's shape.
    pub architecture: Architecture,
    /// The stages in order, with their times.
    pub stages: Vec<StageTime>,
}

impl Breakdown {
    /// The time of `stage`, if this breakdown has it.
    pub fn get(&self, stage: Stage) -> Option<u64> {
        self.stages.iter().find(|s| s.stage == stage).map(|s| s.ms)
    }

    /// The sum of the stages (equal to the turn's voice-to-voice).
    pub fn total_ms(&self) -> u64 {
        self.stages.iter().map(|s| s.ms).sum()
    }
}

fn t_ms(e: &Value) -> u64 {
    e["t_ms"].as_u64().unwrap_or(0)
}

fn is_metric(e: &Value, name: &str) -> bool {
    e["type"] == "metric" && e["name"] == name
}

/// Splits every measured turn of a call (`turns`, from [`crate::metrics::measure`] over the
/// same `events`) into stages; turns without an end of speech or a voice-to-voice time get none.
pub fn attach(architecture: Architecture, events: &[Value], turns: &mut [TurnMetrics]) {
    for t in turns {
        t.breakdown = match (t.speech_end_ms, t.voice_to_voice_ms) {
            (Some(start), Some(v2v)) => Some(of_turn(architecture, events, start, start + v2v)),
            _ => None,
        };
    }
}

/// The breakdown of the path from `start` (end of speech) to `end` (first audio played).
pub fn of_turn(architecture: Architecture, events: &[Value], start: u64, end: u64) -> Breakdown {
    let inside: Vec<&Value> = events.iter().filter(|e| (start..=end).contains(&t_ms(e))).collect();
    // The last event of a kind before the audio: a turn split by a pause has several, and the
    // reply that played answers the last.
    let last = |f: &dyn Fn(&Value) -> bool| inside.iter().rev().find(|e| f(e)).map(|e| t_ms(e));
    let metric = |name: &str| last(&|e| is_metric(e, name));
    let ends: Vec<Option<u64>> = architecture
        .stages()
        .iter()
        .map(|stage| match stage {
            Stage::EndOfTurn => match architecture {
                Architecture::Cascade => last(&|e| e["type"] == "turn_ended"),
                Architecture::Native => inside
                    .iter()
                    .find(|e| e["type"] == "speech_stopped" && e["at_ms"].as_u64() == Some(start))
                    .map(|e| t_ms(e))
                    .or_else(|| last(&|e| e["type"] == "speech_stopped")),
            },
            Stage::AsrFinal => metric("asr_final_ms"),
            Stage::LlmFirstToken => metric("llm_first_token_ms"),
            Stage::FirstClause => inside
                .iter()
                .rev()
                .find(|e| is_metric(e, "tts_first_audio_ms"))
                .and_then(|e| t_ms(e).checked_sub(e["value_ms"].as_u64()?)),
            Stage::TtsFirstAudio => metric("tts_first_audio_ms"),
            Stage::ModelFirstAudio => last(&|e| e["type"] == "playout_started"),
            Stage::TransportPlayout => Some(end),
        })
        .collect();
    let (head, from) = match architecture {
        Architecture::Native => (Vec::new(), start),
        Architecture::Cascade => {
            let asr_value = inside
                .iter()
                .rev()
                .find(|e| is_metric(e, "asr_final_ms"))
                .and_then(|e| e["value_ms"].as_u64());
            eot_and_asr(start, end, ends[0], ends[1], asr_value)
        }
    };
    let order = &architecture.stages()[head.len()..];
    let mut b = split(architecture, order, from, end, &ends[head.len()..]);
    b.stages.splice(0..0, head);
    b
}

/// The cascade's first two stages and where they leave the turn. When the final transcript
/// came after the turn controller's decision, the ASR stage is the wait past that decision.
/// When it came first (the controller waited on the words), the ASR stage is its own
/// transcription time (`asr_final_ms`'s value) and the end-of-turn wait is the rest: waiting
/// for the end of speech to be detected before it, and any further wait of the controller after.
fn eot_and_asr(
    start: u64,
    end: u64,
    eot: Option<u64>,
    asr: Option<u64>,
    asr_value: Option<u64>,
) -> (Vec<StageTime>, u64) {
    let e = eot.unwrap_or(start).clamp(start, end);
    let a = asr.unwrap_or(e).clamp(start, end);
    let (eot_ms, asr_ms, from) = if a <= e {
        let asr_start = a.saturating_sub(asr_value.unwrap_or(0)).max(start);
        ((asr_start - start) + (e - a), a - asr_start, e)
    } else {
        (e - start, a - e, a)
    };
    let head = vec![
        StageTime { stage: Stage::EndOfTurn, ms: eot_ms },
        StageTime { stage: Stage::AsrFinal, ms: asr_ms },
    ];
    (head, from)
}

/// Stage times from their end moments: each end clamped to `[previous end, end]`, a missing one
/// taken as the previous end, the last stage ending at `end`.
fn split(
    architecture: Architecture,
    order: &[Stage],
    start: u64,
    end: u64,
    ends: &[Option<u64>],
) -> Breakdown {
    let mut prev = start;
    let n = order.len();
    let stages = order
        .iter()
        .zip(ends)
        .enumerate()
        .map(|(i, (stage, at))| {
            let at = if i + 1 == n { end } else { at.unwrap_or(prev).clamp(prev, end) };
            let ms = at - prev;
            prev = at;
            StageTime { stage: *stage, ms }
        })
        .collect();
    Breakdown { architecture, stages }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cascade_turn_splits_at_its_events_and_sums_to_voice_to_voice() {
        let events = vec![
            json!({"t_ms": 5314, "type": "metric", "name": "asr_final_ms", "turn": 1, "value_ms": 300}),
            json!({"t_ms": 6000, "type": "turn_ended", "turn": 1, "speech_end_ms": 5480}),
            json!({"t_ms": 6100, "type": "metric", "name": "asr_final_ms", "turn": 2, "value_ms": 600}),
            json!({"t_ms": 6500, "type": "metric", "name": "llm_first_token_ms", "turn": 1, "value_ms": 400}),
            json!({"t_ms": 6900, "type": "metric", "name": "tts_first_audio_ms", "turn": 1, "value_ms": 300}),
            json!({"t_ms": 6920, "type": "playout_started", "item": "r1"}),
        ];
        let b = of_turn(Architecture::Cascade, &events, 5480, 6920);
        let ms: Vec<(Stage, u64)> = b.stages.iter().map(|s| (s.stage, s.ms)).collect();
        assert_eq!(
            ms,
            [
                (Stage::EndOfTurn, 520),
                (Stage::AsrFinal, 100),
                (Stage::LlmFirstToken, 400),
                (Stage::FirstClause, 100),
                (Stage::TtsFirstAudio, 300),
                (Stage::TransportPlayout, 20),
            ]
        );
        assert_eq!(b.total_ms(), 6920 - 5480);
    }

    #[test]
    fn stages_out_of_order_or_missing_count_zero_and_the_sum_still_holds() {
        // The transcript was final before the turn ended; no LLM metric; the TTS metric's request
        // time is before the turn ended; the sink's voice-to-voice ends before the TTS metric.
        let events = vec![
            json!({"t_ms": 1100, "type": "metric", "name": "asr_final_ms", "turn": 1, "value_ms": 100}),
            json!({"t_ms": 1500, "type": "turn_ended", "turn": 1, "speech_end_ms": 1000}),
            json!({"t_ms": 1900, "type": "metric", "name": "tts_first_audio_ms", "turn": 1, "value_ms": 2000}),
        ];
        let b = of_turn(Architecture::Cascade, &events, 1000, 1800);
        assert_eq!(b.get(Stage::AsrFinal), Some(100), "the transcription's own time");
        assert_eq!(b.get(Stage::EndOfTurn), Some(400), "the rest of the wait");
        assert_eq!(b.get(Stage::LlmFirstToken), Some(0));
        assert_eq!(b.total_ms(), 800);
        assert_eq!(b.get(Stage::ModelFirstAudio), None);
    }

    #[test]
    fn a_transcript_the_controller_waited_on_counts_its_own_time_and_the_wait_is_end_of_turn() {
        let events = vec![
            json!({"t_ms": 2039, "type": "metric", "name": "asr_final_ms", "turn": 1, "value_ms": 698}),
            json!({"t_ms": 2039, "type": "turn_ended", "turn": 1, "speech_end_ms": 1160}),
            json!({"t_ms": 2460, "type": "metric", "name": "llm_first_token_ms", "turn": 1, "value_ms": 420}),
        ];
        let b = of_turn(Architecture::Cascade, &events, 1160, 2980);
        assert_eq!(b.get(Stage::EndOfTurn), Some(2039 - 698 - 1160));
        assert_eq!(b.get(Stage::AsrFinal), Some(698));
        assert_eq!(b.get(Stage::LlmFirstToken), Some(421));
        assert_eq!(b.total_ms(), 2980 - 1160);
    }

    #[test]
    fn a_native_turn_splits_at_the_server_vad_and_the_playout() {
        let events = vec![
            json!({"t_ms": 6002, "type": "speech_stopped", "at_ms": 5480}),
            json!({"t_ms": 6015, "type": "response_started", "response_id": "r"}),
            json!({"t_ms": 6221, "type": "playout_started", "item": "i"}),
        ];
        let b = of_turn(Architecture::Native, &events, 5480, 6221);
        assert_eq!(b.get(Stage::EndOfTurn), Some(522));
        assert_eq!(b.get(Stage::ModelFirstAudio), Some(219));
        assert_eq!(b.get(Stage::TransportPlayout), Some(0));
        assert_eq!(Architecture::of(["realtime.openai"]), Architecture::Native);
        assert_eq!(Architecture::of(["asr.whisper", "llm.openai", "tts.openai"]), Architecture::Cascade);
    }
}
