//! The verified-streaming tree: BLAKE3's own hash tree, read in 16 KiB chunk groups.
//!
//! A blob's address is its plain BLAKE3 hash, which is also the root of this tree, so whoever
//! holds the hash can check any chunk group of the blob using the parent hashes on its path.
//! Those parent hashes live in an *outboard* beside the data: 64 bytes per chunk group, in
//! bao-tree's post-order layout. The tree hasher builds the root and the outboard in one pass
//! while a blob streams in, so an upload is hashed exactly once.

use bao_tree::io::round_up_to_chunks_groups;
use bao_tree::iter::BaoChunk;
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use blake3::hazmat::{ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Chunk groups of 2^4 BLAKE3 chunks: the unit in which data is verified.
pub const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);

/// Bytes in one chunk group (16 KiB).
pub const GROUP_BYTES: usize = BLOCK_SIZE.bytes();

/// The tree geometry of a blob of `size` bytes.
pub fn bao_tree(size: u64) -> BaoTree {
    BaoTree::new(size, BLOCK_SIZE)
}

/// The chunk groups covering bytes `range` (rounded out to whole groups).
pub fn group_ranges(range: Range<u64>) -> ChunkRanges {
    if range.start >= range.end {
        return ChunkRanges::empty();
    }
    let chunks = ChunkRanges::from(ChunkNum::full_chunks(range.start)..ChunkNum::chunks(range.end));
    round_up_to_chunks_groups(chunks, BLOCK_SIZE)
}

/// The chunk groups a peer sends for bytes `range` of a blob of `size` bytes: those covering the
/// range plus the last chunk, whose verification proves the size itself (and makes even an empty
/// request check something against the root).
pub fn proof_ranges(range: Range<u64>, size: u64) -> ChunkRanges {
    let last = ChunkNum::chunks(size).0.saturating_sub(1);
    group_ranges(range) | ChunkRanges::from(ChunkNum(last)..ChunkNum(last + 1))
}

/// Hashes one chunk group that is not the whole blob (a non-root subtree of the BLAKE3 tree).
fn group_cv(index: u64, data: &[u8]) -> ChainingValue {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(index * GROUP_BYTES as u64);
    hasher.update(data);
    hasher.finalize_non_root()
}

/// Incrementally hashes a blob into its root and outboard.
///
/// Chunk-group hashes are spilled to an unnamed temporary file, so memory stays constant however
/// large the blob is.
pub(crate) struct TreeHasher {
    /// Bytes of the current, not yet hashed, chunk group. A full group is only hashed once more
    /// data arrives, because the last group of a single-group blob is hashed as the root.
    pending: Vec<u8>,
    /// Chunk groups hashed so far.
    groups: u64,
    /// Where chunk-group hashes are spilled (created on first use).
    spill_dir: PathBuf,
    spill: Option<BufWriter<File>>,
}

/// The result of hashing a blob.
pub(crate) struct Hashed {
    /// The BLAKE3 root (the blob's address).
    pub root: blake3::Hash,
    /// The blob's size in bytes.
    pub size: u64,
}

