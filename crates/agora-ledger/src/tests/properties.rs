//! Property tests over random sequences of valid and invalid transactions, driven by simple
//! agents: providers that compute honestly (p0–p2) or cheat (p3), and auditors that report
//! truthfully. After every block the invariants of the ledger must hold.

use super::harness::*;
use crate::events::Event;
use crate::leases::LeaseStatus;
use crate::market::Order;
use crate::params::Params;
use crate::state::State;
use agora_core::arbitrary as arb;
use agora_core::block::Block;
use agora_core::tx::{OrderId, TxPayload};
use agora_core::{AccountId, Amount, Hash};
use proptest::prelude::*;
use std::collections::BTreeMap;

const PROVIDERS: [&str; 4] = ["p0", "p1", "p2", "p3"];
const CHEATER: &str = "p3";
const AUDITORS: [&str; 16] =
    ["p0", "p1", "p2", "p3", "v0", "v1", "v2", "v3", "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"];

#[derive(Debug, Clone)]
enum Action {
    Transfer {
        from: u8,
        to: u8,
        amount: u128,
    },
    Bond {
        who: u8,
        amount: u128,
    },
    Unbond {
        who: u8,
        amount: u128,
    },
    Ask {
        provider: u8,
        price: u128,
        quantity: u64,
    },
    Job {
        who: u8,
        shards: u32,
        quantity: u64,
        max_price: u128,
        region: Option<&'static str>,
        carbon: Option<u32>,
        encrypted: bool,
    },
    /// The requester of a delivered encrypted lease confirms its outputs, or disputes them.
    Answer {
        pick: usize,
        dispute: bool,
    },
    CancelJob {
        who: u8,
        pick: usize,
    },
    /// A structurally valid transaction with a random payload, correctly signed and numbered.
    Random(Box<TxPayload>, u8),
    /// A transaction with a wrong nonce: the block must be rejected and change nothing.
    BadNonce(u8),
    Quiet,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0u8..8, 0u8..8, 0u128..50_000).prop_map(|(from, to, amount)| Action::Transfer { from, to, amount }),
        1 => (0u8..8, 0u128..200_000).prop_map(|(who, amount)| Action::Bond { who, amount }),
        1 => (0u8..8, 0u128..200_000).prop_map(|(who, amount)| Action::Unbond { who, amount }),
        4 => (0u8..4, 1u128..20, 10u64..400).prop_map(|(provider, price, quantity)| Action::Ask { provider, price, quantity }),
        4 => (0u8..8, 1u32..4, 5u64..120, 0u128..30, prop::option::of(prop::sample::select(vec!["local", "eu-west"])),
              prop::option::of(50u32..400), any::<bool>())
            .prop_map(|(who, shards, quantity, max_price, region, carbon, encrypted)| Action::Job { who, shards, quantity, max_price, region, carbon, encrypted }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, dispute)| Action::Answer { pick, dispute }),
        1 => (0u8..8, any::<usize>()).prop_map(|(who, pick)| Action::CancelJob { who, pick }),
        2 => (arb::payload(), 0u8..8).prop_map(|(p, who)| Action::Random(Box::new(p), who)),
        1 => (0u8..8).prop_map(Action::BadNonce),
        3 => Just(Action::Quiet),
    ]
}

fn user(i: u8) -> String {
    format!("u{}", i % 8)
}

/// Ask prices posted per order, to check sellers never get less than they asked.
type AskPrices = BTreeMap<OrderId, Amount>;

