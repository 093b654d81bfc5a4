//! Helpers shared by the integration tests.
#![allow(dead_code)] // Each test binary uses a different subset.

use agora_store::tree::GROUP_BYTES;
use std::path::Path;
use std::time::{Duration, Instant};

/// One chunk group.
pub const G: usize = GROUP_BYTES;

/// Sizes around chunk-group boundaries, plus a multi-megabyte blob.
pub const SIZES: [usize; 7] = [0, 1, G - 1, G, G + 1, 3 * G + 5, 5 * 1024 * 1024 + 3];

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new().update(&[seed]).finalize_xof().fill(&mut out);
    out
}

/// Flips one bit of a file at `offset`.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut data = std::fs::read(path).unwrap();
    data[offset as usize] ^= 0x01;
    std::fs::write(path, data).unwrap();
}

/// Number of entries in a directory.
pub fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Polls `check` until it holds or five seconds pass.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}
