//! What a light client needs to trust a block without running consensus: check that a
//! finalization certificate carries a quorum of valid committee signatures for the block's
//! digest. Together with a state proof against that block's successor's `state_root`, this
//! proves a ledger object from nothing but the committee's keys.

use crate::block::{consensus_public_key, to_digest};
use crate::validator::NAMESPACE;
use agora_core::{Hash, PublicKey};
use commonware_codec::Decode as _;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::types::Finalization;
use commonware_cryptography::certificate::Verifier as _;
use commonware_cryptography::sha256;
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
