//! Leases and escrow: a match becomes a lease; its payment waits in escrow until the result
//! commitment is final and the audit window has closed clean.
//!
//! Money paths:
//! * **match**: the bid's escrow (max price × quantity) shrinks to the clearing price ×
//!   quantity; the difference is refunded at once.
//! * **settle**: the provider receives the seller price × units used, minus audit fees paid
//!   to the auditors who reported; the clearing spread on used units is burned; unused units
//!   are refunded.
//! * **deadline missed / provider vanished**: the escrow goes back to the shard, which is
//!   re-matched; `non_delivery_bps` of the payment is taken from the provider's collateral
//!   and burned, never paid to the requester (who could otherwise profit from failures it
//!   causes). No penalty at all when the job is encrypted and the requester never shared the
//!   input key with the provider: the provider could not have run it.
//! * **cancelled by the requester** while running: the requester pays for the device time the
//!   lease has run (the provider gets the seller price, the spread is burned), at least
//!   `cancel_fee_bps` of the escrow; the rest is refunded. A committed lease is paid in full.
//! * **fraud**: the escrow goes back to the shard and the provider is slashed (see audits).
//! * **unverified** (no auditor reported at all): the escrow goes back to the shard, which is
//!   re-matched to another provider; no slash and no penalty.

use crate::error::TxError;
use crate::events::{Event, LeaseFailure};
use crate::jobs;
use crate::market::{self, Order};
use crate::params::Params;
use crate::state::{Bucket, Ctx, State, Timer};
use agora_core::codec::{Decode, DecodeError, DecodeErrorKind, Encode, Reader};
use agora_core::disclosure::{KeyDisclosure, input_key_context, sealed};
use agora_core::tx::{AuditId, JobId, LeaseId, OrderId, ResultCommitment};
use agora_core::{AccountId, Amount, ResourceClass, codec_struct};
use serde::{Deserialize, Serialize};

/// Most sealed keys stored on one lease.
pub const MAX_KEYS: usize = 8;

/// Where a lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseStatus {
    /// The provider is computing.
    Running,
    /// A commitment is on chain; waiting for the audit draw or the window to close.
    Committed,
    /// Under audit.
    Auditing,
    /// The provider reported the inputs invalid; auditors are checking the statement.
    InputDisputed,
    /// The network's checks passed; an encrypted job's requester may confirm or dispute the
    /// outputs until its delivery window closes ([`crate::delivery`]).
    Delivered,
    /// The requester disputed the delivered outputs; auditors will decrypt and check them.
    OutputsDisputed,
    /// Paid out.
    Settled,
    /// Ended without payment to the provider.
    Failed(LeaseFailure),
}

impl Encode for LeaseStatus {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            LeaseStatus::Running => out.push(0),
            LeaseStatus::Committed => out.push(1),
            LeaseStatus::Auditing => out.push(2),
            LeaseStatus::Settled => out.push(3),
            LeaseStatus::Failed(f) => {
                out.push(4);
                f.encode_to(out);
            }
            LeaseStatus::InputDisputed => out.push(5),
            LeaseStatus::Delivered => out.push(6),
            LeaseStatus::OutputsDisputed => out.push(7),
        }
    }
}

impl Decode for LeaseStatus {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.tag("LeaseStatus")? {
            0 => LeaseStatus::Running,
            1 => LeaseStatus::Committed,
            2 => LeaseStatus::Auditing,
            3 => LeaseStatus::Settled,
            4 => LeaseStatus::Failed(LeaseFailure::decode_from(r)?),
            5 => LeaseStatus::InputDisputed,
            6 => LeaseStatus::Delivered,
            7 => LeaseStatus::OutputsDisputed,
            t => return Err(DecodeError::new("LeaseStatus", DecodeErrorKind::UnknownTag(t))),
        })
    }
}

/// A key sealed to one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    /// Recipient.
    pub to: AccountId,
    /// Sealed key bytes.
    pub sealed: Vec<u8>,
}
codec_struct!(SealedKey { to, sealed: bytes(agora_core::tx::MAX_SEALED_KEY) });

