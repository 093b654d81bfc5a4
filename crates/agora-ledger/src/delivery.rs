//! The delivery window of an encrypted job's lease.
//!
//! Auditors check an encrypted output blob by its hash alone: only the requester holds the key
//! that binds it to the committed items. So once the network's checks pass (the audit, or the
//! availability check of a lease the draw passed over), an encrypted lease is
//! [`LeaseStatus::Delivered`] and waits up to `delivery_window_ms` for its requester, whose node
//! fetches and decrypts the outputs (or its key agent, holding the job's output key, for a
//! requester that is offline):
//! * [`confirm`] (`ConfirmOutputs`) pays the provider at once;
//! * [`dispute`] (`DisputeOutputs`) discloses, with proof ([`KeyDisclosure`]), the secret the
//!   lease's output key is derived from, and locks a deposit of one audit fee from its sender. In the next
//!   block an auditor is drawn, as for an availability check, to fetch the blob, decrypt it
//!   with the disclosed key and check it against the committed root and count; a failure
//!   escalates to the recount like any other. Confirmed bad: a non-delivery (the penalty is
//!   burned, the shard re-matched) and the deposit returns to its sender. Found good: the
//!   provider is paid and receives the deposit, so nobody can delay payment for free;
//! * silence: the provider is paid when the window closes.
//!
//! The provider's collateral stays reserved until then, and the auditors of the earlier checks
//! are paid with the provider, from the same settlement.

use crate::audits;
use crate::error::TxError;
use crate::events::Event;
use crate::leases::{self, LeaseStatus};
use crate::params::Params;
use crate::state::{Bucket, Ctx, State, Timer};
use agora_core::disclosure::{KeyDisclosure, output_key_context};
use agora_core::tx::LeaseId;
use agora_core::{AccountId, Amount, codec_struct};
use serde::{Deserialize, Serialize};

/// What a delivered encrypted lease's payout waits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The auditors whose reports passed the outputs, paid at settlement.
    pub reporters: Vec<AccountId>,
    /// The recount's own measurement of the shard, which bounds the device time paid for.
    pub measured_ms: Option<u64>,
    /// When the window closes and the provider is paid on silence, unix ms.
    pub until_ms: u64,
    /// The dispute of the outputs, if one was sent.
    pub dispute: Option<Dispute>,
}
codec_struct!(Delivery { reporters: vec(audits::MAX_AUDITORS), measured_ms, until_ms, dispute });

/// A dispute of a delivered lease's outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    /// Who sent it (the requester or its key agent), and gets the deposit back if it holds.
    pub by: AccountId,
    /// The proven disclosure of the output-key secret.
    pub disclosure: KeyDisclosure,
    /// The deposit, held in escrow until the check ends.
    pub deposit: Amount,
}
codec_struct!(Dispute { by, disclosure, deposit });

/// Pays lease `id`, whose outputs the network's checks passed (reported by `reporters`, with
/// the recount's measurement `measured_ms`), or, for an encrypted job whose outputs nobody has
/// yet disputed, opens its delivery window. After a dispute, the check it convened passed: the
/// provider is paid and receives the deposit.
pub(crate) fn release(
    state: &mut State,
    cx: &mut Ctx,
    id: LeaseId,
    reporters: &[AccountId],
    measured_ms: Option<u64>,
) {
    let lease = state.leases.get(&id).expect("releasing an existing lease");
    if let Some(d) = lease.delivery.clone() {
        let provider = lease.provider;
        if let Some(dispute) = &d.dispute {
            state.pay_out(Bucket::Escrow, &provider, dispute.deposit);
        }
        let mut all = d.reporters;
        all.extend_from_slice(reporters);
        all.truncate(audits::MAX_AUDITORS);
        state.leases.get_mut(&id).expect("exists").delivery = None;
        return leases::settle(state, cx, id, &all, d.measured_ms.or(measured_ms));
    }
    let encrypted = state.jobs.get(&lease.job).is_some_and(|j| j.manifest.encrypted);
    let window = Params::u64(state.params().delivery_window_ms);
    if !encrypted || window == 0 {
        return leases::settle(state, cx, id, reporters, measured_ms);
    }
    let until_ms = cx.time_ms.saturating_add(window);
    let l = state.leases.get_mut(&id).expect("exists");
    l.status = LeaseStatus::Delivered;
    l.delivery = Some(Delivery {
        reporters: reporters.iter().copied().take(audits::MAX_AUDITORS).collect(),
        measured_ms,
        until_ms,
        dispute: None,
    });
    state.schedule(until_ms, Timer::DeliveryWindow(id));
    cx.emit(Event::OutputsDelivered { lease: id, until_ms });
}

