//! The executor: the one task that owns the ledger state, the authenticated state database, the
//! block index and the mempool.
//!
//! Consensus asks it to build blocks (propose) and to check them (verify); both run the ledger
//! on top of the parent's *speculative* state, so blocks can be built on notarized but not yet
//! finalized parents. Each executed block keeps its ledger state (an O(1) clone) and its QMDB
//! batch, keyed by digest. When marshal delivers a finalized block, the executor writes the
//! block's record to the index, applies and commits the batch (durable), publishes the new
//! snapshot and events, and only then acknowledges — so an acknowledged block is on disk.
//! Everything goes through one mailbox, so there are no locks around state.

use crate::block::{ChainBlock, Ctx, derive_seed, to_account, to_digest, to_hash};
use crate::evidence::{self, EvidencePool};
use crate::mempool::{Limits, Mempool, MempoolError};
use crate::state_db::{self, Root, StateDb, TIP_KEY};
use agora_core::block::encoded_root;
use agora_core::{Block as LedgerBlock, BlockHeader, Hash, SignedTx};
use agora_ledger::{BlockBuilder, BlockInfo, BlockOutcome, Event, Genesis, Receipt, State, apply_block_with};
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::{Heightable, marshal::Update};
use commonware_cryptography::{Digested, Digestible, Sha256, ed25519, sha256};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::archive::{Archive as _, Identifier, immutable, prunable};
use commonware_storage::mmr;
use commonware_storage::qmdb::floor::Proportional;
use commonware_storage::translator::EightCap;
use commonware_utils::{Acknowledgement as _, NZU64, NZUsize, ordered::Set};
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tracing::{debug, info, warn};

/// A speculative QMDB batch: one block's writes on top of its parent's.
pub type Batch = commonware_storage::qmdb::current::batch::MerkleizedBatch<
    mmr::Family,
    sha256::Digest,
    commonware_storage::qmdb::any::ordered::variable::Update<state_db::Key, state_db::Value>,
    { state_db::CHUNK },
    Sequential,
>;

/// What the index stores per finalized block, and what subscribers receive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockRecord {
    /// Consensus digest of the block.
    pub digest: Hash,
    /// The ledger block.
    pub block: LedgerBlock,
    /// Authenticated state root after this block (it appears in the next header).
    pub state_root: Hash,
    /// One receipt per transaction.
    pub receipts: Vec<Receipt>,
    /// Events not caused by a transaction (timers, clearing, evidence).
    pub events: Vec<Event>,
    /// Global sequence number of the block's first transaction.
    pub first_tx_seq: u64,
}

impl BlockRecord {
    /// Every event of the block in order: transaction events first, then block events.
    pub fn all_events(&self) -> impl Iterator<Item = &Event> {
        self.receipts.iter().flat_map(|r| r.events.iter()).chain(self.events.iter())
    }
}

/// The finalized state as readers see it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Height of the last finalized block.
    pub height: u64,
    /// Its digest.
    pub digest: Hash,
    /// Its timestamp.
    pub timestamp_ms: u64,
    /// Authenticated root after it.
    pub root: Hash,
    /// The ledger state after it.
    pub state: State,
}

/// Where a transaction is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum TxStatus {
    /// Waiting in this node's mempool.
    Pending,
    /// In a finalized block.
    Finalized {
        /// Block height.
        height: u64,
        /// Position in the block.
        index: u32,
        /// Its receipt.
        receipt: Receipt,
    },
    /// Not known to this node.
    Unknown,
}

/// A state proof: the current value (or absence) of a ledger key at a finalized height. The
/// root is the state after block `height`; it appears as `state_root` in block `height + 1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateProof {
    /// Height the proof is for.
    pub height: u64,
    /// Root it verifies against.
    pub root: Hash,
    /// The ledger key (hex in JSON).
    #[serde(with = "hex_bytes")]
    pub key: Vec<u8>,
    /// The value, if present.
    #[serde(with = "opt_hex_bytes")]
    pub value: Option<Vec<u8>>,
    /// Encoded QMDB proof (a value proof if `value` is set, else an absence proof).
    #[serde(with = "hex_bytes")]
    pub proof: Vec<u8>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod opt_hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| hex::decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl StateProof {
    /// Verifies the proof against `root` (taken from a finalized header by the caller).
    pub fn verify(&self, root: &Hash) -> bool {
        use commonware_codec::Decode as _;
        let r = to_digest(root);
        let bytes = bytes::Bytes::copy_from_slice(&self.proof);
        if self.root != *root {
            return false;
        }
        match &self.value {
            Some(v) => state_db::ValueProof::decode_cfg(bytes.clone(), &(state_db::MAX_PROOF_DIGESTS, ()))
                .is_ok_and(|p| state_db::verify_value(&r, &self.key, v, &p)),
            None => state_db::AbsenceProof::decode_cfg(bytes, &state_db::absence_proof_cfg())
                .is_ok_and(|p| state_db::verify_absent(&r, &self.key, &p)),
        }
    }
}

