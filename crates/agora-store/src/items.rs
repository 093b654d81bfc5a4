//! Item commitments: a job's inputs or outputs as a list of items, framed into one blob and
//! committed to with a Merkle root (the root a provider posts on chain).
//!
//! An auditor checks a single sampled item without the rest: the provider hands over an
//! [`ItemProof`] (where the item sits in the blob, plus its Merkle path); the auditor fetches just
//! that byte range, verified against the blob's hash, and checks the item against the root.
//!
//! Framing is canonical — one encoding per list — and bounded: a `u32` little-endian item count,
//! then for each item a `u32` little-endian length and the item's bytes.

use agora_core::Hash;
use agora_core::codec::{DecodeError, Reader, encode_len};
use agora_core::codec_struct;
use agora_core::manifest::MAX_ITEMS_PER_SHARD;
use agora_core::merkle::{MerkleProof, MerkleTree, leaf_hash};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Most items one list may hold: a shard's item limit.
pub const MAX_ITEMS: usize = MAX_ITEMS_PER_SHARD as usize;

/// Largest single item, in bytes.
pub const MAX_ITEM_BYTES: usize = 64 << 20;

/// Why a list of items could not be framed, parsed or proven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemsError {
    /// More items than a list may hold.
    #[error("{count} items is more than the limit of {MAX_ITEMS}; split the job into more shards")]
    TooManyItems {
        /// Items supplied.
        count: usize,
    },
    /// An item larger than [`MAX_ITEM_BYTES`].
    #[error("item {index} is {len} bytes, more than the limit of {MAX_ITEM_BYTES}; make items smaller")]
    ItemTooLarge {
        /// Position of the item.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// The blob is not a valid item list.
    #[error("not a valid item list: {0}")]
    Malformed(#[from] DecodeError),
    /// The item does not match the commitment.
    #[error("item {index} does not match the commitment: {reason}")]
    Mismatch {
        /// Position the proof claims.
        index: u64,
        /// Which check failed.
        reason: &'static str,
    },
}

/// Frames `items` into the canonical blob form.
pub fn frame<I: AsRef<[u8]>>(items: &[I]) -> Result<Vec<u8>, ItemsError> {
    if items.len() > MAX_ITEMS {
        return Err(ItemsError::TooManyItems { count: items.len() });
    }
    let total: usize = items.iter().map(|i| 4 + i.as_ref().len()).sum();
    let mut out = Vec::with_capacity(4 + total);
    encode_len(items.len(), &mut out);
    for (index, item) in items.iter().enumerate() {
        let item = item.as_ref();
        if item.len() > MAX_ITEM_BYTES {
            return Err(ItemsError::ItemTooLarge { index, len: item.len() });
        }
        encode_len(item.len(), &mut out);
        out.extend_from_slice(item);
    }
    Ok(out)
}

/// A parsed item list, borrowing the framed blob.
#[derive(Debug, Clone)]
pub struct Items<'a> {
    frame: &'a [u8],
    spans: Vec<Range<usize>>,
}

impl<'a> Items<'a> {
    /// Parses a framed blob, rejecting anything that is not exactly one canonical item list.
    /// Memory use is bounded by the blob's size, whatever its length prefixes claim.
    pub fn parse(frame: &'a [u8]) -> Result<Self, ItemsError> {
        let mut r = Reader::new(frame);
        // Each item occupies at least its 4-byte length prefix.
        let count = r.length(MAX_ITEMS, 4, "item list")?;
        let mut spans = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.length(MAX_ITEM_BYTES, 1, "item")?;
            let start = frame.len() - r.remaining();
            r.take(len, "item")?;
            spans.push(start..start + len);
        }
        r.finish("item list")?;
        Ok(Self { frame, spans })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Item `index`.
    pub fn get(&self, index: usize) -> Option<&'a [u8]> {
        self.spans.get(index).map(|s| &self.frame[s.clone()])
    }

    /// The items in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + '_ {
        self.spans.iter().map(|s| &self.frame[s.clone()])
    }

    /// Builds the Merkle tree over the items, ready to commit and prove.
    pub fn commit(self) -> CommittedItems<'a> {
        let tree = MerkleTree::new(self.iter().map(leaf_hash).collect());
        CommittedItems { items: self, tree }
    }
}

/// What a provider posts about a list of items: its Merkle root and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCommitment {
    /// Merkle root over the items ([`agora_core::merkle`], leaves hashed with `leaf_hash`).
    pub root: Hash,
    /// Number of items.
    pub item_count: u32,
}

/// Items with their Merkle tree.
#[derive(Debug, Clone)]
pub struct CommittedItems<'a> {
    items: Items<'a>,
    tree: MerkleTree,
}

impl<'a> CommittedItems<'a> {
    /// The items.
    pub fn items(&self) -> &Items<'a> {
        &self.items
    }

    /// The commitment to post.
    pub fn commitment(&self) -> ItemCommitment {
        let item_count = u32::try_from(self.items.len()).expect("parsing bounds the item count");
        ItemCommitment { root: self.tree.root(), item_count }
    }

    /// The proof for item `index`, or `None` if there is no such item.
    pub fn prove(&self, index: usize) -> Option<ItemProof> {
        let span = self.items.spans.get(index)?;
        Some(ItemProof {
            offset: span.start as u64,
            len: u32::try_from(span.len()).expect("parsing bounds item lengths"),
            merkle: self.tree.proof(index)?,
        })
    }
}

