//! A tiny single-node "chain" for ledger tests and simulations (`agora bench adversary`):
//! genesis, signing, and blocks with advancing time and per-height seeds. Every helper panics
//! on a block the ledger refuses: in a test or a simulation that is a bug, not an outcome.

pub mod adversary;

use crate::apply::{BlockBuilder, BlockInfo, BlockOutcome, ConsensusFacts, apply_block_with};
use crate::error::BlockError;
use crate::events::Event;
use crate::genesis::{Genesis, GenesisAccount, GenesisValidator};
use crate::params::Params;
use crate::state::State;
use agora_core::block::{Block, BlockHeader};
use agora_core::class::Hardware;
use agora_core::manifest::{Constraints, JobManifest, JobParams, ShardSpec, VerificationPolicy};
use agora_core::tx::{
    AuditEvidence, AuditId, Disputed, Metering, PricePolicy, ProviderProfile, ResultCommitment, SignedTx,
    Transaction, TxPayload,
};
use agora_core::{AccountId, Amount, Coord, Hash, JobKind, SecretKey};

/// The simulated chain's id.
pub const CHAIN: &str = "agora-test";
/// Genesis time, unix ms.
pub const START_MS: u64 = 1_700_000_000_000;
/// Block interval, ms.
pub const BLOCK_MS: u64 = 1_000;

/// Deterministic keys by name.
pub fn key(name: &str) -> SecretKey {
    SecretKey::from_label(name)
}

/// The account of [`key`]`(name)`.
pub fn id(name: &str) -> AccountId {
    key(name).public()
}

/// The ephemeral key of [`sealed_key`]: the X25519 base point.
pub const SEALED_KEY_EPHEMERAL: [u8; 32] = {
    let mut u = [0u8; 32];
    u[0] = 9;
    u
};

/// A sealed key of the right form ([`agora_core::disclosure::sealed`]) for simulated key
/// sharing: the ledger checks only its form, and a simulation never opens it.
pub fn sealed_key() -> Vec<u8> {
    let mut sealed = vec![agora_core::disclosure::sealed::VERSION];
    sealed.extend_from_slice(&SEALED_KEY_EPHEMERAL);
    sealed.resize(agora_core::disclosure::sealed::LEN, 0);
    sealed
}

/// A single-node chain: the ledger state and every block's outcome.
pub struct TestChain {
    /// The state after the last block.
    pub state: State,
    /// Each applied block's outcome, oldest first.
    pub outcomes: Vec<BlockOutcome>,
    /// Mixed into every block seed (0: the seeds the ledger tests were written against).
    pub salt: u64,
}

impl Default for TestChain {
    fn default() -> Self {
        Self::new()
    }
}

impl TestChain {
    /// Genesis with funded users `u0..u7`, providers `p0..p3`, and validators `v0..v3`.
    pub fn new() -> Self {
        Self::with_params(Params::default())
    }

    /// A chain started from `genesis`.
    pub fn from_genesis(genesis: Genesis) -> Self {
        let mut state = genesis.build().expect("valid genesis");
        state.take_writes();
        Self { state, outcomes: vec![], salt: 0 }
    }

    /// Genesis with the accounts of [`TestChain::new`] and `params`.
    pub fn with_params(params: Params) -> Self {
        let mut accounts = vec![];
        for n in (0..8).map(|i| format!("u{i}")).chain((0..4).map(|i| format!("p{i}"))) {
            accounts.push(GenesisAccount { account: id(&n), balance: Amount(10_000_000) });
        }
        for i in 0..4 {
            accounts.push(GenesisAccount { account: id(&format!("v{i}")), balance: Amount(1_000_000) });
        }
        let validators = (0..4)
            .map(|i| GenesisValidator { account: id(&format!("v{i}")), stake: Amount(100_000) })
            .collect();
        let g = Genesis { chain_id: CHAIN.into(), genesis_time_ms: START_MS, accounts, validators, params };
        Self::from_genesis(g)
    }

    /// The seed of block `height`.
    fn seed(&self, height: u64) -> Hash {
        if self.salt == 0 {
            Hash::tagged("test-seed", &[&height.to_le_bytes()])
        } else {
            Hash::tagged("test-seed", &[&height.to_le_bytes(), &self.salt.to_le_bytes()])
        }
    }

    /// Height of the last applied block.
    pub fn height(&self) -> u64 {
        self.state.meta().height
    }

    /// Timestamp of the last applied block.
    pub fn now_ms(&self) -> u64 {
        self.state.meta().timestamp_ms
    }

    /// Signs `payload` from `who` with its next nonce (counting `pending` earlier txs).
    pub fn tx_n(&self, who: &str, payload: TxPayload, pending: u64) -> SignedTx {
        let k = key(who);
        Transaction {
            sender: k.public(),
            nonce: self.state.nonce(&k.public()) + pending,
            fee: Amount(10),
            payload,
        }
        .sign(CHAIN, &k)
    }

    /// `who`'s next transaction carrying `payload`, signed.
    pub fn tx(&self, who: &str, payload: TxPayload) -> SignedTx {
        self.tx_n(who, payload, 0)
    }

