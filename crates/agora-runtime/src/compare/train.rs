//! Training checkpoints: same step and data cursor, weights within a relative L2 distance.
//!
//! An auditor replays one segment (from the claimed checkpoint i−1 to checkpoint i) and
//! compares its checkpoint with the claimed checkpoint i. On one machine the replay is bit
//! identical (candle's CPU kernels are deterministic at any thread count when all randomness
//! is seeded by us). Across machines, GEMM blocking changes rounding and the drift grows with
//! every step, so the weights are compared by relative L2 distance
//! `‖w_claimed − w_replay‖ / ‖w_replay‖` over all parameters, against [`MAX_REL_L2`].
//! The step and the data cursor must match exactly: they are integers.
//!
//! Measurements (MLP on digits, AdamW, candle 0.11.1; `crates/agora-ml/CALIBRATION.md`):
//!
//! | variation | params rel. L2 | optimizer rel. L2 |
//! |---|---|---|
//! | honest: same machine, any thread count | 0 | 0 |
//! | honest: another CPU cache geometry, H=128, 150 steps from init | 0 | 0 |
//! | honest: another CPU cache geometry, H=2048 batch 256, 60 steps from init | 3.46e-6 | 1.10e-5 |
//! | honest: segment replayed from a checkpoint nudged by 1 ulp (K=20 and 50) | ≤ 1.2e-7 | ≤ 5.2e-7 |
//! | cheat: one step fewer than claimed | ≥ 5.3e-3 | ≥ 0.65 |
//! | cheat: learning rate ×1.5 | ≥ 0.44 | ≥ 0.68 |
//! | cheat: another seed (init and data order) | ≥ 1.4 | ≥ 1.4 |
//!
//! Drift compounds with every step, so the margins hold for segments of up to about 100
//! steps at these widths; longer segments of wide models should be re-calibrated.

use super::Verdict;
use crate::items::training::{Checkpoint, Tensor};

/// Largest accepted relative L2 distance between claimed and replayed parameters: 29×
/// the worst honest drift measured (3.46e-6), 53× below the smallest cheat (5.3e-3).
pub const MAX_REL_L2: f64 = 1e-4;

/// Largest accepted relative L2 distance between claimed and replayed optimizer moments.
/// Moments are small and noisier (honest 1.1e-5, cheats ≥ 0.65), so the bound is looser.
pub const MAX_OPTIMIZER_REL_L2: f64 = 1e-2;

/// Relative L2 distance between two tensor lists with the same names and shapes, or why
/// they cannot be compared.
pub fn rel_l2(claimed: &[Tensor], replay: &[Tensor]) -> Result<f64, String> {
    if claimed.len() != replay.len() {
        return Err(format!("{} tensors claimed, {} replayed", claimed.len(), replay.len()));
    }
    let (mut diff, mut norm) = (0f64, 0f64);
    for (a, b) in claimed.iter().zip(replay) {
        if a.name != b.name || a.shape != b.shape || a.data.len() != b.data.len() {
            return Err(format!(
                "tensor {:?} {:?} does not match {:?} {:?}",
                a.name, a.shape, b.name, b.shape
            ));
        }
        for (&x, &y) in a.data.iter().zip(&b.data) {
            let (x, y) = (f64::from(x), f64::from(y));
            diff += (x - y) * (x - y);
            norm += y * y;
        }
    }
    let d = diff.sqrt() / norm.sqrt().max(f64::MIN_POSITIVE);
    if d.is_finite() { Ok(d) } else { Err("non-finite weights".into()) }
}

/// Accepts a claimed checkpoint that matches the replayed one.
pub fn compare(claimed: &[u8], recomputed: &[u8]) -> Verdict {
    let claimed = match Checkpoint::from_item(claimed) {
        Ok(c) => c,
        Err(e) => return Verdict::fail(format!("claimed checkpoint is malformed: {e}")),
    };
    let replay = match Checkpoint::from_item(recomputed) {
        Ok(c) => c,
        Err(e) => return Verdict::fail(format!("replayed checkpoint is malformed: {e}")),
    };
    if (claimed.step, claimed.epoch, claimed.position) != (replay.step, replay.epoch, replay.position) {
        return Verdict::fail(format!(
            "progress differs: claimed step {} at epoch {} position {}, replay step {} at epoch {} position {}",
            claimed.step, claimed.epoch, claimed.position, replay.step, replay.epoch, replay.position
        ));
    }
    let params = match rel_l2(&claimed.params, &replay.params) {
        Ok(d) => d,
        Err(e) => return Verdict::fail(format!("parameters cannot be compared: {e}")),
    };
    let optimizer = match rel_l2(&claimed.optimizer, &replay.optimizer) {
        Ok(d) => d,
        Err(e) => return Verdict::fail(format!("optimizer state cannot be compared: {e}")),
    };
    let detail = format!(
        "step {}: weights rel. L2 {params:.3e} (limit {MAX_REL_L2:.0e}), optimizer state rel. L2 {optimizer:.3e} (limit {MAX_OPTIMIZER_REL_L2:.0e})",
        claimed.step
    );
    if params <= MAX_REL_L2 && optimizer <= MAX_OPTIMIZER_REL_L2 {
        Verdict::pass(detail)
    } else {
        Verdict::fail(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Encode;

    fn ckpt(scale: f32) -> Checkpoint {
        let t = |name: &str| Tensor {
            name: name.into(),
            shape: vec![4],
            data: vec![1.0 * scale, -2.0, 0.5, 3.0],
        };
        Checkpoint {
            step: 5,
            epoch: 0,
            position: 40,
            loss: 1.0,
            params: vec![t("w")],
            optimizer: vec![t("w.m")],
        }
    }

    #[test]
    fn distance_and_progress() {
        let base = ckpt(1.0);
        assert!(compare(&base.encode(), &base.encode()).matches);
        assert!(compare(&ckpt(1.0 + 1e-7).encode(), &base.encode()).matches);
        assert!(!compare(&ckpt(1.01).encode(), &base.encode()).matches);
        let mut moved = base.clone();
        moved.position = 48;
        assert!(!compare(&moved.encode(), &base.encode()).matches);
        let mut renamed = base.clone();
        renamed.params[0].name = "v".into();
        assert!(!compare(&renamed.encode(), &base.encode()).matches);
    }
}
