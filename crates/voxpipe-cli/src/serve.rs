//! `voxpipe serve`, `voxpipe call twilio` and `voxpipe fake twilio`.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voxpipe_twilio::carrier::{CallReport, CallerFault, CallerOptions, Carrier, place_call};

/// `voxpipe serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The serve file.
    pub config: PathBuf,
    /// Listen here instead of the file's `listen` (e.g. 127.0.0.1:0 for a free port).
    #[arg(long)]
    pub listen: Option<String>,
    /// Use this public URL instead of the file's `public_url`.
    #[arg(long)]
    pub public_url: Option<String>,
}

/// Loads the serve file, with command-line overrides.
pub fn load_serve(args: &ServeArgs) -> anyhow::Result<voxpipe_serve::config::Loaded> {
    let mut loaded = voxpipe_serve::config::load(&args.config, &std::env::vars().collect::<Vec<_>>())?;
    if let Some(l) = &args.listen {
        loaded.config.listen = l.clone();
    }
    if let Some(u) = &args.public_url {
        loaded.config.public_url = u.clone();
    }
    Ok(loaded)
}

/// `voxpipe serve`.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let loaded = load_serve(&args)?;
    let env = voxpipe_config::Env::from_process();
    for (i, (entry, p)) in loaded.pipelines.iter().enumerate() {
        voxpipe_config::registry::validate(p, &env).await.map_err(|e| {
            anyhow::anyhow!("{}: pipelines[{i}] ({}): {e}", args.config.display(), entry.name)
        })?;
    }
    let app = voxpipe_serve::App::new(loaded, env)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A page link for whoever started the server: a short-lived session token (never the
    // operator's key) in the fragment, which browsers do not send to servers or logs.
    let page = app.loaded.config.web.enabled.then(|| app.web.tokens.mint());
    let task = tokio::spawn(voxpipe_serve::serve(app, CancellationToken::new(), Some(tx)));
    if let Ok(addr) = rx.await {
        println!("voxpipe serve listening on http://{addr}");
        if let Some((token, _)) = page {
            println!("talk to it in a browser: http://{addr}/#token={token}");
        }
    }
    task.await?
}

/// `voxpipe check` on a serve file: the file and every pipeline it names.
pub async fn check_serve(path: &Path) -> anyhow::Result<()> {
    let loaded = voxpipe_serve::config::load(path, &std::env::vars().collect::<Vec<_>>())?;
    let env = voxpipe_config::Env::from_process();
    for (i, (entry, p)) in loaded.pipelines.iter().enumerate() {
        voxpipe_config::registry::validate(p, &env)
            .await
            .map_err(|e| anyhow::anyhow!("{}: pipelines[{i}] ({}): {e}", path.display(), entry.name))?;
    }
    println!("# {} — serve file, resolved, valid", path.display());
    print!("{}", toml::to_string_pretty(&loaded.config)?);
    for (entry, _) in &loaded.pipelines {
        println!("# pipeline {}: {} — valid", entry.name, entry.file.display());
    }
    Ok(())
}

/// `voxpipe call …`.
#[derive(Debug, Subcommand)]
pub enum CallCommand {
    /// Twilio-shaped callers: each signs the voice webhook like Twilio, opens the media
    /// stream, streams the WAV in real time as μ-law and plays what it hears at 1x, echoing
    /// marks only once their audio has played. Also serves the REST API for its calls.
    Twilio(CallArgs),
}

/// `voxpipe call twilio` arguments.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The voice webhook URL (`http://127.0.0.1:8080/twilio/voice`).
    pub url: String,
    /// The caller's audio (any WAV; resampled to 8 kHz).
    #[arg(long)]
    pub input: PathBuf,
    /// How many calls.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Start calls this many ms apart.
    #[arg(long, default_value_t = 0)]
    pub stagger_ms: u64,
    /// Stay on the line this long after the audio ends, ms.
    #[arg(long, default_value_t = 5000)]
    pub linger_ms: u64,
    /// Write each call's heard audio (`heard-N.wav`), timing log (`timing-N.jsonl`) and
    /// report (`report.jsonl`) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Account SID (the server's `TWILIO_ACCOUNT_SID`).
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub account_sid: String,
    /// Environment variable holding the auth token that signs the requests.
    #[arg(long, default_value = "TWILIO_AUTH_TOKEN")]
    pub auth_token_env: String,
    /// The caller's number.
    #[arg(long, default_value = "+15550100")]
    pub from: String,
    /// The number called.
    #[arg(long, default_value = "+15550199")]
    pub to: String,
    /// A key press: `MS:DIGIT` (repeatable).
    #[arg(long = "dtmf", value_name = "MS:DIGIT")]
    pub dtmf: Vec<String>,
    /// Serve the REST API (hang up, redirect) for these calls on 127.0.0.1:PORT (0: a free one).
    #[arg(long)]
    pub api_port: Option<u16>,
    /// Misbehave on every call: `hangup-mid-reply[:MS]` (drop the line, no `stop`, once the
    /// agent has been heard MS, default 500), `malformed-media@MS` (a media payload that is
    /// not base64), `oversize-media@MS:BYTES`, `silence@MS` (stop sending media, keep the line).
    #[arg(long, value_name = "SPEC", value_parser = parse_fault)]
    pub fault: Option<CallerFault>,
}

