//! The `train` executor: example items in, a checkpoint every `checkpoint_every` steps out.
//!
//! Output item i is the training state after `min((i+1)·K, steps)` steps. An auditor
//! replays segment i from the claimed checkpoint i−1 (or from the seeded initialisation for
//! i = 0) over the full data set and compares its checkpoint with the claimed one
//! (`agora_runtime::compare::train`). On one machine the replay is bit-identical.

pub mod data;
pub mod mlp;

use crate::device::{device, device_kind};
use agora_core::{Encode, JobKind, JobParams};
use agora_runtime::items::training::{Checkpoint, MAX_TENSOR_VALUES};
use agora_runtime::{AuditRequest, ExecError, Executor, Meter, Recomputed, RunOutput, TaskContext};
use candle_core::Device;
use data::{Cursor, Dataset};
use mlp::TrainState;

/// The training job's parameters, checked.
struct Plan {
    steps: u32,
    every: u32,
    batch: usize,
    hidden: usize,
    lr: f64,
    seed: u64,
}

impl Plan {
    /// Checks the parameters against the data set, including that a model with `hidden` units
    /// over it keeps every parameter tensor within what a checkpoint may hold (so training
    /// never allocates, or commits, what no auditor could decode).
    fn from(ctx: &TaskContext, data: &Dataset) -> Result<Self, ExecError> {
        let examples = data.len;
        ctx.expect_kind(JobKind::Train)?;
        let JobParams::Train { steps, checkpoint_every, batch_size, hidden, learning_rate_micros, seed } =
            ctx.params
        else {
            unreachable!("kind checked")
        };
        if steps == 0 || checkpoint_every == 0 || batch_size == 0 || hidden == 0 {
            return Err(ExecError::BadParams(
                "steps, checkpoint_every, batch_size and hidden must be positive".into(),
            ));
        }
        let widest = data.inputs.max(data.classes).saturating_mul(hidden as usize);
        if widest > MAX_TENSOR_VALUES {
            return Err(ExecError::BadParams(format!(
                "{} features, {} classes and {hidden} hidden units make a {widest}-value layer, more than the limit of {MAX_TENSOR_VALUES}; lower hidden",
                data.inputs, data.classes
            )));
        }
        if batch_size as usize > examples {
            return Err(ExecError::BadParams(format!(
                "batch_size {batch_size} exceeds the {examples} examples"
            )));
        }
        Ok(Plan {
            steps,
            every: checkpoint_every,
            batch: batch_size as usize,
            hidden: hidden as usize,
            lr: f64::from(learning_rate_micros) / 1e6,
            seed,
        })
    }

    /// Steps completed at checkpoint `i`.
    fn step_at(&self, i: u32) -> u32 {
        ((i + 1).saturating_mul(self.every)).min(self.steps)
    }

    fn checkpoints(&self) -> u32 {
        self.steps.div_ceil(self.every)
    }
}

/// Runs `train` jobs (an MLP classifier) on the CPU or, with the `cuda` feature, a GPU.
pub struct TrainExecutor {
    device: Device,
}

impl Default for TrainExecutor {
    fn default() -> Self {
        TrainExecutor { device: device() }
    }
}

impl TrainExecutor {
    /// An executor on the default device.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trains from `state` at `cursor` until `until` steps, emitting a checkpoint at every
    /// checkpoint boundary passed.
    fn advance(
        &self,
        plan: &Plan,
        data: &Dataset,
        state: &mut TrainState,
        cursor: &mut Cursor,
        until: u32,
    ) -> candle_core::Result<Vec<Checkpoint>> {
        let mut out = Vec::new();
        let (mut loss_sum, mut count) = (0f64, 0u32);
        while state.step < until {
            let (x, y) = data.batch(&cursor.next_batch())?;
            loss_sum += f64::from(state.step(&x, &y, plan.lr)?);
            count += 1;
            if state.step.is_multiple_of(plan.every) || state.step == plan.steps {
                out.push(state.checkpoint(
                    cursor.epoch,
                    cursor.position,
                    (loss_sum / f64::from(count)) as f32,
                )?);
                (loss_sum, count) = (0.0, 0);
            }
        }
        Ok(out)
    }

