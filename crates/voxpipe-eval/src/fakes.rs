//! Offline mode: the Realtime, chat-completions, Anthropic, Gemini and speech (OpenAI,
//! ElevenLabs) fakes started in-process for one
//! call, and the `--set` overrides and test credentials that point a pipeline at them.
//!
//! Each call gets its own fakes (loopback, OS-chosen ports), scripted by the scenario's
//! `[fake]` table and timed by the pipeline's [`FakeProfile`] (which replaces any timing the
//! scenario's `[fake.realtime]` sets), with the pipeline's latency offset added on top, so
//! calls never share fake state. Stages redirected: `realtime.openai` (`url`), `asr.openai`,
//! `llm.openai`, `llm.anthropic`, `llm.gemini`, `tts.openai` (`base_url`) and `tts.elevenlabs`
//! (`base_url`, `ws_url`). Other remote stages keep their
//! configured endpoints. The transcription fake answers each request with the next turn's words (`say`,
//! else `transcript`).
//!
//! Tools: `http` tools that point at the example tool server (`voxpipe fake tools`: a loopback
//! URL with one of its paths) are redirected to a tool server of the call's own, so every call
//! starts with no bookings (a slot booked by pipeline A is not "taken" for pipeline B).

use crate::error::EvalError;
use crate::profile::FakeProfile;
use crate::scenario::Scenario;
use voxpipe_fakes::anthropic::{AnthropicFake, AnthropicFakeConfig};
use voxpipe_fakes::elevenlabs::{ElevenLabsFake, ElevenLabsFakeConfig};
use voxpipe_fakes::gemini::{GeminiFake, GeminiFakeConfig};
use voxpipe_fakes::openai_chat::{ChatFake, ChatFakeConfig, Knobs, ScriptedReply};
use voxpipe_fakes::openai_speech::{SpeechFake, SpeechFakeConfig};
use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig};
use voxpipe_fakes::tool_server::ToolServer;
use voxpipe_fakes::transcription::{TranscriptionFake, TranscriptionFakeConfig};

/// Paths the example tool server answers.
const TOOL_SERVER_PATHS: &[&str] = &["/orders/status", "/appointments/book", "/handoff"];

/// The made-up key the fakes accept and the pipelines send in offline mode.
pub const FAKE_KEY: &str = "sk-test";

/// Latency knobs added on top of a pipeline's [`FakeProfile`] (may be negative; results
/// saturate at 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeDelay {
    /// Added to the Realtime fake's `first_audio_delay_ms` and the speech fake's
    /// `time_to_first_byte_ms`: the model's time to first audio.
    pub first_audio_ms: i64,
}

/// The fakes of one call.
#[derive(Debug)]
pub struct CallFakes {
    realtime: Option<RealtimeFake>,
    chat: Option<ChatFake>,
    gemini: Option<GeminiFake>,
    anthropic: Option<AnthropicFake>,
    elevenlabs: Option<ElevenLabsFake>,
    speech: Option<SpeechFake>,
    transcription: Option<TranscriptionFake>,
    tools: Option<ToolServer>,
    /// `--set` overrides pointing the stages at the fakes.
    pub sets: Vec<String>,
    /// Environment with the test key under every `api_key_env` the stages name.
    pub env: Vec<(String, String)>,
}

fn add(base: u64, delta: i64) -> u64 {
    base.saturating_add_signed(delta)
}