/// A request to the executor.
pub enum Message {
    /// Build a block on `ancestry[0]` (ancestry: parent first, back to the last finalized).
    Propose {
        /// Consensus context for the new block.
        context: Ctx,
        /// Unfinalized ancestors, newest first.
        ancestry: Vec<Digested<ChainBlock>>,
        /// Proposer's clock, unix ms.
        now_ms: u64,
        /// The block, or `None` to skip the slot.
        response: oneshot::Sender<Option<ChainBlock>>,
    },
    /// Check `ancestry[0]` (ancestry: the block first, then its unfinalized ancestors).
    Verify {
        /// Consensus context the block claims.
        context: Ctx,
        /// The block, then its unfinalized ancestors, newest first.
        ancestry: Vec<Digested<ChainBlock>>,
        /// Whether it is valid.
        response: oneshot::Sender<bool>,
    },
    /// A finalized block from marshal (acknowledge once durable).
    Finalized(Update<ChainBlock>),
    /// A transaction from a client (`reply`) or a peer (no reply, not re-gossiped).
    Submit {
        /// The transaction.
        tx: SignedTx,
        /// Where to send the result, for local submissions (which are then gossiped).
        reply: Option<oneshot::Sender<Result<Hash, MempoolError>>>,
    },
    /// Many transactions from a client: each is admitted or refused on its own; admitted ones
    /// are gossiped.
    SubmitBatch {
        /// The transactions.
        txs: Vec<SignedTx>,
        /// One result per transaction, in order.
        reply: oneshot::Sender<Vec<Result<Hash, MempoolError>>>,
    },
    /// Look up a finalized block by height.
    Block {
        /// Height.
        height: u64,
        /// The record.
        response: oneshot::Sender<Option<BlockRecord>>,
    },
    /// Look up a finalized block by height, as the JSON its record is stored as.
    BlockJson {
        /// Height.
        height: u64,
        /// The record's JSON.
        response: oneshot::Sender<Option<String>>,
    },
    /// Look up a transaction.
    Tx {
        /// Transaction id.
        id: Hash,
        /// Its status.
        response: oneshot::Sender<TxStatus>,
    },
    /// Prove a ledger key at the latest finalized height.
    Prove {
        /// Ledger key.
        key: Vec<u8>,
        /// The proof, or an error message.
        response: oneshot::Sender<Result<StateProof, String>>,
    },
    /// Mempool size.
    MempoolSize {
        /// (transactions, bytes).
        response: oneshot::Sender<(usize, usize)>,
    },
}

/// What readers share with the executor: the latest snapshot and a stream of finalized blocks.
#[derive(Clone)]
pub struct Shared {
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    finalized_height: Arc<AtomicU64>,
    events: tokio::sync::broadcast::Sender<Arc<Published>>,
}

/// A finalized block as subscribers receive it: the record, and the JSON the index stored for
/// it, so event streams send it without encoding it again.
#[derive(Debug)]
pub struct Published {
    /// The block, its receipts and events.
    pub record: BlockRecord,
    /// `record` as JSON (one line).
    pub json: Arc<str>,
}

impl Shared {
    fn new(snapshot: Snapshot) -> Self {
        let height = snapshot.height;
        Self {
            snapshot: Arc::new(RwLock::new(Arc::new(snapshot))),
            finalized_height: Arc::new(AtomicU64::new(height)),
            events: tokio::sync::broadcast::channel(1024).0,
        }
    }

    /// The latest finalized snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().expect("not poisoned").clone()
    }

    /// Height of the last finalized block.
    pub fn finalized_height(&self) -> u64 {
        self.finalized_height.load(Ordering::Acquire)
    }

    /// Finalized blocks as they are applied.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Published>> {
        self.events.subscribe()
    }

    fn publish(&self, snapshot: Snapshot, record: Arc<Published>) {
        let height = snapshot.height;
        *self.snapshot.write().expect("not poisoned") = Arc::new(snapshot);
        self.finalized_height.store(height, Ordering::Release);
        // No subscribers is fine.
        let _ = self.events.send(record);
    }
}

