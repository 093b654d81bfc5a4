//! The executor: the one task that owns the ledger state, the authenticated state database and
//! the mempool, and the only one consensus waits on.
//!
//! Consensus asks it to build blocks (propose) and to check them (verify); both run the ledger
//! on top of the parent's *speculative* state, so blocks can be built on notarized but not yet
//! finalized parents. Each executed block keeps its ledger state (an O(1) clone) and its QMDB
//! batch, keyed by digest. When marshal delivers a finalized block, the executor has the
//! [block index](crate::index) store its record, applies and commits the batch (durable),
//! publishes the new snapshot and events, and only then acknowledges — so an acknowledged
//! block is on disk.
//!
//! Reads never reach it: snapshots, events and the mempool's size are published in [`Shared`],
//! blocks and transactions are served by the index task. What clients may still ask it
//! (admitting transactions whose signatures were checked elsewhere, pending look-ups, state
//! proofs) arrives on a bounded lane that it serves only between consensus requests
//! ([`crate::mailbox`]).

use crate::beacon;
use crate::block::{ChainBlock, Ctx, missed_leaders, to_account, to_digest, to_hash};
use crate::evidence::{self, EvidencePool};
use crate::index::{Append, BlockIndex, IndexHandle};
use crate::mailbox::{Client, Consensus, Lanes, Proposed};
use crate::mempool::{Limits, Mempool, MempoolError, VerifiedTx};
use crate::records::{BlockRecord, Published, Snapshot, StateProof};
use crate::state_db::{self, Root, StateDb, TIP_KEY};
use agora_core::block::encoded_root;
use agora_core::{Block as LedgerBlock, BlockHeader, Hash, SignedTx};
use agora_ledger::{BlockBuilder, BlockInfo, BlockOutcome, ConsensusFacts, Genesis, State, apply_block_with};
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::{Heightable, marshal::Update};
use commonware_cryptography::{Digested, Digestible, Sha256, ed25519, sha256};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::mmr;
use commonware_storage::qmdb::floor::Proportional;
use commonware_utils::{Acknowledgement as _, ordered::Set};
use futures::StreamExt;
use rand_core::CryptoRng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// What readers share with the executor, none of which needs the executor to answer: the
/// latest snapshot, a stream of finalized blocks, the block index and the mempool's size.
#[derive(Clone)]
pub struct Shared {
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    finalized_height: Arc<AtomicU64>,
    events: tokio::sync::broadcast::Sender<Arc<Published>>,
    index: IndexHandle,
    mempool: Arc<(AtomicUsize, AtomicUsize)>,
    /// Transactions the mempool had admitted at the last publication, and who waits for more.
    arrivals: Arc<(AtomicU64, tokio::sync::Notify)>,
}

impl Shared {
    fn new(snapshot: Snapshot, index: IndexHandle) -> Self {
        let height = snapshot.height;
        Self {
            snapshot: Arc::new(RwLock::new(Arc::new(snapshot))),
            finalized_height: Arc::new(AtomicU64::new(height)),
            events: tokio::sync::broadcast::channel(1024).0,
            index,
            mempool: Arc::default(),
            arrivals: Arc::default(),
        }
    }

    /// The finalized block and transaction index.
    pub fn index(&self) -> &IndexHandle {
        &self.index
    }

    /// Mempool size as of the executor's last change to it: (transactions, bytes).
    pub fn mempool_size(&self) -> (usize, usize) {
        (self.mempool.0.load(Ordering::Relaxed), self.mempool.1.load(Ordering::Relaxed))
    }

    fn set_mempool_size(&self, pool: &Mempool) {
        self.mempool.0.store(pool.len(), Ordering::Relaxed);
        self.mempool.1.store(pool.bytes(), Ordering::Relaxed);
        // Only an admission can turn an empty block into a full one: reads, refusals and
        // removals wake nobody, so a flood of them costs a waiting proposer no rebuilds.
        if self.arrivals.0.swap(pool.admitted(), Ordering::Relaxed) != pool.admitted() {
            self.arrivals.1.notify_waiters();
        }
    }

    /// A future that completes at the next publication after the mempool admitted a
    /// transaction. It counts from when it is first polled or
    /// [`tokio::sync::futures::Notified::enable`]d, so enable it before asking for a block and
    /// no arrival is missed.
    pub fn arrival(&self) -> tokio::sync::futures::Notified<'_> {
        self.arrivals.1.notified()
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
    /// This validator's beacon key (its secrets are derived from it; see [`beacon::secret`]).
    pub beacon_key: [u8; 32],
    /// Least time, ms, between a block with nothing in it and its parent (see
    /// [`crate::Timing::empty_block_interval`]).
    pub empty_block_interval_ms: u64,
}

