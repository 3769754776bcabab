//! The conversation as chat messages for the model's chat template, with the `<tool_call>`
//! prompt convention when tools are offered.

use crate::config::Example;
pub use crate::protocol::ChatMessage;
use crate::text::{TOOL_CALL_CLOSE, TOOL_CALL_OPEN};
use voxpipe_core::ToolSpec;
use voxpipe_core::history::{AssistantPart, History, Message};

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
         The result comes back in <result></result>; then answer the user.\n\
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

/// The fixed start of every request: the system prompt, then the few-shot `examples` (those
/// with a tool call only when `tools` is true), rendered like real turns.
pub fn preamble(system: &str, examples: &[Example], tools: bool) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(examples.len() * 4 + 1);
    if !system.is_empty() {
        out.push(ChatMessage::new("system", system));
    }
    for e in examples {
        match &e.tool_call {
            Some(_) if !tools => {}
            Some(call) => {
                out.push(ChatMessage::new("user", e.user.clone()));
                out.push(ChatMessage::new("assistant", tool_call_text(&call.name, &call.arguments)));
                if let (Some(result), Some(answer)) = (&e.tool_result, &e.assistant) {
                    out.push(ChatMessage::new("user", tool_result_text(&call.name, result)));
                    out.push(ChatMessage::new("assistant", answer.clone()));
                }
            }
            None => {
                out.push(ChatMessage::new("user", e.user.clone()));
                out.push(ChatMessage::new("assistant", e.assistant.clone().unwrap_or_default()));
            }
        }
    }
    out
}

/// A tool call as the model writes it, in the convention's key order (name first).
fn tool_call_text(name: &str, arguments: &serde_json::Value) -> String {
    let name = serde_json::Value::from(name);
    format!(r#"{TOOL_CALL_OPEN}{{"name": {name}, "arguments": {arguments}}}{TOOL_CALL_CLOSE}"#)
}

/// A tool result as the model reads it. Not `<tool_response>`: small models mix that up with
/// `<tool_call>` and write it instead when they mean to call a tool.
fn tool_result_text(name: &str, output: &str) -> String {
    let (name, output) = (serde_json::Value::from(name), serde_json::Value::from(output));
    format!("<result>\n{{\"name\": {name}, \"content\": {output}}}\n</result>")
}

/// Renders the `preamble` and the conversation as chat messages. Tool calls become
/// `<tool_call>` text in the assistant message; tool results go back as a user message of
/// `<result>` blocks (every chat template knows the `user` role).
pub fn messages(preamble: &[ChatMessage], history: &History) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(history.messages().len() + preamble.len());
    out.extend_from_slice(preamble);
    for m in history.messages() {
        match m {
            Message::User(text) => out.push(ChatMessage::new("user", text.clone())),
            Message::Assistant(parts) => {
                let mut text = String::new();
                for p in parts {
                    match p {
                        AssistantPart::Text(t) => text.push_str(t),
                        AssistantPart::ToolUse { call, input } => {
                            text.push_str(&tool_call_text(&call.name, input));
                        }
                        AssistantPart::Opaque(_) => {}
                    }
                }
                out.push(ChatMessage::new("assistant", text));
            }
            Message::ToolResults(results) => {
                let text = results
                    .iter()
                    .map(|r| tool_result_text(&r.name, &r.output))
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
        let m = messages(&preamble(&system, &[], true), &h);
        assert_eq!(m.len(), 4);
        assert_eq!(m[2].role, "assistant");
        assert_eq!(
            m[2].content,
            r#"<tool_call>{"name": "weather", "arguments": {"city":"Paris"}}</tool_call>"#
        );
        assert_eq!(m[3].role, "user");
        assert!(m[3].content.starts_with("<result>\n{"), "{}", m[3].content);
    }

    #[test]
    fn no_system_message_without_instructions_or_tools() {
        let mut h = History::new();
        h.push_user("hi");
        assert_eq!(
            messages(&preamble(&system_prompt("  ", &[]), &[], false), &h),
            vec![ChatMessage::new("user", "hi")]
        );
    }

    #[test]
    fn examples_come_between_the_system_prompt_and_the_call() {
        let examples: Vec<Example> = serde_json::from_value(serde_json::json!([
            {"user": "Where is A-1?", "tool_call": {"name": "status", "arguments": {"id": "A-1"}},
             "tool_result": "In transit.", "assistant": "It is on its way."},
            {"user": "Open?", "assistant": "Nine to five."},
        ]))
        .unwrap();
        let mut h = History::new();
        h.push_user("hi");
        let m = messages(&preamble("Be brief.", &examples, true), &h);
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]);
        assert_eq!(m[2].content, r#"<tool_call>{"name": "status", "arguments": {"id":"A-1"}}</tool_call>"#);
        assert_eq!(m[3].content, "<result>\n{\"name\": \"status\", \"content\": \"In transit.\"}\n</result>");
        assert_eq!((m[6].content.as_str(), m[7].content.as_str()), ("Nine to five.", "hi"));
        // Without tools the tool example is left out.
        let m = messages(&preamble("Be brief.", &examples, false), &h);
        assert_eq!(
            m.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
            ["Be brief.", "Open?", "Nine to five.", "hi"]
        );
    }
}