/// How a settled lease's escrow was split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// Paid to the provider.
    pub provider_paid: Amount,
    /// Paid to auditors.
    pub auditors_paid: Amount,
    /// Returned to the requester.
    pub requester_refund: Amount,
    /// Burned.
    pub burned: Amount,
    /// Height of settlement.
    pub height: u64,
    /// Device-seconds paid for: the provider's claim, or less if its audit cut it.
    pub units: u64,
}
codec_struct!(Settlement { provider_paid, auditors_paid, requester_refund, burned, height, units });

/// The verification facts that applied to a lease (stated on its receipt).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Probability the lease was audited, ppm.
    pub audit_ppm: u32,
    /// Items sampled if audited.
    pub sample: u32,
    /// Probability of catching cheating on `detect_fraction_bps` of items, ppm.
    pub detection_ppm: u32,
    /// Whether the draw selected it.
    pub audited: bool,
}
codec_struct!(Verification { audit_ppm, sample, detection_ppm, audited });

/// A provider's obligation to compute one shard, and the escrow that pays for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Job.
    pub job: JobId,
    /// Shard index.
    pub shard: u32,
    /// Buyer.
    pub requester: AccountId,
    /// Seller.
    pub provider: AccountId,
    /// Class.
    pub class: ResourceClass,
    /// Device-seconds.
    pub quantity: u64,
    /// Price per device-second charged to the requester.
    pub buyer_price: Amount,
    /// Price per device-second paid to the provider.
    pub seller_price: Amount,
    /// Funds held for this lease.
    pub escrow: Amount,
    /// Height it started.
    pub start_height: u64,
    /// Time it started, unix ms.
    pub start_ms: u64,
    /// Commitment deadline, unix ms.
    pub deadline_ms: u64,
    /// Current status.
    pub status: LeaseStatus,
    /// The provider's commitment, once posted.
    pub commitment: Option<ResultCommitment>,
    /// Height the commitment was included at.
    pub committed_height: u64,
    /// Verification facts.
    pub verification: Verification,
    /// The audit, if one was opened.
    pub audit: Option<AuditId>,
    /// Input keys shared for this lease.
    pub keys: Vec<SealedKey>,
    /// The payout, once settled.
    pub settlement: Option<Settlement>,
    /// Provider collateral reserved for this lease until it settles or fails.
    pub reserved: Amount,
    /// The input item the provider reported malformed (`None` with status
    /// [`LeaseStatus::InputDisputed`]: the shard's input as a whole).
    pub disputed_item: Option<u32>,
    /// With an encrypted job's disputed inputs: the provider's proven disclosure of the input
    /// key sealed to it, so auditors open the inputs exactly as it did.
    pub input_disclosure: Option<KeyDisclosure>,
    /// An encrypted lease's delivery: what its payout waits on ([`crate::delivery`]).
    pub delivery: Option<crate::delivery::Delivery>,
}
codec_struct!(Lease {
    job,
    shard,
    requester,
    provider,
    class,
    quantity,
    buyer_price,
    seller_price,
    escrow,
    start_height,
    start_ms,
    deadline_ms,
    status,
    commitment,
    committed_height,
    verification,
    audit,
    keys: vec(MAX_KEYS),
    settlement,
    reserved,
    disputed_item,
    input_disclosure,
    delivery
});

impl Lease {
    /// The input key shared with `to` for this lease, if any (at most one per recipient).
    pub fn key_for(&self, to: &AccountId) -> Option<&SealedKey> {
        self.keys.iter().find(|k| k.to == *to)
    }

    /// Whether the provider is still computing.
    pub fn is_running(&self) -> bool {
        self.status == LeaseStatus::Running
    }

    /// Device-seconds paid for, once settled ([`Settlement::units`]).
    pub fn units_paid(&self) -> Option<u64> {
        self.settlement.as_ref().map(|s| s.units)
    }

