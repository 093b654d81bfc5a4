//! The consensus block: the ledger's [`agora_core::Block`] plus the simplex consensus context
//! it was proposed in, with every trait Commonware's marshal and `Deferred` wrapper need.
//!
//! The digest (SHA-256, as consensus requires) covers the context, the beacon share and the
//! whole ledger block, so a block can only be certified in the round it was proposed for. The
//! header's `state_root` is the authenticated root after the *parent* was applied; its `seed`
//! is the beacon's (see [`crate::beacon`]).

use crate::beacon::BeaconShare;
use agora_core::block::{MAX_BLOCK_BYTES, encoded_root};
use agora_core::{Block as LedgerBlock, BlockHeader, Hash, Misbehavior, PublicKey};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use commonware_consensus::simplex::elector::{Config as _, Elector as _, RoundRobin, RoundRobinElector};
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::types::Context;
use commonware_consensus::types::{Epoch, Height, Round, View};
use commonware_consensus::{Block as ConsensusBlock, BoundedBlock, CertifiableBlock, Heightable};
use commonware_cryptography::{Digest as _, Digestible, Hasher, Sha256, Signer as _, ed25519, sha256};
use commonware_utils::ordered::{Quorum as _, Set};

/// The consensus context embedded in every block: round (epoch, view), leader, parent.
pub type Ctx = Context<sha256::Digest, ed25519::PublicKey>;

/// Codec bounds for blocks received from peers or read from storage. Every node must use the
/// same value (it also sizes p2p messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCfg {
    /// Largest encoded ledger block.
    pub max_bytes: usize,
}

impl Default for BlockCfg {
    fn default() -> Self {
        Self { max_bytes: MAX_BLOCK_BYTES }
    }
}

/// The most committee members a block can name.
pub const MAX_COMMITTEE: usize = agora_ledger::params::MAX_COMMITTEE_SIZE as usize;

/// A block as consensus sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBlock {
    /// The round it was proposed in.
    pub context: Ctx,
    /// The ledger block.
    pub block: LedgerBlock,
    /// The proposer's reveal and next commitment for the chain's randomness
    /// ([`crate::beacon`]); the ledger header's `seed` is derived from them.
    pub beacon: BeaconShare,
    /// In the last block of an epoch, the next epoch's committee as the ledger elected it after
    /// this block (validators check it); empty in every other block. Carrying it here lets a
    /// node (re)start an epoch's consensus, and a light client follow committee changes, from
    /// finalized blocks alone.
    pub next_committee: Vec<ed25519::PublicKey>,
}

/// Converts a consensus digest to a ledger hash (both are 32 bytes).
pub fn to_hash(d: &sha256::Digest) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Hash(out)
}

/// Converts a ledger hash back to a consensus digest.
pub fn to_digest(h: &Hash) -> sha256::Digest {
    sha256::Digest::from(h.0)
}

/// Converts a consensus public key to a ledger account id (both are Ed25519, 32 bytes).
pub fn to_account(pk: &ed25519::PublicKey) -> PublicKey {
    let mut out = [0u8; 32];
    out.copy_from_slice(pk.as_ref());
    PublicKey(out)
}

/// The consensus signing key for a validator whose ledger key has `seed`: both are the same
/// Ed25519 key, so the validator's account id is its consensus public key.
pub fn consensus_key(seed: &[u8; 32]) -> ed25519::PrivateKey {
    use commonware_codec::DecodeExt as _;
    ed25519::PrivateKey::decode(bytes::Bytes::copy_from_slice(seed))
        .expect("any 32 bytes are an Ed25519 seed")
}

/// The consensus public key of a validator account (the same Ed25519 key); `None` if the bytes
/// are not a valid key.
pub fn consensus_public_key(account: &PublicKey) -> Option<ed25519::PublicKey> {
    use commonware_codec::DecodeExt as _;
    ed25519::PublicKey::decode(bytes::Bytes::copy_from_slice(&account.0)).ok()
}

/// How consensus picks each view's leader among an epoch's committee: round robin, as every
/// engine and the ledger's missed-slot accounting ([`missed_leaders`]) must agree.
pub fn elector() -> RoundRobin<Sha256> {
    RoundRobin::<Sha256>::default()
}

/// The leaders of the views consensus nullified between `context`'s parent and its round:
/// views in which the leader's proposal never became a block every honest validator accepted
/// (it was down, or proposed something its peers could not decode or execute). Taken from the
/// last `committee.len()` views of the gap, so each member appears at most once per block.
/// Every validator derives the same list from the block's consensus context, which its digest
/// covers.
pub fn missed_leaders(committee: &Set<ed25519::PublicKey>, context: &Ctx) -> Vec<PublicKey> {
    if committee.is_empty() {
        return vec![];
    }
    let leaders: RoundRobinElector<Scheme> = elector().build(committee);
    let (epoch, view) = (context.round.epoch(), context.round.view().get());
    let first = (context.parent.0.get() + 1).max(view.saturating_sub(committee.len() as u64));
    (first..view)
        .filter_map(|v| committee.key(leaders.elect(Round::new(epoch, View::new(v)), ())))
        .map(to_account)
        .collect()
}

