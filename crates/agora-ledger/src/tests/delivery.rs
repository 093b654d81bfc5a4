//! The delivery window of encrypted leases: auditors check an encrypted output blob by its
//! hash alone, so its requester, who alone holds the key, confirms or disputes the outputs
//! before the provider is paid.

use super::harness::*;
use crate::events::{AuditOutcome, Event, LeaseFailure};
use crate::jobs::ShardStatus;
use crate::leases::LeaseStatus;
use crate::params::Params;
use agora_core::disclosure::{KeyDisclosure, output_key_context};
use agora_core::tx::TxPayload;
use agora_core::{Amount, SecretKey};

/// A chain (window `window_ms`) with p0's lease of an encrypted 20-item job of u0, committed
/// with an honest root and passed over by the draw; its availability check is open. Returns
/// the chain and the lease.
fn committed(encrypted: bool, window_ms: u128) -> (TestChain, u64) {
    committed_with(window_ms, |m| m.encrypted = encrypted)
}

/// [`committed`], with `edit` applied to the job's manifest before it is submitted.
fn committed_with(window_ms: u128, edit: impl FnOnce(&mut agora_core::JobManifest)) -> (TestChain, u64) {
    let params = Params { audit_floor_ppm: 0, delivery_window_ms: window_ms, ..Params::default() };
    let mut c = TestChain::with_params(params);
    for p in ["p0", "p1", "p2", "p3"] {
        register(&mut c, p, "local", 100);
    }
    c.state.providers.get_mut(&id("p0")).unwrap().trust.clean_streak = 1_000_000;
    c.ok("p0", ask(&c, 50, 3600));
    let mut m = manifest(&c, 1, 20, 60, 100);
    m.key_agent = None;
    edit(&mut m);
    c.ok("u0", TxPayload::SubmitJob { manifest: m });
    let (job, lease) = c.state.leases().next().map(|(l, x)| (x.job, *l)).expect("leased");
    c.ok("u0", TxPayload::ShareKey { lease, to: id("p0"), sealed_key: sealed_key() });
    c.ok("p0", TxPayload::CommitResult { lease, commitment: commitment(honest_root(job, 0), 20, 30_000) });
    c.advance(1);
    (c, lease)
}

/// [`committed`], with the availability check passed: the lease is delivered.
fn delivered(window_ms: u128) -> (TestChain, u64) {
    let (mut c, lease) = committed(true, window_ms);
    let probe = c.state.lease(lease).unwrap().audit.expect("an availability check");
    settle_audit(&mut c, probe, true);
    (c, lease)
}

/// The requester's proven disclosure of its output-key secret with p0 for `lease`.
fn disclosure(requester: &SecretKey, lease: u64) -> KeyDisclosure {
    KeyDisclosure::prove(requester, &id("p0").to_x25519().unwrap(), &output_key_context(lease)).unwrap()
}

#[test]
fn an_encrypted_lease_is_paid_only_once_its_requester_could_check_the_outputs() {
    // Before: an encrypted lease was paid as soon as its blob's hash checked out, though only
    // the requester can tell whether the blob decrypts to the committed items.
    let (mut c, lease) = delivered(60_000);
    let l = c.state.lease(lease).unwrap().clone();
    assert_eq!(l.status, LeaseStatus::Delivered);
    assert!(l.reserved > Amount::ZERO, "collateral stays at risk");
    let until_ms = l.delivery.as_ref().unwrap().until_ms;
    let delivered = Event::OutputsDelivered { lease, until_ms };
    assert!(c.outcomes.iter().flat_map(all_events).any(|e| e == delivered));
    c.advance(30);
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Delivered, "not paid before the window");
    let earned = c.state.provider(&id("p0")).unwrap().earned;
    c.ok("u0", TxPayload::ConfirmOutputs { lease });
    let l = c.state.lease(lease).unwrap();
    assert_eq!(l.status, LeaseStatus::Settled);
    let s = l.settlement.as_ref().unwrap();
    assert!(s.auditors_paid > Amount::ZERO, "the checker is paid");
    assert_eq!(s.auditors_paid, (s.provider_paid.checked_add(s.auditors_paid).unwrap()).bps(100));
    assert!(c.state.provider(&id("p0")).unwrap().earned > earned);
    assert!(c.state.meta().supply.is_conserved());
    assert!(c.fails("u0", TxPayload::ConfirmOutputs { lease }).contains("Settled"));
}

#[test]
fn a_silent_requester_lets_the_provider_be_paid_when_the_window_closes() {
    let (mut c, lease) = delivered(20_000);
    c.advance(19);
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Delivered);
    c.advance(2);
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Settled);
    assert!(c.state.meta().supply.is_conserved());
    // Unencrypted outputs are checked by the auditors themselves: paid at once.
    let (mut c, lease) = committed(false, 20_000);
    let probe = c.state.lease(lease).unwrap().audit.unwrap();
    settle_audit(&mut c, probe, true);
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Settled);
}

