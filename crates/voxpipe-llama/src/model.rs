//! Loading GGUF models once per process, and resolving `model` config values through the
//! model store.

use crate::Error;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tracing::info;

/// A GGUF model loaded into memory, shared by every call that uses it. Cheap to clone.
#[derive(Clone)]
pub struct LocalModel {
    pub(crate) model: Arc<LlamaModel>,
    path: Arc<Path>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel").field("path", &self.path).finish()
    }
}

/// The process-wide llama.cpp backend (it may be initialised only once).
pub(crate) fn backend() -> Result<&'static LlamaBackend, Error> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|message| Error::Backend { message: message.clone() })
}

impl LocalModel {
    /// Loads the GGUF file at `path`, or returns the copy already loaded in this process.
    /// Blocking (a load reads the whole file): call it from `spawn_blocking`.
    ///
    /// # Errors
    /// [`Error::ModelNotFound`], [`Error::ModelLoad`] for a file llama.cpp rejects,
    /// [`Error::Backend`].
    pub fn load(path: &Path) -> Result<Self, Error> {
        static MODELS: OnceLock<Mutex<HashMap<PathBuf, LocalModel>>> = OnceLock::new();
        if !path.is_file() {
            return Err(Error::ModelNotFound { path: path.to_path_buf() });
        }
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let backend = backend()?;
        // Loads are serialised: two calls asking for the same model load it once.
        let mut models = MODELS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = models.get(&key) {
            return Ok(m.clone());
        }
        let started = std::time::Instant::now();
        let model = LlamaModel::load_from_file(backend, &key, &LlamaModelParams::default())
            .map_err(|_| Error::ModelLoad { path: path.to_path_buf() })?;
        info!(
            path = %key.display(),
            params = model.n_params(),
            ms = started.elapsed().as_millis() as u64,
            "llama model loaded"
        );
        let loaded = LocalModel { model: Arc::new(model), path: key.clone().into() };
        models.insert(key, loaded.clone());
        Ok(loaded)
    }

    /// Resolves `model` (a catalog id, pulled into the model cache if missing, or a path) and
    /// loads it.
    ///
    /// # Errors
    /// [`Error::Store`] when the id is unknown or cannot be fetched, then as [`LocalModel::load`].
    pub async fn resolve_and_load(model: &str) -> Result<Self, Error> {
        let path = resolve(model).await?;
        tokio::task::spawn_blocking(move || LocalModel::load(&path)).await.map_err(|_| Error::WorkerGone)?
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's context length from training, in tokens.
    pub fn n_ctx_train(&self) -> u32 {
        self.model.n_ctx_train()
    }
}

/// Resolves a `model` config value to a file: a catalog id through the model store (pulled on
/// first use), anything else as a path.
///
/// # Errors
/// [`Error::ModelNotFound`] for a path that is not a file, [`Error::Store`] for store failures.
pub async fn resolve(model: &str) -> Result<PathBuf, Error> {
    let store_err = |source| Error::Store { model: model.to_string(), source };
    let store = voxpipe_models::ModelStore::from_env().map_err(store_err)?;
    if store.catalog().get(model).is_none() {
        let path = PathBuf::from(model);
        return if path.is_file() { Ok(path) } else { Err(Error::ModelNotFound { path }) };
    }
    store.resolve_or_pull(model, &voxpipe_models::NoProgress).await.map_err(store_err)
}
