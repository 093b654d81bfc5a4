//! Run Agora jobs: one [`Executor`] trait over every job kind, plus what all kinds share.
//!
//! The concrete executors live in their own crates so that most of the workspace never
//! compiles wasmtime or candle: `agora-wasm` (deterministic WebAssembly) and `agora-ml`
//! (embeddings, generation, training). This crate holds the parts they share and that the
//! node, the auditors and the CLI use without either engine:
//!
//! - [`executor`]: the [`Executor`] trait, the task context and the run and audit shapes;
//! - [`items`]: the byte formats of input and output items for every kind;
//! - [`compare`]: the per-kind audit comparison and its documented thresholds;
//! - [`audit`]: which inputs and claimed outputs an auditor must fetch, and the audit loop;
//! - [`metering`]: wall time, device-seconds and the energy estimate;
//! - [`provision`]: pulling known models into a data dir as content-addressed bundles;
//! - [`local`]: the local job file and [`local::run_local`], behind `agora run --local`.

pub mod audit;
pub mod compare;
pub mod error;
pub mod executor;
pub mod items;
pub mod local;
pub mod metering;
pub mod provision;
pub mod rng;

pub use compare::Verdict;
pub use error::ExecError;
pub use executor::{AuditRequest, Executor, Recomputed, RunOutput, TaskContext};
pub use metering::{Meter, PowerModel};
