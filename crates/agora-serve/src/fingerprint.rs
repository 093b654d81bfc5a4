//! Fingerprints of a generation's computation, in the spirit of TOPLOC: every
//! [`FINGERPRINT_EVERY`] tokens, the [`FINGERPRINT_TOP`] largest logits (token id and value).
//!
//! TOPLOC takes the top-k of the last hidden state; these take the top-k of the logits, which are that state times the output matrix, so their top-k is as hard to produce
//! without running the model and as cheap to check after a teacher-forced prefill. A receipt
//! names the hash of the fingerprints ([`hash`]); an auditor that prefills the prompt and the
//! completion compares its own logits at the same steps within a calibrated tolerance.

use agora_core::Hash;
use serde::{Deserialize, Serialize};

/// Steps between fingerprints (step 0 is always taken).
pub const FINGERPRINT_EVERY: usize = 16;
/// Logits kept per fingerprint.
pub const FINGERPRINT_TOP: usize = 4;

/// The largest logits at one step of a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Position of the token in the completion.
    pub step: u32,
    /// `(token id, f32 bits of its logit)`, largest first (bits, so JSON carries every value
    /// exactly, infinities included).
    pub top: Vec<(u32, u32)>,
}

impl Fingerprint {
    /// The fingerprint of step `step` with `logits`, if the step is one that is taken.
    pub fn at(step: usize, logits: &[f32]) -> Option<Self> {
        if !step.is_multiple_of(FINGERPRINT_EVERY) {
            return None;
        }
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let k = FINGERPRINT_TOP.min(idx.len());
        let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
        if k > 0 && k < idx.len() {
            idx.select_nth_unstable_by(k - 1, by_logit);
        }
        idx.truncate(k);
        idx.sort_by(by_logit);
        Some(Fingerprint {
            step: step as u32,
            top: idx.into_iter().map(|i| (i, logits[i as usize].to_bits())).collect(),
        })
    }

    /// The logit values, largest first.
    pub fn values(&self) -> impl Iterator<Item = f32> + '_ {
        self.top.iter().map(|(_, bits)| f32::from_bits(*bits))
    }
}

/// The hash a receipt names for a list of fingerprints.
pub fn hash(fingerprints: &[Fingerprint]) -> Hash {
    let mut bytes = Vec::with_capacity(fingerprints.len() * (4 + FINGERPRINT_TOP * 8));
    for f in fingerprints {
        bytes.extend_from_slice(&f.step.to_le_bytes());
        bytes.extend_from_slice(&(f.top.len() as u32).to_le_bytes());
        for (token, bits) in &f.top {
            bytes.extend_from_slice(&token.to_le_bytes());
            bytes.extend_from_slice(&bits.to_le_bytes());
        }
    }
    Hash::tagged("agora/serve-fingerprints", &[&bytes])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_largest_logits_every_few_steps() {
        let logits = [0.5, 3.0, -1.0, 3.0, 2.0, f32::NEG_INFINITY, 9.0];
        let f = Fingerprint::at(0, &logits).unwrap();
        assert_eq!(f.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![6, 1, 3, 4], "ties by token id");
        assert_eq!(f.values().collect::<Vec<_>>(), vec![9.0, 3.0, 3.0, 2.0]);
        assert!(Fingerprint::at(1, &logits).is_none());
        assert!(Fingerprint::at(FINGERPRINT_EVERY, &logits).is_some());
        assert_eq!(Fingerprint::at(0, &[1.0, 2.0]).unwrap().top.len(), 2);
    }

    #[test]
    fn the_hash_binds_steps_tokens_and_values() {
        let a = Fingerprint::at(0, &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let mut b = a.clone();
        b.top[0].1 = 4.5f32.to_bits();
        assert_ne!(hash(std::slice::from_ref(&a)), hash(&[b]));
        assert_ne!(hash(std::slice::from_ref(&a)), hash(&[]));
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), a);
    }
}