fn parse_fault(spec: &str) -> Result<CallerFault, String> {
    spec.parse()
}

/// `voxpipe call twilio`: runs the calls, prints one report line each and a summary.
pub async fn call(cmd: CallCommand) -> anyhow::Result<()> {
    let CallCommand::Twilio(a) = cmd;
    let token =
        std::env::var(&a.auth_token_env).with_context(|| format!("{} is not set", a.auth_token_env))?;
    let carrier = Carrier::new(&a.account_sid, &token);
    let stop = CancellationToken::new();
    if let Some(port) = a.api_port {
        let addr = carrier.serve_rest(([127, 0, 0, 1], port).into(), stop.clone()).await?;
        println!("Twilio REST API for these calls: http://{addr}");
    }
    let (audio, _) = voxpipe_transport::wav::read_wav(&a.input, Some(8000))
        .with_context(|| format!("reading {}", a.input.display()))?;
    let audio = Arc::new(audio);
    let dtmf = a
        .dtmf
        .iter()
        .map(|d| {
            let (ms, digit) = d.split_once(':').with_context(|| format!("--dtmf {d}: expected MS:DIGIT"))?;
            Ok((
                ms.parse::<u64>().with_context(|| format!("--dtmf {d}: expected MS:DIGIT"))?,
                digit.to_string(),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(o) = &a.out {
        std::fs::create_dir_all(o)?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.count {
        let opts = CallerOptions {
            webhook: a.url.clone(),
            from: a.from.clone(),
            to: a.to.clone(),
            audio: audio.clone(),
            linger: Duration::from_millis(a.linger_ms),
            dtmf: dtmf.clone(),
            heard_wav: a.out.as_ref().map(|o| o.join(format!("heard-{i}.wav"))),
            timing_log: a.out.as_ref().map(|o| o.join(format!("timing-{i}.jsonl"))),
            sign_with: None,
            fault: a.fault.clone(),
        };
        let carrier = carrier.clone();
        tasks.spawn(async move { (i, place_call(&carrier, &opts).await) });
        if a.stagger_ms > 0 {
            tokio::time::sleep(Duration::from_millis(a.stagger_ms)).await;
        }
    }
    let mut reports: Vec<(usize, CallReport)> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        reports.push(r?);
    }
    reports.sort_by_key(|r| r.0);
    let mut lines = String::new();
    for (_, r) in &reports {
        lines += &serde_json::to_string(r)?;
        lines.push('\n');
    }
    if let Some(o) = &a.out {
        std::fs::write(o.join("report.jsonl"), &lines)?;
    }
    print!("{lines}");
    let ok = reports.iter().filter(|(_, r)| r.status == "completed").count();
    let answered = reports.iter().filter(|(_, r)| r.first_audio_ms.is_some()).count();
    eprintln!("{} calls: {ok} completed, {answered} heard the agent", reports.len());
    stop.cancel();
    if ok < reports.len() {
        anyhow::bail!("{} of {} calls did not complete", reports.len() - ok, reports.len());
    }
    Ok(())
}

/// `voxpipe fake twilio`: the REST Calls API alone (calls placed by `voxpipe call twilio`
/// in another process are not known to it: give that command `--api-port` instead).
pub async fn fake_twilio(port: u16, account_sid: &str, token: &str) -> anyhow::Result<()> {
    let carrier = Carrier::new(account_sid, token);
    let stop = CancellationToken::new();
    let addr = carrier.serve_rest(([127, 0, 0, 1], port).into(), stop.clone()).await?;
    println!("fake Twilio REST API at http://{addr} (account {account_sid})");
    tokio::signal::ctrl_c().await?;
    stop.cancel();
    Ok(())
}