impl ChainBlock {
    /// The genesis block: height 0, a fixed context, no transactions, and a seed from the
    /// chain id. Every node builds it byte for byte the same.
    pub fn genesis(chain_id: &str, genesis_time_ms: u64) -> Self {
        let context = Context {
            round: Round::new(Epoch::zero(), View::zero()),
            leader: ed25519::PrivateKey::from_seed(0).public_key(),
            parent: (View::zero(), sha256::Digest::EMPTY),
        };
        let header = BlockHeader {
            height: 0,
            parent: Hash::ZERO,
            timestamp_ms: genesis_time_ms,
            proposer: PublicKey([0; 32]),
            seed: agora_core::block::genesis_seed(chain_id),
            tx_root: encoded_root::<agora_core::SignedTx>(&[]),
            evidence_root: encoded_root::<Misbehavior>(&[]),
            state_root: Hash::ZERO,
        };
        Self {
            context,
            block: LedgerBlock { header, txs: vec![], evidence: vec![] },
            beacon: BeaconShare::default(),
            next_committee: vec![],
        }
    }

    /// The ledger header.
    pub fn header(&self) -> &BlockHeader {
        &self.block.header
    }
}

impl Write for ChainBlock {
    fn write(&self, buf: &mut impl BufMut) {
        self.context.write(buf);
        self.beacon.reveal.0.write(buf);
        self.beacon.commit.0.write(buf);
        agora_core::Encode::encode(&self.block).write(buf);
        self.next_committee.write(buf);
    }
}

impl EncodeSize for ChainBlock {
    fn encode_size(&self) -> usize {
        self.context.encode_size()
            + BEACON_SIZE
            + agora_core::Encode::encode(&self.block).encode_size()
            + self.next_committee.encode_size()
    }
}

impl Read for ChainBlock {
    type Cfg = BlockCfg;

    fn read_cfg(buf: &mut impl Buf, cfg: &BlockCfg) -> Result<Self, CodecError> {
        let context = Ctx::read(buf)?;
        let beacon =
            BeaconShare { reveal: Hash(<[u8; 32]>::read(buf)?), commit: Hash(<[u8; 32]>::read(buf)?) };
        let bytes = Vec::<u8>::read_cfg(buf, &(RangeCfg::new(0..=cfg.max_bytes), ()))?;
        let block = <LedgerBlock as agora_core::Decode>::decode(&bytes)
            .map_err(|_| CodecError::Invalid("ChainBlock", "malformed ledger block"))?;
        let next_committee =
            Vec::<ed25519::PublicKey>::read_cfg(buf, &(RangeCfg::new(0..=MAX_COMMITTEE), ()))?;
        Ok(Self { context, block, beacon, next_committee })
    }
}

impl Digestible for ChainBlock {
    type Digest = sha256::Digest;

    fn digest(&self) -> sha256::Digest {
        Sha256::hash(&[&commonware_codec::Encode::encode(self)])
    }
}

impl Heightable for ChainBlock {
    fn height(&self) -> Height {
        Height::new(self.block.header.height)
    }
}

impl ConsensusBlock for ChainBlock {
    fn parent(&self) -> sha256::Digest {
        to_digest(&self.block.header.parent)
    }
}

impl CertifiableBlock for ChainBlock {
    type Context = Ctx;

    fn context(&self) -> Ctx {
        self.context.clone()
    }
}

/// Varint length prefix of the ledger block bytes or of the committee: at most 5 bytes.
const LEN_PREFIX_MAX: usize = 5;
/// The beacon's reveal and commitment, 32 bytes each.
const BEACON_SIZE: usize = 64;

impl BoundedBlock for ChainBlock {
    fn max_encode_size(cfg: &BlockCfg) -> usize {
        <Ctx as commonware_codec::MaxEncodeSize>::MAX_ENCODE_SIZE
            + BEACON_SIZE
            + LEN_PREFIX_MAX
            + cfg.max_bytes
            + LEN_PREFIX_MAX
            + MAX_COMMITTEE * <ed25519::PublicKey as commonware_codec::FixedSize>::SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{Decode, Encode};

    #[test]
    fn round_trip_bounds_and_digest() {
        let b = ChainBlock::genesis("test", 5);
        let bytes = b.encode();
        assert!(bytes.len() <= ChainBlock::max_encode_size(&BlockCfg::default()));
        let back = ChainBlock::decode_cfg(bytes.clone(), &BlockCfg::default()).unwrap();
        assert_eq!(back, b);
        assert!(ChainBlock::decode_cfg(bytes.clone(), &BlockCfg { max_bytes: 8 }).is_err());
        let mut other = b.clone();
        other.context.round = Round::new(Epoch::zero(), View::new(1));
        assert_ne!(other.digest(), b.digest(), "the digest commits to the context");
        assert_eq!(to_digest(&to_hash(&b.digest())), b.digest());
        let mut boundary = b.clone();
        boundary.next_committee = vec![consensus_key(&[1; 32]).public_key()];
        assert_ne!(boundary.digest(), b.digest(), "the digest commits to the next committee");
        let back = ChainBlock::decode_cfg(boundary.encode(), &BlockCfg::default()).unwrap();
        assert_eq!(back, boundary);
    }

    #[test]
    fn consensus_keys_are_ledger_accounts() {
        // A validator's consensus key and its ledger account come from the same 32-byte seed.
        let seed = [7u8; 32];
        let ours = agora_core::SecretKey::from_seed(seed).public();
        let theirs = consensus_key(&seed).public_key();
        assert_eq!(to_account(&theirs), ours);
    }
}
