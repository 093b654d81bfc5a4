//! Helpers shared by the example jobs: WASI randomness and stdin/stdout plumbing.

use std::io::{Read, Write};

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    #[link_name = "random_get"]
    fn wasi_random_get(buf: *mut u8, len: usize) -> u16;
}

/// A seed from WASI `random_get`. Under Agora it is derived from the job and the item, so
/// every provider and auditor sees the same value; elsewhere it is real randomness.
pub fn wasi_seed() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for writes of its length for the duration of the call.
    let errno = unsafe { wasi_random_get(buf.as_mut_ptr(), buf.len()) };
    assert_eq!(errno, 0, "random_get failed");
    u64::from_le_bytes(buf)
}

/// A small xorshift generator: deterministic given its seed.
pub struct XorShift(u64);

impl XorShift {
    /// Seeds the generator (a zero seed is remapped).
    pub fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    /// A uniform draw in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The whole of stdin (the input item).
pub fn read_input() -> String {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).expect("stdin is UTF-8 text");
    s
}

/// `key=value` pairs from whitespace-separated text, with defaults for absent keys.
pub fn param(text: &str, key: &str, default: f64) -> f64 {
    text.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

/// Writes the output item and flushes it.
pub fn write_output(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).expect("write stdout");
    out.flush().expect("flush stdout");
}
