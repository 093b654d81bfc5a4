//! Serving sessions: prepaid escrow, providers matched with collateral, windows of signed
//! receipts paid after their audit window, and fraud proofs from receipts.
//!
//! Life of a session:
//! * **open** (`OpenSession`): the requester locks the escrow. Providers are matched in the
//!   same block and, while places are empty, in later blocks (backing off): each serves the
//!   class and kind, accepts the session's rates (its profile's `serve` floor), is independent
//!   of the requester, and reserves `slash_multiple` × its share of the escrow from its free
//!   collateral, as a lease reserves for its value (its *cap*: the share, less what
//!   convicted predecessors were paid, so caps never exceed the escrow).
//! * **serve**: off chain, the provider answers requests and signs a receipt for each
//!   ([`agora_core::session`]).
//! * **commit** (`CommitWindow`): the provider posts the Merkle root of its next receipts and
//!   its running usage total. The window's charge (the price of its running total at the
//!   session's rates, less that of its last window's) is held in the session's escrow. A
//!   provider can charge at most its cap: what its reservation deters.
//! * **pay**: a window is paid `audit_window_blocks` after its commitment, unless a challenge
//!   is pending.
//! * **challenge** (`ChallengeReceipt`): whoever holds a receipt signed by the provider can
//!   prove it was left out or altered. Beyond the provider's committed windows once no window
//!   can be committed any more, or the last receipt of a window with another running total
//!   than the window's: proven at once. Inside a committed window: the provider must answer
//!   (`AnswerChallenge`) with the receipt's inclusion proof within `challenge_blocks`.
//!   Proven, the provider is slashed as for fraud, its unpaid windows are refunded, it
//!   leaves the session and its place is matched again; refuted, the challenger's deposit pays
//!   the provider.
//! * **leave** (`LeaveSession`): a provider stops serving, on its own or dismissed by the
//!   requester (one that stopped answering). It commits what it served for one commit grace,
//!   as at the session's end; then its cap shrinks to what it charged and its place is matched
//!   again with the rest. One more grace later its receipts can no longer be challenged, and
//!   its reservation is released once its windows are settled. Nothing it did not commit is
//!   paid: a provider that vanished mid-window loses that window.
//! * **request challenge** (`ChallengeRequest`): the requester names a committed receipt it
//!   holds no request for (a provider charging for requests it made up); the provider must
//!   show that receipt in its window with the client key's signature over its request, or be
//!   convicted the same way.
//! * **close**: at `until_ms` serving stops (sooner by `CloseSession`); `session_commit_grace_ms`
//!   later no more windows are taken and the unspent escrow returns to the requester; one more
//!   grace later receipts can no longer be challenged, and each provider's reservation is
//!   released once its last window is paid.
//!
//! The chain cannot tell a provider that stopped answering from one nobody asked: the requester
//! (its gateway) sees that, and dismisses it.

use crate::error::TxError;
use crate::events::{AuditOutcome, Event};
use crate::params::Params;
use crate::state::{Bucket, Ctx, State, Timer};
use agora_core::manifest::JobKind;
use agora_core::merkle::MerkleProof;
use agora_core::session::{
    MAX_WINDOW_RECEIPTS, RequestProof, ServeKind, SessionId, SessionTerms, SignedReceipt, Usage,
    WindowCommitment, client_message,
};
use agora_core::tx::AuditId;
use agora_core::{AccountId, Amount, Hash, codec_struct, codec_unit_enum};
use serde::{Deserialize, Serialize};

/// Most providers a session may have had, counting those that left (so replacements stop).
pub const MAX_MEMBERS: usize = 4 * agora_core::session::MAX_SESSION_PROVIDERS as usize;
/// Most unpaid windows one provider may hold in a session; it commits more once some are paid.
pub const MAX_HELD_WINDOWS: u32 = 64;
/// Most receipt challenges pending on one window.
pub const MAX_CHALLENGES: usize = 16;
/// Longest back-off, in blocks, between attempts to fill a session's empty places.
const MAX_MATCH_BACKOFF: u64 = 64;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Serving until `until_ms`, then taking its providers' last windows.
    Open,
    /// No more windows; unspent escrow returned. Receipts can still be challenged.
    Closed,
    /// The challenge period is over; reservations are released as windows settle.
    Final,
}
codec_unit_enum!(SessionStatus { Open, Closed, Final });

