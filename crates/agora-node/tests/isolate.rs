//! Audits in a child process (`agora sandbox audit`), as validators run them: a real
//! recomputation answers exactly as it would in-process, and a model that runs away or needs
//! more memory than the child may use ends only the child, as an audit this node was unable to
//! carry out — never as a verdict, and never taking the node with it.

use agora_core::{Hash, JobKind, JobParams};
use agora_node::provider::auditor::Unable;
use agora_node::provider::isolate::{self, Answer, Audit, Limits};
use agora_runtime::executor::{AuditRequest, TaskContext};
use agora_runtime::{Executor, PowerModel};
use std::path::{Path, PathBuf};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_agora");

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/wasm").join(name)
}

fn ctx(module: &Path, fuel: u64, memory_mib: u32) -> TaskContext {
    TaskContext {
        job: Hash::of(b"isolated"),
        shard: 0,
        model: Hash::of(&std::fs::read(module).unwrap()),
        params: JobParams::Wasm { fuel_per_item: fuel, memory_mib, args: vec![] },
        power: PowerModel::CPU_CORE,
        device_seconds: Some(60),
    }
}

const GENEROUS: Limits = Limits { memory_bytes: 16 << 30, cpu_seconds: 120, wall: Duration::from_secs(120) };

/// Runs the audit in a child process, from a runtime of its own (the in-process wasm runs
/// below are blocking and must stay off it).
fn audit_in_child(
    module: &Path,
    ctx: &TaskContext,
    request: &AuditRequest,
    limits: Limits,
) -> anyhow::Result<Answer> {
    let models = tempfile::tempdir().unwrap();
    let audit = Audit {
        kind: JobKind::Wasm,
        model: ctx.model,
        model_file: module.to_path_buf(),
        models_dir: models.path().to_path_buf(),
        ctx,
        request,
        check_inputs: false,
    };
    tokio::runtime::Runtime::new().unwrap().block_on(isolate::run(Path::new(BIN), audit, limits))
}

#[test]
fn a_child_checks_a_disputed_prompt_as_the_provider_did() {
    // A provider states a prompt longer than the model accepts; a validator checks the
    // statement with the same function, in its child process, on the same model bundle.
    let work = tempfile::tempdir().unwrap();
    let model_dir = work.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();
    agora_ml::fixtures::write_tiny_llama(
        &model_dir.join("model.gguf"),
        1,
        agora_ml::fixtures::GgmlDType::Q8_0,
    )
    .unwrap();
    let bundle = work.path().join("model.bundle");
    let names = vec!["model.gguf".to_string()];
    let (model, _) = agora_runtime::provision::bundle::write_bundle(
        &model_dir,
        &names,
        &mut std::fs::File::create(&bundle).unwrap(),
    )
    .unwrap();
    let c = TaskContext {
        job: Hash::of(b"isolated"),
        shard: 0,
        model,
        params: JobParams::Generate { max_new_tokens: 4, temperature_milli: 0, seed: 1, stop: vec![] },
        power: PowerModel::CPU_CORE,
        device_seconds: Some(60),
    };
    let long = "the sea ".repeat(agora_ml::generate::model::MAX_PROMPT_TOKENS).into_bytes();
    let check = |item: Vec<u8>| {
        let request = AuditRequest { indices: vec![], inputs: vec![(3, item)], claimed: vec![] };
        let models = tempfile::tempdir().unwrap();
        let audit = Audit {
            kind: JobKind::Generate,
            model,
            model_file: bundle.clone(),
            models_dir: models.path().to_path_buf(),
            ctx: &c,
            request: &request,
            check_inputs: true,
        };
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(isolate::run(Path::new(BIN), audit, GENEROUS))
            .unwrap()
    };
    match check(long) {
        Answer::Unusable(why) => assert!(why.contains("input item 3") && why.contains("tokens"), "{why}"),
        other => panic!("a prompt beyond the limit is unusable: {other:?}"),
    }
    assert!(matches!(check(b"hello there".to_vec()), Answer::Usable));
}

