//! The conversation as chat messages for the model's chat template, with the `<tool_call>`
//! prompt convention when tools are offered.

pub use crate::protocol::ChatMessage;
use crate::text::{TOOL_CALL_CLOSE, TOOL_CALL_OPEN};
use voxpipe_core::ToolSpec;
use voxpipe_llm::{AssistantPart, History, Message};

/// The system prompt: `instructions`, then the tool convention when `tools` is non-empty.
pub fn system_prompt(instructions: &str, tools: &[ToolSpec]) -> String {
    let mut s = instructions.trim().to_string();
    if tools.is_empty() {
        return s;
    }
    if !s.is_empty() {
        s.push_str("\n\n");
    }
    s.push_str(
        "You can call tools. To call one, reply with only this, on one line:\n\
         <tool_call>{\"name\": \"TOOL_NAME\", \"arguments\": {ARGUMENTS}}</tool_call>\n\
         The result comes back in <tool_response></tool_response>; then answer the user.\n\
         Available tools:\n",
    );
    for t in tools {
        let tool =
            serde_json::json!({"name": t.name, "description": t.description, "parameters": t.parameters});
        s.push_str(&tool.to_string());
        s.push('\n');
    }
    s
}

/// Renders the system prompt and the conversation as chat messages. Tool calls become
/// `<tool_call>` text in the assistant message; tool results go back as a user message of
/// `<tool_response>` blocks (every chat template knows the `user` role).
pub fn messages(system: &str, history: &History) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(history.messages().len() + 1);
    if !system.is_empty() {
        out.push(ChatMessage::new("system", system));
    }
    for m in history.messages() {
        match m {
            Message::User(text) => out.push(ChatMessage::new("user", text.clone())),
            Message::Assistant(parts) => {
                let mut text = String::new();
                for p in parts {
                    match p {
                        AssistantPart::Text(t) => text.push_str(t),
                        AssistantPart::ToolUse { call, input } => {
                            let body = serde_json::json!({"name": call.name, "arguments": input});
                            text.push_str(&format!("{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"));
                        }
                        AssistantPart::Opaque(_) => {}
                    }
                }
                out.push(ChatMessage::new("assistant", text));
            }
            Message::ToolResults(results) => {
                let text = results
                    .iter()
                    .map(|r| {
                        let body = serde_json::json!({"name": r.name, "content": r.output});
                        format!("<tool_response>\n{body}\n</tool_response>")
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                out.push(ChatMessage::new("user", text));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use voxpipe_core::{ToolCall, ToolResult};

    #[test]
    fn tool_traffic_is_rendered_with_the_prompt_convention() {
        let mut h = History::new();
        h.push_user("Weather in Paris?");
        let call = ToolCall { call_id: "call_1".into(), name: "weather".into(), arguments: "{}".into() };
        let input = serde_json::json!({"city": "Paris"});
        h.push_assistant(vec![AssistantPart::ToolUse { call: call.clone(), input }]);
        h.push_tool_results(vec![ToolResult {
            call_id: "call_1".into(),
            name: "weather".into(),
            output: "{\"c\":20}".into(),
            is_error: false,
            duration: Duration::ZERO,
            action: None,
        }]);
        let spec = ToolSpec {
            name: "weather".into(),
            description: "Weather now".into(),
            parameters: serde_json::json!({"type": "object"}),
        };
        let system = system_prompt("Be brief.", &[spec]);
        assert!(system.starts_with("Be brief.\n\nYou can call tools."));
        assert!(system.contains(r#""name":"weather""#));
        let m = messages(&system, &h);
        assert_eq!(m.len(), 4);
        assert_eq!(m[2].role, "assistant");
        assert_eq!(m[2].content, r#"<tool_call>{"arguments":{"city":"Paris"},"name":"weather"}</tool_call>"#);
        assert_eq!(m[3].role, "user");
        assert!(m[3].content.starts_with("<tool_response>\n{"), "{}", m[3].content);
    }

    #[test]
    fn no_system_message_without_instructions_or_tools() {
        let mut h = History::new();
        h.push_user("hi");
        assert_eq!(messages(&system_prompt("  ", &[]), &h), vec![ChatMessage::new("user", "hi")]);
    }
}
