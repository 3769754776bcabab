//! Scenario directories: `scenarios/<name>/scenario.toml` (plus any WAVs it names), a scripted
//! call with the caller's audio per turn, the timing between turns, planned barge-ins, optional
//! background noise and what each turn is expected to produce.
//!
//! ```toml
//! description = "Caller asks where order A-1234 is"
//! # Reply start estimate used to place barge-ins, ms after the end of the previous turn.
//! expected_reply_delay_ms = 1500
//! # White noise over the whole call, RMS level in dBFS (omit for a clean call).
//! noise_dbfs = -35.0
//!
//! [[turns]]
//! say = "Hi, where is my order A 1234?"      # or: wav = "turn1.wav" (relative to the dir),
//!                                             # channel = 0 for one side of a stereo recording
//! gap_ms = 500                                # silence before this turn
//! transcript = "hi where is my order a 1234"  # reference (default: the `say` text)
//! tool = { name = "get_order_status", arguments = { order_id = "A-1234" }, match = "subset" }
//! reply_must_contain = ["order"]
//! reply_must_not_contain = ["sorry"]
//!
//! [[turns]]
//! say = "Actually, never mind."
//! barge_in_ms = 800                           # starts 800 ms into the reply to turn 1
//! ```
//!
//! An optional `[fake]` table scripts the in-process fakes for offline runs
//! ([`FakeScript`]); it is ignored when the pipelines talk to real services.

use crate::error::EvalError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use voxpipe_fakes::openai_chat::ReplySpec;
use voxpipe_fakes::realtime::RealtimeFakeConfig;

/// The file name inside a scenario directory.
pub const SCENARIO_FILE: &str = "scenario.toml";

/// One scripted call, as written in `scenario.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Scenario name. Default: the directory name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Estimated time from the end of a user turn to the start of the assistant's reply, ms,
    /// used only to place barge-in turns (the real reply start depends on the pipeline, so a
    /// barge-in lands `barge_in_ms` into the reply only approximately). Default 1500.
    #[serde(default = "default_reply_delay_ms")]
    pub expected_reply_delay_ms: u64,
    /// White noise added to the whole call at this RMS level, dBFS (e.g. -35). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_dbfs: Option<f32>,
    /// Silence after the last turn so the last reply can play out, ms. Default 6000.
    #[serde(default = "default_tail_ms")]
    pub tail_silence_ms: u64,
    /// The caller's turns, in order.
    pub turns: Vec<Turn>,
    /// Scripts for the offline fakes. Default: the fakes' own defaults.
    #[serde(default, skip_serializing_if = "FakeScript::is_empty")]
    pub fake: FakeScript,
}

/// One caller turn and what it should produce.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// Text rendered with `espeak-ng -v en-us` at load time (exclusive with `wav`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub say: Option<String>,
    /// A WAV file, relative to the scenario directory (exclusive with `say`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wav: Option<PathBuf>,
    /// With `wav`: the caller's channel of a multi-channel recording, counting from 0 (the
    /// agent's side of a stereo call recording must not be played as the caller). Default: all
    /// channels mixed down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<u16>,
    /// With `wav`: play only this part of the file, from `from_ms` (default: its start) to
    /// `to_ms` (default: its end), as when turns are cut from one recorded call
    /// (`voxpipe scenario from-recording`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<u64>,
    /// See `from_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<u64>,
    /// Silence before this turn, ms: after the previous user turn's audio ends (leave room for
    /// the reply, or the turn becomes an accidental barge-in). Default 500 for the first turn,
    /// 5000 after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_ms: Option<u64>,
    /// Start this turn this many ms into the assistant's reply to the previous turn (a planned
    /// barge-in); the reply start is estimated as `expected_reply_delay_ms` after the previous
    /// turn ends. Replaces `gap_ms`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barge_in_ms: Option<u64>,
    /// Reference transcript of the caller's words. Default: the `say` text; none for a WAV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    /// The tool the assistant should call in answer to this turn. Default: none expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ExpectedTool>,
    /// Phrases the reply must contain (case-insensitive). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_must_contain: Vec<String>,
    /// Phrases the reply must not contain (case-insensitive). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_must_not_contain: Vec<String>,
}

impl Turn {
    /// The reference transcript: `transcript`, else the `say` text.
    pub fn reference(&self) -> Option<&str> {
        self.transcript.as_deref().or(self.say.as_deref())
    }
}

