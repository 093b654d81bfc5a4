//! Transactions: signed requests to change ledger state.
//!
//! A transaction names its sender, a sequential nonce and a fee. The signature covers a
//! domain-separated message — a fixed tag, the chain id and the payload's type tag, then the
//! canonical encoding — so a signature is useless on another chain or as another kind of
//! transaction.

use crate::amount::Amount;
use crate::class::{Coord, Hardware, Region, ResourceClass};
use crate::codec::{Decode, DecodeError, DecodeErrorKind, Encode, Reader};
use crate::codec_struct;
use crate::crypto::{AccountId, PublicKey, SecretKey, Signature, SignatureError};
use crate::hash::Hash;
use crate::manifest::{JobKind, JobManifest};
use crate::merkle::MerkleProof;
use crate::session::{RequestProof, ServeRates, SessionId, SessionTerms, SignedReceipt, WindowCommitment};
use serde::{Deserialize, Serialize};

/// Largest encoded signed transaction accepted anywhere.
pub const MAX_TX_BYTES: usize = 64 * 1024;
/// Longest provider endpoint URL.
pub const MAX_ENDPOINT_LEN: usize = 256;
/// Most parameter changes in one proposal.
pub const MAX_PARAM_CHANGES: usize = 16;
/// Longest sealed key blob (ephemeral key + nonce + ciphertext + tag, with headroom).
pub const MAX_SEALED_KEY: usize = 256;

/// Identifier of an order (ask or bid), assigned sequentially by the ledger.
pub type OrderId = u64;
/// Identifier of a job, assigned sequentially by the ledger.
pub type JobId = u64;
/// Identifier of a lease, assigned sequentially by the ledger.
pub type LeaseId = u64;
/// Identifier of an audit, assigned sequentially by the ledger.
pub type AuditId = u64;
/// Identifier of a governance proposal, assigned sequentially by the ledger.
pub type ProposalId = u64;

/// How a provider prices its asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "price")]
pub enum PricePolicy {
    /// Always ask this price per device-second.
    Fixed(Amount),
    /// Ask near the class's last clearing price, never below this floor.
    Auto(Amount),
}

impl PricePolicy {
    /// The lowest price this policy will ever ask.
    pub fn floor(&self) -> Amount {
        match self {
            PricePolicy::Fixed(p) | PricePolicy::Auto(p) => *p,
        }
    }
}

impl Encode for PricePolicy {
    fn encode_to(&self, out: &mut Vec<u8>) {
        let (tag, p) = match self {
            PricePolicy::Fixed(p) => (0u8, p),
            PricePolicy::Auto(p) => (1u8, p),
        };
        out.push(tag);
        p.encode_to(out);
    }
}

impl Decode for PricePolicy {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.tag("PricePolicy")? {
            0 => Ok(PricePolicy::Fixed(Amount::decode_from(r)?)),
            1 => Ok(PricePolicy::Auto(Amount::decode_from(r)?)),
            t => Err(DecodeError::new("PricePolicy", DecodeErrorKind::UnknownTag(t))),
        }
    }
}

/// What a provider registers about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderProfile {
    /// Detected hardware and benchmark score.
    pub hardware: Hardware,
    /// Classes it sells.
    pub classes: Vec<ResourceClass>,
    /// Job kinds its runtimes support.
    pub kinds: Vec<JobKind>,
    /// Where it runs.
    pub region: Region,
    /// Declared grid carbon intensity, gCO2e/kWh.
    pub carbon_g_per_kwh: u32,
    /// How it prices capacity.
    pub price_policy: PricePolicy,
    /// Its Vivaldi coordinate.
    pub coord: Coord,
    /// Base URL of its node API, where it serves outputs and audit items.
    pub endpoint: String,
    /// The least it accepts to serve sessions in its classes (`None`: it serves none).
    #[serde(default)]
    pub serve: Option<ServeRates>,
}
codec_struct!(ProviderProfile {
    hardware,
    classes: vec(16),
    kinds: vec(4),
    region,
    carbon_g_per_kwh,
    price_policy,
    coord,
    endpoint: string(MAX_ENDPOINT_LEN),
    serve
});

/// Most disputed items one audit report names.
pub const MAX_DISPUTED: usize = 256;

