//! The ledger state: every table, the money primitives that keep supply conserved, the
//! schedule of future work, and the conversion to and from store entries.

use crate::accounts::Account;
use crate::audits::Audit;
use crate::book::OrderBook;
use crate::error::TxError;
use crate::events::Event;
use crate::governance::Proposal;
use crate::jobs::Job;
use crate::leases::Lease;
use crate::market::{ClassStats, Order};
use crate::params::Params;
use crate::registry::Provider;
use crate::sessions::{Session, Window, WindowKey};
use crate::staking::Validator;
use crate::table::Table;
use agora_core::codec::{Decode, DecodeError, Encode, Reader};
use agora_core::session::SessionId;
use agora_core::tx::{AuditId, JobId, LeaseId, OrderId, ProposalId};
use agora_core::{AccountId, Amount, Hash, PublicKey, ResourceClass, codec_struct};
use serde::{Deserialize, Serialize};

/// Where every unit of the token sits. The ledger asserts after every block that
/// `liquid + staked + collateral + escrow == minted - burned`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supply {
    /// Ever created (genesis).
    pub minted: Amount,
    /// Ever destroyed (fees, spreads, slashes).
    pub burned: Amount,
    /// Spendable balances.
    pub liquid: Amount,
    /// Validator stake, bonded or unbonding.
    pub staked: Amount,
    /// Provider collateral, locked or withdrawing.
    pub collateral: Amount,
    /// Requester funds held in bids and leases.
    pub escrow: Amount,
}
codec_struct!(Supply { minted, burned, liquid, staked, collateral, escrow });

impl Supply {
    /// Whether every unit is accounted for.
    pub fn is_conserved(&self) -> bool {
        let held = [self.staked, self.collateral, self.escrow]
            .iter()
            .try_fold(self.liquid, |a, b| a.checked_add(*b));
        held.is_some() && held == self.minted.checked_sub(self.burned)
    }
}

/// Chain-wide singleton values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Chain id (bound into every signature).
    pub chain_id: String,
    /// Height of the last applied block (genesis = 0).
    pub height: u64,
    /// Timestamp of the last applied block.
    pub timestamp_ms: u64,
    /// The epoch of the next block: it advances after the last block of an epoch.
    pub epoch: u64,
    /// The committee of `epoch`, ordered by stake then key.
    pub committee: Vec<AccountId>,
    /// Next id for orders, jobs, leases, audits, proposals.
    pub next_id: u64,
    /// Supply accounting.
    pub supply: Supply,
    /// Protocol parameters.
    pub params: Params,
    /// The randomness of the last applied block, which the next block's builds on.
    pub seed: Hash,
}
codec_struct!(Meta {
    chain_id: string(64),
    height,
    timestamp_ms,
    epoch,
    committee: vec(1024),
    next_id,
    supply,
    params,
    seed
});

/// Work scheduled for a height or a time. Timers are consensus state: every node runs them
/// at the same block, in key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// At a height: release unlocked stake or collateral of an account.
    Release(AccountId),
    /// At a height: draw whether a committed lease is audited.
    AuditDraw(LeaseId),
    /// At a height: a lease's audit window closes.
    SettleLease(LeaseId),
    /// At a height: an audit's report deadline.
    AuditDeadline(AuditId),
    /// At a time: a proposal's voting ends.
    CloseProposal(ProposalId),
    /// At a height: check whether a provider has gone silent.
    Liveness(AccountId),
    /// At a time: an order expires.
    OrderExpiry(OrderId),
    /// At a time: a lease's commitment deadline.
    LeaseDeadline(LeaseId),
    /// At a time: a job's deadline.
    JobDeadline(JobId),
    /// At a time: a delivered encrypted lease's window for its requester to dispute closes.
    DeliveryWindow(LeaseId),
    /// At a height: look for providers for a session's empty places.
    MatchSession(SessionId),
    /// At a time: a session takes no more windows; its unspent escrow returns.
    CloseSession(SessionId),
    /// At a height: a serving window's audit window closes.
    SettleWindow(WindowKey),
    /// At a height: a receipt challenge on a window must have been answered.
    ChallengeDeadline(WindowKey),
    /// At a time: a session's receipts can no longer be challenged.
    FinalizeSession(SessionId),
    /// At a height: draw whether a committed serving window is audited.
    DrawWindowAudit(WindowKey),
    /// At a time: a provider that left a session can commit no more windows.
    SessionMemberGone(SessionId, AccountId),
    /// At a time: the receipts of a provider that left a session can no longer be challenged.
    ReleaseSessionMember(SessionId, AccountId),
}

