//! Attacks by auditors (issue 13, part 2): false accusations, lazy passes, and accusers paid
//! from the slash they cause. Each paid before.

use super::harness::*;
use crate::audits::insurance_pool;
use crate::events::{AuditOutcome, Event};
use crate::params::Params;
use agora_core::tx::{AuditEvidence, Disputed, TxPayload};
use agora_core::{AccountId, Amount, Hash};

const NAMES: [&str; 7] = ["p1", "p2", "p3", "v0", "v1", "v2", "v3"];

fn name_of(a: &AccountId) -> &'static str {
    NAMES.into_iter().find(|n| id(n) == *a).expect("a known auditor")
}

/// p0..p3 registered, p0 leases u0's 20-item shard at price 2 (value 120) and commits `root`.
fn committed(c: &mut TestChain, root: Hash) -> u64 {
    for p in ["p0", "p1", "p2", "p3"] {
        register(c, p, "local", 100);
    }
    c.ok("p0", ask(c, 2, 3600));
    c.ok("u0", TxPayload::SubmitJob { manifest: manifest(c, 1, 20, 60, 10) });
    let (job, lease) = last_lease(c);
    let root = if root == Hash::ZERO { honest_root(job, 0) } else { root };
    c.ok("p0", TxPayload::CommitResult { lease, commitment: commitment(root, 20, 60_000) });
    c.advance(1);
    c.state.lease(lease).unwrap().audit.expect("a new provider is always audited")
}

/// Reports until the audit resolves: the first stage-one auditor says `first`, everyone
/// else `rest`. Returns the first auditor and the outcome.
fn drive(c: &mut TestChain, audit: u64, first: bool, rest: bool) -> (AccountId, AuditOutcome) {
    let lead = c.state.audit(audit).unwrap().assignments[0].auditor;
    while c.state.audit(audit).unwrap().outcome.is_none() {
        let pending = awaiting(&c.state, audit);
        assert!(!pending.is_empty(), "an open audit with nobody to report");
        for a in pending {
            let passed = if a == lead { first } else { rest };
            c.ok(name_of(&a), report(&c.state, audit, passed));
        }
    }
    (lead, c.state.audit(audit).unwrap().outcome.unwrap())
}

fn auditor_slashed(c: &TestChain, who: AccountId) -> Amount {
    c.history()
        .iter()
        .filter_map(|e| match e {
            Event::AuditorSlashed { auditor, amount, .. } if *auditor == who => Some(*amount),
            _ => None,
        })
        .fold(Amount::ZERO, |a, b| a.checked_add(b).unwrap())
}

fn stake_of(c: &TestChain, who: AccountId) -> Amount {
    let p = c.state.provider(&who).map_or(Amount::ZERO, |p| p.collateral);
    let v = c.state.validator(&who).map_or(Amount::ZERO, |v| v.stake);
    p.checked_add(v).unwrap()
}

#[test]
fn a_false_accusation_refuted_by_the_recount_is_slashed() {
    let mut c = TestChain::new();
    let audit = committed(&mut c, Hash::ZERO);
    let accuser = c.state.audit(audit).unwrap().assignments[0].auditor;
    let before = stake_of(&c, accuser);
    let (_, outcome) = drive(&mut c, audit, false, true);
    assert_eq!(outcome, AuditOutcome::Clean, "the recount cleared the provider");
    assert_eq!(auditor_slashed(&c, accuser), Amount(120), "the lease value, auditor_slash_bps = 10,000");
    assert_eq!(stake_of(&c, accuser), Amount(before.0 - 120));
    assert!(c.state.meta().supply.is_conserved());
}

#[test]
fn a_lazy_pass_on_confirmed_fraud_is_slashed() {
    // Every audit gets a second opinion here, so the lazy auditor's pass meets an honest
    // failure, the recount confirms the fraud, and the pass is refuted.
    let mut c = TestChain::with_params(Params { audit_second_opinion_ppm: 1_000_000, ..Params::default() });
    let audit = committed(&mut c, Hash::of(b"garbage"));
    assert_eq!(c.state.audit(audit).unwrap().assignments.len(), 2, "two stage-one auditors");
    let (lazy, outcome) = drive(&mut c, audit, true, false);
    assert_eq!(outcome, AuditOutcome::Fraud);
    assert_eq!(auditor_slashed(&c, lazy), Amount(120));
    // The accusers were right: not slashed.
    for a in c.state.audit(audit).unwrap().assignments.iter().filter(|a| a.auditor != lazy) {
        assert_eq!(auditor_slashed(&c, a.auditor), Amount::ZERO);
    }
}