/// Everything an auditor needs to check one item: where to fetch it and its Merkle path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemProof {
    /// Byte offset of the item (after its length prefix) in the framed blob.
    pub offset: u64,
    /// The item's length.
    pub len: u32,
    /// The Merkle path from the item's leaf to the root.
    pub merkle: MerkleProof,
}
codec_struct!(ItemProof { offset, len, merkle });

impl ItemProof {
    /// The item's position in the list.
    pub fn index(&self) -> u64 {
        self.merkle.index
    }

    /// The byte range to fetch from the framed blob.
    pub fn span(&self) -> Range<u64> {
        self.offset..self.offset + u64::from(self.len)
    }

    /// Checks that `item` is the item at this proof's position under `commitment`.
    pub fn verify(&self, commitment: &ItemCommitment, item: &[u8]) -> Result<(), ItemsError> {
        let fail = |reason| Err(ItemsError::Mismatch { index: self.index(), reason });
        if self.merkle.count != u64::from(commitment.item_count) {
            return fail("the proof is for a list of a different length");
        }
        if item.len() as u64 != u64::from(self.len) {
            return fail("the item has a different length than the proof states");
        }
        if !self.merkle.verify(&commitment.root, leaf_hash(item)) {
            return fail("its Merkle path does not lead to the committed root");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::codec::{Decode, Encode};
    use proptest::prelude::*;

    fn items() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 0..60)
    }

    proptest! {
        #[test]
        fn framing_round_trips(list in items()) {
            let framed = frame(&list).unwrap();
            let parsed = Items::parse(&framed).unwrap();
            prop_assert_eq!(parsed.iter().map(<[u8]>::to_vec).collect::<Vec<_>>(), list);
        }

        #[test]
        fn every_item_proves_and_any_tampering_fails(
            list in items().prop_filter("non-empty", |l| !l.is_empty()),
            pick in any::<prop::sample::Index>(),
        ) {
            let framed = frame(&list).unwrap();
            let committed = Items::parse(&framed).unwrap().commit();
            let commitment = committed.commitment();
            prop_assert_eq!(commitment.root, MerkleTree::from_items(&list).root());
            for (i, item) in list.iter().enumerate() {
                let proof = committed.prove(i).unwrap();
                // The auditor fetches exactly the span and checks it.
                let span = proof.span();
                let fetched = &framed[span.start as usize..span.end as usize];
                prop_assert_eq!(fetched, item.as_slice());
                let proof = ItemProof::decode(&proof.encode()).unwrap();
                prop_assert!(proof.verify(&commitment, fetched).is_ok());

                let mut changed = item.clone();
                changed.push(0);
                prop_assert!(proof.verify(&commitment, &changed).is_err());
                if !item.is_empty() {
                    let mut flipped = item.clone();
                    flipped[pick.index(item.len())] ^= 1;
                    prop_assert!(proof.verify(&commitment, &flipped).is_err());
                }
                if !proof.merkle.siblings.is_empty() {
                    let mut bad = proof.clone();
                    let j = pick.index(bad.merkle.siblings.len());
                    bad.merkle.siblings[j].0[31] ^= 0x80;
                    prop_assert!(bad.verify(&commitment, item).is_err());
                    let mut short = proof.clone();
                    short.merkle.siblings.pop();
                    prop_assert!(short.verify(&commitment, item).is_err());
                }
                let other = (i + 1) % list.len();
                if list[other] != *item {
                    let mut moved = proof.clone();
                    moved.merkle.index = other as u64;
                    prop_assert!(moved.verify(&commitment, item).is_err());
                }
                let wrong_count = ItemCommitment { item_count: commitment.item_count + 1, ..commitment };
                prop_assert!(proof.verify(&wrong_count, item).is_err());
                let wrong_root = ItemCommitment { root: Hash::of(b"other"), ..commitment };
                prop_assert!(proof.verify(&wrong_root, item).is_err());
            }
            prop_assert!(committed.prove(list.len()).is_none());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Items::parse(&bytes);
        }

        #[test]
        fn truncated_or_extended_frames_are_rejected(list in items(), cut in any::<prop::sample::Index>()) {
            let framed = frame(&list).unwrap();
            prop_assert!(Items::parse(&framed[..cut.index(framed.len())]).is_err());
            let mut longer = framed.clone();
            longer.push(0);
            prop_assert!(Items::parse(&longer).is_err());
        }
    }

    #[test]
    fn huge_counts_are_rejected_before_allocating() {
        let err = Items::parse(&u32::MAX.to_le_bytes()).unwrap_err();
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        let framed = frame::<&[u8]>(&[]).unwrap();
        let empty = Items::parse(&framed).unwrap().commit();
        assert_eq!(empty.commitment().item_count, 0);
        assert!(empty.prove(0).is_none());
    }

    #[test]
    fn oversized_lists_are_refused_when_framing() {
        let big = vec![0u8; MAX_ITEM_BYTES + 1];
        assert_eq!(
            frame(&[big]).unwrap_err(),
            ItemsError::ItemTooLarge { index: 0, len: MAX_ITEM_BYTES + 1 }
        );
    }
}