/// An item an auditor's recomputation disagreed with, and the hash of what it recomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disputed {
    /// Output item index.
    pub index: u32,
    /// Hash ([`Hash::of`]) of the auditor's recomputed bytes for it.
    pub recomputed: Hash,
}
codec_struct!(Disputed { index, recomputed });

/// The evidence behind an audit verdict. With the chain's commitments (the requester's input
/// root, the provider's output root) it lets anyone re-run a disputed item and see who was
/// right, and it binds the auditor to every recomputation it did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvidence {
    /// Merkle root ([`crate::merkle::MerkleTree`], which binds the count) over the hashes of
    /// the auditor's recomputed bytes, one per sampled item in the audit's order; `Hash::ZERO`
    /// when nothing was recomputed (the provider withheld the items, served items that do not
    /// verify against its commitment, or claims that cannot be replayed).
    pub recomputed_root: Hash,
    /// The items that did not match, ascending by index (empty for a pass, or when nothing was recomputed).
    pub disputed: Vec<Disputed>,
    /// Device-milliseconds the auditor's recomputation of the sample took (0 if nothing was):
    /// the measurement that bounds the provider's metered time.
    pub measured_ms: u64,
}
codec_struct!(AuditEvidence { recomputed_root, disputed: vec(MAX_DISPUTED), measured_ms });

impl AuditEvidence {
    /// The evidence of a failure with nothing recomputed: the provider served nothing that
    /// verifies against its commitment (withholding), or claims that cannot be replayed.
    pub fn nothing_recomputed() -> Self {
        Self::default()
    }

    /// The evidence of a check that recomputes nothing (of inputs, or of an output blob's
    /// availability): `found` commits to what it found, a root it computed or the hash of
    /// why it could not.
    pub fn finding(found: Hash) -> Self {
        Self { recomputed_root: found, ..Self::default() }
    }

    /// Whether nothing was recomputed ([`AuditEvidence::nothing_recomputed`]).
    pub fn recomputed_nothing(&self) -> bool {
        self.recomputed_root == Hash::ZERO && self.disputed.is_empty()
    }
}

/// Resources a provider reports having used for a lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metering {
    /// Wall-clock time of the run, ms.
    pub wall_ms: u64,
    /// Device time consumed (device-seconds × 1000).
    pub device_ms: u64,
    /// WebAssembly fuel consumed (0 for other kinds).
    pub fuel: u64,
    /// Estimated energy, milliwatt-hours.
    pub energy_mwh: u64,
}
codec_struct!(Metering { wall_ms, device_ms, fuel, energy_mwh });

/// A provider's binding claim about a lease's outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultCommitment {
    /// Merkle root over the per-item output hashes.
    pub root: Hash,
    /// Number of output items.
    pub item_count: u32,
    /// Content hash of the output blob (encrypted to the requester when the job is).
    pub output: Hash,
    /// Resources used.
    pub metering: Metering,
}
codec_struct!(ResultCommitment { root, item_count, output, metering });

/// One governance parameter change: `name` set to `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamChange {
    /// Parameter name as listed by the parameter table.
    pub name: String,
    /// New value (integers; fractions are basis points or ppm as the name says).
    pub value: u128,
}
codec_struct!(ParamChange { name: string(64), value });

