//! Loading GGUF models.

use crate::Error;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tracing::info;

/// A GGUF model loaded into memory. Cheap to clone.
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
    /// Loads the GGUF file at `path`. Blocking: a load reads the whole file.
    ///
    /// # Errors
    /// [`Error::ModelNotFound`], [`Error::ModelLoad`] for a file llama.cpp rejects,
    /// [`Error::Backend`].
    pub fn load(path: &Path) -> Result<Self, Error> {
        if !path.is_file() {
            return Err(Error::ModelNotFound { path: path.to_path_buf() });
        }
        let key: PathBuf = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let backend = backend()?;
        let started = std::time::Instant::now();
        let model = LlamaModel::load_from_file(backend, &key, &LlamaModelParams::default())
            .map_err(|_| Error::ModelLoad { path: path.to_path_buf() })?;
        info!(
            path = %key.display(),
            params = model.n_params(),
            ms = started.elapsed().as_millis() as u64,
            "llama model loaded"
        );
        Ok(LocalModel { model: Arc::new(model), path: key.into() })
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's context length from training, in tokens.
    pub fn n_ctx_train(&self) -> u32 {
        self.model.n_ctx_train()
    }

    /// The model's parameter count.
    pub fn n_params(&self) -> u64 {
        self.model.n_params()
    }
}
