//! Verified versus plain blob transfer over loopback HTTP, measured in the same run.
//!
//! ```text
//! cargo run --release -p agora-store --example transfer_bench -- [SIZE_BYTES [ROUNDS]]
//! ```
//!
//! The size defaults to 1 GiB and the rounds to 3 (each phase reports its fastest round); the
//! run needs about four times the size in free space under the system's temporary directory.

use agora_store::bench::{DEFAULT_ROUNDS, transfer_rounds};
use std::process::ExitCode;

/// Parses the optional argument at `index`, or returns `default`.
fn arg(index: usize, name: &str, default: u64) -> Result<u64, String> {
    match std::env::args().nth(index) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|_| format!("{name} must be a whole number, got {raw:?}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let parsed =
        arg(1, "SIZE_BYTES", 1 << 30).and_then(|size| Ok((size, arg(2, "ROUNDS", DEFAULT_ROUNDS.into())?)));
    let (size, rounds) = match parsed {
        Ok(args) => args,
        Err(e) => {
            eprintln!("transfer_bench: {e}\nusage: transfer_bench [SIZE_BYTES [ROUNDS]]");
            return ExitCode::FAILURE;
        }
    };
    let rounds = u32::try_from(rounds).unwrap_or(u32::MAX);
    println!("moving {size} bytes over loopback HTTP, verified and plain, best of {rounds} rounds ...");
    match transfer_rounds(size, rounds).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("transfer_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
