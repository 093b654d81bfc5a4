//! Deterministic WebAssembly jobs: wasmtime with every source of nondeterminism removed and
//! every resource capped, so audits can compare output bytes exactly.
//!
//! - [`engine`]: the wasmtime configuration (fuel, epochs, NaN canonicalisation, no threads,
//!   deterministic relaxed SIMD);
//! - [`wasi`]: the virtual WASI preview 1 a module sees (args, stdin = input item,
//!   stdout = output item, fixed clocks, seeded randomness, no files, env or network);
//! - [`limits`]: the memory cap and the wall-clock ticker;
//! - [`budget`]: the fuel and time a shard's lease bought, shared by its items;
//! - [`stop`]: why an item was stopped;
//! - [`executor`]: [`WasmExecutor`], the `agora_runtime::Executor` for `wasm` jobs.

pub mod budget;
pub mod engine;
pub mod executor;
pub mod limits;
pub mod stop;
pub mod wasi;

pub use executor::WasmExecutor;
pub use stop::Stop;