/// What a transaction asks the ledger to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum TxPayload {
    /// Move funds to another account.
    Transfer {
        /// Recipient.
        to: AccountId,
        /// Amount moved.
        amount: Amount,
    },
    /// Lock funds as validator stake (the sender's key is its consensus key).
    Bond {
        /// Amount bonded.
        amount: Amount,
    },
    /// Start unlocking validator stake; it returns after the unbonding period.
    Unbond {
        /// Amount unbonded.
        amount: Amount,
    },
    /// Register as a provider with collateral.
    RegisterProvider {
        /// Self-description.
        profile: ProviderProfile,
        /// Collateral locked from the sender's balance.
        collateral: Amount,
    },
    /// Replace a provider's profile.
    UpdateProvider {
        /// New self-description.
        profile: ProviderProfile,
    },
    /// Add provider collateral.
    AddCollateral {
        /// Amount added.
        amount: Amount,
    },
    /// Start withdrawing provider collateral; it returns after the unbonding period.
    WithdrawCollateral {
        /// Amount withdrawn.
        amount: Amount,
    },
    /// Provider liveness signal with a fresh coordinate.
    Heartbeat {
        /// Current Vivaldi coordinate.
        coord: Coord,
    },
    /// Offer capacity in a class.
    PostAsk {
        /// Class sold.
        class: ResourceClass,
        /// Device-seconds offered.
        quantity: u64,
        /// Lowest acceptable price per device-second.
        min_unit_price: Amount,
        /// Unix ms after which the ask is withdrawn.
        expiry_ms: u64,
    },
    /// Withdraw an open ask.
    CancelOrder {
        /// The ask.
        order: OrderId,
    },
    /// Submit a job: one bid per shard, escrow locked at max price × quantity.
    SubmitJob {
        /// The job.
        manifest: JobManifest,
    },
    /// Cancel a job: unmatched shards are refunded, running leases are cancelled.
    CancelJob {
        /// The job.
        job: JobId,
    },
    /// Give the assigned provider (or an auditor) the input key, sealed to its key.
    ShareKey {
        /// The lease.
        lease: LeaseId,
        /// Recipient account.
        to: AccountId,
        /// The key sealed to the recipient's X25519 form.
        sealed_key: Vec<u8>,
    },
    /// A provider's result commitment for a lease.
    CommitResult {
        /// The lease.
        lease: LeaseId,
        /// The commitment.
        commitment: ResultCommitment,
    },
    /// A provider's statement that a running lease's inputs cannot be computed: the shard's
    /// input blob is unavailable or does not match its declared root or count (`item: None`),
    /// or input item `item` is malformed for the job's kind. Auditors check it. For an
    /// encrypted job the provider discloses, with proof, the secret that opens the input key
    /// it was sent, so auditors can open the inputs as the provider did (nothing the provider
    /// could not already publish: it holds the key).
    ReportInvalidInput {
        /// The lease.
        lease: LeaseId,
        /// The malformed input item, or `None` for the shard's input as a whole.
        item: Option<u32>,
        /// For an encrypted job (and only then): the disclosure of the input key sealed to the
        /// provider, proven for [`crate::disclosure::input_key_context`] of the lease.
        disclosure: Option<crate::disclosure::KeyDisclosure>,
    },
    /// An auditor's verdict.
    ReportAudit {
        /// The audit.
        audit: AuditId,
        /// Whether every sampled item matched.
        passed: bool,
        /// What the auditor recomputed, so anyone can check the verdict.
        evidence: AuditEvidence,
    },
    /// Propose parameter changes.
    Propose {
        /// The changes, applied together if the proposal passes.
        changes: Vec<ParamChange>,
        /// Human-readable reason.
        description: String,
    },
    /// Vote on a proposal with the sender's bonded stake.
    Vote {
        /// The proposal.
        proposal: ProposalId,
        /// Yes or no.
        approve: bool,
    },
    /// The requester of an encrypted job confirms that a delivered lease's outputs decrypt to
    /// the committed items: the provider is paid now instead of when the delivery window
    /// closes.
    ConfirmOutputs {
        /// The lease.
        lease: LeaseId,
    },
    /// The requester of an encrypted job disputes a delivered lease's outputs: it discloses,
    /// with proof, the secret from which the lease's output key is derived (requester key ×
    /// provider key, proven for [`crate::disclosure::output_key_context`] of the lease), so
    /// auditors can decrypt the blob and check it against the commitment. Locks a deposit of
    /// one audit fee, the provider's if the outputs are found good.
    DisputeOutputs {
        /// The lease.
        lease: LeaseId,
        /// The requester's disclosure.
        disclosure: crate::disclosure::KeyDisclosure,
    },
    /// Open a serving session: its escrow is locked, and providers are matched to it.
    OpenSession {
        /// The terms.
        terms: SessionTerms,
    },
    /// The requester ends its session early: nothing more is served, unspent escrow returns
    /// once the providers' last windows are committed.
    CloseSession {
        /// The session.
        session: SessionId,
    },
    /// A session's provider commits a window of its receipts; the window is paid once its
    /// audit window closes.
    CommitWindow {
        /// The commitment.
        window: WindowCommitment,
    },
    /// A holder of a signed receipt proves (or, when only the provider's tree can settle it,
    /// claims) that the provider left it out of its windows or committed it differently.
    /// Locks a deposit of one audit fee of the window, the provider's if the claim is refuted.
    ChallengeReceipt {
        /// The receipt, signed by the provider.
        receipt: SignedReceipt,
    },
    /// The requester of a session claims that receipt `seq` its provider committed answers no
    /// request of the session's client (the provider made it up to charge for it). Locks a
    /// deposit of one audit fee of the window, the provider's if the claim is refuted.
    ChallengeRequest {
        /// The session.
        session: SessionId,
        /// The provider.
        provider: AccountId,
        /// The receipt's `seq`.
        seq: u64,
    },
    /// A provider refutes a challenge: with the challenged receipt's inclusion proof, and for
    /// a request challenge also its receipt and the client's signature over its request.
    AnswerChallenge {
        /// The session.
        session: SessionId,
        /// The challenged receipt's `seq`.
        seq: u64,
        /// Proof of its leaf in the window's root.
        proof: MerkleProof,
        /// For a request challenge: the receipt and the client's signature.
        request: Option<RequestProof>,
    },
    /// A provider stops serving a session: sent by the provider itself, or by the session's
    /// requester to dismiss it (one that stopped answering). It still commits what it served
    /// for one commit grace; then its unspent share backs a replacement, and its collateral is
    /// released once its receipts can no longer be challenged and its windows are settled.
    LeaveSession {
        /// The session.
        session: SessionId,
        /// The provider that leaves.
        provider: AccountId,
    },
}

