//! Structured logs with `tracing`: human-readable by default, JSON with `--log-format json`.
//! `RUST_LOG` filters as usual (default: warnings, and info from Agora).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (writes to stderr).
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,agora=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}
