//! Where a store keeps its files, and how a file is made durable and visible in one step.
//!
//! ```text
//! <dir>/data/<hash>      the blob's bytes
//! <dir>/outboard/<hash>  its parent hashes (absent when the blob is a single chunk group)
//! <dir>/pins/<hash>      the blob's pins, one `owner until_ms` line each (see `pins`):
//!                        garbage collection keeps the blob while the marker exists
//! <dir>/tmp/             staging for uploads in progress; emptied when the store opens
//! ```
//!
//! A blob exists exactly when its data file exists. Files are written in `tmp/`, fsynced, then
//! renamed into place and the directory fsynced, so after a crash a blob is either complete or
//! absent — never half there.

use crate::error::{IoContext, Result};
use agora_core::Hash;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// The directories of one store.
#[derive(Debug)]
pub(crate) struct Layout {
    pub root: PathBuf,
    pub data: PathBuf,
    pub outboards: PathBuf,
    pub pins: PathBuf,
    pub tmp: PathBuf,
}

impl Layout {
    /// Creates (if needed) the directories of a store rooted at `root`.
    pub fn create(root: &Path) -> Result<Self> {
        let layout = Self {
            root: root.to_owned(),
            data: root.join("data"),
            outboards: root.join("outboard"),
            pins: root.join("pins"),
            tmp: root.join("tmp"),
        };
        for dir in [&layout.data, &layout.outboards, &layout.pins, &layout.tmp] {
            fs::create_dir_all(dir).ctx("create the store directory", dir)?;
        }
        Ok(layout)
    }

    /// The data file of a blob.
    pub fn data(&self, hash: &Hash) -> PathBuf {
        self.data.join(hash.to_string())
    }

    /// The outboard file of a blob.
    pub fn outboard(&self, hash: &Hash) -> PathBuf {
        self.outboards.join(hash.to_string())
    }

    /// The pin marker of a blob.
    pub fn pin(&self, hash: &Hash) -> PathBuf {
        self.pins.join(hash.to_string())
    }

    /// A new staging file, deleted automatically unless installed.
    pub fn staging_file(&self) -> Result<NamedTempFile> {
        NamedTempFile::new_in(&self.tmp).ctx("create a staging file in", &self.tmp)
    }
}

/// Flushes a directory's entries to disk, so a rename or removal in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("sync the directory", dir)
}

/// Flushes a staging file's contents to disk, so it can be published.
pub(crate) fn sync_file(file: &NamedTempFile) -> Result<()> {
    file.as_file().sync_all().ctx("sync", file.path())
}

/// Atomically moves a synced staging file to `dest` and makes the move itself durable.
pub(crate) fn publish(file: NamedTempFile, dest: &Path) -> Result<()> {
    file.persist(dest).map_err(|e| e.error).ctx("move a finished file to", dest)?;
    sync_dir(dest.parent().expect("store files live in a directory"))
}

/// Removes a file if it exists; a file that is already gone is not an error.
pub(crate) fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).ctx("remove", path),
    }
}

/// Parses a store file name back into a hash; other names (editor droppings, ...) are skipped.
pub(crate) fn hash_from_name(name: &std::ffi::OsStr) -> Option<Hash> {
    name.to_str()?.parse().ok()
}
