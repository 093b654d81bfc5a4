//! Audit comparison: does a recomputed item agree with what the provider claimed?
//!
//! One function per job kind, because "agree" means different things:
//!
//! - `wasm` — the runtime is deterministic, so the bytes must be identical ([`wasm`]).
//! - `embed` — float kernels differ across CPUs (cache-dependent GEMM blocking) and batchings
//!   (padding), so vectors are compared with a max-abs and a cosine threshold ([`embed`]).
//! - `generate` — token ids must match; a step where the auditor's model would have chosen
//!   another token is forgiven only if it was a near tie ([`generate`]).
//! - `train` — checkpoints must have the same step and data cursor and weights within a
//!   relative L2 distance ([`train`]).
//!
//! Every threshold is a named constant with the measurements behind it in its doc comment.
//! A comparison never panics on hostile bytes: a malformed claim is a mismatch.

pub mod embed;
pub mod generate;
pub mod train;
pub mod wasm;

use agora_core::JobParams;

/// The outcome of comparing one claimed item with its recomputation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// Whether the claim is accepted.
    pub matches: bool,
    /// What was measured, for the audit report (e.g. the distances and thresholds).
    pub detail: String,
}

impl Verdict {
    /// An accepting verdict.
    pub fn pass(detail: impl Into<String>) -> Self {
        Verdict { matches: true, detail: detail.into() }
    }

    /// A rejecting verdict.
    pub fn fail(detail: impl Into<String>) -> Self {
        Verdict { matches: false, detail: detail.into() }
    }
}

/// Compares a claimed output item with a recomputed one under the rules of the job's kind.
pub fn compare(params: &JobParams, claimed: &[u8], recomputed: &[u8]) -> Verdict {
    match params {
        JobParams::Wasm { .. } => wasm::compare(claimed, recomputed),
        JobParams::Embed { .. } => embed::compare(claimed, recomputed),
        JobParams::Generate { .. } => generate::compare(claimed, recomputed),
        JobParams::Train { .. } => train::compare(claimed, recomputed),
    }
}