impl TxPayload {
    /// The one-byte type tag, also bound into the signature.
    pub fn tag(&self) -> u8 {
        match self {
            TxPayload::Transfer { .. } => 0,
            TxPayload::Bond { .. } => 1,
            TxPayload::Unbond { .. } => 2,
            TxPayload::RegisterProvider { .. } => 3,
            TxPayload::UpdateProvider { .. } => 4,
            TxPayload::AddCollateral { .. } => 5,
            TxPayload::WithdrawCollateral { .. } => 6,
            TxPayload::Heartbeat { .. } => 7,
            TxPayload::PostAsk { .. } => 8,
            TxPayload::CancelOrder { .. } => 9,
            TxPayload::SubmitJob { .. } => 10,
            TxPayload::CancelJob { .. } => 11,
            TxPayload::ShareKey { .. } => 12,
            TxPayload::CommitResult { .. } => 13,
            TxPayload::ReportAudit { .. } => 14,
            TxPayload::Propose { .. } => 15,
            TxPayload::Vote { .. } => 16,
            TxPayload::ConfirmOutputs { .. } => 18,
            TxPayload::DisputeOutputs { .. } => 19,
            TxPayload::ReportInvalidInput { .. } => 17,
            TxPayload::OpenSession { .. } => 20,
            TxPayload::CloseSession { .. } => 21,
            TxPayload::CommitWindow { .. } => 22,
            TxPayload::ChallengeReceipt { .. } => 23,
            TxPayload::AnswerChallenge { .. } => 24,
            TxPayload::ChallengeRequest { .. } => 25,
            TxPayload::LeaveSession { .. } => 26,
        }
    }

    /// A short name for logs and receipts.
    pub fn name(&self) -> &'static str {
        match self {
            TxPayload::Transfer { .. } => "transfer",
            TxPayload::Bond { .. } => "bond",
            TxPayload::Unbond { .. } => "unbond",
            TxPayload::RegisterProvider { .. } => "register_provider",
            TxPayload::UpdateProvider { .. } => "update_provider",
            TxPayload::AddCollateral { .. } => "add_collateral",
            TxPayload::WithdrawCollateral { .. } => "withdraw_collateral",
            TxPayload::Heartbeat { .. } => "heartbeat",
            TxPayload::PostAsk { .. } => "post_ask",
            TxPayload::CancelOrder { .. } => "cancel_order",
            TxPayload::SubmitJob { .. } => "submit_job",
            TxPayload::CancelJob { .. } => "cancel_job",
            TxPayload::ShareKey { .. } => "share_key",
            TxPayload::CommitResult { .. } => "commit_result",
            TxPayload::ReportAudit { .. } => "report_audit",
            TxPayload::Propose { .. } => "propose",
            TxPayload::Vote { .. } => "vote",
            TxPayload::ConfirmOutputs { .. } => "confirm_outputs",
            TxPayload::DisputeOutputs { .. } => "dispute_outputs",
            TxPayload::ReportInvalidInput { .. } => "report_invalid_input",
            TxPayload::OpenSession { .. } => "open_session",
            TxPayload::CloseSession { .. } => "close_session",
            TxPayload::CommitWindow { .. } => "commit_window",
            TxPayload::ChallengeReceipt { .. } => "challenge_receipt",
            TxPayload::AnswerChallenge { .. } => "answer_challenge",
            TxPayload::ChallengeRequest { .. } => "challenge_request",
            TxPayload::LeaveSession { .. } => "leave_session",
        }
    }
}

