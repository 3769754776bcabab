//! The conversation of one call, provider-neutral. Each provider renders it into its own wire
//! shape (`openai::wire`, `anthropic::wire`).

use voxpipe_core::{ToolCall, ToolResult};

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
pub(crate) fn text_of(parts: &[AssistantPart]) -> String {
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
    fn empty_assistant_messages_are_not_recorded() {
        let mut h = History::new();
        h.push_assistant(vec![AssistantPart::Text(String::new())]);
        assert!(h.messages().is_empty());
    }
}
