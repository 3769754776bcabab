//! `voxpipe-llm-worker`: runs llama.cpp for the `llm.local` stage of `voxpipe`, in its own
//! process (llama.cpp's shared ggml cannot live beside the ggml whisper.cpp links statically
//! into `voxpipe`). It speaks the line-delimited JSON protocol of
//! `voxpipe_llm_local::protocol` on stdin/stdout and logs to stderr
//! (`VOXPIPE_WORKER_LOG`, else `RUST_LOG`, sets the level; default `info`).
//!
//! Exit status: 0 when stdin ends, 1 when the model cannot be loaded, 2 on a protocol error,
//! 3 when stdout is closed.

use std::process::ExitCode;
use voxpipe_llm_worker::serve::{Exit, serve};

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VOXPIPE_WORKER_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| "info,llama-cpp-2=warn,llama_cpp_2=error".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
    let stdin = std::io::BufReader::new(std::io::stdin());
    match serve(stdin, std::io::stdout()) {
        Exit::InputClosed => ExitCode::SUCCESS,
        Exit::LoadFailed => ExitCode::from(1),
        Exit::ProtocolError => ExitCode::from(2),
        Exit::OutputClosed => ExitCode::from(3),
    }
}