impl Encode for TxPayload {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
        match self {
            TxPayload::Transfer { to, amount } => {
                to.encode_to(out);
                amount.encode_to(out);
            }
            TxPayload::Bond { amount }
            | TxPayload::Unbond { amount }
            | TxPayload::AddCollateral { amount }
            | TxPayload::WithdrawCollateral { amount } => amount.encode_to(out),
            TxPayload::RegisterProvider { profile, collateral } => {
                profile.encode_to(out);
                collateral.encode_to(out);
            }
            TxPayload::UpdateProvider { profile } => profile.encode_to(out),
            TxPayload::Heartbeat { coord } => coord.encode_to(out),
            TxPayload::PostAsk { class, quantity, min_unit_price, expiry_ms } => {
                class.encode_to(out);
                quantity.encode_to(out);
                min_unit_price.encode_to(out);
                expiry_ms.encode_to(out);
            }
            TxPayload::CancelOrder { order } => order.encode_to(out),
            TxPayload::SubmitJob { manifest } => manifest.encode_to(out),
            TxPayload::CancelJob { job } => job.encode_to(out),
            TxPayload::ShareKey { lease, to, sealed_key } => {
                lease.encode_to(out);
                to.encode_to(out);
                sealed_key.as_slice().encode_to(out);
            }
            TxPayload::CommitResult { lease, commitment } => {
                lease.encode_to(out);
                commitment.encode_to(out);
            }
            TxPayload::ReportInvalidInput { lease, item, disclosure } => {
                lease.encode_to(out);
                item.encode_to(out);
                disclosure.encode_to(out);
            }
            TxPayload::ReportAudit { audit, passed, evidence } => {
                audit.encode_to(out);
                passed.encode_to(out);
                evidence.encode_to(out);
            }
            TxPayload::Propose { changes, description } => {
                crate::codec::encode_seq(changes.iter(), out);
                description.encode_to(out);
            }
            TxPayload::Vote { proposal, approve } => {
                proposal.encode_to(out);
                approve.encode_to(out);
            }
            TxPayload::ConfirmOutputs { lease } => lease.encode_to(out),
            TxPayload::DisputeOutputs { lease, disclosure } => {
                lease.encode_to(out);
                disclosure.encode_to(out);
            }
            TxPayload::OpenSession { terms } => terms.encode_to(out),
            TxPayload::CloseSession { session } => session.encode_to(out),
            TxPayload::CommitWindow { window } => window.encode_to(out),
            TxPayload::ChallengeReceipt { receipt } => receipt.encode_to(out),
            TxPayload::AnswerChallenge { session, seq, proof, request } => {
                session.encode_to(out);
                seq.encode_to(out);
                proof.encode_to(out);
                request.encode_to(out);
            }
            TxPayload::ChallengeRequest { session, provider, seq } => {
                session.encode_to(out);
                provider.encode_to(out);
                seq.encode_to(out);
            }
            TxPayload::LeaveSession { session, provider } => {
                session.encode_to(out);
                provider.encode_to(out);
            }
        }
    }
}

