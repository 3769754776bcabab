//! `voxpipe fake …`: local fakes of the remote APIs, for offline development.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use voxpipe_fakes::fault::{self, FaultSpec, Faults};
use voxpipe_fakes::{
    anthropic, elevenlabs, elevenlabs_agent, gemini, gemini_live, openai_chat, openai_speech, realtime,
    tool_server, transcription,
};

/// `--fault` help: the grammar (also in README's fakes section).
const FAULT_HELP: &str = "Inject a fault (repeatable): INDEX=KIND, INDEX the request number (HTTP) or connection number (WebSocket), 0 = the first. KIND: status:CODE[:retry-after=SECS] (error answer: 429, 500, 503, 529, 401…), stall-after:N (N chunks, then hang), cut-after:N (N chunks and half the next, then disconnect), malformed[:N] (after N chunks, one that is not JSON), unknown-event[:N] (an event type or field the API does not define), slow:MS (MS before every chunk), oversize:BYTES[:N] (a chunk of BYTES, suffix k/m), wrong-content-type (200 text/html). A chunk is an SSE event, an audio body piece, a WebSocket message or audio delta, or 16 bytes of a JSON body. E.g. --fault 0=status:429:retry-after=2 --fault 1=cut-after:3. Overrides the config file's `faults` for the same index";

/// Parses one `--fault` value.
fn fault_spec(s: &str) -> Result<FaultSpec, String> {
    s.parse().map_err(|e: fault::SpecError| e.to_string())
}

/// The faults of a fake from its config file's `faults` and its `--fault` flags (which win
/// for the same index), checked against what the fake implements.
fn faults(
    fake: &str,
    flag: &str,
    from_file: &Faults,
    flags: &[FaultSpec],
    supported: &[&str],
) -> anyhow::Result<Faults> {
    let mut out = from_file.clone();
    let given = fault::plan(flags).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    out.extend(given);
    fault::check(fake, &out, supported).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    Ok(out)
}

/// The fault settings file of `voxpipe fake llm|anthropic|gemini|tts|elevenlabs|transcription|tools
/// --config FILE`: `faults = ["0=status:429:retry-after=2", …]` (and, for elevenlabs,
/// `ws_faults` for its WebSocket).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultFile {
    #[serde(default, with = "voxpipe_fakes::fault::serde_list")]
    faults: Faults,
    #[serde(default, with = "voxpipe_fakes::fault::serde_list")]
    ws_faults: Faults,
}

