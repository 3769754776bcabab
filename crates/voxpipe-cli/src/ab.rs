//! `voxpipe ab`: run every scenario through two or more pipelines and compare them.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use voxpipe_eval::{AbOptions, FakeDelay, FakeProfile, label, parse_delay_ms, parse_per_pipeline, run_ab};

/// `voxpipe ab` arguments.
#[derive(Debug, Args)]
pub struct AbArgs {
    /// Pipeline files, labelled A, B, C… in this order (A is the baseline).
    #[arg(required = true, num_args = 2..)]
    pub pipelines: Vec<PathBuf>,
    /// A scenario directory, or a directory of them.
    #[arg(long, default_value = "scenarios")]
    pub scenarios: PathBuf,
    /// Runs of every scenario per pipeline.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Where report.md, report.html (with every turn's audio), results.jsonl, the plots and
    /// per-call files go.
    #[arg(long, default_value = "out/ab")]
    pub out: PathBuf,
    /// Calls running at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Per-pipeline override, `A:stages[0].voice=ash` (repeatable).
    #[arg(long = "set", value_name = "LABEL:KEY=VALUE")]
    pub sets: Vec<String>,
    /// Start the Realtime, chat and speech fakes in-process and point the pipelines at them.
    #[arg(long)]
    pub fakes: bool,
    /// Extra time to first audio for a pipeline's fakes, `B=+200` (with `--fakes`), on top of
    /// the profile.
    #[arg(long = "fake-delay", value_name = "LABEL=MS")]
    pub fake_delays: Vec<String>,
    /// The fakes' latency profile (with `--fakes`): `published` (providers' reported figures,
    /// the default), `instant` (near zero) or a profile file (`extends = "published"` plus the
    /// values it changes); `B=slow.toml` sets one pipeline's (repeatable).
    #[arg(long = "fake-profile", value_name = "[LABEL=]PROFILE")]
    pub fake_profiles: Vec<String>,
    /// Price table (default: `<scenarios>/pricing.toml` when present).
    #[arg(long)]
    pub pricing: Option<PathBuf>,
    /// A judge file: an LLM stage of any pipeline scores every reply 1–5 against a rubric
    /// (task completed, factual against the tool results, politeness, brevity), per turn and
    /// per pipeline with intervals. Off by default; the judge calls its configured endpoint
    /// (also with `--fakes`).
    #[arg(long, value_name = "JUDGE.toml")]
    pub judge: Option<PathBuf>,
    /// Replay on a virtual clock (tokio's paused time): exact and instant, for pipelines whose
    /// stages all talk to servers (e.g. with `--fakes`). Refused when a pipeline computes
    /// locally (whisper, llama.cpp, Piper, espeak): that work takes real time the virtual clock
    /// would not see.
    #[arg(long)]
    pub virtual_clock: bool,
}

/// The first pipeline stage that computes locally, if any (for `--virtual-clock`). Warns about
/// `command` tools: their processes run in real time, which the virtual clock skips over.
fn local_stage(args: &AbArgs) -> anyhow::Result<Option<(PathBuf, String)>> {
    for path in &args.pipelines {
        let opts = voxpipe_config::LoadOptions { profile: None, sets: Vec::new(), env: Vec::new() };
        let config = voxpipe_config::load(path, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
        for (name, tool) in &config.tools {
            if serde_json::to_value(tool)?["handler"]["kind"] == "command" {
                tracing::warn!(
                    pipeline = %path.display(),
                    tool = %name,
                    "--virtual-clock: a `command` tool runs a real process; the virtual clock jumps \
                     while it runs, so turns that call it show inflated latency"
                );
            }
        }
        for stage in &config.stages {
            if stage.row().local {
                return Ok(Some((path.clone(), stage.kind().to_string())));
            }
        }
    }
    Ok(None)
}

/// The profile of each of `n` pipelines: `published` unless `--fake-profile PROFILE` (every
/// pipeline) or `--fake-profile LABEL=PROFILE` (one) says otherwise; later flags win.
fn fake_profiles(args: &[String], n: usize) -> anyhow::Result<Vec<FakeProfile>> {
    let mut out = vec![FakeProfile::published(); n];
    for arg in args {
        let labelled = arg.split_once('=').filter(|(l, _)| (0..n).any(|i| label(i).eq_ignore_ascii_case(l)));
        match labelled {
            Some(_) => {
                let (i, v) = parse_per_pipeline(arg, n)?;
                out[i] = FakeProfile::select(&v)?;
            }
            None => {
                let p = FakeProfile::select(arg)?;
                out.iter_mut().for_each(|o| *o = p.clone());
            }
        }
    }
    Ok(out)
}

/// `voxpipe ab --virtual-clock`: the comparison on a paused clock, on its own runtime.
pub fn run_virtual(args: AbArgs) -> anyhow::Result<()> {
    if let Some((path, kind)) = local_stage(&args)? {
        anyhow::bail!(
            "--virtual-clock: {} has a `{kind}` stage, which computes on this machine in real time; \
             run without --virtual-clock",
            path.display()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .context("cannot start the virtual-clock runtime")?;
    rt.block_on(run(args))
}

/// Runs the comparison and prints where the report is.
pub async fn run(args: AbArgs) -> anyhow::Result<()> {
    let n = args.pipelines.len();
    let mut opts = AbOptions::new(args.pipelines.clone(), args.scenarios.clone(), args.out.clone());
    opts.runs = args.runs.max(1);
    opts.concurrency = args.concurrency.max(1);
    opts.env = std::env::vars().collect();
    opts.start_fakes = args.fakes;
    opts.pricing = args.pricing.clone();
    opts.judge = args.judge.clone();
    opts.sets = vec![Vec::new(); n];
    for s in &args.sets {
        let (i, v) = parse_per_pipeline(s, n)?;
        opts.sets[i].push(v);
    }
    opts.fake_delays = vec![FakeDelay::default(); n];
    for d in &args.fake_delays {
        let (i, v) = parse_per_pipeline(d, n)?;
        opts.fake_delays[i].first_audio_ms = parse_delay_ms(&v)?;
    }
    opts.fake_profiles = fake_profiles(&args.fake_profiles, n)?;
    let report = run_ab(opts).await.context("A/B run failed")?;
    println!("report:  {}", report.report.display());
    println!("html:    {}", report.html.display());
    println!("results: {}", report.results.display());
    for p in &report.plots {
        println!("plot:    {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_profiles_default_to_published_and_take_a_label() {
        let p = fake_profiles(&[], 2).unwrap();
        assert!(p.iter().all(|p| p.name == "published"));
        let p = fake_profiles(&["instant".into(), "b=published".into()], 2).unwrap();
        assert_eq!((p[0].name.as_str(), p[1].name.as_str()), ("instant", "published"));
        let e = fake_profiles(&["fastest".into()], 2).unwrap_err().to_string();
        assert!(e.contains("no profile `fastest`"), "{e}");
    }
}
