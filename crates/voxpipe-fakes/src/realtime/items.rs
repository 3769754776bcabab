//! Handlers for `conversation.item.create`, `.delete`, `.retrieve` and `.truncate`.

use serde_json::{Map, Value, json};

use super::conn::Conn;
use super::conversation::{Item, ItemKind, Part};
use super::session::Dialect;
use super::validate::{ParamError, enum_at, object_at, required_str, required_u64, str_at};

impl Conn {
    pub(crate) async fn on_item_create(&mut self, ev: &Map<String, Value>) -> Result<(), ParamError> {
        let previous = match ev.get("previous_item_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p == "root" || self.conv.contains(p) => Some(p.clone()),
            Some(Value::String(p)) => {
                return Err(ParamError::new(
                    "invalid_value",
                    format!("Previous item with id '{p}' not found in the conversation."),
                    "previous_item_id",
                ));
            }
            Some(other) => return Err(ParamError::invalid_type("previous_item_id", "a string", other)),
        };
        let item = self.parse_item(&ev["item"])?;
        self.add_item(item, previous.as_deref()).await;
        Ok(())
    }

    fn parse_item(&mut self, v: &Value) -> Result<Item, ParamError> {
        let keys =
            &["id", "type", "object", "status", "role", "content", "call_id", "name", "arguments", "output"];
        let o = object_at(v, "item", keys)?;
        let id = match o.get("id") {
            Some(id) => {
                str_at(id, "item.id")?;
                let id = id.as_str().unwrap_or_default().to_string();
                if self.conv.contains(&id) {
                    return Err(ParamError::new(
                        "invalid_value",
                        format!("Item with id '{id}' already exists."),
                        "item.id",
                    ));
                }
                id
            }
            None => self.new_id("item"),
        };
        let ty = o.get("type").ok_or_else(|| ParamError::missing("item.type"))?;
        enum_at(ty, "item.type", &["message", "function_call", "function_call_output"])?;
        let field = |k: &str| required_str(o, k).map_err(|e| prefix(e, "item."));
        let kind = match ty.as_str().unwrap_or_default() {
            "message" => self.parse_message(o)?,
            "function_call" => ItemKind::FunctionCall {
                call_id: field("call_id")?.to_string(),
                name: field("name")?.to_string(),
                arguments: field("arguments")?.to_string(),
            },
            _ => {
                let call_id = field("call_id")?.to_string();
                if !self.conv.has_call(&call_id) {
                    return Err(ParamError::new(
                        "invalid_value",
                        format!("Tool call with call_id '{call_id}' not found in conversation."),
                        "item.call_id",
                    ));
                }
                ItemKind::FunctionCallOutput { call_id, output: field("output")?.to_string() }
            }
        };
        Ok(Item { id, status: "completed", kind })
    }

    fn parse_message(&self, o: &Map<String, Value>) -> Result<ItemKind, ParamError> {
        let role = o.get("role").ok_or_else(|| ParamError::missing("item.role"))?;
        enum_at(role, "item.role", &["user", "system", "assistant"])?;
        let role = role.as_str().unwrap_or_default().to_string();
        let content = o.get("content").ok_or_else(|| ParamError::missing("item.content"))?;
        let arr = content
            .as_array()
            .ok_or_else(|| ParamError::invalid_type("item.content", "an array", content))?;
        let assistant_text = if self.dialect == Dialect::Ga { "output_text" } else { "text" };
        let allowed: &[&str] = match role.as_str() {
            "user" => &["input_text", "input_audio", "input_image"],
            "system" => &["input_text"],
            _ => &[assistant_text],
        };
        let mut parts = Vec::with_capacity(arr.len());
        for (i, c) in arr.iter().enumerate() {
            let p = format!("item.content[{i}]");
            let c = object_at(c, &p, &["type", "text", "audio", "transcript", "image_url", "detail"])?;
            let ty = c.get("type").ok_or_else(|| ParamError::missing(&format!("{p}.type")))?;
            enum_at(ty, &format!("{p}.type"), allowed)?;
            let text =
                |k: &str| required_str(c, k).map(str::to_string).map_err(|e| prefix(e, &format!("{p}.")));
            parts.push(match ty.as_str().unwrap_or_default() {
                "input_text" => Part::InputText(text("text")?),
                "input_audio" => {
                    let bytes = text("audio")?.len() / 4 * 3;
                    let ms = (bytes
                        / (self.eff.input_format.sample_bytes() * self.eff.input_format.rate() as usize
                            / 1000)) as u64;
                    Part::InputAudio {
                        transcript: c.get("transcript").and_then(Value::as_str).map(str::to_string),
                        audio_ms: ms,
                    }
                }
                "input_image" => Part::InputText(String::new()),
                _ => Part::Text(text("text")?),
            });
        }
        Ok(ItemKind::Message { role, parts })
    }

    pub(crate) async fn on_item_delete(&mut self, ev: &Map<String, Value>) -> Result<(), ParamError> {
        let id = required_str(ev, "item_id")?.to_string();
        if !self.conv.remove(&id) {
            return Err(not_found(&id));
        }
        self.send(json!({"type": "conversation.item.deleted", "item_id": id})).await;
        Ok(())
    }

    pub(crate) async fn on_item_retrieve(&mut self, ev: &Map<String, Value>) -> Result<(), ParamError> {
        let id = required_str(ev, "item_id")?;
        let item = self.conv.get(id).ok_or_else(|| not_found(id))?.json(self.dialect);
        self.send(json!({"type": "conversation.item.retrieved", "item": item})).await;
        Ok(())
    }

    pub(crate) async fn on_truncate(&mut self, ev: &Map<String, Value>) -> Result<(), ParamError> {
        let id = required_str(ev, "item_id")?.to_string();
        let content_index = required_u64(ev, "content_index")?;
        let audio_end_ms = required_u64(ev, "audio_end_ms")?;
        let item = self.conv.get_mut(&id).ok_or_else(|| not_found(&id))?;
        if item.role() != Some("assistant") {
            return Err(ParamError::new(
                "invalid_value",
                format!("Only assistant messages can be truncated; item '{id}' is not an assistant message."),
                "item_id",
            ));
        }
        let ItemKind::Message { parts, .. } = &mut item.kind else {
            unreachable!("role() implies a message")
        };
        let Some(Part::Audio { transcript, audio_ms }) = parts.get_mut(content_index as usize) else {
            return Err(ParamError::new(
                "invalid_value",
                format!("Content index {content_index} of item '{id}' is not an audio content part."),
                "content_index",
            ));
        };
        if audio_end_ms > *audio_ms {
            return Err(ParamError::new(
                "invalid_value",
                format!("Audio content of {}ms is already shorter than {audio_end_ms}ms", *audio_ms),
                "audio_end_ms",
            ));
        }
        *audio_ms = audio_end_ms;
        transcript.clear();
        let event = json!({"type": "conversation.item.truncated", "item_id": id,
            "content_index": content_index, "audio_end_ms": audio_end_ms});
        self.send(event).await;
        Ok(())
    }
}

fn not_found(id: &str) -> ParamError {
    ParamError::new("item_not_found", format!("Item with item_id not found: {id}"), "item_id")
}

fn prefix(mut e: ParamError, p: &str) -> ParamError {
    if let Some(param) = &e.param {
        let full = format!("{p}{param}");
        e.message = e.message.replace(&format!("'{param}'"), &format!("'{full}'"));
        e.param = Some(full);
    }
    e
}
