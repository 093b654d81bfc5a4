//! Attacks on deterrence (issue 13, parts 4 and 5): collateral that must stay at risk while it
//! backs work, and failures a requester causes that must not pay it. Each succeeded before.

use super::harness::*;
use crate::events::{AuditOutcome, Event, LeaseFailure};
use crate::leases::LeaseStatus;
use crate::params::Params;
use agora_core::tx::TxPayload;
use agora_core::{AccountId, Amount, Hash};

const NAMES: [&str; 7] = ["p1", "p2", "p3", "v0", "v1", "v2", "v3"];

fn name_of(a: &AccountId) -> &'static str {
    NAMES.into_iter().find(|n| id(n) == *a).expect("a known auditor")
}

/// Providers p0..p3 with `collateral` each (p0 asks), and u0's one-shard job of 60 units at
/// max price 10, leased to p0 at price 2. Returns the lease.
fn lease_with(c: &mut TestChain, collateral: u128, encrypted: bool) -> u64 {
    for p in ["p0", "p1", "p2", "p3"] {
        c.ok(
            p,
            TxPayload::RegisterProvider { profile: profile("local", 100), collateral: Amount(collateral) },
        );
    }
    c.ok("p0", ask(c, 2, 3600));
    let mut m = manifest(c, 1, 20, 60, 10);
    m.encrypted = encrypted;
    c.ok("u0", TxPayload::SubmitJob { manifest: m });
    c.last_events()
        .iter()
        .find_map(|e| match e {
            Event::LeaseCreated { lease, .. } => Some(*lease),
            _ => None,
        })
        .expect("leased")
}

/// Drives an audit of `lease` to a fraud verdict (every auditor reports a failure).
fn confirm_fraud(c: &mut TestChain, lease: u64) {
    c.advance(1);
    let audit_id = c.state.lease(lease).unwrap().audit.expect("a new provider is always audited");
    for _ in 0..2 {
        let pending: Vec<AccountId> = c
            .state
            .audit(audit_id)
            .unwrap()
            .assignments
            .iter()
            .filter(|a| a.verdict.is_none())
            .map(|a| a.auditor)
            .collect();
        for a in pending {
            c.ok(name_of(&a), report(&c.state, audit_id, false));
        }
    }
    assert_eq!(c.state.audit(audit_id).unwrap().outcome, Some(AuditOutcome::Fraud));
}

fn slashed(c: &TestChain) -> Amount {
    c.history()
        .iter()
        .find_map(|e| match e {
            Event::ProviderSlashed { amount, .. } => Some(*amount),
            _ => None,
        })
        .unwrap_or(Amount::ZERO)
}

#[test]
fn a_cheater_cannot_withdraw_the_collateral_its_commitment_risks() {
    // Review F4: a committed lease left `running`, so the provider could withdraw everything
    // as soon as it saw the audit drawn, and the slash found nothing.
    let mut c = TestChain::new();
    let lease = lease_with(&mut c, 10_000, false);
    let reserved = c.state.lease(lease).unwrap().reserved;
    assert_eq!(reserved, Amount(2 * 60 * 10), "slash_multiple × the lease value");
    c.ok("p0", TxPayload::CommitResult { lease, commitment: commitment(Hash::of(b"garbage"), 20, 60_000) });
    let err = c.fails("p0", TxPayload::WithdrawCollateral { amount: Amount(10_000) });
    assert!(err.contains("reserve"), "{err}");
    // What no lease reserves may still go.
    c.ok("p0", TxPayload::WithdrawCollateral { amount: Amount(10_000 - reserved.0) });
    confirm_fraud(&mut c, lease);
    assert_eq!(slashed(&c), reserved, "the slash found the reserved collateral");
    assert_eq!(c.state.provider(&id("p0")).unwrap().reserved, Amount::ZERO, "released with the lease");
}

