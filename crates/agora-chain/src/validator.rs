//! Wires one validator: block dissemination, marshal (finalized archives, backfill), the
//! `Deferred` application wrapper, the executor, transaction gossip, evidence collection, and
//! the epoch orchestrator that runs a simplex engine per committee. Generic over the runtime,
//! so the same code runs in Commonware's deterministic simulator and in production on tokio.

use crate::application::{App, FinalizedReporter};
use crate::block::{BlockCfg, ChainBlock, MAX_COMMITTEE};
use crate::epoch::{Committees, EpochPeers, Orchestrator, OrchestratorConfig};
use crate::evidence::EvidencePool;
use crate::executor::{Executor, ExecutorConfig, InitError, committee_of};
use crate::handle::ChainHandle;
use crate::mailbox::{CLIENT_LANE_CAPACITY, ExecutorMailbox};
use crate::mempool::Limits;
use agora_ledger::Genesis;
use commonware_broadcast::buffered;
use commonware_consensus::Reporters;
use commonware_consensus::marshal::core::{Actor as MarshalActor, Mailbox as MarshalMailbox};
use commonware_consensus::marshal::resolver::p2p as marshal_resolver;
use commonware_consensus::marshal::standard::{Deferred, Standard};
use commonware_consensus::marshal::{self, Start};
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::{self};
use commonware_consensus::types::{FixedEpocher, ViewDelta};
use commonware_cryptography::certificate::Verifier as _;
use commonware_cryptography::{Digested, Digestible, Signer as _, ed25519, sha256};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::archive::immutable;
use commonware_utils::{NZDuration, NZU16, NZU64, NZUsize};
use rand_core::CryptoRng;
use std::num::NonZeroUsize;
use std::time::Duration;
use tracing::info;

/// Signature namespace of Agora consensus messages.
pub const NAMESPACE: &[u8] = b"_AGORA";

/// p2p channel: votes.
pub const CH_VOTES: u64 = 0;
/// p2p channel: certificates.
pub const CH_CERTS: u64 = 1;
/// p2p channel: certificate fetches.
pub const CH_RESOLVER: u64 = 2;
/// p2p channel: block dissemination.
pub const CH_BLOCKS: u64 = 3;
/// p2p channel: block backfill.
pub const CH_BACKFILL: u64 = 4;
/// p2p channel: transaction gossip.
pub const CH_MEMPOOL: u64 = 5;

/// The (sender, receiver) pairs a validator needs, one per channel.
pub struct Channels<S, R> {
    /// Votes.
    pub votes: (S, R),
    /// Certificates.
    pub certs: (S, R),
    /// Certificate fetches.
    pub resolver: (S, R),
    /// Blocks.
    pub blocks: (S, R),
    /// Backfill.
    pub backfill: (S, R),
    /// Transactions.
    pub mempool: (S, R),
}

/// Consensus timeouts. Simplex requires certification > leader, and skip > certification and
/// > retry.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Wait for the leader's proposal.
    pub leader_timeout: Duration,
    /// Wait for certification.
    pub certification_timeout: Duration,
    /// Retry after a timeout.
    pub timeout_retry: Duration,
    /// Skip an unresponsive leader.
    pub skip_timeout: Duration,
    /// Fetch timeout.
    pub fetch_timeout: Duration,
    /// Least time between a block with no transactions or evidence and its parent. An idle
    /// chain grows by one block per interval instead of as fast as consensus rounds go (about
    /// 50 blocks a second on one machine); a transaction that arrives ends a proposer's wait
    /// at once, so it costs a busy chain nothing. Shorter than `leader_timeout`.
    pub empty_block_interval: Duration,
}

/// The production [`Timing::empty_block_interval`].
pub const EMPTY_BLOCK_INTERVAL: Duration = Duration::from_millis(250);

impl Default for Timing {
    fn default() -> Self {
        Self {
            leader_timeout: Duration::from_millis(1000),
            certification_timeout: Duration::from_millis(2000),
            timeout_retry: Duration::from_millis(500),
            skip_timeout: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(1),
            empty_block_interval: EMPTY_BLOCK_INTERVAL,
        }
    }
}