#[test]
fn accusers_are_paid_a_fixed_reward_from_the_pool() {
    // Before, half of the slash went to the accusers: the bigger the (false) conviction, the
    // bigger the prize. Now the slash feeds the pool and each accuser gets accuser_reward_bps
    // of the lease value from it.
    let mut c = TestChain::new();
    let audit = committed(&mut c, Hash::of(b"garbage"));
    let (_, outcome) = drive(&mut c, audit, false, false);
    assert_eq!(outcome, AuditOutcome::Fraud);
    let (amount, paid) = c
        .history()
        .iter()
        .find_map(|e| match e {
            Event::ProviderSlashed { amount, to_auditors, .. } => Some((*amount, *to_auditors)),
            _ => None,
        })
        .unwrap();
    let accusers = c.state.audit(audit).unwrap().assignments.len() as u128;
    assert_eq!(paid, Amount(60 * accusers), "0.5 × the lease value each");
    assert_eq!(c.state.balance(&insurance_pool()), Amount(amount.0 / 2 - paid.0));
    assert!(c.state.meta().supply.is_conserved());
}

#[test]
fn a_recount_too_few_report_on_pays_nothing() {
    // A stage-one failure, then a recount where one validator answers and the rest stay
    // silent (overloaded, offline): before, the audit closed Inconclusive and the lease was
    // paid, delivering outputs nobody had vouched for.
    let mut c = TestChain::new();
    let audit = committed(&mut c, Hash::of(b"garbage"));
    let first = c.state.audit(audit).unwrap().assignments[0].auditor;
    c.ok(name_of(&first), report(&c.state, audit, false));
    let recount: Vec<AccountId> =
        c.state.audit(audit).unwrap().assignments[1..].iter().map(|a| a.auditor).collect();
    assert!(recount.len() >= 3);
    c.ok(name_of(&recount[0]), report(&c.state, audit, false));
    c.advance(3 * 61);
    let a = c.state.audit(audit).unwrap();
    assert_eq!(a.outcome, Some(AuditOutcome::Unverified), "{a:?}");
    let lease = a.target.lease().unwrap();
    assert_eq!(
        c.state.lease(lease).unwrap().status,
        crate::leases::LeaseStatus::Failed(crate::events::LeaseFailure::Unverified)
    );
}

