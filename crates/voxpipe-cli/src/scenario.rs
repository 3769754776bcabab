//! `voxpipe scenario from-recording`: a scenario directory from a recorded call.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use voxpipe_eval::recording::{CutOptions, scenario_from_ranges, speech_ranges};
use voxpipe_eval::scenario::SCENARIO_FILE;

/// `voxpipe scenario …`.
#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Cut the caller's turns out of a recorded call (found by the VAD on the caller's channel)
    /// into a scenario directory for `voxpipe ab`, each turn at its recorded time.
    FromRecording(FromRecording),
}

/// `voxpipe scenario from-recording` arguments.
#[derive(Debug, Args)]
pub struct FromRecording {
    /// The recording: any WAV voxpipe reads (PCM, float, μ-law, A-law).
    pub recording: PathBuf,
    /// The scenario directory to write (created; the recording is copied into it).
    #[arg(long)]
    pub out: PathBuf,
    /// The caller's channel, from 0 (default: all channels mixed).
    #[arg(long)]
    pub channel: Option<u16>,
    /// The VAD: `silero` or `energy` (default: Silero when pulled, else energy).
    #[arg(long, value_parser = parse_vad)]
    pub vad: Option<voxpipe_turn::VadKind>,
    /// Silence that ends a caller turn, ms.
    #[arg(long, default_value_t = CutOptions::default().min_silence_ms)]
    pub min_silence_ms: u64,
    /// Speech shorter than this is dropped, ms.
    #[arg(long, default_value_t = CutOptions::default().min_speech_ms)]
    pub min_speech_ms: u64,
    /// Replace an existing scenario.toml.
    #[arg(long)]
    pub force: bool,
}

fn parse_vad(s: &str) -> Result<voxpipe_turn::VadKind, String> {
    match s {
        "silero" => Ok(voxpipe_turn::VadKind::Silero),
        "energy" => Ok(voxpipe_turn::VadKind::Energy),
        other => Err(format!("unknown VAD `{other}`, expected `silero` or `energy`")),
    }
}

/// Runs a `voxpipe scenario` command.
pub fn run(cmd: ScenarioCommand) -> anyhow::Result<()> {
    match cmd {
        ScenarioCommand::FromRecording(args) => from_recording(args),
    }
}

fn from_recording(args: FromRecording) -> anyhow::Result<()> {
    let file_name = args.recording.file_name().context("the recording's path names no file")?.to_owned();
    let scenario_file = args.out.join(SCENARIO_FILE);
    if scenario_file.exists() && !args.force {
        bail!("{} exists (--force replaces it)", scenario_file.display());
    }
    let mut vad = voxpipe_config::vad(args.vad).map_err(|e| anyhow::anyhow!("--vad: {e}"))?;
    let (samples, _) =
        voxpipe_transport::wav::read_wav_channel(&args.recording, args.channel, Some(vad.sample_rate()))?;
    let opts = CutOptions {
        min_silence_ms: args.min_silence_ms,
        min_speech_ms: args.min_speech_ms,
        ..Default::default()
    };
    let ranges = speech_ranges(&samples, vad.as_mut(), &opts)?;
    if ranges.is_empty() {
        bail!(
            "{}: the VAD found no speech{}",
            args.recording.display(),
            args.channel.map(|c| format!(" on channel {c}")).unwrap_or_default()
        );
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let copy = args.out.join(&file_name);
    let same = copy.canonicalize().ok() == args.recording.canonicalize().ok();
    if !same {
        std::fs::copy(&args.recording, &copy)
            .with_context(|| format!("copying {} to {}", args.recording.display(), copy.display()))?;
    }
    let scenario = scenario_from_ranges(&ranges, PathBuf::from(&file_name), args.channel);
    let text = format!(
        "# Written by `voxpipe scenario from-recording`. Add what each turn should produce\n\
         # (`transcript`, `tool`, `reply_must_contain`…; see crates/voxpipe-eval/src/scenario.rs)\n\
         # to score it; without them the turns are measured for latency only.\n{}",
        toml::to_string(&scenario)?
    );
    std::fs::write(&scenario_file, text).with_context(|| format!("writing {}", scenario_file.display()))?;
    println!("{}: {} caller turns", scenario_file.display(), ranges.len());
    for (i, (from, to)) in ranges.iter().enumerate() {
        println!("  turn {}: {:.2}–{:.2} s", i + 1, *from as f64 / 1000.0, *to as f64 / 1000.0);
    }
    Ok(())
}
