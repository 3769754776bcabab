//! The conversation of one call, provider-neutral: what the caller said, what the assistant
//! said (cut to what the caller heard) and the tool calls and results between. Each LLM provider
//! renders it into its own wire shape (`voxpipe_llm::openai::wire`, `voxpipe_llm::anthropic::wire`,
//! the local model's chat template in `voxpipe-llm-local`).

use crate::{ToolCall, ToolResult};

/// One part of an assistant message, in the order the model produced it.
#[derive(Clone, Debug, PartialEq)]
pub enum AssistantPart {
    /// Spoken text.
    Text(String),
    /// A tool call; `input` is the parsed arguments (`{}` when they did not parse), which
    /// Anthropic needs as an object, while OpenAI gets `call.arguments` back verbatim.
    ToolUse {
        /// The call as the model made it.
        call: ToolCall,
        /// The parsed arguments object.
        input: serde_json::Value,
    },
    /// A provider block echoed back verbatim (Anthropic `thinking`, `redacted_thinking`, …).
    Opaque(serde_json::Value),
}

/// One message of the conversation.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// What the caller said.
    User(String),
    /// What the model answered.
    Assistant(Vec<AssistantPart>),
    /// The results of the tool calls of the preceding assistant message, in call order.
    ToolResults(Vec<ToolResult>),
}

/// The conversation of one call, without the system prompt.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    messages: Vec<Message>,
}

impl History {
    /// An empty conversation.
    pub fn new() -> Self {
        Self::default()
    }

    /// The messages, oldest first.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Appends what the caller said.
    pub fn push_user(&mut self, text: impl Into<String>) {
        self.messages.push(Message::User(text.into()));
    }

    /// Appends an assistant message; an empty one (nothing generated) is not recorded, since
    /// providers reject empty assistant turns.
    pub fn push_assistant(&mut self, parts: Vec<AssistantPart>) {
        let parts: Vec<_> =
            parts.into_iter().filter(|p| !matches!(p, AssistantPart::Text(t) if t.is_empty())).collect();
        if !parts.is_empty() {
            self.messages.push(Message::Assistant(parts));
        }
    }

    /// Appends tool results (nothing when `results` is empty).
    pub fn push_tool_results(&mut self, results: Vec<ToolResult>) {
        if !results.is_empty() {
            self.messages.push(Message::ToolResults(results));
        }
    }

    /// The spoken text of the last assistant message, if the last message is one.
    pub fn last_assistant_text(&self) -> Option<String> {
        match self.messages.last() {
            Some(Message::Assistant(parts)) => Some(text_of(parts)),
            _ => None,
        }
    }

    /// Adds `text` to what the last assistant message said (after its text, before its tool
    /// calls), e.g. the filler spoken while its tools ran, so the model knows it was said.
    /// Returns false when the last message is not an assistant message.
    pub fn append_to_last_assistant(&mut self, text: &str) -> bool {
        let Some(Message::Assistant(parts)) = self.messages.last_mut() else {
            return false;
        };
        let text = text.trim();
        if text.is_empty() {
            return true;
        }
        let existing = text_of(parts);
        let piece = if existing.is_empty() || existing.ends_with(char::is_whitespace) {
            text.to_string()
        } else {
            format!(" {text}")
        };
        let at = parts.iter().rposition(|p| matches!(p, AssistantPart::Text(_))).map_or(0, |i| i + 1);
        parts.insert(at, AssistantPart::Text(piece));
        true
    }

    /// The conversation so far as lines `user: …` / `assistant: …` (spoken text only), as the
    /// handoff event carries it.
    pub fn transcript(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Message::User(t) => Some(format!("user: {}", t.trim())),
                Message::Assistant(parts) => {
                    let text = text_of(parts);
                    (!text.trim().is_empty()).then(|| format!("assistant: {}", text.trim()))
                }
                Message::ToolResults(_) => None,
            })
            .collect()
    }

    /// Replaces the text of the last assistant message with `heard_text` (what the caller
    /// actually heard before an interruption), keeping its tool calls. With empty
    /// `heard_text` and no tool calls the message is removed. Returns false when the last
    /// message is not an assistant message (nothing to cut).
    pub fn truncate_last_assistant(&mut self, heard_text: &str) -> bool {
        let Some(Message::Assistant(parts)) = self.messages.last_mut() else {
            return false;
        };
        let first_text = parts.iter().position(|p| matches!(p, AssistantPart::Text(_)));
        parts.retain(|p| !matches!(p, AssistantPart::Text(_)));
        if !heard_text.is_empty() {
            let at = first_text.unwrap_or(0).min(parts.len());
            parts.insert(at, AssistantPart::Text(heard_text.to_string()));
        }
        if parts.is_empty() {
            self.messages.pop();
        }
        true
    }
}

/// The concatenated text parts of an assistant message.
pub fn text_of(parts: &[AssistantPart]) -> String {
    parts
        .iter()
        .filter_map(|p| match p {
            AssistantPart::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> AssistantPart {
        AssistantPart::ToolUse {
            call: ToolCall { call_id: "call_1".into(), name: "f".into(), arguments: "{}".into() },
            input: serde_json::json!({}),
        }
    }

    #[test]
    fn truncation_replaces_text_and_keeps_tool_calls() {
        let mut h = History::new();
        h.push_user("hi");
        h.push_assistant(vec![AssistantPart::Text("Hello there, how".into()), call()]);
        assert!(h.truncate_last_assistant("Hello"));
        assert_eq!(h.messages()[1], Message::Assistant(vec![AssistantPart::Text("Hello".into()), call()]));
    }

    #[test]
    fn truncation_to_nothing_removes_a_text_only_message() {
        let mut h = History::new();
        h.push_user("hi");
        h.push_assistant(vec![AssistantPart::Text("Hello".into())]);
        assert!(h.truncate_last_assistant(""));
        assert_eq!(h.messages(), &[Message::User("hi".into())]);
        assert!(!h.truncate_last_assistant("x"), "last message is the user's");
    }

    #[test]
    fn appended_text_goes_after_the_text_and_before_the_tool_calls() {
        let mut h = History::new();
        h.push_user("where is my order");
        h.push_assistant(vec![call()]);
        assert!(h.append_to_last_assistant("One moment."));
        assert_eq!(
            h.messages()[1],
            Message::Assistant(vec![AssistantPart::Text("One moment.".into()), call()])
        );
        h.push_assistant(vec![AssistantPart::Text("Let me see.".into()), call()]);
        assert!(h.append_to_last_assistant("One moment."));
        assert_eq!(
            text_of(match &h.messages()[2] {
                Message::Assistant(p) => p,
                _ => unreachable!(),
            }),
            "Let me see. One moment."
        );
        assert!(
            matches!(&h.messages()[2], Message::Assistant(p) if matches!(p[2], AssistantPart::ToolUse { .. }))
        );
        h.push_tool_results(Vec::new());
        h.push_user("thanks");
        assert!(!h.append_to_last_assistant("x"), "the last message is the user's");
    }

    #[test]
    fn transcript_lists_spoken_lines_in_order() {
        let mut h = History::new();
        h.push_user(" I want a human ");
        h.push_assistant(vec![call()]);
        h.push_assistant(vec![AssistantPart::Text("Transferring you now.".into())]);
        assert_eq!(h.transcript(), ["user: I want a human", "assistant: Transferring you now."]);
    }

    #[test]
    fn empty_assistant_messages_are_not_recorded() {
        let mut h = History::new();
        h.push_assistant(vec![AssistantPart::Text(String::new())]);
        assert!(h.messages().is_empty());
    }
}