impl Timer {
    fn tag(&self) -> u8 {
        match self {
            Timer::Release(_) => 0,
            Timer::AuditDraw(_) => 1,
            Timer::SettleLease(_) => 2,
            Timer::AuditDeadline(_) => 3,
            Timer::CloseProposal(_) => 4,
            Timer::Liveness(_) => 5,
            Timer::OrderExpiry(_) => 6,
            Timer::LeaseDeadline(_) => 7,
            Timer::JobDeadline(_) => 8,
            Timer::DeliveryWindow(_) => 9,
            Timer::MatchSession(_) => 10,
            Timer::CloseSession(_) => 11,
            Timer::SettleWindow(_) => 12,
            Timer::ChallengeDeadline(_) => 13,
            Timer::FinalizeSession(_) => 14,
            Timer::DrawWindowAudit(_) => 15,
            Timer::SessionMemberGone(..) => 16,
            Timer::ReleaseSessionMember(..) => 17,
        }
    }

    /// Whether the timer fires on block time (ms) rather than height.
    pub fn is_timed(&self) -> bool {
        matches!(
            self,
            Timer::OrderExpiry(_)
                | Timer::LeaseDeadline(_)
                | Timer::JobDeadline(_)
                | Timer::CloseProposal(_)
                | Timer::DeliveryWindow(_)
                | Timer::CloseSession(_)
                | Timer::FinalizeSession(_)
                | Timer::SessionMemberGone(..)
                | Timer::ReleaseSessionMember(..)
        )
    }
}

impl Encode for Timer {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
        match self {
            Timer::Release(a) | Timer::Liveness(a) => a.encode_to(out),
            Timer::AuditDraw(id)
            | Timer::SettleLease(id)
            | Timer::AuditDeadline(id)
            | Timer::CloseProposal(id)
            | Timer::OrderExpiry(id)
            | Timer::LeaseDeadline(id)
            | Timer::JobDeadline(id)
            | Timer::DeliveryWindow(id)
            | Timer::MatchSession(id)
            | Timer::CloseSession(id)
            | Timer::FinalizeSession(id) => id.encode_to(out),
            Timer::SettleWindow(key) | Timer::ChallengeDeadline(key) | Timer::DrawWindowAudit(key) => {
                key.encode_to(out)
            }
            Timer::SessionMemberGone(id, provider) | Timer::ReleaseSessionMember(id, provider) => {
                id.encode_to(out);
                provider.encode_to(out);
            }
        }
    }
}

impl Decode for Timer {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tag = r.tag("Timer")?;
        Ok(match tag {
            0 => Timer::Release(PublicKey::decode_from(r)?),
            5 => Timer::Liveness(PublicKey::decode_from(r)?),
            1 => Timer::AuditDraw(u64::decode_from(r)?),
            2 => Timer::SettleLease(u64::decode_from(r)?),
            3 => Timer::AuditDeadline(u64::decode_from(r)?),
            4 => Timer::CloseProposal(u64::decode_from(r)?),
            6 => Timer::OrderExpiry(u64::decode_from(r)?),
            7 => Timer::LeaseDeadline(u64::decode_from(r)?),
            8 => Timer::JobDeadline(u64::decode_from(r)?),
            9 => Timer::DeliveryWindow(u64::decode_from(r)?),
            10 => Timer::MatchSession(u64::decode_from(r)?),
            11 => Timer::CloseSession(u64::decode_from(r)?),
            12 => Timer::SettleWindow(WindowKey::decode_from(r)?),
            13 => Timer::ChallengeDeadline(WindowKey::decode_from(r)?),
            14 => Timer::FinalizeSession(u64::decode_from(r)?),
            15 => Timer::DrawWindowAudit(WindowKey::decode_from(r)?),
            16 => Timer::SessionMemberGone(u64::decode_from(r)?, PublicKey::decode_from(r)?),
            17 => Timer::ReleaseSessionMember(u64::decode_from(r)?, PublicKey::decode_from(r)?),
            t => return Err(DecodeError::new("Timer", agora_core::codec::DecodeErrorKind::UnknownTag(t))),
        })
    }
}

