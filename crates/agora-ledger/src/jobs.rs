//! Jobs: a requester's manifest, split into shards that are bid for, leased, checked and
//! paid independently, then reassembled in order by the requester.

use crate::error::TxError;
use crate::events::Event;
use crate::market::{self, Bid, Order};
use crate::params::Params;
use crate::state::{Bucket, Ctx, State, Timer};
use agora_core::codec::{Decode, DecodeError, DecodeErrorKind, Encode, Reader};
use agora_core::tx::{JobId, LeaseId, OrderId};
use agora_core::{AccountId, Amount, JobManifest, codec_struct};
use serde::{Deserialize, Serialize};

/// Most times a shard is re-matched after failed leases.
pub const MAX_ATTEMPTS: u32 = 8;

/// Where a shard is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "id")]
pub enum ShardStatus {
    /// Waiting in the book as this bid.
    Open(OrderId),
    /// Being computed (or audited) under this lease.
    Leased(LeaseId),
    /// Finished and paid under this lease.
    Done(LeaseId),
    /// Given up (deadline, cancellation, or no funds for a retry); escrow refunded.
    Abandoned,
}

impl Encode for ShardStatus {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            ShardStatus::Open(id) => (0u8, *id).encode_to(out),
            ShardStatus::Leased(id) => (1u8, *id).encode_to(out),
            ShardStatus::Done(id) => (2u8, *id).encode_to(out),
            ShardStatus::Abandoned => out.push(3),
        }
    }
}

impl Decode for ShardStatus {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.tag("ShardStatus")? {
            0 => ShardStatus::Open(u64::decode_from(r)?),
            1 => ShardStatus::Leased(u64::decode_from(r)?),
            2 => ShardStatus::Done(u64::decode_from(r)?),
            3 => ShardStatus::Abandoned,
            t => return Err(DecodeError::new("ShardStatus", DecodeErrorKind::UnknownTag(t))),
        })
    }
}

/// One shard's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Current status.
    pub status: ShardStatus,
    /// Leases tried so far.
    pub attempts: u32,
    /// Providers that failed this shard (never matched to it again).
    pub excluded: Vec<AccountId>,
    /// Every lease this shard has had, oldest first.
    pub history: Vec<LeaseId>,
}
codec_struct!(Shard {
    status,
    attempts,
    excluded: vec(MAX_ATTEMPTS as usize),
    history: vec(MAX_ATTEMPTS as usize)
});

/// A submitted job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Who pays.
    pub requester: AccountId,
    /// The terms.
    pub manifest: JobManifest,
    /// Height it was accepted at.
    pub submitted_height: u64,
    /// Per-shard progress.
    pub shards: Vec<Shard>,
    /// Whether every shard reached `Done` or `Abandoned`.
    pub finished: bool,
    /// Whether the requester cancelled it.
    pub cancelled: bool,
}
codec_struct!(Job {
    requester,
    manifest,
    submitted_height,
    shards: vec(agora_core::manifest::MAX_SHARDS),
    finished,
    cancelled
});

fn add_bid(state: &mut State, cx: &mut Ctx, job: JobId, shard: u32, escrow: Amount) -> OrderId {
    let j = state.jobs.get(&job).expect("caller holds the job");
    let m = &j.manifest;
    let bid = Bid {
        job,
        shard,
        requester: j.requester,
        class: m.class.clone(),
        quantity: m.shards[shard as usize].quantity,
        max_unit_price: m.max_unit_price,
        escrow,
    };
    let id = state.next_id();
    market::insert_order(state, id, Order::Bid(bid));
    cx.emit(Event::BidPosted { order: id, job, shard });
    id
}

