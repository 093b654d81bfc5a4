//! End-to-end ledger scenarios: each walks one path of the protocol and checks balances,
//! states and events.

use super::harness::*;
use crate::error::{BlockError, TxRejection};
use crate::events::{AuditOutcome, Event, LeaseFailure};
use crate::jobs::ShardStatus;
use crate::leases::LeaseStatus;
use crate::market::Order;
use crate::params::Params;
use agora_core::block::{FaultKind, Misbehavior};
use agora_core::disclosure::{KeyDisclosure, input_key_context};
use agora_core::manifest::{ClusterSpec, LatencyBound};
use agora_core::tx::{ParamChange, TxPayload};
use agora_core::{Amount, Coord, Hash};

fn find<T>(events: &[Event], f: impl Fn(&Event) -> Option<T>) -> Vec<T> {
    events.iter().filter_map(f).collect()
}

fn leases_created(events: &[Event]) -> Vec<(u64, agora_core::AccountId, Amount)> {
    find(events, |e| match e {
        Event::LeaseCreated { lease, provider, unit_price, .. } => Some((*lease, *provider, *unit_price)),
        _ => None,
    })
}

#[test]
fn transfer_and_fee_burn() {
    let mut c = TestChain::new();
    let before = c.state.balance(&id("u0"));
    c.ok("u0", TxPayload::Transfer { to: id("u1"), amount: Amount(500) });
    assert_eq!(c.state.balance(&id("u0")), Amount(before.0 - 500 - 10));
    assert_eq!(c.state.balance(&id("u1")), Amount(10_000_000 + 500));
    assert_eq!(c.state.meta().supply.burned, Amount(10));
    assert_eq!(c.state.nonce(&id("u0")), 1);
}

#[test]
fn failed_payload_charges_fee_only() {
    let mut c = TestChain::new();
    let err = c.fails("u0", TxPayload::Transfer { to: id("u1"), amount: Amount(u128::MAX / 2) });
    assert!(err.contains("insufficient funds"), "{err}");
    assert_eq!(c.state.balance(&id("u0")), Amount(10_000_000 - 10));
    assert_eq!(c.state.balance(&id("u1")), Amount(10_000_000));
    assert_eq!(c.state.nonce(&id("u0")), 1);
}

#[test]
fn bad_nonce_signature_and_fee_reject_the_block() {
    let mut c = TestChain::new();
    let good = c.tx("u0", TxPayload::Transfer { to: id("u1"), amount: Amount(1) });
    let replay = good.clone();
    let b = c.block_for(vec![good, replay]);
    assert!(matches!(
        c.apply(&b),
        Err(BlockError::Tx { index: 1, reason: TxRejection::Nonce { expected: 1, got: 0 } })
    ));
    let mut forged = c.tx("u0", TxPayload::Transfer { to: id("u1"), amount: Amount(1) });
    forged.tx.payload = TxPayload::Transfer { to: id("u1"), amount: Amount(2) };
    let b = c.block_for(vec![forged]);
    assert!(matches!(c.apply(&b), Err(BlockError::Tx { reason: TxRejection::Signature(_), .. })));
    let mut cheap = c.tx("u0", TxPayload::Transfer { to: id("u1"), amount: Amount(1) });
    cheap.tx.fee = Amount(1);
    let cheap = cheap.tx.sign(CHAIN, &key("u0"));
    let b = c.block_for(vec![cheap]);
    assert!(matches!(c.apply(&b), Err(BlockError::Tx { reason: TxRejection::FeeTooLow { .. }, .. })));
    // Nothing changed.
    assert_eq!(c.height(), 0);
    assert_eq!(c.state.nonce(&id("u0")), 0);
}

#[test]
fn builder_skips_what_would_invalidate_the_block() {
    let c = TestChain::new();
    let mut b = c.builder();
    let t0 = c.tx("u0", TxPayload::Transfer { to: id("u1"), amount: Amount(1) });
    assert!(b.push(&t0).is_ok());
    assert!(b.push(&t0).is_err(), "replay refused");
    assert_eq!(b.txs().len(), 1);
}

#[test]
fn timestamps_and_heights_are_checked() {
    let mut c = TestChain::new();
    let mut b = c.block_for(vec![]);
    b.header.height = 5;
    assert!(matches!(c.apply(&b), Err(BlockError::Height { .. })));
    let mut b = c.block_for(vec![]);
    b.header.timestamp_ms = START_MS - 1;
    assert!(matches!(c.apply(&b), Err(BlockError::Timestamp { .. })));
    let mut b = c.block_for(vec![]);
    b.header.tx_root = Hash::ZERO;
    assert!(matches!(c.apply(&b), Err(BlockError::BodyMismatch)));
}

#[test]
fn bonding_unbonding_and_committee_rotation() {
    let p = Params { epoch_length: 5, unbonding_blocks: 3, ..Params::default() };
    let mut c = TestChain::with_params(p);
    assert_eq!(c.state.meta().committee.len(), 4);
    // u0 out-stakes everyone: joins the committee at the next epoch boundary.
    c.ok("u0", TxPayload::Bond { amount: Amount(500_000) });
    assert!(!c.state.meta().committee.contains(&id("u0")));
    c.advance(5);
    assert_eq!(c.state.meta().committee[0], id("u0"));
    assert_eq!(c.state.meta().committee.len(), 4);
    c.ok("u0", TxPayload::Unbond { amount: Amount(500_000) });
    let bal = c.state.balance(&id("u0"));
    c.advance(3);
    assert_eq!(c.state.balance(&id("u0")), Amount(bal.0 + 500_000));
    assert!(c.state.validator(&id("u0")).is_none());
}

