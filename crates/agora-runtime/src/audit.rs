//! What an auditor fetches for a sample, and the audit loop over an [`Executor`].

use crate::compare::Verdict;
use crate::error::ExecError;
use crate::executor::{AuditRequest, Executor, TaskContext};
use agora_core::merkle::MerkleTree;
use agora_core::tx::{AuditEvidence, Disputed, MAX_DISPUTED, Metering};
use agora_core::{Hash, JobParams};

/// Input item indices an auditor must fetch to recompute `indices`: the same items for
/// per-item kinds, the whole data set for training (any step may touch any example).
pub fn inputs_needed(params: &JobParams, indices: &[u32], input_count: u32) -> Vec<u32> {
    match params {
        JobParams::Train { .. } => (0..input_count).collect(),
        _ => dedup(indices.to_vec()),
    }
}

/// Claimed output indices an auditor must fetch besides the sampled ones (which it always
/// fetches to compare): for training, checkpoint i−1 as the replay's starting point.
/// The sampled indices themselves are included, since generation replays follow them.
pub fn claims_needed(params: &JobParams, indices: &[u32]) -> Vec<u32> {
    let mut out = indices.to_vec();
    if let JobParams::Train { .. } = params {
        out.extend(indices.iter().filter(|&&i| i > 0).map(|i| i - 1));
    }
    dedup(out)
}

fn dedup(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v.dedup();
    v
}

/// The outcome of auditing a sample.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditOutcome {
    /// A verdict per sampled index, in request order.
    pub verdicts: Vec<(u32, Verdict)>,
    /// The hash ([`Hash::of`]) of each recomputed item, in request order: the evidence an
    /// auditor's report commits to.
    pub recomputed: Vec<Hash>,
    /// What recomputing cost the auditor.
    pub metering: Metering,
}

impl AuditOutcome {
    /// Whether every sampled item matched.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|(_, v)| v.matches)
    }

    /// The on-chain evidence for this outcome: the Merkle root of the recomputed hashes, the
    /// items that did not match with their recomputed hashes (the first
    /// [`MAX_DISPUTED`] of them, ascending by index as the sample is), and the device time
    /// the recomputation took.
    pub fn evidence(&self) -> AuditEvidence {
        let disputed = self
            .verdicts
            .iter()
            .zip(&self.recomputed)
            .filter(|((_, v), _)| !v.matches)
            .map(|((index, _), hash)| Disputed { index: *index, recomputed: *hash })
            .take(MAX_DISPUTED)
            .collect();
        AuditEvidence {
            recomputed_root: MerkleTree::new(self.recomputed.clone()).root(),
            disputed,
            measured_ms: self.metering.device_ms.max(1),
        }
    }
}

/// Recomputes the sample and compares each item with its claim.
pub fn audit(
    executor: &dyn Executor,
    ctx: &TaskContext,
    request: &AuditRequest,
) -> Result<AuditOutcome, ExecError> {
    let recomputed = executor.recompute(ctx, request)?;
    let mut verdicts = Vec::with_capacity(recomputed.items.len());
    for (index, bytes) in &recomputed.items {
        let claimed = request.claim(*index)?;
        verdicts.push((*index, executor.compare(ctx, claimed, bytes)));
    }
    let hashes = recomputed.items.iter().map(|(_, bytes)| Hash::of(bytes)).collect();
    Ok(AuditOutcome { verdicts, recomputed: hashes, metering: recomputed.metering })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_per_kind() {
        let embed = JobParams::Embed { batch_size: 4 };
        assert_eq!(inputs_needed(&embed, &[5, 2, 5], 10), vec![2, 5]);
        assert_eq!(claims_needed(&embed, &[5, 2]), vec![2, 5]);
        let train = JobParams::Train {
            steps: 10,
            checkpoint_every: 2,
            batch_size: 4,
            hidden: 8,
            learning_rate_micros: 1000,
            seed: 1,
        };
        assert_eq!(inputs_needed(&train, &[3], 4), vec![0, 1, 2, 3]);
        assert_eq!(claims_needed(&train, &[0, 3]), vec![0, 2, 3]);
    }
}
