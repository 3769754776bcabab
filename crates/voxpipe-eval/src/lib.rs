//! `voxpipe ab`: run scripted calls through two or more pipelines and compare them with
//! numbers.
//!
//! 1. [`scenario`]: `scenarios/<name>/scenario.toml`, the caller's turns (WAV or `say` text
//!    rendered with espeak-ng), their timing, planned barge-ins, background noise and what each
//!    turn should produce; [`recording`] cuts one from a recorded call.
//! 2. [`run_ab`]: renders every scenario's input once (all pipelines hear the same audio), runs
//!    every (scenario, run) through every pipeline interleaved (A, B, A, B…, so drift hits all
//!    alike) with bounded concurrency, and records failed calls with their errors.
//! 3. [`metrics`] and [`score`]: per-turn latencies, WER, tool correctness, reply checks, tokens
//!    and audio by meter; [`pricing`] turns them into an estimated cost from an editable table,
//!    [`cost`] into cost and tokens per minute of conversation, flagging stale prices.
//! 4. [`report`]: `report.md` (medians, p90/p95, bootstrap CIs of B−A, verdicts only where the
//!    interval excludes zero, differing settings, failures), `results.jsonl` and SVG plots;
//!    [`html`]: `report.html`, every turn's audio ([`clips`]), transcripts, tools, latencies
//!    and checks side by side.
//!
//! 5. [`judge`] (optional, [`AbOptions::judge`]): an LLM stage of any pipeline scores every
//!    reply against a rubric, 1–5 with a reason, shown per turn and per pipeline with intervals.
//!
//! With [`AbOptions::start_fakes`] every call gets in-process fakes ([`fakes`]), so the whole
//! comparison runs offline, timed by a latency [`profile`] (`published` by default: the
//! providers' reported figures) that the report prints; [`fakes::FakeDelay`] shifts one
//! pipeline's fake latency to check that the harness measures what it claims. [`breakdown`]
//! splits each turn's voice-to-voice time into the stages it waited on.

pub mod breakdown;
pub mod call;
pub mod clips;
pub mod cost;
mod error;
pub mod fakes;
pub mod html;
pub mod judge;
pub mod metrics;
mod plot;
pub mod pricing;
pub mod profile;
pub mod recording;
pub mod render;
pub mod report;
mod report_sections;
pub mod scenario;
pub mod score;
pub mod stats;
pub mod wer;

pub use call::CallRecord;
pub use error::EvalError;
pub use fakes::FakeDelay;
pub use profile::FakeProfile;
pub use report::{AbReport, Comparison};

