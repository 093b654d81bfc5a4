//! [`WasmExecutor`]: runs a wasm command module once per item under the Agora limits.

use crate::budget::{FUEL_PER_DEVICE_SECOND, ShardBudget};
use crate::engine::build_engine;
use crate::limits::{EpochTicker, MemoryCap};
use crate::stop::Stop;
use crate::wasi::{MAX_OUTPUT, item_ctx};
use agora_core::{DeviceKind, Hash, JobKind, JobParams};
use agora_runtime::{AuditRequest, ExecError, Executor, Meter, Recomputed, RunOutput, TaskContext};
use std::time::Duration;
use wasmtime::{Engine, Linker, Module, Store, Trap};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::{self, WasiP1Ctx};

/// Default wall-clock cap per item.
pub const DEFAULT_ITEM_TIME_LIMIT: Duration = Duration::from_secs(300);

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a valid module (or WAT text) for this engine.
    #[error("not a usable WebAssembly module: {0:#}; build it for wasm32-wasip1 without threads")]
    Module(wasmtime::Error),
    /// The engine or the WASI linker could not be set up.
    #[error("wasm engine setup failed: {0:#}")]
    Engine(wasmtime::Error),
}

struct State {
    wasi: WasiP1Ctx,
    memory: MemoryCap,
}

/// Runs one compiled module on the items of `wasm` jobs.
pub struct WasmExecutor {
    engine: Engine,
    module: Module,
    module_hash: Hash,
    linker: Linker<State>,
    time_limit: Duration,
    _ticker: EpochTicker,
}

/// Outputs as `(index, bytes)`.
type IndexedItems = Vec<(u32, Vec<u8>)>;

/// One item's successful run.
struct ItemRun {
    output: Vec<u8>,
    fuel: u64,
}

impl WasmExecutor {
    /// Compiles `bytes` (a binary module, or WAT text) for running. The module's address is
    /// the BLAKE3 of these bytes; tasks naming another model are refused.
    pub fn new(bytes: &[u8]) -> Result<Self, LoadError> {
        let engine = build_engine().map_err(LoadError::Engine)?;
        let module = Module::new(&engine, bytes).map_err(LoadError::Module)?;
        let mut linker = Linker::new(&engine);
        p1::add_to_linker_sync(&mut linker, |s: &mut State| &mut s.wasi).map_err(LoadError::Engine)?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(WasmExecutor {
            engine,
            module,
            module_hash: Hash::of(bytes),
            linker,
            time_limit: DEFAULT_ITEM_TIME_LIMIT,
            _ticker: ticker,
        })
    }

    /// Sets the wall-clock cap per item.
    pub fn with_time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    /// The module's content hash.
    pub fn module_hash(&self) -> Hash {
        self.module_hash
    }

    fn params(&self, ctx: &TaskContext) -> Result<(u64, u32, Vec<String>), ExecError> {
        ctx.expect_kind(JobKind::Wasm)?;
        if ctx.model != self.module_hash {
            return Err(ExecError::BadParams(format!(
                "the task names module {} but this executor loaded {}",
                ctx.model, self.module_hash
            )));
        }
        match &ctx.params {
            JobParams::Wasm { fuel_per_item, memory_mib, args } => {
                Ok((*fuel_per_item, *memory_mib, args.clone()))
            }
            _ => unreachable!("kind checked"),
        }
    }

