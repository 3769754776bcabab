//! Scoring one turn against its expectations: transcript WER, tool-call correctness and reply
//! phrase checks. Pure functions, unit-tested on hand-made cases.

use crate::scenario::{ArgMatch, ExpectedTool};
use serde::Serialize;
use serde_json::Value;

/// Word errors of a transcript against its reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WerScore {
    /// Substitutions + deletions + insertions.
    pub errors: usize,
    /// Words in the reference.
    pub words: usize,
    /// `errors / words` (1.0 for any hypothesis against an empty reference, 0.0 when both
    /// are empty).
    pub wer: f64,
}

/// WER of `hypothesis` against `reference`, after [`crate::wer::normalize_words`] (lower case,
/// punctuation dropped).
pub fn score_wer(reference: &str, hypothesis: &str) -> WerScore {
    let (errors, words) = crate::wer::errors_and_words(reference, hypothesis);
    WerScore { errors, words, wer: crate::wer::wer(reference, hypothesis) }
}

/// How the tool calls of a turn compare with the expected one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "detail")]
pub enum ToolVerdict {
    /// The expected tool was called with matching arguments.
    Correct,
    /// No tool was called.
    NotCalled,
    /// Only other tools were called (their names).
    WrongName(Vec<String>),
    /// The expected tool was called, but no call's arguments matched (the first call's raw
    /// arguments).
    WrongArguments(String),
}

impl ToolVerdict {
    /// True for [`ToolVerdict::Correct`].
    pub fn is_correct(&self) -> bool {
        matches!(self, ToolVerdict::Correct)
    }
}

/// Checks `calls` (`(name, raw JSON arguments)`) against `expected`: correct when any call has
/// the expected name and matching arguments.
pub fn score_tool(expected: &ExpectedTool, calls: &[(String, String)]) -> ToolVerdict {
    if calls.is_empty() {
        return ToolVerdict::NotCalled;
    }
    let named: Vec<&(String, String)> = calls.iter().filter(|(n, _)| *n == expected.name).collect();
    if named.is_empty() {
        return ToolVerdict::WrongName(calls.iter().map(|(n, _)| n.clone()).collect());
    }
    let matches = |raw: &str| match serde_json::from_str::<Value>(raw) {
        Ok(actual) => match expected.match_mode {
            ArgMatch::Exact => actual == expected.arguments,
            ArgMatch::Subset => json_subset(&expected.arguments, &actual),
        },
        Err(_) => false, // malformed arguments never match
    };
    if named.iter().any(|(_, raw)| matches(raw)) {
        ToolVerdict::Correct
    } else {
        ToolVerdict::WrongArguments(named[0].1.clone())
    }
}

/// True when `expected` is contained in `actual`: objects key by key (extra keys in `actual`
/// allowed), arrays element by element with equal length, scalars equal.
pub fn json_subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            e.iter().all(|(k, ev)| a.get(k).is_some_and(|av| json_subset(ev, av)))
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(x, y)| json_subset(x, y))
        }
        _ => expected == actual,
    }
}

/// Result of the reply phrase checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplyCheck {
    /// Required phrases that were missing.
    pub missing: Vec<String>,
    /// Forbidden phrases that were present.
    pub forbidden: Vec<String>,
}

impl ReplyCheck {
    /// True when nothing is missing and nothing forbidden was said.
    pub fn passed(&self) -> bool {
        self.missing.is_empty() && self.forbidden.is_empty()
    }
}

/// Case-insensitive substring checks of `reply` (whitespace runs collapsed on both sides).
pub fn check_reply(reply: &str, must: &[String], must_not: &[String]) -> ReplyCheck {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    let reply = norm(reply);
    ReplyCheck {
        missing: must.iter().filter(|p| !reply.contains(&norm(p))).cloned().collect(),
        forbidden: must_not.iter().filter(|p| reply.contains(&norm(p))).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect(name: &str, arguments: Value, match_mode: ArgMatch) -> ExpectedTool {
        ExpectedTool { name: name.into(), arguments, match_mode }
    }
    fn call(name: &str, args: &str) -> (String, String) {
        (name.to_string(), args.to_string())
    }

    #[test]
    fn wer_counts_substitutions_deletions_and_insertions_after_normalisation() {
        assert_eq!(score_wer("Where is my order?", "where is my order").errors, 0);
        let s = score_wer("where is my order", "where is the order");
        assert_eq!((s.errors, s.words), (1, 4));
        assert!((s.wer - 0.25).abs() < 1e-9);
        assert_eq!(score_wer("book it for tomorrow", "book it").errors, 2, "two deletions");
        assert_eq!(score_wer("yes", "yes yes please").errors, 2, "two insertions");
        assert_eq!(score_wer("", "").wer, 0.0);
        assert_eq!(score_wer("", "noise").wer, 1.0);
    }

    #[test]
    fn exact_tool_match_needs_equal_arguments() {
        let e = expect("get_order_status", json!({"order_id": "A-1234"}), ArgMatch::Exact);
        assert_eq!(
            score_tool(&e, &[call("get_order_status", r#"{"order_id":"A-1234"}"#)]),
            ToolVerdict::Correct
        );
        let extra = r#"{"order_id":"A-1234","verbose":true}"#;
        assert_eq!(
            score_tool(&e, &[call("get_order_status", extra)]),
            ToolVerdict::WrongArguments(extra.into()),
            "an extra key breaks an exact match"
        );
    }

    #[test]
    fn subset_tool_match_allows_extra_keys_but_not_different_values() {
        let e = expect("book", json!({"day": "tomorrow", "slot": {"part": "morning"}}), ArgMatch::Subset);
        let ok = r#"{"day":"tomorrow","slot":{"part":"morning","hour":9},"name":"Ann"}"#;
        assert!(score_tool(&e, &[call("book", ok)]).is_correct());
        let wrong = r#"{"day":"tomorrow","slot":{"part":"evening"}}"#;
        assert_eq!(score_tool(&e, &[call("book", wrong)]), ToolVerdict::WrongArguments(wrong.into()));
        assert!(!score_tool(&e, &[call("book", "{not json")]).is_correct());
    }

    #[test]
    fn a_wrong_tool_name_or_no_call_is_reported_as_such() {
        let e = expect("transfer_to_human", json!({}), ArgMatch::Subset);
        assert_eq!(
            score_tool(&e, &[call("get_order_status", "{}")]),
            ToolVerdict::WrongName(vec!["get_order_status".into()])
        );
        assert_eq!(score_tool(&e, &[]), ToolVerdict::NotCalled);
        assert!(
            score_tool(&e, &[call("get_order_status", "{}"), call("transfer_to_human", r#"{"x":1}"#)])
                .is_correct()
        );
    }

    #[test]
    fn reply_checks_are_case_insensitive_and_list_what_failed() {
        let must = vec!["Shipped".to_string(), "tomorrow".to_string()];
        let must_not = vec!["SORRY".to_string()];
        assert!(check_reply("Your order has shipped and arrives  Tomorrow.", &must, &must_not).passed());
        let r = check_reply("Sorry, it has shipped.", &must, &must_not);
        assert_eq!(r.missing, ["tomorrow"]);
        assert_eq!(r.forbidden, ["SORRY"]);
        assert!(!r.passed());
    }
}
