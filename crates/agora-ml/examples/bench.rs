//! Throughput of the real workloads (the figures in BENCHMARKS.md):
//!
//! ```sh
//! AGORA_MODELS_DIR=agora-data/models RAYON_NUM_THREADS=1 \
//!     cargo run --release -p agora-ml --example bench -- [embed|generate|train|all]
//! ```
//!
//! - embed: MiniLM sentences/s over `bench/corpus/fortunes-200.txt` at batch 1 and 32
//!   (compare with `bench/pytorch_embed.sh` for PyTorch on the same corpus);
//! - generate: SmolLM2-135M Q8_0 generated tokens/s, greedy, 5 prompts × 48 new tokens;
//! - train: MLP optimizer steps/s on digits (H=128, batch 64).

use agora_core::Encode;
use agora_ml::bench::{self, Throughput};
use agora_ml::{EmbedExecutor, GenerateExecutor};
use agora_runtime::local::dataset::read_csv_examples;
use agora_runtime::provision::catalog::{DIGITS, MINILM, SMOLLM2};
use std::path::PathBuf;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn line(what: &str, unit: &str, t: Throughput) {
    println!(
        "{what:40} {:8.1} {unit}/s   ({} {unit} in {:.2} s wall, {:.2} CPU-s)",
        t.per_second(),
        t.units,
        t.seconds,
        t.cpu_seconds
    );
}

fn best(runs: usize, mut f: impl FnMut() -> Res<Throughput>) -> Res<Throughput> {
    let mut best: Option<Throughput> = None;
    for _ in 0..runs {
        let t = f()?;
        if best.is_none_or(|b| t.per_second() > b.per_second()) {
            best = Some(t);
        }
    }
    Ok(best.expect("at least one run"))
}

fn main() -> Res<()> {
    let models = PathBuf::from(
        std::env::var("AGORA_MODELS_DIR").map_err(|_| "set AGORA_MODELS_DIR to <data dir>/models")?,
    );
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    println!("threads: {}", candle_core::utils::get_num_threads());
    if what == "embed" || what == "all" {
        let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/corpus/fortunes-200.txt");
        let sentences: Vec<String> = std::fs::read_to_string(corpus)?.lines().map(str::to_string).collect();
        let exec = EmbedExecutor::load(&models.join(MINILM))?;
        bench::embed(&exec, &sentences[..16], 32)?; // warm-up
        for batch in [1, 32] {
            let t = best(2, || Ok(bench::embed(&exec, &sentences, batch)?))?;
            line(&format!("embed MiniLM, batch {batch}"), "sentences", t);
        }
    }
    if what == "generate" || what == "all" {
        let exec = GenerateExecutor::load(&models.join(SMOLLM2))?;
        let prompts: Vec<String> = [
            "Write one sentence about the sea.",
            "Explain what a hash function is.",
            "Give me three tips for staying focused.",
            "Describe a cat in one sentence.",
            "What is the capital of France?",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let t = best(2, || Ok(bench::generate(&exec, &prompts, 48)?))?;
        line("generate SmolLM2-135M Q8_0, greedy", "tokens", t);
    }
    if what == "train" || what == "all" {
        let examples = read_csv_examples(&models.join(DIGITS).join("digits.csv.gz"))?;
        let items: Vec<Vec<u8>> = examples.iter().map(Encode::encode).collect();
        let t = best(2, || Ok(bench::train(&items, 720, 64, 128)?))?;
        line("train MLP 64-128-10 on digits, batch 64", "steps", t);
    }
    Ok(())
}