#[test]
fn collateral_still_unlocking_is_slashable() {
    // A slash larger than the locked collateral (here: governance raised slash_multiple after
    // the lease reserved at the old one) reaches collateral that is still unlocking.
    let mut c = TestChain::with_params(Params { slash_multiple: 2, ..Params::default() });
    let lease = lease_with(&mut c, 10_000, false);
    let reserved = c.state.lease(lease).unwrap().reserved;
    assert_eq!(reserved, Amount(240));
    c.ok("p0", TxPayload::CommitResult { lease, commitment: commitment(Hash::of(b"garbage"), 20, 60_000) });
    c.ok("p0", TxPayload::WithdrawCollateral { amount: Amount(10_000 - 1_000) });
    c.state.meta_mut().params.slash_multiple = 20; // as an enacted proposal would
    confirm_fraud(&mut c, lease);
    assert_eq!(slashed(&c), Amount(2 * 60 * 20));
    let p0 = c.state.provider(&id("p0")).unwrap();
    assert_eq!(p0.collateral, Amount::ZERO);
    assert_eq!(p0.total_collateral(), Amount(10_000 - 2_400), "the rest came out of the unlocking part");
}

#[test]
fn concurrent_leases_each_reserve_their_own_deterrent() {
    // Review F15: the whole collateral counted as S for every concurrent lease. Now a provider
    // takes only as many leases as its collateral can reserve for.
    let mut c = TestChain::new();
    register(&mut c, "p1", "local", 100);
    c.ok("p0", TxPayload::RegisterProvider { profile: profile("local", 100), collateral: Amount(3_000) });
    c.ok("p0", ask(&c, 2, 3600));
    c.ok("p1", ask(&c, 3, 3600));
    // Five shards of 60 units at 2: each reserves 10 × 120 = 1,200, so p0 holds two.
    c.ok("u0", TxPayload::SubmitJob { manifest: manifest(&c, 5, 20, 60, 10) });
    let p0 = c.state.provider(&id("p0")).unwrap();
    assert_eq!(p0.running.len(), 2, "{:?}", p0);
    assert!(p0.reserved <= p0.collateral);
    assert_eq!(c.state.provider(&id("p1")).unwrap().running.len(), 3);
}

#[test]
fn a_withheld_key_costs_the_provider_nothing_and_pays_the_requester_nothing() {
    // Review F3: the requester never shares the key of an encrypted job; the provider cannot
    // run it, missed the deadline, and 10% of the lease moved from its collateral to the
    // requester, once per provider the shard was re-matched to.
    let p = Params { lease_grace_ms: 0, lease_slack_pct: 100, liveness_blocks: 1_000, ..Params::default() };
    let mut c = TestChain::with_params(p);
    let lease = lease_with(&mut c, 100_000, true);
    let (collateral, requester) =
        (c.state.provider(&id("p0")).unwrap().collateral, c.state.balance(&id("u0")));
    c.advance(61);
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Failed(LeaseFailure::MissedDeadline));
    let p0 = c.state.provider(&id("p0")).unwrap();
    assert_eq!(p0.collateral, collateral);
    assert_eq!(p0.trust.leases_failed, 0, "not the provider's failure");
    assert!(c.state.balance(&id("u0")) <= requester, "the requester gained nothing");
}

#[test]
fn the_jobs_key_agent_may_share_its_keys_and_nobody_else_may() {
    // Keys shared only by a requester that stays online left `agora job submit` without
    // `--wait` unserved. A job may name a key agent (the requester's node) to share for it.
    let mut c = TestChain::new();
    for p in ["p0", "p1"] {
        register(&mut c, p, "local", 100);
    }
    c.ok("p0", ask(&c, 2, 3600));
    let mut m = manifest(&c, 1, 20, 60, 10);
    m.encrypted = true;
    m.key_agent = Some(id("v0"));
    c.ok("u0", TxPayload::SubmitJob { manifest: m });
    let lease = c.state.leases().next().map(|(l, _)| *l).expect("leased");
    let share = || TxPayload::ShareKey { lease, to: id("p0"), sealed_key: sealed_key() };
    let err = c.fails("u1", share());
    assert!(err.contains("key agent"), "{err}");
    c.ok("v0", share());
    assert_eq!(c.state.lease(lease).unwrap().keys.len(), 1);
}