/// A provider serving a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The provider.
    pub provider: AccountId,
    /// Collateral reserved while it serves or holds unpaid windows.
    pub reserved: Amount,
    /// `seq` its next window starts at.
    pub next_seq: u64,
    /// Its running usage total at its last window.
    pub total: Usage,
    /// Everything its windows charged (held or paid).
    pub charged: Amount,
    /// The most its windows may charge: its share of the escrow, less what providers convicted
    /// before it were paid (so the caps of a session never add up to more than its escrow,
    /// and an honest provider can always commit what it served within its cap). A convicted
    /// provider's cap shrinks to what it was paid.
    pub cap: Amount,
    /// Its windows not yet paid or refunded.
    pub held: u32,
    /// Whether it left the session (convicted of fraud).
    pub removed: bool,
    /// When it stopped serving without being convicted (it left, or the requester dismissed
    /// it), unix ms.
    pub left_ms: Option<u64>,
}
codec_struct!(Member { provider, reserved, next_seq, total, charged, cap, held, removed, left_ms });

impl Member {
    /// Whether it serves the session now (neither convicted nor gone).
    pub fn serves(&self) -> bool {
        !self.removed && self.left_ms.is_none()
    }
}

/// A requester's serving session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Buyer.
    pub requester: AccountId,
    /// What it asked for.
    pub terms: SessionTerms,
    /// Opened at, unix ms.
    pub opened_ms: u64,
    /// Serving ends at, unix ms.
    pub until_ms: u64,
    /// Current status.
    pub status: SessionStatus,
    /// Funds still held for the session (unspent, plus windows not yet paid).
    pub escrow: Amount,
    /// Of `escrow`, what unpaid windows hold.
    pub committed: Amount,
    /// Paid to providers so far: what the session has cost.
    pub paid: Amount,
    /// Providers, in the order they joined.
    pub members: Vec<Member>,
    /// Attempts to fill empty places so far (sets the back-off).
    pub match_attempts: u32,
}
codec_struct!(Session {
    requester,
    terms,
    opened_ms,
    until_ms,
    status,
    escrow,
    committed,
    paid,
    members: vec(MAX_MEMBERS),
    match_attempts
});

impl Session {
    /// The providers serving now.
    pub fn serving(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.serves())
    }

    /// The member record of `provider`.
    pub fn member(&self, provider: &AccountId) -> Option<&Member> {
        self.members.iter().find(|m| m.provider == *provider)
    }

    fn member_mut(&mut self, provider: &AccountId) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.provider == *provider)
    }

    /// Time after which no window can be committed, unix ms.
    pub fn commit_deadline_ms(&self, params: &Params) -> u64 {
        self.until_ms.saturating_add(Params::u64(params.session_commit_grace_ms))
    }

    /// Time after which no receipt can be challenged, unix ms: one more grace after the commit
    /// deadline, for omissions that only the end of commitments proves. Providers keep their
    /// receipts until then.
    pub fn challenge_deadline_ms(&self, params: &Params) -> u64 {
        self.commit_deadline_ms(params).saturating_add(Params::u64(params.session_commit_grace_ms))
    }

    /// When `m` stops serving, unix ms: the session's end, or when it left.
    pub fn member_until_ms(&self, m: &Member) -> u64 {
        m.left_ms.map_or(self.until_ms, |t| t.min(self.until_ms))
    }

    /// Time after which `m` can commit no window, unix ms: the session's, or one grace after
    /// it left.
    pub fn member_commit_deadline_ms(&self, m: &Member, params: &Params) -> u64 {
        let grace = Params::u64(params.session_commit_grace_ms);
        let left = m.left_ms.map_or(u64::MAX, |t| t.saturating_add(grace));
        self.commit_deadline_ms(params).min(left)
    }

    /// Time after which no receipt of `m` can be challenged, unix ms: one grace after its
    /// commit deadline.
    pub fn member_challenge_deadline_ms(&self, m: &Member, params: &Params) -> u64 {
        let grace = Params::u64(params.session_commit_grace_ms);
        self.member_commit_deadline_ms(m, params).saturating_add(grace)
    }
}

/// Where a committed window is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowStatus {
    /// Its charge is held, waiting for its audit window and challenges.
    Held,
    /// Paid to the provider.
    Paid,
    /// Returned to the session's escrow (its provider was convicted).
    Refunded,
}
codec_unit_enum!(WindowStatus { Held, Paid, Refunded });

/// A pending claim that a receipt was left out of a window or committed differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The receipt's `seq`.
    pub seq: u64,
    /// The leaf the receipt must have in the window's tree; `None` for a request challenge,
    /// answered with the provider's own receipt and the client's signature of its request.
    pub leaf: Option<Hash>,
    /// Who challenged.
    pub by: AccountId,
    /// Its deposit, held in escrow.
    pub deposit: Amount,
    /// Height by which the provider must answer.
    pub deadline: u64,
}
codec_struct!(Challenge { seq, leaf, by, deposit, deadline });

