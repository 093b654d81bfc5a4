//! The index of finalized blocks and transactions: the block archive (height → the record's
//! JSON) and the transaction index (id → height and position).
//!
//! It is a task of its own, apart from the executor, so API reads of blocks and transactions
//! and event replays never queue in front of consensus. The executor appends each finalized
//! block and waits until it is durable before it moves the state on (an acknowledged block is
//! on disk); appends are always served before reads. Reads wait in a bounded queue and are
//! refused with [`ChainError::Busy`] when it is full.

use crate::handle::ChainError;
use crate::records::BlockRecord;
use crate::validator::archive_config;
use agora_core::Hash;
use commonware_cryptography::sha256;
use commonware_runtime::{Clock, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::archive::{Archive as _, Identifier, immutable, prunable};
use commonware_storage::translator::EightCap;
use commonware_utils::{NZU64, NZUsize};
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use std::sync::Arc;

/// Reads that may wait for the index before more are refused.
pub const READ_QUEUE_CAPACITY: usize = 1024;

type Archive<E> = immutable::Archive<E, sha256::Digest, Vec<u8>>;

/// Transaction id → (height, position) of every finalized transaction. A prunable archive
/// keeps its key index in memory (about 20 bytes per transaction, rebuilt from its journal at
/// start), so indexing a transaction is a buffered append. The freezer behind an immutable
/// archive reads and rewrites an on-disk table slot per key instead: two blocking I/O calls per
/// transaction, which made indexing the costliest step of finalizing a full block.
type TxIndex<E> = prunable::Archive<EightCap, E, sha256::Digest, Vec<u8>>;

/// Bytes of a transaction's location: height (u64) and position in the block (u32).
const TX_LOCATION_BYTES: usize = 12;

/// One finalized block to index.
pub struct Append {
    /// Its height.
    pub height: u64,
    /// Its consensus digest.
    pub digest: sha256::Digest,
    /// Its record as JSON.
    pub json: Arc<str>,
    /// Its transactions' ids, in block order.
    pub txs: Vec<Hash>,
    /// The global sequence number of its first transaction.
    pub first_tx_seq: u64,
}

enum Write {
    Append(Append, oneshot::Sender<Result<(), String>>),
}

enum Read {
    BlockJson { height: u64, response: oneshot::Sender<Option<String>> },
    TxLocation { id: Hash, response: oneshot::Sender<Option<(u64, u32)>> },
}

/// A handle to the index: appends for the executor, bounded reads for everyone.
#[derive(Clone)]
pub struct IndexHandle {
    writes: mpsc::UnboundedSender<Write>,
    reads: tokio::sync::mpsc::Sender<Read>,
}

impl IndexHandle {
    /// Indexes a finalized block and returns once it is durable.
    pub async fn append(&self, block: Append) -> Result<(), String> {
        let (done, receiver) = oneshot::channel();
        self.writes.unbounded_send(Write::Append(block, done)).map_err(|_| "the index has stopped")?;
        receiver.await.map_err(|_| "the index has stopped")?
    }

    async fn read<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Read) -> Result<T, ChainError> {
        let (response, receiver) = oneshot::channel();
        self.reads.try_send(make(response)).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => {
                ChainError::Busy("the block index's read queue")
            }
            tokio::sync::mpsc::error::TrySendError::Closed(_) => ChainError::Stopped,
        })?;
        receiver.await.map_err(|_| ChainError::Stopped)
    }

    /// A finalized block's record as the index stored it (JSON).
    pub async fn block_json(&self, height: u64) -> Result<Option<String>, ChainError> {
        self.read(|response| Read::BlockJson { height, response }).await
    }

    /// A finalized block's record.
    pub async fn block(&self, height: u64) -> Result<Option<BlockRecord>, ChainError> {
        Ok(self.block_json(height).await?.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Where a finalized transaction is: (height, position).
    pub async fn tx_location(&self, id: Hash) -> Result<Option<(u64, u32)>, ChainError> {
        self.read(|response| Read::TxLocation { id, response }).await
    }
}

/// The index task's state. Create with [`BlockIndex::init`], run with [`BlockIndex::start`].
pub struct BlockIndex<E: Storage + Clock + Metrics + Spawner> {
    context: E,
    blocks: Option<Archive<E>>,
    txs: Option<TxIndex<E>>,
}

impl<E: Storage + Clock + Metrics + Spawner> BlockIndex<E> {
    /// Opens the archives under partitions named from `prefix`. Returns the index and the
    /// sequence number the next finalized transaction gets.
    pub async fn init(context: E, prefix: &str, page_cache: CacheRef) -> Result<(Self, u64), String> {
        let blocks = Archive::init(
            context.child("blocks_index"),
            archive_config(
                prefix,
                "index-blocks",
                page_cache.clone(),
                (commonware_codec::RangeCfg::new(0..=64 << 20), ()),
            ),
        )
        .await
        .map_err(|e| e.to_string())?;
        let txs = TxIndex::init(
            context.child("txs_index"),
            prunable::Config {
                translator: EightCap,
                metadata_partition: format!("{prefix}-tx-locations-metadata"),
                key_partition: format!("{prefix}-tx-locations-keys"),
                key_page_cache: page_cache,
                value_partition: format!("{prefix}-tx-locations-values"),
                compression: None,
                codec_config: (commonware_codec::RangeCfg::new(0..=TX_LOCATION_BYTES), ()),
                items_per_section: NZU64!(65_536),
                key_write_buffer: NZUsize!(1 << 20),
                value_write_buffer: NZUsize!(1 << 20),
                replay_buffer: NZUsize!(1 << 20),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let next_tx_seq = match blocks.last_index() {
            Some(h) => match blocks.get(Identifier::Index(h)).await.map_err(|e| e.to_string())? {
                Some(bytes) => {
                    let r: BlockRecord = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                    r.first_tx_seq + r.block.txs.len() as u64
                }
                None => 0,
            },
            None => 0,
        };
        Ok((Self { context, blocks: Some(blocks), txs: Some(txs) }, next_tx_seq))
    }

    /// Starts the index task; returns its handle. The task stops when every handle is gone.
    pub fn start(self) -> IndexHandle {
        let (writes, writes_rx) = mpsc::unbounded();
        let (reads, reads_rx) = tokio::sync::mpsc::channel(READ_QUEUE_CAPACITY);
        let context = self.context.child("index");
        context.spawn(move |_| self.run(writes_rx, reads_rx));
        IndexHandle { writes, reads }
    }

    async fn run(
        mut self,
        mut writes: mpsc::UnboundedReceiver<Write>,
        mut reads: tokio::sync::mpsc::Receiver<Read>,
    ) {
        loop {
            commonware_macros::select! {
                write = writes.next() => {
                    let Some(Write::Append(block, done)) = write else { return };
                    let _ = done.send(self.append(block).await);
                },
                read = reads.recv() => {
                    let Some(read) = read else { return };
                    self.read(read).await;
                },
            }
        }
    }

    async fn append(&mut self, block: Append) -> Result<(), String> {
        let mut txs = self.txs.take().expect("present between operations");
        for (i, id) in block.txs.iter().enumerate() {
            let mut loc = block.height.to_le_bytes().to_vec();
            loc.extend_from_slice(&(i as u32).to_le_bytes());
            txs = txs
                .put(block.first_tx_seq + i as u64, crate::block::to_digest(id), &loc)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.txs = Some(txs.sync().await.map_err(|e| e.to_string())?);
        let blocks = self.blocks.take().expect("present between operations");
        let json = block.json.as_bytes().to_vec();
        self.blocks =
            Some(blocks.put_sync(block.height, block.digest, &json).await.map_err(|e| e.to_string())?);
        Ok(())
    }

    async fn read(&self, read: Read) {
        match read {
            Read::BlockJson { height, response } => {
                let _ = response.send(self.block_json(height).await);
            }
            Read::TxLocation { id, response } => {
                let _ = response.send(self.tx_location(id).await);
            }
        }
    }

    async fn block_json(&self, height: u64) -> Option<String> {
        let bytes = self.blocks.as_ref()?.get(Identifier::Index(height)).await.ok()??;
        String::from_utf8(bytes).ok()
    }

    async fn tx_location(&self, id: Hash) -> Option<(u64, u32)> {
        let key = crate::block::to_digest(&id);
        let loc = self.txs.as_ref()?.get(Identifier::Key(&key)).await.ok()??;
        let height = u64::from_le_bytes(loc.get(..8)?.try_into().ok()?);
        let index = u32::from_le_bytes(loc.get(8..12)?.try_into().ok()?);
        Some((height, index))
    }
}