use call::{CallInput, PipelineUnderTest, run_call};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What to compare and how.
#[derive(Debug, Clone)]
pub struct AbOptions {
    /// The pipeline files, labelled A, B, C… in this order (A is the baseline of every
    /// difference). The same file may appear twice (with different `sets` or fake delays).
    pub pipelines: Vec<PathBuf>,
    /// `--set` overrides per pipeline, by index (shorter than `pipelines` means none for the
    /// rest).
    pub sets: Vec<Vec<String>>,
    /// A scenario directory, or a directory of them.
    pub scenarios_dir: PathBuf,
    /// Runs of every scenario per pipeline. Default 1.
    pub runs: usize,
    /// Where the report, results and per-call files go.
    pub out_dir: PathBuf,
    /// Calls running at once. Default 1 (latency is most faithful with one call at a time).
    pub concurrency: usize,
    /// Environment for the pipelines (API key variables).
    pub env: Vec<(String, String)>,
    /// Start the Realtime, chat and speech fakes in-process for every call and point the
    /// pipelines at them (offline mode).
    pub start_fakes: bool,
    /// Fake latency offsets per pipeline, by index (offline mode only), on top of the profile.
    pub fake_delays: Vec<FakeDelay>,
    /// The fakes' latency profile per pipeline, by index (offline mode only); a pipeline
    /// without one gets [`FakeProfile::published`].
    pub fake_profiles: Vec<FakeProfile>,
    /// The price table. Default: `<scenarios_dir>/pricing.toml` when it exists; without one
    /// the report has no cost figures.
    pub pricing: Option<PathBuf>,
    /// A judge file (`[judge]`, see [`judge`]): an LLM scores every reply. Default: none.
    pub judge: Option<PathBuf>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl AbOptions {
    /// Options with defaults: one run, concurrency 1, no fakes (`published` timing when they
    /// are started), no pricing, progress bar on.
    pub fn new(pipelines: Vec<PathBuf>, scenarios_dir: PathBuf, out_dir: PathBuf) -> Self {
        Self {
            pipelines,
            sets: Vec::new(),
            scenarios_dir,
            runs: 1,
            out_dir,
            concurrency: 1,
            env: Vec::new(),
            start_fakes: false,
            fake_delays: Vec::new(),
            fake_profiles: Vec::new(),
            pricing: None,
            judge: None,
            progress: true,
        }
    }
}

/// The label of pipeline `i`: `A`, `B`, … `Z`, then `P27`, `P28`…
pub fn label(i: usize) -> String {
    if i < 26 { char::from(b'A' + i as u8).to_string() } else { format!("P{}", i + 1) }
}

/// Parses a per-pipeline argument `LABEL=VALUE` or `LABEL:VALUE` (`A=+200`,
/// `B:stages[0].voice=ash`) into the pipeline index and the value.
pub fn parse_per_pipeline(arg: &str, pipelines: usize) -> Result<(usize, String), EvalError> {
    let at = arg.find([':', '=']).ok_or_else(|| {
        EvalError::Options(format!("`{arg}`: expected LABEL=VALUE or LABEL:VALUE with LABEL one of A, B…"))
    })?;
    let (name, value) = (&arg[..at], &arg[at + 1..]);
    let index = (0..pipelines).find(|i| label(*i).eq_ignore_ascii_case(name)).ok_or_else(|| {
        EvalError::Options(format!("`{arg}`: no pipeline labelled `{name}` (have {pipelines})"))
    })?;
    Ok((index, value.to_string()))
}

/// Parses a fake delay value: `+200`, `-50` or `200` ms.
pub fn parse_delay_ms(value: &str) -> Result<i64, EvalError> {
    value
        .trim_start_matches('+')
        .parse()
        .map_err(|_| EvalError::Options(format!("`{value}`: expected a delay in ms such as +200 or -50")))
}

/// Runs the comparison and writes the report.
///
/// # Errors
/// Bad options, unreadable scenarios or pipeline files, audio that cannot be rendered, or an
/// output directory that cannot be written. A call that fails is not an error: it is listed
/// in the report with its message.
pub async fn run_ab(opts: AbOptions) -> Result<AbReport, EvalError> {
    if opts.pipelines.is_empty() {
        return Err(EvalError::Options("give at least one pipeline file".into()));
    }
    let scenarios = scenario::load_scenarios(&opts.scenarios_dir)?;
    let pipelines: Vec<PipelineUnderTest> = opts
        .pipelines
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let sets = opts.sets.get(i).cloned().unwrap_or_default();
            let delay = opts.fake_delays.get(i).copied().unwrap_or_default();
            let profile = opts.fake_profiles.get(i).cloned().unwrap_or_else(FakeProfile::published);
            PipelineUnderTest::resolve(label(i), path.clone(), sets, &opts.env, profile, delay)
        })
        .collect::<Result<_, _>>()?;
    let default_prices = opts.scenarios_dir.join("pricing.toml");
    let prices = opts.pricing.clone().or_else(|| default_prices.is_file().then_some(default_prices));
    let pricing = prices.as_deref().map(pricing::PriceTable::load).transpose()?;
    let judge = opts.judge.as_deref().map(|path| judge::Judge::load(path, &opts.env)).transpose()?;
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| EvalError::io(&opts.out_dir, e))?;

    let mut rendered = Vec::with_capacity(scenarios.len());
    for s in &scenarios {
        let wav = opts.out_dir.join("scenarios").join(format!("{}.wav", s.scenario.name));
        rendered.push(render::render(s, &wav).await?);
    }

    let runs = opts.runs.max(1);
    let total = (runs * scenarios.len() * pipelines.len()) as u64;
    let bar = progress_bar(opts.progress, total);
    let shared = Arc::new((scenarios, rendered, pipelines));
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut order = 0usize;
    // Interleaved: run 1 of scenario 1 through A, B…, then scenario 2, …, then run 2.
    for run in 1..=runs {
        for si in 0..shared.0.len() {
            for pi in 0..shared.2.len() {
                let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
                let (shared, bar, env) = (shared.clone(), bar.clone(), opts.env.clone());
                let dir = call_dir(&opts.out_dir, &shared.2[pi].label, &shared.0[si].scenario.name, run);
                let start_fakes = opts.start_fakes;
                tasks.spawn(async move {
                    let (scenarios, rendered, pipelines) = &*shared;
                    let input = CallInput {
                        scenario: &scenarios[si],
                        rendered: &rendered[si],
                        run,
                        dir,
                        env: &env,
                        start_fakes,
                    };
                    bar.set_message(format!(
                        "{} · {} · run {run}",
                        pipelines[pi].label, scenarios[si].scenario.name
                    ));
                    let (record, _events) = run_call(&pipelines[pi], input).await;
                    bar.inc(1);
                    drop(permit);
                    (order, record)
                });
                order += 1;
            }
        }
    }
    let mut records = Vec::with_capacity(order);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(r) => records.push(r),
            Err(e) => return Err(EvalError::Options(format!("a call task panicked: {e}"))),
        }
    }
    bar.finish_and_clear();
    records.sort_by_key(|(i, _)| *i);
    let (scenarios, rendered, pipelines) = &*shared;
    let mut calls: Vec<CallRecord> = records.into_iter().map(|(_, r)| r).collect();
    if let Some(table) = &pricing {
        for c in &mut calls {
            let p = pipelines.iter().find(|p| p.label == c.pipeline).expect("every call has its pipeline");
            let models = p.stage_models();
            c.turn_costs = c.turns.iter().map(|t| table.turn_cost(&models, t).ok()).collect();
        }
    }
    if let Some(judge) = &judge {
        if opts.progress {
            eprintln!("judging {} calls' replies with {}", calls.len(), judge.describe);
        }
        judge::judge_calls(judge, scenarios, &mut calls).await;
    }
    let ctx = report::ReportInput {
        pipelines,
        scenarios,
        rendered,
        calls: &calls,
        pricing: pricing.as_ref(),
        runs,
        concurrency: opts.concurrency.max(1),
        fakes: opts.start_fakes,
        run_day: pricing::today(),
        judge: judge.as_ref(),
    };
    report::write(&opts.out_dir, &ctx)
}

fn call_dir(out: &std::path::Path, label: &str, scenario: &str, run: usize) -> PathBuf {
    out.join(label).join(scenario).join(run.to_string())
}

fn progress_bar(visible: bool, total: u64) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} calls  {msg}")
    {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_pipeline_arguments_name_their_pipeline_by_label() {
        assert_eq!(parse_per_pipeline("B=+200", 2).unwrap(), (1, "+200".into()));
        assert_eq!(
            parse_per_pipeline("a:stages[0].voice=ash", 2).unwrap(),
            (0, "stages[0].voice=ash".into())
        );
        assert!(parse_per_pipeline("C=1", 2).unwrap_err().to_string().contains("no pipeline labelled `C`"));
        assert_eq!(parse_delay_ms("+200").unwrap(), 200);
        assert_eq!(parse_delay_ms("-50").unwrap(), -50);
        assert_eq!(label(0), "A");
        assert_eq!(label(26), "P27");
    }
}
