//! The verified transfer format, and receiving it.
//!
//! `GET /blobs/{hash}/verified?start=A&end=B` answers with the blob's size (`u64`
//! little-endian) followed by bao-tree's encoding of [`proof_ranges`]`(A..B, size)`: the parent
//! hashes and chunk groups covering bytes `A..B`, plus the blob's last chunk, which proves the
//! size. The receiver trusts nothing but the hash it asked for: it checks every parent pair and
//! every chunk group against the hash as it arrives and passes a group on only once it matches,
//! so a lying node is caught at the first bad group and nothing after it is used.

use crate::http::client::ClientError;
use crate::http::sink::Sink;
use crate::reader::{clip, node_offset};
use crate::tree::{GROUP_BYTES, bao_tree, proof_ranges};
use agora_core::Hash;
use bao_tree::io::sync::DecodeResponseIter;
use bao_tree::io::{BaoContentItem, DecodeError};
use bytes::{Buf, BytesMut};
use std::io::{self, Read};
use std::ops::Range;
use std::sync::Mutex;

/// Media type of a verified response.
pub const VERIFIED_MEDIA_TYPE: &str = "application/vnd.agora.bao";

/// Bytes received but not yet decoded. The decoder reads it synchronously while the receive
/// loop refills it between items; the mutex is never held across an await.
#[derive(Default)]
struct Feed(Mutex<BytesMut>);

impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, BytesMut> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The decoder's view of the feed. It only ever sees bytes already received; running dry means
/// the response ended early.
struct FeedReader<'a>(&'a Feed);

impl Read for FeedReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut buf = self.0.lock();
        let n = out.len().min(buf.len());
        out[..n].copy_from_slice(&buf[..n]);
        buf.advance(n);
        Ok(n)
    }
}

/// Reads the verified response `response` for blob `hash`, passing the bytes of `requested`
/// (the whole blob if `None`) to `sink` as each chunk group checks out. Calls `progress(done,
/// total)` after each piece. Returns the number of bytes passed on. A blob whose announced size
/// is above `limit` is refused before any of its content is read.
pub(crate) async fn receive(
    response: &mut reqwest::Response,
    hash: Hash,
    requested: Option<Range<u64>>,
    limit: Option<u64>,
    sink: &mut impl Sink,
    progress: &mut impl FnMut(u64, u64),
) -> Result<u64, ClientError> {
    let feed = Feed::default();
    let mut rx = Receiving { response, feed: &feed, ended: false, hash, done: 0 };
    rx.fill(8).await?;
    let size = {
        let mut buf = feed.lock();
        if buf.len() < 8 {
            return Err(ClientError::Truncated { hash, received: 0 });
        }
        buf.get_u64_le()
    };
    // The size is unproven until the last chunk verifies; the range check against it only decides
    // which bytes to keep, and a false size makes verification fail. So does a size under the
    // limit for a larger blob: what is read is bounded by the size announced.
    if let Some(limit) = limit.filter(|l| size > *l) {
        return Err(ClientError::TooLarge { hash, size, limit });
    }
    let range = match requested {
        None => 0..size,
        Some(r) if r.start <= r.end && r.start <= size => r.start..r.end.min(size),
        Some(r) => return Err(ClientError::BadRange { hash, start: r.start, end: r.end, size }),
    };
    let total = range.end - range.start;
    let ranges = proof_ranges(range.clone(), size);
    let root = blake3::Hash::from(hash.0);
    let mut items = DecodeResponseIter::new(root, bao_tree(size), FeedReader(&feed), &ranges);
    loop {
        // No item is larger than a chunk group, so with this much buffered (or the response
        // over) the decoder never runs dry in the middle of an item that is still arriving.
        rx.fill(GROUP_BYTES).await?;
        match items.next() {
            None => break,
            Some(Err(e)) => return Err(rx.decode_error(e)),
            Some(Ok(BaoContentItem::Parent(_))) => {}
            Some(Ok(BaoContentItem::Leaf(leaf))) => {
                let piece = clip(leaf.offset, &leaf.data, &range);
                if !piece.is_empty() {
                    sink.accept(piece).await?;
                    rx.done += piece.len() as u64;
                    progress(rx.done, total);
                }
            }
        }
    }
    rx.fill(1).await?;
    let extra = feed.len();
    if extra > 0 {
        return Err(ClientError::TrailingData { hash, extra });
    }
    Ok(rx.done)
}

/// State of one receive loop.
struct Receiving<'a> {
    response: &'a mut reqwest::Response,
    feed: &'a Feed,
    ended: bool,
    hash: Hash,
    done: u64,
}

impl Receiving<'_> {
    /// Receives until at least `want` bytes are buffered or the response is over.
    async fn fill(&mut self, want: usize) -> Result<(), ClientError> {
        while !self.ended && self.feed.len() < want {
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.feed.lock().extend_from_slice(&bytes),
                Ok(None) => self.ended = true,
                Err(source) => {
                    return Err(ClientError::Interrupted { hash: self.hash, received: self.done, source });
                }
            }
        }
        Ok(())
    }

    fn decode_error(&self, e: DecodeError) -> ClientError {
        let hash = self.hash;
        match e {
            DecodeError::LeafHashMismatch(chunk) => {
                ClientError::Verification { hash, offset: chunk.to_bytes() }
            }
            DecodeError::ParentHashMismatch(node) => {
                ClientError::Verification { hash, offset: node_offset(node) }
            }
            DecodeError::LeafNotFound(_) | DecodeError::ParentNotFound(_) | DecodeError::Io(_) => {
                ClientError::Truncated { hash, received: self.done }
            }
        }
    }
}