#[test]
fn committee_rotates_after_the_last_block_of_an_epoch() {
    // The first block of an epoch is produced by that epoch's committee, so the ledger must
    // settle it by the block before.
    let mut c = TestChain::with_params(Params { epoch_length: 5, ..Params::default() });
    c.advance(1);
    c.ok("u0", TxPayload::Bond { amount: Amount(500_000) });
    let member = |c: &TestChain| c.state.meta().committee.contains(&id("u0"));
    while !(c.height() + 1).is_multiple_of(5) {
        assert!(!member(&c), "joined early, at height {}", c.height());
        assert_eq!(c.state.meta().epoch, 0);
        c.advance(1);
    }
    assert_eq!(c.height(), 4, "the last block of epoch 0");
    assert!(member(&c));
    assert_eq!(c.state.meta().epoch, 1, "the epoch of the next block");
    assert!(c.last_events().iter().any(|e| matches!(e, Event::CommitteeChanged { epoch: 1, .. })));
}

#[test]
fn equivocation_is_punished_once() {
    let mut c = TestChain::new();
    let m = Misbehavior {
        offender: id("v1"),
        kind: FaultKind::ConflictingNotarize,
        epoch: 0,
        view: 7,
        proof: vec![1],
    };
    let mut b = c.block_for(vec![]);
    b.evidence = vec![m.clone(), m.clone()];
    b.header.evidence_root = agora_core::block::encoded_root(&b.evidence);
    c.apply(&b).unwrap();
    let v = c.state.validator(&id("v1")).unwrap();
    assert_eq!(v.stake, Amount(100_000 - 5_000));
    assert!(v.jailed_until > c.height());
    // Reported again later: no second penalty.
    let mut b = c.block_for(vec![]);
    b.evidence = vec![m];
    b.header.evidence_root = agora_core::block::encoded_root(&b.evidence);
    c.apply(&b).unwrap();
    assert_eq!(c.state.validator(&id("v1")).unwrap().stake, Amount(95_000));
    // Evidence against a non-validator invalidates the block.
    let mut b = c.block_for(vec![]);
    b.evidence = vec![Misbehavior {
        offender: id("u5"),
        kind: FaultKind::ConflictingFinalize,
        epoch: 0,
        view: 1,
        proof: vec![],
    }];
    b.header.evidence_root = agora_core::block::encoded_root(&b.evidence);
    assert!(matches!(c.apply(&b), Err(BlockError::Evidence(_))));
}

#[test]
fn a_validator_that_keeps_missing_its_slots_is_jailed_and_left_out_of_the_next_committee() {
    let mut c = TestChain::new();
    let limit = crate::params::Params::u64(c.state.params().miss_jail_streak) as u32;
    let streak = |c: &TestChain| c.state.validator(&id("v1")).unwrap().missed_streak;
    let block_by = |c: &TestChain, proposer: &str| {
        let mut b = c.block_for(vec![]);
        b.header.proposer = id(proposer);
        b
    };
    // One short of the limit, reported twice in some blocks: counted once per block.
    for _ in 0..limit - 1 {
        let b = block_by(&c, "v0");
        c.apply_after_missed(&b, vec![id("v1"), id("v1"), id("v2")]).unwrap();
    }
    assert_eq!(streak(&c), limit - 1);
    // It proposes once: the streak starts again (and a proposer reported missed is not counted).
    let b = block_by(&c, "v1");
    c.apply_after_missed(&b, vec![id("v1")]).unwrap();
    assert_eq!(streak(&c), 0);
    assert_eq!(c.state.validator(&id("v1")).unwrap().jailed_until, 0);
    // `limit` misses in a row: jailed, nothing burned, and the next committee is elected without it.
    let supply = c.state.meta().supply.clone();
    for _ in 0..limit {
        let b = block_by(&c, "v0");
        c.apply_after_missed(&b, vec![id("v1")]).unwrap();
    }
    let v1 = c.state.validator(&id("v1")).unwrap().clone();
    assert!(v1.jailed_until > c.height(), "jailed");
    assert_eq!(
        v1.stake,
        Amount(100_000),
        "nothing burned: an honest validator that was down misses slots too"
    );
    assert_eq!(c.state.meta().supply, supply);
    assert!(
        c.last_events()
            .iter()
            .any(|e| matches!(e, Event::ValidatorJailed { validator, .. } if *validator == id("v1")))
    );
    assert!(!crate::staking::elect_committee(&c.state, c.height() + 1).contains(&id("v1")));
    // v2 stopped one short of the limit: not jailed.
    assert_eq!(c.state.validator(&id("v2")).unwrap().jailed_until, 0);
    assert_eq!(c.state.validator(&id("v2")).unwrap().missed_streak, limit - 1);
    // Reports about accounts that are not validators change nothing.
    let b = block_by(&c, "v0");
    c.apply_after_missed(&b, vec![id("u1")]).unwrap();
}

#[test]
fn job_matches_at_the_next_ask_price_and_refunds_the_over_lock() {
    let mut c = TestChain::new();
    register(&mut c, "p0", "local", 100);
    register(&mut c, "p1", "local", 100);
    c.ok("p0", ask(&c, 2, 3600));
    c.ok("p1", ask(&c, 3, 3600));
    let before = c.state.balance(&id("u0"));
    let m = manifest(&c, 2, 10, 60, 10);
    c.ok("u0", TxPayload::SubmitJob { manifest: m });
    let leases = leases_created(&c.last_events());
    assert_eq!(leases.len(), 2);
    // Spare supply: the next unmatched ask (p1 at 3, or p0's remaining capacity at 2) sets the price.
    for (_, provider, price) in &leases {
        assert_eq!(*price, Amount(2));
        assert_eq!(*provider, id("p0"));
    }
    // Escrow holds price × quantity; the rest of max price was refunded.
    assert_eq!(c.state.balance(&id("u0")), Amount(before.0 - 10 - 2 * 60 * 2));
    assert_eq!(c.state.meta().supply.escrow, Amount(2 * 60 * 2));
}