/// Every auditor assigned to `audit` that has not reported, by name from `names`.
fn pending(c: &TestChain, audit: u64, names: &[&'static str]) -> Vec<&'static str> {
    let name = |a: &AccountId| *names.iter().find(|n| id(n) == *a).expect("a known auditor");
    awaiting(&c.state, audit).iter().map(name).collect()
}

#[test]
fn auditors_never_share_a_funding_source_with_the_audited_provider() {
    // A provider that funds its own auditor identities (s0, s1), or that was created in the
    // same block as one by the same sender (s2), audited itself: before, all three were drawn
    // by stake like anyone else, on about two audits in three here.
    let mut c = TestChain::with_params(Params { audit_floor_ppm: 1_000_000, ..Params::default() });
    let give = |c: &TestChain, to: &str, amount: u128, n: u64| {
        c.tx_n("u7", TxPayload::Transfer { to: id(to), amount: Amount(amount) }, n)
    };
    let batch = vec![give(&c, "q", 4_000_000, 0), give(&c, "s2", 3_000_000, 1)];
    c.block(batch);
    register(&mut c, "q", "local", 100);
    for s in ["s0", "s1"] {
        c.ok("q", TxPayload::Transfer { to: id(s), amount: Amount(1_200_000) });
    }
    c.ok("u7", TxPayload::Transfer { to: id("s3"), amount: Amount(2_000_000) });
    for s in ["s0", "s1", "s2", "s3"] {
        register(&mut c, s, "local", 100);
    }
    assert!(crate::accounts::related(&c.state, &id("s2"), &id("q")));
    assert!(!crate::accounts::related(&c.state, &id("s3"), &id("q")), "funded in another block");
    c.ok("q", ask(&c, 2, 3600));
    let names = ["s0", "s1", "s2", "s3", "v0", "v1", "v2", "v3"];
    let mut drawn = std::collections::BTreeSet::new();
    for _ in 0..30 {
        c.ok("u0", TxPayload::SubmitJob { manifest: manifest(&c, 1, 20, 60, 10) });
        let (job, lease) = last_lease(&c);
        c.ok("q", TxPayload::CommitResult { lease, commitment: commitment(honest_root(job, 0), 20, 6_000) });
        c.advance(1);
        let audit = c.state.lease(lease).unwrap().audit.expect("every lease is audited");
        while c.state.audit(audit).unwrap().outcome.is_none() {
            for name in pending(&c, audit, &names) {
                drawn.insert(name);
                c.ok(name, report(&c.state, audit, true));
            }
        }
    }
    for s in ["s0", "s1", "s2"] {
        assert!(!drawn.contains(s), "{s} audited the provider that funded it or shares its funder");
    }
    assert!(drawn.contains("s3"), "an unrelated account with the most stake is drawn: {drawn:?}");
}

#[test]
fn a_verdict_must_carry_evidence_that_can_back_it() {
    let mut c = TestChain::new();
    let audit = committed(&mut c, Hash::ZERO);
    let auditor = name_of(&c.state.audit(audit).unwrap().assignments[0].auditor);
    let root = Hash::of(b"recomputed");
    let send = |c: &mut TestChain, passed: bool, evidence: AuditEvidence| {
        c.fails(auditor, TxPayload::ReportAudit { audit, passed, evidence })
    };
    let disputed = |index: u32| Disputed { index, recomputed: Hash::of(&index.to_le_bytes()) };
    // A pass that shows no recomputation, or disputes an item.
    let e =
        send(&mut c, true, AuditEvidence { recomputed_root: Hash::ZERO, disputed: vec![], measured_ms: 5 });
    assert!(e.contains("audit evidence"), "{e}");
    send(&mut c, true, AuditEvidence { recomputed_root: root, disputed: vec![disputed(3)], measured_ms: 5 });
    // A failure that names no item but claims a recomputation, an item never sampled, or the
    // same item twice.
    send(&mut c, false, AuditEvidence { recomputed_root: root, disputed: vec![], measured_ms: 5 });
    let e = send(
        &mut c,
        false,
        AuditEvidence { recomputed_root: root, disputed: vec![disputed(20)], measured_ms: 5 },
    );
    assert!(e.contains("not sampled"), "{e}");
    send(
        &mut c,
        false,
        AuditEvidence { recomputed_root: root, disputed: vec![disputed(4), disputed(4)], measured_ms: 5 },
    );
    // Accepted: the disputed items with their recomputed hashes, kept on chain for anyone to
    // re-run.
    let evidence =
        AuditEvidence { recomputed_root: root, disputed: vec![disputed(2), disputed(7)], measured_ms: 5 };
    c.ok(auditor, TxPayload::ReportAudit { audit, passed: false, evidence: evidence.clone() });
    assert_eq!(c.state.audit(audit).unwrap().assignments[0].evidence, Some(evidence));
    // Withholding (nothing verifiable was served) is a failure with nothing recomputed.
    let next = name_of(&c.state.audit(audit).unwrap().assignments[1].auditor);
    c.ok(
        next,
        TxPayload::ReportAudit { audit, passed: false, evidence: AuditEvidence::nothing_recomputed() },
    );
}

#[test]
fn a_provider_that_claims_more_device_time_than_it_used_is_cut_and_fined() {
    // The provider, already trusted (so audits are rarer), claims its first two leases
    // honestly; after that it claims the whole 60 device-seconds each time. Its auditors measure the 20-item sample at 1.5 s. Before, an
    // audited lease paid whatever the commitment claimed.
    let mut c = TestChain::with_params(Params { trust_threshold: 1, ..Params::default() });
    let measured =
        AuditEvidence { recomputed_root: Hash::of(b"recomputed"), disputed: vec![], measured_ms: 1_500 };
    for p in ["p0", "p1", "p2", "p3"] {
        register(&mut c, p, "local", 100);
    }
    c.state.providers.get_mut(&id("p0")).unwrap().trust.clean_streak = 2;
    c.ok("p0", ask(&c, 2, 3600));
    for round in 0..40 {
        c.ok("u0", TxPayload::SubmitJob { manifest: manifest(&c, 1, 20, 60, 10) });
        let (job, lease) = last_lease(&c);
        let claim = if round < 2 { 3_000 } else { 60_000 };
        c.ok("p0", TxPayload::CommitResult { lease, commitment: commitment(honest_root(job, 0), 20, claim) });
        c.advance(1);
        let audit = c.state.lease(lease).unwrap().audit.expect("audited, or checked for availability");
        if c.state.audit(audit).unwrap().subject == crate::audits::AuditSubject::Availability {
            // Not audited: its outputs are only checked to exist, and it is paid as claimed.
            for name in pending(&c, audit, &NAMES) {
                c.ok(name, report(&c.state, audit, true));
            }
            continue;
        }
        let (collateral, before) = (c.state.provider(&id("p0")).unwrap().collateral, c.history().len());
        while c.state.audit(audit).unwrap().outcome.is_none() {
            for name in pending(&c, audit, &NAMES) {
                c.ok(name, TxPayload::ReportAudit { audit, passed: true, evidence: measured.clone() });
            }
        }
        let l = c.state.lease(lease).unwrap().clone();
        let capped = c.history()[before..].iter().find_map(|e| match e {
            Event::MeteringCapped { claimed_ms, allowed_ms, fine, .. } => {
                Some((*claimed_ms, *allowed_ms, *fine))
            }
            _ => None,
        });
        if round < 2 {
            assert_eq!(capped, None, "an honest claim within the bound is paid as claimed");
            continue;
        }
        if l.verification.audit_ppm == 1_000_000 {
            continue; // wait for a lease audited with p < 1, where the fine must outweigh more
        }
        // The bound is 1.5 s × 3 (slack) + 2 s grace = 6.5 s; the claim of 60 s is over it,
        // so the lease is paid for the measurement: 1.5 s, 2 units, not 60.
        let (claimed_ms, allowed_ms, fine) = capped.expect("the over-claim is caught");
        assert_eq!((claimed_ms, allowed_ms), (60_000, 1_500));
        let fee_total = l.settlement.as_ref().unwrap().auditors_paid;
        assert_eq!(l.settlement.as_ref().unwrap().provider_paid, Amount(l.seller_price.0 * 2 - fee_total.0));
        // The larger of slash_multiple and λ·(1−q)/q times the excess value, q = p·(1−α) the
        // chance of being caught: the expected gain of over-claiming on the leases nobody
        // audits, or that a colluding auditor shields, is outweighed.
        let q = u128::from(l.verification.audit_ppm) * 6_667 / 10_000;
        let excess = l.seller_price.0 * 58;
        assert_eq!(fine, Amount((excess * 15_000 / 10_000 * (1_000_000 - q) / q).max(excess * 10)));
        assert!(fine.0 > 0);
        let prov = c.state.provider(&id("p0")).unwrap();
        assert_eq!(prov.collateral, Amount(collateral.0 - fine.0));
        assert_eq!(prov.trust.forced_audits, 10, "its next leases are audited with certainty");
        assert!(c.state.meta().supply.is_conserved());
        return;
    }
    panic!("no audited over-claim with p < 1 in 40 leases");
}

#[test]
fn one_auditors_low_measurement_cannot_cut_an_honest_providers_pay() {
    // A stage-one auditor reports that the sample took it 1 ms. The claim then exceeds the
    // bound its measurement implies, so the recount measures; the committee's honest
    // measurements allow the claim, and the lease is paid as claimed.
    let mut c = TestChain::new();
    let audit = committed(&mut c, Hash::ZERO);
    let lease = c.state.audit(audit).unwrap().target.lease().unwrap();
    let griefer = name_of(&c.state.audit(audit).unwrap().assignments[0].auditor);
    let low = AuditEvidence { recomputed_root: Hash::of(b"recomputed"), disputed: vec![], measured_ms: 1 };
    c.ok(griefer, TxPayload::ReportAudit { audit, passed: true, evidence: low });
    assert!(c.state.audit(audit).unwrap().escalated, "the low measurement convenes the recount");
    while c.state.audit(audit).unwrap().outcome.is_none() {
        for name in pending(&c, audit, &NAMES) {
            c.ok(name, report(&c.state, audit, true));
        }
    }
    assert!(!c.history().iter().any(|e| matches!(e, Event::MeteringCapped { .. })));
    let l = c.state.lease(lease).unwrap();
    assert_eq!(l.status, crate::leases::LeaseStatus::Settled);
    let s = l.settlement.as_ref().unwrap();
    assert_eq!(s.provider_paid.0 + s.auditors_paid.0, l.seller_price.0 * 60, "all 60 claimed device-seconds");
}
