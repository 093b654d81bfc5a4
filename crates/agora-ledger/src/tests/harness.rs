//! The ledger tests' harness: the simulation chain of [`crate::sim`].

pub use crate::sim::*;