/// Executor settings.
#[derive(Clone)]
pub struct ExecutorConfig {
    /// Chain genesis (builds the state on first start).
    pub genesis: Genesis,
    /// Storage partition prefix.
    pub prefix: String,
    /// Shared page cache.
    pub page_cache: CacheRef,
    /// Mempool bounds.
    pub mempool: Limits,
    /// Most transactions per block.
    pub max_block_txs: usize,
    /// Most encoded transaction bytes per block.
    pub max_block_bytes: usize,
    /// Signature namespace of consensus.
    pub namespace: Vec<u8>,
}

/// The consensus committee the ledger `state` holds (of the epoch its next block belongs to).
pub fn committee_of(state: &State) -> Set<ed25519::PublicKey> {
    Set::from_iter_dedup(state.meta().committee.iter().filter_map(crate::block::consensus_public_key))
}

/// What a block at `height` whose result is `state` must carry as its next committee: the
/// elected committee if it is the last block of an epoch, nothing otherwise.
pub fn next_committee_after(state: &State, height: u64) -> Vec<ed25519::PublicKey> {
    if (height + 1).is_multiple_of(state.params().blocks_per_epoch()) {
        committee_of(state).into_iter().collect()
    } else {
        vec![]
    }
}

/// The (transaction, signature) pairs this node has verified, so blocks re-check no signature
/// the mempool already checked. Bounded: the oldest entries are forgotten first.
#[derive(Default)]
struct SigCache {
    seen: std::collections::HashSet<Hash>,
    order: std::collections::VecDeque<Hash>,
}

impl SigCache {
    const CAPACITY: usize = 200_000;

    fn key(tx: &SignedTx) -> Hash {
        Hash::tagged("agora/verified-tx", &[&tx.id().0, &tx.signature.0])
    }

    fn insert(&mut self, tx: &SignedTx) {
        let k = Self::key(tx);
        if self.seen.insert(k) {
            self.order.push_back(k);
            if self.order.len() > Self::CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }

    fn contains(&self, tx: &SignedTx) -> bool {
        self.seen.contains(&Self::key(tx))
    }
}

/// One executed, unfinalized block.
struct Executed {
    height: u64,
    state: State,
    batch: Arc<Batch>,
    root: Root,
    outcome: Arc<BlockOutcome>,
    block: ChainBlock,
}

/// The last finalized block and its state.
struct Tip {
    height: u64,
    digest: sha256::Digest,
    timestamp_ms: u64,
    state: State,
    root: Root,
}

type Archive<E> = immutable::Archive<E, sha256::Digest, Vec<u8>>;

/// Transaction id → (height, position) of every finalized transaction. A prunable archive
/// keeps its key index in memory (about 20 bytes per transaction, rebuilt from its journal at
/// start), so indexing a transaction is a buffered append. The freezer behind an immutable
/// archive reads and rewrites an on-disk table slot per key instead: two blocking I/O calls per
/// transaction, which made indexing the costliest step of finalizing a full block.
type TxIndex<E> = prunable::Archive<EightCap, E, sha256::Digest, Vec<u8>>;

/// Bytes of a transaction's location: height (u64) and position in the block (u32).
const TX_LOCATION_BYTES: usize = 12;

/// The executor actor. Create with [`Executor::init`], run with [`Executor::run`].
pub struct Executor<E: Storage + Clock + Metrics + Spawner + CryptoRng> {
    context: E,
    config: ExecutorConfig,
    db: Option<StateDb<E>>,
    blocks: Option<Archive<E>>,
    txs: Option<TxIndex<E>>,
    tip: Tip,
    next_tx_seq: u64,
    pending: HashMap<sha256::Digest, Executed>,
    mempool: Mempool,
    verified: SigCache,
    evidence: EvidencePool,
    shared: Shared,
    gossip: mpsc::UnboundedSender<SignedTx>,
}

fn archive_config(
    prefix: &str,
    name: &str,
    page_cache: CacheRef,
) -> immutable::Config<(commonware_codec::RangeCfg<usize>, ())> {
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-freezer-table"),
        freezer_table_initial_size: 1024,
        freezer_table_resize_frequency: 4,
        freezer_table_resize_chunk_size: 1024,
        freezer_key_partition: format!("{prefix}-{name}-freezer-key"),
        freezer_key_page_cache: page_cache,
        freezer_value_partition: format!("{prefix}-{name}-freezer-value"),
        freezer_value_target_size: 64 * 1024 * 1024,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        items_per_section: NZU64!(1024),
        freezer_key_write_buffer: NZUsize!(64 * 1024),
        freezer_value_write_buffer: NZUsize!(64 * 1024),
        ordinal_write_buffer: NZUsize!(64 * 1024),
        replay_buffer: NZUsize!(1024 * 1024),
        codec_config: (commonware_codec::RangeCfg::new(0..=64 << 20), ()),
    }
}

