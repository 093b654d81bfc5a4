//! The provider agent: hardware detection and benchmarking, pricing, running leases, audits,
//! serving sessions, and network coordinates.

pub mod agent;
pub mod auditor;
pub mod hardware;
pub mod isolate;
pub mod pricing;
pub mod runtimes;
pub mod serve;
pub mod sessions;
pub mod state;
pub mod vivaldi;
pub mod window_audit;
pub mod work;