#[test]
fn shards_of_one_job_spread_over_providers_at_the_same_price() {
    let mut c = TestChain::new();
    for p in ["p0", "p1", "p2"] {
        register(&mut c, p, "local", 100);
        c.ok(p, ask(&c, 2, 3600));
    }
    let m = manifest(&c, 3, 10, 60, 10);
    c.ok("u0", TxPayload::SubmitJob { manifest: m });
    let mut providers: Vec<_> = leases_created(&c.last_events()).iter().map(|l| l.1).collect();
    providers.sort();
    providers.dedup();
    assert_eq!(providers.len(), 3, "each shard on its own provider");
    // A later job's shards also spread, independently of the first job's placement.
    let m = manifest(&c, 2, 10, 60, 10);
    c.ok("u1", TxPayload::SubmitJob { manifest: m });
    let l = leases_created(&c.last_events());
    assert_eq!(l.len(), 2);
    assert_ne!(l[0].1, l[1].1);
}

/// Runs a one-shard job to commitment and returns (job, lease).
fn leased_job(c: &mut TestChain, items: u32) -> (u64, u64) {
    register(c, "p0", "local", 100);
    register(c, "p1", "local", 100);
    register(c, "p2", "local", 100);
    register(c, "p3", "local", 100);
    c.ok("p0", ask(c, 2, 3600));
    let m = manifest(c, 1, items, 60, 10);
    c.ok("u0", TxPayload::SubmitJob { manifest: m });
    let job = *c.state.jobs.iter().next().unwrap().0;
    let lease = leases_created(&c.last_events())[0].0;
    (job, lease)
}

#[test]
fn honest_commitment_is_audited_then_paid() {
    let mut c = TestChain::new();
    let (job, lease) = leased_job(&mut c, 20);
    c.ok("p0", TxPayload::CommitResult { lease, commitment: commitment(honest_root(job, 0), 20, 30_000) });
    c.advance(1); // audit draw
    let l = c.state.lease(lease).unwrap().clone();
    // A new provider is always audited (trust streak below the threshold).
    assert_eq!(l.verification.audit_ppm, 1_000_000);
    assert!(l.verification.audited);
    assert_eq!(l.verification.sample, 20);
    let audit_id = l.audit.unwrap();
    let audit = c.state.audit(audit_id).unwrap().clone();
    assert_eq!(audit.items.len(), 20);
    let auditor = audit.assignments[0].auditor;
    assert!(auditor != id("p0") && auditor != id("u0"));
    let name = ["p1", "p2", "p3", "v0", "v1", "v2", "v3"].into_iter().find(|n| id(n) == auditor).unwrap();
    let auditor_before = c.state.balance(&auditor);
    let provider_before = c.state.balance(&id("p0"));
    let requester_before = c.state.balance(&id("u0"));
    c.ok(name, report(&c.state, audit_id, true));
    let l = c.state.lease(lease).unwrap();
    assert_eq!(l.status, LeaseStatus::Settled);
    let s = l.settlement.clone().unwrap();
    // 30 of 60 device-seconds used at price 2: 60 charged, 60 refunded; 1% audit fee.
    assert_eq!(s.requester_refund, Amount(60));
    assert_eq!(s.auditors_paid, Amount(0)); // 1% of 60 rounds down to 0
    assert_eq!(s.provider_paid, Amount(60));
    assert_eq!(c.state.balance(&id("p0")), Amount(provider_before.0 + 60));
    assert_eq!(c.state.balance(&id("u0")), Amount(requester_before.0 + 60));
    assert_eq!(c.state.balance(&auditor), Amount(auditor_before.0 - 10));
    // A 20-item sample earns 20/90 of a streak step: trust counts detection, not audits.
    let t = &c.state.provider(&id("p0")).unwrap().trust;
    assert_eq!((t.clean_streak, t.clean_credit_ppm, t.audits_passed), (0, full_step_share(&c, 20), 1));
    assert!(matches!(c.state.job(job).unwrap().shards[0].status, ShardStatus::Done(_)));
    assert!(c.state.job(job).unwrap().finished);
    assert_eq!(c.state.meta().supply.escrow, Amount::ZERO);
}

#[test]
fn fraud_escalates_slashes_and_requeues_with_the_requester_made_whole() {
    let mut c = TestChain::new();
    let (job, lease) = leased_job(&mut c, 20);
    c.ok("p0", TxPayload::CommitResult { lease, commitment: commitment(Hash::of(b"garbage"), 20, 60_000) });
    c.advance(1);
    let audit_id = c.state.lease(lease).unwrap().audit.unwrap();
    let names = ["p1", "p2", "p3", "v0", "v1", "v2", "v3"];
    let name_of = |a: &agora_core::AccountId| names.into_iter().find(|n| id(n) == *a).unwrap();
    let first = c.state.audit(audit_id).unwrap().assignments[0].auditor;
    c.ok(name_of(&first), report(&c.state, audit_id, false));
    let audit = c.state.audit(audit_id).unwrap().clone();
    assert!(audit.escalated);
    // The recount: the committee's validators (less any already assigned), by stake.
    let recount = &audit.assignments[1..];
    assert!(
        recount.len() >= 3 && recount.iter().all(|a| a.recount && c.state.validator(&a.auditor).is_some())
    );
    let collateral_before = c.state.provider(&id("p0")).unwrap().collateral;
    let requester_balance = c.state.balance(&id("u0"));
    for a in &audit.assignments[1..] {
        c.ok(name_of(&a.auditor), report(&c.state, audit_id, false));
    }
    let audit = c.state.audit(audit_id).unwrap();
    assert_eq!(audit.outcome, Some(AuditOutcome::Fraud));
    let p0 = c.state.provider(&id("p0")).unwrap();
    assert!(p0.collateral < collateral_before);
    assert!(p0.ejected_until > c.height());
    assert_eq!(p0.trust.frauds, 1);
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Failed(LeaseFailure::Fraud));
    // The shard is back in the book with full escrow, never again for p0; the requester paid
    // only the top-up back to max price, which is returned when the new lease clears.
    let shard = &c.state.job(job).unwrap().shards[0];
    assert!(shard.excluded.contains(&id("p0")));
    assert!(matches!(shard.status, ShardStatus::Open(_)) || matches!(shard.status, ShardStatus::Leased(_)));
    let slashed: Vec<Amount> = find(&c.history(), |e| match e {
        Event::ProviderSlashed { amount, to_auditors, .. } => {
            Some(*to_auditors).filter(|_| !amount.is_zero())
        }
        _ => None,
    });
    assert_eq!(slashed.len(), 1);
    assert!(c.state.balance(&id("u0")) <= requester_balance);
    // An honest provider picks the shard up once it asks.
    c.ok("p1", ask(&c, 3, 3600));
    let relisted = leases_created(&c.last_events());
    assert_eq!(relisted.len(), 1);
    assert_eq!(relisted[0].1, id("p1"));
}

