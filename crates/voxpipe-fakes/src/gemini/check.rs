//! Strict validation of a `GenerateContentRequest` as the service reads it: proto3 JSON
//! (`generative_service.proto`, `content.proto`), where a name may be lowerCamel or
//! snake_case and an unknown name is an error. Messages follow Google's wording where it is
//! known.

use super::invalid;
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Map, Value};

type Check = Result<(), Box<Response>>;

const REQUEST: &[&str] = &[
    "model",
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "safetySettings",
    "generationConfig",
    "cachedContent",
];
const CONTENT: &[&str] = &["role", "parts"];
/// The `data` oneof of a `Part`: exactly one per part.
const DATA: &[&str] = &[
    "text",
    "inlineData",
    "functionCall",
    "functionResponse",
    "fileData",
    "executableCode",
    "codeExecutionResult",
];
const PART_META: &[&str] = &["thought", "thoughtSignature", "videoMetadata", "partMetadata"];
const FUNCTION_CALL: &[&str] = &["id", "name", "args"];
const FUNCTION_RESPONSE: &[&str] = &["id", "name", "response", "parts", "willContinue", "scheduling"];
const TOOL: &[&str] = &[
    "functionDeclarations",
    "googleSearchRetrieval",
    "codeExecution",
    "googleSearch",
    "computerUse",
    "urlContext",
    "fileSearch",
    "googleMaps",
];
const DECLARATION: &[&str] = &[
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
    "behavior",
];
const GENERATION: &[&str] = &[
    "candidateCount",
    "stopSequences",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "responseModalities",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
];
const SCHEMA_TYPES: &[&str] =
    &["TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"];

/// `snake_case` → `lowerCamel` (the names proto3 JSON also accepts).
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut up = false;
    for c in name.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The object at `at` with its names in lowerCamel, refusing names `known` lacks.
fn object(v: &Value, at: &str, known: &[&str]) -> Result<Map<String, Value>, Box<Response>> {
    let Some(obj) = v.as_object() else {
        return Err(invalid(format!("Invalid value at '{at}': expected an object")));
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let name = camel(k);
        if !known.contains(&name.as_str()) {
            return Err(invalid(format!(
                "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
            )));
        }
        out.insert(name, v.clone());
    }
    Ok(out)
}

fn list<'a>(v: Option<&'a Value>, at: &str) -> Result<&'a [Value], Box<Response>> {
    match v {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(invalid(format!("Invalid value at '{at}': expected a list"))),
    }
}

/// One content's role and its parts in lowerCamel.
struct Turn {
    role: String,
    parts: Vec<Map<String, Value>>,
}

impl Turn {
    fn calls(&self) -> impl Iterator<Item = (usize, Map<String, Value>)> + '_ {
        self.parts.iter().enumerate().filter_map(|(j, p)| {
            let fc = p.get("functionCall")?.as_object()?;
            Some((j, fc.iter().map(|(k, v)| (camel(k), v.clone())).collect()))
        })
    }
    fn responses(&self) -> Vec<Map<String, Value>> {
        self.parts
            .iter()
            .filter_map(|p| p.get("functionResponse")?.as_object())
            .map(|r| r.iter().map(|(k, v)| (camel(k), v.clone())).collect())
            .collect()
    }
    fn has_text(&self) -> bool {
        self.parts.iter().any(|p| p.contains_key("text"))
    }
}

fn content(v: &Value, at: &str, system: bool) -> Result<Turn, Box<Response>> {
    let c = object(v, at, CONTENT)?;
    let role = match c.get("role") {
        None if system => String::new(),
        Some(Value::String(r)) if system || r == "user" || r == "model" => r.clone(),
        _ => return Err(invalid("Please use a valid role: user, model.")),
    };
    let raw = list(c.get("parts"), &format!("{at}.parts"))?;
    if raw.is_empty() {
        return Err(invalid(format!(
            "* GenerateContentRequest.{at}.parts: contents.parts must not be empty.\n"
        )));
    }
    let mut parts = Vec::with_capacity(raw.len());
    for (j, p) in raw.iter().enumerate() {
        let at = format!("{at}.parts[{j}]");
        let known: Vec<&str> = DATA.iter().chain(PART_META).copied().collect();
        let p = object(p, &at, &known)?;
        let data: Vec<&str> = DATA.iter().copied().filter(|d| p.contains_key(*d)).collect();
        if data.len() != 1 {
            return Err(invalid(format!(
                "* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field"
            )));
        }
        match data[0] {
            "text" if !p["text"].is_string() => {
                return Err(invalid(format!("Invalid value at '{at}.text': expected a string")));
            }
            "text" if p["text"].as_str().is_some_and(str::is_empty) && !system => {
                return Err(invalid(
                    "Unable to submit request because it has an empty text parameter. Add a value to the parameter and try again.",
                ));
            }
            "functionCall" => {
                let fc = object(&p["functionCall"], &format!("{at}.function_call"), FUNCTION_CALL)?;
                if fc.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                    return Err(invalid(format!(
                        "* GenerateContentRequest.{at}.function_call.name: Name cannot be empty.\n"
                    )));
                }
                if fc.get("args").is_some_and(|a| !a.is_object()) {
                    return Err(invalid(format!(
                        "Invalid value at '{at}.function_call.args' (type.googleapis.com/google.protobuf.Struct)"
                    )));
                }
            }
            "functionResponse" => {
                let fr =
                    object(&p["functionResponse"], &format!("{at}.function_response"), FUNCTION_RESPONSE)?;
                if !fr.get("response").is_some_and(Value::is_object) {
                    return Err(invalid(format!(
                        "Invalid value at '{at}.function_response.response' (type.googleapis.com/google.protobuf.Struct): a function response must be a JSON object"
                    )));
                }
            }
            _ => {}
        }
        if let Some(sig) = p.get("thoughtSignature") {
            let ok =
                sig.as_str().is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
            if !ok {
                return Err(invalid(format!(
                    "Invalid value at '{at}.thought_signature' (TYPE_BYTES), Base64 decoding failed"
                )));
            }
        }
        parts.push(p);
    }
    Ok(Turn { role, parts })
}