/// Everything one validator needs.
pub struct ValidatorConfig<B, P, T> {
    /// Unique prefix of every storage partition of this validator.
    pub prefix: String,
    /// Consensus key (also the validator's ledger account).
    pub key: ed25519::PrivateKey,
    /// Blocks misbehaving peers.
    pub blocker: B,
    /// Tracks peer sets.
    pub provider: P,
    /// Installs each epoch's peer set in p2p.
    pub peers: T,
    /// Chain genesis.
    pub genesis: Genesis,
    /// Block size bounds.
    pub block_cfg: BlockCfg,
    /// Consensus timeouts.
    pub timing: Timing,
    /// Mempool bounds.
    pub mempool: Limits,
    /// Most transactions per block.
    pub max_block_txs: usize,
    /// Mailbox sizes of the consensus actors.
    pub mailbox_size: NonZeroUsize,
    /// Page cache shared by this validator's stores.
    pub page_cache: CacheRef,
}

/// A running validator.
pub struct Validator {
    /// Its consensus key.
    pub public_key: ed25519::PublicKey,
    /// Client access to the chain.
    pub chain: ChainHandle,
    /// Evidence seen but not yet included.
    pub evidence: EvidencePool,
    /// Marshal's processed height when the validator started.
    pub marshal_processed_at_start: Option<u64>,
    /// The consensus task (the epoch orchestrator and, under it, the running epoch's engine).
    pub engine: Handle<()>,
}

/// A page cache with the standard page size (keep it fixed across restarts).
pub fn default_page_cache() -> CacheRef {
    CacheRef::new(NZU16!(4096), NZUsize!(1024))
}

/// The settings of an immutable archive named `name` under `prefix` (the block index and
/// marshal's archives share them).
pub(crate) fn archive_config<C>(
    prefix: &str,
    name: &str,
    page_cache: CacheRef,
    codec_config: C,
) -> immutable::Config<C> {
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
        codec_config,
    }
}

/// The largest p2p message any node sends, for committees up to the largest the ledger allows
/// (every node must agree). Consensus messages carry their epoch's subchannel prefix.
pub fn max_message_size(block_cfg: &BlockCfg) -> u32 {
    let members = MAX_COMMITTEE as u32;
    commonware_p2p::max_message_size(&[
        commonware_p2p::utils::mux::prefixed(simplex::max_payload_size::<Scheme, sha256::Digest>(members)),
        marshal::max_payload_size::<Standard<ChainBlock>, Scheme>(members, block_cfg),
        crate::gossip::MAX_BATCH_BYTES + 64,
    ])
}

