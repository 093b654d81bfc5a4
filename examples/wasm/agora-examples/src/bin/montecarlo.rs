//! Estimates π by Monte-Carlo sampling.
//!
//! Input item: `key=value` text, e.g. `samples=1000000`.
//! Output item: one line, `samples=<n> inside=<k> pi=<estimate>`.
//!
//! The sample stream is seeded from WASI `random_get`, which Agora derives from the job and
//! the item, so every honest run of an item prints the same line.

use agora_examples::{XorShift, param, read_input, wasi_seed, write_output};

fn main() {
    let text = read_input();
    let samples = param(&text, "samples", 100_000.0) as u64;
    let mut rng = XorShift::new(wasi_seed());
    let mut inside = 0u64;
    for _ in 0..samples {
        let (x, y) = (rng.next_f64(), rng.next_f64());
        if x * x + y * y < 1.0 {
            inside += 1;
        }
    }
    let pi = 4.0 * inside as f64 / samples.max(1) as f64;
    write_output(format!("samples={samples} inside={inside} pi={pi:.6}\n").as_bytes());
}
