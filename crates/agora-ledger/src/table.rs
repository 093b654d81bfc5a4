//! A persistent (structurally shared) map that remembers which keys changed.
//!
//! Cloning a table is O(1), so the chain can keep one speculative state per unfinalized fork
//! and the block builder can snapshot before every transaction. The dirty set turns a block's
//! effects into a write set for the authenticated store.

use agora_core::codec::Encode;
use imbl::{OrdMap, Vector};
use std::sync::Arc;

/// A map with change tracking. `K` is encoded into store keys, `V` into store values.
///
/// Values sit behind `Arc`: when a write copies a shared tree node, it copies pointers, not
/// the (possibly large) values, and only the value being changed is cloned.
#[derive(Debug, Clone)]
pub struct Table<K: Ord + Clone, V: Clone> {
    map: OrdMap<K, Arc<V>>,
    /// Keys written since the last drain, in write order, possibly repeated (an append is
    /// far cheaper than a sorted insert; draining sorts and deduplicates).
    dirty: Vector<K>,
}

impl<K: Ord + Clone, V: Clone> Default for Table<K, V> {
    fn default() -> Self {
        Self { map: OrdMap::new(), dirty: Vector::new() }
    }
}

impl<K: Ord + Clone, V: Clone> Table<K, V> {
    /// The value at `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|v| &**v)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// A mutable reference to the value at `key`; marks the key changed.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if self.map.contains_key(key) {
            self.dirty.push_back(key.clone());
        }
        self.map.get_mut(key).map(Arc::make_mut)
    }

    /// Inserts or replaces the value at `key`.
    pub fn insert(&mut self, key: K, value: V) {
        self.dirty.push_back(key.clone());
        self.map.insert(key, Arc::new(value));
    }

    /// Removes the value at `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let old = self.map.remove(key);
        if old.is_some() {
            self.dirty.push_back(key.clone());
        }
        old.map(|v| Arc::unwrap_or_clone(v))
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, v)| (k, &**v))
    }

    /// Entries with keys in `range`, in key order.
    pub fn range<R: std::ops::RangeBounds<K>>(&self, range: R) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.map.range(range).map(|(k, v)| (k, &**v))
    }

    /// All values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|v| &**v)
    }

    /// Inserts without marking the key changed (for loading committed state).
    pub(crate) fn load(&mut self, key: K, value: V) {
        self.map.insert(key, Arc::new(value));
    }

    /// Forgets which keys changed (start of a block).
    pub(crate) fn clear_dirty(&mut self) {
        self.dirty = Vector::new();
    }

    /// Appends `(prefix ‖ key, Some(value) | None)` for every changed key, in key order.
    pub(crate) fn drain_writes(&self, prefix: u8, out: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>)
    where
        K: Encode,
        V: Encode,
    {
        let mut keys: Vec<&K> = self.dirty.iter().collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let mut k = vec![prefix];
            key.encode_to(&mut k);
            out.push((k, self.map.get(key).map(|v| v.encode())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_changes_and_clones_cheaply() {
        let mut t: Table<u64, u64> = Table::default();
        t.load(1, 10);
        t.insert(2, 20);
        *t.get_mut(&1).unwrap() += 1;
        t.remove(&3); // absent: not a change
        let snapshot = t.clone();
        t.remove(&2);
        let mut writes = vec![];
        t.drain_writes(7, &mut writes);
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0], (vec![7, 1, 0, 0, 0, 0, 0, 0, 0], Some(11u64.encode())));
        assert_eq!(writes[1].1, None);
        assert_eq!(snapshot.get(&2), Some(&20));
    }
}