impl Decode for TxPayload {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let amount = |r: &mut Reader<'_>| Amount::decode_from(r);
        Ok(match r.tag("TxPayload")? {
            0 => TxPayload::Transfer { to: PublicKey::decode_from(r)?, amount: amount(r)? },
            1 => TxPayload::Bond { amount: amount(r)? },
            2 => TxPayload::Unbond { amount: amount(r)? },
            3 => TxPayload::RegisterProvider {
                profile: ProviderProfile::decode_from(r)?,
                collateral: amount(r)?,
            },
            4 => TxPayload::UpdateProvider { profile: ProviderProfile::decode_from(r)? },
            5 => TxPayload::AddCollateral { amount: amount(r)? },
            6 => TxPayload::WithdrawCollateral { amount: amount(r)? },
            7 => TxPayload::Heartbeat { coord: Coord::decode_from(r)? },
            8 => TxPayload::PostAsk {
                class: ResourceClass::decode_from(r)?,
                quantity: u64::decode_from(r)?,
                min_unit_price: amount(r)?,
                expiry_ms: u64::decode_from(r)?,
            },
            9 => TxPayload::CancelOrder { order: u64::decode_from(r)? },
            10 => TxPayload::SubmitJob { manifest: JobManifest::decode_from(r)? },
            11 => TxPayload::CancelJob { job: u64::decode_from(r)? },
            12 => TxPayload::ShareKey {
                lease: u64::decode_from(r)?,
                to: PublicKey::decode_from(r)?,
                sealed_key: r.bytes(MAX_SEALED_KEY, "ShareKey.sealed_key")?,
            },
            13 => TxPayload::CommitResult {
                lease: u64::decode_from(r)?,
                commitment: ResultCommitment::decode_from(r)?,
            },
            14 => TxPayload::ReportAudit {
                audit: u64::decode_from(r)?,
                passed: bool::decode_from(r)?,
                evidence: AuditEvidence::decode_from(r)?,
            },
            15 => TxPayload::Propose {
                changes: r.vec(MAX_PARAM_CHANGES, "Propose.changes")?,
                description: r.string(1024, "Propose.description")?,
            },
            16 => TxPayload::Vote { proposal: u64::decode_from(r)?, approve: bool::decode_from(r)? },
            17 => TxPayload::ReportInvalidInput {
                lease: u64::decode_from(r)?,
                item: Option::<u32>::decode_from(r)?,
                disclosure: Option::decode_from(r)?,
            },
            18 => TxPayload::ConfirmOutputs { lease: u64::decode_from(r)? },
            19 => TxPayload::DisputeOutputs {
                lease: u64::decode_from(r)?,
                disclosure: crate::disclosure::KeyDisclosure::decode_from(r)?,
            },
            20 => TxPayload::OpenSession { terms: SessionTerms::decode_from(r)? },
            21 => TxPayload::CloseSession { session: u64::decode_from(r)? },
            22 => TxPayload::CommitWindow { window: WindowCommitment::decode_from(r)? },
            23 => TxPayload::ChallengeReceipt { receipt: SignedReceipt::decode_from(r)? },
            24 => TxPayload::AnswerChallenge {
                session: u64::decode_from(r)?,
                seq: u64::decode_from(r)?,
                proof: MerkleProof::decode_from(r)?,
                request: Option::decode_from(r)?,
            },
            25 => TxPayload::ChallengeRequest {
                session: u64::decode_from(r)?,
                provider: PublicKey::decode_from(r)?,
                seq: u64::decode_from(r)?,
            },
            26 => TxPayload::LeaveSession {
                session: u64::decode_from(r)?,
                provider: PublicKey::decode_from(r)?,
            },
            t => {
                return Err(DecodeError::new("TxPayload", DecodeErrorKind::UnknownTag(t)));
            }
        })
    }
}

/// An unsigned transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The account paying the fee and acting.
    pub sender: AccountId,
    /// Must equal the sender's next nonce.
    pub nonce: u64,
    /// Fee paid to the network (burned).
    pub fee: Amount,
    /// What to do.
    pub payload: TxPayload,
}
codec_struct!(Transaction { sender, nonce, fee, payload });

const TX_DOMAIN: &str = "agora/tx/v1";

impl Transaction {
    /// The exact bytes a sender signs: domain tag, chain id, payload type, then the encoding.
    pub fn signing_message(&self, chain_id: &str) -> Vec<u8> {
        let mut msg = Vec::with_capacity(64 + chain_id.len());
        msg.extend_from_slice(TX_DOMAIN.as_bytes());
        chain_id.encode_to(&mut msg);
        msg.push(self.payload.tag());
        self.encode_to(&mut msg);
        msg
    }

    /// Signs for `chain_id`. The key must belong to the sender.
    pub fn sign(self, chain_id: &str, key: &SecretKey) -> SignedTx {
        debug_assert_eq!(key.public(), self.sender, "signing key must be the sender's");
        let signature = key.sign(&self.signing_message(chain_id));
        SignedTx { tx: self, signature }
    }

    /// The transaction id: a hash of the unsigned encoding.
    pub fn id(&self) -> Hash {
        Hash::of_encoded("agora/txid", self)
    }
}

