//! Tests against the real models, when provisioned: point `AGORA_MODELS_DIR` at a data dir's
//! `models` folder (`cargo run --release -p agora-ml --example models -- pull …`). Without
//! it each test prints a notice and passes.

use agora_core::{Encode, Hash, JobParams};
use agora_ml::{EmbedExecutor, GenerateExecutor, TrainExecutor};
use agora_runtime::audit::{audit, claims_needed, inputs_needed};
use agora_runtime::compare::embed::distance;
use agora_runtime::items::generation::Generation;
use agora_runtime::items::training::Checkpoint;
use agora_runtime::items::vector::decode_vector;
use agora_runtime::local::dataset::read_csv_examples;
use agora_runtime::provision::catalog::{DIGITS, MINILM, SMOLLM2};
use agora_runtime::{AuditRequest, Executor, PowerModel, TaskContext};
use std::path::PathBuf;
use std::process::Command;

fn model_dir(name: &str) -> Option<PathBuf> {
    let Ok(root) = std::env::var("AGORA_MODELS_DIR") else {
        println!("skipped: set AGORA_MODELS_DIR=<data dir>/models to run the real-model tests");
        return None;
    };
    let dir = PathBuf::from(root).join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipped: {} is not provisioned", dir.display());
        None
    }
}

fn ctx(params: JobParams) -> TaskContext {
    TaskContext {
        job: Hash::of(b"real"),
        shard: 0,
        model: Hash::ZERO,
        params,
        power: PowerModel::CPU_CORE,
        device_seconds: None,
    }
}

fn corpus(n: usize) -> Vec<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/corpus/fortunes-200.txt");
    std::fs::read_to_string(path).unwrap().lines().take(n).map(|l| l.as_bytes().to_vec()).collect()
}

fn sample_request(indices: &[u32], inputs: &[Vec<u8>], claims: &[Vec<u8>]) -> AuditRequest {
    AuditRequest {
        indices: indices.to_vec(),
        inputs: indices.iter().map(|&i| (i, inputs[i as usize].clone())).collect(),
        claimed: indices.iter().map(|&i| (i, claims[i as usize].clone())).collect(),
    }
}

#[test]
fn minilm_is_semantic_deterministic_and_audited() {
    let Some(dir) = model_dir(MINILM) else { return };
    let exec = EmbedExecutor::load(&dir).unwrap();
    let s = ["A cat is sitting on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply today."];
    let inputs: Vec<Vec<u8>> = s.iter().map(|t| t.as_bytes().to_vec()).collect();
    let v: Vec<Vec<f32>> = exec
        .run(&ctx(JobParams::Embed { batch_size: 32 }), &inputs)
        .unwrap()
        .items
        .iter()
        .map(|i| decode_vector(i).unwrap())
        .collect();
    // The catalog states the dimension, and the gateway refuses other `dimensions` before
    // any money moves; the pinned weights must agree with it.
    let stated = agora_runtime::provision::catalog::find(MINILM).unwrap().dimensions;
    assert_eq!(Some(v[0].len()), stated);
    let (related, unrelated) = (distance(&v[0], &v[1]).cosine, distance(&v[0], &v[2]).cosine);
    assert!(related > unrelated + 0.3, "related {related:.3} vs unrelated {unrelated:.3}");

    let inputs = corpus(48);
    let c32 = ctx(JobParams::Embed { batch_size: 32 });
    let a = exec.run(&c32, &inputs).unwrap();
    assert_eq!(exec.run(&c32, &inputs).unwrap().items, a.items, "bit-identical re-run");
    // An honest provider with another batching is accepted item by item.
    let b1 = exec.run(&ctx(JobParams::Embed { batch_size: 1 }), &inputs).unwrap();
    for (x, y) in a.items.iter().zip(&b1.items) {
        let v = exec.compare(&c32, x, y);
        assert!(v.matches, "{}", v.detail);
    }
    let sample = [0u32, 7, 19, 30, 47];
    assert!(audit(&exec, &c32, &sample_request(&sample, &inputs, &a.items)).unwrap().passed());
}

