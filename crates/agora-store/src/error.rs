//! What can go wrong in the store, phrased so an operator knows what to do next.

use agora_core::Hash;
use std::path::PathBuf;

/// An error from the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The blob is not in this store.
    #[error("blob {0} is not in this store; upload it first or fetch it from a node that has it")]
    NotFound(Hash),
    /// A pin's owner name cannot be stored.
    #[error("invalid pin owner {0:?}: use ASCII letters, digits and `:_-.`, at most 128 bytes")]
    InvalidPin(String),
    /// The blob's bytes on disk no longer match its hash; it is never served.
    #[error(
        "blob {hash} is corrupted on disk (the chunk group at byte {offset} does not match the hash), \
         so it will not be served; remove it and fetch it again from another node"
    )]
    Corrupted {
        /// The blob's address.
        hash: Hash,
        /// Byte offset of the first chunk group that failed verification.
        offset: u64,
    },
    /// A byte range that does not lie inside the blob.
    #[error(
        "byte range {start}..{end} is outside blob {hash} of {size} bytes; ask for a range within 0..{size}"
    )]
    RangeOutOfBounds {
        /// The blob's address.
        hash: Hash,
        /// First byte requested.
        start: u64,
        /// One past the last byte requested.
        end: u64,
        /// The blob's size.
        size: u64,
    },
    /// An upload grew past the size limit it was given.
    #[error("the upload exceeds the limit of {limit} bytes; split the data or raise the limit")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The source of a streaming upload failed before it ended; nothing was stored.
    #[error(
        "the upload was interrupted after {received} bytes ({reason}); nothing was stored, send it again"
    )]
    Interrupted {
        /// Bytes received before the failure.
        received: u64,
        /// What the source reported.
        reason: String,
    },
    /// The destination of a read (a writer or a network peer) stopped accepting bytes.
    #[error("could not pass the blob's bytes on: {0}")]
    Output(#[source] std::io::Error),
    /// A file-system operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What the store was doing, as a verb phrase ("write", "open", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches an action and a path to an I/O error.
pub(crate) trait IoContext<T> {
    /// Wraps the error as [`StoreError::Io`].
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StoreError::Io { action, path: path.into(), source })
    }
}
