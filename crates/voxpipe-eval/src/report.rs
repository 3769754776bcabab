//! `report.md`, `report.html` ([`crate::html`]), `results.jsonl` and the plots.

use crate::call::{CallRecord, PipelineUnderTest};
use crate::error::EvalError;
use crate::metrics::TurnMetrics;
use crate::plot::{self, Group, GroupedSeries, Series};
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
    ("llm_first_token_ms", "ms", |t| t.llm_first_token_ms.map(|v| v as f64)),
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
    /// Calls that ran at once.
    pub concurrency: usize,
    /// Whether the calls ran against the in-process fakes (their profiles are then printed).
    pub fakes: bool,
    /// The run's date in days since 1970-01-01 (UTC), against which prices' ages are judged.
    pub run_day: i64,
    /// The judge, when replies were scored.
    pub judge: Option<&'a crate::judge::Judge>,
}

/// A warning when calls ran concurrently through stages that compute locally: they competed
/// for the CPU, so their latencies measure the machine as much as the pipeline.
fn contention_note(r: &ReportInput<'_>) -> Option<String> {
    if r.concurrency <= 1 {
        return None;
    }
    let local: Vec<String> = r
        .pipelines
        .iter()
        .filter_map(|p| {
            let kinds: Vec<&str> = p
                .stages
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| voxpipe_config::StageKind::get(k).is_some_and(|k| k.local))
                .collect();
            (!kinds.is_empty()).then(|| format!("{} (`{}`)", p.label, kinds.join("`, `")))
        })
        .collect();
    (!local.is_empty()).then(|| {
        format!(
            "> **Note:** calls ran {} at once and {} compute on this machine: their latencies include \
             CPU contention between calls. Run with `--concurrency 1` for latency figures.\n",
            r.concurrency,
            local.join(", ")
        )
    })
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
    /// values, or fewer than [`MIN_SAMPLES_FOR_CI`] pairs or values per side: a bootstrap of
    /// one or two samples gives a degenerate interval that would "exclude zero").
    pub ci: Option<DiffCi>,
    /// `median(other) − median(A)`, also when there are too few samples for an interval.
    pub diff: Option<f64>,
    /// Turns measured in both pipelines (same scenario, run and turn); when there are any, the
    /// interval is a paired bootstrap over them, else an unpaired one over all turns.
    pub pairs: usize,
}

/// Fewest samples (pairs, or values on each side when unpaired) for a confidence interval and
/// a verdict.
pub const MIN_SAMPLES_FOR_CI: usize = 3;