/// Key of a scheduled timer: when, then what. `when` is a height or a unix-ms time
/// depending on [`Timer::is_timed`].
pub type TimerKey = (u64, Timer);

/// The key of an evidence report already acted on: (offender, epoch, view).
pub type EvidenceKey = (AccountId, (u64, u64));

/// Per-block context: the facts the chain supplies and the events produced so far.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Height of the block being applied.
    pub height: u64,
    /// Its timestamp, unix ms.
    pub time_ms: u64,
    /// Its randomness seed.
    pub seed: Hash,
    /// Its proposer.
    pub proposer: AccountId,
    /// Events emitted so far by the current step.
    pub events: Vec<Event>,
}

impl Ctx {
    /// Records an event.
    pub fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    /// A uniform 64-bit draw for `purpose` and `id`, from the block seed.
    pub fn draw(&self, purpose: &str, id: u64) -> u64 {
        draw(&self.seed, purpose, id)
    }
}

/// A uniform 64-bit draw for `purpose` and `id` from a block seed.
pub fn draw(seed: &Hash, purpose: &str, id: u64) -> u64 {
    Hash::tagged("agora/ledger/draw", &[&seed.0, purpose.as_bytes(), &id.to_le_bytes()]).to_u64()
}

/// A key–value pair changed by a block, as stored in the authenticated store. `None` means
/// the key was deleted.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// Store key prefixes, one per table. Never reuse a prefix.
pub(crate) mod prefix {
    pub const META: u8 = 0;
    pub const ACCOUNT: u8 = 1;
    pub const VALIDATOR: u8 = 2;
    pub const PROVIDER: u8 = 3;
    pub const ORDER: u8 = 4;
    pub const JOB: u8 = 5;
    pub const LEASE: u8 = 6;
    pub const AUDIT: u8 = 7;
    pub const PROPOSAL: u8 = 8;
    pub const TIMER: u8 = 9;
    pub const EVIDENCE: u8 = 10;
    pub const CLASS: u8 = 11;
    pub const CLOCK_TIMER: u8 = 12;
    pub const SESSION: u8 = 13;
    pub const WINDOW: u8 = 14;
}

/// A provable ledger object: its store key is what state proofs are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKey {
    /// An account's balance and nonce.
    Account(AccountId),
    /// A validator's stake.
    Validator(AccountId),
    /// A provider's registration and record.
    Provider(AccountId),
    /// An open order.
    Order(OrderId),
    /// A job.
    Job(JobId),
    /// A lease (with its commitment and settlement).
    Lease(LeaseId),
    /// An audit.
    Audit(AuditId),
    /// A proposal.
    Proposal(ProposalId),
    /// A serving session.
    Session(SessionId),
}

impl ObjectKey {
    /// The key under which the object is stored (and proven).
    pub fn store_key(&self) -> Vec<u8> {
        let (p, rest) = match self {
            ObjectKey::Account(a) => (prefix::ACCOUNT, a.encode()),
            ObjectKey::Validator(a) => (prefix::VALIDATOR, a.encode()),
            ObjectKey::Provider(a) => (prefix::PROVIDER, a.encode()),
            ObjectKey::Order(id) => (prefix::ORDER, id.encode()),
            ObjectKey::Job(id) => (prefix::JOB, id.encode()),
            ObjectKey::Lease(id) => (prefix::LEASE, id.encode()),
            ObjectKey::Audit(id) => (prefix::AUDIT, id.encode()),
            ObjectKey::Proposal(id) => (prefix::PROPOSAL, id.encode()),
            ObjectKey::Session(id) => (prefix::SESSION, id.encode()),
        };
        let mut key = vec![p];
        key.extend_from_slice(&rest);
        key
    }

