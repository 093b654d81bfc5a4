//! Why a local run failed.

use crate::error::ExecError;
use crate::provision::ProvisionError;
use std::path::PathBuf;

/// Why a local job file could not be read or run.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The job file is not valid TOML or has wrong fields.
    #[error("job file {}: {reason}", path.display())]
    JobFile {
        /// The job file.
        path: PathBuf,
        /// What is wrong, from the TOML parser or our checks.
        reason: String,
    },
    /// An input file could not be read or parsed.
    #[error("input {}: {reason}", path.display())]
    Input {
        /// The input file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The input files hold no items.
    #[error("the job has no input items; list input files in `inputs = [...]` (blank lines are skipped)")]
    NoInputs,
    /// The model could not be provisioned.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The job's parameters break a manifest rule.
    #[error(transparent)]
    Manifest(#[from] agora_core::manifest::ManifestError),
    /// The executor failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// Writing outputs failed.
    #[error("writing {}: {source}", path.display())]
    Output {
        /// The output path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}