/// Accepts a job: validates the manifest, locks escrow for every shard at the maximum
/// price, and posts one bid per shard.
pub(crate) fn submit(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    manifest: JobManifest,
) -> Result<JobId, TxError> {
    manifest.validate().map_err(|e| TxError::Invalid(e.0))?;
    if manifest.deadline_ms <= cx.time_ms {
        return Err(TxError::Invalid(format!(
            "deadline {} has already passed (block time {})",
            manifest.deadline_ms, cx.time_ms
        )));
    }
    let lifetime = Params::u64(state.params().max_order_lifetime_ms);
    if manifest.deadline_ms - cx.time_ms > lifetime {
        return Err(TxError::Invalid(format!("deadline is more than {lifetime} ms away")));
    }
    let floor = Amount(state.params().min_bid_price);
    if manifest.max_unit_price < floor {
        return Err(TxError::Invalid(format!(
            "max_unit_price {} is below the network's min_bid_price {floor}: bid at least {floor} per \
             device-second (unpaid work runs on your own machine with `agora run`)",
            manifest.max_unit_price
        )));
    }
    let escrow = manifest.max_cost().ok_or(TxError::Overflow("max price × quantity"))?;
    market::check_placeable(state, &manifest, &who, cx.height)?;
    state.lock(&who, Bucket::Escrow, escrow)?;
    let id = state.next_id();
    let shards = manifest.shards.len() as u32;
    let deadline = manifest.deadline_ms;
    state.jobs.insert(
        id,
        Job {
            requester: who,
            manifest,
            submitted_height: cx.height,
            shards: vec![],
            finished: false,
            cancelled: false,
        },
    );
    cx.emit(Event::JobSubmitted { job: id, requester: who, shards, escrow });
    for i in 0..shards {
        let quantity = state.jobs.get(&id).expect("inserted").manifest.shards[i as usize].quantity;
        let price = state.jobs.get(&id).expect("inserted").manifest.max_unit_price;
        let shard_escrow =
            price.checked_mul(u128::from(quantity)).expect("bounded by the total checked above");
        let order = add_bid(state, cx, id, i, shard_escrow);
        let shard =
            Shard { status: ShardStatus::Open(order), attempts: 0, excluded: vec![], history: vec![] };
        state.jobs.get_mut(&id).expect("inserted").shards.push(shard);
    }
    state.schedule(deadline, Timer::JobDeadline(id));
    Ok(id)
}

/// Cancels a job: open shards are refunded; running leases are cancelled (the provider
/// receives the cancellation fee); leases already committed finish normally.
pub(crate) fn cancel(state: &mut State, cx: &mut Ctx, who: AccountId, id: JobId) -> Result<(), TxError> {
    let job = state.jobs.get(&id).ok_or_else(|| TxError::not_found("job", id))?;
    if job.requester != who {
        return Err(TxError::Unauthorized("only the requester may cancel a job".into()));
    }
    if job.finished || job.cancelled {
        return Err(TxError::InvalidState("job has already finished".into()));
    }
    let statuses: Vec<ShardStatus> = job.shards.iter().map(|s| s.status.clone()).collect();
    state.jobs.get_mut(&id).expect("checked").cancelled = true;
    for (i, status) in statuses.into_iter().enumerate() {
        match status {
            ShardStatus::Open(order) => {
                market::close_order(state, cx, order);
                abandon(state, cx, id, i as u32, "cancelled by the requester");
            }
            ShardStatus::Leased(lease) => {
                if state.leases.get(&lease).is_some_and(|l| l.is_running()) {
                    crate::leases::fail(state, cx, lease, crate::events::LeaseFailure::Cancelled);
                }
            }
            ShardStatus::Done(_) | ShardStatus::Abandoned => {}
        }
    }
    check_finished(state, cx, id);
    Ok(())
}

/// Marks a shard given up (its escrow must already be refunded).
pub(crate) fn abandon(state: &mut State, cx: &mut Ctx, id: JobId, shard: u32, reason: &str) {
    if let Some(j) = state.jobs.get_mut(&id) {
        j.shards[shard as usize].status = ShardStatus::Abandoned;
        cx.emit(Event::ShardAbandoned { job: id, shard, reason: reason.to_string() });
    }
    check_finished(state, cx, id);
}