#[test]
fn a_failure_the_recount_refutes_clears_the_provider_and_a_split_recount_is_inconclusive() {
    for split in [false, true] {
        let mut c = TestChain::new();
        let (job, lease) = leased_job(&mut c, 20);
        c.ok(
            "p0",
            TxPayload::CommitResult { lease, commitment: commitment(honest_root(job, 0), 20, 60_000) },
        );
        c.advance(1);
        let audit_id = c.state.lease(lease).unwrap().audit.unwrap();
        let names = ["p1", "p2", "p3", "v0", "v1", "v2", "v3"];
        let name_of = |a: &agora_core::AccountId| names.into_iter().find(|n| id(n) == *a).unwrap();
        let first = c.state.audit(audit_id).unwrap().assignments[0].auditor;
        c.ok(name_of(&first), report(&c.state, audit_id, false));
        let recount: Vec<_> =
            c.state.audit(audit_id).unwrap().assignments[1..].iter().map(|a| a.auditor).collect();
        let failing = if split { recount.len().div_ceil(2) } else { 0 };
        for (i, a) in recount.iter().enumerate() {
            let passed = i >= failing;
            c.ok(name_of(a), report(&c.state, audit_id, passed));
        }
        let p0 = c.state.provider(&id("p0")).unwrap();
        assert_eq!(p0.trust.frauds, 0);
        assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Settled);
        if split {
            // Neither two thirds failing nor a majority passing: no slash, but certainty next.
            assert_eq!(c.state.audit(audit_id).unwrap().outcome, Some(AuditOutcome::Inconclusive));
            assert_eq!(p0.trust.forced_audits, 10);
        } else {
            // The recount cleared it: an honest provider keeps its record.
            assert_eq!(c.state.audit(audit_id).unwrap().outcome, Some(AuditOutcome::Clean));
            let t = &p0.trust;
            assert_eq!(
                (t.forced_audits, t.clean_credit_ppm, t.audits_passed),
                (0, full_step_share(&c, 20), 1)
            );
        }
    }
}

#[test]
fn silent_auditors_are_replaced_and_silence_is_never_a_pass() {
    // Before, an audit nobody reported on closed Clean: the lease was paid and the provider's
    // trust rose, so a cheater that withheld its audit items (or drew lazy auditors) won.
    let p = Params { audit_report_blocks: 2, ..Params::default() };
    let mut c = TestChain::with_params(p);
    let (job, lease) = leased_job(&mut c, 20);
    c.ok("p0", TxPayload::CommitResult { lease, commitment: commitment(honest_root(job, 0), 20, 60_000) });
    c.advance(1);
    let audit_id = c.state.lease(lease).unwrap().audit.unwrap();
    let collateral = c.state.provider(&id("p0")).unwrap().collateral;
    let earned = c.state.provider(&id("p0")).unwrap().earned;
    c.advance(2 * 3 + 1);
    let audit = c.state.audit(audit_id).unwrap();
    assert_eq!(audit.replacements, 2);
    assert_eq!(audit.outcome, Some(AuditOutcome::Unverified));
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Failed(LeaseFailure::Unverified));
    let p0 = c.state.provider(&id("p0")).unwrap();
    assert_eq!((p0.collateral, p0.earned), (collateral, earned), "not slashed, not paid");
    assert_eq!(p0.trust.clean_streak, 0);
    assert!(p0.trust.forced_audits > 0, "its next leases are audited with certainty");
    assert!(c.state.job(job).unwrap().shards[0].excluded.contains(&id("p0")), "re-matched elsewhere");
}

#[test]
fn missed_deadline_penalises_and_requeues() {
    let p = Params { lease_grace_ms: 0, lease_slack_pct: 100, liveness_blocks: 1_000, ..Params::default() };
    let mut c = TestChain::with_params(p);
    let (job, lease) = leased_job(&mut c, 20);
    c.ok("p1", ask(&c, 3, 3600));
    let requester = c.state.balance(&id("u0"));
    let collateral = c.state.provider(&id("p0")).unwrap().collateral;
    let burned = c.state.meta().supply.burned;
    c.advance(61); // 60 device-seconds at 100% slack = 60 s = 60 blocks
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Failed(LeaseFailure::MissedDeadline));
    let penalty = Amount(120).bps(1_000);
    assert_eq!(c.state.provider(&id("p0")).unwrap().collateral, Amount(collateral.0 - penalty.0));
    let events = c.history();
    assert!(events.iter().any(|e| matches!(e, Event::ShardRequeued { job: j, .. } if *j == job)));
    // Re-matched to p1 (p0 excluded). The penalty is burned: a requester must never profit
    // from a failure (review F3), so its balance only paid the top-up back to the max price.
    let relisted: Vec<_> = leases_created(&events).into_iter().filter(|l| l.0 != lease).collect();
    assert_eq!(relisted[0].1, id("p1"));
    assert!(c.state.balance(&id("u0")) <= requester);
    assert!(c.state.meta().supply.burned.0 >= burned.0 + penalty.0);
}

#[test]
fn vanished_provider_loses_its_leases() {
    let p = Params { liveness_blocks: 5, ..Params::default() };
    let mut c = TestChain::with_params(p);
    let (_, lease) = leased_job(&mut c, 20);
    // p1..p3 keep sending heartbeats; p0 does not.
    for _ in 0..6 {
        let txs = ["p1", "p2", "p3"]
            .iter()
            .map(|n| c.tx(n, TxPayload::Heartbeat { coord: Coord::default() }))
            .collect();
        c.block(txs);
    }
    assert!(!c.state.provider(&id("p0")).unwrap().active);
    assert!(c.state.provider(&id("p1")).unwrap().active);
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Failed(LeaseFailure::ProviderVanished));
    assert!(c.state.orders().all(|(_, o)| !matches!(o, Order::Ask(a) if a.provider == id("p0"))));
}