#[test]
fn minilm_audit_rejects_a_swapped_model() {
    let Some(dir) = model_dir(MINILM) else { return };
    // The cheapest plausible swap: the same weights with the tanh-approximate GELU.
    let tmp = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    config["hidden_act"] = "geluapproximate".into();
    std::fs::write(tmp.path().join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(dir.join(f), tmp.path().join(f)).unwrap();
    }
    let honest = EmbedExecutor::load(&dir).unwrap();
    let cheap = EmbedExecutor::load(tmp.path()).unwrap();
    let inputs = corpus(24);
    let c = ctx(JobParams::Embed { batch_size: 8 });
    let claims = cheap.run(&c, &inputs).unwrap().items;
    let indices: Vec<u32> = (0..inputs.len() as u32).collect();
    let outcome = audit(&honest, &c, &sample_request(&indices, &inputs, &claims)).unwrap();
    assert!(outcome.verdicts.iter().all(|(_, v)| !v.matches), "{:?}", outcome.verdicts);
}

#[test]
fn smollm2_generates_and_replays() {
    let Some(dir) = model_dir(SMOLLM2) else { return };
    let exec = GenerateExecutor::load(&dir).unwrap();
    let inputs =
        vec![b"Write one sentence about the sea.".to_vec(), b"What is the capital of France?".to_vec()];
    let greedy = ctx(JobParams::Generate { max_new_tokens: 24, temperature_milli: 0, seed: 0, stop: vec![] });
    let out = exec.run(&greedy, &inputs).unwrap();
    let g: Vec<Generation> = out.items.iter().map(|i| Generation::from_item(i).unwrap()).collect();
    assert!(g[0].text.to_lowercase().contains("sea"), "{:?}", g[0].text);
    assert!(g[1].text.contains("Paris"), "{:?}", g[1].text);
    assert_eq!(exec.run(&greedy, &inputs).unwrap().items, out.items);
    assert!(audit(&exec, &greedy, &sample_request(&[0, 1], &inputs, &out.items)).unwrap().passed());

    let sampled =
        ctx(JobParams::Generate { max_new_tokens: 24, temperature_milli: 800, seed: 7, stop: vec![] });
    let s = exec.run(&sampled, &inputs).unwrap();
    assert_eq!(exec.run(&sampled, &inputs).unwrap().items, s.items, "seeded sampling repeats");
    assert!(audit(&exec, &sampled, &sample_request(&[0, 1], &inputs, &s.items)).unwrap().passed());
    // Greedy claims for a sampled job (a provider skipping the sampler) are rejected.
    assert!(!audit(&exec, &sampled, &sample_request(&[0, 1], &inputs, &out.items)).unwrap().passed());
}

/// An auditor's teacher-forced replay (one forward pass over prompt and completion) sees at
/// every step the very logits the generating run chose from, greedy or sampled, so an honest
/// completion replays with no divergence at all. It prints what the replay cost against
/// generating.
#[test]
fn smollm2_replays_a_completion_in_one_pass_bit_for_bit() {
    use agora_ml::generate::model::Request;
    use agora_ml::generate::sampler::Sampler;
    let Some(dir) = model_dir(SMOLLM2) else { return };
    let exec = GenerateExecutor::load(&dir).unwrap();
    let (mut generating, mut replaying) = (0f64, 0f64);
    for (prompt, temperature_milli) in
        [("Write a short note to a friend about a long voyage.", 0), ("Name three rivers of Europe.", 800)]
    {
        let mut req = Request {
            prompt,
            max_new_tokens: 48,
            stop: &[],
            sampler: Sampler::from_milli(temperature_milli),
            seed: 11,
            follow: None,
        };
        let (out, seen, took) = observed(exec.llm(), &req);
        generating += took;
        let claimed = out.generation.tokens.clone();
        req.follow = Some(&claimed);
        let (replay, replayed, took) = observed(exec.llm(), &req);
        replaying += took;
        assert_eq!(replay.generation, out.generation);
        assert!(replay.divergences.is_empty(), "{prompt}: {} divergences", replay.divergences.len());
        assert_eq!(replayed.len(), seen.len());
        for (step, (a, b)) in seen.iter().zip(&replayed).enumerate() {
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{prompt}: step {step} differs"
            );
        }
    }
    println!("generating {generating:.2}s, replaying {replaying:.2}s: {:.2}×", replaying / generating);
}

