//! What happened in a block, for receipts, the event stream, and the agents that act on it
//! (providers watch for their leases, auditors for their assignments).

use agora_core::session::SessionId;
use agora_core::tx::{AuditId, JobId, LeaseId, OrderId, ProposalId};
use agora_core::{AccountId, Amount, Hash, ResourceClass, codec_unit_enum};
use serde::{Deserialize, Serialize};

/// How an audit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Every report passed: the provider is paid.
    Clean,
    /// A failure was not confirmed by the escalation: no slash, but the provider's trust
    /// resets and its next leases are audited with certainty.
    Inconclusive,
    /// Confirmed by a majority of at least two auditors: the provider is slashed.
    Fraud,
    /// No auditor reported, even after every replacement: silence is not a pass. The lease
    /// fails unpaid (no slash, no penalty), the shard is re-matched elsewhere, the provider's
    /// trust resets and its next leases are audited with certainty.
    Unverified,
}

codec_unit_enum!(AuditOutcome { Clean, Inconclusive, Fraud, Unverified });

/// Why a lease ended without payment to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseFailure {
    /// No commitment before the deadline.
    MissedDeadline,
    /// The provider stopped sending heartbeats.
    ProviderVanished,
    /// The requester cancelled the job.
    Cancelled,
    /// The audit confirmed fraud.
    Fraud,
    /// The audit got no verdict at all (see [`AuditOutcome::Unverified`]).
    Unverified,
    /// Auditors upheld the provider's statement that the inputs cannot be computed: the
    /// requester's fault, so no penalty; the provider is compensated and the shard given up.
    InvalidInput,
    /// Auditors refuted the provider's statement that the inputs cannot be computed: a
    /// non-delivery, penalized as one.
    FalseInputClaim,
    /// The committed output blob could not be fetched, or was not the one committed: a
    /// non-delivery, penalized as one.
    OutputUnavailable,
}

codec_unit_enum!(LeaseFailure {
    MissedDeadline,
    ProviderVanished,
    Cancelled,
    Fraud,
    Unverified,
    InvalidInput,
    FalseInputClaim,
    OutputUnavailable,
});

impl LeaseFailure {
    /// Whether the provider failed to deliver (no commitment, gone, a refuted statement that
    /// the inputs were invalid, outputs nobody could fetch): the non-delivery penalty applies.
    pub fn is_non_delivery(self) -> bool {
        matches!(
            self,
            LeaseFailure::MissedDeadline
                | LeaseFailure::ProviderVanished
                | LeaseFailure::FalseInputClaim
                | LeaseFailure::OutputUnavailable
        )
    }
}