    /// Device-seconds the provider reported using, capped at the lease quantity.
    pub fn units_used(&self) -> u64 {
        self.units_for(self.claimed_ms())
    }

    /// Device-ms the provider's commitment claims (0 before it commits).
    pub fn claimed_ms(&self) -> u64 {
        self.commitment.as_ref().map_or(0, |c| c.metering.device_ms)
    }

    /// Billable device-seconds for `device_ms` of use: rounded up, at least one, at most the
    /// lease quantity.
    pub fn units_for(&self, device_ms: u64) -> u64 {
        device_ms.div_ceil(1000).clamp(1, self.quantity)
    }

    /// Value of the lease at the buyer price (the `R` of the deterrence inequality).
    pub fn value(&self) -> Amount {
        self.buyer_price.checked_mul(u128::from(self.quantity)).expect("within escrow")
    }
}

/// The collateral a lease of `quantity` units at `buyer_price` reserves: `slash_multiple`
/// times its value; `None` if that overflows (no provider could cover it).
pub fn reservation(params: &Params, buyer_price: Amount, quantity: u64) -> Option<Amount> {
    buyer_price.checked_mul(u128::from(quantity))?.checked_mul(params.slash_multiple)
}

/// Ends a running lease's computing phase: its deadline no longer applies and it leaves its
/// provider's running list (its status is the caller's to set).
fn stop_running(state: &mut State, id: LeaseId) {
    let Some(l) = state.leases.get(&id) else { return };
    let (deadline, provider) = (l.deadline_ms, l.provider);
    state.unschedule(deadline, Timer::LeaseDeadline(id));
    if let Some(p) = state.providers.get_mut(&provider) {
        p.running.retain(|x| *x != id);
    }
}

/// Returns a lease's reservation to its provider's free collateral (at settlement or failure).
fn release_reservation(state: &mut State, id: LeaseId) {
    let Some(l) = state.leases.get_mut(&id) else { return };
    let (provider, amount) = (l.provider, std::mem::take(&mut l.reserved));
    if let Some(p) = state.providers.get_mut(&provider) {
        p.reserved = p.reserved.saturating_sub(amount);
    }
}

/// Turns a matched (bid, ask) pair into a lease at the clearing prices.
pub(crate) fn create(
    state: &mut State,
    cx: &mut Ctx,
    bid_id: OrderId,
    ask_id: OrderId,
    buyer_price: Amount,
    seller_price: Amount,
) {
    let Some(Order::Bid(bid)) = market::remove_order(state, bid_id) else { unreachable!("matched bid") };
    // The bid leaves the book; its escrow moves to the lease, the over-lock is refunded.
    let escrow = buyer_price.checked_mul(u128::from(bid.quantity)).expect("≤ max price × quantity");
    state.pay_out(Bucket::Escrow, &bid.requester, bid.escrow.checked_sub(escrow).expect("buyer price ≤ max"));
    // The ask shrinks, or leaves the book when used up.
    let provider = market::fill_ask(state, ask_id, bid.quantity).provider;
    let job_deadline = state.jobs.get(&bid.job).expect("bids belong to jobs").manifest.deadline_ms;
    let p = state.params();
    let allowance = u128::from(bid.quantity) * 1000 * p.lease_slack_pct / 100 + p.lease_grace_ms;
    let deadline_ms = job_deadline.min(cx.time_ms.saturating_add(Params::u64(allowance)));
    let reserved = reservation(p, buyer_price, bid.quantity).expect("matching checked the reservation");
    let id = state.next_id();
    state.leases.insert(
        id,
        Lease {
            job: bid.job,
            shard: bid.shard,
            requester: bid.requester,
            provider,
            class: bid.class.clone(),
            quantity: bid.quantity,
            buyer_price,
            seller_price,
            escrow,
            start_height: cx.height,
            start_ms: cx.time_ms,
            deadline_ms,
            status: LeaseStatus::Running,
            commitment: None,
            committed_height: 0,
            verification: Verification::default(),
            audit: None,
            keys: vec![],
            settlement: None,
            reserved,
            disputed_item: None,
            input_disclosure: None,
            delivery: None,
        },
    );
    state.schedule(deadline_ms, Timer::LeaseDeadline(id));
    let p = state.providers.get_mut(&provider).expect("asks belong to providers");
    p.running.push(id);
    p.reserved = p.reserved.checked_add(reserved).expect("≤ collateral, checked at matching");
    let job = state.jobs.get_mut(&bid.job).expect("exists");
    let shard = &mut job.shards[bid.shard as usize];
    shard.status = jobs::ShardStatus::Leased(id);
    shard.attempts += 1;
    shard.history.push(id);
    cx.emit(Event::LeaseCreated {
        lease: id,
        ask: ask_id,
        job: bid.job,
        shard: bid.shard,
        provider,
        requester: bid.requester,
        unit_price: buyer_price,
        quantity: bid.quantity,
        deadline_ms,
    });
}