    /// Builds the next block's header for `txs`.
    pub fn block_for(&self, txs: Vec<SignedTx>) -> Block {
        self.block_in_view(txs, id("v0"), 0)
    }

    /// The next block for `txs` as `proposer` builds it in the `retry`-th view at this height:
    /// each view after a withheld block brings a different seed (as the beacon does when the
    /// next leader reveals its own share).
    pub fn block_in_view(&self, txs: Vec<SignedTx>, proposer: AccountId, retry: u64) -> Block {
        let height = self.height() + 1;
        let seed = match retry {
            0 => self.seed(height),
            r => Hash::tagged("test-seed/retry", &[&self.seed(height).0, &r.to_le_bytes()]),
        };
        let mut header = BlockHeader {
            height,
            parent: Hash::ZERO,
            timestamp_ms: START_MS + height * BLOCK_MS,
            proposer,
            seed,
            tx_root: Hash::ZERO,
            evidence_root: Hash::ZERO,
            state_root: Hash::ZERO,
        };
        header.tx_root = agora_core::block::encoded_root(&txs);
        header.evidence_root = agora_core::block::encoded_root::<agora_core::Misbehavior>(&[]);
        Block { header, txs, evidence: vec![] }
    }

    /// Applies a block of `txs`; panics if the block is invalid.
    pub fn block(&mut self, txs: Vec<SignedTx>) -> &BlockOutcome {
        let b = self.block_for(txs);
        self.apply(&b).expect("valid block")
    }

    /// Applies `b`, keeping the outcome; the error if the ledger refuses it.
    pub fn apply(&mut self, b: &Block) -> Result<&BlockOutcome, BlockError> {
        self.apply_with(b, ConsensusFacts::default())
    }

    /// [`TestChain::apply`] for a block after whose parent consensus nullified the views
    /// `missed` led.
    pub fn apply_after_missed(
        &mut self,
        b: &Block,
        missed: Vec<AccountId>,
    ) -> Result<&BlockOutcome, BlockError> {
        self.apply_with(b, ConsensusFacts { missed, beacon_commit: None })
    }

    /// [`TestChain::apply`] with what consensus knows of the block.
    pub fn apply_with(&mut self, b: &Block, facts: ConsensusFacts) -> Result<&BlockOutcome, BlockError> {
        let (state, outcome) = apply_block_with(&self.state, b, facts, |_| false)?;
        self.state = state;
        self.outcomes.push(outcome);
        Ok(self.outcomes.last().expect("pushed"))
    }

    /// Applies one transaction in its own block and asserts it succeeded.
    pub fn ok(&mut self, who: &str, payload: TxPayload) -> &BlockOutcome {
        let tx = self.tx(who, payload);
        let out = self.block(vec![tx]);
        assert!(out.receipts[0].ok, "tx failed: {:?}", out.receipts[0].error);
        self.outcomes.last().expect("pushed")
    }

    /// Applies one transaction in its own block and returns its error.
    pub fn fails(&mut self, who: &str, payload: TxPayload) -> String {
        let tx = self.tx(who, payload);
        let out = self.block(vec![tx]);
        assert!(!out.receipts[0].ok, "tx unexpectedly succeeded");
        out.receipts[0].error.clone().expect("error message")
    }

    /// Empty blocks.
    pub fn advance(&mut self, blocks: u64) {
        for _ in 0..blocks {
            self.block(vec![]);
        }
    }

    /// Every event of the last block (tx receipts and block events).
    pub fn last_events(&self) -> Vec<Event> {
        all_events(self.outcomes.last().expect("a block was applied"))
    }

    /// Every event of every block so far.
    pub fn history(&self) -> Vec<Event> {
        self.outcomes.iter().flat_map(all_events).collect()
    }

    /// Builder positioned after the current state (for proposer-style tests).
    pub fn builder(&self) -> BlockBuilder {
        let height = self.height() + 1;
        BlockBuilder::new(
            &self.state,
            BlockInfo {
                height,
                timestamp_ms: START_MS + height * BLOCK_MS,
                proposer: id("v0"),
                seed: self.seed(height),
                missed: vec![],
                beacon_commit: None,
            },
        )
        .expect("next block")
    }
}

/// Every event of a block: its transactions' and the block's own.
pub fn all_events(o: &BlockOutcome) -> Vec<Event> {
    o.receipts.iter().flat_map(|r| r.events.clone()).chain(o.events.clone()).collect()
}

/// A CPU provider profile in `region` with `carbon` gCO2/kWh.
pub fn profile(region: &str, carbon: u32) -> ProviderProfile {
    ProviderProfile {
        hardware: Hardware {
            cpu_model: "test".into(),
            cores: 2,
            memory_mib: 4096,
            gpus: vec![],
            benchmark_score: 100,
        },
        classes: vec!["cpu.x86_64".parse().expect("class")],
        kinds: JobKind::ALL.to_vec(),
        region: region.parse().expect("region"),
        carbon_g_per_kwh: carbon,
        price_policy: PricePolicy::Fixed(Amount(2)),
        coord: Coord::default(),
        endpoint: "http://provider.example:7700".into(),
        serve: None,
    }
}

