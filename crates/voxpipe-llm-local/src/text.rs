//! Turning generated token bytes into speakable text: incremental UTF-8 decoding, stop strings
//! and the `<tool_call>` convention. Pure code, no llama.cpp.

/// Opens a tool call in the model's output.
pub const TOOL_CALL_OPEN: &str = "<tool_call>";
/// Closes a tool call.
pub const TOOL_CALL_CLOSE: &str = "</tool_call>";

/// Decodes a byte stream to UTF-8 text incrementally: a character split across two tokens is
/// held back until its last byte arrives. Invalid sequences become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends `bytes` and returns the text that is complete so far.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Valid by construction: `valid_up_to` bytes are UTF-8.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: a dangling partial character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = if self.pending.is_empty() { String::new() } else { char::REPLACEMENT_CHARACTER.into() };
        self.pending.clear();
        out
    }
}

/// What the scanner saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Keep generating.
    More,
    /// A stop string was generated: end the reply (the stop string is not spoken).
    Stop,
    /// A complete `<tool_call>…</tool_call>`: end the round; the body is returned.
    ToolCall(String),
}

/// Splits generated text into speakable text, stop strings and tool calls. Text that may be
/// the beginning of a marker is held back until it is clearly not one, so a stop string or a
/// tool call is never partly spoken.
#[derive(Debug)]
pub struct Scanner {
    stops: Vec<String>,
    tools: bool,
    pending: String,
    call: Option<String>,
}

impl Scanner {
    /// A scanner for `stops`, watching for tool calls when `tools` is true.
    pub fn new(stops: &[String], tools: bool) -> Self {
        Self { stops: stops.to_vec(), tools, pending: String::new(), call: None }
    }

    /// Feeds generated `text`; speakable text is appended to `out`.
    pub fn push(&mut self, text: &str, out: &mut String) -> Scan {
        if let Some(call) = &mut self.call {
            call.push_str(text);
            return match call.find(TOOL_CALL_CLOSE) {
                Some(end) => Scan::ToolCall(call[..end].trim().to_string()),
                None => Scan::More,
            };
        }
        self.pending.push_str(text);
        let stop = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min();
        let open = if self.tools { self.pending.find(TOOL_CALL_OPEN) } else { None };
        match (stop, open) {
            (Some(s), o) if o.is_none_or(|o| s <= o) => {
                out.push_str(&self.pending[..s]);
                self.pending.clear();
                Scan::Stop
            }
            (_, Some(o)) => {
                out.push_str(&self.pending[..o]);
                let rest = self.pending[o + TOOL_CALL_OPEN.len()..].to_string();
                self.pending.clear();
                self.call = Some(String::new());
                self.push(&rest, out)
            }
            _ => {
                let keep = self.held_back();
                let cut = self.pending.len() - keep;
                out.push_str(&self.pending[..cut]);
                self.pending.drain(..cut);
                Scan::More
            }
        }
    }

    /// Ends the reply: held-back text is released. Returns an unterminated tool call (the model
    /// stopped before `</tool_call>`), which is still worth trying.
    pub fn finish(&mut self, out: &mut String) -> Option<String> {
        out.push_str(&std::mem::take(&mut self.pending));
        self.call.take().map(|c| c.trim().to_string()).filter(|c| !c.is_empty())
    }

    /// Length in bytes of the longest suffix of `pending` that is a proper prefix of a marker.
    fn held_back(&self) -> usize {
        let tool = self.tools.then_some(TOOL_CALL_OPEN);
        let markers = self.stops.iter().map(String::as_str).chain(tool);
        let mut keep = 0;
        for m in markers {
            for (k, _) in m.char_indices().skip(1) {
                if k > keep && self.pending.ends_with(&m[..k]) {
                    keep = k;
                }
            }
        }
        keep
    }
}

/// A tool call parsed from the model's `<tool_call>` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    /// Tool name.
    pub name: String,
    /// Arguments object.
    pub arguments: serde_json::Value,
}