/// Why the executor could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The state database failed.
    #[error("state database: {0}")]
    State(String),
    /// An archive failed.
    #[error("block index: {0}")]
    Index(String),
    /// Genesis is invalid.
    #[error("genesis: {0}")]
    Genesis(#[from] agora_ledger::genesis::GenesisError),
    /// Stored state is inconsistent.
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
}

impl<E: Storage + Clock + Metrics + Spawner + CryptoRng> Executor<E> {
    /// Opens storage, creating the genesis state on first start or rebuilding the finalized
    /// state from the database after a restart.
    pub async fn init(
        context: E,
        config: ExecutorConfig,
        evidence: EvidencePool,
        gossip: mpsc::UnboundedSender<SignedTx>,
    ) -> Result<Self, InitError> {
        let db = state_db::open(context.child("state"), &config.prefix, config.page_cache.clone())
            .await
            .map_err(|e| InitError::State(e.to_string()))?;
        let blocks = Archive::init(
            context.child("blocks_index"),
            archive_config(&config.prefix, "index-blocks", config.page_cache.clone()),
        )
        .await
        .map_err(|e| InitError::Index(e.to_string()))?;
        let txs = TxIndex::init(
            context.child("txs_index"),
            prunable::Config {
                translator: EightCap,
                metadata_partition: format!("{}-tx-locations-metadata", config.prefix),
                key_partition: format!("{}-tx-locations-keys", config.prefix),
                key_page_cache: config.page_cache.clone(),
                value_partition: format!("{}-tx-locations-values", config.prefix),
                compression: None,
                codec_config: (commonware_codec::RangeCfg::new(0..=TX_LOCATION_BYTES), ()),
                items_per_section: NZU64!(65_536),
                key_write_buffer: NZUsize!(1 << 20),
                value_write_buffer: NZUsize!(1 << 20),
                replay_buffer: NZUsize!(1 << 20),
            },
        )
        .await
        .map_err(|e| InitError::Index(e.to_string()))?;
        // Rebuild the ledger state from every current entry.
        let mut entries = Vec::new();
        let mut tip_entry = None;
        {
            let mut stream = Box::pin(db.stream_range(..));
            while let Some(item) = stream.next().await {
                let (_, stored) = item.map_err(|e| InitError::State(e.to_string()))?;
                let (k, v) =
                    state_db::unframe(&stored).ok_or_else(|| InitError::Corrupt("unframed value".into()))?;
                if k == TIP_KEY {
                    tip_entry = state_db::parse_tip(v);
                } else {
                    entries.push((k.to_vec(), v.to_vec()));
                }
            }
        }
        let genesis_block = ChainBlock::genesis(&config.genesis.chain_id, config.genesis.genesis_time_ms);
        let (db, tip) = match tip_entry {
            Some((height, digest)) => {
                let state = State::from_entries(entries).map_err(|e| InitError::Corrupt(e.to_string()))?;
                let root = db.root();
                let timestamp_ms = state.meta().timestamp_ms;
                info!(height, "restored finalized state");
                (db, Tip { height, digest, timestamp_ms, state, root })
            }
            None => {
                let mut state = config.genesis.build()?;
                let writes = state.take_writes();
                let digest = genesis_block.digest();
                let mut batch = db.new_batch();
                for (k, v) in &writes {
                    batch = batch.write(state_db::db_key(k), v.as_ref().map(|v| state_db::frame(k, v)));
                }
                batch = batch.write(
                    state_db::db_key(TIP_KEY),
                    Some(state_db::frame(TIP_KEY, &state_db::tip_value(0, &digest))),
                );
                let merkleized = batch
                    .merkleize(&db, None, &mut Proportional)
                    .await
                    .map_err(|e| InitError::State(e.to_string()))?;
                let db = db.apply_batch(merkleized).await.map_err(|e| InitError::State(e.to_string()))?;
                let db = db.commit().await.map_err(|e| InitError::State(e.to_string()))?;
                let root = db.root();
                info!(root = %state_db::root_hash(&root), "created genesis state");
                let timestamp_ms = config.genesis.genesis_time_ms;
                (db, Tip { height: 0, digest, timestamp_ms, state, root })
            }
        };
        let next_tx_seq = match blocks.last_index() {
            Some(h) => {
                match blocks.get(Identifier::Index(h)).await.map_err(|e| InitError::Index(e.to_string()))? {
                    Some(bytes) => {
                        let r: BlockRecord =
                            serde_json::from_slice(&bytes).map_err(|e| InitError::Corrupt(e.to_string()))?;
                        r.first_tx_seq + r.block.txs.len() as u64
                    }
                    None => 0,
                }
            }
            None => 0,
        };
        let shared = Shared::new(Snapshot {
            height: tip.height,
            digest: to_hash(&tip.digest),
            timestamp_ms: tip.timestamp_ms,
            root: state_db::root_hash(&tip.root),
            state: tip.state.clone(),
        });
        Ok(Self {
            context,
            mempool: Mempool::new(config.mempool),
            verified: SigCache::default(),
            config,
            db: Some(db),
            blocks: Some(blocks),
            txs: Some(txs),
            tip,
            next_tx_seq,
            pending: HashMap::new(),
            evidence,
            shared,
            gossip,
        })
    }

