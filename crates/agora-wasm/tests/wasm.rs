//! The wasm executor against the committed example modules and the bomb modules.

use agora_core::{Hash, JobParams};
use agora_runtime::audit::audit;
use agora_runtime::{AuditRequest, ExecError, Executor, PowerModel, TaskContext};
use agora_wasm::budget::FUEL_PER_DEVICE_SECOND;
use agora_wasm::{Stop, WasmExecutor};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn example(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/wasm").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ctx(module: &[u8], fuel: u64, memory_mib: u32, args: &[&str]) -> TaskContext {
    TaskContext {
        job: Hash::of(b"job"),
        shard: 0,
        model: Hash::of(module),
        params: JobParams::Wasm {
            fuel_per_item: fuel,
            memory_mib,
            args: args.iter().map(|s| s.to_string()).collect(),
        },
        power: PowerModel::CPU_CORE,
        device_seconds: None,
    }
}

fn stopped(e: ExecError) -> (Stop, u64) {
    match e {
        ExecError::Stopped { cause, metering, .. } => {
            (*cause.downcast::<Stop>().expect("a wasm stop"), metering.fuel)
        }
        other => panic!("expected a stop, got {other}"),
    }
}

#[test]
fn raytracer_is_deterministic_and_audits_exactly() {
    let module = example("raytrace.wasm");
    let exec = WasmExecutor::new(&module).unwrap();
    let c = ctx(&module, 5_000_000_000, 32, &["--bounces", "2"]);
    let inputs: Vec<Vec<u8>> =
        (0..3).map(|f| format!("width=32 height=24 samples=2 frame={f} frames=8").into_bytes()).collect();
    let a = exec.run(&c, &inputs).unwrap();
    let b = exec.run(&c, &inputs).unwrap();
    assert_eq!(a.items, b.items, "same task, same bytes");
    assert_eq!(a.metering.fuel, b.metering.fuel, "fuel is deterministic too");
    assert!(a.metering.fuel > 0);
    assert!(a.items[0].starts_with(b"P6\n32 24\n255\n"));
    assert_eq!(a.items[0].len(), "P6\n32 24\n255\n".len() + 32 * 24 * 3);
    assert_ne!(a.items[0], a.items[1], "frames differ");

    // Arguments reach the module.
    let flat = exec.run(&ctx(&module, 5_000_000_000, 32, &["--bounces", "0"]), &inputs[..1]).unwrap();
    assert_ne!(flat.items[0], a.items[0]);

    // An auditor recomputes one sampled item and compares bytes.
    let req = AuditRequest {
        indices: vec![2],
        inputs: vec![(2, inputs[2].clone())],
        claimed: vec![(2, a.items[2].clone())],
    };
    let outcome = audit(&exec, &c, &req).unwrap();
    assert!(outcome.passed(), "{:?}", outcome.verdicts);
    let mut forged = a.items[2].clone();
    *forged.last_mut().unwrap() ^= 1;
    let req = AuditRequest { claimed: vec![(2, forged)], ..req };
    assert!(!audit(&exec, &c, &req).unwrap().passed());
}

#[test]
fn montecarlo_randomness_is_seeded_per_item() {
    let module = example("montecarlo.wasm");
    let exec = WasmExecutor::new(&module).unwrap();
    let c = ctx(&module, 1_000_000_000, 16, &[]);
    let inputs = vec![b"samples=20000".to_vec(), b"samples=20000".to_vec()];
    let a = exec.run(&c, &inputs).unwrap();
    let text = String::from_utf8(a.items[0].clone()).unwrap();
    assert!(text.starts_with("samples=20000 inside="), "{text}");
    let pi: f64 = text.trim().rsplit('=').next().unwrap().parse().unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.1, "{pi}");
    assert_ne!(a.items[0], a.items[1], "items get different seeds");
    assert_eq!(exec.run(&c, &inputs).unwrap().items, a.items, "but the same seed on every run");
    let other_job = TaskContext { job: Hash::of(b"other job"), ..c };
    assert_ne!(exec.run(&other_job, &inputs).unwrap().items, a.items, "and another job gets other seeds");
}

