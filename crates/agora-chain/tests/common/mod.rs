//! Harness for deterministic multi-validator simulations: Commonware's deterministic runtime
//! (seeded scheduling, simulated time and storage) and its simulated network (per-link
//! latency, jitter and loss; partitions), running the production validator wiring.
#![allow(dead_code)]

use agora_chain::BlockRecord;
use agora_chain::epoch::EpochPeers;
use agora_chain::mempool::Limits;
use agora_chain::validator::{
    CH_BACKFILL, CH_BLOCKS, CH_CERTS, CH_MEMPOOL, CH_RESOLVER, CH_VOTES, Channels, Timing, ValidatorConfig,
    default_page_cache, max_message_size,
};
use agora_chain::{BlockCfg, ChainHandle, start_validator};
use agora_core::tx::{Transaction, TxPayload};
use agora_core::{Amount, SecretKey, SignedTx};
use agora_ledger::{Genesis, GenesisAccount, GenesisValidator, Params};
use commonware_consensus::types::Epoch;
use commonware_cryptography::{Signer as _, ed25519};
use commonware_p2p::TrackedPeers;
use commonware_p2p::simulated::{self, Link, Oracle};
use commonware_runtime::{Clock, Handle, Quota, Spawner, Supervisor as _, deterministic};
use commonware_utils::{NZU32, NZUsize, ordered::Set, probability};
use futures::channel::oneshot;
use std::time::Duration;

pub const CHAIN: &str = "agora-sim";
pub const LOSSY: Link = Link {
    latency: Duration::from_millis(50),
    jitter: Duration::from_millis(20),
    success_rate: probability!(0.9),
};
pub const GOOD: Link = Link {
    latency: Duration::from_millis(20),
    jitter: Duration::from_millis(5),
    success_rate: probability!(1.0),
};
pub const QUOTA: Quota = Quota::per_second(NZU32!(10_000));

pub type Ctx = deterministic::Context;
pub type Net = Oracle<ed25519::PublicKey, Ctx>;

/// Validator `i`'s seed (its ledger key and consensus key derive from the same bytes).
pub fn seed(i: usize) -> [u8; 32] {
    [i as u8 + 1; 32]
}

pub fn ledger_key(i: usize) -> SecretKey {
    SecretKey::from_seed(seed(i))
}

pub fn consensus_key(i: usize) -> ed25519::PrivateKey {
    agora_chain::block::consensus_key(&seed(i))
}

/// A funded user account for transaction load.
pub fn user() -> SecretKey {
    SecretKey::from_label("sim-user")
}

pub fn genesis(n: usize) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        accounts: vec![GenesisAccount { account: user().public(), balance: Amount(1_000_000_000) }],
        validators: (0..n)
            .map(|i| GenesisValidator { account: ledger_key(i).public(), stake: Amount(100_000) })
            .collect(),
        params: Params { committee_size: n as u128, ..Params::default() },
    }
}

pub struct Sim {
    pub oracle: Net,
    pub pks: Vec<ed25519::PublicKey>,
    pub participants: Set<ed25519::PublicKey>,
    pub genesis: Genesis,
}

pub async fn setup(ctx: &Ctx, n: usize, link: Link, disconnect_on_block: bool) -> Sim {
    setup_with(ctx, n, link, disconnect_on_block, genesis(n)).await
}

/// [`setup`] with a custom genesis (validators `0..n` exist as network nodes either way).
pub async fn setup_with(ctx: &Ctx, n: usize, link: Link, disconnect_on_block: bool, genesis: Genesis) -> Sim {
    let pks: Vec<_> = (0..n).map(|i| consensus_key(i).public_key()).collect();
    let participants = Set::from_iter_dedup(pks.clone());
    let (network, oracle) = simulated::Network::new_with_peers(
        ctx.child("network"),
        simulated::Config {
            max_size: max_message_size(&BlockCfg::default()),
            max_peers_per_set: NZUsize!(n),
            disconnect_on_block,
            tracked_peer_sets: NZUsize!(4),
        },
        pks.clone(),
    )
    .await;
    network.start();
    let sim = Sim { oracle, pks, participants, genesis };
    link_all(&sim, link).await;
    sim
}