impl CallFakes {
    /// Starts the fakes the `stages` (`(kind, resolved stage JSON)`) and `tools` (the resolved
    /// `[tools]` table as JSON) need, scripted by `scenario`, timed by `profile` plus `delay`.
    pub async fn start(
        stages: &[(String, serde_json::Value)],
        tools: &serde_json::Value,
        scenario: &Scenario,
        profile: &FakeProfile,
        delay: FakeDelay,
    ) -> Result<Self, EvalError> {
        let script = &scenario.fake;
        let mut me = CallFakes {
            realtime: None,
            chat: None,
            gemini: None,
            anthropic: None,
            elevenlabs: None,
            speech: None,
            transcription: None,
            tools: None,
            sets: Vec::new(),
            env: Vec::new(),
        };
        for (name, path) in tool_server_tools(tools) {
            if me.tools.is_none() {
                let server =
                    ToolServer::start().await.map_err(|source| EvalError::Fake { fake: "tools", source })?;
                me.tools = Some(server);
            }
            let base = me.tools.as_ref().map(ToolServer::base_url).unwrap_or_default();
            me.sets.push(format!("tools.{name}.handler.url={base}{path}"));
        }
        for (i, (kind, stage)) in stages.iter().enumerate() {
            if let Some(var) = stage.get("api_key_env").and_then(|v| v.as_str()) {
                me.env.push((var.to_string(), FAKE_KEY.to_string()));
            }
            match voxpipe_config::StageKind::get(kind).and_then(|k| k.fake) {
                Some("realtime") => {
                    let mut cfg: RealtimeFakeConfig = script.realtime.clone().unwrap_or_default();
                    let t = &profile.realtime;
                    cfg.first_audio_delay_ms = add(t.first_audio_ms.value, delay.first_audio_ms);
                    cfg.delta_ms = t.audio_delta_ms.value;
                    cfg.pace = t.pace.value;
                    let fake = RealtimeFake::start(cfg)
                        .await
                        .map_err(|source| EvalError::Fake { fake: "realtime", source })?;
                    me.sets.push(format!("stages[{i}].url={}", fake.url()));
                    me.realtime = Some(fake);
                }
                Some("llm") => {
                    let mut cfg = ChatFakeConfig::default();
                    scripted(&mut cfg.replies, script);
                    cfg.knobs =
                        pacing(profile.chat.first_token_ms.value, profile.chat.token_interval_ms.value);
                    let fake = ChatFake::start(cfg)
                        .await
                        .map_err(|source| EvalError::Fake { fake: "chat", source })?;
                    me.sets.push(format!("stages[{i}].base_url={}", fake.base_url()));
                    me.chat = Some(fake);
                }
                Some("anthropic") => {
                    let mut cfg = AnthropicFakeConfig::default();
                    scripted(&mut cfg.replies, script);
                    let t = &profile.anthropic;
                    cfg.knobs = pacing(t.first_token_ms.value, t.token_interval_ms.value);
                    let fake = AnthropicFake::start(cfg)
                        .await
                        .map_err(|source| EvalError::Fake { fake: "anthropic", source })?;
                    me.sets.push(format!("stages[{i}].base_url={}", fake.base_url()));
                    me.anthropic = Some(fake);
                }
                Some("gemini") => {
                    let mut cfg = GeminiFakeConfig::default();
                    scripted(&mut cfg.replies, script);
                    cfg.knobs =
                        pacing(profile.gemini.first_token_ms.value, profile.gemini.token_interval_ms.value);
                    let fake = GeminiFake::start(cfg)
                        .await
                        .map_err(|source| EvalError::Fake { fake: "gemini", source })?;
                    me.sets.push(format!("stages[{i}].base_url={}", fake.base_url()));
                    me.gemini = Some(fake);
                }
                Some("tts") => {
                    let mut cfg = SpeechFakeConfig { api_key: FAKE_KEY.into(), ..Default::default() };
                    cfg.time_to_first_byte_ms = add(profile.speech.first_byte_ms.value, delay.first_audio_ms);
                    cfg.real_time_factor = profile.speech.real_time_factor.value;
                    let fake = SpeechFake::start(cfg)
                        .await
                        .map_err(|source| EvalError::Fake { fake: "speech", source })?;
                    me.sets.push(format!("stages[{i}].base_url={}", fake.base_url()));
                    me.speech = Some(fake);
                }
                Some("elevenlabs") => {
                    let t = &profile.elevenlabs;
                    let cfg = ElevenLabsFakeConfig {
                        api_key: FAKE_KEY.into(),
                        time_to_first_byte_ms: add(t.first_byte_ms.value, delay.first_audio_ms),
                        real_time_factor: t.real_time_factor.value,
                        ..Default::default()
                    };
                    let fake = ElevenLabsFake::start(cfg)
                        .await
                        .map_err(|source| EvalError::Fake { fake: "elevenlabs", source })?;
                    me.sets.push(format!("stages[{i}].base_url={}", fake.base_url()));
                    me.sets.push(format!("stages[{i}].ws_url={}", fake.ws_url()));
                    me.elevenlabs = Some(fake);
                }
                Some("transcription") => {
                    let cfg = TranscriptionFakeConfig {
                        api_key: FAKE_KEY.into(),
                        transcripts: scenario
                            .turns
                            .iter()
                            .filter_map(|t| t.say.clone().or_else(|| t.transcript.clone()))
                            .collect(),
                        latency_ms: profile.transcription.latency_ms.value,
                        latency_per_audio_second_ms: profile.transcription.per_audio_second_ms.value,
                        ..Default::default()
                    };
                    let fake = TranscriptionFake::start(cfg)
                        .await
                        .map_err(|source| EvalError::Fake { fake: "transcription", source })?;
                    me.sets.push(format!("stages[{i}].base_url={}", fake.base_url()));
                    me.transcription = Some(fake);
                }
                _ => {}
            }
        }
        Ok(me)
    }