/// What `run_ab` produced.
#[derive(Debug, Clone)]
pub struct AbReport {
    /// The output directory.
    pub out_dir: PathBuf,
    /// `report.md`.
    pub report: PathBuf,
    /// `report.html`: the report with every turn's audio, transcripts, tools and checks.
    pub html: PathBuf,
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
    let html = crate::html::write(out, r, &comparisons, &plots)?;
    Ok(AbReport {
        out_dir: out.to_path_buf(),
        report,
        html,
        results,
        plots,
        calls: r.calls.to_vec(),
        comparisons,
    })
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
            let diff = ci.map(|c| c.diff);
            let enough = if pairs.is_empty() {
                a.len().min(b.len()) >= MIN_SAMPLES_FOR_CI
            } else {
                pairs.len() >= MIN_SAMPLES_FOR_CI
            };
            let ci = ci.filter(|_| enough);
            let (metric, baseline, other) = (name.to_string(), base.clone(), p.label.clone());
            out.push(Comparison { metric, baseline, other, ci, diff, pairs: pairs.len() });
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
    // One group per (scenario, run), in run order, as wide as its longest call.
    let mut groups: Vec<(String, usize, Group)> = Vec::new();
    for c in r.calls {
        match groups.iter_mut().find(|(s, run, _)| *s == c.scenario && *run == c.run) {
            Some((_, _, g)) => g.turns = g.turns.max(c.turns.len()),
            None => {
                let name = if r.runs > 1 { format!("{} #{}", c.scenario, c.run) } else { c.scenario.clone() };
                groups.push((c.scenario.clone(), c.run, Group { name, turns: c.turns.len() }));
            }
        }
    }
    let timeline: Vec<GroupedSeries> = r
        .pipelines
        .iter()
        .map(|p| GroupedSeries {
            name: p.display(),
            groups: groups
                .iter()
                .map(|(scenario, run, _)| {
                    r.calls
                        .iter()
                        .find(|c| c.pipeline == p.label && c.scenario == *scenario && c.run == *run)
                        .map(|c| {
                            c.turns.iter().map(|t| if c.error.is_some() { None } else { v2v(t) }).collect()
                        })
                        .unwrap_or_default()
                })
                .collect(),
        })
        .collect();
    let groups: Vec<Group> = groups.into_iter().map(|(_, _, g)| g).collect();
    let tl = out.join("latency_timeline.svg");
    plot::timeline(&tl, "Voice-to-voice latency by turn", &groups, &timeline)?;
    let breakdown = crate::report_sections::write_breakdown_plot(out, r)?;
    Ok(vec![cdf, tl, breakdown])
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
    if let Some(note) = contention_note(r) {
        let _ = writeln!(s, "{note}");
    }
    if r.fakes {
        crate::report_sections::profiles(&mut s, r.pipelines);
    }
    latency_table(&mut s, r, comparisons);
    crate::report_sections::breakdown(&mut s, r, plots);
    let _ = writeln!(s, "\n## Verdicts\n");
    if r.fakes {
        if let Some(warning) = crate::report_sections::profile_mismatch(r.pipelines) {
            let _ = writeln!(s, "{warning}\n");
        }
        let _ = writeln!(
            s,
            "Offline run: each provider's time is its fake's profile (above), so a verdict says what \
             these pipelines do *given those figures*; the stages it comes from are in \"Where the time goes\".\n"
        );
    }
    let verdicts = verdicts(comparisons);
    for (metric, rest) in &verdicts {
        let _ = writeln!(s, "- `{metric}`: {rest}");
    }
    if verdicts.is_empty() {
        let _ = writeln!(s, "No difference whose interval excludes zero.");
    }
    quality_table(&mut s, r);
    if let Some(judge) = r.judge {
        let labels: Vec<String> = r.pipelines.iter().map(|p| p.label.clone()).collect();
        crate::judge::markdown(&mut s, judge, &labels, r.calls);
    }
    crate::cost::markdown(&mut s, r);
    settings_diff(&mut s, r.pipelines);
    let _ = writeln!(s, "\n## Plots\n");
    for p in plots.iter().filter(|p| !p.ends_with(crate::report_sections::BREAKDOWN_SVG)) {
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

/// The verdicts: `(metric, "B is higher than A by … (95 % CI …).")` for every difference whose
/// interval excludes zero.
pub(crate) fn verdicts(comparisons: &[Comparison]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in comparisons {
        let Some(ci) = c.ci.filter(|ci| ci.excludes_zero()) else { continue };
        let unit = METRICS.iter().find(|m| m.0 == c.metric).map_or("", |m| m.1);
        let word = if ci.diff > 0.0 { "higher" } else { "lower" };
        out.push((
            c.metric.clone(),
            format!(
                "{} is {word} than {} by {:.0} {unit} (95 % CI {:+.0} … {:+.0}).",
                c.other,
                c.baseline,
                ci.diff.abs(),
                ci.low,
                ci.high
            ),
        ));
    }
    out
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
            let c = comparisons.iter().find(|c| c.metric == *name && c.other == p.label);
            let cell = match (c.and_then(|c| c.ci), c.and_then(|c| c.diff)) {
                (Some(ci), _) => format!("{:+.0} [{:+.0}, {:+.0}]", ci.diff, ci.low, ci.high),
                (None, Some(diff)) => format!("{diff:+.0} (too few samples for an interval)"),
                (None, None) => "–".into(),
            };
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
    let configs: Vec<serde_json::Value> =
        pipelines.iter().map(|p| serde_json::to_value(&p.config).unwrap_or_default()).collect();
    let mut rows = settings_rows(&configs);
    let offsets: Vec<String> =
        pipelines.iter().map(|p| format!("{:+}", p.fake_delay.first_audio_ms)).collect();
    if offsets.windows(2).any(|w| w[0] != w[1]) {
        rows.push(("(offline fakes) first_audio_ms offset".into(), offsets));
    }
    let _ = writeln!(s, "\n## Settings that differ\n");
    let _ = write!(s, "| setting |");
    for p in pipelines {
        let _ = write!(s, " {} |", p.label);
    }
    let _ = writeln!(s, "\n|---|{}", "---|".repeat(pipelines.len()));
    if rows.is_empty() {
        let _ = writeln!(s, "| (none: same turn, stage and tool settings) |{}", " |".repeat(pipelines.len()));
    }
    for (k, vals) in rows {
        let cells: Vec<String> = vals.iter().map(|v| format!("`{}`", v.replace('|', "\\|"))).collect();
        let _ = writeln!(s, "| {k} | {} |", cells.join(" | "));
    }
}

/// Rows `(setting, value per pipeline)` of the settings that differ between resolved configs.
///
/// Stages are matched by kind, not position (a native pipeline's one stage and a cascade's
/// three do not line up): a kind every pipeline has is compared key by key
/// (`stages[llm.openai].model`); a kind only some have is one row with its settings. The model
/// instructions are compared wherever they live (the Realtime stage or the LLM), so an
/// identical prompt does not show as a difference. `turn` and `tools` are compared key by key.
fn settings_rows(configs: &[serde_json::Value]) -> Vec<(String, Vec<String>)> {
    const UNSET: &str = "(unset)";
    let mut rows = Vec::new();
    let keyed = |flat: Vec<BTreeMap<String, String>>, rows: &mut Vec<(String, Vec<String>)>| {
        let keys: std::collections::BTreeSet<&String> = flat.iter().flat_map(|m| m.keys()).collect();
        for k in keys {
            let vals: Vec<String> =
                flat.iter().map(|m| m.get(k).map_or(UNSET, String::as_str).to_string()).collect();
            if vals.windows(2).any(|w| w[0] != w[1]) {
                rows.push((format!("`{k}`"), vals));
            }
        }
    };
    let turn_tools: Vec<BTreeMap<String, String>> = configs
        .iter()
        .map(|v| {
            let mut m = BTreeMap::new();
            for key in ["turn", "tools"] {
                flatten(key, &v[key], &mut m);
            }
            m
        })
        .collect();
    keyed(turn_tools, &mut rows);

    // Stages by kind (`kind`, `kind#2` for a second stage of the same kind), without their
    // instructions.
    let by_kind: Vec<BTreeMap<String, serde_json::Value>> = configs
        .iter()
        .map(|v| {
            let mut m = BTreeMap::new();
            for stage in v["stages"].as_array().into_iter().flatten() {
                let kind = stage["kind"].as_str().unwrap_or("?");
                let mut name = kind.to_string();
                let mut n = 1;
                while m.contains_key(&name) {
                    n += 1;
                    name = format!("{kind}#{n}");
                }
                let mut stage = stage.clone();
                if let Some(o) = stage.as_object_mut() {
                    o.remove("kind");
                    o.remove("instructions");
                }
                m.insert(name, stage);
            }
            m
        })
        .collect();
    let kinds: std::collections::BTreeSet<&String> = by_kind.iter().flat_map(|m| m.keys()).collect();
    let mut shared = vec![BTreeMap::new(); configs.len()];
    for kind in kinds {
        if by_kind.iter().all(|m| m.contains_key(kind)) {
            for (i, m) in by_kind.iter().enumerate() {
                flatten(&format!("stages[{kind}]"), &m[kind], &mut shared[i]);
            }
        } else {
            let vals = by_kind
                .iter()
                .map(|m| match m.get(kind) {
                    None => "—".to_string(),
                    Some(stage) => {
                        let mut flat = BTreeMap::new();
                        flatten("", stage, &mut flat);
                        let parts: Vec<String> =
                            flat.iter().map(|(k, v)| format!("{}={v}", k.trim_start_matches('.'))).collect();
                        if parts.is_empty() { "(defaults)".to_string() } else { parts.join(", ") }
                    }
                })
                .collect();
            rows.push((format!("stage `{kind}`"), vals));
        }
    }
    keyed(shared, &mut rows);

    let instructions: Vec<String> = configs
        .iter()
        .map(|v| {
            let all: Vec<&str> = v["stages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["instructions"].as_str())
                .collect();
            if all.is_empty() { UNSET.to_string() } else { all.join(" / ") }
        })
        .collect();
    if instructions.windows(2).any(|w| w[0] != w[1]) {
        rows.push(("model instructions".into(), instructions));
    }
    rows
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stages_are_compared_by_kind_and_the_same_prompt_is_not_a_difference() {
        let prompt = "Be brief.";
        let native = json!({"stages": [{"kind": "realtime.openai", "model": "gpt-realtime", "instructions": prompt}],
            "tools": {"t": {"description": "d"}}});
        let cascade = json!({"turn": {"mode": "local"}, "stages": [
            {"kind": "asr.whisper", "model": "tiny"},
            {"kind": "llm.openai", "model": "gpt-4o-mini", "instructions": prompt},
            {"kind": "tts.openai", "voice": "alloy"}],
            "tools": {"t": {"description": "d"}}});
        let rows = settings_rows(&[native.clone(), cascade]);
        let names: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "`turn.mode`",
                "stage `asr.whisper`",
                "stage `llm.openai`",
                "stage `realtime.openai`",
                "stage `tts.openai`"
            ]
        );
        assert_eq!(rows[2].1, ["—", "model=gpt-4o-mini"]);
        assert_eq!(rows[3].1, ["model=gpt-realtime", "—"]);

        // Same kinds: key by key; a different prompt shows once.
        let mut other = native.clone();
        other["stages"][0]["model"] = json!("gpt-realtime-mini");
        other["stages"][0]["instructions"] = json!("Be verbose.");
        let rows = settings_rows(&[native.clone(), other]);
        assert_eq!(
            rows[0],
            (
                "`stages[realtime.openai].model`".into(),
                vec!["gpt-realtime".into(), "gpt-realtime-mini".into()]
            )
        );
        assert_eq!(rows[1].0, "model instructions");
        assert_eq!(rows.len(), 2);
        assert!(settings_rows(&[native.clone(), native]).is_empty());
    }
}
