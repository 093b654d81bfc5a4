//! Local runs: a job described by a small TOML file, run on this machine without a network.
//!
//! This is what `agora run JOB.toml --local` does: resolve the model (pulling a known one on
//! first use), read the inputs into items, build the same [`JobManifest`] and
//! [`TaskContext`] a network job would have, run the executor and report outputs, their
//! Merkle root and metering. See [`job`] for the file format.

pub mod dataset;
pub mod error;
pub mod job;
pub mod outcome;

pub use error::LocalError;
pub use job::{InputFormat, LocalJob, ResolvedModel};
pub use outcome::{LocalOutcome, write_items};

use crate::executor::{Executor, TaskContext};
use crate::metering::PowerModel;
use agora_core::manifest::{Constraints, JobManifest, ShardSpec, VerificationPolicy};
use agora_core::merkle::MerkleTree;
use agora_core::{Amount, DeviceKind, Hash};

/// Runs a local job with `executor` (which must have loaded `model`) and returns its outcome.
pub fn run_local(
    job: &LocalJob,
    model: &ResolvedModel,
    executor: &dyn Executor,
) -> Result<LocalOutcome, LocalError> {
    let inputs = job.read_inputs(model)?;
    let manifest = local_manifest(job, model, &inputs)?;
    let ctx = TaskContext {
        job: Hash::of_encoded("agora/runtime/local-job", &manifest),
        shard: 0,
        model: model.hash,
        params: job.params.clone(),
        power: PowerModel::for_device(DeviceKind::Cpu),
        device_seconds: None,
    };
    let output = executor.run(&ctx, &inputs)?;
    let output_root = MerkleTree::from_items(&output.items).root();
    Ok(LocalOutcome { manifest, ctx, output, output_root })
}

/// The manifest a network job with the same model, parameters and inputs would carry
/// (one free, unverified shard on a CPU class).
fn local_manifest(
    job: &LocalJob,
    model: &ResolvedModel,
    inputs: &[Vec<u8>],
) -> Result<JobManifest, LocalError> {
    // The same framing as agora-store's item lists, so the input hash is the blob's address.
    let mut framed = Vec::new();
    agora_core::codec::encode_seq(inputs.iter(), &mut framed);
    let manifest = JobManifest {
        model: model.hash,
        params: job.params.clone(),
        class: "cpu.x86_64".parse().expect("valid class"),
        shards: vec![ShardSpec {
            input: Hash::of(&framed),
            items_root: MerkleTree::from_items(inputs).root(),
            item_count: u32::try_from(inputs.len()).unwrap_or(u32::MAX),
            quantity: 1,
        }],
        max_unit_price: Amount(0),
        deadline_ms: u64::MAX,
        policy: VerificationPolicy::None,
        constraints: Constraints::default(),
        encrypted: false,
        sources: vec![],
        key_agent: None,
        output_key: None,
    };
    manifest.validate()?;
    Ok(manifest)
}
