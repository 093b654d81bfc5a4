//! Garbage collection policy: which unpinned blobs to drop to get under a size budget.

use agora_core::Hash;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// A blob as garbage collection sees it.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub hash: Hash,
    /// Bytes on disk: data plus outboard.
    pub disk_bytes: u64,
    /// When the blob was last stored (a repeated upload refreshes it).
    pub stored_at: SystemTime,
    pub pinned: bool,
}

/// What a garbage-collection run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Blobs removed, oldest first.
    pub removed: Vec<Hash>,
    /// Disk bytes freed (data and outboards).
    pub freed_bytes: u64,
    /// Disk bytes still used.
    pub kept_bytes: u64,
    /// The budget the run aimed for.
    pub budget_bytes: u64,
}

impl GcReport {
    /// Whether pinned blobs alone exceed the budget, so the store could not get under it.
    pub fn over_budget(&self) -> bool {
        self.kept_bytes > self.budget_bytes
    }
}

/// The unpinned blobs to remove, oldest first, until the total fits in `budget` (or nothing
/// unpinned is left). Ties in age break by hash, so the choice is deterministic.
pub(crate) fn victims(mut candidates: Vec<Candidate>, budget: u64) -> Vec<Candidate> {
    let mut total: u64 = candidates.iter().map(|c| c.disk_bytes).sum();
    candidates.retain(|c| !c.pinned);
    candidates.sort_by_key(|c| (c.stored_at, c.hash));
    candidates
        .into_iter()
        .take_while(|c| {
            let over = total > budget;
            if over {
                total -= c.disk_bytes;
            }
            over
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn blob(n: u8, bytes: u64, age: u64, pinned: bool) -> Candidate {
        Candidate {
            hash: Hash([n; 32]),
            disk_bytes: bytes,
            stored_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1000 - age),
            pinned,
        }
    }

    fn names(v: &[Candidate]) -> Vec<u8> {
        v.iter().map(|c| c.hash.0[0]).collect()
    }

    #[test]
    fn oldest_unpinned_go_first_until_under_budget() {
        let blobs = vec![
            blob(1, 10, 5, false),
            blob(2, 10, 50, false),
            blob(3, 10, 30, true),
            blob(4, 10, 40, false),
        ];
        assert_eq!(names(&victims(blobs.clone(), 40)), Vec::<u8>::new());
        assert_eq!(names(&victims(blobs.clone(), 39)), vec![2]);
        assert_eq!(names(&victims(blobs.clone(), 20)), vec![2, 4]);
        // Pinned blobs are never chosen, even when the budget cannot be met.
        assert_eq!(names(&victims(blobs, 0)), vec![2, 4, 1]);
    }
}