#[test]
fn cancel_refunds_open_shards_and_pays_the_cancellation_fee() {
    let mut c = TestChain::new();
    register(&mut c, "p0", "local", 100);
    c.ok("p0", ask(&c, 2, 60));
    let before = c.state.balance(&id("u0"));
    let m = manifest(&c, 2, 10, 60, 10); // p0 has room for one shard only
    c.ok("u0", TxPayload::SubmitJob { manifest: m });
    let job = *c.state.jobs.iter().next().unwrap().0;
    let p0 = c.state.balance(&id("p0"));
    c.ok("u0", TxPayload::CancelJob { job });
    let j = c.state.job(job).unwrap();
    assert!(j.finished && j.cancelled);
    // Demand exceeded supply, so the losing shard's bid (10) set the price: the lease held
    // 600. The open shard is refunded in full; the leased one minus 10% paid to p0.
    assert_eq!(c.state.balance(&id("p0")), Amount(p0.0 + 60));
    assert_eq!(c.state.balance(&id("u0")), Amount(before.0 - 20 - 60));
    assert_eq!(c.state.meta().supply.escrow, Amount::ZERO);
}

#[test]
fn a_cancel_after_compute_started_pays_for_the_time_it_ran() {
    // Before: a requester that let a lease run 40 of its 60 device-seconds and then cancelled
    // paid the provider the 10% cancel fee only, and kept the rest of what the work cost.
    let mut c = TestChain::new();
    let (job, lease) = leased_job(&mut c, 20);
    let l = c.state.lease(lease).unwrap().clone();
    c.advance(39);
    let (p0, u0, burned) =
        (c.state.balance(&id("p0")), c.state.balance(&id("u0")), c.state.meta().supply.burned);
    c.ok("u0", TxPayload::CancelJob { job });
    let ran = (c.now_ms() - l.start_ms).div_ceil(1000);
    assert_eq!(ran, 40);
    let (charged, earned) = (l.buyer_price.0 * 40, l.seller_price.0 * 40);
    assert!(earned > l.escrow.bps(1_000).0, "more than the cancel fee");
    assert_eq!(c.state.balance(&id("p0")), Amount(p0.0 + earned));
    assert_eq!(
        c.state.balance(&id("u0")),
        Amount(u0.0 + l.escrow.0 - charged - 10),
        "refund minus the tx fee"
    );
    assert_eq!(
        c.state.meta().supply.burned,
        Amount(burned.0 + charged - earned + 10),
        "the spread and the fee"
    );
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Failed(LeaseFailure::Cancelled));
    assert_eq!(c.state.meta().supply.escrow, Amount::ZERO);
    assert!(c.state.meta().supply.is_conserved());
}

#[test]
fn energy_beyond_what_any_device_draws_is_refused() {
    // Receipts state energy and emissions from the provider's metering: before, any figure
    // was accepted, so a provider could report a green lease as coal-fired or the reverse.
    let mut c = TestChain::new();
    let (job, lease) = leased_job(&mut c, 20);
    let mut claim = commitment(honest_root(job, 0), 20, 36_000);
    claim.metering.energy_mwh = 20_001; // 36 device-seconds at 2,000 W is 20,000 mWh
    let e = c.fails("p0", TxPayload::CommitResult { lease, commitment: claim.clone() });
    assert!(e.contains("more than 2000 W"), "{e}");
    claim.metering.energy_mwh = 20_000;
    c.ok("p0", TxPayload::CommitResult { lease, commitment: claim });
}

#[test]
fn a_committed_lease_is_paid_in_full_whatever_the_requester_cancels() {
    // Once the commitment (and with it the output's address) is on chain, a cancel cannot
    // take the work back: the lease is audited and settled as if nothing happened.
    let mut c = TestChain::new();
    let (job, lease) = leased_job(&mut c, 20);
    c.ok("p0", TxPayload::CommitResult { lease, commitment: commitment(honest_root(job, 0), 20, 30_000) });
    c.ok("u0", TxPayload::CancelJob { job });
    let audit = c.state.lease(lease).unwrap().audit.expect("a new provider is always audited");
    let auditor = c.state.audit(audit).unwrap().assignments[0].auditor;
    let name = ["p1", "p2", "p3", "v0", "v1", "v2", "v3"].into_iter().find(|n| id(n) == auditor).unwrap();
    c.ok(name, report(&c.state, audit, true));
    let l = c.state.lease(lease).unwrap();
    assert_eq!(l.status, LeaseStatus::Settled);
    let paid = l.settlement.as_ref().unwrap().provider_paid;
    assert_eq!(
        paid,
        Amount(l.seller_price.0 * 30 - l.seller_price.0 * 30 / 100),
        "30 device-seconds less the 1% audit fee"
    );
}

#[test]
fn inputs_that_auditors_confirm_invalid_cost_the_provider_nothing() {
    // Before: a requester whose inputs did not match their declared root left the provider
    // unable to commit; the lease missed its deadline and the provider paid the non-delivery
    // penalty for the requester's fault.
    let mut c = TestChain::new();
    let (job, lease) = leased_job(&mut c, 20);
    let l = c.state.lease(lease).unwrap().clone();
    let (p0, collateral, u0) = (
        c.state.balance(&id("p0")),
        c.state.provider(&id("p0")).unwrap().collateral,
        c.state.balance(&id("u0")),
    );
    c.ok("p0", TxPayload::ReportInvalidInput { lease, item: None, disclosure: None });
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::InputDisputed);
    c.advance(1);
    let audit = c.state.lease(lease).unwrap().audit.expect("every statement is checked");
    assert_eq!(c.state.audit(audit).unwrap().subject, crate::audits::AuditSubject::Inputs);
    settle_audit(&mut c, audit, true);
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Failed(LeaseFailure::InvalidInput));
    let fee = l.escrow.bps(1_000);
    assert_eq!(c.state.balance(&id("p0")), Amount(p0.0 + fee.0 - 10), "compensated, less its tx fee");
    assert_eq!(c.state.provider(&id("p0")).unwrap().collateral, collateral, "no penalty");
    assert_eq!(c.state.provider(&id("p0")).unwrap().trust.leases_failed, 0);
    assert_eq!(c.state.balance(&id("u0")), Amount(u0.0 + l.escrow.0 - fee.0), "the rest refunded");
    let j = c.state.job(job).unwrap();
    assert!(
        matches!(j.shards[0].status, ShardStatus::Abandoned),
        "not re-matched: the inputs would fail again"
    );
    assert!(j.finished);
    assert_eq!(c.state.meta().supply.escrow, Amount::ZERO);
    assert!(c.state.meta().supply.is_conserved());
}