/// A committed window of a provider's receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The provider's commitment.
    pub commitment: WindowCommitment,
    /// What it charges.
    pub charge: Amount,
    /// Height it was committed at.
    pub committed_height: u64,
    /// Where it is.
    pub status: WindowStatus,
    /// Challenges waiting for the provider's answer.
    pub challenges: Vec<Challenge>,
    /// Its audit, if the draw chose it: it is paid only once the audit resolves.
    pub audit: Option<AuditId>,
    /// The chance of an audit the draw gave it, ppm (0 until drawn): what a requester, or a
    /// benchmark, compares the audits it sees with.
    pub audit_ppm: u32,
}
codec_struct!(Window {
    commitment,
    charge,
    committed_height,
    status,
    challenges: vec(MAX_CHALLENGES),
    audit,
    audit_ppm
});

impl Window {
    /// Whether `seq` is one of its receipts.
    pub fn covers(&self, seq: u64) -> bool {
        let c = &self.commitment;
        seq >= c.first_seq && seq - c.first_seq < u64::from(c.receipts)
    }

    fn last_seq(&self) -> u64 {
        self.commitment.first_seq + u64::from(self.commitment.receipts) - 1
    }
}

/// A window's key: session, provider, `seq` of its first receipt.
pub type WindowKey = (SessionId, AccountId, u64);

/// The job kind whose runtime serves `kind` (what a provider must support).
pub fn runtime_of(kind: ServeKind) -> JobKind {
    match kind {
        ServeKind::Chat => JobKind::Generate,
        ServeKind::Embed => JobKind::Embed,
    }
}

/// Opens a session: checks the terms, locks the escrow and looks for providers this block.
pub(crate) fn open(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    terms: SessionTerms,
) -> Result<SessionId, TxError> {
    terms.validate().map_err(TxError::Invalid)?;
    let p = state.params();
    let (min, max) = (Params::u64(p.session_min_ms), Params::u64(p.session_max_ms));
    if !(min..=max).contains(&terms.duration_ms) {
        return Err(TxError::Invalid(format!(
            "a session lasts {min} to {max} ms, not {}",
            terms.duration_ms
        )));
    }
    state.lock(&who, Bucket::Escrow, terms.escrow)?;
    let id = state.next_id();
    let until_ms = cx.time_ms.saturating_add(terms.duration_ms);
    let session = Session {
        requester: who,
        escrow: terms.escrow,
        terms,
        opened_ms: cx.time_ms,
        until_ms,
        status: SessionStatus::Open,
        committed: Amount::ZERO,
        paid: Amount::ZERO,
        members: vec![],
        match_attempts: 0,
    };
    cx.emit(Event::SessionOpened { session: id, requester: who, escrow: session.escrow, until_ms });
    state.schedule(session.commit_deadline_ms(state.params()), Timer::CloseSession(id));
    state.sessions.insert(id, session);
    state.schedule(cx.height, Timer::MatchSession(id));
    Ok(id)
}

/// The requester stops its session now; providers may still commit what they served.
pub(crate) fn close(state: &mut State, cx: &mut Ctx, who: AccountId, id: SessionId) -> Result<(), TxError> {
    let grace = Params::u64(state.params().session_commit_grace_ms);
    let s = state.sessions.get(&id).ok_or_else(|| TxError::not_found("session", id))?;
    if s.requester != who {
        return Err(TxError::Unauthorized("only the session's requester can close it".into()));
    }
    if s.status != SessionStatus::Open || s.until_ms <= cx.time_ms {
        return Err(TxError::InvalidState(format!("session {id} has already stopped serving")));
    }
    let old = s.until_ms.saturating_add(grace);
    state.unschedule(old, Timer::CloseSession(id));
    state.schedule(cx.time_ms.saturating_add(grace), Timer::CloseSession(id));
    state.sessions.get_mut(&id).expect("exists").until_ms = cx.time_ms;
    cx.emit(Event::SessionEnded { session: id, at_ms: cx.time_ms });
    Ok(())
}

