//! The state transition: `(state, block) → (state', receipts, events, writes)`.
//!
//! A block is applied in a fixed order that every node follows:
//! 1. header checks (height, time, body roots);
//! 2. each transaction: admission (signature, nonce, fee — failure rejects the block), fee
//!    burned and nonce advanced, then the payload, which either takes effect entirely or
//!    not at all (its receipt says why);
//! 3. consensus evidence (penalties) and missed proposal slots (jailing);
//! 4. due timers: clock deadlines first, then height timers, in key order;
//! 5. market clearing of every class;
//! 6. committee rotation at epoch boundaries;
//! 7. the conservation check.
//!
//! [`BlockBuilder`] runs the same steps for a proposer, skipping transactions that would make
//! the block invalid.

use crate::accounts;
use crate::error::{BlockError, TxError, TxRejection};
use crate::events::{Event, Receipt};
use crate::market::Ask;
use crate::state::{Ctx, State, Timer, Write};
use crate::{audits, delivery, governance, jobs, leases, market, registry, sessions, staking};
use agora_core::block::{Block, Misbehavior, encoded_root};
use agora_core::tx::{SignedTx, TxPayload};
use agora_core::{AccountId, Hash};

/// What applying a block produced.
#[derive(Debug, Clone, Default)]
pub struct BlockOutcome {
    /// One receipt per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// Events not caused by a transaction (timers, clearing, evidence), in order.
    pub events: Vec<Event>,
    /// Store entries changed by the block.
    pub writes: Vec<Write>,
}

/// The facts about a block that the ledger reads besides its transactions.
#[derive(Debug, Clone)]
pub struct BlockInfo {
    /// Height.
    pub height: u64,
    /// Timestamp, unix ms.
    pub timestamp_ms: u64,
    /// Proposer.
    pub proposer: AccountId,
    /// Randomness.
    pub seed: Hash,
    /// Leaders of the consensus views nullified since the parent block, from the block's
    /// consensus context (the chain layer derives them; see `staking::record_proposals`).
    pub missed: Vec<AccountId>,
    /// The proposer's commitment to the randomness it reveals in its next block, if the
    /// chain layer runs a beacon (it checks reveals and derives `seed` from them).
    pub beacon_commit: Option<Hash>,
}

/// What the chain layer knows of a block beyond its ledger encoding (from its consensus
/// context and beacon share); a ledger-only chain has none.
#[derive(Debug, Clone, Default)]
pub struct ConsensusFacts {
    /// See [`BlockInfo::missed`].
    pub missed: Vec<AccountId>,
    /// See [`BlockInfo::beacon_commit`].
    pub beacon_commit: Option<Hash>,
}

impl BlockInfo {
    /// The facts a block's header states, with what consensus adds.
    pub fn of(header: &agora_core::BlockHeader, facts: ConsensusFacts) -> Self {
        BlockInfo {
            height: header.height,
            timestamp_ms: header.timestamp_ms,
            proposer: header.proposer,
            seed: header.seed,
            missed: facts.missed,
            beacon_commit: facts.beacon_commit,
        }
    }
}

/// Applies a complete block to a copy of `state`. The input state is untouched, so a caller
/// can keep it for other forks.
pub fn apply_block(state: &State, block: &Block) -> Result<(State, BlockOutcome), BlockError> {
    apply_block_with(state, block, ConsensusFacts::default(), |_| false)
}

/// [`apply_block`] with what consensus knows of the block (`facts`), skipping the signature
/// check of transactions for which `already_verified` returns true. A node passes a cache of
/// the exact (transaction, signature) pairs it verified when admitting them to its mempool, so
/// each signature is checked once per node.
pub fn apply_block_with(
    state: &State,
    block: &Block,
    facts: ConsensusFacts,
    already_verified: impl Fn(&SignedTx) -> bool,
) -> Result<(State, BlockOutcome), BlockError> {
    if !block.body_matches_header() {
        return Err(BlockError::BodyMismatch);
    }
    let info = BlockInfo::of(&block.header, facts);
    let mut builder = BlockBuilder::new(state, info)?;
    for (index, tx) in block.txs.iter().enumerate() {
        builder.push_with(tx, !already_verified(tx)).map_err(|reason| BlockError::Tx { index, reason })?;
    }
    builder.finish(&block.evidence)
}

/// Applies transactions one at a time on top of a state, as a proposer assembling a block
/// does: a transaction that would make the block invalid is refused and leaves no trace.
/// Cloning is cheap (the state is structurally shared).
#[derive(Debug, Clone)]
pub struct BlockBuilder {
    state: State,
    cx: Ctx,
    receipts: Vec<Receipt>,
    txs: Vec<SignedTx>,
    missed: Vec<AccountId>,
    beacon_commit: Option<Hash>,
}