/// Runs `req` on `llm`, keeping every step's logits; with the seconds it took.
fn observed(
    llm: &agora_ml::generate::Llm,
    req: &agora_ml::generate::model::Request<'_>,
) -> (agora_ml::generate::model::Outcome, Vec<Vec<f32>>, f64) {
    let mut logits: Vec<Vec<f32>> = vec![];
    let start = std::time::Instant::now();
    let out = llm
        .generate_observed(
            req,
            Some(&mut |s: agora_ml::generate::model::Step<'_>| {
                logits.push(s.logits.to_vec());
                std::ops::ControlFlow::Continue(())
            }),
        )
        .unwrap()
        .unwrap();
    (out, logits, start.elapsed().as_secs_f64())
}

#[test]
fn digits_training_replays_a_segment_exactly() {
    let Some(dir) = model_dir(DIGITS) else { return };
    let inputs: Vec<Vec<u8>> =
        read_csv_examples(&dir.join("digits.csv.gz")).unwrap().iter().map(Encode::encode).collect();
    assert_eq!(inputs.len(), 1797);
    let c = ctx(JobParams::Train {
        steps: 90,
        checkpoint_every: 30,
        batch_size: 64,
        hidden: 128,
        learning_rate_micros: 10_000,
        seed: 42,
    });
    let exec = TrainExecutor::new();
    let claims = exec.run(&c, &inputs).unwrap().items;
    let last = Checkpoint::from_item(&claims[2]).unwrap();
    assert!(last.loss < 0.5, "training converges: mean loss {}", last.loss);
    let req = AuditRequest {
        indices: vec![2],
        inputs: inputs_needed(&c.params, &[2], inputs.len() as u32)
            .into_iter()
            .map(|i| (i, inputs[i as usize].clone()))
            .collect(),
        claimed: claims_needed(&c.params, &[2])
            .into_iter()
            .map(|i| (i, claims[i as usize].clone()))
            .collect(),
    };
    let replay = exec.recompute(&c, &req).unwrap();
    assert_eq!(replay.items[0].1, claims[2], "segment 2 replays bit for bit");
}

/// Hashes of MiniLM embeddings and SmolLM2 tokens, written to `AGORA_PROBE_OUT` when set:
/// the child process of `outputs_do_not_depend_on_the_thread_count`.
#[test]
fn thread_probe() {
    let Ok(out) = std::env::var("AGORA_PROBE_OUT") else { return };
    let mut digest = Vec::new();
    if let Some(dir) = model_dir(MINILM) {
        let exec = EmbedExecutor::load(&dir).unwrap();
        let items = exec.run(&ctx(JobParams::Embed { batch_size: 8 }), &corpus(16)).unwrap().items;
        digest.extend(items.concat());
    }
    if let Some(dir) = model_dir(SMOLLM2) {
        let exec = GenerateExecutor::load(&dir).unwrap();
        let c =
            ctx(JobParams::Generate { max_new_tokens: 12, temperature_milli: 700, seed: 3, stop: vec![] });
        digest.extend(exec.run(&c, &[b"Tell me about rivers.".to_vec()]).unwrap().items.concat());
    }
    std::fs::write(out, Hash::of(&digest).to_string()).unwrap();
}

#[test]
fn outputs_do_not_depend_on_the_thread_count() {
    if model_dir(MINILM).is_none() && model_dir(SMOLLM2).is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let hashes: Vec<String> = ["1", "2"]
        .iter()
        .map(|threads| {
            let out = tmp.path().join(format!("probe-{threads}"));
            let status = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "thread_probe", "--test-threads", "1"])
                .env("RAYON_NUM_THREADS", threads)
                .env("AGORA_PROBE_OUT", &out)
                .status()
                .unwrap();
            assert!(status.success());
            std::fs::read_to_string(out).unwrap()
        })
        .collect();
    assert_eq!(hashes[0], hashes[1], "1 and 2 threads give identical bytes");
}
