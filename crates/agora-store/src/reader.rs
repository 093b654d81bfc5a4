//! Reading a stored blob back: every chunk group is checked against the blob's hash before a
//! single byte of it is handed out, so a blob corrupted on disk is refused, never served.
//!
//! Local reads reuse bao-tree's network decoder: an encoded reader lays the blob out as the
//! verified stream a remote peer would send (parent hashes from the outboard, data from the
//! data file), and the decoder checks it exactly as a remote receiver would.

use crate::error::{IoContext, Result, StoreError};
use crate::layout::Layout;
use crate::tree::{bao_tree, group_ranges};
use agora_core::Hash;
use bao_tree::io::outboard::PostOrderOutboard;
use bao_tree::io::sync::{DecodeResponseIter, Outboard, ReadAt, encode_ranges_validated, truncate_ranges};
use bao_tree::io::{BaoContentItem, DecodeError, EncodeError};
use bao_tree::iter::{BaoChunk, ResponseIterRef};
use bao_tree::{BaoTree, ChunkRangesRef, TreeNode};
use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::PathBuf;

/// An open blob: a consistent view that stays readable even if the blob is garbage-collected
/// meanwhile (open files outlive their directory entries).
#[derive(Debug)]
pub struct Blob {
    hash: Hash,
    path: PathBuf,
    data: File,
    outboard: PostOrderOutboard<OutboardFile>,
}

/// The outboard's storage: a file, or nothing for a blob of a single chunk group.
#[derive(Debug)]
enum OutboardFile {
    File(File),
    Empty,
}

impl ReadAt for OutboardFile {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::File(file) => file.read_at(pos, buf),
            Self::Empty => Ok(0),
        }
    }
}

impl Blob {
    /// Opens the blob `hash` of a store, checking that its outboard has the expected length.
    pub(crate) fn open(layout: &Layout, hash: Hash) -> Result<Self> {
        let path = layout.data(&hash);
        let data = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound(hash)),
            Err(e) => return Err(e).ctx("open", path),
        };
        let size = data.metadata().ctx("read the size of", &path)?.len();
        let tree = bao_tree(size);
        let corrupted = StoreError::Corrupted { hash, offset: 0 };
        if size == 0 && hash != Hash::of(&[]) {
            // Reads of an empty blob check nothing, so a data file cut to nothing is caught here.
            return Err(corrupted);
        }
        let outboard = if tree.outboard_size() == 0 {
            OutboardFile::Empty
        } else {
            let ob_path = layout.outboard(&hash);
            let file = match File::open(&ob_path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(corrupted),
                Err(e) => return Err(e).ctx("open", ob_path),
            };
            if file.metadata().ctx("read the size of", &ob_path)?.len() != tree.outboard_size() {
                return Err(corrupted);
            }
            OutboardFile::File(file)
        };
        let root = blake3::Hash::from(hash.0);
        Ok(Self { hash, path, data, outboard: PostOrderOutboard { root, tree, data: outboard } })
    }

    /// The blob's address.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.outboard.tree.size()
    }

    /// Checks that `range` lies within the blob.
    pub fn check_range(&self, range: &Range<u64>) -> Result<()> {
        if range.start > range.end || range.end > self.size() {
            return Err(StoreError::RangeOutOfBounds {
                hash: self.hash,
                start: range.start,
                end: range.end,
                size: self.size(),
            });
        }
        Ok(())
    }

    /// Writes bytes `range` of the blob to `out`, verifying each chunk group before writing any of
    /// it; stops with [`StoreError::Corrupted`] at the first group that does not match. Returns the
    /// number of bytes written.
    pub fn read_range_to(&self, range: Range<u64>, out: &mut impl Write) -> Result<u64> {
        self.check_range(&range)?;
        if range.is_empty() {
            return Ok(0);
        }
        let wanted = group_ranges(range.clone());
        let ranges = truncate_ranges(&wanted, self.size());
        let tree = self.outboard.tree;
        let encoded = EncodedReader::new(tree, ranges, &self.data, &self.outboard);
        let mut written = 0;
        for item in DecodeResponseIter::new(self.outboard.root, tree, encoded, ranges) {
            if let BaoContentItem::Leaf(leaf) = item.map_err(|e| self.decode_error(e))? {
                let piece = clip(leaf.offset, &leaf.data, &range);
                out.write_all(piece).map_err(StoreError::Output)?;
                written += piece.len() as u64;
            }
        }
        Ok(written)
    }

    /// Reads the whole blob, verified, into memory.
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.size()).unwrap_or(0));
        self.read_range_to(0..self.size(), &mut out)?;
        Ok(out)
    }

    /// Writes the verified-streaming encoding of `ranges` (parent hashes and chunk groups, in the
    /// order a receiver checks them) to `out`, checking every group before sending it.
    pub fn encode_verified(&self, ranges: &ChunkRangesRef, out: impl Write) -> Result<()> {
        encode_ranges_validated(&self.data, &self.outboard, ranges, out).map_err(|e| match e {
            EncodeError::LeafHashMismatch(chunk) => self.corrupted_at(chunk.to_bytes()),
            EncodeError::ParentHashMismatch(node) => self.corrupted_at(node_offset(node)),
            EncodeError::SizeMismatch => self.corrupted_at(0),
            EncodeError::ParentWrite(_) | EncodeError::LeafWrite(_) => {
                StoreError::Output(io::ErrorKind::ConnectionReset.into())
            }
            EncodeError::Io(e) if e.kind() == io::ErrorKind::BrokenPipe => StoreError::Output(e),
            EncodeError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => self.corrupted_at(0),
            EncodeError::Io(e) => StoreError::Io { action: "read", path: self.path.clone(), source: e },
        })
    }

    fn corrupted_at(&self, offset: u64) -> StoreError {
        StoreError::Corrupted { hash: self.hash, offset }
    }

    fn decode_error(&self, e: DecodeError) -> StoreError {
        match e {
            DecodeError::LeafHashMismatch(chunk) | DecodeError::LeafNotFound(chunk) => {
                self.corrupted_at(chunk.to_bytes())
            }
            DecodeError::ParentHashMismatch(node) | DecodeError::ParentNotFound(node) => {
                self.corrupted_at(node_offset(node))
            }
            DecodeError::Io(source) => StoreError::Io { action: "read", path: self.path.clone(), source },
        }
    }
}