    /// Class predictions of a checkpoint for example items (for evaluation).
    pub fn predict(
        &self,
        ckpt: &Checkpoint,
        hidden: usize,
        items: &[(u32, &[u8])],
    ) -> Result<Vec<u32>, ExecError> {
        let data = Dataset::from_items(items, &self.device)?;
        let state = TrainState::from_checkpoint(ckpt, data.inputs, hidden, data.classes, &self.device)?;
        let idx: Vec<u32> = (0..data.len as u32).collect();
        let run = || -> candle_core::Result<Vec<u32>> {
            let (x, _) = data.batch(&idx)?;
            state.logits(&x)?.argmax(1)?.to_vec1::<u32>()
        };
        run().map_err(ExecError::model)
    }
}

impl Executor for TrainExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Train
    }

    fn run(&self, ctx: &TaskContext, inputs: &[Vec<u8>]) -> Result<RunOutput, ExecError> {
        let meter = Meter::start(device_kind(&self.device));
        let items: Vec<(u32, &[u8])> =
            inputs.iter().enumerate().map(|(i, b)| (i as u32, b.as_slice())).collect();
        let data = Dataset::from_items(&items, &self.device)?;
        let plan = Plan::from(ctx, &data)?;
        let mut state = TrainState::init(plan.seed, data.inputs, plan.hidden, data.classes, &self.device)
            .map_err(ExecError::model)?;
        let mut cursor = Cursor::new(plan.seed, data.len, plan.batch, 0, 0);
        let checkpoints =
            self.advance(&plan, &data, &mut state, &mut cursor, plan.steps).map_err(ExecError::model)?;
        Ok(RunOutput {
            items: checkpoints.iter().map(Encode::encode).collect(),
            metering: meter.read(&ctx.power),
        })
    }

    fn recompute(&self, ctx: &TaskContext, request: &AuditRequest) -> Result<Recomputed, ExecError> {
        let meter = Meter::start(device_kind(&self.device));
        let mut inputs: Vec<(u32, &[u8])> = request.inputs.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        inputs.sort_by_key(|(i, _)| *i);
        if inputs.iter().enumerate().any(|(pos, (i, _))| pos as u32 != *i) {
            return Err(ExecError::BadAudit(
                "a training replay needs every input item, 0..n, once each".into(),
            ));
        }
        let data = Dataset::from_items(&inputs, &self.device)?;
        let plan = Plan::from(ctx, &data)?;
        let mut items = Vec::with_capacity(request.indices.len());
        for &i in &request.indices {
            if i >= plan.checkpoints() {
                return Err(ExecError::BadAudit(format!(
                    "checkpoint {i} does not exist ({} in all)",
                    plan.checkpoints()
                )));
            }
            let (mut state, mut cursor) = if i == 0 {
                let s = TrainState::init(plan.seed, data.inputs, plan.hidden, data.classes, &self.device)
                    .map_err(ExecError::model)?;
                (s, Cursor::new(plan.seed, data.len, plan.batch, 0, 0))
            } else {
                let prev = Checkpoint::from_item(request.claim(i - 1)?).map_err(|e| {
                    ExecError::BadAudit(format!("claimed checkpoint {} is malformed: {e}", i - 1))
                })?;
                if prev.step != plan.step_at(i - 1) {
                    return Err(ExecError::BadAudit(format!(
                        "claimed checkpoint {} is at step {}, expected {}",
                        i - 1,
                        prev.step,
                        plan.step_at(i - 1)
                    )));
                }
                let s =
                    TrainState::from_checkpoint(&prev, data.inputs, plan.hidden, data.classes, &self.device)?;
                (s, Cursor::new(plan.seed, data.len, plan.batch, prev.epoch, prev.position))
            };
            let out = self
                .advance(&plan, &data, &mut state, &mut cursor, plan.step_at(i))
                .map_err(ExecError::model)?;
            let last = out.last().ok_or_else(|| ExecError::BadAudit(format!("segment {i} is empty")))?;
            items.push((i, last.encode()));
        }
        Ok(Recomputed { items, metering: meter.read(&ctx.power) })
    }
}