    /// The genesis block consensus starts from.
    pub fn genesis(&self) -> ChainBlock {
        ChainBlock::genesis(&self.config.genesis.chain_id, self.config.genesis.genesis_time_ms)
    }

    /// Height of the last finalized block this executor has applied.
    pub fn finalized_height(&self) -> u64 {
        self.tip.height
    }

    /// What readers share.
    pub fn shared(&self) -> Shared {
        self.shared.clone()
    }

    fn db(&self) -> &StateDb<E> {
        self.db.as_ref().expect("database handle is always restored")
    }

    /// The state and root a child of `digest` builds on, if known.
    fn parent_view(&self, digest: &sha256::Digest) -> Option<(u64, &State, Root, u64)> {
        if *digest == self.tip.digest {
            return Some((self.tip.height, &self.tip.state, self.tip.root, self.tip.timestamp_ms));
        }
        self.pending.get(digest).map(|e| (e.height, &e.state, e.root, e.block.block.header.timestamp_ms))
    }

    /// Stages the QMDB batch for an executed block and records it as pending.
    async fn stage(
        &mut self,
        block: ChainBlock,
        digest: sha256::Digest,
        state: State,
        outcome: BlockOutcome,
    ) -> Result<(), String> {
        let height = block.block.header.height;
        let parent = to_digest(&block.block.header.parent);
        let db = self.db.as_ref().expect("present");
        let mut batch = if parent == self.tip.digest {
            db.new_batch()
        } else {
            self.pending.get(&parent).ok_or("parent not executed")?.batch.new_batch::<Sha256>()
        };
        for (k, v) in &outcome.writes {
            batch = batch.write(state_db::db_key(k), v.as_ref().map(|v| state_db::frame(k, v)));
        }
        batch = batch.write(
            state_db::db_key(TIP_KEY),
            Some(state_db::frame(TIP_KEY, &state_db::tip_value(height, &digest))),
        );
        let merkleized = batch.merkleize(db, None, &mut Proportional).await.map_err(|e| e.to_string())?;
        let root = merkleized.root();
        self.pending.insert(
            digest,
            Executed { height, state, batch: merkleized, root, outcome: Arc::new(outcome), block },
        );
        Ok(())
    }

    /// Executes the unfinalized ancestors in `chain` (newest first) that are not yet known,
    /// oldest first. Returns false if one of them is invalid or does not connect.
    async fn catch_up(&mut self, chain: &[Digested<ChainBlock>]) -> bool {
        for b in chain.iter().rev() {
            let digest = b.digest();
            if digest == self.tip.digest
                || self.pending.contains_key(&digest)
                || b.height().get() <= self.tip.height
            {
                continue;
            }
            if !self.check_and_execute(b.inner().clone(), digest).await {
                return false;
            }
        }
        true
    }