    /// Parses `kind/id` as used in API paths, e.g. `lease/17` or `account/<hex>`.
    pub fn parse(kind: &str, id: &str) -> Result<Self, String> {
        let num = || id.parse::<u64>().map_err(|_| format!("{kind} ids are integers, got {id:?}"));
        let acct = || id.parse::<AccountId>().map_err(|e| format!("invalid account {id:?}: {e}"));
        Ok(match kind {
            "account" => ObjectKey::Account(acct()?),
            "validator" => ObjectKey::Validator(acct()?),
            "provider" => ObjectKey::Provider(acct()?),
            "order" => ObjectKey::Order(num()?),
            "job" => ObjectKey::Job(num()?),
            "lease" => ObjectKey::Lease(num()?),
            "audit" => ObjectKey::Audit(num()?),
            "proposal" => ObjectKey::Proposal(num()?),
            "session" => ObjectKey::Session(num()?),
            _ => {
                return Err(format!(
                    "unknown object kind {kind:?}; use account, validator, provider, order, job, lease, audit, proposal or session"
                ));
            }
        })
    }
}

/// Marker value for set-like tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Present;

impl Encode for Present {
    fn encode_to(&self, _: &mut Vec<u8>) {}
}

impl Decode for Present {
    const MIN_ENCODED_SIZE: usize = 0;
    fn decode_from(_: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Present)
    }
}

/// The complete ledger state. Cloning is cheap (structural sharing).
#[derive(Debug, Clone)]
pub struct State {
    pub(crate) meta: Meta,
    meta_dirty: bool,
    pub(crate) accounts: Table<AccountId, Account>,
    pub(crate) validators: Table<AccountId, Validator>,
    pub(crate) providers: Table<AccountId, Provider>,
    pub(crate) orders: Table<OrderId, Order>,
    pub(crate) jobs: Table<JobId, Job>,
    pub(crate) leases: Table<LeaseId, Lease>,
    pub(crate) audits: Table<AuditId, Audit>,
    pub(crate) proposals: Table<ProposalId, Proposal>,
    pub(crate) timers: Table<TimerKey, Present>,
    pub(crate) clock_timers: Table<TimerKey, Present>,
    pub(crate) evidence: Table<EvidenceKey, Present>,
    pub(crate) class_stats: Table<ResourceClass, ClassStats>,
    pub(crate) sessions: Table<SessionId, Session>,
    pub(crate) windows: Table<WindowKey, Window>,
    /// Derived index (not stored): open orders per class, sorted, for clearing.
    pub(crate) book: OrderBook,
}

impl State {
    /// An empty state for `chain_id` with `params`; genesis fills it.
    pub(crate) fn empty(chain_id: &str, params: Params) -> Self {
        State {
            meta: Meta {
                chain_id: chain_id.to_string(),
                height: 0,
                timestamp_ms: 0,
                epoch: 0,
                committee: vec![],
                next_id: 1,
                supply: Supply::default(),
                params,
                seed: agora_core::block::genesis_seed(chain_id),
            },
            meta_dirty: true,
            accounts: Table::default(),
            validators: Table::default(),
            providers: Table::default(),
            orders: Table::default(),
            jobs: Table::default(),
            leases: Table::default(),
            audits: Table::default(),
            proposals: Table::default(),
            timers: Table::default(),
            clock_timers: Table::default(),
            evidence: Table::default(),
            class_stats: Table::default(),
            sessions: Table::default(),
            windows: Table::default(),
            book: OrderBook::default(),
        }
    }

    // ----- read access -------------------------------------------------------------------

    /// Chain-wide values (height, committee, supply, parameters).
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Protocol parameters.
    pub fn params(&self) -> &Params {
        &self.meta.params
    }

    /// An account, if it exists.
    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// A validator, if the account has stake.
    pub fn validator(&self, id: &AccountId) -> Option<&Validator> {
        self.validators.get(id)
    }

    /// A provider, if registered.
    pub fn provider(&self, id: &AccountId) -> Option<&Provider> {
        self.providers.get(id)
    }

