//! How fast this machine burns wasm fuel, against the rate a lease's device-second buys.
//!
//! `cargo bench -p agora-wasm --bench fuel_rate`. A shard's fuel is
//! `FUEL_PER_DEVICE_SECOND` × its device-seconds; that bound must end a runaway shard before
//! its wall time does, so the measured rate should be well above the purchase rate. Prints
//! fuel units per second for a tight loop (the runaway case) and for the ray tracer (real
//! work), and each one's ratio to the purchase rate.

use agora_core::{Hash, JobParams};
use agora_runtime::{ExecError, Executor, PowerModel, TaskContext};
use agora_wasm::WasmExecutor;
use agora_wasm::budget::FUEL_PER_DEVICE_SECOND;
use std::path::PathBuf;
use std::time::Instant;

fn example(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/wasm").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ctx(module: &[u8], fuel: u64, args: &[&str]) -> TaskContext {
    TaskContext {
        job: Hash::of(b"fuel-rate"),
        shard: 0,
        model: Hash::of(module),
        params: JobParams::Wasm {
            fuel_per_item: fuel,
            memory_mib: 64,
            args: args.iter().map(|a| a.to_string()).collect(),
        },
        power: PowerModel::CPU_CORE,
        device_seconds: None,
    }
}

/// Fuel burned and seconds taken by one run (a stop still reports the fuel it burned).
fn measure(module: &[u8], c: &TaskContext, inputs: &[Vec<u8>]) -> (u64, f64) {
    let exec = WasmExecutor::new(module).expect("the example module loads");
    let started = Instant::now();
    let fuel = match exec.run(c, inputs) {
        Ok(out) => out.metering.fuel,
        Err(ExecError::Stopped { metering, .. }) => metering.fuel,
        Err(e) => panic!("{e}"),
    };
    (fuel, started.elapsed().as_secs_f64())
}

fn report(name: &str, (fuel, secs): (u64, f64)) {
    let rate = fuel as f64 / secs;
    println!(
        "{name:<28} {fuel:>14} fuel in {secs:>6.2} s = {:>7.0} M fuel/s = {:>5.1}x the purchase rate ({} M/s)",
        rate / 1e6,
        rate / FUEL_PER_DEVICE_SECOND as f64,
        FUEL_PER_DEVICE_SECOND / 1_000_000
    );
}

fn main() {
    let spin = example("bombs/loop.wat");
    report("tight loop (runaway)", measure(&spin, &ctx(&spin, 2_000_000_000, &[]), &[vec![]]));
    let ray = example("raytrace.wasm");
    let frames: Vec<Vec<u8>> =
        (0..4).map(|f| format!("width=96 height=64 samples=4 frame={f} frames=4").into_bytes()).collect();
    report(
        "ray tracer 96x64, 4 frames",
        measure(&ray, &ctx(&ray, 50_000_000_000, &["--bounces", "3"]), &frames),
    );
}