/// One thing the ledger did. Every event names the objects it touched so clients can follow
/// them without scanning state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// Funds moved between accounts.
    Transfer {
        /// Payer.
        from: AccountId,
        /// Payee.
        to: AccountId,
        /// Amount.
        amount: Amount,
    },
    /// A fee was burned.
    FeeBurned {
        /// Payer.
        payer: AccountId,
        /// Amount.
        amount: Amount,
    },
    /// Stake was bonded.
    Bonded {
        /// Validator.
        validator: AccountId,
        /// Amount.
        amount: Amount,
    },
    /// Stake or collateral started unlocking.
    Unlocking {
        /// Owner.
        owner: AccountId,
        /// Amount.
        amount: Amount,
        /// Height at which it returns.
        release_height: u64,
    },
    /// Unlocked funds returned to the owner's balance.
    Released {
        /// Owner.
        owner: AccountId,
        /// Amount.
        amount: Amount,
    },
    /// The committee for a new epoch.
    CommitteeChanged {
        /// Epoch number.
        epoch: u64,
        /// Members, sorted by stake (descending) then key.
        members: Vec<AccountId>,
    },
    /// A validator was penalised for a consensus fault.
    ValidatorSlashed {
        /// Validator.
        validator: AccountId,
        /// Amount burned.
        amount: Amount,
        /// Jailed until this height.
        jailed_until: u64,
    },
    /// A validator kept missing its proposal slots and was jailed (nothing burned).
    ValidatorJailed {
        /// Validator.
        validator: AccountId,
        /// Slots it missed in a row.
        missed: u64,
        /// Jailed until this height.
        jailed_until: u64,
    },
    /// A provider registered or changed its profile.
    ProviderRegistered {
        /// Provider.
        provider: AccountId,
    },
    /// A provider went silent and was marked inactive.
    ProviderInactive {
        /// Provider.
        provider: AccountId,
    },
    /// An ask entered the book.
    AskPosted {
        /// Order id.
        order: OrderId,
        /// Provider.
        provider: AccountId,
        /// Class.
        class: ResourceClass,
        /// Device-seconds offered.
        quantity: u64,
        /// Minimum price.
        min_unit_price: Amount,
    },
    /// A bid entered the book (one per shard).
    BidPosted {
        /// Order id.
        order: OrderId,
        /// Job.
        job: JobId,
        /// Shard index.
        shard: u32,
    },
    /// An order left the book unfilled (expiry, cancellation, or its provider left).
    OrderClosed {
        /// Order id.
        order: OrderId,
        /// Escrow refunded (bids only).
        refunded: Amount,
    },
    /// A job was accepted.
    JobSubmitted {
        /// Job id.
        job: JobId,
        /// Requester.
        requester: AccountId,
        /// Number of shards.
        shards: u32,
        /// Escrow locked.
        escrow: Amount,
    },
    /// A class was cleared.
    Cleared {
        /// Class.
        class: ResourceClass,
        /// Price per device-second paid by buyers.
        buyer_price: Amount,
        /// Price per device-second received by sellers.
        seller_price: Amount,
        /// Device-seconds matched.
        volume: u64,
        /// Leases created.
        leases: u32,
    },
    /// A match became a lease.
    LeaseCreated {
        /// Lease id.
        lease: LeaseId,
        /// The ask it was filled from.
        ask: OrderId,
        /// Job.
        job: JobId,
        /// Shard index.
        shard: u32,
        /// Provider.
        provider: AccountId,
        /// Requester.
        requester: AccountId,
        /// Price per device-second paid by the requester.
        unit_price: Amount,
        /// Device-seconds.
        quantity: u64,
        /// Commitment deadline, unix ms.
        deadline_ms: u64,
    },
    /// A sealed key was shared.
    KeyShared {
        /// Lease.
        lease: LeaseId,
        /// Recipient.
        to: AccountId,
    },
    /// A provider committed to its results.
    ResultCommitted {
        /// Lease.
        lease: LeaseId,
        /// Merkle root of output items.
        root: Hash,
    },
    /// The audit draw for a commitment.
    AuditDrawn {
        /// Lease.
        lease: LeaseId,
        /// Whether it will be audited.
        audited: bool,
        /// Audit probability, ppm.
        probability_ppm: u32,
    },
    /// Auditors were assigned (initially, on escalation, or replacing a silent one).
    AuditAssigned {
        /// Audit id.
        audit: AuditId,
        /// What is audited.
        target: crate::audits::AuditTarget,
        /// Newly assigned auditors.
        auditors: Vec<AccountId>,
        /// Sampled item indices.
        items: Vec<u32>,
        /// Report deadline height.
        deadline_height: u64,
    },
    /// An auditor reported.
    AuditReported {
        /// Audit id.
        audit: AuditId,
        /// Auditor.
        auditor: AccountId,
        /// Verdict.
        passed: bool,
    },
    /// An audit closed.
    AuditResolved {
        /// Audit id.
        audit: AuditId,
        /// What was audited.
        target: crate::audits::AuditTarget,
        /// Result.
        outcome: AuditOutcome,
    },
    /// A lease paid out.
    LeaseSettled {
        /// Lease.
        lease: LeaseId,
        /// Paid to the provider.
        provider_paid: Amount,
        /// Paid to auditors.
        auditors_paid: Amount,
        /// Returned to the requester.
        requester_refund: Amount,
        /// Burned (clearing spread).
        burned: Amount,
    },
    /// A lease ended without payment to the provider.
    LeaseFailed {
        /// Lease.
        lease: LeaseId,
        /// Why.
        reason: LeaseFailure,
        /// Returned to the requester (or its shard's new bid).
        refunded: Amount,
        /// Taken from the provider's collateral as a penalty.
        penalty: Amount,
    },
    /// A shard went back to the book after its lease failed.
    ShardRequeued {
        /// Job.
        job: JobId,
        /// Shard.
        shard: u32,
        /// The new bid.
        order: OrderId,
    },
    /// A shard could not be completed (deadline passed or the requester cannot fund a retry).
    ShardAbandoned {
        /// Job.
        job: JobId,
        /// Shard.
        shard: u32,
        /// Why.
        reason: String,
    },
    /// Every shard of a job reached a final state.
    JobFinished {
        /// Job.
        job: JobId,
        /// Shards completed and paid.
        completed: u32,
        /// Shards that did not complete.
        abandoned: u32,
    },
    /// A provider was slashed for fraud.
    ProviderSlashed {
        /// Provider.
        provider: AccountId,
        /// Total slashed from collateral.
        amount: Amount,
        /// Paid to the accusing auditors (from the insurance pool).
        to_auditors: Amount,
        /// Barred until this height.
        ejected_until: u64,
    },
    /// An encrypted lease's outputs passed the network's checks; its requester may confirm or
    /// dispute them until `until_ms`, when the provider is paid on silence.
    OutputsDelivered {
        /// Lease.
        lease: LeaseId,
        /// When the delivery window closes, unix ms.
        until_ms: u64,
    },
    /// The requester disputed a delivered lease's outputs; an auditor will decrypt and check
    /// them.
    OutputsDisputed {
        /// Lease.
        lease: LeaseId,
        /// The deposit locked.
        deposit: Amount,
    },
    /// A provider reported a running lease's inputs invalid; auditors will check.
    InputDisputed {
        /// Lease.
        lease: LeaseId,
        /// The malformed input item, or `None` for the shard's input as a whole.
        item: Option<u32>,
    },
    /// An audited lease's metered device time exceeded the bound its auditors' own
    /// measurement sets: it was paid for the measurement, and the provider fined for the
    /// excess.
    MeteringCapped {
        /// Lease.
        lease: LeaseId,
        /// Device-ms the provider claimed.
        claimed_ms: u64,
        /// Device-ms paid for: the audit's measurement.
        allowed_ms: u64,
        /// Taken from the provider's collateral (pool share, rest burned).
        fine: Amount,
    },
    /// An auditor was slashed because the audit's outcome refuted its verdict.
    AuditorSlashed {
        /// The audit.
        audit: AuditId,
        /// The auditor.
        auditor: AccountId,
        /// Taken from its collateral or stake, burned.
        amount: Amount,
    },
    /// A proposal was created.
    ProposalCreated {
        /// Proposal id.
        proposal: ProposalId,
        /// Proposer.
        proposer: AccountId,
        /// Voting closes at this block time, unix ms.
        end_ms: u64,
    },
    /// A vote was cast.
    Voted {
        /// Proposal id.
        proposal: ProposalId,
        /// Voter.
        voter: AccountId,
        /// Yes or no.
        approve: bool,
    },
    /// A proposal closed.
    ProposalClosed {
        /// Proposal id.
        proposal: ProposalId,
        /// Whether its changes were applied.
        passed: bool,
        /// Stake voting yes.
        yes: Amount,
        /// Stake voting no.
        no: Amount,
    },
    /// A serving session opened; its escrow is locked.
    SessionOpened {
        /// Session.
        session: SessionId,
        /// Requester.
        requester: AccountId,
        /// Escrow locked.
        escrow: Amount,
        /// Serving ends at, unix ms.
        until_ms: u64,
    },
    /// A provider joined a session, reserving collateral.
    SessionMatched {
        /// Session.
        session: SessionId,
        /// Provider.
        provider: AccountId,
        /// Collateral reserved.
        reserved: Amount,
    },
    /// A provider stopped serving a session: it left, or the requester dismissed it.
    SessionLeft {
        /// Session.
        session: SessionId,
        /// Provider.
        provider: AccountId,
        /// Whether the requester dismissed it (rather than it leaving).
        dismissed: bool,
    },
    /// The requester stopped its session early.
    SessionEnded {
        /// Session.
        session: SessionId,
        /// Serving stopped at, unix ms.
        at_ms: u64,
    },
    /// A session took its last window; unspent escrow returned.
    SessionClosed {
        /// Session.
        session: SessionId,
        /// Returned to the requester.
        refunded: Amount,
    },
    /// A provider committed a window of receipts.
    WindowCommitted {
        /// Session.
        session: SessionId,
        /// Provider.
        provider: AccountId,
        /// `seq` of its first receipt.
        first_seq: u64,
        /// Receipts covered.
        receipts: u32,
        /// Charge held for it.
        charge: Amount,
    },
    /// A window's audit window closed: its provider was paid.
    WindowPaid {
        /// Session.
        session: SessionId,
        /// Provider.
        provider: AccountId,
        /// `seq` of its first receipt.
        first_seq: u64,
        /// Paid.
        amount: Amount,
    },
    /// A receipt was challenged; its provider must show it in its window.
    ReceiptChallenged {
        /// Session.
        session: SessionId,
        /// Provider.
        provider: AccountId,
        /// The receipt's `seq`.
        seq: u64,
        /// The challenger's deposit.
        deposit: Amount,
    },
    /// The provider showed a challenged receipt in its window.
    ChallengeRefuted {
        /// Session.
        session: SessionId,
        /// Provider.
        provider: AccountId,
        /// The receipt's `seq`.
        seq: u64,
    },
    /// A serving provider was proven to have left out or altered a receipt.
    ServingFraud {
        /// Session.
        session: SessionId,
        /// Provider.
        provider: AccountId,
        /// The receipt's `seq`.
        seq: u64,
        /// Taken from its collateral.
        slashed: Amount,
        /// Its unpaid windows, returned to the session.
        refunded: Amount,
    },
}

/// The outcome of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Transaction id.
    pub tx: Hash,
    /// Sender.
    pub sender: AccountId,
    /// Whether the payload took effect (the fee is charged either way).
    pub ok: bool,
    /// Why it did not, when it did not.
    pub error: Option<String>,
    /// What it caused.
    pub events: Vec<Event>,
}