/// Records that a shard's lease settled.
pub(crate) fn shard_done(state: &mut State, cx: &mut Ctx, id: JobId, shard: u32, lease: LeaseId) {
    if let Some(j) = state.jobs.get_mut(&id) {
        j.shards[shard as usize].status = ShardStatus::Done(lease);
    }
    check_finished(state, cx, id);
}

/// Returns a failed lease's shard to the book, or refunds it when it cannot be retried.
///
/// `escrow` is the failed lease's escrow, already detached from the lease but still counted
/// in the escrow total. The new bid needs escrow at the job's maximum price; the difference
/// (refunded when the lease was created) is locked again from the requester's balance.
pub(crate) fn requeue(
    state: &mut State,
    cx: &mut Ctx,
    id: JobId,
    shard: u32,
    escrow: Amount,
    failed_provider: Option<AccountId>,
) {
    let job = state.jobs.get(&id).expect("leases belong to jobs").clone();
    let requester = job.requester;
    let s = &job.shards[shard as usize];
    let refund_and_abandon = |state: &mut State, cx: &mut Ctx, reason: &str| {
        state.pay_out(Bucket::Escrow, &requester, escrow);
        abandon(state, cx, id, shard, reason);
    };
    if job.cancelled {
        return refund_and_abandon(state, cx, "cancelled by the requester");
    }
    if job.manifest.deadline_ms <= cx.time_ms {
        return refund_and_abandon(state, cx, "job deadline passed");
    }
    if s.attempts >= MAX_ATTEMPTS {
        return refund_and_abandon(state, cx, "too many failed attempts");
    }
    let needed = job
        .manifest
        .max_unit_price
        .checked_mul(u128::from(job.manifest.shards[shard as usize].quantity))
        .expect("checked at submission");
    let top_up = needed.saturating_sub(escrow);
    if state.lock(&requester, Bucket::Escrow, top_up).is_err() {
        return refund_and_abandon(state, cx, "requester cannot fund a retry at the maximum price");
    }
    // Any excess (escrow above the max-price need cannot happen, but stay exact).
    let excess = escrow.saturating_sub(needed);
    state.pay_out(Bucket::Escrow, &requester, excess);
    let order = add_bid(state, cx, id, shard, needed);
    let j = state.jobs.get_mut(&id).expect("exists");
    let sh = &mut j.shards[shard as usize];
    sh.status = ShardStatus::Open(order);
    if let Some(p) = failed_provider
        && !sh.excluded.contains(&p)
    {
        sh.excluded.push(p);
    }
    cx.emit(Event::ShardRequeued { job: id, shard, order });
}

/// Runs from the `JobDeadline` timer: open shards are refunded and abandoned. Leases keep
/// their own deadlines, which never exceed the job's.
pub(crate) fn deadline(state: &mut State, cx: &mut Ctx, id: JobId) {
    let Some(job) = state.jobs.get(&id) else { return };
    let open: Vec<(u32, OrderId)> = job
        .shards
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s.status {
            ShardStatus::Open(o) => Some((i as u32, o)),
            _ => None,
        })
        .collect();
    for (i, order) in open {
        market::close_order(state, cx, order);
        abandon(state, cx, id, i, "job deadline passed before a provider was matched");
    }
}

fn check_finished(state: &mut State, cx: &mut Ctx, id: JobId) {
    let Some(j) = state.jobs.get(&id) else { return };
    if j.finished {
        return;
    }
    let terminal = |s: &Shard| matches!(s.status, ShardStatus::Done(_) | ShardStatus::Abandoned);
    if j.shards.iter().all(terminal) && !j.shards.is_empty() {
        let completed = j.shards.iter().filter(|s| matches!(s.status, ShardStatus::Done(_))).count() as u32;
        let abandoned = j.shards.len() as u32 - completed;
        let deadline = j.manifest.deadline_ms;
        state.jobs.get_mut(&id).expect("exists").finished = true;
        state.unschedule(deadline, Timer::JobDeadline(id));
        cx.emit(Event::JobFinished { job: id, completed, abandoned });
    }
}