#[test]
fn outputs_the_auditors_cannot_decrypt_to_the_commitment_are_a_non_delivery() {
    let (mut c, lease) = delivered(60_000);
    let value = c.state.lease(lease).unwrap().value();
    let (collateral, balance) = (c.state.provider(&id("p0")).unwrap().collateral, c.state.balance(&id("u0")));
    let deposit = value.bps(100);
    c.ok("u0", TxPayload::DisputeOutputs { lease, disclosure: disclosure(&key("u0"), lease) });
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::OutputsDisputed);
    assert_eq!(c.state.balance(&id("u0")), Amount(balance.0 - deposit.0 - 10), "deposit and fee");
    c.advance(1);
    let check = c.state.lease(lease).unwrap().audit.unwrap();
    assert_eq!(c.state.audit(check).unwrap().subject, crate::audits::AuditSubject::Availability);
    settle_audit(&mut c, check, false);
    assert_eq!(c.state.audit(check).unwrap().outcome, Some(AuditOutcome::Fraud), "confirmed by the recount");
    let l = c.state.lease(lease).unwrap();
    assert_eq!(l.status, LeaseStatus::Failed(LeaseFailure::OutputUnavailable));
    assert_eq!(c.state.provider(&id("p0")).unwrap().collateral, Amount(collateral.0 - value.bps(1_000).0));
    // The deposit came back; the re-matched shard's bid is topped up to its max price again.
    let top_up = (100 - 50) * 60;
    assert_eq!(c.state.balance(&id("u0")), Amount(balance.0 - 10 - top_up), "the deposit came back");
    let j = c.state.job(l.job).unwrap();
    assert!(matches!(j.shards[0].status, ShardStatus::Open(_)), "re-matched with its escrow");
    assert!(c.state.meta().supply.is_conserved());
}

#[test]
fn a_false_dispute_pays_the_provider_and_costs_the_requester_its_deposit() {
    let (mut c, lease) = delivered(60_000);
    let deposit = c.state.lease(lease).unwrap().value().bps(100);
    let p0 = c.state.balance(&id("p0"));
    c.ok("u0", TxPayload::DisputeOutputs { lease, disclosure: disclosure(&key("u0"), lease) });
    c.advance(1);
    let check = c.state.lease(lease).unwrap().audit.unwrap();
    settle_audit(&mut c, check, true);
    let l = c.state.lease(lease).unwrap();
    assert_eq!(l.status, LeaseStatus::Settled);
    let paid = l.settlement.as_ref().unwrap().provider_paid;
    assert_eq!(c.state.balance(&id("p0")), Amount(p0.0 + paid.0 + deposit.0));
    let s = l.settlement.as_ref().unwrap();
    let fee = s.provider_paid.checked_add(s.auditors_paid).unwrap().bps(100);
    assert_eq!(s.auditors_paid, fee.checked_mul(2).unwrap(), "the checkers of both checks are paid");
    assert!(c.state.meta().supply.is_conserved());
}

#[test]
fn only_the_requester_disputes_and_only_with_a_proof_for_this_lease() {
    let (mut c, lease) = committed(true, 60_000);
    let d = disclosure(&key("u0"), lease);
    // Not before the network's checks have passed.
    assert!(c.fails("u0", TxPayload::DisputeOutputs { lease, disclosure: d }).contains("once delivered"));
    let probe = c.state.lease(lease).unwrap().audit.unwrap();
    settle_audit(&mut c, probe, true);
    assert!(
        c.fails("u1", TxPayload::DisputeOutputs { lease, disclosure: d })
            .contains("only the lease's requester")
    );
    assert!(c.fails("u1", TxPayload::ConfirmOutputs { lease }).contains("only the lease's requester"));
    // A proof made with another key, or for another lease, proves nothing.
    let forged = disclosure(&key("u1"), lease);
    assert!(
        c.fails("u0", TxPayload::DisputeOutputs { lease, disclosure: forged }).contains("does not prove")
    );
    let replayed = disclosure(&key("u0"), lease + 1);
    assert!(
        c.fails("u0", TxPayload::DisputeOutputs { lease, disclosure: replayed }).contains("does not prove")
    );
    c.ok("u0", TxPayload::DisputeOutputs { lease, disclosure: d });
    // One dispute per lease; no confirmation once disputed.
    assert!(c.fails("u0", TxPayload::DisputeOutputs { lease, disclosure: d }).contains("once delivered"));
    assert!(c.fails("u0", TxPayload::ConfirmOutputs { lease }).contains("once delivered"));
}

#[test]
fn the_key_agent_answers_for_an_offline_requester_with_the_jobs_output_key() {
    // A requester that submitted without waiting is offline through the window; its node's key
    // agent holds the job's output key and answers for it.
    let output = key("job output");
    let (mut c, lease) = committed_with(60_000, |m| {
        m.encrypted = true;
        m.key_agent = Some(id("v0"));
        m.output_key = Some(output.public());
    });
    let probe = c.state.lease(lease).unwrap().audit.unwrap();
    settle_audit(&mut c, probe, true);
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Delivered);
    assert!(c.fails("u1", TxPayload::ConfirmOutputs { lease }).contains("key agent"));
    // Outputs are encrypted to the job's output key: the requester's account key proves nothing.
    let by_account = disclosure(&key("u0"), lease);
    let e = c.fails("v0", TxPayload::DisputeOutputs { lease, disclosure: by_account });
    assert!(e.contains("output key"), "{e}");
    let agent = c.state.balance(&id("v0"));
    c.ok("v0", TxPayload::DisputeOutputs { lease, disclosure: disclosure(&output, lease) });
    c.advance(1);
    let check = c.state.lease(lease).unwrap().audit.unwrap();
    settle_audit(&mut c, check, false);
    let audit = c.state.audit(check).unwrap();
    assert!(
        audit.assignments.iter().all(|a| a.auditor != id("v0")),
        "the agent never checks its own dispute"
    );
    assert_eq!(c.state.lease(lease).unwrap().status, LeaseStatus::Failed(LeaseFailure::OutputUnavailable));
    assert_eq!(c.state.balance(&id("v0")), Amount(agent.0 - 10), "the agent's deposit came back to it");
    assert!(c.state.meta().supply.is_conserved());
}