/// Transactions the agents send this block: commitments for running leases and audit reports.
fn agent_txs(c: &TestChain) -> Vec<agora_core::SignedTx> {
    let mut txs = vec![];
    let mut pending: BTreeMap<String, u64> = BTreeMap::new();
    let mut send = |c: &TestChain, who: &str, payload: TxPayload, txs: &mut Vec<_>| {
        let n = pending.entry(who.to_string()).or_default();
        txs.push(c.tx_n(who, payload, *n));
        *n += 1;
    };
    for (lid, lease) in c.state.leases() {
        if lease.status == LeaseStatus::Running && lease.start_height < c.height() {
            let name = PROVIDERS.iter().find(|n| id(n) == lease.provider).expect("provider");
            let root =
                if *name == CHEATER { Hash::of(b"cheap fake") } else { honest_root(lease.job, lease.shard) };
            let job = c.state.job(lease.job).expect("job");
            let items = job.manifest.output_items(&job.manifest.shards[lease.shard as usize]);
            send(
                c,
                name,
                TxPayload::CommitResult { lease: *lid, commitment: commitment(root, items, 1_000) },
                &mut txs,
            );
        }
    }
    for (aid, audit) in c.state.audits() {
        if audit.outcome.is_some() {
            continue;
        }
        let lease = c.state.lease(audit.target.lease().expect("a lease audit")).expect("lease");
        let honest =
            lease.commitment.as_ref().expect("committed").root == honest_root(lease.job, lease.shard);
        for a in audit.assignments.iter().filter(|a| !a.replaced && a.verdict.is_none()) {
            let name = AUDITORS.iter().find(|n| id(n) == a.auditor).expect("known auditor");
            send(c, name, report(&c.state, *aid, honest), &mut txs);
        }
    }
    txs
}

fn action_tx(c: &TestChain, a: &Action, jobs: &[u64], pending: u64) -> Option<agora_core::SignedTx> {
    let payload_from = |who: String, p: TxPayload| Some(c.tx_n(&who, p, pending));
    match a.clone() {
        Action::Transfer { from, to, amount } => {
            payload_from(user(from), TxPayload::Transfer { to: id(&user(to)), amount: Amount(amount) })
        }
        Action::Bond { who, amount } => payload_from(user(who), TxPayload::Bond { amount: Amount(amount) }),
        Action::Unbond { who, amount } => {
            payload_from(user(who), TxPayload::Unbond { amount: Amount(amount) })
        }
        Action::Ask { provider, price, quantity } => {
            payload_from(PROVIDERS[provider as usize].to_string(), ask(c, price, quantity))
        }
        Action::Job { who, shards, quantity, max_price, region, carbon, encrypted } => {
            let mut m = manifest(c, shards, 4, quantity, max_price);
            m.constraints.region = region.map(|r| r.parse().expect("region"));
            m.constraints.max_carbon_g_per_kwh = carbon;
            m.encrypted = encrypted;
            payload_from(user(who), TxPayload::SubmitJob { manifest: m })
        }
        Action::Answer { pick, dispute } => {
            let (lid, who) = answer_target(c, pick)?;
            let payload = if dispute {
                let provider = c.state.lease(lid)?.provider.to_x25519().expect("a provider's key");
                let context = agora_core::disclosure::output_key_context(lid);
                let disclosure =
                    agora_core::disclosure::KeyDisclosure::prove(&key(&who), &provider, &context)?;
                TxPayload::DisputeOutputs { lease: lid, disclosure }
            } else {
                TxPayload::ConfirmOutputs { lease: lid }
            };
            payload_from(who, payload)
        }
        Action::CancelJob { who, pick } => {
            let job = if jobs.is_empty() { 0 } else { jobs[pick % jobs.len()] };
            payload_from(user(who), TxPayload::CancelJob { job })
        }
        Action::Random(p, who) => payload_from(user(who), *p),
        Action::BadNonce(_) | Action::Quiet => None,
    }
}

/// The delivered lease an [`Action::Answer`] picks, and its requester's name.
fn answer_target(c: &TestChain, pick: usize) -> Option<(u64, String)> {
    let delivered: Vec<_> = c.state.leases().filter(|(_, l)| l.status == LeaseStatus::Delivered).collect();
    let (lid, l) = *delivered.get(pick % delivered.len().max(1))?;
    Some((*lid, (0..8).map(user).find(|u| id(u) == l.requester).expect("a user's lease")))
}

