//! File digests: SHA-256 for the registry packages' pins, BLAKE3 for Agora's own addresses.

use super::error::{IoContext, ProvisionError};
use agora_core::Hash;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Both digests and the size of a file, computed in one streaming pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// BLAKE3.
    pub blake3: Hash,
}

/// Digests the file at `path`.
pub fn digest_file(path: &Path) -> Result<FileDigest, ProvisionError> {
    let mut file = std::fs::File::open(path).ctx("opening", path)?;
    let mut sha = Sha256::new();
    let mut b3 = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).ctx("reading", path)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        b3.update(&buf[..n]);
        size += n as u64;
    }
    Ok(FileDigest { size, sha256: hex::encode(sha.finalize()), blake3: Hash(*b3.finalize().as_bytes()) })
}

/// Checks a file against a pinned SHA-256.
pub fn verify_sha256(path: &Path, expected: &str, what: &str) -> Result<FileDigest, ProvisionError> {
    let d = digest_file(path)?;
    if d.sha256 != expected.to_lowercase() {
        return Err(ProvisionError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: d.sha256,
            path: path.to_path_buf(),
        });
    }
    Ok(d)
}