/// An expected tool call.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedTool {
    /// Tool name.
    pub name: String,
    /// Expected arguments object. Default: `{}` (with `subset`, any arguments match).
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
    /// How arguments are compared. Default `subset`.
    #[serde(default, rename = "match")]
    pub match_mode: ArgMatch,
}

/// How tool arguments are compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgMatch {
    /// The arguments equal the expected object exactly (as JSON values).
    Exact,
    /// Every expected key is present with an equal value (recursively); extra keys are fine.
    #[default]
    Subset,
}

/// What the in-process fakes say in an offline run of this scenario.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FakeScript {
    /// The Realtime fake's configuration (its TOML shape: `responses`, `first_audio_delay_ms`,
    /// fault knobs…). Default: the fake's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realtime: Option<RealtimeFakeConfig>,
    /// Chat-completions fake replies, in order (cycling). Default: echo the caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub llm: Vec<ReplySpec>,
}

impl FakeScript {
    /// Nothing scripted: every fake keeps its defaults.
    pub fn is_empty(&self) -> bool {
        self.realtime.is_none() && self.llm.is_empty()
    }
}

/// Default `expected_reply_delay_ms`.
pub const DEFAULT_REPLY_DELAY_MS: u64 = 1500;
/// Default `tail_silence_ms`.
pub const DEFAULT_TAIL_MS: u64 = 6000;

fn default_reply_delay_ms() -> u64 {
    DEFAULT_REPLY_DELAY_MS
}
fn default_tail_ms() -> u64 {
    DEFAULT_TAIL_MS
}
fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// The longest silence a scenario may script, ms: its gaps, barge-in offsets, reply delays
/// and tail added up (the turns' own audio comes on top). An hour is far beyond any test call,
/// and keeps a typo (or a hostile file) from asking the renderer for petabytes of silence or
/// overflowing its timeline arithmetic.
pub const MAX_TIMELINE_MS: u64 = 3_600_000;

/// The furthest `from_ms`/`to_ms` may point into a recording, ms: a day (beyond it the
/// renderer's sample arithmetic would overflow).
pub const MAX_RECORDING_MS: u64 = 86_400_000;

/// A scenario and the directory it came from.
#[derive(Debug, Clone)]
pub struct LoadedScenario {
    /// The parsed file (name filled in).
    pub scenario: Scenario,
    /// Its directory (WAV paths are relative to it).
    pub dir: PathBuf,
}

/// Parses and checks one `scenario.toml`.
pub fn load_scenario(dir: &Path) -> Result<LoadedScenario, EvalError> {
    let path = dir.join(SCENARIO_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| EvalError::io(&path, e))?;
    let mut scenario: Scenario = toml::from_str(&text)
        .map_err(|e| EvalError::Scenario { path: path.clone(), message: e.to_string() })?;
    if scenario.name.is_empty() {
        scenario.name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    }
    let bad = |message: String| EvalError::Scenario { path: path.clone(), message };
    if scenario.turns.is_empty() {
        return Err(bad("`turns` is empty: a scenario needs at least one [[turns]]".into()));
    }
    for (i, t) in scenario.turns.iter().enumerate() {
        match (&t.say, &t.wav) {
            (Some(_), Some(_)) => return Err(bad(format!("turns[{i}]: give `say` or `wav`, not both"))),
            (None, None) => {
                return Err(bad(format!("turns[{i}]: needs `say = \"text\"` or `wav = \"file.wav\"`")));
            }
            _ => {}
        }
        if (t.channel.is_some() || t.from_ms.is_some() || t.to_ms.is_some()) && t.wav.is_none() {
            return Err(bad(format!(
                "turns[{i}]: `channel`, `from_ms` and `to_ms` pick part of `wav`; this turn has none"
            )));
        }
        if let (Some(from), Some(to)) = (t.from_ms, t.to_ms)
            && from >= to
        {
            return Err(bad(format!("turns[{i}]: `from_ms` ({from}) must come before `to_ms` ({to})")));
        }
        if let Some(ms) = [t.from_ms, t.to_ms].into_iter().flatten().find(|&ms| ms > MAX_RECORDING_MS) {
            return Err(bad(format!(
                "turns[{i}]: `from_ms`/`to_ms` ({ms}) is past {MAX_RECORDING_MS} ms (24 hours) into the recording"
            )));
        }
        if t.barge_in_ms.is_some() && i == 0 {
            return Err(bad("turns[0]: `barge_in_ms` needs a previous turn to interrupt".into()));
        }
        if t.barge_in_ms.is_some() && t.gap_ms.is_some() {
            return Err(bad(format!("turns[{i}]: `barge_in_ms` replaces `gap_ms`; give one")));
        }
    }
    if let Some(level) = scenario.noise_dbfs
        && !(level.is_finite() && level <= 0.0)
    {
        return Err(bad(format!("`noise_dbfs` ({level}) must be a level in dBFS, 0 or below (e.g. -35)")));
    }
    let silence = timeline_silence_ms(&scenario);
    if silence > MAX_TIMELINE_MS {
        return Err(bad(format!(
            "the gaps, barge-in offsets, reply delays and tail silence add up to {silence} ms, \
             over the limit of {MAX_TIMELINE_MS} ms (one hour)"
        )));
    }
    Ok(LoadedScenario { scenario, dir: dir.to_path_buf() })
}