/// A transaction with the sender's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    /// The transaction.
    pub tx: Transaction,
    /// The sender's signature over [`Transaction::signing_message`].
    pub signature: Signature,
}
codec_struct!(SignedTx { tx, signature });

impl SignedTx {
    /// Checks the signature against the sender for `chain_id`.
    pub fn verify(&self, chain_id: &str) -> Result<(), SignatureError> {
        self.tx.sender.verify(&self.tx.signing_message(chain_id), &self.signature)
    }

    /// The transaction id.
    pub fn id(&self) -> Hash {
        self.tx.id()
    }

    /// Decodes a transaction received from outside, refusing oversized input first.
    pub fn decode_untrusted(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(DecodeError::new(
                "SignedTx",
                DecodeErrorKind::TooLong { len: bytes.len() as u64, max: MAX_TX_BYTES as u64 },
            ));
        }
        Self::decode(bytes)
    }

    /// Checks that this transaction, however it was built (JSON, a client library, the
    /// gateway), is exactly what the canonical bounded decoder accepts: its encoding is at most
    /// [`MAX_TX_BYTES`] and decodes back to this very value. Returns the encoded size.
    ///
    /// This is the one shape rule admission applies. The bounds themselves (string lengths,
    /// list counts) live only in the decoders, so "admitted here" and "decodable by every
    /// peer" cannot drift apart.
    pub fn check_canonical(&self) -> Result<usize, DecodeError> {
        let bytes = self.encode();
        if Self::decode_untrusted(&bytes)? != *self {
            return Err(DecodeError::invalid("SignedTx", "value does not survive its canonical encoding"));
        }
        Ok(bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_label("alice")
    }

    fn transfer(nonce: u64) -> Transaction {
        Transaction {
            sender: key().public(),
            nonce,
            fee: Amount(10),
            payload: TxPayload::Transfer { to: SecretKey::from_label("bob").public(), amount: Amount(5) },
        }
    }

    #[test]
    fn signatures_bind_chain_and_content() {
        let signed = transfer(0).sign("agora-test", &key());
        assert!(signed.verify("agora-test").is_ok());
        assert_eq!(signed.verify("agora-main"), Err(SignatureError::Mismatch));
        let mut tampered = signed.clone();
        tampered.tx.nonce = 1;
        assert_eq!(tampered.verify("agora-test"), Err(SignatureError::Mismatch));
    }

    #[test]
    fn signature_cannot_be_reused_as_another_type() {
        // Same encoded body bytes reinterpreted under another tag must not verify: the tag is
        // part of the signed message and of the encoding.
        let signed = transfer(0).sign("c", &key());
        let mut other = signed.clone();
        other.tx.payload = TxPayload::Bond { amount: Amount(5) };
        assert!(other.verify("c").is_err());
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let err = SignedTx::decode_untrusted(&vec![0u8; MAX_TX_BYTES + 1]).unwrap_err();
        assert!(err.to_string().contains("exceeds the limit"));
    }

    #[test]
    fn values_the_decoder_would_refuse_are_not_canonical() {
        // A Generate stop string over the decoder's 256-byte string limit, as a JSON client or
        // the gateway could build it: it encodes, but no peer could decode it.
        let mut manifest = crate::manifest::tests::sample_manifest();
        manifest.params = crate::manifest::JobParams::Generate {
            max_new_tokens: 8,
            temperature_milli: 0,
            seed: 0,
            stop: vec!["x".repeat(300)],
        };
        let tx = Transaction {
            sender: key().public(),
            nonce: 0,
            fee: Amount(10),
            payload: TxPayload::SubmitJob { manifest },
        }
        .sign("c", &key());
        let err = tx.check_canonical().unwrap_err();
        assert_eq!(err.to_string(), "malformed JobParams.stop: length 300 exceeds the limit of 256");
        assert_eq!(
            transfer(0).sign("c", &key()).check_canonical(),
            Ok(transfer(0).sign("c", &key()).encode().len())
        );
    }

    #[test]
    fn round_trip() {
        let signed = transfer(3).sign("c", &key());
        assert_eq!(SignedTx::decode(&signed.encode()).unwrap(), signed);
        let json = serde_json::to_string(&signed).unwrap();
        assert_eq!(serde_json::from_str::<SignedTx>(&json).unwrap(), signed);
    }
}
