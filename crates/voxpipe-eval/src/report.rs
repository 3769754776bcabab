//! `report.md`, `results.jsonl` and the plots.

use crate::call::{CallRecord, PipelineUnderTest};
use crate::error::EvalError;
use crate::metrics::TurnMetrics;
use crate::plot::{self, Series};
use crate::pricing::PriceTable;
use crate::render::Rendered;
use crate::scenario::LoadedScenario;
use crate::stats::{
    BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, DiffCi, bootstrap_median_diff, bootstrap_paired_median_diff,
    percentile,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Per-turn metrics compared in the table: name, unit, extractor.
type Extract = fn(&TurnMetrics) -> Option<f64>;
const METRICS: &[(&str, &str, Extract)] = &[
    ("voice_to_voice_ms", "ms", |t| t.voice_to_voice_ms.map(|v| v as f64)),
    ("response_start_ms", "ms", |t| t.response_start_ms.map(|v| v as f64)),
    ("response_to_audio_ms", "ms", |t| t.response_to_audio_ms.map(|v| v as f64)),
    ("end_of_turn_delay_ms", "ms", |t| t.end_of_turn_delay_ms.map(|v| v as f64)),
    ("asr_final_ms", "ms", |t| t.asr_final_ms.map(|v| v as f64)),
    ("tts_first_audio_ms", "ms", |t| t.tts_first_audio_ms.map(|v| v as f64)),
    ("interruption_latency_ms", "ms", |t| t.interruption_latency_ms.map(|v| v as f64)),
    ("wer_pct", "%", |t| t.wer.map(|w| w.wer * 100.0)),
];

/// Everything the report is made from.
#[derive(Debug)]
pub struct ReportInput<'a> {
    /// The pipelines, A first.
    pub pipelines: &'a [PipelineUnderTest],
    /// The scenarios.
    pub scenarios: &'a [LoadedScenario],
    /// Their rendered audio.
    pub rendered: &'a [Rendered],
    /// Every call, in run order.
    pub calls: &'a [CallRecord],
    /// The price table, if given.
    pub pricing: Option<&'a PriceTable>,
    /// Runs per scenario.
    pub runs: usize,
}

/// One metric's difference between a pipeline and the baseline A.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Metric name.
    pub metric: String,
    /// Baseline label (`A`).
    pub baseline: String,
    /// Compared label.
    pub other: String,
    /// `median(other) − median(A)` with its 95 % bootstrap interval (none when a side has no
    /// values).
    pub ci: Option<DiffCi>,
    /// Turns measured in both pipelines (same scenario, run and turn); when there are any, the
    /// interval is a paired bootstrap over them, else an unpaired one over all turns.
    pub pairs: usize,
}

/// What `run_ab` produced.
#[derive(Debug, Clone)]
pub struct AbReport {
    /// The output directory.
    pub out_dir: PathBuf,
    /// `report.md`.
    pub report: PathBuf,
    /// `results.jsonl`.
    pub results: PathBuf,
    /// The SVG plots.
    pub plots: Vec<PathBuf>,
    /// Every call.
    pub calls: Vec<CallRecord>,
    /// Every metric difference against A.
    pub comparisons: Vec<Comparison>,
}

impl AbReport {
    /// The comparison of `metric` for pipeline `other` against A.
    pub fn comparison(&self, metric: &str, other: &str) -> Option<&Comparison> {
        self.comparisons.iter().find(|c| c.metric == metric && c.other == other)
    }

    /// The calls that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CallRecord> {
        self.calls.iter().filter(|c| c.error.is_some())
    }
}

/// Values of `f` over the turns of a pipeline's successful calls.
fn values(calls: &[CallRecord], label: &str, f: Extract) -> Vec<f64> {
    calls
        .iter()
        .filter(|c| c.pipeline == label && c.error.is_none())
        .flat_map(|c| c.turns.iter().filter_map(f))
        .collect()
}

/// Writes everything and returns the summary.
pub fn write(out: &Path, r: &ReportInput<'_>) -> Result<AbReport, EvalError> {
    let results = out.join("results.jsonl");
    write_results(&results, r)?;
    let plots = write_plots(out, r)?;
    let comparisons = compare(r);
    let md = markdown(r, &comparisons, &plots);
    let report = out.join("report.md");
    std::fs::write(&report, md).map_err(|e| EvalError::io(&report, e))?;
    Ok(AbReport { out_dir: out.to_path_buf(), report, results, plots, calls: r.calls.to_vec(), comparisons })
}

