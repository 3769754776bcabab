//! `voxpipe fake …`: local fakes of the remote APIs, for offline development.

use anyhow::Context;
use clap::Subcommand;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Which fake to run.
#[derive(Debug, Subcommand)]
pub enum FakeCommand {
    /// The OpenAI Realtime API (WebSocket) at ws://127.0.0.1:PORT/v1/realtime.
    Realtime {
        /// Port on 127.0.0.1 (0 picks a free one; the URL is printed).
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Fake settings (TOML): scripted responses, latency, faults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn load_toml<T: serde::de::DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    match path {
        None => Ok(T::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("{}: invalid fake settings", p.display()))
        }
    }
}

/// Runs a fake until Ctrl-C.
pub async fn run(which: FakeCommand) -> anyhow::Result<()> {
    match which {
        FakeCommand::Realtime { port, config } => {
            let config = load_toml(config.as_deref())?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let fake = voxpipe_fakes::realtime::RealtimeFake::bind(addr, config)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            println!("realtime fake listening on {}", fake.url());
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
            fake.shutdown().await;
            Ok(())
        }
    }
}