    /// An order (ask or bid).
    pub fn order(&self, id: OrderId) -> Option<&Order> {
        self.orders.get(&id)
    }

    /// A job.
    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// A lease.
    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// An audit.
    pub fn audit(&self, id: AuditId) -> Option<&Audit> {
        self.audits.get(&id)
    }

    /// A governance proposal.
    pub fn proposal(&self, id: ProposalId) -> Option<&Proposal> {
        self.proposals.get(&id)
    }

    /// A serving session.
    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// A serving window: (session, provider, first receipt).
    pub fn window(&self, key: &WindowKey) -> Option<&Window> {
        self.windows.get(key)
    }

    /// All serving sessions.
    pub fn sessions(&self) -> impl DoubleEndedIterator<Item = (&SessionId, &Session)> {
        self.sessions.iter()
    }

    /// The windows of one provider in one session, in receipt order.
    pub fn windows_of(
        &self,
        session: SessionId,
        provider: AccountId,
    ) -> impl DoubleEndedIterator<Item = (&WindowKey, &Window)> {
        self.windows.range((session, provider, 0)..=(session, provider, u64::MAX))
    }

    /// Market statistics of a class.
    pub fn class_stats(&self, class: &ResourceClass) -> Option<&ClassStats> {
        self.class_stats.get(class)
    }

    /// All accounts.
    pub fn accounts(&self) -> impl DoubleEndedIterator<Item = (&AccountId, &Account)> {
        self.accounts.iter()
    }

    /// All validators.
    pub fn validators(&self) -> impl DoubleEndedIterator<Item = (&AccountId, &Validator)> {
        self.validators.iter()
    }

    /// All providers.
    pub fn providers(&self) -> impl DoubleEndedIterator<Item = (&AccountId, &Provider)> {
        self.providers.iter()
    }

    /// All open orders.
    pub fn orders(&self) -> impl DoubleEndedIterator<Item = (&OrderId, &Order)> {
        self.orders.iter()
    }

    /// All jobs.
    pub fn jobs(&self) -> impl DoubleEndedIterator<Item = (&JobId, &Job)> {
        self.jobs.iter()
    }

    /// All leases.
    pub fn leases(&self) -> impl DoubleEndedIterator<Item = (&LeaseId, &Lease)> {
        self.leases.iter()
    }

    /// All audits.
    pub fn audits(&self) -> impl DoubleEndedIterator<Item = (&AuditId, &Audit)> {
        self.audits.iter()
    }

    /// All proposals.
    pub fn proposals(&self) -> impl DoubleEndedIterator<Item = (&ProposalId, &Proposal)> {
        self.proposals.iter()
    }

    /// All classes with market history.
    pub fn all_class_stats(&self) -> impl DoubleEndedIterator<Item = (&ResourceClass, &ClassStats)> {
        self.class_stats.iter()
    }

    /// Balance of an account (zero if it does not exist).
    pub fn balance(&self, id: &AccountId) -> Amount {
        self.accounts.get(id).map_or(Amount::ZERO, |a| a.balance)
    }

    /// Next nonce of an account.
    pub fn nonce(&self, id: &AccountId) -> u64 {
        self.accounts.get(id).map_or(0, |a| a.nonce)
    }

    // ----- mutation helpers ----------------------------------------------------------------

    /// Mutable chain-wide values; marks them changed.
    pub(crate) fn meta_mut(&mut self) -> &mut Meta {
        self.meta_dirty = true;
        &mut self.meta
    }

    /// Allocates the next object id.
    pub(crate) fn next_id(&mut self) -> u64 {
        let m = self.meta_mut();
        let id = m.next_id;
        m.next_id += 1;
        id
    }

    fn timer_table(&mut self, timer: &Timer) -> &mut Table<TimerKey, Present> {
        if timer.is_timed() { &mut self.clock_timers } else { &mut self.timers }
    }

    /// Schedules `timer` at `when` (a height, or unix ms for timed timers).
    pub(crate) fn schedule(&mut self, when: u64, timer: Timer) {
        self.timer_table(&timer).insert((when, timer), Present);
    }