/// Records an input key sealed by the requester for the provider (or an auditor).
pub(crate) fn share_key(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    id: LeaseId,
    to: AccountId,
    sealed: Vec<u8>,
) -> Result<(), TxError> {
    let lease = state.leases.get(&id).ok_or_else(|| TxError::not_found("lease", id))?;
    let agent = state.jobs.get(&lease.job).and_then(|j| j.manifest.key_agent);
    if lease.requester != who && agent != Some(who) {
        return Err(TxError::Unauthorized(
            "only the requester or the job's key agent shares input keys".into(),
        ));
    }
    let auditor = lease.audit.and_then(|a| state.audits.get(&a)).is_some_and(|a| a.is_assigned(&to));
    if to != lease.provider && !auditor {
        return Err(TxError::Invalid("keys may be shared only with the lease's provider or auditors".into()));
    }
    if sealed::ephemeral(&sealed).is_none() {
        return Err(TxError::Invalid(format!(
            "not a sealed key: {} bytes with version {:?}, where a sealed key is {} bytes, version {}, \
             and its ephemeral key a point on the curve",
            sealed.len(),
            sealed.first(),
            sealed::LEN,
            sealed::VERSION
        )));
    }
    if lease.keys.len() >= MAX_KEYS || lease.key_for(&to).is_some() {
        return Err(TxError::InvalidState("a key for this recipient exists, or the key list is full".into()));
    }
    state.leases.get_mut(&id).expect("checked").keys.push(SealedKey { to, sealed });
    cx.emit(Event::KeyShared { lease: id, to });
    Ok(())
}

/// Accepts the provider's result commitment for a running lease. The audit draw happens in
/// the *next* block, with randomness the provider could not know when it committed.
pub(crate) fn commit(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    id: LeaseId,
    commitment: ResultCommitment,
) -> Result<(), TxError> {
    let lease = state.leases.get(&id).ok_or_else(|| TxError::not_found("lease", id))?;
    if lease.provider != who {
        return Err(TxError::Unauthorized("only the lease's provider may commit".into()));
    }
    if !lease.is_running() {
        return Err(TxError::InvalidState(format!("lease is {:?}, not running", lease.status)));
    }
    let job = state.jobs.get(&lease.job).expect("leases belong to jobs");
    let expected = job.manifest.output_items(&job.manifest.shards[lease.shard as usize]);
    if commitment.item_count != expected {
        return Err(TxError::Invalid(format!(
            "commitment has {} items, the shard produces {expected}",
            commitment.item_count
        )));
    }
    if commitment.metering.device_ms > lease.quantity.saturating_mul(1000) {
        return Err(TxError::Invalid(format!(
            "metering reports {} device-ms, more than the {} device-seconds leased",
            commitment.metering.device_ms, lease.quantity
        )));
    }
    let energy_cap =
        (u128::from(commitment.metering.device_ms) * state.params().max_device_watts).div_ceil(3_600);
    if u128::from(commitment.metering.energy_mwh) > energy_cap {
        return Err(TxError::Invalid(format!(
            "metering reports {} mWh for {} device-ms, more than {} W could draw",
            commitment.metering.energy_mwh,
            commitment.metering.device_ms,
            state.params().max_device_watts
        )));
    }
    let root = commitment.root;
    stop_running(state, id);
    let l = state.leases.get_mut(&id).expect("checked");
    l.status = LeaseStatus::Committed;
    l.commitment = Some(commitment);
    l.committed_height = cx.height;
    state.schedule(cx.height + 1, Timer::AuditDraw(id));
    cx.emit(Event::ResultCommitted { lease: id, root });
    Ok(())
}