impl BlockBuilder {
    /// Starts a block on top of `state`.
    pub fn new(state: &State, info: BlockInfo) -> Result<Self, BlockError> {
        let meta = state.meta();
        if info.height != meta.height + 1 {
            return Err(BlockError::Height { expected_prev: meta.height, got: info.height });
        }
        if info.timestamp_ms < meta.timestamp_ms {
            return Err(BlockError::Timestamp { prev: meta.timestamp_ms, got: info.timestamp_ms });
        }
        let mut state = state.clone();
        state.clear_dirty();
        let cx = Ctx {
            height: info.height,
            time_ms: info.timestamp_ms,
            seed: info.seed,
            proposer: info.proposer,
            events: vec![],
        };
        Ok(Self {
            state,
            cx,
            receipts: vec![],
            txs: vec![],
            missed: info.missed,
            beacon_commit: info.beacon_commit,
        })
    }

    /// The state as of the transactions pushed so far.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Transactions accepted so far.
    pub fn txs(&self) -> &[SignedTx] {
        &self.txs
    }

    /// Applies one transaction, or refuses it without changing anything.
    pub fn push(&mut self, tx: &SignedTx) -> Result<&Receipt, TxRejection> {
        self.push_with(tx, true)
    }

    /// [`BlockBuilder::push`], skipping the signature check when `verify_signature` is false
    /// (the caller verified this exact transaction and signature already).
    pub fn push_with(&mut self, tx: &SignedTx, verify_signature: bool) -> Result<&Receipt, TxRejection> {
        accounts::check_admission_with(&self.state, tx, verify_signature)?;
        self.cx.events.clear();
        accounts::charge(&mut self.state, &mut self.cx, tx);
        registry::saw(&mut self.state, &self.cx, tx.tx.sender);
        let before = self.state.clone();
        let fee_events = self.cx.events.len();
        let result = execute(&mut self.state, &mut self.cx, tx);
        if result.is_err() {
            // All or nothing: undo the payload, keep the fee and nonce.
            self.state = before;
            self.cx.events.truncate(fee_events);
        }
        self.receipts.push(Receipt {
            tx: tx.id(),
            sender: tx.tx.sender,
            ok: result.is_ok(),
            error: result.err().map(|e| e.to_string()),
            events: std::mem::take(&mut self.cx.events),
        });
        self.txs.push(tx.clone());
        Ok(self.receipts.last().expect("just pushed"))
    }

    /// Applies evidence and the end-of-block steps (timers, clearing, committee rotation),
    /// then checks conservation. [`BlockBuilder::finish`] calls this; benchmarks call it
    /// alone to time clearing without the write-set encoding.
    pub fn end_block(&mut self, evidence: &[Misbehavior]) -> Result<(), BlockError> {
        let (state, cx) = (&mut self.state, &mut self.cx);
        cx.events.clear();
        for m in evidence {
            if state.validator(&m.offender).is_none() {
                return Err(BlockError::Evidence(m.offender));
            }
            staking::punish_equivocation(state, cx, m);
        }
        staking::record_proposals(state, cx, &self.missed);
        if let Some(commit) = self.beacon_commit {
            staking::record_beacon_commit(state, cx, commit);
        }
        for timer in state.take_due_timers(cx.height, cx.time_ms) {
            run_timer(state, cx, timer);
        }
        market::clear_all(state, cx);
        staking::maybe_rotate_committee(state, cx);
        let m = state.meta_mut();
        m.height = cx.height;
        m.timestamp_ms = cx.time_ms;
        m.seed = cx.seed;
        assert!(state.meta().supply.is_conserved(), "supply conservation violated at height {}", cx.height);
        Ok(())
    }

    /// Ends the block and returns the new state with the receipts, events and write set.
    pub fn finish(mut self, evidence: &[Misbehavior]) -> Result<(State, BlockOutcome), BlockError> {
        self.end_block(evidence)?;
        let writes = self.state.take_writes();
        let outcome =
            BlockOutcome { receipts: self.receipts, events: std::mem::take(&mut self.cx.events), writes };
        Ok((self.state, outcome))
    }

    /// Roots for the header of the block being built: (tx root, evidence root).
    pub fn roots(&self, evidence: &[Misbehavior]) -> (Hash, Hash) {
        (encoded_root(&self.txs), encoded_root(evidence))
    }
}

