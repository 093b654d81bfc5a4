//! Real AI workloads for Agora on candle: sentence embeddings, quantized LLM generation and
//! small-model training, each an `agora_runtime::Executor`.
//!
//! - [`embed`]: BERT-family sentence embeddings (all-MiniLM-L6-v2), sentence-transformers
//!   conventions, batching plan from the manifest;
//! - [`generate`]: causal LM generation from GGUF (SmolLM2-135M-Instruct) with a tokenizer
//!   rebuilt from the GGUF metadata, greedy or seeded sampling, and replay-based audits that
//!   forgive only near ties; plus the Q4_1 → Q8_0 requantization run at provisioning;
//! - [`train`]: an MLP classifier trained with AdamW under our own seeded PRNG, emitting
//!   checkpoints an auditor can replay segment by segment;
//! - [`fixtures`]: tiny randomly initialised models in the real file formats, for tests and
//!   demos that must not download anything;
//! - [`bench`](mod@bench): throughput measurements behind the `bench` example.
//!
//! CPU by default; the `cuda` feature builds candle's CUDA backend and [`device()`] uses the
//! first GPU when one is present.

pub mod bench;
pub mod device;
pub mod embed;
pub mod fixtures;
pub mod generate;
pub mod train;

pub use device::device;
pub use embed::EmbedExecutor;
pub use generate::{GenerateExecutor, Requantize};
pub use train::TrainExecutor;