/// Accepts the provider's statement that a running lease's inputs cannot be computed
/// ([`agora_core::tx::TxPayload::ReportInvalidInput`]). The lease stops running (no deadline,
/// no liveness failure) and, in the next block, auditors are drawn to check the statement
/// ([`crate::audits::draw`]). For an encrypted job the statement must carry the provider's
/// proven disclosure of the input key sealed to it ([`input_disclosure`]), so auditors open the
/// inputs as the provider did.
pub(crate) fn report_invalid(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    id: LeaseId,
    item: Option<u32>,
    disclosure: Option<KeyDisclosure>,
) -> Result<(), TxError> {
    let lease = state.leases.get(&id).ok_or_else(|| TxError::not_found("lease", id))?;
    if lease.provider != who {
        return Err(TxError::Unauthorized("only the lease's provider may report its inputs invalid".into()));
    }
    if !lease.is_running() {
        return Err(TxError::InvalidState(format!("lease is {:?}, not running", lease.status)));
    }
    let job = state.jobs.get(&lease.job).expect("leases belong to jobs");
    input_disclosure(lease, id, job.manifest.encrypted, disclosure.as_ref())?;
    let count = job.manifest.shards[lease.shard as usize].item_count;
    if let Some(i) = item.filter(|i| *i >= count) {
        return Err(TxError::Invalid(format!("the shard has {count} input items, not item {i}")));
    }
    stop_running(state, id);
    let l = state.leases.get_mut(&id).expect("checked");
    l.status = LeaseStatus::InputDisputed;
    l.disputed_item = item;
    l.input_disclosure = disclosure;
    state.schedule(cx.height + 1, Timer::AuditDraw(id));
    cx.emit(Event::InputDisputed { lease: id, item });
    Ok(())
}

/// Checks the key disclosure of a statement that lease `id`'s inputs are invalid: none for an
/// unencrypted job; for an encrypted one, a disclosure that proves the secret opening the input
/// key sealed to the provider (refused if no key was shared: the provider then owes no penalty
/// and has nothing to dispute).
fn input_disclosure(
    lease: &Lease,
    id: LeaseId,
    encrypted: bool,
    disclosure: Option<&KeyDisclosure>,
) -> Result<(), TxError> {
    match (encrypted, disclosure) {
        (false, None) => Ok(()),
        (false, Some(_)) => {
            Err(TxError::Invalid("an unencrypted job's inputs are disputed without a key disclosure".into()))
        }
        (true, None) => Err(TxError::Invalid(
            "an encrypted job's inputs are disputed with a disclosure of the input key sealed to the \
             provider (auditors hold no key)"
                .into(),
        )),
        (true, Some(d)) => {
            let key = lease.key_for(&lease.provider).ok_or_else(|| {
                TxError::InvalidState(
                    "no input key was shared with the provider: it owes no penalty for this lease and has \
                     nothing to dispute"
                        .into(),
                )
            })?;
            let ephemeral = sealed::ephemeral(&key.sealed).expect("checked when shared");
            match d.verify(&lease.provider, &ephemeral, &input_key_context(id)) {
                Some(_) => Ok(()),
                None => Err(TxError::Invalid(
                    "the key disclosure does not prove the secret of the input key sealed to the provider \
                     for this lease"
                        .into(),
                )),
            }
        }
    }
}

