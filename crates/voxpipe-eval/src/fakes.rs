//! Offline mode: the Realtime, chat-completions and speech fakes started in-process for one
//! call, and the `--set` overrides and test credentials that point a pipeline at them.
//!
//! Each call gets its own fakes (loopback, OS-chosen ports), scripted by the scenario's
//! `[fake]` table, with the pipeline's latency offset added, so calls never share fake state.
//! Stages redirected: `realtime.openai` (`url`), `llm.openai` and `tts.openai` (`base_url`).
//! Other remote stages keep their configured endpoints.

use crate::error::EvalError;
use crate::scenario::FakeScript;
use voxpipe_fakes::openai_chat::{ChatFake, ChatFakeConfig, ScriptedReply, ScriptedToolCall};
use voxpipe_fakes::openai_speech::{SpeechFake, SpeechFakeConfig};
use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig};

/// The made-up key the fakes accept and the pipelines send in offline mode.
pub const FAKE_KEY: &str = "sk-test";

/// Latency knobs added to a pipeline's fakes (may be negative; results saturate at 0).
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
    speech: Option<SpeechFake>,
    /// `--set` overrides pointing the stages at the fakes.
    pub sets: Vec<String>,
    /// Environment with the test key under every `api_key_env` the stages name.
    pub env: Vec<(String, String)>,
}

fn add(base: u64, delta: i64) -> u64 {
    base.saturating_add_signed(delta)
}

impl CallFakes {
    /// Starts the fakes the `stages` (`(kind, resolved stage JSON)`) need.
    pub async fn start(
        stages: &[(String, serde_json::Value)],
        script: &FakeScript,
        delay: FakeDelay,
    ) -> Result<Self, EvalError> {
        let mut me =
            CallFakes { realtime: None, chat: None, speech: None, sets: Vec::new(), env: Vec::new() };
        for (i, (kind, stage)) in stages.iter().enumerate() {
            if let Some(var) = stage.get("api_key_env").and_then(|v| v.as_str()) {
                me.env.push((var.to_string(), FAKE_KEY.to_string()));
            }
            match kind.as_str() {
                "realtime.openai" => {
                    let mut cfg: RealtimeFakeConfig = script.realtime.clone().unwrap_or_default();
                    cfg.first_audio_delay_ms = add(cfg.first_audio_delay_ms, delay.first_audio_ms);
                    let fake = RealtimeFake::start(cfg)
                        .await
                        .map_err(|source| EvalError::Fake { fake: "realtime", source })?;
                    me.sets.push(format!("stages[{i}].url={}", fake.url()));
                    me.realtime = Some(fake);
                }
                "llm.openai" => {
                    let mut cfg = ChatFakeConfig::default();
                    if !script.llm.is_empty() {
                        cfg.replies = script.llm.iter().map(chat_reply).collect();
                    }
                    let fake = ChatFake::start(cfg)
                        .await
                        .map_err(|source| EvalError::Fake { fake: "chat", source })?;
                    me.sets.push(format!("stages[{i}].base_url={}", fake.base_url()));
                    me.chat = Some(fake);
                }
                "tts.openai" => {
                    let mut cfg = SpeechFakeConfig { api_key: FAKE_KEY.into(), ..Default::default() };
                    cfg.time_to_first_byte_ms = add(cfg.time_to_first_byte_ms, delay.first_audio_ms);
                    let fake = SpeechFake::start(cfg)
                        .await
                        .map_err(|source| EvalError::Fake { fake: "speech", source })?;
                    me.sets.push(format!("stages[{i}].base_url={}", fake.base_url()));
                    me.speech = Some(fake);
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
        drop(self.speech); // stops on drop
    }
}

fn chat_reply(r: &crate::scenario::FakeLlmReply) -> ScriptedReply {
    match &r.tool {
        Some(t) => ScriptedReply::ToolCalls {
            text: r.text.clone(),
            calls: vec![ScriptedToolCall { name: t.name.clone(), arguments: t.arguments.clone() }],
        },
        None => ScriptedReply::Text(r.text.clone().unwrap_or_default()),
    }
}