/// Settles a delivered lease with what its delivery recorded.
fn pay(state: &mut State, cx: &mut Ctx, id: LeaseId) {
    let l = state.leases.get_mut(&id).expect("exists");
    let d = l.delivery.take().expect("a delivered lease has its delivery");
    leases::settle(state, cx, id, &d.reporters, d.measured_ms);
}

/// Runs from the `DeliveryWindow` timer: nobody answered, so the provider is paid.
pub(crate) fn window_closed(state: &mut State, cx: &mut Ctx, id: LeaseId) {
    if state.leases.get(&id).is_some_and(|l| l.status == LeaseStatus::Delivered) {
        pay(state, cx, id);
    }
}

/// The delivered lease `id`, if `who` is its requester or its job's key agent, or why not.
fn delivered(state: &State, who: AccountId, id: LeaseId) -> Result<&Delivery, TxError> {
    let lease = state.leases.get(&id).ok_or_else(|| TxError::not_found("lease", id))?;
    let agent = state.jobs.get(&lease.job).and_then(|j| j.manifest.key_agent);
    if lease.requester != who && agent != Some(who) {
        return Err(TxError::Unauthorized(
            "only the lease's requester or its job's key agent confirms or disputes its outputs".into(),
        ));
    }
    match (&lease.status, &lease.delivery) {
        (LeaseStatus::Delivered, Some(d)) => Ok(d),
        (status, _) => Err(TxError::InvalidState(format!(
            "lease is {status:?}; outputs are confirmed or disputed once delivered, before the window closes"
        ))),
    }
}

/// The requester (or its key agent) confirms the delivered outputs of lease `id`: the
/// provider is paid now.
pub(crate) fn confirm(state: &mut State, cx: &mut Ctx, who: AccountId, id: LeaseId) -> Result<(), TxError> {
    let until_ms = delivered(state, who, id)?.until_ms;
    state.unschedule(until_ms, Timer::DeliveryWindow(id));
    pay(state, cx, id);
    Ok(())
}

/// The requester (or its key agent) disputes the delivered outputs of lease `id` with
/// `disclosure`, which must prove, for [`output_key_context`] of the lease, the secret the
/// job's output key ([`agora_core::JobManifest::output_recipient`]) shares with the
/// provider's. Locks the sender's deposit (one audit fee of the lease's value) and draws the
/// check in the next block ([`crate::audits::draw`]).
pub(crate) fn dispute(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    id: LeaseId,
    disclosure: KeyDisclosure,
) -> Result<(), TxError> {
    let until_ms = delivered(state, who, id)?.until_ms;
    let lease = state.leases.get(&id).expect("checked");
    let provider = lease.provider.to_x25519().ok_or_else(|| {
        TxError::InvalidState("the provider's key has no X25519 form, so no output key was agreed".into())
    })?;
    let job = state.jobs.get(&lease.job).expect("leases belong to jobs");
    let recipient = job.manifest.output_recipient(&lease.requester);
    if disclosure.verify(&recipient, &provider, &output_key_context(id)).is_none() {
        return Err(TxError::Invalid(
            "the disclosure does not prove the secret the job's output key shares with the provider's for \
             this lease"
                .into(),
        ));
    }
    let deposit = lease.value().bps(Params::u64(state.params().audit_fee_bps));
    state.lock(&who, Bucket::Escrow, deposit)?;
    state.unschedule(until_ms, Timer::DeliveryWindow(id));
    let l = state.leases.get_mut(&id).expect("checked");
    l.status = LeaseStatus::OutputsDisputed;
    l.delivery.as_mut().expect("checked").dispute = Some(Dispute { by: who, disclosure, deposit });
    state.schedule(cx.height + 1, Timer::AuditDraw(id));
    cx.emit(Event::OutputsDisputed { lease: id, deposit });
    Ok(())
}

/// Returns a dispute's deposit to its sender when lease `id` fails (its outputs confirmed bad,
/// or nobody could check them).
pub(crate) fn return_deposit(state: &mut State, id: LeaseId) {
    let Some(dispute) = state.leases.get_mut(&id).and_then(|l| l.delivery.as_mut()?.dispute.as_mut()) else {
        return;
    };
    let (deposit, by) = (std::mem::take(&mut dispute.deposit), dispute.by);
    state.pay_out(Bucket::Escrow, &by, deposit);
}