    /// Runs the module on one item, within what is left of the shard's `budget`.
    fn run_item(
        &self,
        ctx: &TaskContext,
        budget: &ShardBudget,
        index: u32,
        input: &[u8],
    ) -> Result<ItemRun, Stop> {
        let (fuel_per_item, memory_mib, args) =
            self.params(ctx).map_err(|e| Stop::Instantiate(e.to_string()))?;
        let limits = budget.for_item(fuel_per_item, self.time_limit);
        let fuel_budget = limits.fuel;
        if fuel_budget == 0 {
            return Err(shard_stop(budget, true, 0));
        }
        if limits.time.is_zero() {
            return Err(shard_stop(budget, false, 0));
        }
        let (wasi, pipes) = item_ctx(&args, input, ctx.item_seed(index));
        let mut store = Store::new(&self.engine, State { wasi, memory: MemoryCap::new(memory_mib) });
        store.limiter(|s| &mut s.memory);
        store.set_fuel(fuel_budget).expect("fuel is enabled");
        store.set_epoch_deadline(EpochTicker::ticks_for(limits.time));
        let used = |store: &Store<State>| fuel_budget - store.get_fuel().unwrap_or(0);

        let instance = self.linker.instantiate(&mut store, &self.module).map_err(|e| {
            match store.data().memory.refused {
                Some(requested) => Stop::MemoryCap { cap_mib: memory_mib, requested, used: 0 },
                None => Stop::Instantiate(format!("{e:#}")),
            }
        })?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start").map_err(|_| {
            Stop::Instantiate("the module exports no `_start` function (build a WASI command)".into())
        })?;
        let result = start.call(&mut store, ());
        let fuel = used(&store);
        let stderr = || {
            let bytes = pipes.stderr.contents();
            let text = String::from_utf8_lossy(&bytes);
            let tail: String =
                text.trim_end().chars().rev().take(400).collect::<Vec<_>>().into_iter().rev().collect();
            if tail.is_empty() { String::new() } else { format!("; stderr: {tail}") }
        };
        if let Err(e) = result {
            match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(0)) => {}
                Some(I32Exit(code)) => return Err(Stop::Exit { code: *code, used: fuel, stderr: stderr() }),
                None => {
                    if let Some(requested) = store.data().memory.refused {
                        return Err(Stop::MemoryCap { cap_mib: memory_mib, requested, used: fuel });
                    }
                    return Err(match e.downcast_ref::<Trap>() {
                        Some(Trap::OutOfFuel) if limits.fuel_is_shard => {
                            shard_stop(budget, true, fuel_budget)
                        }
                        Some(Trap::OutOfFuel) => Stop::OutOfFuel { used: fuel_budget, budget: fuel_budget },
                        Some(Trap::Interrupt) if limits.time_is_shard => shard_stop(budget, false, fuel),
                        Some(Trap::Interrupt) => Stop::WallClock { limit: self.time_limit, used: fuel },
                        Some(trap) => Stop::Trap { trap: trap.to_string(), used: fuel, stderr: stderr() },
                        None => Stop::Trap { trap: format!("{e:#}"), used: fuel, stderr: stderr() },
                    });
                }
            }
        }
        let output = pipes.stdout.contents();
        if output.len() >= MAX_OUTPUT {
            return Err(Stop::OutputTooLarge { limit: MAX_OUTPUT });
        }
        Ok(ItemRun { output: output.to_vec(), fuel })
    }

    /// Runs `items` in order within one shard budget (the lease's device-seconds).
    fn run_many<'a>(
        &self,
        ctx: &TaskContext,
        items: impl Iterator<Item = (u32, &'a [u8])>,
    ) -> Result<(IndexedItems, Meter), ExecError> {
        self.params(ctx)?;
        let mut meter = Meter::start(DeviceKind::Cpu);
        let mut budget = ShardBudget::start(ctx.device_seconds);
        let mut out = Vec::new();
        for (index, input) in items {
            let ran = self.run_item(ctx, &budget, index, input);
            budget.spend(ran.as_ref().map_or_else(Stop::fuel_used, |r| r.fuel));
            match ran {
                Ok(run) => {
                    meter.add_fuel(run.fuel);
                    out.push((index, run.output));
                }
                Err(stop) => {
                    meter.add_fuel(stop.fuel_used());
                    return Err(ExecError::Stopped {
                        index,
                        cause: Box::new(stop),
                        metering: meter.read(&ctx.power),
                    });
                }
            }
        }
        Ok((out, meter))
    }
}

/// The stop of an item cut short by its shard's budget: its fuel (the deterministic bound) or,
/// for a provider far slower than the fuel rate assumes, its time.
fn shard_stop(budget: &ShardBudget, fuel_ran_out: bool, used: u64) -> Stop {
    let device_seconds = budget.device_seconds().unwrap_or(0);
    if fuel_ran_out {
        Stop::ShardFuel {
            budget: budget.total_fuel().unwrap_or(0),
            device_seconds,
            per_second: FUEL_PER_DEVICE_SECOND,
            used,
        }
    } else {
        Stop::ShardTime { device_seconds, used }
    }
}

impl Executor for WasmExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Wasm
    }

    fn run(&self, ctx: &TaskContext, inputs: &[Vec<u8>]) -> Result<RunOutput, ExecError> {
        let items = inputs.iter().enumerate().map(|(i, b)| (i as u32, b.as_slice()));
        let (out, meter) = self.run_many(ctx, items)?;
        Ok(RunOutput { items: out.into_iter().map(|(_, b)| b).collect(), metering: meter.read(&ctx.power) })
    }

    fn recompute(&self, ctx: &TaskContext, request: &AuditRequest) -> Result<Recomputed, ExecError> {
        let inputs = request
            .indices
            .iter()
            .map(|&i| Ok((i, request.input(i)?)))
            .collect::<Result<Vec<_>, ExecError>>()?;
        let (items, meter) = self.run_many(ctx, inputs.into_iter())?;
        Ok(Recomputed { items, metering: meter.read(&ctx.power) })
    }
}
