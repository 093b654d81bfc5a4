//! Agora's chain: Commonware simplex BFT consensus over the pure Agora ledger, the mempool, and
//! the authenticated state store that proves any key against a finalized header.
//!
//! Read in this order: [`block`] (what consensus orders), [`executor`] (how blocks are built,
//! checked and applied), [`mailbox`] (how consensus comes before clients), [`index`] (where
//! finalized blocks are read from), [`validator`] (how the Commonware actors are wired), [`handle`] (what
//! the node's API uses).

pub mod application;
pub mod beacon;
pub mod block;
pub mod epoch;
pub mod evidence;
pub mod executor;
pub mod gossip;
pub mod handle;
pub mod index;
pub mod light;
pub mod mailbox;
pub mod mempool;
pub mod records;
pub mod state_db;
pub mod validator;

pub use block::{BlockCfg, ChainBlock};
pub use handle::{ChainError, ChainHandle};
pub use records::{BlockRecord, Published, Snapshot, StateProof, TxStatus};
pub use validator::{Channels, EMPTY_BLOCK_INTERVAL, Timing, Validator, ValidatorConfig, start_validator};
