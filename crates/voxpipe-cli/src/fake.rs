//! `voxpipe fake …`: local fakes of the remote APIs, for offline development.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use voxpipe_fakes::{anthropic, elevenlabs, openai_chat, openai_speech, realtime, transcription};

/// Which fake to run.
#[derive(Debug, Subcommand)]
pub enum FakeCommand {
    /// The OpenAI Realtime API: the WebSocket at ws://127.0.0.1:PORT/v1/realtime, and on the
    /// same port client secrets and WebRTC calls (POST /v1/realtime/client_secrets, /calls).
    Realtime {
        /// Port on 127.0.0.1 (0 picks a free one; the URL is printed).
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Fake settings (TOML): scripted responses, latency, faults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// OpenAI-compatible chat completions (SSE) at http://127.0.0.1:PORT/v1; replies echo the
    /// caller ("You said: …") unless `--replies` scripts them.
    Llm(LlmArgs),
    /// Anthropic Messages (SSE) at http://127.0.0.1:PORT/v1.
    Anthropic(LlmArgs),
    /// OpenAI speech (`/v1/audio/speech`, raw PCM) at http://127.0.0.1:PORT/v1.
    Tts(TtsArgs),
    /// ElevenLabs TTS (HTTP stream and stream-input WebSocket) at http://127.0.0.1:PORT/v1.
    Elevenlabs(TtsArgs),
    /// OpenAI transcription (`/v1/audio/transcriptions`) at http://127.0.0.1:PORT/v1.
    Transcription {
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = 8792)]
        port: u16,
        /// The API key to require.
        #[arg(long, default_value = "sk-fake")]
        api_key: String,
    },
    /// A small order/appointment/handoff HTTP API for the example tools
    /// (pipelines/tools.example.toml) at http://127.0.0.1:PORT.
    Tools {
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = 8793)]
        port: u16,
    },
    /// The Twilio REST Calls API (`POST /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json`,
    /// Basic auth with the account SID and the auth token in `TWILIO_AUTH_TOKEN`).
    Twilio {
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = 8794)]
        port: u16,
        /// The account SID to accept.
        #[arg(long, env = "TWILIO_ACCOUNT_SID")]
        account_sid: String,
    },
    /// Every fake at once, on consecutive ports from `--base-port` (realtime, llm, anthropic,
    /// tts, elevenlabs, transcription, tools), as the `*-fake.toml` pipelines expect.
    All {
        /// The first port.
        #[arg(long, default_value_t = 8787)]
        base_port: u16,
        /// Scripted replies for the chat and Anthropic fakes (as `llm --replies`).
        #[arg(long)]
        llm_replies: Option<PathBuf>,
    },
}

/// Knobs of the LLM fakes.
#[derive(Debug, Args)]
pub struct LlmArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8788)]
    port: u16,
    /// Delay before the first token (ms).
    #[arg(long, default_value_t = 300)]
    time_to_first_token_ms: u64,
    /// Delay between tokens (ms).
    #[arg(long, default_value_t = 30)]
    token_interval_ms: u64,
    /// Scripted replies (TOML `[[replies]]` with `text` and/or `tool = { name, arguments }`,
    /// the shape of a scenario's `[[fakes.llm]]`), used in order and cycling. Default: echo.
    #[arg(long)]
    replies: Option<PathBuf>,
}

/// A `--replies` file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RepliesFile {
    replies: Vec<openai_chat::ReplySpec>,
}