/// Pays out a lease whose audit window closed clean (or whose audit did not confirm fraud).
/// `reporters` are the auditors that reported and earn the audit fee. `measured_ms`, an
/// audit's own measurement of the shard, bounds the device time paid for ([`cap_metering`]).
pub(crate) fn settle(
    state: &mut State,
    cx: &mut Ctx,
    id: LeaseId,
    reporters: &[AccountId],
    measured_ms: Option<u64>,
) {
    let lease = state.leases.get(&id).expect("settling an existing lease").clone();
    debug_assert!(matches!(
        lease.status,
        LeaseStatus::Committed | LeaseStatus::Auditing | LeaseStatus::Delivered
    ));
    let units = match measured_ms {
        Some(measured) => cap_metering(state, cx, &lease, id, measured),
        None => lease.units_used(),
    };
    let used = u128::from(units);
    let charged = lease.buyer_price.checked_mul(used).expect("≤ escrow");
    let earned = lease.seller_price.checked_mul(used).expect("≤ charged");
    let spread = charged.checked_sub(earned).expect("buyer price ≥ seller price");
    let refund = lease.escrow.checked_sub(charged).expect("charged ≤ escrow");
    let fee_each = earned.bps(Params::u64(state.params().audit_fee_bps));
    let fees = fee_each.checked_mul(reporters.len() as u128).expect("bounded").min(earned);
    let provider_paid = earned.checked_sub(fees).expect("capped");
    // Pay auditors one fee each while the capped total lasts.
    let mut left = fees;
    for a in reporters {
        let f = fee_each.min(left);
        state.pay_out(Bucket::Escrow, a, f);
        left = left.checked_sub(f).expect("min");
    }
    state.pay_out(Bucket::Escrow, &lease.provider, provider_paid);
    state.pay_out(Bucket::Escrow, &lease.requester, refund);
    state.burn(Bucket::Escrow, spread);
    let settlement = Settlement {
        provider_paid,
        auditors_paid: fees,
        requester_refund: refund,
        burned: spread,
        height: cx.height,
        units,
    };
    release_reservation(state, id);
    let l = state.leases.get_mut(&id).expect("exists");
    l.escrow = Amount::ZERO;
    l.status = LeaseStatus::Settled;
    l.settlement = Some(settlement);
    if let Some(p) = state.providers.get_mut(&lease.provider) {
        p.trust.leases_settled += 1;
        p.earned = p.earned.checked_add(provider_paid).expect("bounded");
    }
    cx.emit(Event::LeaseSettled {
        lease: id,
        provider_paid,
        auditors_paid: fees,
        requester_refund: refund,
        burned: spread,
    });
    jobs::shard_done(state, cx, lease.job, lease.shard, id);
}

/// The most device time a claim may exceed an audit's measurement `measured_ms` (already
/// scaled to the whole shard) by and still be paid as claimed: `metering_slack_pct` of it plus
/// `metering_grace_ms`, room for honest differences between machines and runs. Within it a
/// claim is never questioned, so the slack is also what an over-claim can take unnoticed.
pub fn metering_bound(params: &Params, measured_ms: u64) -> u64 {
    let bound =
        u128::from(measured_ms).saturating_mul(params.metering_slack_pct) / 100 + params.metering_grace_ms;
    u64::try_from(bound).unwrap_or(u64::MAX)
}