/// Reads `--config FILE` of an HTTP fake; `ws_faults` only where `ws` (elevenlabs).
fn fault_file(path: Option<&Path>, ws: bool) -> anyhow::Result<FaultFile> {
    let file: FaultFile = load_toml(path)?;
    if !ws && !file.ws_faults.is_empty() {
        anyhow::bail!(
            "{}: `ws_faults` is for the elevenlabs fake's WebSocket only",
            path.map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    Ok(file)
}

/// The `--config` and `--fault` flags every HTTP fake has.
#[derive(Debug, Default, Args)]
pub struct FaultArgs {
    /// Fault settings (TOML): `faults = ["0=status:429:retry-after=2", "1=cut-after:3"]`, same
    /// grammar as `--fault`.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long = "fault", value_name = "SPEC", value_parser = fault_spec, help = FAULT_HELP)]
    faults: Vec<FaultSpec>,
}

/// Which fake to run.
#[derive(Debug, Subcommand)]
pub enum FakeCommand {
    /// The OpenAI Realtime API: the WebSocket at ws://127.0.0.1:PORT/v1/realtime (and Azure
    /// OpenAI's /openai/realtime and /openai/v1/realtime with an `api-key` header), and on the
    /// same port client secrets and WebRTC calls (POST /v1/realtime/client_secrets, /calls).
    Realtime {
        /// Port on 127.0.0.1 (0 picks a free one; the URL is printed).
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Fake settings (TOML): scripted responses, latency, faults (`faults = […]`, by
        /// connection), `[compatible]` to behave like an independent beta-dialect server
        /// (pipelines/fakes/realtime-compatible.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long = "fault", value_name = "SPEC", value_parser = fault_spec, help = FAULT_HELP)]
        faults: Vec<FaultSpec>,
    },
    /// OpenAI-compatible chat completions (SSE) at http://127.0.0.1:PORT/v1; replies echo the
    /// caller ("You said: …") unless `--replies` scripts them.
    Llm(LlmArgs),
    /// Anthropic Messages (SSE) at http://127.0.0.1:PORT/v1.
    Anthropic(LlmArgs),
    /// Gemini `streamGenerateContent?alt=sse` at http://127.0.0.1:PORT/v1beta (key in
    /// `x-goog-api-key` or `?key=`).
    Gemini(GeminiArgs),
    /// The Gemini Live API (`BidiGenerateContent`): the WebSocket at
    /// ws://127.0.0.1:PORT/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent
    /// (key in `?key=` or `x-goog-api-key`).
    GeminiLive {
        /// Port on 127.0.0.1 (0 picks a free one; the URL is printed).
        #[arg(long, default_value_t = 8796)]
        port: u16,
        /// Fake settings (TOML): scripted turns, pacing, VAD, `go_away_after_ms`, faults
        /// (`faults = […]`, by connection).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long = "fault", value_name = "SPEC", value_parser = fault_spec, help = FAULT_HELP)]
        faults: Vec<FaultSpec>,
    },
    /// The ElevenLabs Conversational AI agent WebSocket at
    /// ws://127.0.0.1:PORT/v1/convai/conversation?agent_id=… (public agent `agent_fake`;
    /// private `agent_fake_private` through GET /v1/convai/conversation/get-signed-url with
    /// `xi-api-key`).
    ElevenlabsAgent {
        /// Port on 127.0.0.1 (0 picks a free one; the URL is printed).
        #[arg(long, default_value_t = 8797)]
        port: u16,
        /// Fake settings (TOML): agents, scripted replies, pacing, VAD, pings, tool timeout,
        /// faults (`faults = […]`, by connection).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long = "fault", value_name = "SPEC", value_parser = fault_spec, help = FAULT_HELP)]
        faults: Vec<FaultSpec>,
    },
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
        #[command(flatten)]
        faults: FaultArgs,
    },
    /// A small order/appointment/handoff HTTP API for the example tools
    /// (pipelines/tools.example.toml) at http://127.0.0.1:PORT.
    Tools {
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = 8793)]
        port: u16,
        #[command(flatten)]
        faults: FaultArgs,
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
    /// tts, elevenlabs, transcription, tools; gemini at base + 8, as the twilio fake's default
    /// is base + 7; gemini-live at base + 9, elevenlabs-agent at base + 10), as the `*-fake.toml` pipelines expect.
    All {
        /// The first port; the others follow it (0: each fake picks a free port).
        #[arg(long, default_value_t = 8787)]
        base_port: u16,
        /// Scripted replies for the chat, Anthropic and Gemini fakes (as `llm --replies`).
        #[arg(long)]
        llm_replies: Option<PathBuf>,
        /// Inject a fault into one of the fakes (repeatable): FAKE:SPEC, FAKE one of realtime,
        /// llm, anthropic, gemini, gemini-live, tts, elevenlabs, elevenlabs-ws, elevenlabs-agent,
        /// transcription, tools; SPEC as that
        /// fake's `--fault` (e.g. `llm:0=status:503`, `realtime:0=cut-after:3`).
        #[arg(long = "fault", value_name = "FAKE:SPEC", value_parser = named_fault_spec)]
        faults: Vec<NamedFault>,
    },
}

/// The fakes `fake all --fault FAKE:SPEC` can name.
const FAULT_TARGETS: &[&str] = &[
    "realtime",
    "llm",
    "anthropic",
    "gemini",
    "gemini-live",
    "tts",
    "elevenlabs",
    "elevenlabs-ws",
    "elevenlabs-agent",
    "transcription",
    "tools",
];

/// A `fake all --fault` value: which fake, and the fault.
#[derive(Debug, Clone)]
pub struct NamedFault {
    fake: &'static str,
    spec: FaultSpec,
}

/// Parses one `fake all --fault FAKE:SPEC` value.
fn named_fault_spec(s: &str) -> Result<NamedFault, String> {
    let (name, spec) =
        s.split_once(':').ok_or_else(|| format!("expected FAKE:SPEC, e.g. llm:0=status:503, got `{s}`"))?;
    let fake = FAULT_TARGETS
        .iter()
        .find(|t| **t == name)
        .ok_or_else(|| format!("unknown fake `{name}`, expected one of: {}", FAULT_TARGETS.join(", ")))?;
    Ok(NamedFault { fake, spec: fault_spec(spec)? })
}

/// The `--fault` specs of `fake all` aimed at `fake`.
fn faults_for(all: &[NamedFault], fake: &str) -> Vec<FaultSpec> {
    all.iter().filter(|f| f.fake == fake).map(|f| f.spec.clone()).collect()
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
    #[command(flatten)]
    faults: FaultArgs,
}

/// Knobs of the Gemini fake: those of the other LLM fakes and its own refusals.
#[derive(Debug, Args)]
pub struct GeminiArgs {
    #[command(flatten)]
    llm: LlmArgs,
    /// Give each function call an `id` (newer models do; the recorded streams have none).
    #[arg(long)]
    function_call_ids: bool,
    /// Block request INDEX's prompt with `promptFeedback.blockReason` REASON (SAFETY,
    /// BLOCKLIST, PROHIBITED_CONTENT, OTHER), e.g. `--block-prompt 0=SAFETY` (repeatable).
    #[arg(long = "block-prompt", value_name = "INDEX=REASON", value_parser = index_reason)]
    block_prompts: Vec<(usize, String)>,
    /// End request INDEX's answer with `finishReason` REASON instead of STOP (SAFETY,
    /// RECITATION, MALFORMED_FUNCTION_CALL…), e.g. `--finish-reason 1=SAFETY` (repeatable).
    #[arg(long = "finish-reason", value_name = "INDEX=REASON", value_parser = index_reason)]
    finish_reasons: Vec<(usize, String)>,
}

/// Parses `INDEX=REASON` (`0=SAFETY`).
fn index_reason(s: &str) -> Result<(usize, String), String> {
    let (index, reason) =
        s.split_once('=').ok_or_else(|| format!("expected INDEX=REASON, e.g. 0=SAFETY, got `{s}`"))?;
    let index = index.trim().parse().map_err(|_| format!("INDEX must be a whole number, got `{index}`"))?;
    let reason = reason.trim();
    if reason.is_empty() || !reason.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        return Err(format!("REASON must be an enum name such as SAFETY, got `{reason}`"));
    }
    Ok((index, reason.to_string()))
}