/// The first byte covered by a tree node.
pub(crate) fn node_offset(node: TreeNode) -> u64 {
    node.chunk_range().start.to_bytes()
}

/// The part of a verified leaf (at byte `offset`) that falls inside `range`.
pub(crate) fn clip<'a>(offset: u64, data: &'a [u8], range: &Range<u64>) -> &'a [u8] {
    let len = data.len() as u64;
    let start = range.start.saturating_sub(offset).min(len);
    let end = range.end.saturating_sub(offset).min(len).max(start);
    &data[start as usize..end as usize]
}

/// The verified-streaming encoding of a stored blob, produced lazily as it is read.
///
/// It checks nothing itself: it feeds the decoder, which does.
struct EncodedReader<'a, O> {
    items: ResponseIterRef<'a>,
    data: &'a File,
    outboard: &'a O,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a, O: Outboard> EncodedReader<'a, O> {
    fn new(tree: BaoTree, ranges: &'a ChunkRangesRef, data: &'a File, outboard: &'a O) -> Self {
        Self { items: ResponseIterRef::new(tree, ranges), data, outboard, buf: Vec::new(), pos: 0 }
    }

    /// Loads the next item of the encoding; false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        self.buf.clear();
        self.pos = 0;
        match self.items.next() {
            None => return Ok(false),
            Some(BaoChunk::Parent { node, .. }) => {
                let (left, right) = self.outboard.load(node)?.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "the outboard has no entry for a parent")
                })?;
                self.buf.extend_from_slice(left.as_bytes());
                self.buf.extend_from_slice(right.as_bytes());
            }
            Some(BaoChunk::Leaf { start_chunk, size, .. }) => {
                self.buf.resize(size, 0);
                self.data.read_exact_at(start_chunk.to_bytes(), &mut self.buf)?;
            }
        }
        Ok(true)
    }
}

impl<O: Outboard> Read for EncodedReader<'_, O> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clip_keeps_only_the_requested_bytes() {
        let data = [1u8, 2, 3, 4];
        assert_eq!(clip(10, &data, &(0..100)), &data);
        assert_eq!(clip(10, &data, &(11..13)), &[2, 3]);
        assert_eq!(clip(10, &data, &(0..10)), &[] as &[u8]);
        assert_eq!(clip(10, &data, &(14..20)), &[] as &[u8]);
    }
}
