//! The [`Executor`] trait: one interface over every job kind, for providers and auditors.

use crate::compare::{self, Verdict};
use crate::error::ExecError;
use crate::metering::PowerModel;
use crate::rng::derive_seed;
use agora_core::tx::Metering;
use agora_core::{Hash, JobKind, JobParams};

/// Everything about a task that is not its data: identity, parameters, model, device.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskContext {
    /// The job's id (its `SubmitJob` transaction hash, or a content hash for local runs).
    pub job: Hash,
    /// Which shard of the job this task is.
    pub shard: u32,
    /// Content hash of the model bundle or wasm module the task runs.
    pub model: Hash,
    /// Kind-specific parameters from the manifest.
    pub params: JobParams,
    /// How device time turns into an energy estimate.
    pub power: PowerModel,
    /// Device-seconds the lease bought for this shard (the shard's quantity). Executors of
    /// requester-written code (wasm) stop the whole shard when it is spent, deterministically by
    /// fuel. `None` for local runs, which buy nothing.
    pub device_seconds: Option<u64>,
}

impl TaskContext {
    /// The job kind.
    pub fn kind(&self) -> JobKind {
        self.params.kind()
    }

    /// A seed for item `index` that every provider and auditor derives alike: from the job,
    /// the shard and the item, so items never share a random stream.
    pub fn item_seed(&self, index: u32) -> u64 {
        let job = self.job.to_u64();
        derive_seed("agora/runtime/item-seed", &[job, u64::from(self.shard), u64::from(index)])
    }

    /// Fails unless the task is of `kind`.
    pub fn expect_kind(&self, kind: JobKind) -> Result<(), ExecError> {
        if self.kind() == kind {
            Ok(())
        } else {
            Err(ExecError::WrongKind { expected: kind, got: self.kind() })
        }
    }
}

/// A shard's outputs and what producing them cost.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutput {
    /// Output items, in order; their Merkle root is the result commitment.
    pub items: Vec<Vec<u8>>,
    /// Resources used.
    pub metering: Metering,
}

/// What an auditor fetched to recompute a sample of a shard's outputs.
///
/// Use [`crate::audit::inputs_needed`] and [`crate::audit::claims_needed`] to learn which
/// input items and claimed output items to fetch (each verified against its commitment).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AuditRequest {
    /// Output indices to recompute.
    pub indices: Vec<u32>,
    /// Fetched input items as `(index, bytes)`.
    pub inputs: Vec<(u32, Vec<u8>)>,
    /// Fetched claimed output items as `(index, bytes)`: the starting points a replay needs
    /// (training checkpoint i−1) and the claims a replay follows (generated tokens).
    pub claimed: Vec<(u32, Vec<u8>)>,
}

impl AuditRequest {
    /// The fetched input item at `index`.
    pub fn input(&self, index: u32) -> Result<&[u8], ExecError> {
        find(&self.inputs, index)
            .ok_or_else(|| ExecError::BadAudit(format!("input item {index} was not fetched")))
    }

    /// The fetched claimed output item at `index`.
    pub fn claim(&self, index: u32) -> Result<&[u8], ExecError> {
        find(&self.claimed, index)
            .ok_or_else(|| ExecError::BadAudit(format!("claimed output item {index} was not fetched")))
    }
}

fn find(list: &[(u32, Vec<u8>)], index: u32) -> Option<&[u8]> {
    list.iter().find(|(i, _)| *i == index).map(|(_, b)| b.as_slice())
}

/// Recomputed output items and what recomputing them cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Recomputed {
    /// `(index, bytes)` for every requested index, in request order. For most kinds the bytes
    /// are an output item; for generation they are a replay record (see `items::generation`).
    pub items: Vec<(u32, Vec<u8>)>,
    /// Resources used.
    pub metering: Metering,
}

/// Runs one kind of job. Implementations are deterministic functions of the task context,
/// the inputs and (documented) kernel parameters: the same call on the same machine yields
/// the same bytes.
pub trait Executor: Send + Sync {
    /// The job kind this executor runs.
    fn kind(&self) -> JobKind;

    /// Runs a whole shard: input items in, output items out.
    fn run(&self, ctx: &TaskContext, inputs: &[Vec<u8>]) -> Result<RunOutput, ExecError>;

    /// Recomputes the sampled outputs of an audit from the fetched inputs and claims.
    fn recompute(&self, ctx: &TaskContext, request: &AuditRequest) -> Result<Recomputed, ExecError>;

    /// Whether input item `index` (well-formed for the kind: see
    /// [`crate::items::malformed_input`]) can be computed by this executor, with this task's
    /// parameters and model: `Err(ExecError::BadInput)` names what the executor would refuse
    /// before computing (a prompt longer than the model accepts). Cheap: nothing is computed.
    /// Providers state such items invalid, and auditors check the statement with the same
    /// function. By default every well-formed item is usable.
    fn check_input(&self, _ctx: &TaskContext, _index: u32, _item: &[u8]) -> Result<(), ExecError> {
        Ok(())
    }

    /// Decides whether a claimed output agrees with its recomputation (see [`compare`]).
    fn compare(&self, ctx: &TaskContext, claimed: &[u8], recomputed: &[u8]) -> Verdict {
        compare::compare(&ctx.params, claimed, recomputed)
    }
}

/// The first of `items` (`(index, bytes)`) that `executor` cannot compute
/// ([`Executor::check_input`]): its index and why, or `None` if all are usable. Any other
/// failure of the check (the executor's own) is returned as an error: it says nothing about
/// the items.
pub fn first_unusable<'a>(
    executor: &dyn Executor,
    ctx: &TaskContext,
    items: impl IntoIterator<Item = (u32, &'a [u8])>,
) -> Result<Option<(u32, String)>, ExecError> {
    for (index, item) in items {
        match executor.check_input(ctx, index, item) {
            Ok(()) => {}
            Err(ExecError::BadInput { index, reason }) => return Ok(Some((index, reason))),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}