#[test]
fn a_false_invalid_input_statement_is_refuted_and_penalized() {
    // A provider that calls computable inputs invalid to walk away from a lease pays the
    // non-delivery penalty once the recount refutes it, and the shard goes to someone else.
    let mut c = TestChain::new();
    let (job, lease) = leased_job(&mut c, 20);
    let value = c.state.lease(lease).unwrap().value();
    let collateral = c.state.provider(&id("p0")).unwrap().collateral;
    c.ok("p0", TxPayload::ReportInvalidInput { lease, item: Some(3), disclosure: None });
    c.advance(1);
    let audit = c.state.lease(lease).unwrap().audit.unwrap();
    assert_eq!(c.state.audit(audit).unwrap().items, vec![3]);
    settle_audit(&mut c, audit, false);
    assert_eq!(c.state.audit(audit).unwrap().outcome, Some(AuditOutcome::Fraud));
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Failed(LeaseFailure::FalseInputClaim));
    let penalty = value.bps(1_000);
    assert_eq!(c.state.provider(&id("p0")).unwrap().collateral, Amount(collateral.0 - penalty.0));
    assert!(matches!(c.state.job(job).unwrap().shards[0].status, ShardStatus::Open(_)), "re-matched");
    assert!(c.state.meta().supply.is_conserved());
}

#[test]
fn invalid_input_statements_are_the_providers_and_for_checkable_jobs_only() {
    let mut c = TestChain::new();
    let (_, lease) = leased_job(&mut c, 20);
    let e = c.fails("u0", TxPayload::ReportInvalidInput { lease, item: None, disclosure: None });
    assert!(e.contains("only the lease's provider"), "{e}");
    let e = c.fails("p0", TxPayload::ReportInvalidInput { lease, item: Some(20), disclosure: None });
    assert!(e.contains("not item 20"), "{e}");
    // Once stated, never again: the lease is no longer running (no second draw, no restart).
    c.ok("p0", TxPayload::ReportInvalidInput { lease, item: None, disclosure: None });
    let e = c.fails("p0", TxPayload::ReportInvalidInput { lease, item: Some(1), disclosure: None });
    assert!(e.contains("not running"), "{e}");
}

/// An encrypted 20-item job leased to p0 (with p1..p3 registered to audit), and its lease.
fn leased_encrypted(c: &mut TestChain) -> u64 {
    for p in ["p0", "p1", "p2", "p3"] {
        register(c, p, "local", 100);
    }
    c.ok("p0", ask(c, 2, 3600));
    let mut m = manifest(c, 1, 20, 60, 10);
    m.encrypted = true;
    c.ok("u0", TxPayload::SubmitJob { manifest: m });
    leases_created(&c.last_events())[0].0
}

#[test]
fn a_requester_cannot_weaponise_encrypted_inputs_the_provider_discloses_its_key() {
    // Before: an encrypted job's inputs could not be disputed at all (auditors hold no key),
    // so a requester that sealed a key that does not open, or encrypted malformed items, left
    // the provider to miss its deadline and pay the non-delivery penalty. Now the provider
    // discloses, with proof, the secret that opens the key it was sent; auditors open the
    // inputs exactly as it did, and an upheld statement costs it nothing.
    let mut c = TestChain::new();
    let lease = leased_encrypted(&mut c);
    let context = input_key_context(lease);
    let stated = |d| TxPayload::ReportInvalidInput { lease, item: None, disclosure: d };
    let honest = KeyDisclosure::prove(&key("p0"), &SEALED_KEY_EPHEMERAL, &context).unwrap();
    // No key shared yet: nothing to dispute (and no penalty is owed for this lease anyway).
    let e = c.fails("p0", stated(Some(honest)));
    assert!(e.contains("no input key was shared"), "{e}");
    c.ok("u0", TxPayload::ShareKey { lease, to: id("p0"), sealed_key: sealed_key() });
    let e = c.fails("p0", stated(None));
    assert!(e.contains("disclosure of the input key"), "{e}");
    // A disclosure made with another account's key, or for another lease, proves nothing.
    let forged = KeyDisclosure::prove(&key("p1"), &SEALED_KEY_EPHEMERAL, &context).unwrap();
    let e = c.fails("p0", stated(Some(forged)));
    assert!(e.contains("does not prove"), "{e}");
    let replayed =
        KeyDisclosure::prove(&key("p0"), &SEALED_KEY_EPHEMERAL, &input_key_context(lease + 1)).unwrap();
    assert!(c.fails("p0", stated(Some(replayed))).contains("does not prove"));
    let (collateral, p0) = (c.state.provider(&id("p0")).unwrap().collateral, c.state.balance(&id("p0")));
    c.ok("p0", stated(Some(honest)));
    assert_eq!(c.state.lease(lease).unwrap().input_disclosure, Some(honest), "stored for the auditors");
    c.advance(1);
    let audit = c.state.lease(lease).unwrap().audit.expect("every statement is checked");
    assert_eq!(c.state.audit(audit).unwrap().subject, crate::audits::AuditSubject::Inputs);
    settle_audit(&mut c, audit, true);
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Failed(LeaseFailure::InvalidInput));
    assert_eq!(c.state.provider(&id("p0")).unwrap().collateral, collateral, "no penalty");
    assert!(c.state.balance(&id("p0")) > p0, "compensated for the requester's fault");
    assert!(c.state.meta().supply.is_conserved());
}

