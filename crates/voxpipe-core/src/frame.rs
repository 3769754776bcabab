//! Pipeline frames: the typed messages that flow downstream from the source, through the
//! stages, to the sinks.
//!
//! Frames are sorted by what an interruption does to them (see [`Frame::is_interruptible`]):
//! the assistant's output (audio, text, transcripts of a reply) is dropped when the caller
//! barges in; the caller's input, tool traffic and stream boundaries never are.

use crate::audio::AudioChunk;
use crate::tool::{ToolCall, ToolResult};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Identifies one assistant output item (a Realtime `item_…` id, or a cascade reply id).
/// Cloning is a reference-count bump, so audio chunks can carry it for free.
pub type ItemId = Arc<str>;

/// A message on the data path.
#[derive(Clone, Debug)]
pub enum Frame {
    /// Caller audio, emitted by the source and consumed by the first stage (or the turn
    /// controller).
    InputAudio(AudioChunk),
    /// Assistant audio on its way to the sink.
    OutputAudio(OutputAudio),
    /// A partial or final transcript of the caller's speech (ASR or provider transcription).
    UserTranscript(Transcript),
    /// A partial or final transcript of what the assistant says.
    AssistantTranscript(Transcript),
    /// A fragment of assistant text from an LLM, on its way to TTS.
    TextDelta(TextDelta),
    /// The model asked for a tool call.
    ToolCall(ToolCall),
    /// A tool call finished.
    ToolResult(ToolResult),
    /// A model response began.
    ResponseStarted(ResponseStarted),
    /// A model response ended (completed, cancelled, failed…), with token usage when known.
    ResponseDone(ResponseDone),
    /// Voice activity: the caller started speaking, at this media time on the input timeline.
    SpeechStarted {
        /// Input-timeline position of the speech onset.
        at: Duration,
    },
    /// Voice activity: the caller stopped speaking.
    SpeechStopped {
        /// Input-timeline position of the end of speech.
        at: Duration,
    },
    /// The conversation so far, handed to stages that take over a call mid-way (failover).
    /// The model stage takes it as its history (and answers if the caller is waiting); the
    /// others forward it.
    Restore(Arc<Restore>),
    /// No more input will come; each component forwards it once it has drained its work.
    EndOfStream,
}

/// Who said a [`Line`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaker {
    /// The caller.
    User,
    /// The agent.
    Assistant,
}

/// One finished utterance of the conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Who said it.
    pub speaker: Speaker,
    /// What was said (for the agent: what the caller heard, as far as it is known).
    pub text: String,
}

/// The conversation so far, for stages taking over a call ([`Frame::Restore`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restore {
    /// Every finished utterance, in order.
    pub lines: Vec<Line>,
    /// The caller's last words are still unanswered: answer them now.
    pub respond: bool,
}

impl Frame {
    /// True for assistant output that an interruption discards.
    pub fn is_interruptible(&self) -> bool {
        matches!(
            self,
            Frame::OutputAudio(_)
                | Frame::TextDelta(_)
                | Frame::AssistantTranscript(Transcript { is_final: false, .. })
        )
    }

    /// Short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::InputAudio(_) => "input_audio",
            Frame::OutputAudio(_) => "output_audio",
            Frame::UserTranscript(_) => "user_transcript",
            Frame::AssistantTranscript(_) => "assistant_transcript",
            Frame::TextDelta(_) => "text_delta",
            Frame::ToolCall(_) => "tool_call",
            Frame::ToolResult(_) => "tool_result",
            Frame::ResponseStarted(_) => "response_started",
            Frame::ResponseDone(_) => "response_done",
            Frame::SpeechStarted { .. } => "speech_started",
            Frame::SpeechStopped { .. } => "speech_stopped",
            Frame::Restore(_) => "restore",
            Frame::EndOfStream => "end_of_stream",
        }
    }
}

/// Assistant audio tagged with the item it belongs to.
#[derive(Clone, Debug)]
pub struct OutputAudio {
    /// The assistant item this audio is part of.
    pub item: ItemId,
    /// The playout epoch current when the audio was produced (see
    /// [`PlayoutTracker::epoch`](crate::playout::PlayoutTracker::epoch)); the sink drops audio
    /// from an epoch that an interruption has closed.
    pub epoch: u64,
    /// The audio.
    pub chunk: AudioChunk,
    /// Words carried by this chunk, when the producer knows them (cascade TTS), so history can
    /// be cut at the last word actually played.
    pub text: Option<Arc<str>>,
}

/// A transcript fragment or final transcript.
#[derive(Clone, Debug, Serialize)]
pub struct Transcript {
    /// The conversation item it belongs to, when the provider names one.
    pub item: Option<ItemId>,
    /// The text (a delta when `is_final` is false, the whole text when true).
    pub text: String,
    /// Whether this is the final transcript of the item.
    pub is_final: bool,
}

/// A fragment of LLM text.
#[derive(Clone, Debug)]
pub struct TextDelta {
    /// The reply it belongs to.
    pub item: ItemId,
    /// The text fragment.
    pub text: String,
}

/// A response began.
#[derive(Clone, Debug, Serialize)]
pub struct ResponseStarted {
    /// Provider or local response id.
    pub response_id: String,
}

/// How a response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// Ran to completion.
    Completed,
    /// Cancelled by the client or by turn detection.
    Cancelled,
    /// Stopped early (token cap, content filter).
    Incomplete,
    /// Failed with an error.
    Failed,
}

/// A response ended.
#[derive(Clone, Debug, Serialize)]
pub struct ResponseDone {
    /// Provider or local response id.
    pub response_id: String,
    /// How it ended.
    pub status: ResponseStatus,
    /// Why, when the provider says (`turn_detected`, `client_cancelled`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Token usage, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// Token usage of one response, by meter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// All input tokens.
    pub input_tokens: u64,
    /// All output tokens.
    pub output_tokens: u64,
    /// Input text tokens, when broken down.
    pub input_text_tokens: u64,
    /// Input audio tokens, when broken down.
    pub input_audio_tokens: u64,
    /// Cached input tokens, when reported.
    pub cached_tokens: u64,
    /// Output text tokens, when broken down.
    pub output_text_tokens: u64,
    /// Output audio tokens, when broken down.
    pub output_audio_tokens: u64,
}
