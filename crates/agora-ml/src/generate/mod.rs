//! The `generate` executor: prompts in, [`Generation`]s (completion + token ids) out.
//!
//! Each item is decoded on its own with a fresh KV cache: greedy when the manifest's
//! temperature is 0, else seeded sampling with a seed derived from the manifest seed, the
//! shard and the item index, so any auditor draws the same numbers. Generation stops at an
//! EOS token, a stop string or `max_new_tokens`.
//!
//! An audit replays the claimed tokens (teacher forcing) and records every step where the
//! model would have chosen otherwise, with the margin; `agora_runtime::compare::generate`
//! then forgives only near ties.

pub mod batch;
pub mod header;
pub mod llama;
pub mod model;
pub mod requant;
pub mod sampler;
pub mod tokenizer;

pub use model::Llm;
pub use requant::Requantize;

use crate::device::{device, device_kind};
use agora_core::Encode;
use agora_core::{JobKind, JobParams};
use agora_runtime::items::generation::{Decoding, Generation, GenerationCheck};
use agora_runtime::items::text::decode_text;
use agora_runtime::rng::derive_seed;
use agora_runtime::{AuditRequest, ExecError, Executor, Meter, Recomputed, RunOutput, TaskContext};
use model::{Outcome, Request};
use sampler::Sampler;
use std::path::Path;

/// Runs `generate` jobs with one loaded model.
pub struct GenerateExecutor {
    llm: Llm,
}

impl GenerateExecutor {
    /// Loads `model.gguf` from a model directory, or a GGUF file given directly.
    pub fn load(path: &Path) -> Result<Self, ExecError> {
        let file = if path.is_dir() { path.join("model.gguf") } else { path.to_path_buf() };
        Ok(GenerateExecutor { llm: Llm::load(&file, &device())? })
    }

    /// The loaded model.
    pub fn llm(&self) -> &Llm {
        &self.llm
    }

    fn one(
        &self,
        ctx: &TaskContext,
        index: u32,
        prompt: &[u8],
        follow: Option<&[u32]>,
    ) -> Result<Outcome, ExecError> {
        ctx.expect_kind(JobKind::Generate)?;
        let JobParams::Generate { max_new_tokens, temperature_milli, seed, stop } = &ctx.params else {
            unreachable!("kind checked")
        };
        if stop.iter().any(String::is_empty) {
            return Err(ExecError::BadParams("stop strings must not be empty".into()));
        }
        let prompt = decode_text(prompt).map_err(|e| ExecError::BadInput { index, reason: e.to_string() })?;
        self.llm
            .generate(&Request {
                prompt,
                max_new_tokens: *max_new_tokens as usize,
                stop,
                sampler: Sampler::from_milli(*temperature_milli),
                seed: derive_seed("agora/ml/generate-seed", &[*seed, u64::from(ctx.shard), u64::from(index)]),
                follow,
            })
            .map_err(|e| prompt_error(index, e))
    }
}

/// A prompt the model refuses is its input item's fault: the only parameter problem the model
/// finds is a prompt that is too long.
fn prompt_error(index: u32, e: ExecError) -> ExecError {
    match e {
        ExecError::BadParams(reason) => ExecError::BadInput { index, reason },
        e => e,
    }
}

impl Executor for GenerateExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Generate
    }

    /// A prompt is usable if it is text and, chat-templated, within [`MAX_PROMPT_TOKENS`].
    fn check_input(&self, ctx: &TaskContext, index: u32, item: &[u8]) -> Result<(), ExecError> {
        ctx.expect_kind(JobKind::Generate)?;
        let prompt = decode_text(item).map_err(|e| ExecError::BadInput { index, reason: e.to_string() })?;
        self.llm.prompt_tokens(prompt).map(drop).map_err(|e| prompt_error(index, e))
    }

    fn run(&self, ctx: &TaskContext, inputs: &[Vec<u8>]) -> Result<RunOutput, ExecError> {
        let meter = Meter::start(device_kind(self.llm.device()));
        let items = inputs
            .iter()
            .enumerate()
            .map(|(i, prompt)| Ok(self.one(ctx, i as u32, prompt, None)?.generation.encode()))
            .collect::<Result<Vec<_>, ExecError>>()?;
        Ok(RunOutput { items, metering: meter.read(&ctx.power) })
    }

    /// Replays each sampled item along its claimed tokens and returns [`GenerationCheck`]
    /// records (a malformed claim is replayed as a plain run, and will not match).
    fn recompute(&self, ctx: &TaskContext, request: &AuditRequest) -> Result<Recomputed, ExecError> {
        let meter = Meter::start(device_kind(self.llm.device()));
        let decoding = match ctx.params {
            JobParams::Generate { temperature_milli: 0, .. } => Decoding::Greedy,
            _ => Decoding::Sampled,
        };
        let mut items = Vec::with_capacity(request.indices.len());
        for &index in &request.indices {
            let claim = Generation::from_item(request.claim(index)?).ok();
            let outcome =
                self.one(ctx, index, request.input(index)?, claim.as_ref().map(|c| c.tokens.as_slice()))?;
            let check =
                GenerationCheck { decoding, replay: outcome.generation, divergences: outcome.divergences };
            items.push((index, check.encode()));
        }
        Ok(Recomputed { items, metering: meter.read(&ctx.power) })
    }
}