#[test]
fn only_well_formed_sealed_keys_are_shared_and_only_encrypted_jobs_take_disclosures() {
    let mut c = TestChain::new();
    let lease = leased_encrypted(&mut c);
    let share = |sealed_key| TxPayload::ShareKey { lease, to: id("p0"), sealed_key };
    // A key the provider could not disclose for (wrong length or version, or an ephemeral
    // off the curve) is refused before it can be sent.
    let mut bad = sealed_key();
    bad.pop();
    assert!(c.fails("u0", share(bad)).contains("not a sealed key"));
    let mut bad = sealed_key();
    bad[0] = 2;
    assert!(c.fails("u0", share(bad)).contains("not a sealed key"));
    let mut twist = sealed_key();
    twist[1] = 2; // u = 2 lies on the twist, not the curve.
    assert!(c.fails("u0", share(twist)).contains("not a sealed key"));
    c.ok("u0", share(sealed_key()));
    // An unencrypted job's statement carries no disclosure.
    let mut c = TestChain::new();
    let (_, plain) = leased_job(&mut c, 20);
    let d = KeyDisclosure::prove(&key("p0"), &SEALED_KEY_EPHEMERAL, &input_key_context(plain)).unwrap();
    let e = c.fails("p0", TxPayload::ReportInvalidInput { lease: plain, item: None, disclosure: Some(d) });
    assert!(e.contains("without a key disclosure"), "{e}");
}

/// A lease of p0, a provider with a long clean record on a chain without an audit floor (so
/// the draw audits it with a probability of about 0.02%), for a 20-item shard, committed with
/// an honest root; and the chain.
fn committed_unaudited() -> (TestChain, u64, u64) {
    let mut c = TestChain::with_params(Params { audit_floor_ppm: 0, ..Params::default() });
    for p in ["p0", "p1", "p2", "p3"] {
        register(&mut c, p, "local", 100);
    }
    c.state.providers.get_mut(&id("p0")).unwrap().trust.clean_streak = 1_000_000;
    c.ok("p0", ask(&c, 2, 3600));
    c.ok("u0", TxPayload::SubmitJob { manifest: manifest(&c, 1, 20, 60, 10) });
    let (job, lease) = (*c.state.jobs.iter().next().unwrap().0, leases_created(&c.last_events())[0].0);
    c.ok("p0", TxPayload::CommitResult { lease, commitment: commitment(honest_root(job, 0), 20, 30_000) });
    c.advance(1);
    (c, job, lease)
}

#[test]
fn an_unaudited_lease_is_paid_only_once_its_outputs_are_fetched() {
    // Before: a lease the draw did not audit was paid when its window closed, on the
    // provider's word that the committed output blob existed.
    let (mut c, _, lease) = committed_unaudited();
    let l = c.state.lease(lease).unwrap().clone();
    assert!(!l.verification.audited);
    let probe = l.audit.expect("an availability check");
    assert_eq!(c.state.audit(probe).unwrap().subject, crate::audits::AuditSubject::Availability);
    c.advance(10);
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Auditing, "not paid on silence");
    let streak = c.state.provider(&id("p0")).unwrap().trust.clean_streak;
    settle_audit(&mut c, probe, true);
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Settled);
    assert_eq!(c.state.provider(&id("p0")).unwrap().trust.clean_streak, streak, "no trust for a fetch");
}

#[test]
fn outputs_nobody_can_fetch_are_a_non_delivery() {
    let (mut c, job, lease) = committed_unaudited();
    let value = c.state.lease(lease).unwrap().value();
    let collateral = c.state.provider(&id("p0")).unwrap().collateral;
    let probe = c.state.lease(lease).unwrap().audit.unwrap();
    settle_audit(&mut c, probe, false);
    assert_eq!(c.state.audit(probe).unwrap().outcome, Some(AuditOutcome::Fraud), "confirmed by the recount");
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Failed(LeaseFailure::OutputUnavailable));
    assert_eq!(c.state.provider(&id("p0")).unwrap().collateral, Amount(collateral.0 - value.bps(1_000).0));
    assert!(matches!(c.state.job(job).unwrap().shards[0].status, ShardStatus::Open(_)), "re-matched");
    assert!(c.state.meta().supply.is_conserved());
}

#[test]
fn constraints_filter_providers() {
    let mut c = TestChain::new();
    register(&mut c, "p0", "us-east", 500);
    register(&mut c, "p1", "eu-west", 50);
    c.ok("p0", ask(&c, 1, 3600));
    c.ok("p1", ask(&c, 5, 3600));
    let mut m = manifest(&c, 1, 10, 60, 10);
    m.constraints.max_carbon_g_per_kwh = Some(100);
    c.ok("u0", TxPayload::SubmitJob { manifest: m });
    let l = leases_created(&c.last_events());
    assert_eq!(l[0].1, id("p1"), "the cheap dirty provider is skipped");
    // No provider in the region: the chain refuses the job and locks nothing.
    let mut m = manifest(&c, 1, 10, 60, 10);
    m.constraints.region = Some("ap-south".parse().unwrap());
    let before = c.state.balance(&id("u1"));
    let err = c.fails("u1", TxPayload::SubmitJob { manifest: m });
    assert!(err.contains("unplaceable") && err.contains("region ap-south"), "{err}");
    assert_eq!(c.state.balance(&id("u1")), Amount(before.0 - 10), "only the fee is charged");
    assert!(c.state.jobs.iter().all(|(_, j)| j.requester != id("u1")));
}