/// Checks every invariant that must hold after any block.
fn check_invariants(state: &State, events: &[Event], asks: &AskPrices) -> Result<(), TestCaseError> {
    prop_assert!(state.meta().supply.is_conserved(), "conservation: {:?}", state.meta().supply);
    prop_assert_eq!(&state.recount_supply(), &state.meta().supply, "incremental totals drifted");
    for e in events {
        match e {
            Event::LeaseCreated { lease, ask, unit_price, .. } => {
                let l = state.lease(*lease).expect("lease exists");
                let job = state.job(l.job).expect("job exists");
                prop_assert!(*unit_price <= job.manifest.max_unit_price, "buyer pays at most its bid");
                prop_assert!(l.seller_price <= l.buyer_price, "budget balance");
                prop_assert!(l.seller_price >= asks[ask], "seller gets at least its ask");
                let p = state.provider(&l.provider).expect("provider");
                let c = &job.manifest.constraints;
                prop_assert!(c.region.as_ref().is_none_or(|r| *r == p.profile.region), "region constraint");
                prop_assert!(
                    c.max_carbon_g_per_kwh.is_none_or(|m| p.profile.carbon_g_per_kwh <= m),
                    "carbon constraint"
                );
                prop_assert!(l.provider != l.requester);
            }
            Event::ProviderSlashed { provider, .. } => {
                prop_assert_eq!(*provider, id(CHEATER), "an honest provider was slashed");
            }
            _ => {}
        }
    }
    for n in ["p0", "p1", "p2"] {
        if let Some(p) = state.provider(&id(n)) {
            prop_assert_eq!(p.trust.frauds, 0);
        }
    }
    // Every unsettled lease's reservation is counted once on its provider, and a provider never
    // holds more leases than its record decodes under.
    let mut reserved: BTreeMap<AccountId, Amount> = BTreeMap::new();
    for (_, l) in state.leases() {
        let unsettled = matches!(
            l.status,
            LeaseStatus::Running
                | LeaseStatus::Committed
                | LeaseStatus::Auditing
                | LeaseStatus::Delivered
                | LeaseStatus::OutputsDisputed
        );
        prop_assert!(unsettled || l.reserved.is_zero(), "a finished lease still reserves collateral");
        // A delivered lease waits with its collateral at risk; only encrypted jobs wait.
        if matches!(l.status, LeaseStatus::Delivered | LeaseStatus::OutputsDisputed) {
            prop_assert!(
                !l.reserved.is_zero() || l.value().is_zero(),
                "a delivered lease keeps its collateral"
            );
            prop_assert!(state.job(l.job).expect("job").manifest.encrypted, "only encrypted leases wait");
            let dispute = l.delivery.as_ref().expect("a delivery").dispute.is_some();
            prop_assert_eq!(dispute, l.status == LeaseStatus::OutputsDisputed);
        }
        let r = reserved.entry(l.provider).or_insert(Amount::ZERO);
        *r = r.checked_add(l.reserved).unwrap();
    }
    for (who, p) in state.providers() {
        prop_assert_eq!(
            p.reserved,
            reserved.get(who).copied().unwrap_or(Amount::ZERO),
            "reservations drifted"
        );
        prop_assert!(p.running.len() <= crate::registry::MAX_RUNNING_LEASES);
    }
    for (_, o) in state.orders() {
        if let Order::Bid(b) = o {
            let job = state.job(b.job).expect("bids belong to jobs");
            prop_assert_eq!(
                b.escrow,
                job.manifest.max_unit_price.checked_mul(u128::from(b.quantity)).unwrap()
            );
        }
    }
    Ok(())
}

fn setup() -> (TestChain, AskPrices) {
    let p = Params {
        epoch_length: 7,
        unbonding_blocks: 4,
        audit_report_blocks: 4,
        liveness_blocks: 1_000,
        delivery_window_ms: 5_000,
        // Fees (and so dispute deposits) large enough not to round to zero on small leases.
        audit_fee_bps: 2_000,
        ..Params::default()
    };
    let mut c = TestChain::with_params(p);
    for (i, n) in PROVIDERS.iter().enumerate() {
        let region = if i % 2 == 0 { "local" } else { "eu-west" };
        register(&mut c, n, region, 100 * (i as u32 + 1));
    }
    (c, AskPrices::new())
}