/// The scripted replies of `--replies FILE`, or echo without one.
fn scripted_replies(path: Option<&Path>) -> anyhow::Result<Vec<openai_chat::ScriptedReply>> {
    let Some(path) = path else { return Ok(vec![openai_chat::ScriptedReply::Echo]) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: RepliesFile =
        toml::from_str(&text).with_context(|| format!("{}: invalid scripted replies", path.display()))?;
    anyhow::ensure!(!file.replies.is_empty(), "{}: `replies` is empty", path.display());
    Ok(file.replies.iter().map(openai_chat::ScriptedReply::from).collect())
}

/// Knobs of the TTS fakes.
#[derive(Debug, Args)]
pub struct TtsArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8790)]
    port: u16,
    /// The API key to require.
    #[arg(long, default_value = "sk-fake")]
    api_key: String,
    /// Delay before the first audio byte (ms).
    #[arg(long, default_value_t = 150)]
    time_to_first_byte_ms: u64,
    /// Audio seconds streamed per wall-clock second.
    #[arg(long, default_value_t = 5.0)]
    real_time_factor: f64,
}

fn load_toml<T: serde::de::DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    match path {
        None => Ok(T::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("{}: invalid fake settings", p.display()))
        }
    }
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn knobs(a: &LlmArgs) -> openai_chat::Knobs {
    openai_chat::Knobs {
        time_to_first_token_ms: a.time_to_first_token_ms,
        token_interval_ms: a.token_interval_ms,
        ..Default::default()
    }
}

fn speech(a: &TtsArgs) -> openai_speech::SpeechFakeConfig {
    openai_speech::SpeechFakeConfig {
        api_key: a.api_key.clone(),
        time_to_first_byte_ms: a.time_to_first_byte_ms,
        real_time_factor: a.real_time_factor,
        ..Default::default()
    }
}

fn eleven(a: &TtsArgs) -> elevenlabs::ElevenLabsFakeConfig {
    elevenlabs::ElevenLabsFakeConfig {
        api_key: a.api_key.clone(),
        time_to_first_byte_ms: a.time_to_first_byte_ms,
        real_time_factor: a.real_time_factor,
        ..Default::default()
    }
}

/// A started fake, kept alive until Ctrl-C.
enum Running {
    Realtime(realtime::RealtimeFake),
    Chat(openai_chat::ChatFake),
    Anthropic(anthropic::AnthropicFake),
    Speech(openai_speech::SpeechFake),
    ElevenLabs(elevenlabs::ElevenLabsFake),
    Transcription(transcription::TranscriptionFake),
    ToolServer(voxpipe_fakes::tool_server::ToolServer),
}

impl Running {
    fn describe(&self) -> String {
        match self {
            Running::Realtime(f) => {
                format!(
                    "realtime fake listening on {} (client secrets and WebRTC calls at {}/realtime/…)",
                    f.url(),
                    f.http_url()
                )
            }
            Running::Chat(f) => format!("chat-completions fake listening on {}", f.base_url()),
            Running::Anthropic(f) => format!("anthropic fake listening on {}", f.base_url()),
            Running::Speech(f) => format!("openai speech fake listening on {}", f.base_url()),
            Running::ElevenLabs(f) => {
                format!("elevenlabs fake listening on {} and {}", f.base_url(), f.ws_url())
            }
            Running::Transcription(f) => format!("transcription fake listening on {}", f.base_url()),
            Running::ToolServer(f) => format!("example tool server listening on {}", f.base_url()),
        }
    }
}