    /// Full validity check of a block whose parent is executed, then stages it.
    async fn check_and_execute(&mut self, block: ChainBlock, digest: sha256::Digest) -> bool {
        let parent_digest = to_digest(&block.block.header.parent);
        let Some((parent_height, parent_state, parent_root, parent_ts)) =
            self.parent_view(&parent_digest).map(|(h, s, r, t)| (h, s.clone(), r, t))
        else {
            warn!(height = block.block.header.height, "parent unknown");
            return false;
        };
        let h = &block.block.header;
        let problems = [
            (h.height != parent_height + 1, "height does not follow the parent"),
            (block.context.parent.1 != parent_digest, "context parent differs from header parent"),
            (h.timestamp_ms < parent_ts, "timestamp before the parent's"),
            (h.proposer != to_account(&block.context.leader), "proposer is not the round's leader"),
            (
                h.seed != derive_seed(&parent_digest, &block.context),
                "seed is not derived from consensus data",
            ),
            (h.state_root != state_db::root_hash(&parent_root), "state root is not the parent's result"),
        ];
        if let Some((_, why)) = problems.iter().find(|(bad, _)| *bad) {
            warn!(height = h.height, why, "rejecting block");
            return false;
        }
        if block.context.round.epoch().get() != parent_state.meta().epoch {
            warn!(height = h.height, "rejecting block proposed in another epoch than the ledger's");
            return false;
        }
        if !block.block.evidence.is_empty() {
            let committee = committee_of(&parent_state);
            let scheme = Scheme::verifier(&self.config.namespace, committee.clone());
            for m in &block.block.evidence {
                if m.epoch != parent_state.meta().epoch
                    || !evidence::verify(m, &scheme, &committee, &mut self.context)
                {
                    warn!(height = h.height, "rejecting block with invalid evidence");
                    return false;
                }
            }
        }
        match apply_block_with(&parent_state, &block.block, |tx| self.verified.contains(tx)) {
            Ok((state, _)) if block.next_committee != next_committee_after(&state, h.height) => {
                warn!(height = h.height, "rejecting block whose next committee is not the ledger's");
                false
            }
            Ok((state, outcome)) => match self.stage(block, digest, state, outcome).await {
                Ok(()) => true,
                Err(e) => {
                    warn!(error = %e, "cannot stage block");
                    false
                }
            },
            Err(e) => {
                warn!(height = h.height, error = %e, "rejecting block");
                false
            }
        }
    }

    async fn propose(
        &mut self,
        context: Ctx,
        ancestry: Vec<Digested<ChainBlock>>,
        now_ms: u64,
    ) -> Option<ChainBlock> {
        if !self.catch_up(&ancestry).await {
            return None;
        }
        let parent_digest = context.parent.1;
        let (parent_height, parent_state, parent_root, parent_ts) = self.parent_view(&parent_digest)?;
        let parent_state = parent_state.clone();
        let height = parent_height + 1;
        let info = BlockInfo {
            height,
            timestamp_ms: now_ms.max(parent_ts),
            proposer: to_account(&context.leader),
            seed: derive_seed(&parent_digest, &context),
        };
        let mut builder = BlockBuilder::new(&parent_state, info.clone()).ok()?;
        for tx in self.mempool.select(&parent_state, self.config.max_block_txs, self.config.max_block_bytes) {
            // A transaction that no longer fits (e.g. its sender's balance changed in an
            // unfinalized ancestor) is skipped, not dropped: it may fit on another fork.
            let _ = builder.push_with(&tx, !self.verified.contains(&tx));
        }
        let evidence: Vec<_> = self
            .evidence
            .take(agora_core::block::MAX_BLOCK_EVIDENCE)
            .into_iter()
            // Evidence is judged against the committee of the epoch it happened in; the ledger
            // only knows the current one, so older evidence is dropped.
            .filter(|m| parent_state.validator(&m.offender).is_some() && m.epoch == parent_state.meta().epoch)
            .collect();
        let (tx_root, evidence_root) = builder.roots(&evidence);
        let txs = builder.txs().to_vec();
        let (state, outcome) = builder.finish(&evidence).ok()?;
        let header = BlockHeader {
            height,
            parent: to_hash(&parent_digest),
            timestamp_ms: info.timestamp_ms,
            proposer: info.proposer,
            seed: info.seed,
            tx_root,
            evidence_root,
            state_root: state_db::root_hash(&parent_root),
        };
        debug_assert_eq!(tx_root, encoded_root(&txs));
        let next_committee = next_committee_after(&state, height);
        let block = ChainBlock { context, block: LedgerBlock { header, txs, evidence }, next_committee };
        let digest = block.digest();
        debug!(height, txs = block.block.txs.len(), "proposing");
        self.stage(block.clone(), digest, state, outcome).await.ok()?;
        Some(block)
    }

    async fn verify(&mut self, context: Ctx, ancestry: Vec<Digested<ChainBlock>>) -> bool {
        let Some(block) = ancestry.first() else { return false };
        if block.inner().context != context {
            return false;
        }
        let digest = block.digest();
        if self.pending.contains_key(&digest) {
            return true; // our own proposal, or verified before
        }
        self.catch_up(&ancestry[1..]).await && self.check_and_execute(block.inner().clone(), digest).await
    }

