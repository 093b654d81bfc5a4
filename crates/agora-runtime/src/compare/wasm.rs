//! WebAssembly outputs: exact byte equality.
//!
//! The wasm executor removes every source of nondeterminism (NaN bits are canonicalised,
//! threads and relaxed SIMD are off, clocks are fixed, randomness is seeded from the job), so
//! an honest re-run anywhere yields identical bytes and any difference is a wrong result.

use super::Verdict;
use agora_core::Hash;

/// Accepts only byte-identical outputs.
pub fn compare(claimed: &[u8], recomputed: &[u8]) -> Verdict {
    if claimed == recomputed {
        Verdict::pass(format!("identical {} bytes", claimed.len()))
    } else {
        let first = claimed
            .iter()
            .zip(recomputed)
            .position(|(a, b)| a != b)
            .unwrap_or(claimed.len().min(recomputed.len()));
        Verdict::fail(format!(
            "outputs differ: claimed {} bytes (blake3 {}), recomputed {} bytes (blake3 {}), first difference at byte {first}",
            claimed.len(),
            Hash::of(claimed),
            recomputed.len(),
            Hash::of(recomputed),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exact() {
        assert!(super::compare(b"abc", b"abc").matches);
        let v = super::compare(b"abc", b"abd");
        assert!(!v.matches && v.detail.contains("byte 2"), "{}", v.detail);
        assert!(!super::compare(b"abc", b"ab").matches);
    }
}