/// A provider stops serving session `id`: `who` is the provider itself or the session's
/// requester. Its last windows are taken for one commit grace; then its unspent share backs a
/// replacement ([`shrink_left`]).
pub(crate) fn leave(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    id: SessionId,
    provider: AccountId,
) -> Result<(), TxError> {
    let grace = Params::u64(state.params().session_commit_grace_ms);
    let s = state.sessions.get(&id).ok_or_else(|| TxError::not_found("session", id))?;
    if who != provider && who != s.requester {
        return Err(TxError::Unauthorized(
            "only the provider itself or the session's requester can end its serving".into(),
        ));
    }
    if s.status != SessionStatus::Open || s.until_ms <= cx.time_ms {
        return Err(TxError::InvalidState(format!("session {id} has already stopped serving")));
    }
    if !s.member(&provider).is_some_and(Member::serves) {
        return Err(TxError::InvalidState(format!("{provider} does not serve session {id}")));
    }
    let s = state.sessions.get_mut(&id).expect("exists");
    s.member_mut(&provider).expect("serves").left_ms = Some(cx.time_ms);
    cx.emit(Event::SessionLeft { session: id, provider, dismissed: who != provider });
    state.schedule(cx.time_ms.saturating_add(grace), Timer::SessionMemberGone(id, provider));
    Ok(())
}

/// A provider that left is past its commit deadline (timer): what it did not charge of its
/// cap backs a replacement, looked for at once; its reservation is released once its receipts
/// can no longer be challenged.
pub(crate) fn shrink_left(state: &mut State, cx: &mut Ctx, id: SessionId, provider: AccountId) {
    let params = state.params().clone();
    let Some(s) = state.sessions.get_mut(&id) else { return };
    let Some(m) = s.member_mut(&provider).filter(|m| !m.removed) else { return };
    m.cap = m.charged;
    let m = m.clone();
    let release_at = s.member_challenge_deadline_ms(&m, &params);
    state.schedule(release_at, Timer::ReleaseSessionMember(id, provider));
    fill(state, cx, id);
}

/// The collateral a provider reserves to serve a session: `slash_multiple` × its share.
pub fn reservation(params: &Params, cap: Amount) -> Option<Amount> {
    cap.checked_mul(params.slash_multiple)
}

impl Session {
    /// What the escrow can still back for a new provider: the escrow less the caps of the
    /// providers serving and what convicted ones were paid.
    fn uncapped(&self) -> Amount {
        let held = self.members.iter().map(|m| if m.removed { m.charged } else { m.cap });
        let held = held.fold(Amount::ZERO, |a, b| a.checked_add(b).expect("≤ escrow"));
        self.terms.escrow.saturating_sub(held)
    }
}

/// Fills a session's empty places (timer). Candidates are ordered by a draw from the block
/// seed, so no provider can queue ahead of others.
pub(crate) fn fill(state: &mut State, cx: &mut Ctx, id: SessionId) {
    let Some(s) = state.sessions.get(&id) else { return };
    if s.status != SessionStatus::Open || cx.time_ms >= s.until_ms {
        return;
    }
    let wanted = usize::from(s.terms.providers).saturating_sub(s.serving().count());
    let room = MAX_MEMBERS - s.members.len();
    let cap = s.terms.value_per_provider().min(s.uncapped());
    if cap.is_zero() {
        return;
    }
    let Some(reserve) = reservation(state.params(), cap) else { return };
    let mut candidates: Vec<(Hash, AccountId)> = state
        .providers
        .iter()
        .filter(|(who, p)| {
            p.can_work(cx.height)
                && p.profile.serve.is_some_and(|floor| s.terms.rates.covers(&floor))
                && p.profile.classes.contains(&s.terms.class)
                && p.profile.kinds.contains(&runtime_of(s.terms.kind))
                && p.free_collateral() >= reserve
                && s.member(who).is_none()
                && !crate::accounts::related(state, who, &s.requester)
        })
        .map(|(who, _)| (Hash::tagged("agora/session/match", &[&cx.seed.0, &id.to_le_bytes(), &who.0]), *who))
        .collect();
    candidates.sort_unstable();
    // Every joiner takes a whole cap, so at most what the escrow still backs.
    let affordable = (s.uncapped().0 / cap.0) as usize;
    let joined: Vec<AccountId> =
        candidates.into_iter().take(wanted.min(room).min(affordable)).map(|(_, who)| who).collect();
    for provider in &joined {
        let p = state.providers.get_mut(provider).expect("candidate");
        p.reserved = p.reserved.checked_add(reserve).expect("≤ free collateral");
        cx.emit(Event::SessionMatched { session: id, provider: *provider, reserved: reserve });
    }
    let s = state.sessions.get_mut(&id).expect("exists");
    s.members.extend(joined.into_iter().map(|provider| Member {
        provider,
        reserved: reserve,
        next_seq: 0,
        total: Usage::default(),
        charged: Amount::ZERO,
        cap,
        held: 0,
        removed: false,
        left_ms: None,
    }));
    let still_wanted = usize::from(s.terms.providers) > s.serving().count() && s.members.len() < MAX_MEMBERS;
    if still_wanted {
        s.match_attempts = s.match_attempts.saturating_add(1);
        let backoff = (1u64 << s.match_attempts.min(6)).min(MAX_MATCH_BACKOFF);
        state.schedule(cx.height + backoff, Timer::MatchSession(id));
    }
}