async fn start(which: FakeCommand) -> anyhow::Result<Vec<Running>> {
    let ctx = |port: u16| format!("cannot listen on 127.0.0.1:{port}");
    Ok(match which {
        FakeCommand::Realtime { port, config } => {
            let config = load_toml(config.as_deref())?;
            vec![Running::Realtime(
                realtime::RealtimeFake::bind(at(port), config).await.with_context(|| ctx(port))?,
            )]
        }
        FakeCommand::Llm(a) => {
            let replies = scripted_replies(a.replies.as_deref())?;
            let config = openai_chat::ChatFakeConfig { knobs: knobs(&a), replies, ..Default::default() };
            vec![Running::Chat(
                openai_chat::ChatFake::start_on(at(a.port), config).await.with_context(|| ctx(a.port))?,
            )]
        }
        FakeCommand::Anthropic(a) => {
            let replies = scripted_replies(a.replies.as_deref())?;
            let config = anthropic::AnthropicFakeConfig { knobs: knobs(&a), replies, ..Default::default() };
            vec![Running::Anthropic(
                anthropic::AnthropicFake::start_on(at(a.port), config).await.with_context(|| ctx(a.port))?,
            )]
        }
        FakeCommand::Tts(a) => {
            vec![Running::Speech(
                openai_speech::SpeechFake::start_on(at(a.port), speech(&a))
                    .await
                    .with_context(|| ctx(a.port))?,
            )]
        }
        FakeCommand::Elevenlabs(a) => {
            vec![Running::ElevenLabs(
                elevenlabs::ElevenLabsFake::start_on(at(a.port), eleven(&a))
                    .await
                    .with_context(|| ctx(a.port))?,
            )]
        }
        FakeCommand::Transcription { port, api_key } => {
            let config = transcription::TranscriptionFakeConfig { api_key, ..Default::default() };
            vec![Running::Transcription(
                transcription::TranscriptionFake::start_on(at(port), config)
                    .await
                    .with_context(|| ctx(port))?,
            )]
        }
        FakeCommand::Tools { port } => {
            vec![Running::ToolServer(
                voxpipe_fakes::tool_server::ToolServer::start_on(at(port))
                    .await
                    .with_context(|| ctx(port))?,
            )]
        }
        FakeCommand::Twilio { .. } => anyhow::bail!("`fake twilio` runs on its own (see `run`)"),
        FakeCommand::All { base_port: b, llm_replies } => {
            let mut all = Vec::new();
            let llm = |port| LlmArgs {
                port,
                time_to_first_token_ms: 300,
                token_interval_ms: 30,
                replies: llm_replies.clone(),
            };
            let tts = |port| TtsArgs {
                port,
                api_key: "sk-fake".into(),
                time_to_first_byte_ms: 150,
                real_time_factor: 5.0,
            };
            for cmd in [
                FakeCommand::Realtime { port: b, config: None },
                FakeCommand::Llm(llm(b + 1)),
                FakeCommand::Anthropic(llm(b + 2)),
                FakeCommand::Tts(tts(b + 3)),
                FakeCommand::Elevenlabs(tts(b + 4)),
                FakeCommand::Transcription { port: b + 5, api_key: "sk-fake".into() },
                FakeCommand::Tools { port: b + 6 },
            ] {
                all.extend(Box::pin(start(cmd)).await?);
            }
            all
        }
    })
}

/// Runs fakes until Ctrl-C.
pub async fn run(which: FakeCommand) -> anyhow::Result<()> {
    if let FakeCommand::Twilio { port, account_sid } = &which {
        let token = std::env::var("TWILIO_AUTH_TOKEN").context("TWILIO_AUTH_TOKEN is not set")?;
        return crate::serve::fake_twilio(*port, account_sid, &token).await;
    }
    let running = start(which).await?;
    for r in &running {
        println!("{}", r.describe());
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    drop(running);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openai_chat::ScriptedReply;

    #[test]
    fn the_shipped_tool_script_reads_as_a_tool_call_then_text() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/fakes/llm-tools.toml");
        let replies = scripted_replies(Some(&path)).unwrap();
        assert!(
            matches!(&replies[0], ScriptedReply::ToolCalls { calls, .. } if calls[0].name == "get_order_status")
        );
        assert!(matches!(&replies[1], ScriptedReply::Text(t) if !t.is_empty()));
        assert_eq!(scripted_replies(None).unwrap(), vec![ScriptedReply::Echo]);
    }

    #[test]
    fn a_bad_replies_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        std::fs::write(&path, "[[replies]]\nsay = \"hi\"\n").unwrap();
        let e = format!("{:#}", scripted_replies(Some(&path)).unwrap_err());
        assert!(e.contains("r.toml: invalid scripted replies") && e.contains("unknown field `say`"), "{e}");
    }
}
