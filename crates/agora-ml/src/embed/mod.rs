//! The `embed` executor: text items in, L2-normalised f32 vectors out.
//!
//! The batching plan is part of the manifest (`batch_size`) because it changes float
//! rounding: items are sorted by length, batched, padded to the longest in each batch.
//! Auditors recompute a sample with the same `batch_size` but other batch-mates; the
//! comparison tolerates exactly that drift (`agora_runtime::compare::embed`).

pub mod model;

pub use model::Embedder;

use crate::device::{device, device_kind};
use agora_core::{JobKind, JobParams};
use agora_runtime::items::text::decode_text;
use agora_runtime::items::vector::encode_vector;
use agora_runtime::{AuditRequest, ExecError, Executor, Meter, Recomputed, RunOutput, TaskContext};
use std::path::Path;

/// Runs `embed` jobs with one loaded model.
pub struct EmbedExecutor {
    embedder: Embedder,
}

impl EmbedExecutor {
    /// Loads the model directory (`config.json`, `model.safetensors`, `tokenizer.json`).
    pub fn load(dir: &Path) -> Result<Self, ExecError> {
        Ok(EmbedExecutor { embedder: Embedder::load(dir, &device())? })
    }

    /// The loaded model.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    fn embed_items(&self, ctx: &TaskContext, items: &[(u32, &[u8])]) -> Result<Vec<Vec<u8>>, ExecError> {
        ctx.expect_kind(JobKind::Embed)?;
        let JobParams::Embed { batch_size } = ctx.params else { unreachable!("kind checked") };
        let texts = items
            .iter()
            .map(|&(index, bytes)| {
                decode_text(bytes).map_err(|e| ExecError::BadInput { index, reason: e.to_string() })
            })
            .collect::<Result<Vec<&str>, _>>()?;
        Ok(self.embedder.embed(&texts, batch_size as usize)?.iter().map(|v| encode_vector(v)).collect())
    }
}

impl Executor for EmbedExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Embed
    }

    fn run(&self, ctx: &TaskContext, inputs: &[Vec<u8>]) -> Result<RunOutput, ExecError> {
        let meter = Meter::start(device_kind(self.embedder.device()));
        let items: Vec<(u32, &[u8])> =
            inputs.iter().enumerate().map(|(i, b)| (i as u32, b.as_slice())).collect();
        let items = self.embed_items(ctx, &items)?;
        Ok(RunOutput { items, metering: meter.read(&ctx.power) })
    }

    fn recompute(&self, ctx: &TaskContext, request: &AuditRequest) -> Result<Recomputed, ExecError> {
        let meter = Meter::start(device_kind(self.embedder.device()));
        let items = request
            .indices
            .iter()
            .map(|&i| Ok((i, request.input(i)?)))
            .collect::<Result<Vec<_>, ExecError>>()?;
        let vectors = self.embed_items(ctx, &items)?;
        Ok(Recomputed {
            items: request.indices.iter().copied().zip(vectors).collect(),
            metering: meter.read(&ctx.power),
        })
    }
}
