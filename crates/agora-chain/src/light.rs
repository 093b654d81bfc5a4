//! What a light client needs to trust a block without running consensus: check that a
//! finalization certificate carries a quorum of valid committee signatures for the block's
//! digest. Together with a state proof against that block's successor's `state_root`, this
//! proves a ledger object from nothing but the committee's keys.

use crate::block::{BlockCfg, ChainBlock, consensus_public_key, to_account, to_digest, to_hash};
use crate::validator::NAMESPACE;
use agora_core::{BlockHeader, Hash, PublicKey};
use commonware_codec::Decode as _;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::types::Finalization;
use commonware_cryptography::certificate::Verifier as _;
use commonware_cryptography::{Digestible as _, sha256};
use commonware_parallel::Sequential;
use commonware_utils::ordered::Set;
use rand_core::SeedableRng;

/// Why a finalization certificate was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LightError {
    /// A committee key is not an Ed25519 key.
    #[error("committee member {0} is not a valid Ed25519 key")]
    BadCommittee(PublicKey),
    /// The certificate does not decode.
    #[error("the finalization certificate is malformed: {0}")]
    Malformed(String),
    /// It certifies another block.
    #[error("the certificate finalizes block {certified}, not {expected}")]
    WrongBlock {
        /// Digest in the certificate.
        certified: Hash,
        /// Digest expected.
        expected: Hash,
    },
    /// The signatures do not form a valid quorum of the committee.
    #[error("the certificate's signatures are not a valid quorum of the committee")]
    BadSignatures,
    /// The block is not an epoch's last block, so it names no next committee.
    #[error("block {0} is not the last block of an epoch; it names no next committee")]
    NotABoundary(u64),
    /// The block served is not the one asked for.
    #[error("asked for block {expected}, the node served block {got}")]
    WrongHeight {
        /// Height asked for.
        expected: u64,
        /// Height of the block served.
        got: u64,
    },
    /// The certificate is from another epoch than the block's height belongs to, so the
    /// committee it was checked against is not the one that had to sign it.
    #[error("the certificate is from epoch {got}, but the block belongs to epoch {expected}")]
    WrongEpoch {
        /// Epoch of the block's height.
        expected: u64,
        /// Epoch the certificate was signed in.
        got: u64,
    },
}

/// Proves a ledger header final without trusting the node that served it: decodes the
/// consensus-encoded `block` itself, checks that it is the block at `height`, that
/// `certificate` finalizes exactly its digest, signed in `epoch` (the epoch of `height`) by a
/// quorum of `committee`, and returns the ledger header from those bytes. Nothing the node says
/// about the block (its JSON record, its digest) is used.
pub fn finalized_header(
    certificate: &[u8],
    block: &[u8],
    height: u64,
    epoch: u64,
    committee: &[PublicKey],
) -> Result<BlockHeader, LightError> {
    let block = certified_block(certificate, block, height, epoch, committee)?;
    Ok(block.block.header)
}

fn certified_block(
    certificate: &[u8],
    block: &[u8],
    height: u64,
    epoch: u64,
    committee: &[PublicKey],
) -> Result<ChainBlock, LightError> {
    let block = ChainBlock::decode_cfg(bytes::Bytes::copy_from_slice(block), &BlockCfg::default())
        .map_err(|e| LightError::Malformed(format!("consensus block: {e}")))?;
    let got = block.block.header.height;
    if got != height {
        return Err(LightError::WrongHeight { expected: height, got });
    }
    let signed_in = verify_finalization(certificate, &to_hash(&block.digest()), committee)?;
    if signed_in != epoch {
        return Err(LightError::WrongEpoch { expected: epoch, got: signed_in });
    }
    Ok(block)
}

/// Follows one committee change: checks that `certificate` finalizes exactly `block` (the last
/// block of `epoch`, consensus-encoded as `/api/v1/blocks/{h}/finalization` serves it) under
/// `committee`, the committee of that epoch, and returns the next epoch's committee that the
/// block names. Chained from the genesis committee, this verifies any later finalization
/// without trusting the node that served the data. The height and the certificate's epoch are
/// both checked, so an older boundary block signed by the same committee cannot be replayed.
pub fn next_committee(
    certificate: &[u8],
    block: &[u8],
    epoch: u64,
    blocks_per_epoch: u64,
    committee: &[PublicKey],
) -> Result<Vec<PublicKey>, LightError> {
    let boundary = (epoch + 1).saturating_mul(blocks_per_epoch.max(1)) - 1;
    let block = certified_block(certificate, block, boundary, epoch, committee)?;
    if block.next_committee.is_empty() {
        return Err(LightError::NotABoundary(block.block.header.height));
    }
    Ok(block.next_committee.iter().map(to_account).collect())
}

/// Checks that `certificate` (as served by `/api/v1/blocks/{h}/finalization`) finalizes the
/// block with `digest` under `committee` (e.g. the genesis validators). Returns the epoch the
/// certificate was signed in, which the caller must match against the block's height.
pub fn verify_finalization(
    certificate: &[u8],
    digest: &Hash,
    committee: &[PublicKey],
) -> Result<u64, LightError> {
    let keys = committee
        .iter()
        .map(|k| consensus_public_key(k).ok_or(LightError::BadCommittee(*k)))
        .collect::<Result<Vec<_>, _>>()?;
    let scheme = Scheme::verifier(NAMESPACE, Set::from_iter_dedup(keys));
    let f = Finalization::<Scheme, sha256::Digest>::decode_cfg(
        bytes::Bytes::copy_from_slice(certificate),
        &scheme.certificate_codec_config(),
    )
    .map_err(|e| LightError::Malformed(e.to_string()))?;
    if f.proposal.payload != to_digest(digest) {
        return Err(LightError::WrongBlock {
            certified: crate::block::to_hash(&f.proposal.payload),
            expected: *digest,
        });
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the OS random number generator is available");
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
    if f.verify(&mut rng, &scheme, &Sequential) {
        Ok(f.proposal.round.epoch().get())
    } else {
        Err(LightError::BadSignatures)
    }
}