/// Parses `{"name": "...", "arguments": {...}}` (arguments may also be a JSON string, or
/// missing for a tool without parameters); a Markdown code fence around it is tolerated.
///
/// # Errors
/// A message for the log saying what is wrong.
pub fn parse_tool_call(body: &str) -> Result<ParsedCall, String> {
    let body = body.trim();
    let body = body.strip_prefix("```json").or_else(|| body.strip_prefix("```")).unwrap_or(body);
    let body = body.strip_suffix("```").unwrap_or(body).trim();
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("tool call is not JSON ({e}): {body}"))?;
    let name = value
        .get("name")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("tool call has no `name` string: {body}"))?
        .to_string();
    let arguments = match value.get("arguments").or_else(|| value.get("parameters")) {
        None | Some(serde_json::Value::Null) => serde_json::json!({}),
        Some(serde_json::Value::String(s)) => {
            serde_json::from_str(s).map_err(|e| format!("tool call arguments string is not JSON ({e})"))?
        }
        Some(v @ serde_json::Value::Object(_)) => v.clone(),
        Some(other) => return Err(format!("tool call arguments must be an object, got {other}")),
    };
    if !arguments.is_object() {
        return Err(format!("tool call arguments must be an object, got {arguments}"));
    }
    Ok(ParsedCall { name, arguments })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scanner: &mut Scanner, pieces: &[&str]) -> (String, Scan) {
        let mut out = String::new();
        for p in pieces {
            let scan = scanner.push(p, &mut out);
            if scan != Scan::More {
                return (out, scan);
            }
        }
        let call = scanner.finish(&mut out);
        (out, call.map_or(Scan::More, Scan::ToolCall))
    }

    #[test]
    fn a_character_split_across_tokens_is_held_until_complete() {
        let mut d = Utf8Stream::default();
        let bytes = "é😀".as_bytes();
        assert_eq!(d.push(&bytes[..1]), "");
        assert_eq!(d.push(&bytes[1..3]), "é");
        assert_eq!(d.push(&bytes[3..5]), "");
        assert_eq!(d.push(&bytes[5..]), "😀");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut d = Utf8Stream::default();
        assert_eq!(d.push(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(d.push(&"€".as_bytes()[..2]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }

    #[test]
    fn a_stop_string_split_across_tokens_is_never_spoken() {
        let mut s = Scanner::new(&["\nUser:".to_string()], false);
        let (out, scan) = run(&mut s, &["Hello", " there.\n", "Us", "er: hi"]);
        assert_eq!((out.as_str(), scan), ("Hello there.", Scan::Stop));
    }

    #[test]
    fn text_that_only_looks_like_a_marker_start_is_released() {
        let mut s = Scanner::new(&[], true);
        let mut out = String::new();
        assert_eq!(s.push("a <to", &mut out), Scan::More);
        assert_eq!(out, "a ");
        assert_eq!(s.push("ast>", &mut out), Scan::More);
        assert_eq!(out, "a <toast>");
    }

    #[test]
    fn a_tool_call_in_fake_model_output_is_extracted_and_parsed() {
        let mut s = Scanner::new(&[], true);
        let pieces = [
            "Let me check.",
            " <tool",
            "_call>{\"name\": \"get_weather\", ",
            "\"arguments\": {\"city\": \"Paris\"}}",
            "</tool_",
            "call> trailing",
        ];
        let (out, scan) = run(&mut s, &pieces);
        assert_eq!(out, "Let me check. ");
        let Scan::ToolCall(body) = scan else { panic!("no tool call: {scan:?}") };
        let call = parse_tool_call(&body).unwrap();
        assert_eq!(call.name, "get_weather");
        assert_eq!(call.arguments, serde_json::json!({"city": "Paris"}));
    }

    #[test]
    fn tool_call_markers_are_plain_text_when_tools_are_off() {
        let mut s = Scanner::new(&[], false);
        let (out, scan) = run(&mut s, &["<tool_call>{}</tool_call>"]);
        assert_eq!((out.as_str(), scan), ("<tool_call>{}</tool_call>", Scan::More));
    }

    #[test]
    fn an_unterminated_tool_call_is_returned_at_the_end() {
        let mut s = Scanner::new(&[], true);
        let (out, scan) = run(&mut s, &["<tool_call>", "{\"name\":\"end_call\"}"]);
        assert_eq!(out, "");
        assert_eq!(scan, Scan::ToolCall("{\"name\":\"end_call\"}".into()));
        let call = parse_tool_call("```json\n{\"name\":\"end_call\"}\n```").unwrap();
        assert_eq!(call.arguments, serde_json::json!({}));
    }

    #[test]
    fn malformed_tool_calls_are_rejected_with_a_reason() {
        assert!(parse_tool_call("not json").unwrap_err().contains("not JSON"));
        assert!(parse_tool_call(r#"{"arguments": {}}"#).unwrap_err().contains("name"));
        assert!(parse_tool_call(r#"{"name": "f", "arguments": [1]}"#).unwrap_err().contains("object"));
        let c = parse_tool_call(r#"{"name": "f", "arguments": "{\"x\": 1}"}"#).unwrap();
        assert_eq!(c.arguments, serde_json::json!({"x": 1}));
    }

    #[test]
    fn the_earliest_marker_wins() {
        let mut s = Scanner::new(&["STOP".to_string()], true);
        let (out, scan) = run(&mut s, &["one STOP two <tool_call>{}"]);
        assert_eq!((out.as_str(), scan), ("one ", Scan::Stop));
    }
}