/// `(a, b)` values of the same turn (scenario, run, turn) where both calls succeeded.
fn paired(calls: &[CallRecord], a: &str, b: &str, f: Extract) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for ca in calls.iter().filter(|c| c.pipeline == a && c.error.is_none()) {
        let Some(cb) = calls
            .iter()
            .find(|c| c.pipeline == b && c.error.is_none() && c.scenario == ca.scenario && c.run == ca.run)
        else {
            continue;
        };
        for (ta, tb) in ca.turns.iter().zip(&cb.turns) {
            if let (Some(x), Some(y)) = (f(ta), f(tb)) {
                out.push((x, y));
            }
        }
    }
    out
}

fn compare(r: &ReportInput<'_>) -> Vec<Comparison> {
    let base = &r.pipelines[0].label;
    let mut out = Vec::new();
    for (name, _, f) in METRICS {
        let a = values(r.calls, base, *f);
        for p in &r.pipelines[1..] {
            let b = values(r.calls, &p.label, *f);
            let pairs = paired(r.calls, base, &p.label, *f);
            let ci = if pairs.is_empty() {
                bootstrap_median_diff(&a, &b, BOOTSTRAP_RESAMPLES, 0.95, BOOTSTRAP_SEED)
            } else {
                bootstrap_paired_median_diff(&pairs, BOOTSTRAP_RESAMPLES, 0.95, BOOTSTRAP_SEED)
            };
            let (metric, baseline, other) = (name.to_string(), base.clone(), p.label.clone());
            out.push(Comparison { metric, baseline, other, ci, pairs: pairs.len() });
        }
    }
    out
}

fn write_results(path: &Path, r: &ReportInput<'_>) -> Result<(), EvalError> {
    let file = std::fs::File::create(path).map_err(|e| EvalError::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    for c in r.calls {
        let name = r.pipelines.iter().find(|p| p.label == c.pipeline).map(|p| p.config.name.clone());
        for (i, t) in c.turns.iter().enumerate() {
            let mut v = serde_json::to_value(t).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("pipeline".into(), c.pipeline.clone().into());
                o.insert("pipeline_name".into(), name.clone().into());
                o.insert("scenario".into(), c.scenario.clone().into());
                o.insert("run".into(), c.run.into());
                o.insert("failed".into(), c.error.is_some().into());
                o.insert("call_error".into(), c.error.clone().into());
                o.insert("cost".into(), c.turn_costs.get(i).copied().flatten().into());
            }
            writeln!(w, "{v}").map_err(|e| EvalError::io(path, e))?;
        }
    }
    w.flush().map_err(|e| EvalError::io(path, e))
}

fn write_plots(out: &Path, r: &ReportInput<'_>) -> Result<Vec<PathBuf>, EvalError> {
    let v2v: Extract = METRICS[0].2;
    let series: Vec<Series> = r
        .pipelines
        .iter()
        .map(|p| Series { name: p.display(), values: values(r.calls, &p.label, v2v) })
        .collect();
    let cdf = out.join("latency_cdf.svg");
    plot::cdf(&cdf, "Voice-to-voice latency per turn (CDF)", &series)?;
    let timeline: Vec<(String, Vec<Option<f64>>)> = r
        .pipelines
        .iter()
        .map(|p| {
            let points = r
                .calls
                .iter()
                .filter(|c| c.pipeline == p.label)
                .flat_map(|c| c.turns.iter().map(|t| if c.error.is_some() { None } else { v2v(t) }))
                .collect();
            (p.display(), points)
        })
        .collect();
    let tl = out.join("latency_timeline.svg");
    plot::timeline(&tl, "Voice-to-voice latency by turn", &timeline)?;
    Ok(vec![cdf, tl])
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.0}"))
}