    /// Applies a finalized block durably, then acknowledges it.
    async fn finalize(&mut self, block: Digested<ChainBlock>) -> Result<(), String> {
        let height = block.height().get();
        let digest = block.digest();
        if height <= self.tip.height {
            return Ok(()); // at-least-once delivery after a restart
        }
        if height != self.tip.height + 1 || to_digest(&block.inner().block.header.parent) != self.tip.digest {
            return Err(format!(
                "finalized block {height} does not extend the finalized tip {}",
                self.tip.height
            ));
        }
        if !self.pending.contains_key(&digest) && !self.check_and_execute(block.inner().clone(), digest).await
        {
            return Err(format!("finalized block {height} is invalid here: this node's state has diverged"));
        }
        let executed = self.pending.remove(&digest).expect("executed above");
        // 1. Index (idempotent, keyed by height), so receipts exist before state moves on.
        let record = BlockRecord {
            digest: to_hash(&digest),
            block: executed.block.block.clone(),
            state_root: state_db::root_hash(&executed.root),
            receipts: executed.outcome.receipts.clone(),
            events: executed.outcome.events.clone(),
            first_tx_seq: self.next_tx_seq,
        };
        let json = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        let mut txs = self.txs.take().expect("present");
        for (i, tx) in record.block.txs.iter().enumerate() {
            let mut loc = height.to_le_bytes().to_vec();
            loc.extend_from_slice(&(i as u32).to_le_bytes());
            txs = txs
                .put(self.next_tx_seq + i as u64, to_digest(&tx.id()), &loc)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.txs = Some(txs.sync().await.map_err(|e| e.to_string())?);
        let blocks = self.blocks.take().expect("present");
        self.blocks = Some(blocks.put_sync(height, digest, &json).await.map_err(|e| e.to_string())?);
        // 2. State: apply and commit the staged batch (durable).
        let db = self.db.take().expect("present");
        let db = db.apply_batch(executed.batch.clone()).await.map_err(|e| e.to_string())?;
        self.db = Some(db.commit().await.map_err(|e| e.to_string())?);
        // 3. Move the tip, forget forks at or below it, tidy the pools.
        self.next_tx_seq += record.block.txs.len() as u64;
        self.tip = Tip {
            height,
            digest,
            timestamp_ms: record.block.header.timestamp_ms,
            state: executed.state.clone(),
            root: executed.root,
        };
        self.pending.retain(|_, e| e.height > height);
        for tx in &record.block.txs {
            self.mempool.remove(&tx.id());
        }
        self.mempool.prune(&self.tip.state);
        self.evidence.remove_included(&record.block.evidence);
        self.shared.publish(
            Snapshot {
                height,
                digest: record.digest,
                timestamp_ms: record.block.header.timestamp_ms,
                root: record.state_root,
                state: executed.state,
            },
            Arc::new(Published { record, json: String::from_utf8(json).expect("JSON is UTF-8").into() }),
        );
        debug!(height, "finalized");
        Ok(())
    }

    fn submit(&mut self, tx: SignedTx) -> Result<Hash, MempoolError> {
        let id = self.mempool.insert(tx.clone(), &self.tip.state)?;
        // The mempool verified the signature to admit it.
        self.verified.insert(&tx);
        Ok(id)
    }

    /// A finalized block's record as the index stored it (JSON).
    async fn block_json(&self, height: u64) -> Option<String> {
        let bytes = self.blocks.as_ref()?.get(Identifier::Index(height)).await.ok()??;
        String::from_utf8(bytes).ok()
    }

    async fn block_record(&self, height: u64) -> Option<BlockRecord> {
        serde_json::from_str(&self.block_json(height).await?).ok()
    }

    async fn tx_status(&self, id: Hash) -> TxStatus {
        if self.mempool.contains(&id) {
            return TxStatus::Pending;
        }
        let key = to_digest(&id);
        let Ok(Some(loc)) = self.txs.as_ref().expect("present").get(Identifier::Key(&key)).await else {
            return TxStatus::Unknown;
        };
        let (Ok(h), Ok(i)) =
            (loc[..8].try_into().map(u64::from_le_bytes), loc[8..12].try_into().map(u32::from_le_bytes))
        else {
            return TxStatus::Unknown;
        };
        match self.block_record(h).await {
            Some(r) => match r.receipts.get(i as usize) {
                Some(receipt) => TxStatus::Finalized { height: h, index: i, receipt: receipt.clone() },
                None => TxStatus::Unknown,
            },
            None => TxStatus::Unknown,
        }
    }

    async fn prove(&self, key: Vec<u8>) -> Result<StateProof, String> {
        use commonware_codec::Encode as _;
        if key.first() == Some(&TIP_KEY[0]) || key.is_empty() {
            return Err("not a ledger key".into());
        }
        let db = self.db();
        let k = state_db::db_key(&key);
        let value = match db.get(&k).await.map_err(|e| e.to_string())? {
            Some(stored) => Some(state_db::unframe(&stored).ok_or("stored value is malformed")?.1.to_vec()),
            None => None,
        };
        let proof = match &value {
            Some(_) => db.key_value_proof(k).await.map_err(|e| e.to_string())?.encode().to_vec(),
            None => db.exclusion_proof(&k).await.map_err(|e| e.to_string())?.encode().to_vec(),
        };
        Ok(StateProof {
            height: self.tip.height,
            root: state_db::root_hash(&self.tip.root),
            key,
            value,
            proof,
        })
    }

    /// Serves messages until every sender is gone. If marshal's processed height (`replay`) is
    /// ahead of the applied state — a crash after marshal recorded a block but before our
    /// state did, or a lost state directory — the missing blocks are first re-applied from
    /// marshal's archive.
    pub async fn run(
        mut self,
        mut mailbox: mpsc::UnboundedReceiver<Message>,
        replay: Option<(crate::validator::Marshal, u64)>,
    ) {
        if let Some((marshal, processed)) = replay {
            for h in self.tip.height + 1..=processed {
                let Some(block) = marshal.get_block(commonware_consensus::types::Height::new(h)).await else {
                    tracing::error!(height = h, "marshal lacks a block it processed; stopping");
                    return;
                };
                if let Err(e) = self.finalize(block).await {
                    tracing::error!(height = h, error = %e, "cannot replay a finalized block; stopping");
                    return;
                }
                info!(height = h, "replayed finalized block from marshal");
            }
        }
        while let Some(message) = mailbox.next().await {
            match message {
                Message::Propose { context, ancestry, now_ms, response } => {
                    let block = self.propose(context, ancestry, now_ms).await;
                    let _ = response.send(block);
                }
                Message::Verify { context, ancestry, response } => {
                    let valid = self.verify(context, ancestry).await;
                    let _ = response.send(valid);
                }
                Message::Finalized(Update::Tip(..)) => {}
                Message::Finalized(Update::Block(block, ack)) => {
                    if let Err(e) = self.finalize(block).await {
                        // Acknowledging would tell marshal the block is applied; it is not. Stop
                        // here: the operator must restart (and the block is redelivered).
                        tracing::error!(error = %e, "cannot apply a finalized block; stopping the executor");
                        return;
                    }
                    ack.acknowledge();
                }
                Message::Submit { tx, reply } => {
                    let result = self.submit(tx.clone());
                    match reply {
                        Some(reply) => {
                            if result.is_ok() {
                                let _ = self.gossip.unbounded_send(tx);
                            }
                            let _ = reply.send(result);
                        }
                        None => {
                            if let Err(e) = result {
                                debug!(error = %e, "dropping gossiped transaction");
                            }
                        }
                    }
                }
                Message::SubmitBatch { txs, reply } => {
                    let results = txs
                        .into_iter()
                        .map(|tx| {
                            let r = self.submit(tx.clone());
                            if r.is_ok() {
                                let _ = self.gossip.unbounded_send(tx);
                            }
                            r
                        })
                        .collect();
                    let _ = reply.send(results);
                }
                Message::Block { height, response } => {
                    let _ = response.send(self.block_record(height).await);
                }
                Message::BlockJson { height, response } => {
                    let _ = response.send(self.block_json(height).await);
                }
                Message::Tx { id, response } => {
                    let _ = response.send(self.tx_status(id).await);
                }
                Message::Prove { key, response } => {
                    let _ = response.send(self.prove(key).await);
                }
                Message::MempoolSize { response } => {
                    let _ = response.send((self.mempool.len(), self.mempool.bytes()));
                }
            }
        }
    }
}

/// A cheap handle to the executor for other tasks. Unbounded, because marshal's reporter must
/// never block; every producer is itself bounded (consensus rounds, HTTP requests, p2p quotas).
#[derive(Clone)]
pub struct ExecutorMailbox {
    sender: mpsc::UnboundedSender<Message>,
}

impl ExecutorMailbox {
    /// A mailbox and the receiver the executor runs on.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Message>) {
        let (sender, receiver) = mpsc::unbounded();
        (Self { sender }, receiver)
    }

    /// Sends a message; false if the executor has stopped.
    pub fn send(&self, message: Message) -> bool {
        self.sender.unbounded_send(message).is_ok()
    }

    /// Sends a request and waits for its answer; `None` if the executor has stopped.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Message) -> Option<T> {
        let (response, receiver) = oneshot::channel();
        if !self.send(make(response)) {
            return None;
        }
        receiver.await.ok()
    }
}