    /// Cancels a scheduled timer.
    pub(crate) fn unschedule(&mut self, when: u64, timer: Timer) {
        self.timer_table(&timer).remove(&(when, timer));
    }

    /// Removes and returns every timer due by `time_ms` (clock timers first) or `height`, in
    /// key order. Costs O(due timers): both tables are ordered by due point.
    pub(crate) fn take_due_timers(&mut self, height: u64, time_ms: u64) -> Vec<Timer> {
        fn take(t: &mut Table<TimerKey, Present>, now: u64) -> Vec<Timer> {
            let due: Vec<TimerKey> = t.iter().map(|(k, _)| *k).take_while(|(when, _)| *when <= now).collect();
            for k in &due {
                t.remove(k);
            }
            due.into_iter().map(|(_, timer)| timer).collect()
        }
        let mut due = take(&mut self.clock_timers, time_ms);
        due.extend(take(&mut self.timers, height));
        due
    }

    // ----- money -----------------------------------------------------------------------------
    // Every movement of funds goes through these, so supply totals are always exact.

    /// Takes `amount` from an account's balance into another bucket (the caller credits it).
    pub(crate) fn debit(&mut self, id: &AccountId, amount: Amount) -> Result<(), TxError> {
        let have = self.balance(id);
        let rest = have.checked_sub(amount).ok_or(TxError::InsufficientFunds { need: amount, have })?;
        if let Some(a) = self.accounts.get_mut(id) {
            a.balance = rest;
        } else if !amount.is_zero() {
            unreachable!("a missing account has zero balance");
        }
        let s = &mut self.meta_mut().supply;
        s.liquid = s.liquid.checked_sub(amount).expect("liquid total covers every balance");
        Ok(())
    }

    /// Adds `amount` to an account's balance, creating the account if needed.
    pub(crate) fn credit(&mut self, id: &AccountId, amount: Amount) {
        if amount.is_zero() {
            return;
        }
        let mut acct = self.accounts.get(id).cloned().unwrap_or_default();
        acct.balance = acct.balance.checked_add(amount).expect("bounded by supply");
        self.accounts.insert(*id, acct);
        let s = &mut self.meta_mut().supply;
        s.liquid = s.liquid.checked_add(amount).expect("bounded by supply");
    }

    /// Moves funds between non-liquid buckets' totals (the caller updates the objects).
    pub(crate) fn shift(&mut self, from: Bucket, to: Bucket, amount: Amount) {
        let s = &mut self.meta_mut().supply;
        *from.total(s) = from.total(s).checked_sub(amount).expect("bucket total covers its objects");
        *to.total(s) = to.total(s).checked_add(amount).expect("bounded by supply");
    }

    /// Destroys funds held in a bucket (the caller removes them from the object).
    pub(crate) fn burn(&mut self, from: Bucket, amount: Amount) {
        let s = &mut self.meta_mut().supply;
        *from.total(s) = from.total(s).checked_sub(amount).expect("bucket total covers its objects");
        s.burned = s.burned.checked_add(amount).expect("bounded by supply");
    }

    /// Pays `amount` out of a bucket into an account's balance.
    pub(crate) fn pay_out(&mut self, from: Bucket, to: &AccountId, amount: Amount) {
        if amount.is_zero() {
            return;
        }
        self.shift(from, Bucket::Liquid, amount);
        let s = &mut self.meta_mut().supply;
        // `credit` adds to the liquid total again; undo the double count from `shift`.
        s.liquid = s.liquid.checked_sub(amount).expect("just added");
        self.credit(to, amount);
    }

    /// Locks `amount` of an account's balance into a bucket.
    pub(crate) fn lock(&mut self, from: &AccountId, to: Bucket, amount: Amount) -> Result<(), TxError> {
        self.debit(from, amount)?;
        let s = &mut self.meta_mut().supply;
        *to.total(s) = to.total(s).checked_add(amount).expect("bounded by supply");
        Ok(())
    }

    // ----- store entries ---------------------------------------------------------------------