pub async fn link_all(sim: &Sim, link: Link) {
    for a in &sim.pks {
        for b in &sim.pks {
            if a != b {
                sim.oracle.add_link(a.clone(), b.clone(), link.clone()).await.unwrap();
            }
        }
    }
}

/// Cuts validator `idx` off from everyone, both directions.
pub async fn isolate(sim: &Sim, idx: usize) {
    for (j, other) in sim.pks.iter().enumerate() {
        if j != idx {
            sim.oracle.remove_link(sim.pks[idx].clone(), other.clone()).await.unwrap();
            sim.oracle.remove_link(other.clone(), sim.pks[idx].clone()).await.unwrap();
        }
    }
}

pub async fn reconnect(sim: &Sim, idx: usize, link: Link) {
    for (j, other) in sim.pks.iter().enumerate() {
        if j != idx {
            sim.oracle.add_link(sim.pks[idx].clone(), other.clone(), link.clone()).await.unwrap();
            sim.oracle.add_link(other.clone(), sim.pks[idx].clone(), link.clone()).await.unwrap();
        }
    }
}

/// An epoch's committee are its primary peers and every other simulated node a secondary one
/// (as production nodes do with their address book), so nodes outside a committee keep
/// receiving its consensus traffic as observers.
pub struct SimPeers {
    manager: simulated::Manager<ed25519::PublicKey, Ctx>,
    everyone: Set<ed25519::PublicKey>,
}

impl EpochPeers for SimPeers {
    fn track(&mut self, epoch: Epoch, committee: &Set<ed25519::PublicKey>) {
        let others = self.everyone.iter().filter(|k| committee.position(k).is_none()).cloned();
        let peers = TrackedPeers::new(committee.clone(), Set::from_iter_dedup(others));
        let _ = commonware_p2p::Manager::track(&mut self.manager, epoch.get(), peers);
    }
}

type SimChannels =
    Channels<simulated::Sender<ed25519::PublicKey, Ctx>, simulated::Receiver<ed25519::PublicKey>>;

pub async fn register(oracle: &Net, pk: &ed25519::PublicKey) -> SimChannels {
    let control = oracle.control(pk.clone());
    Channels {
        votes: control.register(CH_VOTES, QUOTA).await.unwrap(),
        certs: control.register(CH_CERTS, QUOTA).await.unwrap(),
        resolver: control.register(CH_RESOLVER, QUOTA).await.unwrap(),
        blocks: control.register(CH_BLOCKS, QUOTA).await.unwrap(),
        backfill: control.register(CH_BACKFILL, QUOTA).await.unwrap(),
        mempool: control.register(CH_MEMPOOL, QUOTA).await.unwrap(),
    }
}

/// Channels for a validator whose blocks never reach anyone as a block they could accept (a
/// proposer sending undecodable or invalid blocks looks the same to its peers): its votes and
/// certificates travel as usual, but it sends and serves blocks on channels nobody listens to,
/// so peers can neither receive nor fetch what it proposes.
pub async fn register_withholding(oracle: &Net, pk: &ed25519::PublicKey) -> SimChannels {
    const NOBODY: u64 = 1_000;
    let control = oracle.control(pk.clone());
    Channels {
        votes: control.register(CH_VOTES, QUOTA).await.unwrap(),
        certs: control.register(CH_CERTS, QUOTA).await.unwrap(),
        resolver: control.register(NOBODY + CH_RESOLVER, QUOTA).await.unwrap(),
        blocks: control.register(NOBODY + CH_BLOCKS, QUOTA).await.unwrap(),
        backfill: control.register(NOBODY + CH_BACKFILL, QUOTA).await.unwrap(),
        mempool: control.register(CH_MEMPOOL, QUOTA).await.unwrap(),
    }
}

/// Starts validator `idx` in its own task; aborting the handle crashes it. `run` keeps metric
/// names distinct across restarts.
pub async fn spawn_validator(
    ctx: &Ctx,
    sim: &Sim,
    idx: usize,
    run: u32,
) -> (Handle<()>, ChainHandle, Option<u64>) {
    let channels = register(&sim.oracle, &sim.pks[idx]).await;
    spawn_validator_on(ctx, sim, idx, run, channels).await
}