fn run_timer(state: &mut State, cx: &mut Ctx, timer: Timer) {
    match timer {
        Timer::Release(who) => staking::release(state, cx, who),
        Timer::AuditDraw(lease) => audits::draw(state, cx, lease),
        Timer::SettleLease(lease) => leases::window_closed(state, cx, lease),
        Timer::AuditDeadline(audit) => audits::deadline(state, cx, audit),
        Timer::CloseProposal(p) => governance::close(state, cx, p),
        Timer::Liveness(who) => registry::check_liveness(state, cx, who),
        Timer::OrderExpiry(order) => market::expire(state, cx, order),
        Timer::LeaseDeadline(lease) => leases::deadline(state, cx, lease),
        Timer::JobDeadline(job) => jobs::deadline(state, cx, job),
        Timer::DeliveryWindow(lease) => delivery::window_closed(state, cx, lease),
        Timer::MatchSession(session) => sessions::fill(state, cx, session),
        Timer::CloseSession(session) => sessions::close_due(state, cx, session),
        Timer::SettleWindow(window) => sessions::settle(state, cx, window),
        Timer::DrawWindowAudit(window) => crate::audits::draw_window(state, cx, window),
        Timer::ChallengeDeadline(window) => sessions::challenge_deadline(state, cx, window),
        Timer::FinalizeSession(session) => sessions::finalize(state, cx, session),
        Timer::SessionMemberGone(session, provider) => sessions::shrink_left(state, cx, session, provider),
        Timer::ReleaseSessionMember(session, provider) => {
            sessions::release_if_done(state, cx.time_ms, session, provider)
        }
    }
}

/// Applies a transaction's payload. On error the caller discards every change.
fn execute(state: &mut State, cx: &mut Ctx, tx: &SignedTx) -> Result<(), TxError> {
    let who = tx.tx.sender;
    match tx.tx.payload.clone() {
        TxPayload::Transfer { to, amount } => accounts::transfer(state, cx, who, to, amount),
        TxPayload::Bond { amount } => staking::bond(state, cx, who, amount),
        TxPayload::Unbond { amount } => staking::unbond(state, cx, who, amount),
        TxPayload::RegisterProvider { profile, collateral } => {
            registry::register(state, cx, who, profile, collateral)
        }
        TxPayload::UpdateProvider { profile } => registry::update(state, cx, who, profile),
        TxPayload::AddCollateral { amount } => registry::add_collateral(state, who, amount),
        TxPayload::WithdrawCollateral { amount } => registry::withdraw_collateral(state, cx, who, amount),
        TxPayload::Heartbeat { coord } => registry::heartbeat(state, who, coord),
        TxPayload::PostAsk { class, quantity, min_unit_price, expiry_ms } => market::post_ask(
            state,
            cx,
            who,
            Ask { provider: who, class, quantity, min_unit_price, expiry_ms },
        )
        .map(drop),
        TxPayload::CancelOrder { order } => market::cancel_order(state, cx, who, order),
        TxPayload::SubmitJob { manifest } => jobs::submit(state, cx, who, manifest).map(drop),
        TxPayload::CancelJob { job } => jobs::cancel(state, cx, who, job),
        TxPayload::ShareKey { lease, to, sealed_key } => {
            leases::share_key(state, cx, who, lease, to, sealed_key)
        }
        TxPayload::CommitResult { lease, commitment } => leases::commit(state, cx, who, lease, commitment),
        TxPayload::ReportInvalidInput { lease, item, disclosure } => {
            leases::report_invalid(state, cx, who, lease, item, disclosure)
        }
        TxPayload::ReportAudit { audit, passed, evidence } => {
            audits::report(state, cx, who, audit, passed, evidence)
        }
        TxPayload::Propose { changes, description } => {
            governance::propose(state, cx, who, changes, description).map(drop)
        }
        TxPayload::Vote { proposal, approve } => governance::vote(state, cx, who, proposal, approve),
        TxPayload::ConfirmOutputs { lease } => delivery::confirm(state, cx, who, lease),
        TxPayload::DisputeOutputs { lease, disclosure } => {
            delivery::dispute(state, cx, who, lease, disclosure)
        }
        TxPayload::OpenSession { terms } => sessions::open(state, cx, who, terms).map(drop),
        TxPayload::CloseSession { session } => sessions::close(state, cx, who, session),
        TxPayload::CommitWindow { window } => sessions::commit(state, cx, who, window),
        TxPayload::ChallengeReceipt { receipt } => sessions::challenge(state, cx, who, receipt),
        TxPayload::AnswerChallenge { session, seq, proof, request } => {
            sessions::answer(state, cx, who, session, seq, (proof, request))
        }
        TxPayload::LeaveSession { session, provider } => sessions::leave(state, cx, who, session, provider),
        TxPayload::ChallengeRequest { session, provider, seq } => {
            sessions::challenge_request(state, cx, who, session, provider, seq)
        }
    }
}
