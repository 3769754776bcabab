//! The report's sections about offline timing and stages: the fakes' latency profiles (and a
//! warning when the pipelines' fakes were timed differently) and where the time goes.

use crate::breakdown::{ALL_STAGES, Stage};
use crate::call::{CallRecord, PipelineUnderTest};
use crate::error::EvalError;
use crate::plot::{self, StackedBar};
use crate::report::ReportInput;
use crate::stats::percentile;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The breakdown plot's file name.
pub const BREAKDOWN_SVG: &str = "latency_breakdown.svg";

/// The fake of a stage kind, named as in the profile (`realtime`, `chat`, `anthropic`, `gemini`, `elevenlabs`, `speech`,
/// `transcription`), when the A/B harness starts one for it.
fn profile_fake(kind: &str) -> Option<&'static str> {
    match voxpipe_config::StageKind::get(kind)?.fake? {
        "realtime" => Some("realtime"),
        "llm" => Some("chat"),
        "anthropic" => Some("anthropic"),
        "gemini" => Some("gemini"),
        "tts" => Some("speech"),
        "elevenlabs" => Some("elevenlabs"),
        "transcription" => Some("transcription"),
        _ => None,
    }
}

/// `## Fake latency profiles`: each pipeline's profile, then every value per pipeline with
/// its source and date, and which pipelines' stages used that fake.
pub fn profiles(s: &mut String, pipelines: &[PipelineUnderTest]) {
    let _ = writeln!(s, "## Fake latency profiles\n");
    let _ = writeln!(
        s,
        "The providers were the in-process fakes, timed by these profiles (`--fake-profile`); \
         `--fake-delay` adds to the Realtime fake's first audio and the speech fake's first byte.\n"
    );
    for p in pipelines {
        let prof = &p.fake_profile;
        let delay = p.fake_delay.first_audio_ms;
        let delay = if delay == 0 { String::new() } else { format!(", fake delay {delay:+} ms") };
        let _ = writeln!(
            s,
            "- **{}**: profile `{}` ({}){delay}: {}",
            p.label,
            prof.name,
            prof.origin.display(),
            prof.description
        );
    }
    let _ = write!(s, "\n| fake | key |");
    for p in pipelines {
        let _ = write!(s, " {} `{}` |", p.label, p.fake_profile.name);
    }
    let _ = writeln!(s, " used by | source | date |");
    let _ = writeln!(s, "|---|---|{}---|---|---|", "---:|".repeat(pipelines.len()));
    let rows: Vec<_> = pipelines.iter().map(|p| p.fake_profile.rows()).collect();
    for (i, first) in rows[0].iter().enumerate() {
        let used: Vec<&str> = pipelines
            .iter()
            .filter(|p| p.stages.iter().any(|(k, _)| profile_fake(k) == Some(first.fake)))
            .map(|p| p.label.as_str())
            .collect();
        let _ = write!(s, "| {} | `{}` |", first.fake, first.key);
        for r in &rows {
            let _ = write!(s, " {} |", r[i].value);
        }
        // One source per distinct figure: A's, then any other pipeline's that differs.
        let mut sources: Vec<(String, String)> = Vec::new();
        for (p, r) in pipelines.iter().zip(&rows) {
            let src = r[i].source.clone().unwrap_or_else(|| "(none given)".into()).replace('|', "/");
            let date = r[i].date.clone().unwrap_or_else(|| "–".into());
            if !sources.iter().any(|(s, d)| s.ends_with(&src) && *d == date) {
                let src = if sources.is_empty() { src } else { format!("{}: {src}", p.label) };
                sources.push((src, date));
            }
        }
        let src: Vec<&str> = sources.iter().map(|(s, _)| s.as_str()).collect();
        let date: Vec<&str> = sources.iter().map(|(_, d)| d.as_str()).collect();
        let used = if used.is_empty() { "–".to_string() } else { used.join(", ") };
        let _ = writeln!(s, " {used} | {} | {} |", src.join("; "), date.join("; "));
    }
    let _ = writeln!(s);
}

/// The warning printed above the verdicts when the pipelines' fakes were not timed alike
/// (another profile, or a `--fake-delay`), or `None`.
pub fn profile_mismatch(pipelines: &[PipelineUnderTest]) -> Option<String> {
    let first = pipelines.first()?;
    let differs = pipelines.iter().any(|p| {
        p.fake_profile.name != first.fake_profile.name
            || !p.fake_profile.same_timing(&first.fake_profile)
            || p.fake_delay != first.fake_delay
    });
    differs.then(|| {
        let each: Vec<String> = pipelines
            .iter()
            .map(|p| {
                let d = p.fake_delay.first_audio_ms;
                let d = if d == 0 { String::new() } else { format!(" {d:+} ms") };
                format!("{} `{}`{d}", p.label, p.fake_profile.name)
            })
            .collect();
        format!(
            "> **Warning:** the pipelines' fakes ran under different latency profiles ({}): the \
             verdicts below measure that difference as much as the pipelines.",
            each.join(", ")
        )
    })
}

