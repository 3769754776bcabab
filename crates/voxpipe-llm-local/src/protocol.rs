//! The line-delimited JSON protocol between the `llm.local` stage and `voxpipe-llm-worker`.
//!
//! One JSON object per line, `type` names the message. The client writes [`Request`]s to the
//! worker's stdin; the worker writes [`Reply`]s to its stdout (its stderr carries logs only).
//!
//! ```text
//! -> {"type":"load","model":"/cache/smollm2.gguf","settings":{"threads":1,...}}
//! <- {"type":"ready","n_params":134515008,"n_ctx_train":8192,"load_ms":120}
//! -> {"type":"prefill","id":1,"messages":[{"role":"system","content":"..."}]}
//! <- {"type":"prefilled","id":1,"usage":{"prompt_tokens":412,"reused_tokens":0,"generated_tokens":0},"ms":1630}
//! -> {"type":"generate","id":2,"messages":[{"role":"system","content":"..."},{"role":"user","content":"Hi"}],"tools":false}
//! <- {"type":"delta","id":2,"text":"Hello","tokens":1}
//! <- {"type":"delta","id":2,"text":"!","tokens":2}
//! <- {"type":"done","id":2,"finish":"end_of_turn","usage":{"prompt_tokens":420,"reused_tokens":411,"generated_tokens":3},"ttft_ms":42}
//! -> {"type":"generate","id":3,...}
//! -> {"type":"cancel","id":3}
//! <- {"type":"done","id":3,"finish":"cancelled","cancelled_at":4,...}
//! (stdin closed) -> the worker exits with status 0
//! ```
//!
//! - `load` comes first and once; `ready` or an `error` without `id` answers it.
//! - One `generate` or `prefill` at a time: the next is sent after the previous one's `done`,
//!   `prefilled` or `error`.
//!   The worker keeps its KV cache between requests and reuses the longest common prefix, so
//!   the client sends the whole conversation every time.
//! - `prefill` is a warm-up: the stage sends its fixed prompt prefix (system prompt and
//!   examples) when the call starts, so the first reply only evaluates the caller's words.
//! - `cancel` is read while generating (a separate thread reads stdin) and raises a flag the
//!   generation loop checks before every token decode: it ends within one token step, with
//!   `done` and `finish = "cancelled"`. A cancel for a request that already ended is ignored.
//! - An `error` carries a `code`, a `message` for people, and `fatal`: when true the worker
//!   exits after sending it.

use serde::{Deserialize, Serialize};

/// Generation settings sent with `load`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// CPU threads for generation (one token at a time).
    pub threads: u32,
    /// CPU threads for prompt processing (many tokens at once); `threads` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_threads: Option<u32>,
    /// Context window in tokens.
    pub context_tokens: u32,
    /// Cap on sampled tokens per request.
    pub max_tokens: u32,
    /// Sampling temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling threshold.
    pub top_p: f32,
    /// Sampler seed, reset at each request.
    pub seed: u32,
    /// Strings that end a reply (not sent as text).
    #[serde(default)]
    pub stop: Vec<String>,
}

/// One chat message: a role (`system`, `user`, `assistant`) and its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The role.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self { role: role.to_string(), content: content.into() }
    }
}

/// Client -> worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Load a GGUF model and create the context. First message, once.
    Load {
        /// Path of the GGUF file.
        model: String,
        /// Generation settings.
        settings: Settings,
    },
    /// Generate a reply to `messages` (rendered with the model's chat template).
    Generate {
        /// Request id, echoed in every reply to it.
        id: u64,
        /// The whole conversation, system prompt first.
        messages: Vec<ChatMessage>,
        /// Watch for `<tool_call>` in the output and end the reply at `</tool_call>`.
        #[serde(default)]
        tools: bool,
    },
    /// Evaluate `messages` (without the reply prompt) into the KV cache and generate nothing:
    /// a warm-up, so the first `generate` that starts with them only evaluates what is new.
    Prefill {
        /// Request id, echoed in the reply.
        id: u64,
        /// The conversation prefix, system prompt first.
        messages: Vec<ChatMessage>,
    },
    /// Stop generating request `id` within one token step.
    Cancel {
        /// The request to stop.
        id: u64,
    },
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model's end-of-turn token.
    EndOfTurn,
    /// A configured stop string.
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
    /// A complete tool call was generated (`tool_call` holds its body).
    ToolCall,
    /// Cancelled.
    Cancelled,
}

/// Token counts of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens of the whole prompt.
    pub prompt_tokens: u64,
    /// Prompt tokens whose KV entries were reused from the previous request.
    pub reused_tokens: u64,
    /// Tokens sampled (including an end-of-turn token).
    pub generated_tokens: u64,
}

/// Worker -> client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// The model is loaded and a context is ready.
    Ready {
        /// Parameters of the model.
        n_params: u64,
        /// Training context length of the model.
        n_ctx_train: u32,
        /// Time the load took.
        load_ms: u64,
    },
    /// Speakable text of request `id`.
    Delta {
        /// Request id.
        id: u64,
        /// The text (whole UTF-8 characters; stop strings and tool calls never appear).
        text: String,
        /// Tokens sampled so far in this request.
        tokens: u64,
    },
    /// Request `id` ended.
    Done {
        /// Request id.
        id: u64,
        /// Why.
        finish: Finish,
        /// The `<tool_call>` body when `finish` is `tool_call`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_call: Option<String>,
        /// Token counts.
        usage: TokenUsage,
        /// Time from the request to the first sampled token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttft_ms: Option<u64>,
        /// When cancelled: how many tokens had been sampled when the worker read the cancel
        /// (so `usage.generated_tokens - cancelled_at` is what it took to stop).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cancelled_at: Option<u64>,
    },
    /// Prefill request `id` ended: its tokens are in the KV cache (unless `cancelled`).
    Prefilled {
        /// Request id.
        id: u64,
        /// Token counts (`generated_tokens` is 0).
        usage: TokenUsage,
        /// How long it took.
        ms: u64,
        /// Whether a `cancel` stopped it part-way.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cancelled: bool,
    },
    /// Something failed. Without `id` it concerns the worker itself (load, protocol).
    Error {
        /// The request, if the error belongs to one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// A short code (`model_load`, `context`, `decode`, `prompt_too_long`, `protocol`, ...).
        code: String,
        /// What went wrong, for people.
        message: String,
        /// The worker exits after a fatal error.
        fatal: bool,
    },
}

impl Request {
    /// The message as one line of JSON (with its newline).
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("requests always serialise");
        s.push('\n');
        s
    }
}

impl Reply {
    /// The message as one line of JSON (with its newline).
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("replies always serialise");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_single_lines() {
        let r = Request::Generate { id: 7, messages: vec![ChatMessage::new("user", "a\nb")], tools: true };
        let line = r.to_line();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.starts_with(r#"{"type":"generate","id":7"#), "{line}");
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        let d = Reply::Done {
            id: 7,
            finish: Finish::EndOfTurn,
            tool_call: None,
            usage: TokenUsage { prompt_tokens: 3, reused_tokens: 0, generated_tokens: 2 },
            ttft_ms: Some(5),
            cancelled_at: None,
        };
        let line = d.to_line();
        assert!(line.contains(r#""finish":"end_of_turn""#) && !line.contains("tool_call"), "{line}");
        assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), d);
        let c: Request = serde_json::from_str(r#"{"type":"cancel","id":3}"#).unwrap();
        assert_eq!(c, Request::Cancel { id: 3 });
    }
}