    /// The entries changed since the last call (or since loading), in a deterministic order,
    /// and forgets them. The chain commits these to the authenticated store.
    pub fn take_writes(&mut self) -> Vec<Write> {
        let mut out = Vec::new();
        if self.meta_dirty {
            out.push((vec![prefix::META], Some(self.meta.encode())));
        }
        self.accounts.drain_writes(prefix::ACCOUNT, &mut out);
        self.validators.drain_writes(prefix::VALIDATOR, &mut out);
        self.providers.drain_writes(prefix::PROVIDER, &mut out);
        self.orders.drain_writes(prefix::ORDER, &mut out);
        self.jobs.drain_writes(prefix::JOB, &mut out);
        self.leases.drain_writes(prefix::LEASE, &mut out);
        self.audits.drain_writes(prefix::AUDIT, &mut out);
        self.proposals.drain_writes(prefix::PROPOSAL, &mut out);
        self.timers.drain_writes(prefix::TIMER, &mut out);
        self.clock_timers.drain_writes(prefix::CLOCK_TIMER, &mut out);
        self.evidence.drain_writes(prefix::EVIDENCE, &mut out);
        self.class_stats.drain_writes(prefix::CLASS, &mut out);
        self.sessions.drain_writes(prefix::SESSION, &mut out);
        self.windows.drain_writes(prefix::WINDOW, &mut out);
        self.clear_dirty();
        out
    }

    pub(crate) fn clear_dirty(&mut self) {
        self.meta_dirty = false;
        self.accounts.clear_dirty();
        self.validators.clear_dirty();
        self.providers.clear_dirty();
        self.orders.clear_dirty();
        self.jobs.clear_dirty();
        self.leases.clear_dirty();
        self.audits.clear_dirty();
        self.proposals.clear_dirty();
        self.timers.clear_dirty();
        self.clock_timers.clear_dirty();
        self.evidence.clear_dirty();
        self.class_stats.clear_dirty();
        self.sessions.clear_dirty();
        self.windows.clear_dirty();
    }

    /// Every entry of the state, as the store holds it (used for digests and snapshots).
    pub fn entries(&self) -> Vec<Write> {
        fn all<K: Ord + Clone + Encode, V: Clone + Encode>(t: &Table<K, V>, p: u8, out: &mut Vec<Write>) {
            for (k, v) in t.iter() {
                let mut key = vec![p];
                k.encode_to(&mut key);
                out.push((key, Some(v.encode())));
            }
        }
        let mut out = vec![(vec![prefix::META], Some(self.meta.encode()))];
        all(&self.accounts, prefix::ACCOUNT, &mut out);
        all(&self.validators, prefix::VALIDATOR, &mut out);
        all(&self.providers, prefix::PROVIDER, &mut out);
        all(&self.orders, prefix::ORDER, &mut out);
        all(&self.jobs, prefix::JOB, &mut out);
        all(&self.leases, prefix::LEASE, &mut out);
        all(&self.audits, prefix::AUDIT, &mut out);
        all(&self.proposals, prefix::PROPOSAL, &mut out);
        all(&self.timers, prefix::TIMER, &mut out);
        all(&self.clock_timers, prefix::CLOCK_TIMER, &mut out);
        all(&self.evidence, prefix::EVIDENCE, &mut out);
        all(&self.class_stats, prefix::CLASS, &mut out);
        all(&self.sessions, prefix::SESSION, &mut out);
        all(&self.windows, prefix::WINDOW, &mut out);
        out
    }

    /// A digest of the whole state: equal states give equal digests on every machine.
    /// O(state size); the chain's authenticated store provides the incremental root.
    pub fn digest(&self) -> Hash {
        let mut h = Vec::new();
        for (k, v) in self.entries() {
            k.as_slice().encode_to(&mut h);
            v.encode_to(&mut h);
        }
        Hash::tagged("agora/ledger/state", &[&h])
    }