/// Checks the whole request.
pub(super) fn request(req: &Value) -> Check {
    let r = object(req, "", REQUEST)?;
    let raw = list(r.get("contents"), "contents")?;
    if raw.is_empty() {
        return Err(invalid("* GenerateContentRequest.contents: contents is not specified\n"));
    }
    let turns = raw
        .iter()
        .enumerate()
        .map(|(i, c)| content(c, &format!("contents[{i}]"), false))
        .collect::<Result<Vec<_>, _>>()?;
    conversation(&turns)?;
    if let Some(s) = r.get("systemInstruction") {
        let system = content(s, "system_instruction", true)?;
        if system.parts.iter().any(|p| !p.contains_key("text")) {
            return Err(invalid("system_instruction: only text parts are supported"));
        }
    }
    let declared = tools(list(r.get("tools"), "tools")?)?;
    if let Some(tc) = r.get("toolConfig") {
        tool_config(tc, &declared)?;
    }
    if let Some(g) = r.get("generationConfig") {
        generation(g)?;
    }
    Ok(())
}

/// Roles, where calls and responses may stand, pairing, and thought signatures.
fn conversation(turns: &[Turn]) -> Check {
    // The current turn starts after the last user turn with text (a function-response turn
    // continues it); Gemini 3 checks thought signatures there.
    let current = turns.iter().rposition(|t| t.role == "user" && t.has_text()).unwrap_or(0);
    for (i, t) in turns.iter().enumerate() {
        let responses = t.responses();
        if t.role == "model" && !responses.is_empty() || t.role == "user" && t.calls().next().is_some() {
            return Err(invalid(format!(
                "contents[{i}]: function calls come from the model and function responses from the user"
            )));
        }
        let prev = i.checked_sub(1).map(|p| &turns[p]);
        let calls: Vec<(usize, Map<String, Value>)> = prev.map(|p| p.calls().collect()).unwrap_or_default();
        if !responses.is_empty() && calls.is_empty() {
            return Err(invalid(
                "Please ensure that function response turn comes immediately after a function call turn.",
            ));
        }
        if !calls.is_empty() {
            if responses.len() != calls.len() {
                return Err(invalid(
                    "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.",
                ));
            }
            pair(i, &calls, &responses)?;
        }
        if t.role == "model" && t.calls().next().is_some() {
            let after_user = prev.is_some_and(|p| p.role == "user");
            if !after_user {
                return Err(invalid(
                    "Please ensure that function call turn comes immediately after a user turn or after a function response turn.",
                ));
            }
            if i > current
                && !t
                    .parts
                    .iter()
                    .any(|p| p.contains_key("functionCall") && p.contains_key("thoughtSignature"))
            {
                let (j, first) = t.calls().next().expect("checked above");
                let name = first.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                return Err(invalid(format!(
                    "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `{name}` , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.",
                    j + 1
                )));
            }
        }
    }
    if turns.last().is_some_and(|t| t.role != "user") {
        return Err(invalid(
            "Please ensure that multiturn requests ends with a user role or a function response.",
        ));
    }
    Ok(())
}

