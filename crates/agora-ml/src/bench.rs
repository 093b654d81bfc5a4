//! Throughput measurements behind the `bench` example (`cargo run --release -p agora-ml --example bench`).

use crate::{EmbedExecutor, GenerateExecutor, TrainExecutor};
use agora_core::{Hash, JobParams};
use agora_runtime::items::generation::Generation;
use agora_runtime::{ExecError, Executor, PowerModel, TaskContext};
use std::time::Instant;

/// A throughput figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Units processed (sentences, tokens, steps).
    pub units: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// CPU seconds of the process over the run (all threads).
    pub cpu_seconds: f64,
}

impl Throughput {
    /// Units per wall-clock second.
    pub fn per_second(&self) -> f64 {
        self.units as f64 / self.seconds
    }
}

fn ctx(params: JobParams) -> TaskContext {
    TaskContext {
        job: Hash::of(b"bench"),
        shard: 0,
        model: Hash::ZERO,
        params,
        power: PowerModel::CPU_CORE,
        device_seconds: None,
    }
}

fn timed<T>(f: impl FnOnce() -> Result<(u64, T), ExecError>) -> Result<(Throughput, T), ExecError> {
    let start = Instant::now();
    let meter = agora_runtime::Meter::start(agora_core::DeviceKind::Cpu);
    let (units, out) = f()?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = meter.read(&PowerModel::CPU_CORE).device_ms as f64 / 1000.0;
    Ok((Throughput { units, seconds, cpu_seconds }, out))
}

/// Embeds `sentences` with `batch_size` (sentences/s).
pub fn embed(exec: &EmbedExecutor, sentences: &[String], batch_size: u32) -> Result<Throughput, ExecError> {
    let inputs: Vec<Vec<u8>> = sentences.iter().map(|s| s.as_bytes().to_vec()).collect();
    let c = ctx(JobParams::Embed { batch_size });
    Ok(timed(|| Ok((inputs.len() as u64, exec.run(&c, &inputs)?)))?.0)
}

/// Generates greedily for each prompt (generated tokens/s, prompt processing included).
pub fn generate(
    exec: &GenerateExecutor,
    prompts: &[String],
    max_new_tokens: u32,
) -> Result<Throughput, ExecError> {
    let inputs: Vec<Vec<u8>> = prompts.iter().map(|s| s.as_bytes().to_vec()).collect();
    let c = ctx(JobParams::Generate { max_new_tokens, temperature_milli: 0, seed: 0, stop: vec![] });
    Ok(timed(|| {
        let out = exec.run(&c, &inputs)?;
        let tokens = out
            .items
            .iter()
            .map(|i| Generation::from_item(i).map(|g| g.tokens.len() as u64))
            .sum::<Result<u64, _>>()
            .map_err(|e| ExecError::model(e.to_string()))?;
        Ok((tokens, ()))
    })?
    .0)
}

/// Trains for `steps` steps (steps/s).
pub fn train(
    examples: &[Vec<u8>],
    steps: u32,
    batch_size: u32,
    hidden: u32,
) -> Result<Throughput, ExecError> {
    let c = ctx(JobParams::Train {
        steps,
        checkpoint_every: steps,
        batch_size,
        hidden,
        learning_rate_micros: 10_000,
        seed: 42,
    });
    let exec = TrainExecutor::new();
    Ok(timed(|| Ok((u64::from(steps), exec.run(&c, examples)?)))?.0)
}
