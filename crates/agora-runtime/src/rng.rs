//! A small seeded PRNG that every executor shares, so "seeded" means the same stream on
//! every machine and in every crate version we ship.
//!
//! Library RNGs are unsuitable: candle's CPU RNG cannot be seeded at all, and `rand`'s `StdRng`
//! does not promise a stable algorithm across releases. xoshiro256** seeded through
//! SplitMix64 is fully specified by its reference implementation, fast, and statistically
//! sound for initialisation, shuffling and sampling (it is not for secrets).

use agora_core::Hash;

/// Derives a 64-bit seed from a domain and integer parts, e.g. `(job seed, shard, item)`.
/// Different domains give unrelated seeds for the same parts.
pub fn derive_seed(domain: &str, parts: &[u64]) -> u64 {
    let bytes: Vec<[u8; 8]> = parts.iter().map(|p| p.to_le_bytes()).collect();
    let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
    Hash::tagged(domain, &refs).to_u64()
}

/// xoshiro256** (Blackman & Vigna), seeded by SplitMix64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self { s: [next(), next(), next(), next()] }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform draw in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform draw in `[0, n)` without modulo bias; `n` must be at least 1.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below needs a non-empty range");
        // Rejection sampling on the top of the range keeps every value equally likely.
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Fills `out` with random bytes (little-endian words).
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_pinned() {
        // Pinned outputs (checked against an independent implementation of the reference
        // algorithm): changing the generator would silently change every seeded job.
        let mut r = Rng::new(42);
        let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(first, [1546998764402558742, 6990951692964543102, 12544586762248559009]);
        assert_ne!(Rng::new(42).next_u64(), Rng::new(43).next_u64());
        assert_eq!(derive_seed("a", &[1, 2]), derive_seed("a", &[1, 2]));
        assert_ne!(derive_seed("a", &[1, 2]), derive_seed("b", &[1, 2]));
    }

    #[test]
    fn below_and_shuffle_stay_in_range() {
        let mut r = Rng::new(7);
        for n in 1..50 {
            assert!(r.below(n) < n);
        }
        let mut v: Vec<u32> = (0..100).collect();
        r.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
        let x = r.next_f64();
        assert!((0.0..1.0).contains(&x));
    }
}
