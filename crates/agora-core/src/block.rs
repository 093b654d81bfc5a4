//! Blocks as the ledger sees them: an ordered batch of signed transactions plus the facts the
//! chain supplies (time, proposer, randomness, consensus evidence).
//!
//! The consensus layer wraps this in its own block type (adding the consensus context); the
//! ledger never sees consensus types.

use crate::codec::{Decode, DecodeError, DecodeErrorKind, Encode};
use crate::crypto::PublicKey;
use crate::hash::Hash;
use crate::merkle::{MerkleTree, leaf_hash};
use crate::tx::SignedTx;
use crate::{codec_struct, codec_unit_enum};
use serde::{Deserialize, Serialize};

/// Most transactions in one block.
pub const MAX_BLOCK_TXS: usize = 20_000;
/// Most misbehaviour reports in one block.
pub const MAX_BLOCK_EVIDENCE: usize = 64;
/// Largest encoded block accepted anywhere.
pub const MAX_BLOCK_BYTES: usize = 8 * 1024 * 1024;
/// Largest consensus proof attached to a misbehaviour report.
pub const MAX_EVIDENCE_PROOF: usize = 4096;

/// The kind of consensus fault a validator committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Two different notarize votes in one view.
    ConflictingNotarize,
    /// Two different finalize votes in one view.
    ConflictingFinalize,
    /// A nullify and a finalize vote in one view.
    NullifyFinalize,
}

codec_unit_enum!(FaultKind { ConflictingNotarize, ConflictingFinalize, NullifyFinalize });

/// Proof that a validator misbehaved in consensus. The chain layer verifies `proof` (a
/// consensus-encoded pair of conflicting signed votes) before including it; the ledger only
/// applies the penalty, once per (offender, epoch, view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Misbehavior {
    /// The validator at fault.
    pub offender: PublicKey,
    /// What it did.
    pub kind: FaultKind,
    /// Consensus epoch of the fault.
    pub epoch: u64,
    /// Consensus view of the fault.
    pub view: u64,
    /// The consensus-layer evidence, opaque to the ledger.
    pub proof: Vec<u8>,
}
codec_struct!(Misbehavior { offender, kind, epoch, view, proof: bytes(MAX_EVIDENCE_PROOF) });

/// The seed of a chain's genesis block, which the first block's randomness builds on.
pub fn genesis_seed(chain_id: &str) -> Hash {
    Hash::tagged("agora/genesis-seed", &[chain_id.as_bytes()])
}

/// Block metadata that the ledger reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Height; genesis is 0 and every block is its parent's height + 1.
    pub height: u64,
    /// Hash of the parent block's header.
    pub parent: Hash,
    /// Proposer's clock, unix ms; never below the parent's.
    pub timestamp_ms: u64,
    /// The validator that proposed the block.
    pub proposer: PublicKey,
    /// Randomness for clearing ties, audit draws and auditor selection, derived by the chain
    /// from finalized consensus data.
    pub seed: Hash,
    /// Merkle root over the encoded transactions.
    pub tx_root: Hash,
    /// Merkle root over the encoded misbehaviour reports.
    pub evidence_root: Hash,
    /// Authenticated state root after the parent block was applied.
    pub state_root: Hash,
}
codec_struct!(BlockHeader {
    height,
    parent,
    timestamp_ms,
    proposer,
    seed,
    tx_root,
    evidence_root,
    state_root
});

impl BlockHeader {
    /// The block hash.
    pub fn hash(&self) -> Hash {
        Hash::of_encoded("agora/block", self)
    }
}

/// A header and the body it commits to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Metadata.
    pub header: BlockHeader,
    /// Transactions, applied in order.
    pub txs: Vec<SignedTx>,
    /// Consensus faults to penalise.
    pub evidence: Vec<Misbehavior>,
}
codec_struct!(Block { header, txs: vec(MAX_BLOCK_TXS), evidence: vec(MAX_BLOCK_EVIDENCE) });

/// Merkle root over the encodings of `items`.
pub fn encoded_root<T: Encode>(items: &[T]) -> Hash {
    MerkleTree::new(items.iter().map(|t| leaf_hash(&t.encode())).collect()).root()
}

impl Block {
    /// Checks that the header's roots match the body.
    pub fn body_matches_header(&self) -> bool {
        self.header.tx_root == encoded_root(&self.txs)
            && self.header.evidence_root == encoded_root(&self.evidence)
    }

    /// Decodes a block received from outside, refusing oversized input first.
    pub fn decode_untrusted(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_BLOCK_BYTES {
            return Err(DecodeError::new(
                "Block",
                DecodeErrorKind::TooLong { len: bytes.len() as u64, max: MAX_BLOCK_BYTES as u64 },
            ));
        }
        Self::decode(bytes)
    }
}