    /// Rebuilds a state from the entries of a store (e.g. after a restart).
    pub fn from_entries(entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Result<State, DecodeError> {
        let mut meta = None;
        let mut s = State::empty("", Params::default());
        for (key, value) in entries {
            let (p, rest) = key.split_first().ok_or(DecodeError::invalid("state key", "empty key"))?;
            fn kv<K: Decode, V: Decode>(k: &[u8], v: &[u8]) -> Result<(K, V), DecodeError> {
                Ok((K::decode(k)?, V::decode(v)?))
            }
            match *p {
                prefix::META => meta = Some(Meta::decode(&value)?),
                prefix::ACCOUNT => kv(rest, &value).map(|(k, v)| s.accounts.load(k, v))?,
                prefix::VALIDATOR => kv(rest, &value).map(|(k, v)| s.validators.load(k, v))?,
                prefix::PROVIDER => kv(rest, &value).map(|(k, v)| s.providers.load(k, v))?,
                prefix::ORDER => kv(rest, &value).map(|(k, v)| s.orders.load(k, v))?,
                prefix::JOB => kv(rest, &value).map(|(k, v)| s.jobs.load(k, v))?,
                prefix::LEASE => kv(rest, &value).map(|(k, v)| s.leases.load(k, v))?,
                prefix::AUDIT => kv(rest, &value).map(|(k, v)| s.audits.load(k, v))?,
                prefix::PROPOSAL => kv(rest, &value).map(|(k, v)| s.proposals.load(k, v))?,
                prefix::TIMER => kv(rest, &value).map(|(k, v)| s.timers.load(k, v))?,
                prefix::CLOCK_TIMER => kv(rest, &value).map(|(k, v)| s.clock_timers.load(k, v))?,
                prefix::EVIDENCE => kv(rest, &value).map(|(k, v)| s.evidence.load(k, v))?,
                prefix::CLASS => kv(rest, &value).map(|(k, v)| s.class_stats.load(k, v))?,
                prefix::SESSION => kv(rest, &value).map(|(k, v)| s.sessions.load(k, v))?,
                prefix::WINDOW => kv(rest, &value).map(|(k, v)| s.windows.load(k, v))?,
                _ => return Err(DecodeError::invalid("state key", "unknown table prefix")),
            }
        }
        s.meta = meta.ok_or(DecodeError::invalid("state", "no meta entry"))?;
        s.meta_dirty = false;
        s.rebuild_book();
        Ok(s)
    }

    /// Recomputes the order-book index from the orders table.
    pub(crate) fn rebuild_book(&mut self) {
        let mut book = OrderBook::default();
        for (id, order) in self.orders.iter() {
            book.insert(*id, order);
        }
        self.book = book;
    }

    /// Recomputes the supply buckets from the objects that hold funds. The incremental totals
    /// in [`Meta::supply`] must always equal this (checked by property tests).
    pub fn recount_supply(&self) -> Supply {
        let sum = |it: &mut dyn Iterator<Item = Amount>| {
            it.fold(Amount::ZERO, |a, b| a.checked_add(b).expect("bounded"))
        };
        let liquid = sum(&mut self.accounts.values().map(|a| a.balance));
        let staked = sum(&mut self.validators.values().map(|v| v.total()));
        let collateral = sum(&mut self.providers.values().map(|p| p.total_collateral()));
        let escrow = sum(&mut self
            .orders
            .values()
            .map(|o| match o {
                Order::Bid(b) => b.escrow,
                Order::Ask(_) => Amount::ZERO,
            })
            .chain(self.leases.values().map(|l| l.escrow))
            // A dispute's deposit is held in escrow beside its lease's.
            .chain(self.leases.values().filter_map(|l| Some(l.delivery.as_ref()?.dispute.as_ref()?.deposit)))
            .chain(crate::sessions::held_funds(self)));
        Supply {
            minted: self.meta.supply.minted,
            burned: self.meta.supply.burned,
            liquid,
            staked,
            collateral,
            escrow,
        }
    }
}

/// A kind of holding whose total the supply tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bucket {
    Liquid,
    Staked,
    Collateral,
    Escrow,
}

impl Bucket {
    fn total(self, s: &mut Supply) -> &mut Amount {
        match self {
            Bucket::Liquid => &mut s.liquid,
            Bucket::Staked => &mut s.staked,
            Bucket::Collateral => &mut s.collateral,
            Bucket::Escrow => &mut s.escrow,
        }
    }
}