fn gemini_config(a: &GeminiArgs) -> anyhow::Result<gemini::GeminiFakeConfig> {
    Ok(gemini::GeminiFakeConfig {
        replies: scripted_replies(a.llm.replies.as_deref())?,
        knobs: knobs(&a.llm, "gemini")?,
        function_call_ids: a.function_call_ids,
        block_reasons: a.block_prompts.iter().cloned().collect(),
        finish_reasons: a.finish_reasons.iter().cloned().collect(),
        ..Default::default()
    })
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
    #[command(flatten)]
    faults: FaultArgs,
    /// elevenlabs only: a fault on a `stream-input` WebSocket connection (repeatable; same
    /// grammar as `--fault`, INDEX the connection; `ws_faults` in the config file).
    #[arg(long = "ws-fault", value_name = "SPEC", value_parser = fault_spec)]
    ws_faults: Vec<FaultSpec>,
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

/// The faults of an HTTP fake without a WebSocket, from `--config` and `--fault`.
fn http_faults(fake: &str, a: &FaultArgs, supported: &[&str]) -> anyhow::Result<Faults> {
    let file = fault_file(a.config.as_deref(), false)?;
    faults(fake, "--fault", &file.faults, &a.faults, supported)
}

fn knobs(a: &LlmArgs, fake: &str) -> anyhow::Result<openai_chat::Knobs> {
    Ok(openai_chat::Knobs {
        time_to_first_token_ms: a.time_to_first_token_ms,
        token_interval_ms: a.token_interval_ms,
        faults: http_faults(fake, &a.faults, fault::ALL_KINDS)?,
        ..Default::default()
    })
}

fn speech(a: &TtsArgs) -> anyhow::Result<openai_speech::SpeechFakeConfig> {
    anyhow::ensure!(a.ws_faults.is_empty(), "--ws-fault: the tts fake has no WebSocket (elevenlabs has)");
    Ok(openai_speech::SpeechFakeConfig {
        api_key: a.api_key.clone(),
        time_to_first_byte_ms: a.time_to_first_byte_ms,
        real_time_factor: a.real_time_factor,
        faults: http_faults("tts", &a.faults, openai_speech::SUPPORTED_FAULTS)?,
        ..Default::default()
    })
}

fn eleven(a: &TtsArgs) -> anyhow::Result<elevenlabs::ElevenLabsFakeConfig> {
    let file = fault_file(a.faults.config.as_deref(), true)?;
    Ok(elevenlabs::ElevenLabsFakeConfig {
        api_key: a.api_key.clone(),
        time_to_first_byte_ms: a.time_to_first_byte_ms,
        real_time_factor: a.real_time_factor,
        faults: faults(
            "elevenlabs",
            "--fault",
            &file.faults,
            &a.faults.faults,
            elevenlabs::SUPPORTED_HTTP_FAULTS,
        )?,
        ws_faults: faults(
            "elevenlabs WebSocket",
            "--ws-fault",
            &file.ws_faults,
            &a.ws_faults,
            elevenlabs::SUPPORTED_WS_FAULTS,
        )?,
        ..Default::default()
    })
}

/// A started fake, kept alive until Ctrl-C.
enum Running {
    Realtime(realtime::RealtimeFake),
    Chat(openai_chat::ChatFake),
    Anthropic(anthropic::AnthropicFake),
    Gemini(gemini::GeminiFake),
    GeminiLive(gemini_live::GeminiLiveFake),
    ElevenLabsAgent(elevenlabs_agent::ElevenLabsAgentFake),
    Speech(openai_speech::SpeechFake),
    ElevenLabs(elevenlabs::ElevenLabsFake),
    Transcription(transcription::TranscriptionFake),
    ToolServer(tool_server::ToolServer),
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
            Running::Gemini(f) => format!("gemini fake listening on {}", f.base_url()),
            Running::GeminiLive(f) => format!("gemini live fake listening on {}", f.url()),
            Running::ElevenLabsAgent(f) => format!(
                "elevenlabs agent fake listening on {} (signed URLs at {}{})",
                f.url(),
                f.http_url(),
                elevenlabs_agent::SIGNED_URL_PATH
            ),
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
        FakeCommand::Realtime { port, config, faults: flags } => {
            let mut config: realtime::RealtimeFakeConfig = load_toml(config.as_deref())?;
            config.faults =
                faults("realtime", "--fault", &config.faults, &flags, realtime::SUPPORTED_FAULTS)?;
            vec![Running::Realtime(
                realtime::RealtimeFake::bind(at(port), config).await.with_context(|| ctx(port))?,
            )]
        }
        FakeCommand::Llm(a) => {
            let replies = scripted_replies(a.replies.as_deref())?;
            let config =
                openai_chat::ChatFakeConfig { knobs: knobs(&a, "llm")?, replies, ..Default::default() };
            vec![Running::Chat(
                openai_chat::ChatFake::start_on(at(a.port), config).await.with_context(|| ctx(a.port))?,
            )]
        }
        FakeCommand::Anthropic(a) => {
            let replies = scripted_replies(a.replies.as_deref())?;
            let config = anthropic::AnthropicFakeConfig {
                knobs: knobs(&a, "anthropic")?,
                replies,
                ..Default::default()
            };
            vec![Running::Anthropic(
                anthropic::AnthropicFake::start_on(at(a.port), config).await.with_context(|| ctx(a.port))?,
            )]
        }
        FakeCommand::Gemini(a) => {
            let port = a.llm.port;
            vec![Running::Gemini(
                gemini::GeminiFake::start_on(at(port), gemini_config(&a)?)
                    .await
                    .with_context(|| ctx(port))?,
            )]
        }
        FakeCommand::GeminiLive { port, config, faults: flags } => {
            let mut config: gemini_live::GeminiLiveFakeConfig = load_toml(config.as_deref())?;
            config.faults =
                faults("gemini-live", "--fault", &config.faults, &flags, gemini_live::SUPPORTED_FAULTS)?;
            vec![Running::GeminiLive(
                gemini_live::GeminiLiveFake::bind(at(port), config).await.with_context(|| ctx(port))?,
            )]
        }
        FakeCommand::ElevenlabsAgent { port, config, faults: flags } => {
            let mut config: elevenlabs_agent::ElevenLabsAgentFakeConfig = load_toml(config.as_deref())?;
            config.faults = faults(
                "elevenlabs-agent",
                "--fault",
                &config.faults,
                &flags,
                elevenlabs_agent::SUPPORTED_FAULTS,
            )?;
            vec![Running::ElevenLabsAgent(
                elevenlabs_agent::ElevenLabsAgentFake::bind(at(port), config)
                    .await
                    .with_context(|| ctx(port))?,
            )]
        }
        FakeCommand::Tts(a) => {
            vec![Running::Speech(
                openai_speech::SpeechFake::start_on(at(a.port), speech(&a)?)
                    .await
                    .with_context(|| ctx(a.port))?,
            )]
        }
        FakeCommand::Elevenlabs(a) => {
            vec![Running::ElevenLabs(
                elevenlabs::ElevenLabsFake::start_on(at(a.port), eleven(&a)?)
                    .await
                    .with_context(|| ctx(a.port))?,
            )]
        }
        FakeCommand::Transcription { port, api_key, faults } => {
            let faults = http_faults("transcription", &faults, transcription::SUPPORTED_FAULTS)?;
            let config = transcription::TranscriptionFakeConfig { api_key, faults, ..Default::default() };
            vec![Running::Transcription(
                transcription::TranscriptionFake::start_on(at(port), config)
                    .await
                    .with_context(|| ctx(port))?,
            )]
        }
        FakeCommand::Tools { port, faults } => {
            let faults = http_faults("tools", &faults, tool_server::SUPPORTED_FAULTS)?;
            let config = tool_server::ToolServerConfig { faults, ..Default::default() };
            vec![Running::ToolServer(
                tool_server::ToolServer::start_with(at(port), config).await.with_context(|| ctx(port))?,
            )]
        }
        FakeCommand::Twilio { .. } => anyhow::bail!("`fake twilio` runs on its own (see `run`)"),
        FakeCommand::All { base_port: b, llm_replies, faults: named } => {
            let mut all = Vec::new();
            // Port n after the base one, or 0 (any free port) when the base is 0.
            let port = |n: u16| if b == 0 { 0 } else { b + n };
            let given = |fake: &str| FaultArgs { config: None, faults: faults_for(&named, fake) };
            let llm = |port, fake: &str| LlmArgs {
                port,
                time_to_first_token_ms: 300,
                token_interval_ms: 30,
                replies: llm_replies.clone(),
                faults: given(fake),
            };
            let tts = |port, fake: &str, ws_faults| TtsArgs {
                port,
                api_key: "sk-fake".into(),
                time_to_first_byte_ms: 150,
                real_time_factor: 5.0,
                faults: given(fake),
                ws_faults,
            };
            for cmd in [
                FakeCommand::Realtime { port: port(0), config: None, faults: faults_for(&named, "realtime") },
                FakeCommand::Llm(llm(port(1), "llm")),
                FakeCommand::Anthropic(llm(port(2), "anthropic")),
                FakeCommand::Tts(tts(port(3), "tts", Vec::new())),
                FakeCommand::Elevenlabs(tts(port(4), "elevenlabs", faults_for(&named, "elevenlabs-ws"))),
                FakeCommand::Transcription {
                    port: port(5),
                    api_key: "sk-fake".into(),
                    faults: given("transcription"),
                },
                FakeCommand::Tools { port: port(6), faults: given("tools") },
                // base + 7 is `fake twilio`'s default.
                FakeCommand::Gemini(GeminiArgs {
                    llm: llm(port(8), "gemini"),
                    function_call_ids: false,
                    block_prompts: Vec::new(),
                    finish_reasons: Vec::new(),
                }),
                FakeCommand::GeminiLive {
                    port: port(9),
                    config: None,
                    faults: faults_for(&named, "gemini-live"),
                },
                FakeCommand::ElevenlabsAgent {
                    port: port(10),
                    config: None,
                    faults: faults_for(&named, "elevenlabs-agent"),
                },
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

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        fake: FakeCommand,
    }

    fn parse(args: &[&str]) -> Result<FakeCommand, String> {
        use clap::Parser;
        let argv = std::iter::once("fake").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.fake).map_err(|e| e.to_string())
    }

    #[test]
    fn fault_flags_and_files_build_each_fakes_plan() {
        let FakeCommand::Llm(a) =
            parse(&["llm", "--fault", "0=status:429:retry-after=2", "--fault", "2=cut-after:3"]).unwrap()
        else {
            panic!("llm")
        };
        let k = knobs(&a, "llm").unwrap();
        assert_eq!(k.faults[&0], fault::Fault::Status { status: 429, retry_after_s: Some(2) });
        assert_eq!(k.faults[&2], fault::Fault::CutAfter { chunks: 3 });

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.toml");
        std::fs::write(&path, "faults = [\"0=slow:40\", \"1=malformed\"]\n").unwrap();
        let p = path.to_str().unwrap();
        let FakeCommand::Tools { faults: f, .. } =
            parse(&["tools", "--config", p, "--fault", "1=status:503"]).unwrap()
        else {
            panic!("tools")
        };
        let plan = http_faults("tools", &f, tool_server::SUPPORTED_FAULTS).unwrap();
        assert_eq!(plan[&0], fault::Fault::Slow { interval_ms: 40 }, "from the file");
        assert_eq!(plan[&1], fault::Fault::Status { status: 503, retry_after_s: None }, "the flag wins");

        let FakeCommand::Elevenlabs(a) = parse(&["elevenlabs", "--ws-fault", "0=unknown-event:1"]).unwrap()
        else {
            panic!("elevenlabs")
        };
        assert_eq!(eleven(&a).unwrap().ws_faults[&0], fault::Fault::UnknownEvent { after: 1 });
    }

    #[test]
    fn gemini_flags_script_refusals_and_faults() {
        let FakeCommand::Gemini(a) = parse(&[
            "gemini",
            "--block-prompt",
            "0=SAFETY",
            "--finish-reason",
            "2=RECITATION",
            "--function-call-ids",
            "--fault",
            "1=status:429:retry-after=3",
        ])
        .unwrap() else {
            panic!("gemini")
        };
        let c = gemini_config(&a).unwrap();
        assert_eq!(c.block_reasons[&0], "SAFETY");
        assert_eq!(c.finish_reasons[&2], "RECITATION");
        assert!(c.function_call_ids);
        assert_eq!(c.knobs.faults[&1], fault::Fault::Status { status: 429, retry_after_s: Some(3) });
        let e = parse(&["gemini", "--block-prompt", "0=safety"]).unwrap_err();
        assert!(e.contains("--block-prompt") && e.contains("REASON must be an enum name"), "{e}");
    }

    #[test]
    fn bad_fault_flags_name_the_flag_and_the_expected_form() {
        let e = parse(&["llm", "--fault", "0=explode"]).unwrap_err();
        assert!(e.contains("--fault") && e.contains("unknown fault kind") && e.contains("INDEX=KIND"), "{e}");
        let e = parse(&["transcription", "--fault", "status:429"]).unwrap_err();
        assert!(e.contains("--fault") && e.contains("no `=` after the index"), "{e}");
        let FakeCommand::Tts(a) = parse(&["tts", "--fault", "0=malformed"]).unwrap() else { panic!("tts") };
        let e = format!("{:#}", speech(&a).unwrap_err());
        assert!(e.contains("--fault") && e.contains("the tts fake does not implement `malformed`"), "{e}");
        let FakeCommand::Realtime { faults: f, .. } =
            parse(&["realtime", "--fault", "0=wrong-content-type"]).unwrap()
        else {
            panic!("realtime")
        };
        let e = faults("realtime", "--fault", &Faults::new(), &f, realtime::SUPPORTED_FAULTS).unwrap_err();
        assert!(e.to_string().contains("does not implement `wrong-content-type`"), "{e}");
    }

    #[tokio::test]
    async fn gemini_live_takes_its_config_and_faults_and_runs_in_fake_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.toml");
        std::fs::write(&path, "go_away_after_ms = 500\nfaults = [\"0=cut-after:2\"]\n").unwrap();
        let p = path.to_str().unwrap();
        let cmd =
            parse(&["gemini-live", "--port", "0", "--config", p, "--fault", "1=stall-after:1"]).unwrap();
        let running = start(cmd).await.unwrap();
        let text = running[0].describe();
        assert!(text.starts_with("gemini live fake listening on ws://127.0.0.1:"), "{text}");
        assert!(text.ends_with(gemini_live::PATH), "{text}");
        let e = parse(&["gemini-live", "--fault", "0=wrong-content-type"]).unwrap();
        let e = format!("{:#}", start(e).await.err().unwrap());
        assert!(e.contains("the gemini-live fake does not implement `wrong-content-type`"), "{e}");
        let all = parse(&["all", "--base-port", "0", "--fault", "gemini-live:0=cut-after:1"]).unwrap();
        let running = start(all).await.unwrap();
        assert!(running.iter().any(|r| r.describe().starts_with("gemini live fake listening on")));
    }

    #[tokio::test]
    async fn elevenlabs_agent_takes_its_config_and_faults_and_runs_in_fake_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "ping_interval_ms = 500\nfaults = [\"0=cut-after:2\"]\n").unwrap();
        let p = path.to_str().unwrap();
        let cmd =
            parse(&["elevenlabs-agent", "--port", "0", "--config", p, "--fault", "1=stall-after:1"]).unwrap();
        let running = start(cmd).await.unwrap();
        let text = running[0].describe();
        assert!(text.starts_with("elevenlabs agent fake listening on ws://127.0.0.1:"), "{text}");
        assert!(text.ends_with(&format!("{})", elevenlabs_agent::SIGNED_URL_PATH)), "{text}");
        let e = parse(&["elevenlabs-agent", "--fault", "0=wrong-content-type"]).unwrap();
        let e = format!("{:#}", start(e).await.err().unwrap());
        assert!(e.contains("the elevenlabs-agent fake does not implement `wrong-content-type`"), "{e}");
        let all = parse(&["all", "--base-port", "0", "--fault", "elevenlabs-agent:0=cut-after:1"]).unwrap();
        let running = start(all).await.unwrap();
        assert!(running.iter().any(|r| r.describe().starts_with("elevenlabs agent fake listening on")));
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
