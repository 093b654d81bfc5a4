//! Embedding outputs: f32 vectors within a max-abs and a cosine threshold.
//!
//! # Why tolerances, and where the thresholds come from
//!
//! candle's output is a deterministic function of the model, the input *and* the kernel
//! parameters: the GEMM crate sizes its blocking from the CPU's cache geometry, and padding
//! changes with the batch composition. Honest re-runs on other machines or with other
//! batchings therefore differ in the last bits, while a provider that swaps in a cheaper
//! model differs by orders of magnitude more. Measured on all-MiniLM-L6-v2 (384-d,
//! L2-normalised), 200 fortune sentences, candle 0.11.1, against batch 32 on the same
//! machine (`agora-ml`'s `calibrate` example; details in `crates/agora-ml/CALIBRATION.md`):
//!
//! | variation | max \|Δ\| worst item | max \|Δ\| best item | min cosine |
//! |---|---|---|---|
//! | honest: batch 1 | 1.97e-7 | 0 | 1.000000000 |
//! | honest: batch 7 | 1.66e-7 | 0 | 1.000000000 |
//! | honest: another CPU cache geometry (L1d 32K/8-way, L2 2M vs 48K/12-way, 1M) | 2.01e-7 | 7.5e-8 | 1.000000000 |
//! | cheat: weights rounded to f16 | 2.27e-4 | 1.11e-4 | 0.999999296 |
//! | cheat: tanh-approximate GELU | 3.58e-4 | 1.27e-4 | 0.999997919 |
//! | cheat: weights rounded to bf16 | 2.23e-3 | 8.17e-4 | 0.999952704 |
//! | cheat: last layer skipped | 7.56e-1 | 2.85e-1 | 0.255557390 |
//!
//! [`MAX_ABS_DIFF`] sits between the populations with a 50× margin above the worst honest
//! item and an 11× margin below the best cheating item, so every single item is classified
//! correctly. [`MIN_COSINE`] is a second, direction-only guard against gross substitutions;
//! small ones are invisible to it (for unit vectors `1 − cos ≈ ‖Δ‖²/2`), which is why
//! max-abs decides.

use super::Verdict;
use crate::items::vector::decode_vector;

/// Largest accepted per-component difference. Honest drift measured ≤ 2.01e-7 (50× below);
/// the closest cheat measured (f16-rounded weights) ≥ 1.11e-4 on every item (11× above).
pub const MAX_ABS_DIFF: f32 = 1e-5;

/// Smallest accepted cosine similarity: honest re-runs measured above 0.9999999995; a
/// skipped layer measured 0.26.
pub const MIN_COSINE: f64 = 0.999_99;

/// How far apart two vectors are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorDistance {
    /// Largest per-component absolute difference.
    pub max_abs: f32,
    /// Cosine similarity (computed in f64).
    pub cosine: f64,
}

/// Measures two equal-length vectors.
pub fn distance(a: &[f32], b: &[f32]) -> VectorDistance {
    let max_abs = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let cosine =
        if na == 0.0 || nb == 0.0 { if na == nb { 1.0 } else { 0.0 } } else { dot / (na.sqrt() * nb.sqrt()) };
    VectorDistance { max_abs, cosine }
}

/// Accepts a claimed vector within [`MAX_ABS_DIFF`] and [`MIN_COSINE`] of the recomputed one.
pub fn compare(claimed: &[u8], recomputed: &[u8]) -> Verdict {
    let claimed = match decode_vector(claimed) {
        Ok(v) => v,
        Err(e) => return Verdict::fail(format!("claimed vector is malformed: {e}")),
    };
    let recomputed = match decode_vector(recomputed) {
        Ok(v) => v,
        Err(e) => return Verdict::fail(format!("recomputed vector is malformed: {e}")),
    };
    if claimed.len() != recomputed.len() {
        return Verdict::fail(format!(
            "dimension differs: claimed {}, recomputed {}",
            claimed.len(),
            recomputed.len()
        ));
    }
    let d = distance(&claimed, &recomputed);
    let detail = format!(
        "max |Δ| {:.3e} (limit {MAX_ABS_DIFF:.0e}), cosine {:.9} (limit {MIN_COSINE})",
        d.max_abs, d.cosine
    );
    if d.max_abs <= MAX_ABS_DIFF && d.cosine >= MIN_COSINE {
        Verdict::pass(detail)
    } else {
        Verdict::fail(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::items::vector::encode_vector;

    #[test]
    fn thresholds_separate_drift_from_change() {
        let base: Vec<f32> = (0..384).map(|i| ((i as f32) * 0.37).sin() / 14.0).collect();
        let drift: Vec<f32> =
            base.iter().enumerate().map(|(i, v)| v + if i % 3 == 0 { 3e-7 } else { -2e-7 }).collect();
        let cheat: Vec<f32> =
            base.iter().enumerate().map(|(i, v)| v + if i % 7 == 0 { 3e-4 } else { 0.0 }).collect();
        assert!(compare(&encode_vector(&base), &encode_vector(&drift)).matches);
        let v = compare(&encode_vector(&base), &encode_vector(&cheat));
        assert!(!v.matches, "{}", v.detail);
        assert!(!compare(&encode_vector(&base), &encode_vector(&base[..383])).matches);
        assert!(!compare(b"xyz", &encode_vector(&base)).matches);
        let opposite: Vec<f32> = base.iter().map(|v| -v).collect();
        assert!(distance(&base, &opposite).cosine < -0.99);
    }
}
