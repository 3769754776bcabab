//! Fuzz target (proptest, on stable): the pipeline config loader (TOML, layered with a
//! profile, `VOXPIPE_*` environment variables and `--set` overrides). Under `cargo test` it
//! runs a few hundred cases; `scripts/fuzz.sh` runs it for minutes.
//!
//! Property: any text and any overrides load to a config or a one-line `ConfigError` naming
//! the file, never a panic (nor a stack overflow on deep nesting).

#[path = "../../voxpipe-llm/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use fuzz_support::{apply, damage, fuzz, raw_text};
use proptest::prelude::*;
use std::path::Path;
use voxpipe_config::{LoadOptions, load_str};

/// The repository's own pipelines: the starting points mutations work from.
const SEEDS: &[&str] = &[
    include_str!("../../../pipelines/local.toml"),
    include_str!("../../../pipelines/native-fake.toml"),
    include_str!("../../../pipelines/cascade-openai.toml"),
    include_str!("../../../pipelines/cascade-elevenlabs.toml"),
    include_str!("../../../pipelines/tools-cascade-fake.toml"),
    include_str!("../../../pipelines/native-telephony.toml"),
];

/// TOML values of every type and of absurd sizes.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("9223372036854775807".to_string()),
        Just("1e400".to_string()),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "\"[a-z._ ]{0,12}\"".prop_map(|s| s),
        "[a-z]{1,8}".prop_map(|s| format!("\"{s}\"")),
    ]
}

/// A seed with the value of some `key = value` lines replaced.
fn mutated_seed() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(SEEDS),
        proptest::collection::vec((any::<proptest::sample::Index>(), toml_value()), 0..4),
        damage(),
    )
        .prop_map(|(seed, edits, d)| {
            let mut lines: Vec<String> = seed.lines().map(str::to_string).collect();
            let assignments: Vec<usize> =
                lines.iter().enumerate().filter(|(_, l)| l.contains(" = ")).map(|(i, _)| i).collect();
            if !assignments.is_empty() {
                for (at, value) in edits {
                    let i = assignments[at.index(assignments.len())];
                    let key = lines[i].split(" = ").next().unwrap_or_default().to_string();
                    lines[i] = format!("{key} = {value}");
                }
            }
            apply(&lines.join("\n"), &d)
        })
}

/// `--set` overrides: real and made-up keys, list indices in and far out of range.
fn set() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("stages[0].voice".to_string()),
        Just("stages[1].model".to_string()),
        Just("stages[99999999999].x".to_string()),
        Just("stages.0.http.max_retries".to_string()),
        Just("input.path".to_string()),
        Just("name".to_string()),
        Just("".to_string()),
        Just("[[[".to_string()),
        "[a-z\\[\\]0-9._]{0,16}",
    ];
    (key, toml_value(), any::<bool>()).prop_map(|(k, v, eq)| if eq { format!("{k}={v}") } else { k })
}

fn env_var() -> impl Strategy<Value = (String, String)> {
    let key = prop_oneof![
        Just("VOXPIPE_STAGES__0__VOICE".to_string()),
        Just("VOXPIPE_NAME".to_string()),
        Just("VOXPIPE_".to_string()),
        Just("VOXPIPE_STAGES____".to_string()),
        Just("VOXPIPE_TURN__MODE".to_string()),
        "VOXPIPE_[A-Z_0-9]{0,16}",
    ];
    (key, toml_value())
}

#[test]
fn fuzz_config_loader() {
    let text = prop_oneof![6 => mutated_seed(), 1 => raw_text()];
    let opts = (
        prop_oneof![3 => Just(None), 1 => "[a-z]{0,6}".prop_map(Some)],
        proptest::collection::vec(set(), 0..3),
        proptest::collection::vec(env_var(), 0..3),
    )
        .prop_map(|(profile, sets, env)| LoadOptions { profile, sets, env });
    fuzz("config_loader", 384, (text, opts), |(text, opts)| {
        if let Err(e) = load_str(Path::new("fuzz.toml"), &text, &opts) {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("fuzz.toml"), "{msg}");
            prop_assert!(!msg.contains('\n'), "one line: {msg}");
        }
        Ok(())
    });
}
