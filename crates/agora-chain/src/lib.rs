//! Agora's chain: Commonware simplex BFT consensus over the pure Agora ledger, the mempool,
//! and the authenticated state store that proves any key against a finalized header.

pub mod mempool;
