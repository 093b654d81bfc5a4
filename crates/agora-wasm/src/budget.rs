//! A shard's budget: what the lease bought bounds the whole shard, not only each item.
//!
//! A requester sets `fuel_per_item` (any amount) and the item count; each item is also capped
//! by a wall-clock limit. Without a shard-wide bound, a shard of many items that each spin up
//! to their limits would hold the provider's device far longer than the device-seconds the
//! lease paid for. So a shard's items together get
//! [`FUEL_PER_DEVICE_SECOND`] × the lease's device-seconds of fuel, and as a backstop the
//! device-seconds themselves of wall time.
//!
//! The fuel bound is what ends a runaway shard, and it ends it deterministically: every
//! provider and auditor counts the same fuel for the same item. The rate is set several times
//! below what a current core executes (3.8–5.6 billion units a second on the 2-vCPU machine of
//! BENCHMARKS.md, "wasm fuel rate"), so fuel runs out before the wall clock on any reasonable
//! provider, and the wall clock only stops a provider far slower than that. Requesters reserve device-seconds with that rate in mind; time they reserve and
//! do not use is refunded.
//! An auditor recomputing a sample spends at most what the provider spent on the whole shard,
//! so a shard that completed never runs out of budget in its audit.

use std::time::{Duration, Instant};

/// Fuel units one device-second of a lease buys for wasm work.
pub const FUEL_PER_DEVICE_SECOND: u64 = 1_000_000_000;

/// What is left of a shard's fuel and time.
#[derive(Debug)]
pub(crate) struct ShardBudget {
    /// The lease's device-seconds, or `None` for unbounded (local) runs.
    device_seconds: Option<u64>,
    /// Fuel left for the remaining items.
    fuel_left: u64,
    /// When the shard's wall time runs out.
    deadline: Option<Instant>,
}

/// The limits one item runs under, and whether each is the shard's rather than the item's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ItemLimits {
    /// Fuel the item may burn.
    pub fuel: u64,
    /// The item's fuel is cut to what is left of the shard's.
    pub fuel_is_shard: bool,
    /// Wall time the item may take.
    pub time: Duration,
    /// The item's time is cut to what is left of the shard's.
    pub time_is_shard: bool,
}

impl ShardBudget {
    /// The budget of a shard that bought `device_seconds` (`None`: unbounded), starting now.
    pub fn start(device_seconds: Option<u64>) -> Self {
        let now = Instant::now();
        ShardBudget {
            device_seconds,
            fuel_left: device_seconds.map_or(u64::MAX, |s| s.saturating_mul(FUEL_PER_DEVICE_SECOND)),
            deadline: device_seconds.and_then(|s| now.checked_add(Duration::from_secs(s))),
        }
    }

    /// The device-seconds bought, if bounded.
    pub fn device_seconds(&self) -> Option<u64> {
        self.device_seconds
    }

    /// The shard's whole fuel budget, if bounded.
    pub fn total_fuel(&self) -> Option<u64> {
        self.device_seconds.map(|s| s.saturating_mul(FUEL_PER_DEVICE_SECOND))
    }

    /// The limits for the next item: its own, cut to what is left of the shard's.
    pub fn for_item(&self, fuel_per_item: u64, time_limit: Duration) -> ItemLimits {
        let time_left = self.deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let (time, time_is_shard) = match time_left {
            Some(left) if left < time_limit => (left, true),
            _ => (time_limit, false),
        };
        ItemLimits {
            fuel: fuel_per_item.min(self.fuel_left),
            fuel_is_shard: self.fuel_left < fuel_per_item,
            time,
            time_is_shard,
        }
    }

    /// Records fuel an item burned.
    pub fn spend(&mut self, fuel: u64) {
        self.fuel_left = self.fuel_left.saturating_sub(fuel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_get_their_own_limits_until_the_shard_runs_short() {
        let item_time = Duration::from_secs(300);
        let mut b = ShardBudget::start(Some(3));
        assert_eq!(b.total_fuel(), Some(3 * FUEL_PER_DEVICE_SECOND));
        let first = b.for_item(FUEL_PER_DEVICE_SECOND, item_time);
        assert_eq!((first.fuel, first.fuel_is_shard), (FUEL_PER_DEVICE_SECOND, false));
        assert!(first.time_is_shard && first.time <= Duration::from_secs(3), "3 s bought, not 300");
        b.spend(2 * FUEL_PER_DEVICE_SECOND + FUEL_PER_DEVICE_SECOND / 2);
        let last = b.for_item(FUEL_PER_DEVICE_SECOND, item_time);
        assert_eq!((last.fuel, last.fuel_is_shard), (FUEL_PER_DEVICE_SECOND / 2, true));
        b.spend(u64::MAX);
        assert_eq!(b.for_item(1, item_time).fuel, 0, "nothing is left, and spending never wraps");
    }

    #[test]
    fn local_runs_are_bounded_only_per_item() {
        let b = ShardBudget::start(None);
        let l = b.for_item(u64::MAX, Duration::from_secs(300));
        assert_eq!(
            l,
            ItemLimits {
                fuel: u64::MAX,
                fuel_is_shard: false,
                time: Duration::from_secs(300),
                time_is_shard: false
            }
        );
        assert_eq!(b.total_fuel(), None);
        let huge = ShardBudget::start(Some(u64::MAX));
        assert_eq!(huge.total_fuel(), Some(u64::MAX), "saturates");
    }
}