#[test]
fn latency_and_cluster_constraints_use_coordinates() {
    let mut c = TestChain::new();
    let spots =
        [("p0", [0, 0, 0, 0]), ("p1", [200, 0, 0, 0]), ("p2", [10_000, 0, 0, 0]), ("p3", [10_150, 0, 0, 0])];
    for (n, v) in spots {
        let mut prof = profile("local", 100);
        prof.coord = Coord { vec: v, height: 0 };
        c.ok(n, TxPayload::RegisterProvider { profile: prof, collateral: Amount(1_000_000) });
        // p2 and p3 are cheaper, but far from the requester.
        let price = if n == "p2" || n == "p3" { 1 } else { 3 };
        c.ok(n, ask(&c, price, 3600));
    }
    let mut m = manifest(&c, 1, 10, 60, 10);
    m.constraints.max_latency =
        Some(LatencyBound { max_rtt_ms: 5, from: Coord { vec: [100, 0, 0, 0], height: 0 } });
    c.ok("u0", TxPayload::SubmitJob { manifest: m });
    let l = leases_created(&c.last_events());
    assert!(l[0].1 == id("p0") || l[0].1 == id("p1"));
    // A 2-provider cluster within 2 ms: p2+p3 (1.5 ms apart, cheapest) qualify; p0+p1 too.
    let mut m = manifest(&c, 2, 10, 60, 10);
    m.constraints.cluster = Some(ClusterSpec { size: 2, max_pairwise_rtt_ms: 2 });
    c.ok("u1", TxPayload::SubmitJob { manifest: m });
    let l = leases_created(&c.last_events());
    assert_eq!(l.len(), 2);
    let mut got = vec![l[0].1, l[1].1];
    got.sort();
    let mut want = vec![id("p2"), id("p3")];
    want.sort();
    assert_eq!(got, want);
    // A 3-provider cluster within 2 ms cannot form: nothing is leased.
    let mut m = manifest(&c, 3, 10, 60, 10);
    m.constraints.cluster = Some(ClusterSpec { size: 3, max_pairwise_rtt_ms: 2 });
    c.ok("u2", TxPayload::SubmitJob { manifest: m });
    assert!(leases_created(&c.last_events()).is_empty());
}

#[test]
fn per_account_cap_spreads_fills_over_blocks() {
    let mut c = TestChain::new();
    register(&mut c, "p0", "local", 100);
    c.ok("p0", ask(&c, 1, 1000));
    // 20% of the 1000 units offered = 200 units this block; each shard is 100 units.
    let m = manifest(&c, 5, 10, 100, 10);
    c.ok("u0", TxPayload::SubmitJob { manifest: m });
    assert_eq!(leases_created(&c.last_events()).len(), 2);
    // Next block 800 units are offered: the cap is 160, so only one more shard fits.
    c.advance(1);
    assert_eq!(leases_created(&c.last_events()).len(), 1);
}

#[test]
fn governance_changes_parameters() {
    let p = Params { gov_voting_ms: 3_000, ..Params::default() };
    let mut c = TestChain::with_params(p);
    let err = c.fails(
        "u0",
        TxPayload::Propose {
            changes: vec![ParamChange { name: "min_fee".into(), value: 20 }],
            description: "x".into(),
        },
    );
    assert!(err.contains("bonded stake"));
    let err = c.fails(
        "v0",
        TxPayload::Propose {
            changes: vec![ParamChange { name: "min_fee".into(), value: u128::MAX }],
            description: "x".into(),
        },
    );
    assert!(err.contains("between"));
    c.ok(
        "v0",
        TxPayload::Propose {
            changes: vec![ParamChange { name: "min_fee".into(), value: 20 }],
            description: "x".into(),
        },
    );
    let pid = *c.state.proposals().next().unwrap().0;
    c.ok("v1", TxPayload::Vote { proposal: pid, approve: true });
    c.ok("v2", TxPayload::Vote { proposal: pid, approve: false });
    c.ok("v3", TxPayload::Vote { proposal: pid, approve: true });
    c.advance(1);
    assert_eq!(c.state.params().min_fee, 20);
    assert!(
        find(&c.history(), |e| matches!(e, Event::ProposalClosed { passed: true, .. }).then_some(())).len()
            == 1
    );
}

#[test]
fn state_round_trips_through_store_entries() {
    let mut c = TestChain::new();
    let (job, lease) = leased_job(&mut c, 20);
    c.ok("p0", TxPayload::CommitResult { lease, commitment: commitment(honest_root(job, 0), 20, 1_000) });
    let entries = c.state.entries().into_iter().map(|(k, v)| (k, v.unwrap()));
    let rebuilt = crate::State::from_entries(entries).unwrap();
    assert_eq!(rebuilt.digest(), c.state.digest());
    // And the rebuilt state applies the next block identically.
    let b = c.block_for(vec![]);
    let (a, _) = crate::apply_block(&c.state, &b).unwrap();
    let (r, _) = crate::apply_block(&rebuilt, &b).unwrap();
    assert_eq!(a.digest(), r.digest());
}

#[test]
fn a_private_endpoint_is_refused_unless_the_chain_allows_it() {
    // The cloud metadata address: every node that probed or audited this provider would be
    // making requests into its own network.
    let mut p = profile("local", 100);
    p.endpoint = "http://169.254.169.254".into();
    let register = |p: &agora_core::tx::ProviderProfile| TxPayload::RegisterProvider {
        profile: p.clone(),
        collateral: Amount(1_000_000),
    };
    let mut c = TestChain::new();
    let err = c.fails("p0", register(&p));
    assert!(err.contains("does not allow"), "{err}");
    let mut devnet = TestChain::with_params(Params { allow_private_endpoints: 1, ..Params::default() });
    devnet.ok("p0", register(&p));
    p.endpoint = "http://provider.example:7700/agent/audit".into();
    assert!(devnet.fails("p1", register(&p)).contains("path"));
}

/// The part of a streak step (ppm) a clean audit of `items` WebAssembly items earns.
fn full_step_share(c: &TestChain, items: u64) -> u64 {
    let full = crate::audits::sample_size(
        c.state.params(),
        agora_core::JobKind::Wasm,
        agora_core::manifest::VerificationPolicy::Standard,
        u32::MAX,
    );
    (items * 1_000_000).div_ceil(u64::from(full))
}