/// Records a provider's window of receipts and holds its charge until its audit window closes.
pub(crate) fn commit(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    w: WindowCommitment,
) -> Result<(), TxError> {
    let params = state.params().clone();
    let s = state.sessions.get(&w.session).ok_or_else(|| TxError::not_found("session", w.session))?;
    let m = s
        .member(&who)
        .filter(|m| !m.removed)
        .ok_or_else(|| TxError::Unauthorized(format!("{who} does not serve session {}", w.session)))?;
    if s.status != SessionStatus::Open || cx.time_ms > s.member_commit_deadline_ms(m, &params) {
        return Err(TxError::InvalidState(format!("session {} takes no more windows from {who}", w.session)));
    }
    if w.first_seq != m.next_seq {
        return Err(TxError::Invalid(format!(
            "the next window starts at receipt {}, not {}",
            m.next_seq, w.first_seq
        )));
    }
    if w.receipts == 0 || w.receipts > MAX_WINDOW_RECEIPTS || w.root == Hash::ZERO {
        return Err(TxError::Invalid(format!(
            "a window covers 1 to {MAX_WINDOW_RECEIPTS} receipts under a root"
        )));
    }
    if m.held >= MAX_HELD_WINDOWS {
        return Err(TxError::InvalidState(format!(
            "{MAX_HELD_WINDOWS} windows are still unpaid; wait for one"
        )));
    }
    w.total.since(&m.total).ok_or_else(|| TxError::Invalid("a running usage total went down".into()))?;
    // The charge is what the running total costs minus what the last one did, so rounding
    // never accumulates: a provider's windows together charge exactly its total's price.
    let price = |u: &Usage| s.terms.rates.charge(u).ok_or(TxError::Overflow("window charge"));
    let charge = price(&w.total)?.checked_sub(price(&m.total)?).expect("monotone in every count");
    let charged = m.charged.checked_add(charge).ok_or(TxError::Overflow("provider charges"))?;
    let committed = s.committed.checked_add(charge).ok_or(TxError::Overflow("session charges"))?;
    if charged > m.cap || committed > s.escrow {
        return Err(TxError::InvalidState(format!(
            "the window's charge {charge} exceeds what the session has left for this provider"
        )));
    }
    let next_seq = w.first_seq.checked_add(u64::from(w.receipts)).ok_or(TxError::Overflow("receipt seq"))?;
    let s = state.sessions.get_mut(&w.session).expect("exists");
    s.committed = committed;
    let m = s.member_mut(&who).expect("checked");
    (m.next_seq, m.total, m.charged, m.held) = (next_seq, w.total, charged, m.held + 1);
    let key = (w.session, who, w.first_seq);
    cx.emit(Event::WindowCommitted {
        session: w.session,
        provider: who,
        first_seq: w.first_seq,
        receipts: w.receipts,
        charge,
    });
    state.windows.insert(
        key,
        Window {
            commitment: w,
            charge,
            committed_height: cx.height,
            status: WindowStatus::Held,
            challenges: vec![],
            audit: None,
            audit_ppm: 0,
        },
    );
    state.schedule(cx.height + 1, Timer::DrawWindowAudit(key));
    state.schedule(cx.height + Params::u64(params.audit_window_blocks), Timer::SettleWindow(key));
    Ok(())
}

/// Pays a held window whose audit window has closed and that no challenge or unresolved audit
/// holds back (timer, and when its audit resolves).
pub(crate) fn settle(state: &mut State, cx: &mut Ctx, key: WindowKey) {
    let due = state.windows.get(&key).is_some_and(|w| {
        w.status == WindowStatus::Held
            && w.challenges.is_empty()
            && w.audit.is_none_or(|a| state.audits.get(&a).is_some_and(|a| a.outcome.is_some()))
            && cx.height >= w.committed_height + Params::u64(state.params().audit_window_blocks)
    });
    if !due {
        return;
    }
    let (session, provider, first_seq) = key;
    let w = state.windows.get_mut(&key).expect("due");
    w.status = WindowStatus::Paid;
    let charge = w.charge;
    state.pay_out(Bucket::Escrow, &provider, charge);
    if let Some(p) = state.providers.get_mut(&provider) {
        p.earned = p.earned.checked_add(charge).expect("bounded by supply");
    }
    let s = state.sessions.get_mut(&session).expect("windows belong to sessions");
    s.escrow = s.escrow.checked_sub(charge).expect("committed ⊆ escrow");
    s.committed = s.committed.checked_sub(charge).expect("held charge is committed");
    s.paid = s.paid.checked_add(charge).expect("≤ escrow");
    let m = s.member_mut(&provider).expect("members commit");
    m.held -= 1;
    cx.emit(Event::WindowPaid { session, provider, first_seq, amount: charge });
    release_if_done(state, cx.time_ms, session, provider);
}

