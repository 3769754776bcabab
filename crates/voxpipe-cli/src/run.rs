//! `voxpipe run` and `voxpipe check`.

use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use voxpipe_config::{LoadOptions, PipelineConfig};
use voxpipe_core::{Event, EventKind, Observed, RunOptions};

/// `voxpipe run` arguments.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Caller audio: a WAV file (overrides `[input]`).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Where to write the assistant's audio (WAV; overrides `[output]`).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Where to write the JSONL event log (overrides `[events]`).
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Apply `[profiles.NAME]` of the file.
    #[arg(long)]
    pub profile: Option<String>,
    /// Override a key: `--set stages[0].voice=ash` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

impl RunArgs {
    /// Layering options: `--input/--output/--events` are sugar for `--set`s.
    fn load_options(&self, env: Vec<(String, String)>) -> LoadOptions {
        let mut sets = self.sets.clone();
        if let Some(p) = &self.input {
            sets.push("input.kind=wav".into());
            sets.push(format!("input.path={}", p.display()));
        }
        if let Some(p) = &self.output {
            sets.push("output.kind=wav".into());
            sets.push(format!("output.path={}", p.display()));
        }
        if let Some(p) = &self.events {
            sets.push(format!("events.path={}", p.display()));
        }
        LoadOptions { profile: self.profile.clone(), sets, env }
    }
}

/// What the call said and measured, for the closing printout.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// `user: …` / `assistant: …` / `tool: …` lines in conversation order: a caller's words
    /// come before the reply to them even when their transcript arrived after it.
    pub transcript: Vec<String>,
    /// `(turn, name, ms)` metrics in order.
    pub metrics: Vec<(u32, String, u64)>,
    /// How the call ended.
    pub end_reason: Option<String>,
    /// Where the reply to the caller's last turn began in `transcript`, while that turn's
    /// transcript has not arrived.
    reply_at: Option<usize>,
    /// The caller's last turn ended and its transcript has not arrived.
    awaiting_user: bool,
}

/// Adds what the summary needs from `event`.
fn summarize(s: &mut Summary, event: &Event) {
    match &event.kind {
        // A turn's transcript may arrive after the reply to it began (the model and the
        // transcription run side by side): it goes before that reply.
        EventKind::SpeechStopped { .. } => {
            s.awaiting_user = true;
            s.reply_at = None;
        }
        EventKind::ResponseStarted(_) if s.awaiting_user && s.reply_at.is_none() => {
            s.reply_at = Some(s.transcript.len());
        }
        EventKind::UserTranscript(t) if t.is_final => {
            let line = format!("user:      {}", t.text.trim());
            match s.reply_at.take().filter(|_| t.item.is_some()) {
                Some(at) => s.transcript.insert(at, line),
                None => s.transcript.push(line),
            }
            s.awaiting_user = false;
        }
        EventKind::AssistantTranscript(t) if t.is_final => {
            s.transcript.push(format!("assistant: {}", t.text.trim()))
        }
        EventKind::ToolCall(c) => s.transcript.push(format!("tool:      {}({})", c.name, c.arguments)),
        EventKind::ToolResult(r) => {
            let verdict = if r.is_error { "failed" } else { "->" };
            s.transcript.push(format!("tool:      {} {verdict} {}", r.name, r.output.trim()))
        }
        EventKind::Metric { name, turn, value_ms } => s.metrics.push((*turn, name.clone(), *value_ms)),
        EventKind::CallEnded { reason } => s.end_reason = Some(reason.clone()),
        _ => {}
    }
}

/// Loads, builds and runs a pipeline; returns what the call said and measured.
pub async fn run_pipeline(
    args: &RunArgs,
    env: Vec<(String, String)>,
    opts: RunOptions,
) -> anyhow::Result<(PipelineConfig, Summary)> {
    run_pipeline_from(args, env, opts, None).await
}

/// As [`run_pipeline`], with the caller's audio from `source` instead of the file's `[input]`
/// when given (e.g. the microphone).
pub async fn run_pipeline_from(
    args: &RunArgs,
    env: Vec<(String, String)>,
    opts: RunOptions,
    source: Option<Box<dyn voxpipe_core::Source>>,
) -> anyhow::Result<(PipelineConfig, Summary)> {
    let secrets = voxpipe_config::Env::from_vars(env.clone());
    let config = voxpipe_config::load(&args.pipeline, &args.load_options(env))?;
    let mut pipeline = voxpipe_config::build(&config, &secrets)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.pipeline.display()))?;
    if let Some(source) = source {
        pipeline.source = source;
    }
    let summary = Arc::new(Mutex::new(Summary::default()));
    let collect = summary.clone();
    pipeline.events = Some(Box::new(Observed::new(pipeline.events.take(), move |event: &Event| {
        summarize(&mut collect.lock().unwrap_or_else(|e| e.into_inner()), event);
        Ok(())
    })));
    let result = pipeline.run(opts).await;
    let summary = summary.lock().unwrap_or_else(|e| e.into_inner()).clone();
    result?;
    Ok((config, summary))
}

/// `voxpipe run` (`--mic`: live from the default microphone).
pub async fn run_command(args: RunArgs, mic: bool) -> anyhow::Result<()> {
    let opts = RunOptions { handle_ctrl_c: true, cancel: None };
    let source = if mic { Some(microphone()?) } else { None };
    let (config, summary) = run_pipeline_from(&args, std::env::vars().collect(), opts, source).await?;
    if !args.quiet {
        print_summary(&config, &summary);
    }
    Ok(())
}

