//! `report.html`: one self-contained page (HTML and CSS, no script, nothing fetched) to listen
//! to an A/B run. Per scenario and turn: the caller's audio and words, then each pipeline side
//! by side with its reply audio and transcript, what it heard, its tool calls (name, arguments,
//! result), the turn's latencies (voice-to-voice and its breakdown by stage) and the checks,
//! failed ones marked `class="check fail"` with a visible ✗. The plots are inlined; the audio
//! clips are WAVs beside the page ([`crate::clips`]), linked by relative paths, so the output
//! directory can be zipped or served as it is. Every text from a call or a scenario is escaped.

use crate::call::CallRecord;
use crate::clips::{self, Clip};
use crate::cost;
use crate::error::EvalError;
use crate::metrics::TurnMetrics;
use crate::pricing::format_day;
use crate::report::{Comparison, ReportInput};
use crate::score::ToolVerdict;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The page's file name.
pub const REPORT_HTML: &str = "report.html";

/// Escapes `s` for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a relative `/`-separated path for a URL (every byte but unreserved ones
/// and `/`).
pub fn url_path(rel: &str) -> String {
    let mut out = String::with_capacity(rel.len());
    for b in rel.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#1d2330}
h1{font-size:1.6em}h2{border-bottom:2px solid #d5dae3;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d5dae3;padding:.2em .5em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.plots svg{max-width:100%;height:auto;display:block;margin:1em 0}
.turn{border:1px solid #d5dae3;border-radius:6px;margin:1em 0;padding:.6em 1em;background:#fafbfc}
.caller{background:#eef3fb;border-radius:4px;padding:.4em .8em;margin-bottom:.6em}
.replies{display:grid;gap:1em}
.reply{background:#fff;border:1px solid #d5dae3;border-radius:4px;padding:.4em .8em}
.reply.failed{border:2px solid #c62828}
.transcript{font-size:1.05em;margin:.3em 0}.heard{color:#555}
audio{width:100%;max-width:420px;display:block}
code{background:#eef0f4;padding:0 .2em;border-radius:3px;word-break:break-word}
ul.checks{list-style:none;padding:0}
.check.pass{color:#1b5e20}.check.fail{color:#b71c1c;font-weight:600;background:#fdecea}
.stale,.tool-error{color:#b71c1c;font-weight:600}.note{color:#666;font-size:.9em}
.lat td,.lat th{font-size:.9em}
ul.judge{list-style:none;padding:0;font-size:.9em}
";

/// Writes `report.html` and its clips into `out`.
///
/// # Errors
/// A clip or the page cannot be written.
pub fn write(
    out: &Path,
    r: &ReportInput<'_>,
    comparisons: &[Comparison],
    plots: &[PathBuf],
) -> Result<PathBuf, EvalError> {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>voxpipe A/B report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>voxpipe A/B report</h1>\n"
    );
    summary(&mut s, r, comparisons);
    cost_section(&mut s, r);
    judge_section(&mut s, r);
    let _ = writeln!(s, "<section class=\"plots\">\n<h2>Plots</h2>");
    for p in plots {
        let svg = std::fs::read_to_string(p).map_err(|e| EvalError::io(p, e))?;
        let _ = writeln!(s, "{}", inline_svg(&svg));
    }
    let _ = writeln!(s, "</section>");
    for (si, sc) in r.scenarios.iter().enumerate() {
        let name = &sc.scenario.name;
        let spans = &r.rendered[si].spans;
        let caller = clips::caller_clips(out, name, &r.rendered[si].wav, spans)?;
        let _ = writeln!(s, "<section class=\"scenario\" id=\"scenario-{si}\">\n<h2>{}</h2>", escape(name));
        if let Some(d) = &sc.scenario.description {
            let _ = writeln!(s, "<p>{}</p>", escape(d));
        }
        for run in 1..=r.runs {
            let calls: Vec<&CallRecord> = r
                .pipelines
                .iter()
                .filter_map(|p| {
                    r.calls.iter().find(|c| c.pipeline == p.label && c.scenario == *name && c.run == run)
                })
                .collect();
            let replies = calls
                .iter()
                .map(|c| clips::reply_clips(out, c, spans, r.runs))
                .collect::<Result<Vec<_>, _>>()?;
            if r.runs > 1 {
                let _ = writeln!(s, "<h3>Run {run}</h3>");
            }
            for (ti, turn) in sc.scenario.turns.iter().enumerate() {
                let _ = writeln!(s, "<div class=\"turn\" id=\"scenario-{si}-run{run}-turn{}\">", ti + 1);
                let said = match (&turn.say, &turn.wav) {
                    (Some(text), _) => format!("says “{}”", escape(text)),
                    (None, Some(wav)) => format!("plays <code>{}</code>", escape(&wav.display().to_string())),
                    (None, None) => String::new(),
                };
                let _ = writeln!(s, "<div class=\"caller\"><h3>Turn {}: the caller {said}</h3>", ti + 1);
                audio(&mut s, &caller[ti]);
                if let Some(t) = &turn.transcript {
                    let _ = writeln!(s, "<p class=\"note\">reference transcript: “{}”</p>", escape(t));
                }
                let _ = writeln!(s, "</div>");
                let _ = writeln!(
                    s,
                    "<div class=\"replies\" style=\"grid-template-columns:repeat({},minmax(0,1fr))\">",
                    calls.len().max(1)
                );
                for (c, clips) in calls.iter().zip(&replies) {
                    reply(&mut s, r, c, ti, &clips[ti]);
                }
                let _ = writeln!(s, "</div>\n</div>");
            }
        }
        let _ = writeln!(s, "</section>");
    }
    let _ = writeln!(s, "</body>\n</html>");
    let path = out.join(REPORT_HTML);
    std::fs::write(&path, s).map_err(|e| EvalError::io(&path, e))?;
    Ok(path)
}

/// An SVG file's `<svg>` element, without an XML declaration or doctype before it.
fn inline_svg(svg: &str) -> &str {
    svg.find("<svg").map_or("", |at| svg[at..].trim_end())
}

fn audio(s: &mut String, clip: &Clip) {
    let _ = write!(s, "<audio controls preload=\"none\" src=\"{}\"></audio>", escape(&url_path(&clip.rel)));
    match (&clip.note, clip.ms) {
        (Some(note), _) => {
            let _ = writeln!(s, "<p class=\"note\">no audio: {}</p>", escape(note));
        }
        (None, 0) => {
            let _ = writeln!(s, "<p class=\"note\">silent</p>");
        }
        (None, ms) => {
            let _ = writeln!(s, "<p class=\"note\">{:.1} s</p>", ms as f64 / 1000.0);
        }
    }
}

fn summary(s: &mut String, r: &ReportInput<'_>, comparisons: &[Comparison]) {
    let _ = writeln!(s, "<ul>");
    for p in r.pipelines {
        let _ = writeln!(
            s,
            "<li><b>{}</b> = <code>{}</code> ({})</li>",
            escape(&p.label),
            escape(&p.config.name),
            escape(&p.path.display().to_string())
        );
    }
    let failed = r.calls.iter().filter(|c| c.error.is_some()).count();
    let _ = writeln!(
        s,
        "</ul>\n<p>{} scenarios × {} run(s) × {} pipelines = {} calls, {failed} failed. The numbers, \
         intervals and settings are in <a href=\"report.md\">report.md</a>.</p>",
        r.scenarios.len(),
        r.runs,
        r.pipelines.len(),
        r.calls.len()
    );
    let _ = writeln!(s, "<h2>Verdicts</h2>");
    if r.fakes && crate::report_sections::profile_mismatch(r.pipelines).is_some() {
        let _ = writeln!(
            s,
            "<p class=\"stale\">⚠ The pipelines' fakes were timed by different latency profiles (see report.md).</p>"
        );
    }
    let verdicts = crate::report::verdicts(comparisons);
    if verdicts.is_empty() {
        let _ = writeln!(s, "<p>No difference whose interval excludes zero.</p>");
    } else {
        let _ = writeln!(s, "<ul>");
        for (metric, text) in verdicts {
            let _ = writeln!(s, "<li><code>{}</code>: {}</li>", escape(&metric), escape(&text));
        }
        let _ = writeln!(s, "</ul>");
    }
    for c in r.calls.iter().filter(|c| c.error.is_some()) {
        let _ = writeln!(
            s,
            "<p class=\"check fail\">✗ call failed: {} · {} · run {}: {}</p>",
            escape(&c.pipeline),
            escape(&c.scenario),
            c.run,
            escape(c.error.as_deref().unwrap_or(""))
        );
    }
}

fn cost_section(s: &mut String, r: &ReportInput<'_>) {
    let _ = writeln!(
        s,
        "<h2>Cost per minute of conversation</h2>\n<p>A minute of conversation is a minute of the call's \
         timeline (the scenario's input: the caller's turns, the pauses and the tail), the same for every \
         pipeline; figures sum the successful calls.</p>\n<table>\n<tr><th>pipeline</th><th>minutes</th>\
         <th>est. cost</th><th>cost / min</th><th>input tokens / min</th><th>output tokens / min</th></tr>"
    );
    for m in cost::per_minute(r) {
        let (cost, per_min) = cost::cost_cells(r.pricing, &m);
        let (cost, per_min) = (escape(&cost), escape(&per_min));
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td class=\"n\">{:.2}</td><td class=\"n\">{cost}</td><td class=\"n\">{per_min}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&m.label),
            m.minutes,
            cost::rate(m.input_tokens_per_minute()),
            cost::rate(m.output_tokens_per_minute())
        );
    }
    let _ = writeln!(s, "</table>");
    let Some(table) = r.pricing else { return };
    let _ = writeln!(
        s,
        "<p>Prices used (run date {}; a price dated more than {} days before it is flagged stale):</p>\n\
         <table>\n<tr><th>model</th><th>pipelines</th><th>price date</th><th></th></tr>",
        format_day(r.run_day),
        crate::pricing::STALE_AFTER_DAYS
    );
    for a in cost::price_ages(r, table) {
        let flag = match (a.priced, cost::stale_marker(&a)) {
            (false, _) => "no price: costs left blank".to_string(),
            (true, Some(m)) => format!("<span class=\"stale\">{}</span>", escape(&m)),
            (true, None) => String::new(),
        };
        let _ = writeln!(
            s,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{flag}</td></tr>",
            escape(&a.model),
            escape(&a.used_by.join(", ")),
            if a.priced { escape(&a.date) } else { "–".into() }
        );
    }
    let _ = writeln!(s, "</table>");
}

/// One pipeline's column for turn `ti`.
fn reply(s: &mut String, r: &ReportInput<'_>, c: &CallRecord, ti: usize, clip: &Clip) {
    let t = c.turns.get(ti);
    let failed = c.error.is_some() || t.is_some_and(|t| !failed_checks(t).is_empty());
    let name = r.pipelines.iter().find(|p| p.label == c.pipeline).map_or(c.pipeline.clone(), |p| p.display());
    let _ = writeln!(
        s,
        "<div class=\"reply{}\">\n<h4>{}</h4>",
        if failed { " failed" } else { "" },
        escape(&name)
    );
    audio(s, clip);
    if let Some(e) = &c.error {
        let _ = writeln!(s, "<p class=\"check fail\">✗ call failed: {}</p>", escape(e));
    }
    let Some(t) = t else {
        let _ = writeln!(s, "<p class=\"note\">(the call did not reach this turn)</p>\n</div>");
        return;
    };
    let reply =
        if t.reply.is_empty() { "(nothing said)".to_string() } else { format!("“{}”", escape(&t.reply)) };
    let _ = writeln!(s, "<p class=\"transcript\">{reply}</p>");
    if !t.user_transcript.is_empty() {
        let _ = writeln!(s, "<p class=\"heard\">heard: “{}”</p>", escape(&t.user_transcript));
    }
    let tools = t.tool_exchanges();
    if !tools.is_empty() {
        let _ = writeln!(s, "<ul class=\"tools\">");
        for (name, args, result) in tools {
            let result = match result {
                Some(o) if o.is_error => {
                    format!("<span class=\"tool-error\">error: {}</span>", escape(&o.output))
                }
                Some(o) => format!("<code>{}</code>", escape(&o.output)),
                None => "(no result in this turn)".into(),
            };
            let _ = writeln!(
                s,
                "<li>tool <code>{}</code>(<code>{}</code>) → {result}</li>",
                escape(name),
                escape(args)
            );
        }
        let _ = writeln!(s, "</ul>");
    }
    latencies(s, t);
    if let Some(j) = &t.judge {
        judgement(s, j);
    }
    let _ = writeln!(s, "<ul class=\"checks\">");
    for (ok, text) in checks(t) {
        let (class, mark) = if ok { ("pass", "✓") } else { ("fail", "✗ FAILED:") };
        let _ = writeln!(s, "<li class=\"check {class}\">{mark} {}</li>", escape(&text));
    }
    let _ = writeln!(s, "</ul>\n</div>");
}

/// The judged-quality table: per criterion each pipeline's mean score with its interval and
/// the difference to A.
fn judge_section(s: &mut String, r: &ReportInput<'_>) {
    let Some(judge) = r.judge else { return };
    let _ = writeln!(
        s,
        "<section class=\"judge\">\n<h2>Judged quality</h2>\n<p class=\"note\">Each reply scored 1–5 by \
         <code>{}</code>: mean [95 % interval] (n), successful calls. Each turn below shows its scores \
         and the judge's reasons.</p>\n<table>\n<tr><th>criterion</th>",
        escape(&judge.describe)
    );
    for p in r.pipelines {
        let _ = write!(s, "<th>{}</th>", escape(&p.display()));
    }
    for p in r.pipelines.iter().skip(1) {
        let _ = write!(s, "<th>{}−A</th>", escape(&p.label));
    }
    let _ = writeln!(s, "</tr>");
    for c in &judge.criteria {
        let _ = write!(s, "<tr><td>{}</td>", escape(&c.name));
        for p in r.pipelines {
            let cell = crate::judge::mean_score(r.calls, &p.label, &c.name)
                .map_or("–".into(), |m| format!("{:.2} [{:.2}, {:.2}] ({})", m.mean, m.low, m.high, m.n));
            let _ = write!(s, "<td>{cell}</td>");
        }
        for p in r.pipelines.iter().skip(1) {
            let cell = crate::judge::diff_cell(r.calls, &r.pipelines[0].label, &p.label, &c.name);
            let _ = write!(s, "<td>{}</td>", escape(&cell));
        }
        let _ = writeln!(s, "</tr>");
    }
    let _ = writeln!(s, "</table>\n</section>");
}

/// One reply's scores with the judge's reasons.
fn judgement(s: &mut String, j: &crate::judge::Judgement) {
    if let Some(e) = &j.error {
        let _ = writeln!(s, "<p class=\"note judge\">judge: unscored ({})</p>", escape(e));
        return;
    }
    let _ = writeln!(s, "<ul class=\"judge\">");
    for score in &j.scores {
        let value = score.score.map_or("–".to_string(), |v| format!("{v}/5"));
        let _ = writeln!(
            s,
            "<li>judge · {}: <b>{value}</b> <span class=\"note\">{}</span></li>",
            escape(&score.criterion),
            escape(&score.reason)
        );
    }
    let _ = writeln!(s, "</ul>");
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v} ms"))
}

fn latencies(s: &mut String, t: &TurnMetrics) {
    let _ = writeln!(
        s,
        "<table class=\"lat\">\n<tr><th>voice-to-voice</th><td class=\"n\">{}</td></tr>",
        ms(t.voice_to_voice_ms)
    );
    for stage in t.breakdown.iter().flat_map(|b| b.stages.iter()) {
        let _ =
            writeln!(s, "<tr><td>· {}</td><td class=\"n\">{} ms</td></tr>", stage.stage.label(), stage.ms);
    }
    let rows = [
        ("ASR final (stage metric)", t.asr_final_ms),
        ("LLM first token (stage metric)", t.llm_first_token_ms),
        ("TTS first audio (stage metric)", t.tts_first_audio_ms),
        ("interruption latency", t.interruption_latency_ms),
    ];
    for (name, v) in rows.into_iter().filter(|(_, v)| v.is_some()) {
        let _ = writeln!(s, "<tr><td>{name}</td><td class=\"n\">{}</td></tr>", ms(v));
    }
    let _ = writeln!(s, "</table>");
}

/// The turn's checks as `(passed, description)`: the expected tool, the reply phrases, and
/// errors logged in the turn; the transcript's WER is shown as a passed check when exact.
fn checks(t: &TurnMetrics) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    if let Some(w) = t.wer {
        out.push((
            w.errors == 0,
            format!("transcript WER {:.0} % ({}/{} words)", w.wer * 100.0, w.errors, w.words),
        ));
    }
    if let Some(v) = &t.tool {
        let text = match v {
            ToolVerdict::Correct => "expected tool called with matching arguments".to_string(),
            ToolVerdict::NotCalled => "expected tool not called".to_string(),
            ToolVerdict::WrongName(names) => {
                format!("expected tool not called (called {})", names.join(", "))
            }
            ToolVerdict::WrongArguments(args) => format!("expected tool called with other arguments: {args}"),
        };
        out.push((v.is_correct(), text));
    }
    if let Some(c) = &t.reply_check {
        if c.passed() {
            out.push((true, "reply phrases".to_string()));
        }
        for m in &c.missing {
            out.push((false, format!("reply lacks “{m}”")));
        }
        for f in &c.forbidden {
            out.push((false, format!("reply says forbidden “{f}”")));
        }
    }
    for e in &t.errors {
        out.push((false, format!("error: {e}")));
    }
    out
}

fn failed_checks(t: &TurnMetrics) -> Vec<String> {
    checks(t).into_iter().filter(|(ok, _)| !ok).map(|(_, text)| text).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::ReplyCheck;

    #[test]
    fn text_and_paths_are_escaped() {
        assert_eq!(escape(r#"<b a="1">&'x'"#), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;x&#39;");
        assert_eq!(url_path("audio/my scenario/A-turn1.wav"), "audio/my%20scenario/A-turn1.wav");
        assert_eq!(url_path("audio/é\"/x.wav"), "audio/%C3%A9%22/x.wav");
        assert_eq!(inline_svg("<?xml version=\"1.0\"?>\n<svg a=\"1\"></svg>\n"), "<svg a=\"1\"></svg>");
    }

    #[test]
    fn failed_checks_are_listed_with_what_failed() {
        let t = TurnMetrics {
            tool: Some(ToolVerdict::NotCalled),
            reply_check: Some(ReplyCheck { missing: vec!["shipped".into()], forbidden: vec![] }),
            errors: vec!["llm.openai: 500".into()],
            ..Default::default()
        };
        assert_eq!(
            failed_checks(&t),
            ["expected tool not called", "reply lacks “shipped”", "error: llm.openai: 500"]
        );
        assert!(failed_checks(&TurnMetrics::default()).is_empty());
    }
}