/// Closes a session (timer): no more windows; unspent escrow returns to the requester.
pub(crate) fn close_due(state: &mut State, cx: &mut Ctx, id: SessionId) {
    let params = state.params().clone();
    let Some(s) = state.sessions.get_mut(&id) else { return };
    s.status = SessionStatus::Closed;
    let refund = s.escrow.checked_sub(s.committed).expect("committed ⊆ escrow");
    s.escrow = s.committed;
    let (requester, finalize) = (s.requester, s.challenge_deadline_ms(&params));
    state.pay_out(Bucket::Escrow, &requester, refund);
    state.schedule(finalize, Timer::FinalizeSession(id));
    cx.emit(Event::SessionClosed { session: id, refunded: refund });
}

/// Ends a session's challenge period (timer): reservations of providers whose windows are
/// all settled are released; the others' as their last window settles.
pub(crate) fn finalize(state: &mut State, cx: &Ctx, id: SessionId) {
    let Some(s) = state.sessions.get_mut(&id) else { return };
    s.status = SessionStatus::Final;
    let providers: Vec<AccountId> = s.members.iter().map(|m| m.provider).collect();
    for p in providers {
        release_if_done(state, cx.time_ms, id, p);
    }
}

/// Releases a member's reservation once its receipts can no longer be challenged (the
/// session is final, or it left and its own challenge period is over) and its windows are all
/// paid or refunded (collateral backs a provider's receipts until then). Runs when a window
/// settles, when the session becomes final, and (timer) when a provider that left can no
/// longer be challenged.
pub(crate) fn release_if_done(state: &mut State, now_ms: u64, id: SessionId, provider: AccountId) {
    let Some(s) = state.sessions.get(&id) else { return };
    let Some(m) = s.member(&provider) else { return };
    let unchallengeable = s.status == SessionStatus::Final
        || (m.left_ms.is_some() && now_ms >= s.member_challenge_deadline_ms(m, state.params()));
    if m.held == 0 && !m.reserved.is_zero() && unchallengeable {
        release(state, id, provider);
    }
}

fn release(state: &mut State, id: SessionId, provider: AccountId) {
    let s = state.sessions.get_mut(&id).expect("exists");
    let m = s.member_mut(&provider).expect("exists");
    let amount = std::mem::take(&mut m.reserved);
    if let Some(p) = state.providers.get_mut(&provider) {
        p.reserved = p.reserved.saturating_sub(amount);
    }
}

/// The window of `provider` in session `id` that holds receipt `seq`, if committed.
fn window_of(state: &State, id: SessionId, provider: AccountId, seq: u64) -> Option<(WindowKey, &Window)> {
    state
        .windows
        .range((id, provider, 0)..=(id, provider, seq))
        .next_back()
        .filter(|(_, w)| w.covers(seq))
        .map(|(k, w)| (*k, w))
}

/// A receipt challenge: proves an omission or a different total at once, or asks the
/// provider for the receipt's inclusion proof.
pub(crate) fn challenge(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    signed: SignedReceipt,
) -> Result<(), TxError> {
    signed
        .verify(&state.meta().chain_id)
        .map_err(|_| TxError::Invalid("the receipt's signature is not its provider's".into()))?;
    let (r, provider) = (&signed.receipt, signed.provider);
    let params = state.params().clone();
    let s = state.sessions.get(&r.session).ok_or_else(|| TxError::not_found("session", r.session))?;
    let m = s
        .member(&provider)
        .ok_or_else(|| TxError::Invalid(format!("{provider} never served session {}", r.session)))?;
    if m.removed {
        return Err(TxError::InvalidState(format!("{provider} was already convicted in this session")));
    }
    if cx.time_ms > s.member_challenge_deadline_ms(m, &params) {
        return Err(TxError::InvalidState(format!(
            "session {}'s challenge period is over for {provider}'s receipts",
            r.session
        )));
    }
    if r.seq >= m.next_seq {
        let commit_deadline = s.member_commit_deadline_ms(m, &params);
        if cx.time_ms <= commit_deadline {
            return Err(TxError::InvalidState(format!(
                "receipt {} may still be committed; challenge it after {commit_deadline} ms",
                r.seq,
            )));
        }
        convict(state, cx, r.session, provider, r.seq, &[who]);
        return Ok(());
    }
    let (key, w) =
        window_of(state, r.session, provider, r.seq).expect("every seq below next_seq is committed");
    if r.seq == w.last_seq() && r.total != w.commitment.total {
        convict(state, cx, r.session, provider, r.seq, &[who]);
        return Ok(());
    }
    open_challenge(state, cx, who, key, r.seq, Some(r.leaf()))
}