/// A stage's times over a pipeline's successful calls' turns.
pub fn stage_values(calls: &[CallRecord], label: &str, stage: Stage) -> Vec<f64> {
    calls
        .iter()
        .filter(|c| c.pipeline == label && c.error.is_none())
        .flat_map(|c| c.turns.iter())
        .filter_map(|t| t.breakdown.as_ref()?.get(stage))
        .map(|ms| ms as f64)
        .collect()
}

/// Voice-to-voice of the turns that have a breakdown (the same turns as the stages).
fn total_values(calls: &[CallRecord], label: &str) -> Vec<f64> {
    calls
        .iter()
        .filter(|c| c.pipeline == label && c.error.is_none())
        .flat_map(|c| c.turns.iter())
        .filter_map(|t| Some(t.breakdown.as_ref()?.total_ms() as f64))
        .collect()
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.0}"))
}

/// `## Where the time goes`: per pipeline, the median and p90 of every stage, then of the
/// voice-to-voice they add up to, and the stacked plot.
pub fn breakdown(s: &mut String, r: &ReportInput<'_>, plots: &[PathBuf]) {
    let _ = writeln!(s, "\n## Where the time goes\n");
    let _ = writeln!(
        s,
        "Voice-to-voice of each turn split at the moments the event log records: the end-of-turn \
         decision, the final transcript, the LLM's first token, the first clause sent to TTS, the \
         TTS's first audio, and the first audio played (native: the server's end of speech, then \
         the model's audio reaching playout). Each stage counts only the time the turn still waited \
         on it (0 when it finished earlier; a transcript the turn controller waited on counts its \
         own transcription time, and the rest of that wait is end of turn), so a turn's stages add \
         up to its voice-to-voice exactly. \
         Medians of stages need not add up to the median voice-to-voice. The largest stage is the \
         one to replace first.\n"
    );
    let _ = write!(s, "| stage |");
    for p in r.pipelines {
        let _ = write!(s, " {0} median | {0} p90 |", p.label);
    }
    let _ = writeln!(s, "\n|---|{}", "---:|".repeat(2 * r.pipelines.len()));
    for stage in ALL_STAGES {
        let per: Vec<Vec<f64>> = r.pipelines.iter().map(|p| stage_values(r.calls, &p.label, stage)).collect();
        if per.iter().all(Vec::is_empty) {
            continue;
        }
        let _ = write!(s, "| {} (`{}`) |", stage.label(), stage.name());
        for v in &per {
            let _ = write!(s, " {} | {} |", cell(percentile(v, 50.0)), cell(percentile(v, 90.0)));
        }
        let _ = writeln!(s);
    }
    let _ = write!(s, "| **voice-to-voice** |");
    for p in r.pipelines {
        let v = total_values(r.calls, &p.label);
        let _ = write!(s, " **{}** | **{}** |", cell(percentile(&v, 50.0)), cell(percentile(&v, 90.0)));
    }
    let _ = writeln!(s);
    if plots.iter().any(|p| p.ends_with(BREAKDOWN_SVG)) {
        let _ = writeln!(s, "\n![{BREAKDOWN_SVG}]({BREAKDOWN_SVG})");
    }
}

/// Draws `latency_breakdown.svg`: per pipeline, the stage medians stacked, with the median
/// voice-to-voice marked.
pub fn write_breakdown_plot(out: &Path, r: &ReportInput<'_>) -> Result<PathBuf, EvalError> {
    let bars: Vec<StackedBar> = r
        .pipelines
        .iter()
        .map(|p| StackedBar {
            name: p.display(),
            parts: p
                .architecture()
                .stages()
                .iter()
                .map(|stage| {
                    let v = stage_values(r.calls, &p.label, *stage);
                    (stage.label().to_string(), percentile(&v, 50.0).unwrap_or(0.0))
                })
                .collect(),
            marker: percentile(&total_values(r.calls, &p.label), 50.0),
        })
        .collect();
    let path = out.join(BREAKDOWN_SVG);
    let color_of = |label: &str| {
        plot::stage_color(ALL_STAGES.iter().position(|s| s.label() == label).unwrap_or(ALL_STAGES.len()))
    };
    plot::stacked(
        &path,
        "Where the time goes: median of each stage (tick: median voice-to-voice)",
        &bars,
        &color_of,
    )?;
    Ok(path)
}