impl TreeHasher {
    /// Starts hashing; chunk-group hashes will be spilled under `spill_dir`.
    pub fn new(spill_dir: &Path) -> Self {
        Self {
            pending: Vec::with_capacity(GROUP_BYTES),
            groups: 0,
            spill_dir: spill_dir.to_owned(),
            spill: None,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.groups * GROUP_BYTES as u64 + self.pending.len() as u64
    }

    /// Feeds the next bytes of the blob.
    pub fn update(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.pending.len() == GROUP_BYTES {
                let group = std::mem::take(&mut self.pending);
                self.push_group(&group)?;
                self.pending = group;
                self.pending.clear();
            }
            if self.pending.is_empty() {
                // Fast path: hash whole groups straight from the input, keeping the last one back.
                while data.len() > GROUP_BYTES {
                    let (group, rest) = data.split_at(GROUP_BYTES);
                    self.push_group(group)?;
                    data = rest;
                }
            }
            let take = (GROUP_BYTES - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    fn push_group(&mut self, group: &[u8]) -> io::Result<()> {
        let cv = group_cv(self.groups, group);
        let spill = match &mut self.spill {
            Some(spill) => spill,
            None => self.spill.insert(BufWriter::new(tempfile::tempfile_in(&self.spill_dir)?)),
        };
        spill.write_all(&cv)?;
        self.groups += 1;
        Ok(())
    }

    /// Finishes the blob: writes its post-order outboard (nothing for a single-group blob) and
    /// returns the root and size.
    pub fn finish(mut self, outboard: &mut impl Write) -> io::Result<Hashed> {
        let size = self.len();
        if self.groups == 0 {
            return Ok(Hashed { root: blake3::hash(&self.pending), size });
        }
        let last = std::mem::take(&mut self.pending);
        self.push_group(&last)?;
        let spill = self.spill.take().expect("a multi-group blob spilled its hashes");
        let mut file = spill.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.rewind()?;
        let root = build_outboard(bao_tree(size), BufReader::new(file), outboard)?;
        Ok(Hashed { root, size })
    }
}

/// Combines chunk-group hashes (read in order from `cvs`) into the tree, writing each parent's
/// pair of child hashes in post order, as bao-tree's `outboard_post_order` does from raw data.
fn build_outboard(tree: BaoTree, mut cvs: impl Read, outboard: &mut impl Write) -> io::Result<blake3::Hash> {
    let mut stack: Vec<ChainingValue> = Vec::with_capacity(64);
    let mut root = None;
    for item in tree.post_order_chunks_iter() {
        match item {
            BaoChunk::Leaf { .. } => {
                let mut cv = [0u8; 32];
                cvs.read_exact(&mut cv)?;
                stack.push(cv);
            }
            BaoChunk::Parent { is_root, .. } => {
                let right = stack.pop().expect("post order yields children first");
                let left = stack.pop().expect("post order yields children first");
                outboard.write_all(&left)?;
                outboard.write_all(&right)?;
                if is_root {
                    root = Some(merge_subtrees_root(&left, &right, Mode::Hash));
                } else {
                    stack.push(merge_subtrees_non_root(&left, &right, Mode::Hash));
                }
            }
        }
    }
    let mut extra = [0u8; 1];
    if cvs.read(&mut extra)? != 0 {
        return Err(io::Error::other("more chunk-group hashes than the tree has groups"));
    }
    root.ok_or_else(|| io::Error::other("a multi-group tree has a root parent"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bao_tree::io::outboard::PostOrderMemOutboard;
    use proptest::prelude::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 1024) as u8).collect()
    }

    fn hash_in_pieces(bytes: &[u8], piece: usize) -> (blake3::Hash, u64, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let mut hasher = TreeHasher::new(dir.path());
        for part in bytes.chunks(piece.max(1)) {
            hasher.update(part).unwrap();
        }
        let mut outboard = Vec::new();
        let hashed = hasher.finish(&mut outboard).unwrap();
        (hashed.root, hashed.size, outboard)
    }

    #[test]
    fn matches_bao_tree_at_group_boundaries() {
        let g = GROUP_BYTES;
        for len in [0, 1, 1023, 1024, 1025, g - 1, g, g + 1, 2 * g, 3 * g + 5, 5 * g - 1, 17 * g] {
            let bytes = data(len);
            let expected = PostOrderMemOutboard::create(&bytes, BLOCK_SIZE);
            for piece in [1000, g, 7 * g + 3, len.max(1)] {
                let (root, size, outboard) = hash_in_pieces(&bytes, piece);
                assert_eq!(root, blake3::hash(&bytes), "len {len} piece {piece}");
                assert_eq!(root, expected.root);
                assert_eq!(size, len as u64);
                assert_eq!(outboard, expected.data, "len {len} piece {piece}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_split_gives_the_plain_blake3_hash(len in 0usize..(6 * GROUP_BYTES), piece in 1usize..40_000) {
            let bytes = data(len);
            let (root, _, outboard) = hash_in_pieces(&bytes, piece);
            prop_assert_eq!(root, blake3::hash(&bytes));
            prop_assert_eq!(outboard.len() as u64, bao_tree(len as u64).outboard_size());
        }
    }

    #[test]
    fn proof_ranges_cover_the_range_and_the_last_chunk() {
        let g = GROUP_BYTES as u64;
        let size = 10 * g + 5;
        let r = proof_ranges(g + 1..g + 2, size);
        assert_eq!(
            r,
            ChunkRanges::from(ChunkNum(16)..ChunkNum(32)) | ChunkRanges::from(ChunkNum(160)..ChunkNum(161))
        );
        assert_eq!(proof_ranges(0..0, 0), ChunkRanges::from(ChunkNum(0)..ChunkNum(1)));
        assert!(group_ranges(5..5).is_empty());
    }
}
