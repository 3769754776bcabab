//! Shared by every fuzz target (`crates/*/tests/fuzz*.rs`, included with `#[path]`): runs a
//! property for a fixed number of random cases (`cargo test`), or, with `VOXPIPE_FUZZ_SECS=N`
//! (`scripts/fuzz.sh`), for N seconds of fresh random cases, then prints how many ran. A
//! failing case is shrunk and reported by proptest; it then becomes a named regression test.

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Seconds each target runs for (`scripts/fuzz.sh` sets it); unset: `cases` cases.
pub const SECS_ENV: &str = "VOXPIPE_FUZZ_SECS";

/// Runs `test` on values of `strategy`: `cases` of them (or `PROPTEST_CASES`), or for
/// `$VOXPIPE_FUZZ_SECS` seconds. Panics with the shrunk failing value on a failure (a panic in
/// `test` included).
pub fn fuzz<S>(target: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
{
    let secs = std::env::var(SECS_ENV).ok().and_then(|s| s.trim().parse::<u64>().ok()).filter(|&s| s > 0);
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(cases);
    let started = Instant::now();
    let deadline = secs.map(|s| started + Duration::from_secs(s));
    let ran = Cell::new(0u64);
    loop {
        let config = Config {
            cases: if deadline.is_some() { 2000 } else { cases },
            failure_persistence: None,
            ..Config::default()
        };
        // A fresh random seed per runner.
        let mut runner = TestRunner::new(config);
        let result = runner.run(&strategy, |value| {
            ran.set(ran.get() + 1);
            test(value)
        });
        if let Err(e) = result {
            panic!("fuzz target {target}: failed after {} cases: {e}", ran.get());
        }
        match deadline {
            Some(d) if Instant::now() < d => continue,
            _ => break,
        }
    }
    eprintln!(
        "fuzz target {target}: {} cases in {:.1} s, 0 failures",
        ran.get(),
        started.elapsed().as_secs_f64()
    );
}

/// Any JSON scalar, favouring the ones parsers trip on: huge and negative numbers, floats where
/// integers belong, empty and long strings.
pub fn json_scalar() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop_oneof![Just(u64::MAX), Just(u64::MAX - 1), Just(u32::MAX as u64), Just(u32::MAX as u64 + 1)]
            .prop_map(|n| json!(n)),
        Just(json!(-1)),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(|f| json!(f)),
        Just(json!(1e308)),
        ".{0,12}".prop_map(Value::String),
        Just(Value::String(String::new())),
        Just(json!([])),
        Just(json!({})),
    ]
}

/// `valid` most of the time, otherwise a value of another type, or the key left out (`None`).
pub fn field<T: std::fmt::Debug + Clone + 'static>(
    valid: impl Strategy<Value = T> + 'static,
    wrong: impl Fn(serde_json::Value) -> T + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![
        6 => valid.prop_map(Some),
        1 => json_scalar().prop_map(move |v| Some(wrong(v))),
        1 => Just(None),
    ]
}

/// A JSON object of the present fields.
pub fn object(fields: Vec<(&str, Option<serde_json::Value>)>) -> serde_json::Value {
    serde_json::Value::Object(fields.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect())
}

/// How a serialized message is damaged before it is decoded.
#[derive(Debug, Clone)]
pub enum Damage {
    /// Sent as is.
    None,
    /// Cut at this fraction of its length.
    Truncate(f64),
    /// This many bytes at this fraction replaced by garbage.
    Splice(f64, String),
}

/// Mostly undamaged; sometimes truncated or with garbage spliced in.
pub fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        6 => Just(Damage::None),
        1 => (0.0..1.0f64).prop_map(Damage::Truncate),
        1 => (0.0..1.0f64, ".{0,4}").prop_map(|(at, s)| Damage::Splice(at, s)),
    ]
}

/// `text` with `damage` applied (cut on a character boundary).
pub fn apply(text: &str, damage: &Damage) -> String {
    let at = |f: f64| {
        let mut i = (text.len() as f64 * f) as usize;
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match damage {
        Damage::None => text.to_string(),
        Damage::Truncate(f) => text[..at(*f)].to_string(),
        Damage::Splice(f, garbage) => {
            let i = at(*f);
            format!("{}{garbage}{}", &text[..i], &text[i..])
        }
    }
}

/// Raw input: arbitrary text, or arbitrary bytes read lossily.
pub fn raw_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(any::<u8>(), 0..256).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "[{}\\[\\]\":,0-9a-z_.\\- ]{0,64}",
        deep(),
    ]
}

/// Deeply nested openings (JSON arrays and objects, TOML arrays and inline tables), which a
/// recursive parser without a depth limit overflows its stack on.
pub fn deep() -> impl Strategy<Value = String> {
    (prop_oneof![Just("["), Just("{\"a\":"), Just("a = ["), Just("a = {b = ")], 1..20_000usize).prop_map(
        |(open, n)| match open {
            "a = [" => format!("a = {}", "[".repeat(n)),
            "a = {b = " => format!("a = {}1", "{b = ".repeat(n)),
            open => open.repeat(n),
        },
    )
}