/// The device-seconds an audited lease is paid for, given the audit's measurement of what the
/// shard takes (`measured_ms`): the claim, if within [`metering_bound`]; otherwise the
/// measurement alone (a caught over-claim earns nothing an honest claim would not), and the
/// excess claimed over it is fined, from collateral like a slash, the larger of
/// `slash_multiple` and `λ·(1−q)/q` times its value at the seller price, where `q = p·(1−α)` is
/// the chance an over-claim is caught: audited with probability `p`, and not shielded by
/// colluding auditors holding up to `collusion_alpha_bps` of auditor stake. Over-claiming
/// beyond the bound then loses in expectation, `(1−q)·gain − q·fine < 0`, and keeps losing for
/// an adversary beyond `α` as long as its shield share `s` keeps `s < slash_multiple·(1−s)`
/// (at the default 10, up to 90 % on leases audited with certainty). The provider's trust
/// resets and its next leases are audited with certainty.
fn cap_metering(state: &mut State, cx: &mut Ctx, lease: &Lease, id: LeaseId, measured_ms: u64) -> u64 {
    let p = state.params().clone();
    let claimed_ms = lease.claimed_ms();
    let (claimed, allowed) = (lease.units_for(claimed_ms), lease.units_for(measured_ms));
    if claimed_ms <= metering_bound(&p, measured_ms) || claimed <= allowed {
        return claimed;
    }
    // The chance an over-claim is cut: audited, and not shielded by colluding auditors.
    let caught = (u128::from(lease.verification.audit_ppm) * (10_000 - p.collusion_alpha_bps) / 10_000)
        .clamp(1, 1_000_000);
    let excess = lease.seller_price.checked_mul(u128::from(claimed - allowed)).expect("≤ escrow");
    let deterrent = excess
        .mul_div(p.lambda_bps, 10_000)
        .and_then(|v| v.mul_div(1_000_000 - caught, caught))
        .unwrap_or(Amount(u128::MAX));
    let due = deterrent.max(excess.checked_mul(p.slash_multiple).unwrap_or(Amount(u128::MAX)));
    let forced = Params::u64(p.forced_audits_after_inconclusive);
    let fine = state.providers.get_mut(&lease.provider).map_or(Amount::ZERO, |prov| {
        prov.trust.reset_streak();
        prov.trust.forced_audits = prov.trust.forced_audits.max(forced);
        prov.take_collateral(due)
    });
    crate::audits::forfeit(state, fine);
    cx.emit(Event::MeteringCapped { lease: id, claimed_ms, allowed_ms: measured_ms, fine });
    allowed
}

/// Ends a lease without paying the provider. For missed deadlines and vanished providers,
/// a penalty is burned from the provider's collateral (unless the requester withheld the
/// input key of an encrypted job) and the shard is re-matched; a cancellation pays the
/// provider for the time the lease ran ([`cancellation`]) and refunds the rest; for fraud the
/// escrow returns to the shard (the slash itself is applied by the audit).
pub(crate) fn fail(state: &mut State, cx: &mut Ctx, id: LeaseId, reason: LeaseFailure) {
    let lease = state.leases.get(&id).expect("failing an existing lease").clone();
    if matches!(lease.status, LeaseStatus::Settled | LeaseStatus::Failed(_)) {
        return;
    }
    let value = lease.value();
    let mut penalty = Amount::ZERO;
    let mut escrow = lease.escrow;
    crate::delivery::return_deposit(state, id);
    match reason {
        r if r.is_non_delivery() && !requester_withheld_key(state, &lease) => {
            let bps = Params::u64(state.params().non_delivery_bps);
            if let Some(p) = state.providers.get_mut(&lease.provider) {
                penalty = value.bps(bps).min(p.collateral);
                p.collateral = p.collateral.checked_sub(penalty).expect("min");
                p.trust.reset_streak();
                p.trust.leases_failed += 1;
            }
            state.burn(Bucket::Collateral, penalty);
        }
        LeaseFailure::InvalidInput => {
            // The requester's inputs cost the provider its time: the cancel fee, from escrow.
            let fee = escrow.bps(Params::u64(state.params().cancel_fee_bps));
            state.pay_out(Bucket::Escrow, &lease.provider, fee);
            escrow = escrow.checked_sub(fee).expect("a share");
        }
        LeaseFailure::Cancelled => {
            let (charged, paid) = cancellation(state.params(), &lease, cx.time_ms);
            state.pay_out(Bucket::Escrow, &lease.provider, paid);
            state.burn(Bucket::Escrow, charged.checked_sub(paid).expect("paid ≤ charged"));
            escrow = escrow.checked_sub(charged).expect("charged ≤ escrow");
        }
        // Fraud and unverified leases (the audit decides what follows), and non-deliveries the
        // requester caused by withholding the key: nothing here.
        _ => {}
    }
    if lease.is_running() {
        stop_running(state, id);
    }
    release_reservation(state, id);
    let l = state.leases.get_mut(&id).expect("exists");
    l.escrow = Amount::ZERO;
    l.status = LeaseStatus::Failed(reason);
    cx.emit(Event::LeaseFailed { lease: id, reason, refunded: escrow, penalty });
    // A cancelled shard is not wanted; one whose inputs failed would fail another provider
    // the same way. Either is given up; any other is re-matched.
    let given_up = match reason {
        LeaseFailure::Cancelled => Some("cancelled by the requester"),
        LeaseFailure::InvalidInput => Some("auditors confirmed its inputs cannot be computed"),
        _ => None,
    };
    match given_up {
        Some(why) => {
            state.pay_out(Bucket::Escrow, &lease.requester, escrow);
            jobs::abandon(state, cx, lease.job, lease.shard, why);
        }
        None => jobs::requeue(state, cx, lease.job, lease.shard, escrow, Some(lease.provider)),
    }
}

