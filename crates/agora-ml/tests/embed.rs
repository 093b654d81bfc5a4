//! The embed executor on a tiny generated BERT: batching plan, determinism, audits.

use agora_core::{Hash, JobParams};
use agora_ml::EmbedExecutor;
use agora_ml::fixtures::{TINY_BERT_HIDDEN, write_tiny_bert};
use agora_runtime::audit::audit;
use agora_runtime::compare::embed::distance;
use agora_runtime::items::vector::decode_vector;
use agora_runtime::{AuditRequest, ExecError, Executor, PowerModel, TaskContext};

const SENTENCES: [&str; 7] = [
    "the cat sat on the mat",
    "a dog",
    "the ship sails on the blue sea and it is fast",
    "code runs slow",
    "the computer network is red",
    "cat",
    "a red dog sat in the sea of code",
];

fn ctx(batch_size: u32) -> TaskContext {
    TaskContext {
        job: Hash::of(b"embed job"),
        shard: 0,
        model: Hash::of(b"tiny bert"),
        params: JobParams::Embed { batch_size },
        power: PowerModel::CPU_CORE,
        device_seconds: None,
    }
}

fn inputs() -> Vec<Vec<u8>> {
    SENTENCES.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn tiny(seed: u64) -> (tempfile::TempDir, EmbedExecutor) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), seed).unwrap();
    let exec = EmbedExecutor::load(dir.path()).unwrap();
    (dir, exec)
}

#[test]
fn vectors_are_normalised_deterministic_and_batching_tolerant() {
    let (_dir, exec) = tiny(1);
    let b3 = exec.run(&ctx(3), &inputs()).unwrap();
    assert_eq!(b3.items.len(), SENTENCES.len());
    for item in &b3.items {
        let v = decode_vector(item).unwrap();
        assert_eq!(v.len(), TINY_BERT_HIDDEN);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    assert_eq!(exec.run(&ctx(3), &inputs()).unwrap().items, b3.items, "bit-identical re-run");
    // Another batching pads differently; the difference is rounding noise that the audit
    // comparison accepts (and that shows the attention mask hides the padding).
    let b1 = exec.run(&ctx(1), &inputs()).unwrap();
    for (a, b) in b3.items.iter().zip(&b1.items) {
        let d = distance(&decode_vector(a).unwrap(), &decode_vector(b).unwrap());
        assert!(d.max_abs < 1e-6, "{d:?}");
        assert!(exec.compare(&ctx(3), a, b).matches);
    }
    let distinct = decode_vector(&b3.items[0]).unwrap() != decode_vector(&b3.items[1]).unwrap();
    assert!(distinct, "different sentences, different vectors");
}

#[test]
fn audit_accepts_honest_and_rejects_a_swapped_model() {
    let (_dir, exec) = tiny(1);
    let (_dir2, other) = tiny(2);
    let c = ctx(4);
    let honest = exec.run(&c, &inputs()).unwrap();
    let cheat = other.run(&c, &inputs()).unwrap();
    let sample = [1u32, 4, 6];
    let request = |claims: &[Vec<u8>]| AuditRequest {
        indices: sample.to_vec(),
        inputs: sample.iter().map(|&i| (i, inputs()[i as usize].clone())).collect(),
        claimed: sample.iter().map(|&i| (i, claims[i as usize].clone())).collect(),
    };
    let ok = audit(&exec, &c, &request(&honest.items)).unwrap();
    assert!(ok.passed(), "{:?}", ok.verdicts);
    let bad = audit(&exec, &c, &request(&cheat.items)).unwrap();
    assert!(bad.verdicts.iter().all(|(_, v)| !v.matches), "{:?}", bad.verdicts);
}

#[test]
fn rejects_bad_inputs_and_kinds() {
    let (_dir, exec) = tiny(1);
    assert!(matches!(exec.run(&ctx(2), &[vec![0xff, 0xfe]]), Err(ExecError::BadInput { index: 0, .. })));
    let mut wrong = ctx(2);
    wrong.params = JobParams::Wasm { fuel_per_item: 1, memory_mib: 1, args: vec![] };
    assert!(matches!(exec.run(&wrong, &inputs()), Err(ExecError::WrongKind { .. })));
    assert!(EmbedExecutor::load(std::path::Path::new("/nonexistent")).is_err());
}

#[test]
fn token_counts_are_what_the_model_reads_without_padding() {
    let (_dir, exec) = tiny(5);
    let e = exec.embedder();
    let counts = e.count_tokens(&["hello", "hello world hello world"]).unwrap();
    assert_eq!(counts.len(), 2);
    assert!(counts[0] >= 3, "the word and the two special tokens");
    assert!(counts[1] > counts[0], "padding to the longest is not counted");
    assert_eq!(e.count_tokens(&["hello"]).unwrap()[0], counts[0], "a batch-mate changes nothing");
}