    /// Stops every fake and waits for them.
    pub async fn stop(self) {
        if let Some(f) = self.realtime {
            f.shutdown().await;
        }
        if let Some(f) = self.chat {
            f.stop().await;
        }
        if let Some(f) = self.gemini {
            f.stop().await;
        }
        if let Some(f) = self.anthropic {
            f.stop().await;
        }
        drop(self.speech); // stops on drop
        drop(self.elevenlabs); // stops on drop
        drop(self.transcription); // stops on drop
        drop(self.tools); // stops on drop
    }
}

/// The scenario's `[[fake.llm]]` replies, when it has any (else the fake's default stays).
fn scripted(replies: &mut Vec<ScriptedReply>, script: &crate::scenario::FakeScript) {
    if !script.llm.is_empty() {
        *replies = script.llm.iter().map(ScriptedReply::from).collect();
    }
}

/// An LLM fake's pacing from its profile.
fn pacing(first_token_ms: u64, token_interval_ms: u64) -> Knobs {
    Knobs { time_to_first_token_ms: first_token_ms, token_interval_ms, ..Knobs::default() }
}

/// `(tool name, path)` of the `http` tools that call the example tool server: a loopback host
/// and one of its paths.
fn tool_server_tools(tools: &serde_json::Value) -> Vec<(String, String)> {
    let Some(tools) = tools.as_object() else { return Vec::new() };
    tools
        .iter()
        .filter(|(_, t)| t.pointer("/handler/kind").and_then(|k| k.as_str()) == Some("http"))
        .filter_map(|(name, t)| {
            let url = t.pointer("/handler/url")?.as_str()?;
            let rest = url.strip_prefix("http://")?;
            let (host, path) = rest.split_at(rest.find('/')?);
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
            (loopback && TOOL_SERVER_PATHS.contains(&path)).then(|| (name.clone(), path.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_tools_of_the_example_server_are_redirected() {
        let tools = serde_json::json!({
            "a": {"handler": {"kind": "http", "url": "http://127.0.0.1:8793/orders/status"}},
            "b": {"handler": {"kind": "http", "url": "http://localhost:8793/appointments/book"}},
            "c": {"handler": {"kind": "http", "url": "http://127.0.0.1:9000/crm/lookup"}},
            "d": {"handler": {"kind": "http", "url": "https://api.example.com/orders/status"}},
            "e": {"handler": {"kind": "command", "program": "x"}},
            "f": {"handler": {"kind": "transfer"}}
        });
        assert_eq!(
            tool_server_tools(&tools),
            [("a".to_string(), "/orders/status".to_string()), ("b".into(), "/appointments/book".into())]
        );
        assert!(tool_server_tools(&serde_json::Value::Null).is_empty());
    }
}