/// Each response answers one call: by `id` when the call had one, else by name; a response
/// may carry no `id` its call did not have.
fn pair(i: usize, calls: &[(usize, Map<String, Value>)], responses: &[Map<String, Value>]) -> Check {
    let text =
        |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut open: Vec<(String, String)> =
        calls.iter().map(|(_, c)| (text(c, "id"), text(c, "name"))).collect();
    for (j, r) in responses.iter().enumerate() {
        let (id, name) = (text(r, "id"), text(r, "name"));
        let found = open.iter().position(|(cid, cname)| *cname == name && (cid.is_empty() || *cid == id));
        let Some(k) = found.filter(|&k| open[k].0 == id) else {
            return Err(invalid(format!(
                "contents[{i}].parts[{j}].function_response: no function call of the previous turn has name `{name}`{}",
                if id.is_empty() { String::new() } else { format!(" and id `{id}`") }
            )));
        };
        open.remove(k);
    }
    Ok(())
}

/// The declared function names.
fn tools(tools: &[Value]) -> Result<Vec<String>, Box<Response>> {
    let mut names = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let t = object(t, &format!("tools[{i}]"), TOOL)?;
        for (j, d) in list(t.get("functionDeclarations"), &format!("tools[{i}].function_declarations"))?
            .iter()
            .enumerate()
        {
            let at = format!("tools[{i}].function_declarations[{j}]");
            let d = object(d, &at, DECLARATION)?;
            let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
            if !ok {
                return Err(invalid(format!(
                    "* GenerateContentRequest.{at}.name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:) or dashes (-), with a maximum length of 64.\n"
                )));
            }
            if d.contains_key("parameters") && d.contains_key("parametersJsonSchema") {
                return Err(invalid(format!(
                    "{at}: parameters and parameters_json_schema are mutually exclusive"
                )));
            }
            if let Some(p) = d.get("parameters") {
                let ty = p["type"].as_str().unwrap_or_default();
                if !SCHEMA_TYPES.contains(&ty) {
                    return Err(invalid(format!(
                        "Invalid value at '{at}.parameters.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), \"{ty}\""
                    )));
                }
            }
            if let Some(p) = d.get("parametersJsonSchema")
                && p["type"] != "object"
            {
                return Err(invalid(format!(
                    "{at}.parameters_json_schema: the schema must describe an object"
                )));
            }
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn tool_config(tc: &Value, declared: &[String]) -> Check {
    let tc = object(tc, "tool_config", &["functionCallingConfig", "retrievalConfig"])?;
    let Some(fc) = tc.get("functionCallingConfig") else { return Ok(()) };
    let fc = object(fc, "tool_config.function_calling_config", &["mode", "allowedFunctionNames"])?;
    let mode = fc.get("mode").and_then(Value::as_str).unwrap_or("MODE_UNSPECIFIED");
    if !matches!(mode, "MODE_UNSPECIFIED" | "AUTO" | "ANY" | "NONE" | "VALIDATED") {
        return Err(invalid(format!(
            "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{mode}\""
        )));
    }
    let allowed =
        list(fc.get("allowedFunctionNames"), "tool_config.function_calling_config.allowed_function_names")?;
    if !allowed.is_empty() && !matches!(mode, "ANY" | "VALIDATED") {
        return Err(invalid("allowed_function_names should only be set when the Mode is ANY or VALIDATED."));
    }
    if let Some(name) = allowed.iter().find(|n| !n.as_str().is_some_and(|n| declared.iter().any(|d| d == n)))
    {
        return Err(invalid(format!("allowed_function_names: {name} is not a declared function")));
    }
    Ok(())
}

fn generation(g: &Value) -> Check {
    let g = object(g, "generation_config", GENERATION)?;
    if let Some(n) = g.get("maxOutputTokens")
        && n.as_i64().is_none_or(|n| n < 1)
    {
        return Err(invalid("generation_config.max_output_tokens: must be a positive integer"));
    }
    if let Some(t) = g.get("temperature")
        && t.as_f64().is_none_or(|t| !(0.0..=2.0).contains(&t))
    {
        return Err(invalid("generation_config.temperature: must be a number from 0 to 2"));
    }
    if let Some(t) = g.get("thinkingConfig") {
        let t = object(t, "generation_config.thinking_config", &["includeThoughts", "thinkingBudget"])?;
        if t.get("thinkingBudget").is_some_and(|b| b.as_i64().is_none()) {
            return Err(invalid("generation_config.thinking_config.thinking_budget: must be an integer"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(req: Value) {
        let r = request(&req).expect_err("refused");
        assert_eq!(r.status(), 400);
    }

    #[test]
    fn snake_case_names_are_read_and_unknown_names_refused() {
        let ok = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "system_instruction": {"parts": [{"text": "Be brief."}]}, "generation_config": {"max_output_tokens": 5}});
        assert!(request(&ok).is_ok());
        assert_eq!(camel("function_calling_config"), "functionCallingConfig");
        refused(json!({"messages": [], "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}));
        refused(json!({"contents": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}]}));
    }
}
