//! The provider agent: hardware detection and benchmarking, pricing, running leases, audits,
//! and network coordinates.

pub mod hardware;
pub mod vivaldi;
