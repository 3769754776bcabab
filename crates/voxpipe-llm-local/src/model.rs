//! Resolving `model` config values to GGUF files through the model store.

use crate::Error;
use std::path::PathBuf;

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
