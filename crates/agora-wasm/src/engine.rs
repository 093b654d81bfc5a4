//! The wasmtime configuration every Agora provider and auditor uses.

use wasmtime::{Config, Engine};

/// Builds the engine: deterministic execution with fuel metering and epoch interruption.
///
/// - fuel metering charges every instruction, so the cost of a run is a number every honest
///   machine agrees on;
/// - epoch interruption enforces the wall-clock cap without instrumenting every loop with a
///   clock read;
/// - NaN canonicalisation makes float results bit-identical across CPUs (NaN payloads are
///   the only float bits wasm leaves to the hardware);
/// - relaxed SIMD, whose results may differ per CPU by design, is off, and its
///   deterministic lowering is forced should a later change turn it on;
/// - multi-memory is off, so a module has at most one linear memory and the memory cap is
///   the whole of what it can allocate (the limiter counts every memory together as well);
/// - the threads proposal is not compiled in (wasmtime's `threads` feature is off), so
///   modules with shared memory or atomics waits are rejected at compile time.
pub fn build_engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_nan_canonicalization(true)
        .wasm_relaxed_simd(false)
        .relaxed_simd_deterministic(true)
        .wasm_memory64(false)
        .wasm_multi_memory(false);
    Engine::new(&config)
}
