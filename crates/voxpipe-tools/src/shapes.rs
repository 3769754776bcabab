//! The wire shape of a tool declaration for each model API, from one [`ToolSpec`].

use serde_json::{Value, json};
use voxpipe_core::ToolSpec;

/// OpenAI Chat Completions (`tools[]`): `{"type":"function","function":{name,description,parameters}}`.
pub fn chat_completions(spec: &ToolSpec) -> Value {
    json!({
        "type": "function",
        "function": { "name": spec.name, "description": spec.description, "parameters": spec.parameters },
    })
}

/// OpenAI Realtime (`session.tools[]`): the flat `{type:"function",name,description,parameters}`.
pub fn realtime(spec: &ToolSpec) -> Value {
    json!({ "type": "function", "name": spec.name, "description": spec.description, "parameters": spec.parameters })
}

/// Anthropic Messages (`tools[]`): `{name,description,input_schema}`.
pub fn anthropic(spec: &ToolSpec) -> Value {
    json!({ "name": spec.name, "description": spec.description, "input_schema": spec.parameters })
}