fn markdown(r: &ReportInput<'_>, comparisons: &[Comparison], plots: &[PathBuf]) -> String {
    let mut s = String::new();
    let failed = r.calls.iter().filter(|c| c.error.is_some()).count();
    let _ = writeln!(s, "# voxpipe A/B report\n");
    for p in r.pipelines {
        let _ = writeln!(s, "- **{}** = `{}` ({})", p.label, p.config.name, p.path.display());
    }
    let _ = writeln!(
        s,
        "\n{} scenarios × {} run(s) × {} pipelines = {} calls, {} failed. Differences are \
         median(X) − median(A) over turns, with a 95 % percentile-bootstrap interval \
         ({BOOTSTRAP_RESAMPLES} resamples, fixed seed), paired by (scenario, run, turn) where a turn \
         was measured in both pipelines; failed calls are left out of the statistics.\n",
        r.scenarios.len(),
        r.runs,
        r.pipelines.len(),
        r.calls.len(),
        failed
    );
    latency_table(&mut s, r, comparisons);
    let _ = writeln!(s, "\n## Verdicts\n");
    let mut any = false;
    for c in comparisons {
        let Some(ci) = c.ci.filter(|ci| ci.excludes_zero()) else { continue };
        any = true;
        let unit = METRICS.iter().find(|m| m.0 == c.metric).map_or("", |m| m.1);
        let word = if ci.diff > 0.0 { "higher" } else { "lower" };
        let _ = writeln!(
            s,
            "- `{}`: {} is {word} than {} by {:.0} {unit} (95 % CI {:+.0} … {:+.0}).",
            c.metric,
            c.other,
            c.baseline,
            ci.diff.abs(),
            ci.low,
            ci.high
        );
    }
    if !any {
        let _ = writeln!(s, "No difference whose interval excludes zero.");
    }
    quality_table(&mut s, r);
    settings_diff(&mut s, r.pipelines);
    let _ = writeln!(s, "\n## Plots\n");
    for p in plots {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = writeln!(s, "![{name}]({name})\n");
    }
    let _ = writeln!(s, "## Failures\n");
    if failed == 0 {
        let _ = writeln!(s, "None.");
    }
    for c in r.calls.iter().filter(|c| c.error.is_some()) {
        let msg = c.error.as_deref().unwrap_or("").replace('\n', " ");
        let _ = writeln!(
            s,
            "- {} · `{}` · run {}: {msg} (files: {})",
            c.pipeline,
            c.scenario,
            c.run,
            c.dir.display()
        );
    }
    s
}

fn latency_table(s: &mut String, r: &ReportInput<'_>, comparisons: &[Comparison]) {
    let _ = write!(s, "## Per-turn metrics\n\n| metric |");
    for p in r.pipelines {
        let _ = write!(s, " {0} median | {0} p90 | {0} p95 | {0} n |", p.label);
    }
    for p in &r.pipelines[1..] {
        let _ = write!(s, " {}−A [95 % CI] |", p.label);
    }
    let _ = write!(s, "\n|---|");
    for _ in 0..(r.pipelines.len() * 4 + r.pipelines.len() - 1) {
        let _ = write!(s, "---:|");
    }
    let _ = writeln!(s);
    for (name, _, f) in METRICS {
        let per: Vec<Vec<f64>> = r.pipelines.iter().map(|p| values(r.calls, &p.label, *f)).collect();
        if per.iter().all(Vec::is_empty) {
            continue;
        }
        let _ = write!(s, "| {name} |");
        for v in &per {
            let _ = write!(
                s,
                " {} | {} | {} | {} |",
                fmt(percentile(v, 50.0)),
                fmt(percentile(v, 90.0)),
                fmt(percentile(v, 95.0)),
                v.len()
            );
        }
        for p in &r.pipelines[1..] {
            let c = comparisons.iter().find(|c| c.metric == *name && c.other == p.label).and_then(|c| c.ci);
            let cell = c.map_or("–".into(), |c| format!("{:+.0} [{:+.0}, {:+.0}]", c.diff, c.low, c.high));
            let _ = write!(s, " {cell} |");
        }
        let _ = writeln!(s);
    }
}

