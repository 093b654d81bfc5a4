//! Attacks by auditors (issue 13, part 2): false accusations, lazy passes, and accusers paid
//! from the slash they cause. Each paid before.

use super::harness::*;
use crate::audits::insurance_pool;
use crate::events::{AuditOutcome, Event};
use crate::params::Params;
use agora_core::tx::TxPayload;
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
    let (job, lease) = c
        .last_events()
        .iter()
        .find_map(|e| match e {
            Event::LeaseCreated { job, lease, .. } => Some((*job, *lease)),
            _ => None,
        })
        .expect("leased");
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
        let pending: Vec<AccountId> = c
            .state
            .audit(audit)
            .unwrap()
            .assignments
            .iter()
            .filter(|a| a.verdict.is_none() && !a.replaced)
            .map(|a| a.auditor)
            .collect();
        assert!(!pending.is_empty(), "an open audit with nobody to report");
        for a in pending {
            let passed = if a == lead { first } else { rest };
            c.ok(name_of(&a), TxPayload::ReportAudit { audit, passed, detail: Hash::ZERO });
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
    c.ok(name_of(&first), TxPayload::ReportAudit { audit, passed: false, detail: Hash::ZERO });
    let recount: Vec<AccountId> =
        c.state.audit(audit).unwrap().assignments[1..].iter().map(|a| a.auditor).collect();
    assert!(recount.len() >= 3);
    c.ok(name_of(&recount[0]), TxPayload::ReportAudit { audit, passed: false, detail: Hash::ZERO });
    c.advance(3 * 61);
    let a = c.state.audit(audit).unwrap();
    assert_eq!(a.outcome, Some(AuditOutcome::Unverified), "{a:?}");
    let lease = a.lease;
    assert_eq!(
        c.state.lease(lease).unwrap().status,
        crate::leases::LeaseStatus::Failed(crate::events::LeaseFailure::Unverified)
    );
}