/// Prints the call's transcript and metrics: on stdout, or on stderr when stdout carries the
/// assistant's audio (`[output] kind = "stdout"`), so text never lands in the audio stream.
fn print_summary(config: &PipelineConfig, s: &Summary) {
    let mut text = format!("── {} ──\n", config.name);
    for line in &s.transcript {
        text += &format!("{line}\n");
    }
    for (turn, name, ms) in &s.metrics {
        text += &format!("turn {turn}: {name} = {ms} ms\n");
    }
    if let voxpipe_config::OutputConfig::Wav(w) = &config.output {
        text += &format!("reply audio: {}\n", w.path.display());
    }
    if let Some(e) = &config.events {
        text += &format!("event log:   {}\n", e.path.display());
    }
    match config.output {
        voxpipe_config::OutputConfig::Stdout(_) => eprint!("{text}"),
        voxpipe_config::OutputConfig::Wav(_) => print!("{text}"),
    }
}

/// `voxpipe check --kinds`: the stage-kind table, one row per kind, in aligned columns.
pub fn kinds_table() -> String {
    let mut rows = vec![["kind", "role", "feature", "fake", "what it is"].map(String::from)];
    rows.extend(voxpipe_config::STAGE_KINDS.iter().map(|k| {
        let feature = match k.feature {
            Some(f) => format!("{f} ({})", if k.built { "built" } else { "not built" }),
            None => "-".into(),
        };
        let fake = k.fake.map_or_else(|| "-".into(), |f| format!("voxpipe fake {f}"));
        [k.name.into(), k.role.name().into(), feature, fake, k.summary.trim().into()]
    }));
    let widths: Vec<usize> =
        (0..4).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        for (cell, w) in r.iter().zip(&widths) {
            out.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(&r[4]);
        out.push('\n');
    }
    out
}

/// `voxpipe check`: the resolved pipeline, or the first error with file and key.
pub async fn check_command(
    pipeline: &Path,
    profile: Option<String>,
    sets: Vec<String>,
) -> anyhow::Result<()> {
    let opts = LoadOptions { profile, sets, env: std::env::vars().collect() };
    let config = voxpipe_config::load(pipeline, &opts)?;
    voxpipe_config::registry::validate(&config, &voxpipe_config::Env::from_process())
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", pipeline.display()))?;
    // The config holds only the *names* of secret variables, never their values.
    let text = toml::to_string_pretty(&config)?;
    println!("# {} — resolved, valid", pipeline.display());
    print!("{text}");
    Ok(())
}

/// The default microphone, opened before the pipeline is built so a missing device fails fast.
#[cfg(feature = "mic")]
fn microphone() -> anyhow::Result<Box<dyn voxpipe_core::Source>> {
    Ok(Box::new(voxpipe_transport::mic::MicSource::open()?))
}

#[cfg(not(feature = "mic"))]
fn microphone() -> anyhow::Result<Box<dyn voxpipe_core::Source>> {
    anyhow::bail!(
        "--mic needs a voxpipe built with the `mic` feature: cargo build --release -p voxpipe-cli --features mic"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxpipe_core::{ResponseStarted, Transcript};

    fn event(kind: EventKind) -> Event {
        Event { t_ms: 0, kind }
    }

    fn said(item: Option<&str>, text: &str) -> Transcript {
        Transcript { item: item.map(std::sync::Arc::from), text: text.into(), is_final: true }
    }

    fn summary(kinds: Vec<EventKind>) -> Vec<String> {
        let mut s = Summary::default();
        for k in kinds {
            summarize(&mut s, &event(k));
        }
        s.transcript
    }

    fn started() -> EventKind {
        EventKind::ResponseStarted(ResponseStarted { response_id: "r".into() })
    }

    #[test]
    fn a_late_user_transcript_is_printed_before_the_reply_to_it() {
        let lines = summary(vec![
            EventKind::SpeechStopped { at_ms: 2000 },
            started(),
            EventKind::AssistantTranscript(said(Some("a1"), "Sure, what is the order number?")),
            EventKind::UserTranscript(said(Some("u1"), "I would like to check my order.")),
            EventKind::SpeechStopped { at_ms: 6000 },
            started(),
            EventKind::AssistantTranscript(said(Some("a2"), "Done.")),
            EventKind::UserTranscript(said(Some("u2"), "It is 42.")),
        ]);
        assert_eq!(
            lines,
            [
                "user:      I would like to check my order.",
                "assistant: Sure, what is the order number?",
                "user:      It is 42.",
                "assistant: Done.",
            ]
        );
    }

    #[test]
    fn transcripts_in_order_and_typed_words_stay_where_they_came() {
        let lines = summary(vec![
            // A cascade: the transcript comes first; a noise over the reply has none.
            EventKind::SpeechStopped { at_ms: 2000 },
            EventKind::UserTranscript(said(Some("u1"), "Hello.")),
            started(),
            EventKind::AssistantTranscript(said(Some("a1"), "Hi!")),
            EventKind::SpeechStopped { at_ms: 3000 },
            // Keypad digits, sent as text while a reply runs: no item, kept in place.
            started(),
            EventKind::AssistantTranscript(said(Some("a2"), "Go on.")),
            EventKind::UserTranscript(said(None, "1 2 3")),
        ]);
        assert_eq!(lines, ["user:      Hello.", "assistant: Hi!", "assistant: Go on.", "user:      1 2 3"]);
    }
}
