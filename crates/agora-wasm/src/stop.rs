//! Why a module's run on one item was stopped.
//!
//! Every stop reports the fuel used until it happened. Running out of fuel reports the
//! whole budget exactly. For the other stops the figure is what wasmtime had flushed to the
//! store: compiled code keeps the fuel counter in a register and writes it back at calls,
//! returns and `unreachable`, so a wall-clock stop or a hardware trap in the middle of a
//! call-free loop reports the fuel up to that loop's last call (a lower bound).

use std::time::Duration;

/// What stopped an item. Each message says what limit was hit and what the requester can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    /// The fuel budget ran out (e.g. an infinite loop).
    #[error(
        "ran out of fuel after {used} units (budget {budget} per item); raise fuel_per_item if the work is legitimate"
    )]
    OutOfFuel {
        /// Fuel consumed (the whole budget).
        used: u64,
        /// The per-item budget.
        budget: u64,
    },
    /// The wall-clock cap was reached.
    #[error("exceeded the wall-clock limit of {limit:?} per item after {used} fuel units")]
    WallClock {
        /// The cap.
        limit: Duration,
        /// Fuel consumed until then.
        used: u64,
    },
    /// The shard's items together burned the fuel its lease bought.
    #[error(
        "the shard ran out of fuel: its {device_seconds} device-seconds buy {budget} units ({per_second} a second), all spent by this item; reserve more device-seconds per item (seconds_per_item) or lower fuel_per_item"
    )]
    ShardFuel {
        /// The shard's whole budget (this item used what was left of it).
        budget: u64,
        /// The lease's device-seconds.
        device_seconds: u64,
        /// Fuel a device-second buys.
        per_second: u64,
        /// Fuel this item consumed.
        used: u64,
    },
    /// The shard's items together took the wall time its lease bought (a provider far slower
    /// than the fuel rate assumes).
    #[error(
        "the shard took the {device_seconds} device-seconds its lease bought, after {used} fuel units in this item"
    )]
    ShardTime {
        /// The lease's device-seconds.
        device_seconds: u64,
        /// Fuel this item consumed until then.
        used: u64,
    },
    /// The module tried to grow its memory beyond the cap.
    #[error(
        "hit the memory cap of {cap_mib} MiB (it asked for {requested} bytes) after {used} fuel units; raise memory_mib if the work needs it"
    )]
    MemoryCap {
        /// The cap, MiB.
        cap_mib: u32,
        /// The size the module asked for, bytes.
        requested: usize,
        /// Fuel consumed until then.
        used: u64,
    },
    /// The module trapped (unreachable, division by zero, out-of-bounds access, …).
    #[error("trapped after {used} fuel units: {trap}{stderr}")]
    Trap {
        /// The trap description.
        trap: String,
        /// Fuel consumed until then.
        used: u64,
        /// The tail of the module's stderr, if it wrote any (e.g. a Rust panic message).
        stderr: String,
    },
    /// The module exited with a non-zero status.
    #[error("exited with status {code} after {used} fuel units{stderr}")]
    Exit {
        /// The exit status.
        code: i32,
        /// Fuel consumed until then.
        used: u64,
        /// The tail of the module's stderr.
        stderr: String,
    },
    /// The module could not be instantiated (missing imports, initial memory over the cap).
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// The module wrote more output than an item may hold.
    #[error("wrote more than the {limit}-byte output limit")]
    OutputTooLarge {
        /// The limit, bytes.
        limit: usize,
    },
}

impl Stop {
    /// Fuel consumed before the stop.
    pub fn fuel_used(&self) -> u64 {
        match self {
            Stop::OutOfFuel { used, .. }
            | Stop::WallClock { used, .. }
            | Stop::ShardFuel { used, .. }
            | Stop::ShardTime { used, .. }
            | Stop::MemoryCap { used, .. }
            | Stop::Trap { used, .. }
            | Stop::Exit { used, .. } => *used,
            Stop::Instantiate(_) | Stop::OutputTooLarge { .. } => 0,
        }
    }
}