/// Starts every actor of one validator and returns. All tasks are children of `context`, so
/// aborting the task that called this stops the whole validator.
pub async fn start_validator<E, B, P, T, S, R>(
    context: E,
    cfg: ValidatorConfig<B, P, T>,
    channels: Channels<S, R>,
) -> Result<Validator, InitError>
where
    E: Spawner + Clock + Storage + Metrics + CryptoRng,
    B: Blocker<PublicKey = ed25519::PublicKey>,
    P: Provider<PublicKey = ed25519::PublicKey>,
    T: EpochPeers,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
{
    let public_key = cfg.key.public_key();
    let prefix = cfg.prefix.clone();

    // Executor: ledger state, authenticated store, index, mempool.
    let evidence = EvidencePool::default();
    let (gossip_out, gossip_in) = tokio::sync::mpsc::channel(crate::gossip::OUTBOUND_CAPACITY);
    let executor = Executor::init(
        context.child("executor"),
        ExecutorConfig {
            genesis: cfg.genesis.clone(),
            prefix: prefix.clone(),
            page_cache: cfg.page_cache.clone(),
            mempool: cfg.mempool,
            max_block_txs: cfg.max_block_txs,
            max_block_bytes: cfg.block_cfg.max_bytes / 2,
            namespace: NAMESPACE.to_vec(),
            beacon_key: crate::beacon::key_of(&cfg.key),
            empty_block_interval_ms: cfg.timing.empty_block_interval.as_millis() as u64,
        },
        evidence.clone(),
        gossip_out,
    )
    .await?;
    let genesis = executor.genesis();
    let genesis_digest = genesis.digest();
    let genesis_committee = committee_of(&cfg.genesis.build()?);
    // Fixed at genesis: every state holds the genesis value.
    let epocher = || FixedEpocher::new(NZU64!(cfg.genesis.params.blocks_per_epoch()));
    let committees = Committees::default();
    let shared = executor.shared();
    let (mailbox, executor_inbox) = ExecutorMailbox::new(CLIENT_LANE_CAPACITY);
    let chain_id = cfg.genesis.chain_id.clone();
    crate::gossip::start(context.child("gossip"), mailbox.clone(), chain_id, gossip_in, channels.mempool);

    // Block backfill and dissemination.
    let resolver = marshal_resolver::init(
        context.child("marshal_resolver"),
        marshal_resolver::Config {
            public_key: public_key.clone(),
            peer_provider: cfg.provider.clone(),
            blocker: cfg.blocker.clone(),
            mailbox_size: cfg.mailbox_size,
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        channels.backfill,
    );
    let (broadcast_engine, buffer) = buffered::Engine::new(
        context.child("broadcast"),
        buffered::Config {
            public_key: public_key.clone(),
            mailbox_size: cfg.mailbox_size,
            deque_size: 10,
            priority: false,
            codec_config: cfg.block_cfg,
            peer_provider: cfg.provider.clone(),
            strategy: Sequential,
        },
    );
    broadcast_engine.start(channels.blocks);

    // Marshal: finalized archives, ordered delivery.
    let finalizations = immutable::Archive::init(
        context.child("finalizations_by_height"),
        archive_config(
            &prefix,
            "finalizations",
            cfg.page_cache.clone(),
            Scheme::certificate_codec_config_unbounded(),
        ),
    )
    .await
    .map_err(|e| InitError::Index(e.to_string()))?;
    let blocks = immutable::Archive::init(
        context.child("finalized_blocks"),
        archive_config(&prefix, "blocks", cfg.page_cache.clone(), cfg.block_cfg),
    )
    .await
    .map_err(|e| InitError::Index(e.to_string()))?;
    let (marshal_actor, marshal_mailbox, floor) =
        MarshalActor::<_, Standard<ChainBlock>, _, _, _, _, _>::init(
            context.child("marshal"),
            finalizations,
            blocks,
            marshal::Config {
                provider: committees.clone(),
                epocher: epocher(),
                start: Start::Genesis(Digested::precomputed(genesis.clone(), genesis_digest)),
                partition_prefix: format!("{prefix}-marshal"),
                mailbox_size: cfg.mailbox_size,
                view_retention: ViewDelta::new(1024),
                prunable_items_per_section: NZU64!(64),
                page_cache: cfg.page_cache.clone(),
                replay_buffer: NZUsize!(1024 * 1024),
                key_write_buffer: NZUsize!(64 * 1024),
                value_write_buffer: NZUsize!(64 * 1024),
                block_codec_config: cfg.block_cfg,
                max_repair: NZUsize!(16),
                max_pending_acks: NZUsize!(4),
                strategy: Sequential,
            },
        )
        .await;
    let processed = floor.processed().map(|p| p.height().get());
    info!(applied = executor.finalized_height(), marshal_processed = ?processed, "validator starting");

    let app = App::new(mailbox.clone(), shared.clone());
    let deferred = Deferred::new(context.child("deferred"), app, marshal_mailbox.clone(), epocher());
    let (orchestrator, orchestrator_mailbox) = Orchestrator::new(
        context.child("epochs"),
        OrchestratorConfig {
            key: cfg.key.clone(),
            epocher: epocher(),
            genesis_digest,
            genesis_committee,
            processed,
            committees,
            marshal: marshal_mailbox.clone(),
            evidence: evidence.clone(),
            blocker: cfg.blocker.clone(),
            peers: cfg.peers,
            timing: cfg.timing,
            prefix: prefix.clone(),
            page_cache: cfg.page_cache.clone(),
            mailbox_size: cfg.mailbox_size,
        },
        deferred,
    );
    let replay = processed.map(|h| (marshal_mailbox.clone(), h));
    context.child("executor_loop").spawn(move |_| executor.run(executor_inbox, replay));
    // Both must acknowledge a finalized block: the executor once it is durable, the
    // orchestrator once an epoch's last block has started the next epoch.
    marshal_actor.start(
        Reporters::from((FinalizedReporter::new(mailbox.clone()), orchestrator_mailbox)),
        buffer,
        resolver,
    );
    let engine = orchestrator.start(channels.votes, channels.certs, channels.resolver);
    Ok(Validator {
        public_key,
        chain: ChainHandle::new(mailbox, shared, marshal_mailbox),
        evidence,
        marshal_processed_at_start: processed,
        engine,
    })
}

/// Marshal's mailbox type for our blocks.
pub type Marshal = MarshalMailbox<Scheme, Standard<ChainBlock>>;
