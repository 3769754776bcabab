//! The `voxpipe` command line: `run`, `check`, `ab`, `scenario`, `models` and `fake`.
//!
//! Exposed as a library too, so end-to-end tests can run a pipeline in-process on a paused
//! (virtual) tokio clock.

mod ab;
mod fake;
mod models;
mod run;
mod scenario;
mod serve;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub use run::{RunArgs, Summary, run_pipeline, run_pipeline_from};

/// voxpipe: voice agents from a pipeline file.
#[derive(Debug, Parser)]
#[command(name = "voxpipe", version, about)]
pub struct Cli {
    /// Log format on stderr (`RUST_LOG` sets the level, default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer live phone calls: one process, many concurrent calls (Twilio Media Streams),
    /// each its own instance of a pipeline named in the serve file.
    Serve(serve::ServeArgs),
    /// Place calls like a carrier does (load and end-to-end testing).
    Call {
        /// Which carrier.
        #[command(subcommand)]
        cmd: serve::CallCommand,
    },
    /// Run a pipeline on its input (a WAV file, stdin…) and write the reply and event log.
    Run {
        /// What to run.
        #[command(flatten)]
        args: RunArgs,
        /// Live: the caller's audio from the default microphone instead of `[input]`, until
        /// Ctrl-C (needs a build with `--features mic`).
        #[arg(long)]
        mic: bool,
    },
    /// Load a pipeline file, print it resolved (secrets never appear) or a precise error.
    Check {
        /// The pipeline file (or a serve file).
        #[arg(required_unless_present = "kinds")]
        pipeline: Option<PathBuf>,
        /// Print the stage kinds this build knows (name, role, feature, fake, summary) instead.
        #[arg(long, conflicts_with = "pipeline")]
        kinds: bool,
        /// Apply `[profiles.NAME]` of the file.
        #[arg(long)]
        profile: Option<String>,
        /// Override a key: `--set stages[0].voice=ash` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Compare pipelines on recorded scenarios: latency, WER, tool correctness, cost.
    Ab(ab::AbArgs),
    /// Make scenarios for `voxpipe ab` (`from-recording CALL.wav --out DIR`).
    Scenario {
        /// What to do.
        #[command(subcommand)]
        cmd: scenario::ScenarioCommand,
    },
    /// Manage the local model cache (`list`, `pull ID…`, `path ID`).
    Models {
        /// What to do.
        #[command(subcommand)]
        cmd: models::ModelsCommand,
    },
    /// Run a local fake of a remote API for offline development.
    Fake {
        /// Which fake.
        #[command(subcommand)]
        which: fake::FakeCommand,
    },
}

fn init_logging(format: LogFormat) {
    // whisper.cpp, llama.cpp and onnxruntime narrate every model load (and each arena they
    // grow) at INFO; keep them to warnings unless RUST_LOG asks for them.
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,whisper_rs=warn,llama_cpp_2=warn,ort=warn".into());
    // Whatever RUST_LOG says, never let HTTP/WebSocket internals log request headers: they
    // carry API keys (tungstenite traces the whole upgrade request).
    for directive in [
        "tungstenite::handshake=off",
        "tokio_tungstenite=info",
        "hyper=info",
        "hyper_util=info",
        "reqwest=info",
        "h2=info",
        "rustls=info",
    ] {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let command = match cli.command {
        // The virtual clock needs its own (paused, single-thread) runtime.
        Command::Ab(args) if args.virtual_clock => return exit_code(ab::run_virtual(args)),
        other => other,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Run { args, mic } => run::run_command(args, mic).await,
            Command::Check { pipeline: None, .. } => {
                print!("{}", run::kinds_table());
                Ok(())
            }
            Command::Check { pipeline: Some(pipeline), .. }
                if voxpipe_serve::config::is_serve_file(&pipeline) =>
            {
                serve::check_serve(&pipeline).await
            }
            Command::Check { pipeline: Some(pipeline), profile, sets, .. } => {
                run::check_command(&pipeline, profile, sets).await
            }
            Command::Serve(args) => serve::serve(args).await,
            Command::Call { cmd } => serve::call(cmd).await,
            Command::Fake { which } => fake::run(which).await,
            Command::Models { cmd } => models::run(cmd).await,
            Command::Ab(args) => ab::run(args).await,
            Command::Scenario { cmd } => scenario::run(cmd),
        }
    });
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
