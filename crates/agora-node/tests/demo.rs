//! `agora demo --exit --cheaters 1`, the README's first command, end to end: a real network
//! of 4 validators and 3 providers runs one job of each kind (sharded embeddings, WebAssembly
//! rendering, text generation, training) to verified settlement, the cheating provider is
//! caught and slashed, and every result is written where the summary says.
//!
//! Needs the real models (`AGORA_MODELS_DIR`, see the README); without them it says so and
//! passes, unless `AGORA_REQUIRE_MODELS=1` (as in CI).

mod common;

use common::{BIN, kill_nodes_under};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_demo_settles_every_kind_and_catches_the_cheater() {
    if std::env::var_os("AGORA_MODELS_DIR").is_none() {
        let why = "set AGORA_MODELS_DIR to a provisioned models directory (`agora models pull …`)";
        assert!(std::env::var("AGORA_REQUIRE_MODELS").as_deref() != Ok("1"), "cannot run: {why}");
        println!("skipped: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let base = agora_node::devnet::free_port_base(4, 3).unwrap();
    let mut child = Command::new(BIN)
        .arg("--json")
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(["demo", "--cheaters", "1", "--exit", "--port-base", &base.to_string(), "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(1200) {
            let _ = child.kill();
            kill_nodes_under(&dir);
            panic!("the demo did not finish in 20 minutes");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = child.wait_with_output().unwrap();
    kill_nodes_under(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the demo failed: {stderr}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    println!("{s:#}");

    assert_eq!(s["jobs"], 4, "{s}");
    assert!(s["shards"].as_u64().unwrap() >= 7, "{s}");
    let amount = |v: &serde_json::Value| v.as_str().unwrap().parse::<u128>().unwrap();
    assert!(amount(&s["total_paid"]) > 0, "{s}");
    assert!(s["audits"].as_u64().unwrap() >= 1, "{s}");
    // Every provider meters honestly: no audit's own measurement of the real executors cut a
    // claim (the bound holds for honest providers of every kind).
    assert_eq!(s["metering_cut"], 0, "{s}");
    assert!(s["energy_kwh"].as_f64().unwrap() >= 0.0);

    // The cheater was caught on at least one lease, lost collateral and was ejected.
    let cheaters = s["cheaters"].as_array().unwrap();
    assert_eq!(cheaters.len(), 1, "exactly the one cheater is convicted: {s}");
    assert!(!cheaters[0]["leases_caught"].as_array().unwrap().is_empty());
    assert!(amount(&cheaters[0]["collateral_slashed"]) > 0, "{s}");
    assert!(cheaters[0]["ejected_until"].as_u64().unwrap() > 0, "{s}");

    // Results of every kind, complete and in order.
    let results = dir.join("results");
    let embeddings = std::fs::read_to_string(results.join("embed/embeddings.jsonl")).unwrap();
    assert_eq!(embeddings.lines().count(), 200);
    let first: Vec<f32> = serde_json::from_str(embeddings.lines().next().unwrap()).unwrap();
    assert_eq!(first.len(), 384);
    let frames = std::fs::read_dir(results.join("render")).unwrap().flatten();
    assert_eq!(frames.filter(|e| e.file_name().to_string_lossy().starts_with("item-")).count(), 12);
    let completions = std::fs::read_to_string(results.join("chat/completions.jsonl")).unwrap();
    assert_eq!(completions.lines().count(), 3);
    for line in completions.lines() {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(!c["text"].as_str().unwrap().trim().is_empty(), "{line}");
    }
    assert!(results.join("train/outputs.items").metadata().unwrap().len() > 0);
}