/// Prints what the virtual WASI exposes: the wall and monotonic clocks (8 bytes each), the
/// argument and environment counts (4 bytes each) and the errno of opening fd 3 as a
/// directory (no preopens: EBADF = 8).
const PROBE: &str = r#"(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 0)))
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 8)))
    (drop (call $args (i32.const 16) (i32.const 100)))
    (drop (call $env (i32.const 20) (i32.const 100)))
    (i32.store (i32.const 24) (call $prestat (i32.const 3) (i32.const 200)))
    (i32.store (i32.const 300) (i32.const 0))
    (i32.store (i32.const 304) (i32.const 28))
    (drop (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 400)))))"#;

#[test]
fn wasi_is_virtual() {
    let exec = WasmExecutor::new(PROBE.as_bytes()).unwrap();
    let c = ctx(PROBE.as_bytes(), 1_000_000, 1, &["a", "b"]);
    let out = exec.run(&c, &[vec![]]).unwrap().items.remove(0);
    let u64_at = |i: usize| u64::from_le_bytes(out[i..i + 8].try_into().unwrap());
    let u32_at = |i: usize| u32::from_le_bytes(out[i..i + 4].try_into().unwrap());
    assert_eq!(u64_at(0), agora_wasm::wasi::FIXED_WALL_CLOCK.as_nanos() as u64, "fixed wall clock");
    assert_eq!(u64_at(8), 0, "fixed monotonic clock");
    assert_eq!(u32_at(16), 3, "argv = module, a, b");
    assert_eq!(u32_at(20), 0, "no environment");
    assert_eq!(u32_at(24), 8, "fd 3 is not a preopened directory (EBADF)");
}

#[test]
fn nan_bits_are_canonical() {
    // 0/0: x86 produces the negative "default NaN" 0xffc00000, other CPUs other payloads;
    // with canonicalisation every machine stores the canonical quiet NaN.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (f32.store (i32.const 0) (f32.div (f32.const 0) (f32.const 0)))
        (i32.store (i32.const 8) (i32.const 0))
        (i32.store (i32.const 12) (i32.const 4))
        (drop (call $write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16)))))"#;
    let exec = WasmExecutor::new(wat.as_bytes()).unwrap();
    let out = exec.run(&ctx(wat.as_bytes(), 1_000_000, 1, &[]), &[vec![]]).unwrap().items.remove(0);
    assert_eq!(u32::from_le_bytes(out[..4].try_into().unwrap()), 0x7fc0_0000);
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let module = example("bombs/loop.wat");
    let exec = WasmExecutor::new(&module).unwrap();
    let err = exec.run(&ctx(&module, 2_000_000, 1, &[]), &[vec![]]).unwrap_err();
    let msg = err.to_string();
    let (stop, fuel) = stopped(err);
    assert_eq!(stop, Stop::OutOfFuel { used: 2_000_000, budget: 2_000_000 });
    assert_eq!(fuel, 2_000_000, "the whole budget is metered");
    assert!(msg.contains("ran out of fuel"), "{msg}");
}

#[test]
fn a_shard_stops_when_the_fuel_its_lease_bought_is_spent() {
    // Four items that each spin to a 10-billion-unit item budget would hold the device for
    // tens of seconds per item; the lease bought one device-second for the whole shard.
    let module = example("bombs/loop.wat");
    let exec = WasmExecutor::new(&module).unwrap();
    let bought = TaskContext { device_seconds: Some(1), ..ctx(&module, 10_000_000_000, 1, &[]) };
    let items = vec![vec![]; 4];
    let run = || stopped(exec.run(&bought, &items).unwrap_err());
    let (stop, fuel) = run();
    assert_eq!(
        stop,
        Stop::ShardFuel {
            budget: FUEL_PER_DEVICE_SECOND,
            device_seconds: 1,
            per_second: FUEL_PER_DEVICE_SECOND,
            used: FUEL_PER_DEVICE_SECOND
        }
    );
    assert_eq!(fuel, FUEL_PER_DEVICE_SECOND, "the shard's whole budget is metered, no more");
    assert_eq!(run(), (stop.clone(), fuel), "the stop is deterministic: every auditor sees the same");
    assert!(stop.to_string().contains("seconds_per_item"), "the message names the fix: {stop}");

    // Items that fit are unaffected: the bound changes no output, and an auditor's sample
    // (a subset of the shard) never runs short where the provider's whole shard did not.
    let module = example("raytrace.wasm");
    let exec = WasmExecutor::new(&module).unwrap();
    let free = ctx(&module, 5_000_000_000, 32, &[]);
    let bought = TaskContext { device_seconds: Some(2), ..free.clone() };
    let inputs: Vec<Vec<u8>> =
        (0..2).map(|f| format!("width=16 height=12 samples=1 frame={f}").into_bytes()).collect();
    let (a, b) = (exec.run(&free, &inputs).unwrap(), exec.run(&bought, &inputs).unwrap());
    assert_eq!((a.items, a.metering.fuel), (b.items, b.metering.fuel));
    assert!(b.metering.fuel < 2 * FUEL_PER_DEVICE_SECOND);
}

