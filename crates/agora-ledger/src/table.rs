//! A persistent (structurally shared) map that remembers which keys changed.
//!
//! Cloning a table is O(1), so the chain can keep one speculative state per unfinalized fork
//! and the block builder can snapshot before every transaction. The dirty set turns a block's
//! effects into a write set for the authenticated store.

use agora_core::codec::Encode;
use imbl::{OrdMap, OrdSet};

/// A map with change tracking. `K` is encoded into store keys, `V` into store values.
#[derive(Debug, Clone)]
pub struct Table<K: Ord + Clone, V: Clone> {
    map: OrdMap<K, V>,
    dirty: OrdSet<K>,
}

impl<K: Ord + Clone, V: Clone> Default for Table<K, V> {
    fn default() -> Self {
        Self { map: OrdMap::new(), dirty: OrdSet::new() }
    }
}

impl<K: Ord + Clone, V: Clone> Table<K, V> {
    /// The value at `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// A mutable reference to the value at `key`; marks the key changed.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if self.map.contains_key(key) {
            self.dirty.insert(key.clone());
        }
        self.map.get_mut(key)
    }

    /// Inserts or replaces the value at `key`.
    pub fn insert(&mut self, key: K, value: V) {
        self.dirty.insert(key.clone());
        self.map.insert(key, value);
    }

    /// Removes the value at `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let old = self.map.remove(key);
        if old.is_some() {
            self.dirty.insert(key.clone());
        }
        old
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    /// All values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    /// Inserts without marking the key changed (for loading committed state).
    pub(crate) fn load(&mut self, key: K, value: V) {
        self.map.insert(key, value);
    }

    /// Forgets which keys changed (start of a block).
    pub(crate) fn clear_dirty(&mut self) {
        self.dirty = OrdSet::new();
    }

    /// Appends `(prefix ‖ key, Some(value) | None)` for every changed key, in key order.
    pub(crate) fn drain_writes(&self, prefix: u8, out: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>)
    where
        K: Encode,
        V: Encode,
    {
        for key in self.dirty.iter() {
            let mut k = vec![prefix];
            key.encode_to(&mut k);
            out.push((k, self.map.get(key).map(Encode::encode)));
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
