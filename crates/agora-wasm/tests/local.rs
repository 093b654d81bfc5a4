//! `agora run JOB.toml --local` for a wasm job: job file → executor → outputs on disk.

use agora_core::merkle::MerkleTree;
use agora_runtime::local::{LocalJob, run_local};
use agora_runtime::provision::Provisioner;
use agora_wasm::WasmExecutor;
use std::path::PathBuf;

#[test]
fn local_wasm_job_renders_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let module = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/wasm/raytrace.wasm");
    std::fs::copy(&module, tmp.path().join("raytrace.wasm")).unwrap();
    std::fs::write(tmp.path().join("f0.txt"), "width=16 height=12 samples=1 frame=0").unwrap();
    std::fs::write(tmp.path().join("f1.txt"), "width=16 height=12 samples=1 frame=1").unwrap();
    let job_file = tmp.path().join("frames.toml");
    std::fs::write(
        &job_file,
        "kind = \"wasm\"\nmodel = \"raytrace.wasm\"\ninputs = [\"f0.txt\", \"f1.txt\"]\n[params]\nargs = [\"--bounces\", \"1\"]\nmemory_mib = 16\n",
    )
    .unwrap();

    let job = LocalJob::load(&job_file).unwrap();
    let model = job.resolve_model(&Provisioner::new(&tmp.path().join("data"))).unwrap();
    let exec = WasmExecutor::new(&std::fs::read(&model.path).unwrap()).unwrap();
    assert_eq!(model.hash, exec.module_hash());
    let outcome = run_local(&job, &model, &exec).unwrap();
    assert_eq!(outcome.output.items.len(), 2);
    assert!(outcome.output.items[0].starts_with(b"P6\n16 12\n255\n"));
    assert_eq!(outcome.output_root, MerkleTree::from_items(&outcome.output.items).root());
    assert!(outcome.output.metering.fuel > 0);
    assert_eq!(outcome.manifest.shards[0].item_count, 2);

    let out = tmp.path().join("out");
    outcome.write(&out).unwrap();
    assert_eq!(std::fs::read(out.join("item-1.bin")).unwrap(), outcome.output.items[1]);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["output_root"], outcome.output_root.to_string());
    assert_eq!(summary["kind"], "wasm");
    // Same job, same bytes: a local run is reproducible.
    assert_eq!(run_local(&job, &model, &exec).unwrap().output.items, outcome.output.items);
}
