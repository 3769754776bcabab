//! Strict field checks producing OpenAI-shaped `invalid_request_error` details.

use serde_json::{Map, Value};

/// One rejected parameter: the `code`, `message` and `param` of an `error` event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParamError {
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
}

impl ParamError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>, param: &str) -> Self {
        Self { code, message: message.into(), param: Some(param.to_string()) }
    }

    /// An error with no `param`.
    pub(crate) fn general(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), param: None }
    }

    pub(crate) fn unknown(param: &str) -> Self {
        Self::new("unknown_parameter", format!("Unknown parameter: '{param}'."), param)
    }

    pub(crate) fn missing(param: &str) -> Self {
        Self::new("missing_required_parameter", format!("Missing required parameter: '{param}'."), param)
    }

    pub(crate) fn invalid_type(param: &str, expected: &str, got: &Value) -> Self {
        Self::new(
            "invalid_type",
            format!("Invalid type for '{param}': expected {expected}, but got {} instead.", kind(got)),
            param,
        )
    }

    pub(crate) fn invalid_value(param: &str, got: &Value, allowed: &[&str]) -> Self {
        let list: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
        Self::new(
            "invalid_value",
            format!("Invalid value: {}. Supported values are: {}.", short(got), list.join(", ")),
            param,
        )
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    };
    if s.len() > 80 { format!("{}…", &s[..s.floor_char_boundary(80)]) } else { s }
}

/// `v` must be an object whose keys are all in `allowed`.
pub(crate) fn object_at<'a>(
    v: &'a Value,
    p: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, ParamError> {
    let o = v.as_object().ok_or_else(|| ParamError::invalid_type(p, "an object", v))?;
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ParamError::unknown(&format!("{p}.{k}")));
    }
    Ok(o)
}

pub(crate) fn str_at(v: &Value, p: &str) -> Result<(), ParamError> {
    if v.is_string() { Ok(()) } else { Err(ParamError::invalid_type(p, "a string", v)) }
}

pub(crate) fn bool_at(v: &Value, p: &str) -> Result<(), ParamError> {
    if v.is_boolean() { Ok(()) } else { Err(ParamError::invalid_type(p, "a boolean", v)) }
}

pub(crate) fn enum_at(v: &Value, p: &str, allowed: &[&str]) -> Result<(), ParamError> {
    match v.as_str() {
        Some(s) if allowed.contains(&s) => Ok(()),
        Some(_) => Err(ParamError::invalid_value(p, v, allowed)),
        None => Err(ParamError::invalid_type(p, "a string", v)),
    }
}

pub(crate) fn num_at(v: &Value, p: &str, min: f64, max: f64) -> Result<(), ParamError> {
    let n = v.as_f64().ok_or_else(|| ParamError::invalid_type(p, "a number", v))?;
    if n < min || n > max {
        return Err(ParamError::new(
            "decimal_out_of_range",
            format!("Invalid '{p}': expected a value between {min} and {max}, but got {n} instead."),
            p,
        ));
    }
    Ok(())
}

pub(crate) fn int_at(v: &Value, p: &str, min: i64, max: i64) -> Result<(), ParamError> {
    let n = v.as_i64().ok_or_else(|| ParamError::invalid_type(p, "an integer", v))?;
    if n < min || n > max {
        return Err(ParamError::new(
            "integer_out_of_range",
            format!("Invalid '{p}': expected a value between {min} and {max}, but got {n} instead."),
            p,
        ));
    }
    Ok(())
}

/// The string at `key` of a required field, or the matching error.
pub(crate) fn required_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<&'a str, ParamError> {
    let v = o.get(key).ok_or_else(|| ParamError::missing(key))?;
    v.as_str().ok_or_else(|| ParamError::invalid_type(key, "a string", v))
}

/// The non-negative integer at `key` of a required field, or the matching error.
pub(crate) fn required_u64(o: &Map<String, Value>, key: &str) -> Result<u64, ParamError> {
    let v = o.get(key).ok_or_else(|| ParamError::missing(key))?;
    v.as_u64().ok_or_else(|| ParamError::invalid_type(key, "a non-negative integer", v))
}