fn quality_table(s: &mut String, r: &ReportInput<'_>) {
    let _ = writeln!(s, "\n## Quality, usage and cost (successful calls)\n");
    let _ = writeln!(
        s,
        "| pipeline | WER (all words) | tool calls correct | reply checks passed | input text / audio tokens | \
         output text / audio tokens | audio played (s) | est. cost |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for p in r.pipelines {
        let calls: Vec<&CallRecord> =
            r.calls.iter().filter(|c| c.pipeline == p.label && c.error.is_none()).collect();
        let turns: Vec<&TurnMetrics> = calls.iter().flat_map(|c| c.turns.iter()).collect();
        let (errs, words) =
            turns.iter().filter_map(|t| t.wer).fold((0, 0), |(e, w), x| (e + x.errors, w + x.words));
        let tools: Vec<bool> = turns.iter().filter_map(|t| t.tool.as_ref().map(|v| v.is_correct())).collect();
        let replies: Vec<bool> =
            turns.iter().filter_map(|t| t.reply_check.as_ref().map(|c| c.passed())).collect();
        let sum = |f: fn(&TurnMetrics) -> u64| turns.iter().map(|t| f(t)).sum::<u64>();
        let costs: Vec<Option<f64>> = calls.iter().flat_map(|c| c.turn_costs.iter().copied()).collect();
        let cost = match (r.pricing, costs.iter().all(Option::is_some) && !costs.is_empty()) {
            (Some(t), true) => format!("{:.4} {}", costs.iter().flatten().sum::<f64>(), t.currency),
            (Some(_), false) => "unpriced model".into(),
            (None, _) => "no price table".into(),
        };
        let wer = if words == 0 {
            "–".into()
        } else {
            format!("{:.1} % ({errs}/{words})", errs as f64 * 100.0 / words as f64)
        };
        let _ = writeln!(
            s,
            "| {} | {wer} | {}/{} | {}/{} | {} / {} | {} / {} | {:.1} | {cost} |",
            p.display(),
            tools.iter().filter(|b| **b).count(),
            tools.len(),
            replies.iter().filter(|b| **b).count(),
            replies.len(),
            sum(|t| t.tokens.input_text),
            sum(|t| t.tokens.input_audio),
            sum(|t| t.tokens.output_text),
            sum(|t| t.tokens.output_audio),
            sum(|t| t.played_ms) as f64 / 1000.0,
        );
    }
    if let Some(t) = r.pricing {
        let _ = writeln!(
            s,
            "\nPrices: example table dated {} ({}); edit it to match your contracts.",
            t.date, t.currency
        );
    }
}

/// The resolved settings that differ between pipelines (turn, stages, tools; not the
/// per-call input/output paths).
fn settings_diff(s: &mut String, pipelines: &[PipelineUnderTest]) {
    let flat: Vec<BTreeMap<String, String>> = pipelines
        .iter()
        .map(|p| {
            let mut m = BTreeMap::new();
            let v = serde_json::to_value(&p.config).unwrap_or_default();
            for key in ["turn", "stages", "tools"] {
                flatten(key, &v[key], &mut m);
            }
            if p.fake_delay.first_audio_ms != 0 {
                m.insert(
                    "(offline fakes) first_audio_ms offset".into(),
                    format!("{:+}", p.fake_delay.first_audio_ms),
                );
            }
            m
        })
        .collect();
    let keys: std::collections::BTreeSet<&String> = flat.iter().flat_map(|m| m.keys()).collect();
    let _ = writeln!(s, "\n## Settings that differ\n");
    let _ = write!(s, "| setting |");
    for p in pipelines {
        let _ = write!(s, " {} |", p.label);
    }
    let _ = writeln!(s, "\n|---|{}", "---|".repeat(pipelines.len()));
    let mut any = false;
    for k in keys {
        let vals: Vec<&str> = flat.iter().map(|m| m.get(k).map_or("(unset)", String::as_str)).collect();
        if vals.windows(2).all(|w| w[0] == w[1]) {
            continue;
        }
        any = true;
        let _ = writeln!(
            s,
            "| `{k}` | {} |",
            vals.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(" | ")
        );
    }
    if !any {
        let _ = writeln!(s, "| (none: same turn, stage and tool settings) |{}", " |".repeat(pipelines.len()));
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(o) => o.iter().for_each(|(k, v)| flatten(&format!("{prefix}.{k}"), v, out)),
        serde_json::Value::Array(a) => {
            a.iter().enumerate().for_each(|(i, v)| flatten(&format!("{prefix}[{i}]"), v, out))
        }
        serde_json::Value::Null => {}
        other => {
            out.insert(prefix.to_string(), other.to_string().trim_matches('"').to_string());
        }
    }
}
