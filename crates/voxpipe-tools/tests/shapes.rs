//! The declaration shapes of each model API.

use serde_json::json;
use voxpipe_core::ToolSpec;
use voxpipe_tools::shapes;

fn spec() -> ToolSpec {
    ToolSpec {
        name: "get_order_status".into(),
        description: "Look up an order".into(),
        parameters: json!({ "type": "object", "properties": { "order_id": { "type": "string" } }, "required": ["order_id"] }),
    }
}

#[test]
fn chat_completions_nests_the_function() {
    let s = spec();
    assert_eq!(
        shapes::chat_completions(&s),
        json!({
            "type": "function",
            "function": { "name": "get_order_status", "description": "Look up an order", "parameters": s.parameters }
        })
    );
}

#[test]
fn realtime_is_flat() {
    let s = spec();
    assert_eq!(
        shapes::realtime(&s),
        json!({ "type": "function", "name": "get_order_status", "description": "Look up an order", "parameters": s.parameters })
    );
}

#[test]
fn anthropic_uses_input_schema() {
    let s = spec();
    assert_eq!(
        shapes::anthropic(&s),
        json!({ "name": "get_order_status", "description": "Look up an order", "input_schema": s.parameters })
    );
}