/// [`spawn_validator`] on the given channels.
pub async fn spawn_validator_on(
    ctx: &Ctx,
    sim: &Sim,
    idx: usize,
    run: u32,
    channels: SimChannels,
) -> (Handle<()>, ChainHandle, Option<u64>) {
    let cfg = ValidatorConfig {
        prefix: format!("v{idx}"),
        key: consensus_key(idx),
        peers: SimPeers { manager: sim.oracle.manager(), everyone: sim.participants.clone() },
        blocker: sim.oracle.control(sim.pks[idx].clone()),
        provider: sim.oracle.manager(),
        genesis: sim.genesis.clone(),
        block_cfg: BlockCfg::default(),
        timing: Timing::default(),
        mempool: Limits::default(),
        max_block_txs: 1000,
        mailbox_size: NZUsize!(1024),
        page_cache: default_page_cache(),
    };
    let (tx, rx) = oneshot::channel();
    let handle = ctx.child("validator").with_attribute("index", idx).with_attribute("run", run).spawn(
        move |ctx| async move {
            let v = start_validator(ctx, cfg, channels).await.expect("validator starts");
            let _ = tx.send((v.chain.clone(), v.marshal_processed_at_start));
            let _ = v.engine.await;
        },
    );
    let (chain, processed) = rx.await.expect("validator started");
    (handle, chain, processed)
}

/// A transfer from the load account with nonce `n`.
pub fn transfer(n: u64) -> SignedTx {
    let k = user();
    Transaction {
        sender: k.public(),
        nonce: n,
        fee: Amount(10),
        payload: TxPayload::Transfer { to: SecretKey::from_label("sink").public(), amount: Amount(1) },
    }
    .sign(CHAIN, &k)
}

/// `tx` with its signature checked, as the node's API checks it before submitting.
pub fn checked(tx: agora_core::SignedTx) -> agora_chain::mempool::VerifiedTx {
    agora_chain::mempool::VerifiedTx::check(tx, CHAIN).expect("a valid signature")
}

/// Submits one transfer every `every` to `target`, with consecutive nonces; stops when the
/// mempool refuses (e.g. a nonce already final after a resubmission).
pub fn spawn_tx_load(ctx: &Ctx, target: ChainHandle, every: Duration) -> Handle<()> {
    ctx.child("tx_load").spawn(move |ctx| async move {
        let mut n = 0u64;
        loop {
            ctx.sleep(every).await;
            if target.submit(checked(transfer(n))).await.is_ok() {
                n += 1;
            } else {
                // Catch up with the finalized nonce (e.g. after a partition) and go on.
                n = target.snapshot().state.nonce(&user().public());
            }
        }
    })
}

pub async fn wait_until(ctx: &Ctx, mut f: impl FnMut() -> bool) {
    while !f() {
        ctx.sleep(Duration::from_millis(50)).await;
    }
}

pub fn height(c: &ChainHandle) -> u64 {
    c.snapshot().height
}

/// Every pair of validators agrees on the digest and state root of every height both have.
pub async fn assert_agreement(chains: &[&ChainHandle]) -> u64 {
    let common = chains.iter().map(|c| height(c)).min().unwrap();
    for h in 1..=common {
        let records: Vec<BlockRecord> = futures::future::join_all(chains.iter().map(|c| c.block(h)))
            .await
            .into_iter()
            .map(|r| r.unwrap().expect("finalized record"))
            .collect();
        for r in &records[1..] {
            assert_eq!(r.digest, records[0].digest, "fork at height {h}");
            assert_eq!(r.state_root, records[0].state_root, "state diverged at height {h}");
        }
    }
    common
}

/// Transactions finalized up to the latest height of `c`.
pub async fn count_txs(c: &ChainHandle) -> usize {
    count_txs_to(c, height(c)).await
}

/// Transactions in `c`'s finalized blocks 1..=`to`.
pub async fn count_txs_to(c: &ChainHandle, to: u64) -> usize {
    let mut n = 0;
    for h in 1..=to {
        n += c.block(h).await.unwrap().expect("record").block.txs.len();
    }
    n
}

/// A deterministic runner with `seed` and a simulated-time limit.
pub fn runner(seed: u64, timeout_s: u64) -> deterministic::Runner {
    deterministic::Runner::new(
        deterministic::Config::new().with_seed(seed).with_timeout(Some(Duration::from_secs(timeout_s))),
    )
}
