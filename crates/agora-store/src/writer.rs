//! Staging a blob as it streams in: bytes go to a temporary file and through the tree hasher at
//! once, and only a finished, hashed, fsynced blob is moved into the store.

use crate::error::{IoContext, Result};
use crate::pins::Pin;
use crate::store::{BlobInfo, Store};
use crate::tree::{TreeHasher, bao_tree};
use agora_core::Hash;
use std::io::{BufWriter, Write};
use tempfile::NamedTempFile;

/// Write buffer for staging files: large enough that big uploads make few system calls.
const WRITE_BUFFER: usize = 256 * 1024;

/// A blob being written. Dropping it without [`finish`](Self::finish) discards everything
/// written so far; nothing becomes visible in the store.
pub struct BlobWriter {
    store: Store,
    file: BufWriter<NamedTempFile>,
    hasher: TreeHasher,
}

impl BlobWriter {
    pub(crate) fn new(store: Store) -> Result<Self> {
        let file = store.layout().staging_file()?;
        let hasher = TreeHasher::new(&store.layout().tmp);
        Ok(Self { store, file: BufWriter::with_capacity(WRITE_BUFFER, file), hasher })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the next bytes of the blob.
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if let Err(e) = self.file.write_all(bytes) {
            return Err(e).ctx("write the staging file", self.file.get_ref().path());
        }
        self.hasher.update(bytes).ctx("spill chunk hashes in", &self.store.layout().tmp)
    }

    /// Hashes, fsyncs and installs the blob; `pin` protects it from garbage collection (the
    /// operator's pin) from the moment it becomes visible. Writing a blob the store already has
    /// is cheap and harmless.
    pub fn finish(self, pin: bool) -> Result<BlobInfo> {
        self.finish_pinned(pin.then(Pin::operator))
    }

    /// [`finish`](Self::finish), held by `pin` (if any) from the moment the blob is visible.
    pub fn finish_pinned(self, pin: Option<Pin>) -> Result<BlobInfo> {
        let path = self.file.get_ref().path().to_owned();
        let data = self.file.into_inner().map_err(|e| e.into_error()).ctx("write the staging file", &path)?;
        let mut outboard = self.store.layout().staging_file()?;
        let ob_path = outboard.path().to_owned();
        let hashed = {
            let mut out = BufWriter::new(outboard.as_file_mut());
            let hashed = self.hasher.finish(&mut out).ctx("write the outboard", &ob_path)?;
            out.flush().ctx("write the outboard", &ob_path)?;
            hashed
        };
        let hash = Hash(*hashed.root.as_bytes());
        let outboard = (bao_tree(hashed.size).outboard_size() > 0).then_some(outboard);
        self.store.install(hash, hashed.size, data, outboard, pin)
    }
}