/// The silence `render::place` lays out around the turns, ms (saturating).
fn timeline_silence_ms(s: &Scenario) -> u64 {
    let turns = s.turns.iter().enumerate().map(|(i, t)| match t.barge_in_ms {
        Some(b) => s.expected_reply_delay_ms.saturating_add(b),
        None => t.gap_ms.unwrap_or(if i == 0 { 500 } else { 5000 }),
    });
    turns.fold(s.tail_silence_ms, u64::saturating_add)
}

/// Every scenario under `root`: `root` itself when it holds a `scenario.toml`, else each
/// subdirectory that does, sorted by name.
pub fn load_scenarios(root: &Path) -> Result<Vec<LoadedScenario>, EvalError> {
    if root.join(SCENARIO_FILE).is_file() {
        return Ok(vec![load_scenario(root)?]);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| EvalError::io(root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(SCENARIO_FILE).is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(EvalError::Scenario {
            path: root.to_path_buf(),
            message: format!("no `*/{SCENARIO_FILE}` found"),
        });
    }
    let all: Vec<LoadedScenario> = dirs.iter().map(|d| load_scenario(d)).collect::<Result<_, _>>()?;
    let mut names: Vec<&str> = all.iter().map(|s| s.scenario.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(EvalError::Scenario {
            path: root.to_path_buf(),
            message: format!("two scenarios named `{}`", w[0]),
        });
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_table_parses_with_tool_and_reply_checks() {
        let s: Scenario = toml::from_str(
            r#"
            [[turns]]
            say = "Where is order A 1234?"
            tool = { name = "get_order_status", arguments = { order_id = "A-1234" }, match = "exact" }
            reply_must_contain = ["shipped"]
            [[turns]]
            say = "Stop."
            barge_in_ms = 700
            "#,
        )
        .unwrap();
        assert_eq!(s.expected_reply_delay_ms, 1500);
        let tool = s.turns[0].tool.as_ref().unwrap();
        assert_eq!(tool.match_mode, ArgMatch::Exact);
        assert_eq!(tool.arguments["order_id"], "A-1234");
        assert_eq!(s.turns[0].reference(), Some("Where is order A 1234?"));
        assert_eq!(s.turns[1].barge_in_ms, Some(700));
    }

    #[test]
    fn a_turn_with_both_say_and_wav_is_rejected_with_its_index() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SCENARIO_FILE), "[[turns]]\nsay = \"hi\"\nwav = \"a.wav\"\n").unwrap();
        let err = load_scenario(dir.path()).unwrap_err().to_string();
        assert!(err.contains("turns[0]") && err.contains("not both"), "{err}");
    }

    #[test]
    fn a_channel_without_a_wav_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SCENARIO_FILE), "[[turns]]\nsay = \"hi\"\nchannel = 1\n").unwrap();
        let err = load_scenario(dir.path()).unwrap_err().to_string();
        assert!(err.contains("turns[0]: `channel`, `from_ms` and `to_ms` pick part of `wav`"), "{err}");
        std::fs::write(
            dir.path().join(SCENARIO_FILE),
            "[[turns]]\nwav = \"a.wav\"\nfrom_ms = 900\nto_ms = 900\n",
        )
        .unwrap();
        let err = load_scenario(dir.path()).unwrap_err().to_string();
        assert!(err.contains("turns[0]: `from_ms` (900) must come before `to_ms` (900)"), "{err}");
    }
}