/// Registers `who` as a provider with [`profile`] and 1,000,000 collateral.
pub fn register(c: &mut TestChain, who: &str, region: &str, carbon: u32) {
    c.ok(
        who,
        TxPayload::RegisterProvider { profile: profile(region, carbon), collateral: Amount(1_000_000) },
    );
}

/// An ask in `cpu.x86_64` for `quantity` device-seconds at `price`, open for an hour.
pub fn ask(c: &TestChain, price: u128, quantity: u64) -> TxPayload {
    TxPayload::PostAsk {
        class: "cpu.x86_64".parse().expect("class"),
        quantity,
        min_unit_price: Amount(price),
        expiry_ms: c.now_ms() + 3_600_000,
    }
}

/// An embedding manifest with `shards` shards of `items` items and `quantity` device-seconds.
pub fn manifest(c: &TestChain, shards: u32, items: u32, quantity: u64, max_price: u128) -> JobManifest {
    JobManifest {
        model: Hash::of(b"model"),
        params: JobParams::Embed { batch_size: 8 },
        class: "cpu.x86_64".parse().expect("class"),
        shards: (0..shards)
            .map(|i| ShardSpec {
                input: Hash::tagged("input", &[&i.to_le_bytes()]),
                items_root: Hash::tagged("items", &[&i.to_le_bytes()]),
                item_count: items,
                quantity,
            })
            .collect(),
        max_unit_price: Amount(max_price),
        deadline_ms: c.now_ms() + 3_600_000,
        policy: VerificationPolicy::Standard,
        constraints: Constraints::default(),
        encrypted: false,
        sources: vec![],
        key_agent: None,
        output_key: None,
    }
}

/// The output root an honest provider commits for a shard: a function of job and shard only.
pub fn honest_root(job: u64, shard: u32) -> Hash {
    Hash::tagged("honest-output", &[&job.to_le_bytes(), &shard.to_le_bytes()])
}

/// A result commitment over `items` items with `root`, metered at `device_ms`.
pub fn commitment(root: Hash, items: u32, device_ms: u64) -> ResultCommitment {
    ResultCommitment {
        root,
        item_count: items,
        output: Hash::ZERO,
        metering: Metering { wall_ms: device_ms, device_ms, fuel: 0, energy_mwh: 1 },
    }
}

/// An auditor's report on `audit`. A pass commits to a recomputation of the sample that took
/// as long as the provider's own metering implies (an honest provider's claim); a failure
/// disputes the first sampled item. A check of inputs or availability commits to what it
/// found either way.
pub fn report(state: &State, audit: AuditId, passed: bool) -> TxPayload {
    let a = state.audit(audit).expect("an open audit");
    // A serving window's replay measures nothing the ledger pays by.
    let measured_ms = a.target.lease().and_then(|l| state.lease(l)).map_or(0, |lease| {
        let items = lease.commitment.as_ref().map_or(1, |c| c.item_count.max(1));
        lease.claimed_ms() * a.items.len() as u64 / u64::from(items)
    });
    let recomputed_root = Hash::tagged("test/recomputed", &[&audit.to_le_bytes()]);
    use crate::audits::AuditSubject::{Outputs, Serving};
    let evidence = if !matches!(a.subject, Outputs | Serving) {
        AuditEvidence::finding(recomputed_root)
    } else if passed {
        AuditEvidence { recomputed_root, disputed: vec![], measured_ms }
    } else {
        let disputed = vec![Disputed { index: a.items[0], recomputed: Hash::of(b"recomputed") }];
        AuditEvidence { recomputed_root, disputed, measured_ms }
    };
    TxPayload::ReportAudit { audit, passed, evidence }
}

/// The assignees of `audit` that have not reported and were not replaced.
pub fn awaiting(state: &State, audit: AuditId) -> Vec<AccountId> {
    let a = state.audit(audit).expect("an audit");
    a.assignments.iter().filter(|x| x.verdict.is_none() && !x.replaced).map(|x| x.auditor).collect()
}

/// Reports on `audit` until it resolves: every assignee (by name, among
/// `p0`..`p3` and `v0`..`v3`) says `passed`.
pub fn settle_audit(c: &mut TestChain, audit: u64, passed: bool) {
    const NAMES: [&str; 8] = ["p0", "p1", "p2", "p3", "v0", "v1", "v2", "v3"];
    while c.state.audit(audit).unwrap().outcome.is_none() {
        let name = |a: &AccountId| NAMES.into_iter().find(|n| id(n) == *a).expect("a known auditor");
        let pending: Vec<&str> = awaiting(&c.state, audit).iter().map(name).collect();
        for name in pending {
            c.ok(name, report(&c.state, audit, passed));
        }
    }
}

/// The (job, lease) of the first lease the last block created.
pub fn last_lease(c: &TestChain) -> (u64, u64) {
    c.last_events()
        .iter()
        .find_map(|e| match e {
            Event::LeaseCreated { job, lease, .. } => Some((*job, *lease)),
            _ => None,
        })
        .expect("the last block created a lease")
}
