//! Agora's value types: keys, hashes, amounts, resource classes, job manifests, transactions
//! and blocks, with one canonical binary encoding whose decoders are bounded.
//!
//! This crate depends on nothing else of Agora's and does no I/O. Everything that is signed or
//! hashed goes through [`codec`], so every node computes the same bytes for the same value.

pub mod amount;
#[cfg(any(test, feature = "arbitrary"))]
pub mod arbitrary;
pub mod block;
pub mod class;
pub mod codec;
pub mod crypto;
pub mod disclosure;
pub mod hash;
pub mod manifest;
pub mod merkle;
pub mod net;
pub mod session;
pub mod tx;

pub use amount::Amount;
pub use block::{Block, BlockHeader, FaultKind, Misbehavior};
pub use class::{Coord, DeviceKind, Hardware, Region, ResourceClass};
pub use codec::{Decode, DecodeError, Encode};
pub use crypto::{AccountId, PublicKey, SecretKey, Signature};
pub use hash::Hash;
pub use manifest::{JobKind, JobManifest, JobParams, VerificationPolicy};
pub use tx::{SignedTx, Transaction, TxPayload};
