//! The JSONL event log: one JSON object per line, written and flushed as each event happens,
//! so a crash or a cut call leaves everything up to that moment on disk.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use voxpipe_core::{Event, EventWriter};

/// Writes events to a file, one line each, flushed per event (events are a few per turn).
#[derive(Debug)]
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<File>,
    line: Vec<u8>,
}

impl JsonlWriter {
    /// Creates (truncates) `path`, creating parent directories.
    pub fn create(path: &Path) -> Result<Self, crate::Error> {
        let err = |source| crate::Error::Write { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = File::create(path).map_err(err)?;
        Ok(Self { path: path.to_path_buf(), out: BufWriter::new(file), line: Vec::with_capacity(512) })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl EventWriter for JsonlWriter {
    fn write(&mut self, event: &Event) -> std::io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, event)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.out.flush()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}
