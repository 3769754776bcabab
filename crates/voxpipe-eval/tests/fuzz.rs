//! Fuzz target (proptest, on stable): the scenario loader (`scenario.toml`), and what a loaded
//! scenario feeds: the call timeline (`render::place`) and the noise generator. Under `cargo
//! test` it runs a few hundred cases; `scripts/fuzz.sh` runs it for minutes.
//!
//! Property: any file loads to a scenario or an error naming it, never a panic; a scenario the
//! loader accepts lays out and takes its noise without panicking, on a bounded timeline.

#[path = "../../voxpipe-llm/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use fuzz_support::{apply, damage, fuzz, raw_text};
use proptest::prelude::*;
use voxpipe_eval::render::{add_noise, place};
use voxpipe_eval::scenario::{SCENARIO_FILE, load_scenario};

/// Numbers as TOML: ordinary, zero, huge, negative, not numbers.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0..10_000u64).prop_map(|n| n.to_string()),
        1 => Just("0".to_string()),
        1 => Just(i64::MAX.to_string()),
        1 => Just((u64::MAX / 16_000).to_string()),
        1 => Just("-1".to_string()),
        1 => Just("1.5".to_string()),
        1 => Just("\"500\"".to_string()),
    ]
}

fn dbfs() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (-90.0..0.0f32).prop_map(|d| format!("{d:?}")),
        1 => Just("inf".to_string()),
        1 => Just("-inf".to_string()),
        1 => Just("nan".to_string()),
        1 => Just("400.0".to_string()),
        1 => Just("0".to_string()),
    ]
}

/// One `[[turns]]` table with some of its keys.
fn turn() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("say = \"hello there\"".to_string()),
        Just("wav = \"a.wav\"".to_string()),
        number().prop_map(|n| format!("gap_ms = {n}")),
        number().prop_map(|n| format!("barge_in_ms = {n}")),
        number().prop_map(|n| format!("from_ms = {n}")),
        number().prop_map(|n| format!("to_ms = {n}")),
        number().prop_map(|n| format!("channel = {n}")),
        Just("transcript = \"hello there\"".to_string()),
        Just("reply_must_contain = [\"order\"]".to_string()),
        Just("tool = { name = \"f\", arguments = { a = 1 }, match = \"exact\" }".to_string()),
        Just("tool = { name = \"f\", match = \"fuzzy\" }".to_string()),
        Just("unknown_key = 1".to_string()),
    ];
    (prop_oneof![Just("say = \"hi\"".to_string()), Just(String::new())], proptest::collection::vec(key, 0..4))
        .prop_map(|(first, keys)| format!("[[turns]]\n{first}\n{}\n", keys.join("\n")))
}

fn scenario() -> impl Strategy<Value = String> {
    let top = prop_oneof![
        number().prop_map(|n| format!("expected_reply_delay_ms = {n}")),
        number().prop_map(|n| format!("tail_silence_ms = {n}")),
        dbfs().prop_map(|d| format!("noise_dbfs = {d}")),
        Just("name = \"x\"".to_string()),
        Just("[fake]\nllm = []".to_string()),
    ];
    (proptest::collection::vec(top, 0..4), proptest::collection::vec(turn(), 0..5), damage()).prop_map(
        |(top, turns, d)| {
            // Top-level keys first: after a table header they would belong to the table.
            let (tables, keys): (Vec<String>, Vec<String>) =
                top.into_iter().partition(|t| t.starts_with('['));
            apply(&format!("{}\n{}\n{}", keys.join("\n"), turns.concat(), tables.join("\n")), &d)
        },
    )
}

#[test]
fn fuzz_scenario_loader() {
    let dir = tempfile::tempdir().unwrap();
    let text = prop_oneof![6 => scenario(), 1 => raw_text()];
    fuzz("scenario_loader", 384, text, |text| {
        std::fs::write(dir.path().join(SCENARIO_FILE), &text).unwrap();
        match load_scenario(dir.path()) {
            Ok(loaded) => {
                // 100 ms clips stand in for the rendered turns.
                let clips = vec![vec![100i16; 1600]; loaded.scenario.turns.len()];
                let (mut samples, spans) = place(&loaded, &clips);
                prop_assert_eq!(spans.len(), clips.len());
                if let Some(dbfs) = loaded.scenario.noise_dbfs {
                    let n = samples.len().min(1000);
                    add_noise(&mut samples[..n], dbfs, 7);
                }
            }
            Err(e) => prop_assert!(e.to_string().contains(SCENARIO_FILE), "{e}"),
        }
        Ok(())
    });
}

// Regressions: each a case the target above found, named after the finding.

fn load(text: &str) -> Result<voxpipe_eval::scenario::LoadedScenario, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(SCENARIO_FILE), text).unwrap();
    load_scenario(dir.path()).map_err(|e| e.to_string())
}

/// `fuzz_scenario_loader`: `noise_dbfs = inf` (or any level that overflows to an infinite
/// amplitude, such as 400) loaded, then panicked the noise generator's random range.
#[test]
fn scenario_noise_dbfs_inf_is_rejected() {
    for level in ["inf", "nan", "400.0"] {
        let err = load(&format!("noise_dbfs = {level}\n[[turns]]\nsay = \"hi\"\n")).unwrap_err();
        assert!(err.contains("noise_dbfs"), "{err}");
    }
    let ok = load("noise_dbfs = -35.0\n[[turns]]\nsay = \"hi\"\n").unwrap();
    let mut samples = vec![0i16; 100];
    add_noise(&mut samples, ok.scenario.noise_dbfs.unwrap(), 1);
    assert!(samples.iter().any(|&s| s != 0));
}

/// `fuzz_scenario_loader`: a `gap_ms` (or barge-in offset, reply delay, tail) near `u64::MAX`
/// loaded, then overflowed the timeline arithmetic in `render::place`, and one merely huge
/// asked it for petabytes of silence.
#[test]
fn scenario_timeline_past_an_hour_is_rejected() {
    for key in ["gap_ms = 18446744073709551615", "gap_ms = 3600001", "barge_in_ms = 9223372036854775807"] {
        let text = format!("[[turns]]\nsay = \"a\"\n[[turns]]\nsay = \"b\"\n{key}\n");
        let err = load(&text).unwrap_err();
        assert!(err.contains("one hour"), "{key}: {err}");
    }
    let err = load("tail_silence_ms = 3000000\nexpected_reply_delay_ms = 1000000\n[[turns]]\nsay = \"a\"\n[[turns]]\nsay = \"b\"\nbarge_in_ms = 10\n").unwrap_err();
    assert!(err.contains("one hour"), "{err}");
}

/// Found reading `render::render` beside the timeline finding: `from_ms`/`to_ms` near
/// `u64::MAX` overflowed the conversion to a sample index when the turn's WAV was cut.
#[test]
fn scenario_from_ms_past_a_day_is_rejected() {
    let err = load("[[turns]]\nwav = \"a.wav\"\nfrom_ms = 18446744073709551615\n").unwrap_err();
    assert!(err.contains("turns[0]") && err.contains("24 hours"), "{err}");
    load("[[turns]]\nwav = \"a.wav\"\nfrom_ms = 1000\nto_ms = 86400000\n").unwrap();
}
