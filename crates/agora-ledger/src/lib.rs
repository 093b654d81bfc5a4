//! Agora's ledger: a pure, deterministic state machine over accounts, stakes, the provider
//! registry, the order book, leases and escrow, audits and slashing, and governance.
//!
//! `apply_block(state, block) → (state', outcome)` is the whole interface. The crate does no
//! I/O, has no clock (time comes from the block header), no async and no consensus types, so
//! the money logic can be tested exhaustively with plain property tests and every node computes
//! the same result from the same blocks.
//!
//! Read in this order: [`state`] (tables, supply, timers), [`apply`] (the transition), then one
//! module per concept: [`accounts`], [`staking`], [`registry`], [`market`], [`jobs`],
//! [`leases`], [`audits`], [`sessions`], [`governance`]. Every number lives in [`params`].

pub mod accounts;
pub mod apply;
pub mod audits;
mod book;
pub mod delivery;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod genesis;
pub mod governance;
pub mod jobs;
pub mod leases;
pub mod market;
pub mod params;
pub mod registry;
pub mod sessions;
pub mod sim;
pub mod staking;
pub mod state;
mod table;

pub use apply::{BlockBuilder, BlockInfo, BlockOutcome, ConsensusFacts, apply_block, apply_block_with};
pub use error::{BlockError, TxError, TxRejection};
pub use events::{AuditOutcome, Event, LeaseFailure, Receipt};
pub use genesis::{Genesis, GenesisAccount, GenesisValidator};
pub use params::Params;
pub use state::{ObjectKey, State, Supply};

#[cfg(test)]
mod tests;
