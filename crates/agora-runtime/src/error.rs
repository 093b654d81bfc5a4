//! The error every executor returns, so the node can treat all job kinds alike.

use agora_core::JobKind;
use agora_core::tx::Metering;

/// A boxed error from an execution backend (wasmtime, candle, tokenizers).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a run or a recomputation did not produce outputs.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The task's parameters are for another kind of job than this executor runs.
    #[error("this executor runs {expected} jobs, but the task's parameters are for a {got} job")]
    WrongKind {
        /// What the executor runs.
        expected: JobKind,
        /// What the task asked for.
        got: JobKind,
    },
    /// The task's parameters cannot be run as given.
    #[error("job parameters are unusable: {0}; fix the manifest")]
    BadParams(String),
    /// An input item cannot be used (bad encoding, wrong size, too long).
    #[error("input item {index} is unusable: {reason}")]
    BadInput {
        /// Position of the item.
        index: u32,
        /// What is wrong with it.
        reason: String,
    },
    /// An audit request lacks something the recomputation needs, or holds a malformed claim.
    #[error("audit request is unusable: {0}")]
    BadAudit(String),
    /// The model could not be loaded or run.
    #[error("model problem: {0}")]
    Model(BoxError),
    /// An item's execution was stopped by a limit or failed inside the sandbox. The resources
    /// it used up to that point are still metered, so the provider can be paid or charged.
    #[error("item {index} was stopped: {cause}")]
    Stopped {
        /// Position of the item.
        index: u32,
        /// What stopped it.
        cause: BoxError,
        /// Resources used by the whole run up to and including the stopped item.
        metering: Metering,
    },
}

impl ExecError {
    /// Wraps a model-loading or inference error from a backend.
    pub fn model(e: impl Into<BoxError>) -> Self {
        ExecError::Model(e.into())
    }

    /// The metering of a stopped run, if this error carries one.
    pub fn metering(&self) -> Option<&Metering> {
        match self {
            ExecError::Stopped { metering, .. } => Some(metering),
            _ => None,
        }
    }
}