#[test]
fn a_child_audit_answers_as_the_node_would() {
    let module = example("raytrace.wasm");
    let c = ctx(&module, 5_000_000_000, 32);
    let inputs: Vec<Vec<u8>> =
        (0..3).map(|f| format!("width=16 height=12 samples=1 frame={f}").into_bytes()).collect();
    let exec = agora_wasm::WasmExecutor::new(&std::fs::read(&module).unwrap()).unwrap();
    let outputs = exec.run(&c, &inputs).unwrap().items;
    let mut claimed: Vec<(u32, Vec<u8>)> = vec![(0, outputs[0].clone()), (2, outputs[2].clone())];
    let request = |claimed: Vec<(u32, Vec<u8>)>| AuditRequest {
        indices: vec![0, 2],
        inputs: vec![(0, inputs[0].clone()), (2, inputs[2].clone())],
        claimed,
    };
    let in_process = agora_runtime::audit::audit(&exec, &c, &request(claimed.clone())).unwrap();

    let Answer::Outcome(honest) = audit_in_child(&module, &c, &request(claimed.clone()), GENEROUS).unwrap()
    else {
        panic!("an honest sample recomputes")
    };
    assert!(honest.passed());
    assert_eq!(honest.verdicts, in_process.verdicts, "the same verdicts as in the node's own process");

    claimed[1].1[20] ^= 0xff;
    let Answer::Outcome(cheated) = audit_in_child(&module, &c, &request(claimed), GENEROUS).unwrap() else {
        panic!("a cheated sample recomputes")
    };
    assert!(cheated.verdicts[0].1.matches && !cheated.verdicts[1].1.matches, "{:?}", cheated.verdicts);
}

#[test]
fn a_model_that_runs_away_or_overeats_ends_only_its_child_as_unable() {
    // A module that spins on a fuel budget far beyond the child's one CPU second: the kernel
    // stops the child (SIGXCPU), the node reports that it could not audit.
    let spin = example("bombs/loop.wat");
    let c = ctx(&spin, u64::MAX / 2, 1);
    let request = AuditRequest { indices: vec![0], inputs: vec![(0, vec![])], claimed: vec![(0, vec![])] };
    let limits = Limits { memory_bytes: 16 << 30, cpu_seconds: 1, wall: Duration::from_secs(60) };
    let started = std::time::Instant::now();
    let err = audit_in_child(&spin, &c, &request, limits).expect_err("the child was stopped");
    assert!(err.is::<Unable>(), "{err:#}");
    assert!(format!("{err:#}").contains("signal"), "killed by the kernel: {err:#}");
    assert!(started.elapsed() < Duration::from_secs(60), "stopped by its CPU limit, not the wall deadline");

    // The wall deadline catches a child that sleeps rather than computes as well.
    let limits = Limits { memory_bytes: 16 << 30, cpu_seconds: 600, wall: Duration::from_millis(300) };
    let err = audit_in_child(&spin, &c, &request, limits).expect_err("killed at the deadline");
    assert!(err.is::<Unable>() && format!("{err:#}").contains("longer than"), "{err:#}");

    // A memory cap below what the runtime needs: the child cannot load it or aborts; either
    // way the node learns only that it was unable.
    let module = example("raytrace.wasm");
    let c = ctx(&module, 5_000_000_000, 32);
    let request = AuditRequest {
        indices: vec![0],
        inputs: vec![(0, b"width=16 height=12 samples=1 frame=0".to_vec())],
        claimed: vec![(0, vec![])],
    };
    let starved = Limits { memory_bytes: 16 << 20, cpu_seconds: 60, wall: Duration::from_secs(60) };
    match audit_in_child(&module, &c, &request, starved) {
        Ok(Answer::Failed(why)) => assert!(!why.is_empty()),
        Err(e) => assert!(e.is::<Unable>(), "{e:#}"),
        Ok(other) => panic!("a starved child cannot have audited: {other:?}"),
    }
}