/// Opens a challenge of receipt `seq` in window `key` by `who`, locking its deposit (one
/// audit fee of the window, at least the minimum fee); the provider must answer within
/// `challenge_blocks`.
fn open_challenge(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    key: WindowKey,
    seq: u64,
    leaf: Option<Hash>,
) -> Result<(), TxError> {
    let params = state.params().clone();
    let w = state.windows.get(&key).expect("the caller found it");
    if w.challenges.iter().any(|c| c.seq == seq) {
        return Err(TxError::InvalidState(format!("receipt {seq} is already challenged")));
    }
    if w.challenges.len() >= MAX_CHALLENGES {
        return Err(TxError::InvalidState("this window has as many challenges pending as it may".into()));
    }
    let deposit = w.charge.bps(Params::u64(params.audit_fee_bps)).max(Amount(params.min_fee));
    state.lock(&who, Bucket::Escrow, deposit)?;
    let deadline = cx.height + Params::u64(params.challenge_blocks);
    state.windows.get_mut(&key).expect("found").challenges.push(Challenge {
        seq,
        leaf,
        by: who,
        deposit,
        deadline,
    });
    state.schedule(deadline, Timer::ChallengeDeadline(key));
    let (session, provider, _) = key;
    cx.emit(Event::ReceiptChallenged { session, provider, seq, deposit });
    Ok(())
}

/// The requester claims that committed receipt `seq` of `provider` answers no request its
/// client signed: the provider must show the receipt and the client's signature.
pub(crate) fn challenge_request(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    id: SessionId,
    provider: AccountId,
    seq: u64,
) -> Result<(), TxError> {
    let params = state.params().clone();
    let s = state.sessions.get(&id).ok_or_else(|| TxError::not_found("session", id))?;
    if s.requester != who {
        return Err(TxError::Unauthorized(
            "only the session's requester knows which requests it sent".into(),
        ));
    }
    let m = s.member(&provider).filter(|m| !m.removed).ok_or_else(|| {
        TxError::InvalidState(format!("{provider} was convicted or never served session {id}"))
    })?;
    if cx.time_ms > s.member_challenge_deadline_ms(m, &params) {
        return Err(TxError::InvalidState(format!(
            "session {id}'s challenge period is over for {provider}'s receipts"
        )));
    }
    let (key, _) = window_of(state, id, provider, seq)
        .ok_or_else(|| TxError::not_found("committed receipt", format!("{id}/{seq}")))?;
    open_challenge(state, cx, who, key, seq, None)
}

/// The provider refutes a challenge with the receipt's inclusion proof: the challenger's
/// deposit is its own.
pub(crate) fn answer(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    id: SessionId,
    seq: u64,
    (proof, request): (MerkleProof, Option<RequestProof>),
) -> Result<(), TxError> {
    let (key, w) = window_of(state, id, who, seq)
        .ok_or_else(|| TxError::not_found("window with receipt", format!("{id}/{seq}")))?;
    let c = w
        .challenges
        .iter()
        .find(|c| c.seq == seq)
        .ok_or_else(|| TxError::InvalidState(format!("receipt {seq} is not challenged")))?;
    let leaf = match (c.leaf, &request) {
        (Some(leaf), _) => leaf,
        (None, Some(r)) => {
            let client = state.sessions.get(&id).expect("windows belong to sessions").terms.client;
            let r_ = &r.receipt;
            if r_.session != id
                || r_.seq != seq
                || client.verify(&client_message(&r_.request), &r.client_signature).is_err()
            {
                return Err(TxError::Invalid(
                    "the receipt's request is not signed by the session's client key".into(),
                ));
            }
            r_.leaf()
        }
        (None, None) => {
            return Err(TxError::Invalid(
                "a request challenge is answered with the receipt and the client's signature".into(),
            ));
        }
    };
    let c_ = &w.commitment;
    if proof.index != seq - c_.first_seq
        || proof.count != u64::from(c_.receipts)
        || !proof.verify(&c_.root, leaf)
    {
        return Err(TxError::Invalid("the proof does not show the receipt in the window".into()));
    }
    let deposit = c.deposit;
    let w = state.windows.get_mut(&key).expect("found");
    w.challenges.retain(|c| c.seq != seq);
    state.pay_out(Bucket::Escrow, &who, deposit);
    cx.emit(Event::ChallengeRefuted { session: id, provider: who, seq });
    settle(state, cx, key);
    Ok(())
}

