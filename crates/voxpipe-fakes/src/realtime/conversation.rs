//! The conversation the fake keeps: items with their role, text or transcript and audio length,
//! so truncation, retrieval and usage stay consistent.

use serde_json::{Value, json};

use super::session::Dialect;

/// One content part of a message item.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    /// User or system text.
    InputText(String),
    /// User audio: its transcript (once known) and length.
    InputAudio { transcript: Option<String>, audio_ms: u64 },
    /// Assistant text.
    Text(String),
    /// Assistant audio: its transcript (removed by truncation) and length.
    Audio { transcript: String, audio_ms: u64 },
}

/// What an item is.
#[derive(Debug, Clone)]
pub(crate) enum ItemKind {
    /// A message with a role.
    Message { role: String, parts: Vec<Part> },
    /// A function call made by the model.
    FunctionCall { call_id: String, name: String, arguments: String },
    /// The client's result for a call.
    FunctionCallOutput { call_id: String, output: String },
}

/// One conversation item.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub id: String,
    pub status: &'static str,
    pub kind: ItemKind,
}

impl Item {
    /// The item's wire shape in `dialect` (never with audio bytes).
    pub(crate) fn json(&self, dialect: Dialect) -> Value {
        let mut v = match &self.kind {
            ItemKind::Message { role, parts } => {
                let content: Vec<Value> = parts.iter().map(|p| part_json(p, dialect)).collect();
                json!({"type": "message", "role": role, "content": content})
            }
            ItemKind::FunctionCall { call_id, name, arguments } => {
                json!({"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments})
            }
            ItemKind::FunctionCallOutput { call_id, output } => {
                json!({"type": "function_call_output", "call_id": call_id, "output": output})
            }
        };
        v["id"] = json!(self.id);
        v["status"] = json!(self.status);
        if dialect == Dialect::Beta {
            v["object"] = json!("realtime.item");
        }
        v
    }

    /// Role of a message item.
    pub(crate) fn role(&self) -> Option<&str> {
        match &self.kind {
            ItemKind::Message { role, .. } => Some(role),
            _ => None,
        }
    }
}

/// The wire shape of a content part.
pub(crate) fn part_json(p: &Part, dialect: Dialect) -> Value {
    let ga = dialect == Dialect::Ga;
    match p {
        Part::InputText(t) => json!({"type": "input_text", "text": t}),
        Part::InputAudio { transcript, .. } => json!({"type": "input_audio", "transcript": transcript}),
        Part::Text(t) => json!({"type": if ga { "output_text" } else { "text" }, "text": t}),
        Part::Audio { transcript, .. } => {
            json!({"type": if ga { "output_audio" } else { "audio" }, "transcript": transcript})
        }
    }
}

/// The `part` of `response.content_part.added` / `.done`: `audio` or `text` in both dialects
/// (the spec and the official SDK types say so), unlike GA item content, which is
/// `output_audio` / `output_text` (see [`part_json`]).
pub(crate) fn response_part_json(p: &Part) -> Value {
    part_json(p, Dialect::Beta)
}

/// The ordered items of one connection's conversation.
#[derive(Debug, Default)]
pub(crate) struct Conversation {
    items: Vec<Item>,
}

impl Conversation {
    /// Inserts `item` after `previous` (`Some("root")` = first; `None` = last) and returns the
    /// id of the item before it.
    pub(crate) fn insert(&mut self, item: Item, previous: Option<&str>) -> Option<String> {
        let at = match previous {
            Some("root") => 0,
            Some(id) => self.position(id).map_or(self.items.len(), |i| i + 1),
            None => self.items.len(),
        };
        self.items.insert(at, item);
        at.checked_sub(1).map(|i| self.items[i].id.clone())
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.items.iter().position(|i| i.id == id)
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.position(id).is_some()
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut Item> {
        self.items.iter_mut().find(|i| i.id == id)
    }

    pub(crate) fn remove(&mut self, id: &str) -> bool {
        self.position(id).map(|i| self.items.remove(i)).is_some()
    }

    /// The id of the last item.
    pub(crate) fn last_id(&self) -> Option<String> {
        self.items.last().map(|i| i.id.clone())
    }

    /// True when a function call with `call_id` is in the conversation.
    pub(crate) fn has_call(&self, call_id: &str) -> bool {
        self.items
            .iter()
            .any(|i| matches!(&i.kind, ItemKind::FunctionCall { call_id: c, .. } if c == call_id))
    }

    /// Input size for usage: (user audio ms, characters of text context).
    pub(crate) fn input_size(&self) -> (u64, usize) {
        let (mut audio, mut chars) = (0, 0);
        for item in &self.items {
            match &item.kind {
                ItemKind::Message { parts, .. } => {
                    for p in parts {
                        match p {
                            Part::InputAudio { audio_ms, .. } => audio += audio_ms,
                            Part::InputText(t) | Part::Text(t) => chars += t.len(),
                            Part::Audio { transcript, .. } => chars += transcript.len(),
                        }
                    }
                }
                ItemKind::FunctionCall { arguments, .. } => chars += arguments.len(),
                ItemKind::FunctionCallOutput { output, .. } => chars += output.len(),
            }
        }
        (audio, chars)
    }
}