fn record_asks(events: &[Event], asks: &mut AskPrices) {
    for e in events {
        if let Event::AskPosted { order, min_unit_price, .. } = e {
            asks.insert(*order, *min_unit_price);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn ledger_invariants_hold(actions in prop::collection::vec(prop::collection::vec(action(), 0..4), 1..25)) {
        let (mut c, mut asks) = setup();
        let mut blocks: Vec<Block> = vec![];
        let mut jobs: Vec<u64> = vec![];
        for batch in &actions {
            let mut txs = agent_txs(&c);
            let mut pending: BTreeMap<AccountId, u64> = BTreeMap::new();
            for t in &txs { *pending.entry(t.tx.sender).or_default() += 1; }
            let mut bad = None;
            for a in batch {
                if let Action::BadNonce(who) = a {
                    bad = Some(c.tx_n(&user(*who), TxPayload::Transfer { to: id("u0"), amount: Amount(1) }, 7));
                    continue;
                }
                let sender = match a { Action::Ask { provider, .. } => id(PROVIDERS[*provider as usize]),
                    Action::Transfer { from: w, .. } | Action::Bond { who: w, .. } | Action::Unbond { who: w, .. }
                    | Action::Job { who: w, .. } | Action::CancelJob { who: w, .. } | Action::Random(_, w) => id(&user(*w)),
                    Action::Answer { pick, .. } => match answer_target(&c, *pick) { Some((_, who)) => id(&who), None => continue },
                    _ => continue };
                let n = pending.entry(sender).or_default();
                if let Some(tx) = action_tx(&c, a, &jobs, *n) { txs.push(tx); *n += 1; }
            }
            if let Some(bad) = bad {
                // A block with a wrongly numbered transaction is refused and changes nothing.
                let digest = c.state.digest();
                let mut with_bad = txs.clone();
                with_bad.push(bad);
                let b = c.block_for(with_bad);
                prop_assert!(c.apply(&b).is_err());
                prop_assert_eq!(c.state.digest(), digest);
            }
            let b = c.block_for(txs);
            let out = c.apply(&b).expect("agent and action transactions are admissible").clone();
            blocks.push(b);
            let events = all_events(&out);
            record_asks(&events, &mut asks);
            for e in &events { if let Event::JobSubmitted { job, .. } = e { jobs.push(*job); } }
            check_invariants(&c.state, &events, &asks)?;
        }
        // Determinism: replaying the same blocks from genesis gives the same state.
        let (mut replay, _) = setup();
        for b in &blocks { replay.apply(b).expect("replays"); }
        prop_assert_eq!(replay.state.digest(), c.state.digest());
        // And the state survives a round trip through store entries.
        let rebuilt = State::from_entries(c.state.entries().into_iter().map(|(k, v)| (k, v.expect("live"))));
        prop_assert_eq!(rebuilt.expect("decodes").digest(), c.state.digest());
    }

    #[test]
    fn write_sets_reproduce_the_state(actions in prop::collection::vec(prop::collection::vec(action(), 0..3), 1..12)) {
        // Applying each block's write set to a key-value map yields exactly the state's entries:
        // what the chain commits to its store is complete.
        let (mut c, _) = setup();
        let mut store: BTreeMap<Vec<u8>, Vec<u8>> =
            c.state.entries().into_iter().map(|(k, v)| (k, v.expect("live"))).collect();
        for batch in &actions {
            let mut txs = agent_txs(&c);
            let mut pending: BTreeMap<AccountId, u64> = BTreeMap::new();
            for t in &txs { *pending.entry(t.tx.sender).or_default() += 1; }
            for a in batch {
                let sender = match a { Action::Ask { provider, .. } => id(PROVIDERS[*provider as usize]),
                    Action::Transfer { from: w, .. } | Action::Bond { who: w, .. } | Action::Unbond { who: w, .. }
                    | Action::Job { who: w, .. } | Action::CancelJob { who: w, .. } | Action::Random(_, w) => id(&user(*w)),
                    _ => continue };
                let n = pending.entry(sender).or_default();
                if let Some(tx) = action_tx(&c, a, &[], *n) { txs.push(tx); *n += 1; }
            }
            let b = c.block_for(txs);
            let out = c.apply(&b).expect("admissible").clone();
            for (k, v) in out.writes {
                match v { Some(v) => { store.insert(k, v); } None => { store.remove(&k); } }
            }
            let expected: BTreeMap<Vec<u8>, Vec<u8>> =
                c.state.entries().into_iter().map(|(k, v)| (k, v.expect("live"))).collect();
            prop_assert_eq!(&store, &expected);
        }
    }
}

#[test]
fn cheater_is_caught_and_honest_providers_are_not() {
    // Deterministic long run: only the cheater and one honest provider ask; jobs keep coming.
    let (mut c, mut asks) = setup();
    let mut slashed = false;
    for round in 0..40u64 {
        let mut txs = agent_txs(&c);
        let mut pending: BTreeMap<AccountId, u64> = BTreeMap::new();
        for t in &txs {
            *pending.entry(t.tx.sender).or_default() += 1;
        }
        for (n, price) in [("p0", 3), (CHEATER, 1)] {
            let k = id(n);
            let nn = pending.entry(k).or_default();
            txs.push(c.tx_n(n, ask(&c, price, 100), *nn));
            *nn += 1;
        }
        let who = format!("u{}", round % 8);
        let nn = pending.entry(id(&who)).or_default();
        txs.push(c.tx_n(&who, TxPayload::SubmitJob { manifest: manifest(&c, 1, 4, 50, 10) }, *nn));
        let out = c.block(txs).clone();
        let events = all_events(&out);
        record_asks(&events, &mut asks);
        slashed |= events.iter().any(|e| matches!(e, Event::ProviderSlashed { .. }));
        check_invariants(&c.state, &events, &asks).unwrap();
    }
    assert!(slashed, "the cheater was never caught");
    assert!(c.state.provider(&id(CHEATER)).unwrap().ejected_until > c.height());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Over any run of blocks, each with a proposer and leaders consensus reports missed, a
    /// validator is jailed exactly when `miss_jail_streak` of its slots in a row went missed
    /// (no block of its own in between), nothing is ever burned for it, and honest proposers
    /// keep their seats.
    #[test]
    fn missed_slots_jail_exactly_the_validators_with_a_streak(
        limit in 1u128..6,
        blocks in proptest::collection::vec((0u8..4, proptest::collection::vec(0u8..5, 0..4)), 1..120),
    ) {
        let mut c = TestChain::with_params(Params { miss_jail_streak: limit, ..Params::default() });
        let limit = Params::u64(c.state.params().miss_jail_streak);
        let validator = |i: u8| crate::sim::id(&format!("v{i}"));
        let supply = c.state.meta().supply.clone();
        let mut streak = [0u64; 4];
        let mut jailed = [false; 4];
        for (proposer, missed) in blocks {
            let mut b = c.block_for(vec![]);
            b.header.proposer = validator(proposer);
            // Index 4 is an account that is not a validator.
            let reported: Vec<AccountId> = missed
                .iter()
                .map(|&m| if m == 4 { crate::sim::id("u0") } else { validator(m) })
                .collect();
            c.apply_after_missed(&b, reported).unwrap();
            let missed: std::collections::BTreeSet<u8> = missed.into_iter().filter(|&m| m < 4 && m != proposer).collect();
            for v in 0..4u8 {
                if missed.contains(&v) {
                    streak[v as usize] += 1;
                    if streak[v as usize] >= limit {
                        streak[v as usize] = 0;
                        jailed[v as usize] = true;
                    }
                } else if v == proposer {
                    streak[v as usize] = 0;
                }
                let got = c.state.validator(&validator(v)).unwrap();
                prop_assert_eq!(u64::from(got.missed_streak), streak[v as usize]);
                prop_assert_eq!(got.jailed_until > 0, jailed[v as usize]);
                prop_assert_eq!(got.stake, Amount(100_000));
            }
        }
        prop_assert_eq!(&c.state.meta().supply, &supply);
    }
}