#[test]
fn infinite_loop_hits_the_wall_clock() {
    let module = example("bombs/loop.wat");
    let exec = WasmExecutor::new(&module).unwrap().with_time_limit(Duration::from_millis(200));
    let t = Instant::now();
    let err = exec.run(&ctx(&module, u64::MAX / 2, 1, &[]), &[vec![]]).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "stopped promptly");
    let (stop, fuel) = stopped(err);
    assert!(matches!(stop, Stop::WallClock { .. }), "{stop}");
    assert!(fuel > 0 && fuel == stop.fuel_used(), "fuel used until the stop is metered: {fuel}");
}

#[test]
fn memory_bomb_hits_the_cap() {
    let module = example("bombs/alloc.wat");
    let exec = WasmExecutor::new(&module).unwrap();
    let err = exec.run(&ctx(&module, 1_000_000_000, 16, &[]), &[vec![]]).unwrap_err();
    let msg = err.to_string();
    let (stop, fuel) = stopped(err);
    assert!(matches!(stop, Stop::MemoryCap { cap_mib: 16, requested, .. } if requested > 16 << 20), "{stop}");
    assert!(fuel > 0, "fuel is metered");
    assert!(msg.contains("memory cap of 16 MiB"), "{msg}");
}

#[test]
fn trap_is_reported_with_fuel() {
    let module = example("bombs/trap.wat");
    let exec = WasmExecutor::new(&module).unwrap();
    let inputs = vec![vec![], vec![]];
    let err = exec.run(&ctx(&module, 1_000_000, 1, &[]), &inputs).unwrap_err();
    assert!(matches!(err, ExecError::Stopped { index: 0, .. }));
    let (stop, fuel) = stopped(err);
    assert!(matches!(&stop, Stop::Trap { trap, .. } if trap.contains("divide by zero")), "{stop}");
    assert!(fuel > 0);
}

#[test]
fn refuses_a_task_for_another_module() {
    let module = example("bombs/trap.wat");
    let exec = WasmExecutor::new(&module).unwrap();
    let mut c = ctx(&module, 1_000, 1, &[]);
    c.model = Hash::of(b"something else");
    assert!(matches!(exec.run(&c, &[vec![]]), Err(ExecError::BadParams(_))));
    assert!(WasmExecutor::new(b"not wasm").is_err());
}

#[test]
fn many_memories_cannot_multiply_the_memory_cap() {
    // Per-memory caps let a module with N memories use N× the cap (multi-memory was on by
    // default), each filled for about one fuel unit with memory.fill.
    let mut wat = String::from("(module\n");
    for i in 0..16 {
        wat += &format!("  (memory $m{i} 16)\n");
    }
    wat += "  (func (export \"_start\")\n";
    for i in 0..16 {
        wat += &format!("    (memory.fill $m{i} (i32.const 0) (i32.const 1) (i32.const 1048576))\n");
    }
    wat += "))";
    let err = WasmExecutor::new(wat.as_bytes()).err().expect("refused at compile time");
    assert!(format!("{err:#}").contains("multiple memories"), "{err:#}");
}

#[test]
fn tables_are_capped_together() {
    // Four tables of 2^19 elements each: twice the total table budget.
    let mut wat = String::from("(module\n");
    for i in 0..4 {
        wat += &format!("  (table $t{i} 524288 funcref)\n");
    }
    wat += "  (func (export \"_start\")))";
    let exec = WasmExecutor::new(wat.as_bytes()).unwrap();
    let err = exec.run(&ctx(wat.as_bytes(), 1_000_000, 16, &[]), &[vec![]]).unwrap_err();
    let (stop, _) = stopped(err);
    assert!(matches!(stop, Stop::Instantiate(_)), "{stop}");
    let two = "(module (table 524288 funcref) (table 524288 funcref) (func (export \"_start\")))";
    let exec = WasmExecutor::new(two.as_bytes()).unwrap();
    exec.run(&ctx(two.as_bytes(), 1_000_000, 16, &[]), &[vec![]]).expect("within the budget");
}
