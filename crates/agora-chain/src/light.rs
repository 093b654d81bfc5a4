//! What a light client needs to trust a block without running consensus: check that a
//! finalization certificate carries a quorum of valid committee signatures for the block's
//! digest. Together with a state proof against that block's successor's `state_root`, this
//! proves a ledger object from nothing but the committee's keys.

use crate::block::{BlockCfg, ChainBlock, consensus_public_key, to_account, to_digest, to_hash};
use crate::validator::NAMESPACE;
use agora_core::{Hash, PublicKey};
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
}

/// Follows one committee change: checks that `certificate` finalizes exactly `block` (an
/// epoch's last block, consensus-encoded as `/api/v1/blocks/{h}/finalization` serves it) under
/// `committee`, the committee of that epoch, and returns the next epoch's committee that the
/// block names. Chained from the genesis committee, this verifies any later finalization
/// without trusting the node that served the data.
pub fn next_committee(
    certificate: &[u8],
    block: &[u8],
    committee: &[PublicKey],
) -> Result<Vec<PublicKey>, LightError> {
    let block = ChainBlock::decode_cfg(bytes::Bytes::copy_from_slice(block), &BlockCfg::default())
        .map_err(|e| LightError::Malformed(format!("consensus block: {e}")))?;
    verify_finalization(certificate, &to_hash(&block.digest()), committee)?;
    if block.next_committee.is_empty() {
        return Err(LightError::NotABoundary(block.block.header.height));
    }
    Ok(block.next_committee.iter().map(to_account).collect())
}

/// Checks that `certificate` (as served by `/api/v1/blocks/{h}/finalization`) finalizes the
/// block with `digest` under `committee` (e.g. the genesis validators).
pub fn verify_finalization(
    certificate: &[u8],
    digest: &Hash,
    committee: &[PublicKey],
) -> Result<(), LightError> {
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
    if f.verify(&mut rng, &scheme, &Sequential) { Ok(()) } else { Err(LightError::BadSignatures) }
}
