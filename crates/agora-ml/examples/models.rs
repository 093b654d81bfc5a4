//! `models pull NAME…` / `models ls`: provisions known models into a data dir, with
//! agora-ml's requantization registered. What `agora models pull|ls` does, usable before the
//! CLI exists and in CI to provision the real models:
//!
//! ```sh
//! cargo run --release -p agora-ml --example models -- --data-dir agora-data pull all-minilm-l6-v2 smollm2-135m-instruct digits
//! AGORA_MODELS_DIR=agora-data/models cargo test -p agora-ml --test real_models
//! ```

use agora_ml::Requantize;
use agora_runtime::provision::Provisioner;
use std::path::PathBuf;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut data_dir = PathBuf::from(std::env::var("AGORA_DATA_DIR").unwrap_or_else(|_| "agora-data".into()));
    if args.first().map(String::as_str) == Some("--data-dir") && args.len() >= 2 {
        data_dir = PathBuf::from(args.remove(1));
        args.remove(0);
    }
    let provisioner = Provisioner::new(&data_dir).with_derivation(Box::new(Requantize));
    let result = match args.first().map(String::as_str) {
        Some("pull") if args.len() > 1 => args[1..].iter().try_for_each(|name| {
            let t = std::time::Instant::now();
            let p = provisioner.pull(name)?;
            println!(
                "{name}: bundle {} ({} files) in {:.1}s -> {}",
                p.hash(),
                p.entry.files.len(),
                t.elapsed().as_secs_f64(),
                p.dir.display()
            );
            Ok(())
        }),
        Some("ls") => provisioner.list().map(|r| {
            for (name, e) in &r.models {
                let size: u64 = e.files.iter().map(|f| f.size).sum();
                println!(
                    "{name:24} {:9} {} {:>7.1} MB  {}",
                    e.kind.name(),
                    e.bundle,
                    size as f64 / 1e6,
                    e.source
                );
            }
        }),
        _ => {
            let names: Vec<&str> = provisioner.catalog().iter().map(|m| m.name.as_str()).collect();
            eprintln!("usage: models [--data-dir DIR] pull NAME… | ls\nknown: {}", names.join(", "));
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
