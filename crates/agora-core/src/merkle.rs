//! Binary Merkle trees over item hashes, with inclusion proofs.
//!
//! Used for transaction roots and for item commitments: a provider posts the root over its
//! per-item output hashes, and an auditor checks a single item with a proof of `log2(n)`
//! hashes. Leaves and inner nodes are hashed under different domains (so a node can never be
//! passed off as a leaf), and an odd node at the end of a level is promoted unchanged rather
//! than duplicated (so two different leaf lists never share a root). The root commits to the
//! leaf count (`H(count ‖ top node)`), so a proof binds the size of the tree it claims: a tail
//! leaf cannot be passed off as another index of a smaller tree with the same top node.

use crate::codec_struct;
use crate::hash::Hash;
use serde::{Deserialize, Serialize};

/// The most levels a proof may have: enough for 2^48 leaves.
pub const MAX_PROOF_DEPTH: usize = 48;

/// Hashes the bytes of one item into a leaf.
pub fn leaf_hash(item: &[u8]) -> Hash {
    Hash::tagged("agora/merkle/leaf", &[item])
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::tagged("agora/merkle/node", &[&left.0, &right.0])
}

/// The root over a tree's top node and its leaf count.
fn counted_root(count: u64, top: &Hash) -> Hash {
    Hash::tagged("agora/merkle/root", &[&count.to_le_bytes(), &top.0])
}

/// The root of a tree with no leaves.
pub fn empty_root() -> Hash {
    Hash::tagged("agora/merkle/empty", &[])
}

/// A Merkle tree kept level by level, so proofs are cheap to extract.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Builds the tree over leaf hashes (see [`leaf_hash`]).
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().map_or(0, Vec::len) > 1 {
            let prev = levels.last().expect("non-empty");
            let next = prev
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [single] => *single,
                    _ => unreachable!("chunks(2)"),
                })
                .collect();
            levels.push(next);
        }
        Self { levels }
    }

    /// Builds the tree over raw items.
    pub fn from_items<I: AsRef<[u8]>>(items: &[I]) -> Self {
        Self::new(items.iter().map(|i| leaf_hash(i.as_ref())).collect())
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The root hash: the top node bound to the leaf count.
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|l| l.first()) {
            Some(top) if !self.is_empty() => counted_root(self.len() as u64, top),
            _ => empty_root(),
        }
    }

    /// The inclusion proof of leaf `index`, or `None` if out of range.
    pub fn proof(&self, index: usize) -> Option<MerkleProof> {
        if index >= self.len() {
            return None;
        }
        let mut siblings = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sib = i ^ 1;
            if sib < level.len() {
                siblings.push(level[sib]);
            }
            i /= 2;
        }
        Some(MerkleProof { index: index as u64, count: self.len() as u64, siblings })
    }
}

/// Proof that a leaf sits at `index` in a tree of `count` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleProof {
    /// Position of the leaf.
    pub index: u64,
    /// Number of leaves in the tree.
    pub count: u64,
    /// Sibling hashes from the leaf level up.
    pub siblings: Vec<Hash>,
}
codec_struct!(MerkleProof { index, count, siblings: vec(MAX_PROOF_DEPTH) });

impl MerkleProof {
    /// Recomputes the root from `leaf` and the siblings; `None` if the proof's shape does not
    /// match its claimed position and size.
    pub fn root_for(&self, leaf: Hash) -> Option<Hash> {
        if self.index >= self.count {
            return None;
        }
        let mut hash = leaf;
        let (mut i, mut width) = (self.index, self.count);
        let mut sibs = self.siblings.iter();
        while width > 1 {
            let sib = i ^ 1;
            if sib < width {
                let s = sibs.next()?;
                hash = if i % 2 == 0 { node_hash(&hash, s) } else { node_hash(s, &hash) };
            }
            i /= 2;
            width = width.div_ceil(2);
        }
        // Every sibling must have been used: extra hashes mean a malformed proof.
        sibs.next().is_none().then(|| counted_root(self.count, &hash))
    }

    /// Whether `leaf` is at this proof's position in the tree with root `root`. The root
    /// binds the proof's `count`, so a proof that verifies also proves the tree's size.
    pub fn verify(&self, root: &Hash, leaf: Hash) -> bool {
        self.root_for(leaf).as_ref() == Some(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decode, Encode};
    use proptest::prelude::*;

    #[test]
    fn empty_and_single() {
        assert_eq!(MerkleTree::new(vec![]).root(), empty_root());
        let leaf = leaf_hash(b"a");
        let t = MerkleTree::new(vec![leaf]);
        assert_ne!(t.root(), leaf, "a one-leaf root still commits to its count");
        assert!(t.proof(0).unwrap().verify(&t.root(), leaf));
        assert!(t.proof(1).is_none());
    }

    #[test]
    fn promotion_does_not_collide_with_duplication() {
        let (a, b, c) = (leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c"));
        assert_ne!(MerkleTree::new(vec![a, b, c]).root(), MerkleTree::new(vec![a, b, c, c]).root());
    }

    #[test]
    fn a_tail_leaf_cannot_stand_in_for_another_index_of_a_smaller_tree() {
        // Review F6: in [a, b, c] the last leaf's path is [node(a, b)], exactly the path of
        // index 1 in a two-leaf tree, so before roots bound the count, "c at index 1 of 2"
        // verified against the three-leaf root.
        let items = [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        let root = MerkleTree::from_items(&items).root();
        let top_of_ab = MerkleTree::new(vec![leaf_hash(b"a"), leaf_hash(b"b")]).levels[1][0];
        let fake = MerkleProof { index: 1, count: 2, siblings: vec![top_of_ab] };
        assert!(!fake.verify(&root, leaf_hash(b"c")));
        let real = MerkleTree::from_items(&items).proof(2).unwrap();
        assert!(real.verify(&root, leaf_hash(b"c")));
    }

    proptest! {
        #[test]
        fn every_item_proves_and_tampering_fails(
            items in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 1..70),
            flip in any::<prop::sample::Index>(),
        ) {
            let tree = MerkleTree::from_items(&items);
            let root = tree.root();
            for (i, item) in items.iter().enumerate() {
                let proof = tree.proof(i).unwrap();
                prop_assert!(proof.verify(&root, leaf_hash(item)));
                let decoded = MerkleProof::decode(&proof.encode()).unwrap();
                prop_assert_eq!(&decoded, &proof);
                // A different item at the same position fails.
                let mut other = item.clone();
                other.push(1);
                prop_assert!(!proof.verify(&root, leaf_hash(&other)));
                // A different position fails (unless the items are identical).
                if items.len() > 1 {
                    let mut moved = proof.clone();
                    moved.index = ((i + 1) % items.len()) as u64;
                    if items[(i + 1) % items.len()] != *item {
                        prop_assert!(!moved.verify(&root, leaf_hash(item)));
                    }
                }
                // Any flipped sibling bit fails.
                if !proof.siblings.is_empty() {
                    let mut bad = proof.clone();
                    let j = flip.index(bad.siblings.len());
                    bad.siblings[j].0[0] ^= 1;
                    prop_assert!(!bad.verify(&root, leaf_hash(item)));
                    // A truncated or padded proof fails.
                    let mut short = proof.clone();
                    short.siblings.pop();
                    prop_assert!(!short.verify(&root, leaf_hash(item)));
                }
                let mut long = proof.clone();
                long.siblings.push(Hash::ZERO);
                prop_assert!(!long.verify(&root, leaf_hash(item)));
            }
        }
    }
}