/// A window's challenge deadline (timer): a challenge the provider left unanswered proves
/// the receipt was left out or altered.
pub(crate) fn challenge_deadline(state: &mut State, cx: &mut Ctx, key: WindowKey) {
    let Some(w) = state.windows.get(&key) else { return };
    let Some(c) = w.challenges.iter().find(|c| c.deadline <= cx.height) else { return };
    let (session, provider, _) = key;
    let (seq, by) = (c.seq, c.by);
    convict(state, cx, session, provider, seq, &[by]);
}

/// Applies a window audit's outcome: fraud convicts the provider (unless a challenge already
/// did), refunding this and its other unpaid windows; any other outcome lets the window be paid
/// once its audit window has closed. An audit nobody reported on does not withhold pay: the
/// auditors' silence is not the provider's fault, and a provider that withholds its receipts
/// from auditors is failed by them, not left unverified.
pub(crate) fn audited(
    state: &mut State,
    cx: &mut Ctx,
    key: WindowKey,
    outcome: AuditOutcome,
    accusers: &[AccountId],
) {
    let (session, provider, first_seq) = key;
    if outcome != AuditOutcome::Fraud {
        return settle(state, cx, key);
    }
    let serving = state.sessions.get(&session).and_then(|s| s.member(&provider)).is_some_and(|m| !m.removed);
    if serving {
        convict(state, cx, session, provider, first_seq, accusers);
    }
}

/// A provider proven to have left out or altered a receipt: slashed as for fraud, its unpaid
/// windows refunded to the session, every pending challenge against it returned to its
/// challenger (with an accuser's reward from the insurance pool for those who proved it), and
/// its place in the session matched again.
fn convict(
    state: &mut State,
    cx: &mut Ctx,
    id: SessionId,
    provider: AccountId,
    seq: u64,
    accusers: &[AccountId],
) {
    let params = state.params().clone();
    let s = state.sessions.get(&id).expect("exists");
    let m = s.member(&provider).expect("convicted members serve");
    // What it served under: its cap, or for one that left (whose cap shrank to what it
    // charged) the whole share its reservation still backs.
    let backed = m.reserved.0.checked_div(params.slash_multiple).map_or(Amount::ZERO, Amount);
    let value = m.cap.max(backed);
    let held: Vec<WindowKey> =
        state.windows.range((id, provider, 0)..=(id, provider, u64::MAX)).map(|(k, _)| *k).collect();
    let mut refunded = Amount::ZERO;
    for key in held {
        let w = state.windows.get_mut(&key).expect("listed");
        let challenges = std::mem::take(&mut w.challenges);
        if w.status == WindowStatus::Held {
            w.status = WindowStatus::Refunded;
            refunded = refunded.checked_add(w.charge).expect("≤ escrow");
        }
        for c in challenges {
            state.pay_out(Bucket::Escrow, &c.by, c.deposit);
        }
    }
    let s = state.sessions.get_mut(&id).expect("exists");
    s.committed = s.committed.checked_sub(refunded).expect("refunded windows were committed");
    let m = s.member_mut(&provider).expect("convicted members serve");
    (m.removed, m.held) = (true, 0);
    // What it keeps is what it was paid: the rest of its cap backs its replacement.
    m.charged = m.charged.checked_sub(refunded).expect("its refunded windows were charged");
    m.cap = m.charged;
    // A closed session already returned what was unspent: its refunded windows go straight
    // back to the requester.
    if s.status != SessionStatus::Open {
        s.escrow = s.escrow.checked_sub(refunded).expect("refunded windows were held");
        let requester = s.requester;
        state.pay_out(Bucket::Escrow, &requester, refunded);
    }
    release(state, id, provider);
    let due = value.checked_mul(params.slash_multiple).unwrap_or(Amount(u128::MAX));
    let amount = crate::audits::punish_fraud(state, cx, provider, value, due, accusers);
    cx.emit(Event::ServingFraud { session: id, provider, seq, slashed: amount, refunded });
    state.schedule(cx.height + 1, Timer::MatchSession(id));
}

/// Where a session's funds sit: its escrow and the challenge deposits on its windows (for
/// [`State::recount_supply`]).
pub(crate) fn held_funds(state: &State) -> impl Iterator<Item = Amount> + '_ {
    state
        .sessions
        .values()
        .map(|s| s.escrow)
        .chain(state.windows.values().flat_map(|w| w.challenges.iter().map(|c| c.deposit)))
}