/// When an empty block on a parent stamped `parent_ts` may be proposed at `now_ms`: an
/// interval after the parent, but never more than an interval from now. A parent stamped ahead
/// of our clock (peers accept up to `MAX_DRIFT_MS` ahead) would otherwise stretch our wait to
/// 750 ms, close enough to the 1 s leader timeout for our view to be nullified over a slow
/// link, and the missed slot charged to us.
fn empty_block_due(parent_ts: u64, now_ms: u64, interval_ms: u64) -> u64 {
    parent_ts.min(now_ms).saturating_add(interval_ms)
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

    /// Records the key ([`Self::key`]) of a verified (transaction, signature) pair.
    fn insert_key(&mut self, k: Hash) {
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

/// The executor actor. Create with [`Executor::init`], run with [`Executor::run`].
pub struct Executor<E: Storage + Clock + Metrics + Spawner + CryptoRng> {
    context: E,
    config: ExecutorConfig,
    db: Option<StateDb<E>>,
    index: IndexHandle,
    tip: Tip,
    next_tx_seq: u64,
    pending: HashMap<sha256::Digest, Executed>,
    mempool: Mempool,
    verified: SigCache,
    evidence: EvidencePool,
    shared: Shared,
    gossip: tokio::sync::mpsc::Sender<SignedTx>,
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
        gossip: tokio::sync::mpsc::Sender<SignedTx>,
    ) -> Result<Self, InitError> {
        let db = state_db::open(context.child("state"), &config.prefix, config.page_cache.clone())
            .await
            .map_err(|e| InitError::State(e.to_string()))?;
        let (index, next_tx_seq) =
            BlockIndex::init(context.child("index"), &config.prefix, config.page_cache.clone())
                .await
                .map_err(InitError::Index)?;
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
        let index = index.start();
        let shared = Shared::new(
            Snapshot {
                height: tip.height,
                digest: to_hash(&tip.digest),
                timestamp_ms: tip.timestamp_ms,
                root: state_db::root_hash(&tip.root),
                state: tip.state.clone(),
            },
            index.clone(),
        );
        Ok(Self {
            context,
            mempool: Mempool::new(config.mempool),
            verified: SigCache::default(),
            config,
            db: Some(db),
            index,
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
                beacon::check(&parent_state, &h.proposer, h.height, &block.beacon) != Some(h.seed),
                "beacon reveal does not open the proposer's commitment, or seed is not the beacon's",
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
        let facts = ConsensusFacts {
            missed: missed_leaders(&committee_of(&parent_state), &block.context),
            beacon_commit: Some(block.beacon.commit),
        };
        match apply_block_with(&parent_state, &block.block, facts, |tx| self.verified.contains(tx)) {
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

    /// The block to propose on `ancestry[0]` at `now_ms`; [`Proposed::Idle`] while it would be
    /// empty and younger than [`ExecutorConfig::empty_block_interval_ms`] after its parent.
    async fn propose(&mut self, context: Ctx, ancestry: Vec<Digested<ChainBlock>>, now_ms: u64) -> Proposed {
        self.build(context, ancestry, now_ms).await.unwrap_or(Proposed::Skip)
    }

    async fn build(
        &mut self,
        context: Ctx,
        ancestry: Vec<Digested<ChainBlock>>,
        now_ms: u64,
    ) -> Option<Proposed> {
        if !self.catch_up(&ancestry).await {
            return None;
        }
        let parent_digest = context.parent.1;
        let (parent_height, parent_state, parent_root, parent_ts) = self.parent_view(&parent_digest)?;
        let parent_state = parent_state.clone();
        let height = parent_height + 1;
        let proposer = to_account(&context.leader);
        let share = beacon::share(&parent_state, &proposer, &self.config.beacon_key, height);
        let info = BlockInfo {
            height,
            timestamp_ms: now_ms.max(parent_ts),
            proposer,
            seed: beacon::check(&parent_state, &proposer, height, &share)?,
            missed: missed_leaders(&committee_of(&parent_state), &context),
            beacon_commit: Some(share.commit),
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
        let due_ms = empty_block_due(parent_ts, now_ms, self.config.empty_block_interval_ms);
        if builder.txs().is_empty() && evidence.is_empty() && now_ms < due_ms {
            debug!(height, pending = self.mempool.len(), wait_ms = due_ms - now_ms, "idle");
            return Some(Proposed::Idle { due_ms });
        }
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
        let block = ChainBlock {
            context,
            block: LedgerBlock { header, txs, evidence },
            beacon: share,
            next_committee,
        };
        let digest = block.digest();
        debug!(height, txs = block.block.txs.len(), "proposing");
        self.stage(block.clone(), digest, state, outcome).await.ok()?;
        Some(Proposed::Block(Box::new(block)))
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
        let json: Arc<str> = serde_json::to_string(&record).map_err(|e| e.to_string())?.into();
        let append = Append {
            height,
            digest,
            json: json.clone(),
            txs: record.block.txs.iter().map(SignedTx::id).collect(),
            first_tx_seq: self.next_tx_seq,
        };
        self.index.append(append).await?;
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
        self.shared.set_mempool_size(&self.mempool);
        self.shared.publish(
            Snapshot {
                height,
                digest: record.digest,
                timestamp_ms: record.block.header.timestamp_ms,
                root: record.state_root,
                state: executed.state,
            },
            Arc::new(Published { record, json }),
        );
        debug!(height, "finalized");
        Ok(())
    }

    /// Admits a transaction whose signature was checked before it was queued here.
    fn submit(&mut self, tx: VerifiedTx) -> Result<Hash, MempoolError> {
        let verified = SigCache::key(tx.signed());
        let id = self.mempool.insert(tx, &self.tip.state)?;
        self.verified.insert_key(verified);
        Ok(id)
    }

    /// Admits `tx`; a local submission's (one with a reply) is gossiped when admitted.
    fn submit_and_gossip(&mut self, tx: VerifiedTx, local: bool) -> Result<Hash, MempoolError> {
        let signed = local.then(|| tx.signed().clone());
        let result = self.submit(tx);
        if let (Ok(_), Some(signed)) = (&result, signed) {
            // Best effort: when the gossip queue is full the transaction still waits here and
            // reaches peers in a block.
            let _ = self.gossip.try_send(signed);
        }
        result
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

    /// Serves messages until every sender is gone, consensus first (see [`crate::mailbox`]).
    /// If marshal's processed height (`replay`) is ahead of the applied state — a crash after
    /// marshal recorded a block but before our state did, or a lost state directory — the
    /// missing blocks are first re-applied from marshal's archive.
    pub async fn run(mut self, mut lanes: Lanes, replay: Option<(crate::validator::Marshal, u64)>) {
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
        loop {
            commonware_macros::select! {
                message = lanes.consensus.next() => {
                    let Some(message) = message else { return };
                    if !self.serve_consensus(message).await {
                        return;
                    }
                },
                message = lanes.clients.recv() => {
                    let Some(message) = message else { return };
                    self.serve_client(message).await;
                    self.shared.set_mempool_size(&self.mempool);
                },
            }
        }
    }

    /// Serves one consensus request; false when the executor must stop.
    async fn serve_consensus(&mut self, message: Consensus) -> bool {
        match message {
            Consensus::Propose { context, ancestry, now_ms, response } => {
                let block = self.propose(context, ancestry, now_ms).await;
                let _ = response.send(block);
            }
            Consensus::Verify { context, ancestry, response } => {
                let valid = self.verify(context, ancestry).await;
                let _ = response.send(valid);
            }
            Consensus::Finalized(Update::Tip(..)) => {}
            Consensus::Finalized(Update::Block(block, ack)) => {
                if let Err(e) = self.finalize(block).await {
                    // Acknowledging would tell marshal the block is applied; it is not. Stop
                    // here: the operator must restart (and the block is redelivered).
                    tracing::error!(error = %e, "cannot apply a finalized block; stopping the executor");
                    return false;
                }
                ack.acknowledge();
            }
        }
        true
    }

    async fn serve_client(&mut self, message: Client) {
        match message {
            Client::Submit { tx, reply } => {
                let _ = reply.send(self.submit_and_gossip(*tx, true));
            }
            Client::Gossiped { txs } => {
                for tx in txs {
                    if let Err(e) = self.submit_and_gossip(tx, false) {
                        debug!(error = %e, "dropping gossiped transaction");
                    }
                }
            }
            Client::SubmitBatch { txs, reply } => {
                let results = txs.into_iter().map(|tx| self.submit_and_gossip(tx, true)).collect();
                let _ = reply.send(results);
            }
            Client::Pending { id, response } => {
                let _ = response.send(self.mempool.contains(&id));
            }
            Client::Prove { key, response } => {
                let _ = response.send(self.prove(key).await);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::empty_block_due;
    use crate::application::MAX_DRIFT_MS;

    #[test]
    fn an_empty_block_never_waits_more_than_one_interval() {
        // A parent stamped in the past: an interval after it.
        assert_eq!(empty_block_due(1_000, 1_100, 250), 1_250);
        // A parent stamped as far ahead as peers accept: an interval from now, not from it.
        let now = 10_000;
        assert_eq!(empty_block_due(now + MAX_DRIFT_MS, now, 250), now + 250);
        assert_eq!(empty_block_due(u64::MAX, u64::MAX, 250), u64::MAX);
    }
}