/// What a requester's cancellation of a running lease at `now_ms` costs it, and what the
/// provider receives: the device-seconds the lease has run so far (wall time since it
/// started, rounded up, at most the quantity) at the buyer price, of which the provider gets
/// the seller price and the spread is burned, as at settlement; but at least
/// `cancel_fee_bps` of the escrow, all of it to the provider. A commitment, and with it the
/// output's address, exists only once the work is done, and a committed lease is paid in full
/// whatever the requester does, so a requester cannot take the outputs and cancel the bill.
/// Returns `(charged, paid to the provider)`.
fn cancellation(params: &Params, lease: &Lease, now_ms: u64) -> (Amount, Amount) {
    let ran = u128::from(lease.units_for(now_ms.saturating_sub(lease.start_ms)));
    let charged = lease.buyer_price.checked_mul(ran).expect("≤ escrow");
    let earned = lease.seller_price.checked_mul(ran).expect("≤ charged");
    let fee = lease.escrow.bps(Params::u64(params.cancel_fee_bps));
    if earned >= fee { (charged, earned) } else { (fee.max(charged).min(lease.escrow), fee) }
}

/// Whether the lease's job is encrypted and its requester never shared the input key with
/// the provider, so the failure is the requester's.
fn requester_withheld_key(state: &State, lease: &Lease) -> bool {
    let encrypted = state.jobs.get(&lease.job).is_some_and(|j| j.manifest.encrypted);
    encrypted && lease.key_for(&lease.provider).is_none()
}

/// Runs from the `LeaseDeadline` timer.
pub(crate) fn deadline(state: &mut State, cx: &mut Ctx, id: LeaseId) {
    if state.leases.get(&id).is_some_and(Lease::is_running) {
        fail(state, cx, id, LeaseFailure::MissedDeadline);
    }
}

/// Runs from the `SettleLease` timer: an unaudited lease's window closed (a network with no
/// auditor to draw). An encrypted job's requester still gets its delivery window.
pub(crate) fn window_closed(state: &mut State, cx: &mut Ctx, id: LeaseId) {
    if state.leases.get(&id).is_some_and(|l| l.status == LeaseStatus::Committed) {
        crate::delivery::release(state, cx, id, &[], None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_status_is_its_tag_then_the_failures_tag() {
        let failed = LeaseStatus::Failed(LeaseFailure::OutputUnavailable);
        assert_eq!(failed.encode(), vec![4, 7]);
        assert_eq!(LeaseStatus::decode(&[4, 7]).unwrap(), failed);
        assert_eq!(LeaseStatus::decode(&[5]).unwrap(), LeaseStatus::InputDisputed);
        assert!(LeaseStatus::decode(&[4, 8]).unwrap_err().to_string().contains("LeaseFailure"));
    }
}
