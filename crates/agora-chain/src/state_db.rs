//! Authenticated state: the ledger's entries in Commonware QMDB (`current::ordered::variable`),
//! whose root goes into the next block header and which proves the current value — or the
//! absence — of any key to a light client.
//!
//! A ledger key `k` is stored under `SHA-256(k)` with the value `len(k) ‖ k ‖ v`, so iteration
//! recovers the ledger keys (to rebuild the in-memory state after a restart) and a proof binds
//! the exact key. One extra entry, [`TIP_KEY`], records the height and digest of the block the
//! state belongs to; it is written in the same batch as the block's changes, so a crash can
//! never separate the two.

use agora_core::Hash;
use commonware_codec::RangeCfg;
use commonware_cryptography::{Hasher, Sha256, sha256};
use commonware_parallel::Sequential;
use commonware_runtime::{Spawner, buffer::paged::CacheRef};
use commonware_storage::journal::contiguous::variable::Config as JournalConfig;
use commonware_storage::merkle::full::Config as MerkleConfig;
use commonware_storage::mmr;
use commonware_storage::qmdb::any::value::VariableEncoding;
use commonware_storage::qmdb::current::VariableConfig;
use commonware_storage::qmdb::current::ordered::proof::constant::{ExclusionProof, KeyValueProof};
use commonware_storage::qmdb::current::ordered::variable::Db;
use commonware_storage::translator::EightCap;
use commonware_utils::{NZU64, NZUsize};

/// Bitmap chunk size (32 bytes gives the smallest proofs).
pub const CHUNK: usize = 32;
/// Largest stored value (a framed ledger key and value).
pub const MAX_VALUE: usize = 256 * 1024;
/// Most digests a proof may carry when decoded from outside.
pub const MAX_PROOF_DIGESTS: usize = 256;
/// The ledger key of the chain-tip record (ledger table prefixes are all below 0xFF).
pub const TIP_KEY: &[u8] = &[0xFF];

/// QMDB key: SHA-256 of the ledger key.
pub type Key = sha256::Digest;
/// QMDB value: the framed ledger key and value.
pub type Value = Vec<u8>;
/// Authenticated root.
pub type Root = sha256::Digest;
/// The database, over runtime context `E`.
pub type StateDb<E> = Db<mmr::Family, E, Key, Value, Sha256, EightCap, CHUNK, Sequential>;
/// Proof that a key currently has a value.
pub type ValueProof = KeyValueProof<mmr::Family, Key, Root, CHUNK>;
/// Proof that a key currently has no value.
pub type AbsenceProof = ExclusionProof<mmr::Family, Key, VariableEncoding<Value>, Root, CHUNK>;
type OpCfg = ((), (RangeCfg<usize>, ()));

/// The QMDB key of a ledger key.
pub fn db_key(ledger_key: &[u8]) -> Key {
    Sha256::hash(&[ledger_key])
}

/// Frames a ledger key and value as one stored value.
pub fn frame(ledger_key: &[u8], value: &[u8]) -> Value {
    let mut out = Vec::with_capacity(4 + ledger_key.len() + value.len());
    out.extend_from_slice(&(ledger_key.len() as u32).to_le_bytes());
    out.extend_from_slice(ledger_key);
    out.extend_from_slice(value);
    out
}

/// Splits a stored value into (ledger key, value); `None` if malformed.
pub fn unframe(stored: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(stored.get(..4)?.try_into().ok()?) as usize;
    let key = stored.get(4..4 + len)?;
    Some((key, &stored[4 + len..]))
}

/// The tip record: height and block digest.
pub fn tip_value(height: u64, digest: &sha256::Digest) -> Vec<u8> {
    let mut v = height.to_le_bytes().to_vec();
    v.extend_from_slice(digest.as_ref());
    v
}

/// Parses a tip record.
pub fn parse_tip(value: &[u8]) -> Option<(u64, sha256::Digest)> {
    let height = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    let digest: [u8; 32] = value.get(8..40)?.try_into().ok()?;
    Some((height, sha256::Digest::from(digest)))
}

/// The root as a ledger hash (what block headers carry).
pub fn root_hash(root: &Root) -> Hash {
    crate::block::to_hash(root)
}

/// Storage configuration for the state database under partition `prefix`.
pub fn config(prefix: &str, page_cache: CacheRef) -> VariableConfig<EightCap, OpCfg, Sequential> {
    VariableConfig {
        merkle_config: MerkleConfig {
            journal_partition: format!("{prefix}-state-mmr-journal"),
            metadata_partition: format!("{prefix}-state-mmr-metadata"),
            items_per_blob: NZU64!(4096),
            write_buffer: NZUsize!(1 << 20),
            replay_buffer: NZUsize!(1 << 20),
            strategy: Sequential,
            page_cache: page_cache.clone(),
        },
        journal_config: JournalConfig {
            partition: format!("{prefix}-state-log"),
            items_per_section: NZU64!(4096),
            compression: None,
            codec_config: ((), (RangeCfg::new(0..=MAX_VALUE), ())),
            page_cache,
            write_buffer: NZUsize!(1 << 20),
            replay_buffer: NZUsize!(1 << 20),
        },
        grafted_metadata_partition: format!("{prefix}-state-grafted-metadata"),
        translator: EightCap,
        init_cache: Some(NZUsize!(4096)),
        init_buffer: NZUsize!(1 << 21),
        init_concurrency: (),
    }
}

/// Opens (or creates) the state database.
pub async fn open<E: commonware_storage::Context + Spawner>(
    context: E,
    prefix: &str,
    page_cache: CacheRef,
) -> Result<StateDb<E>, commonware_storage::qmdb::Error<mmr::Family>> {
    StateDb::init(context, config(prefix, page_cache), None).await
}

/// Decoding bounds of an [`AbsenceProof`] received from outside.
pub fn absence_proof_cfg() -> (usize, OpCfg, (RangeCfg<usize>, ())) {
    (MAX_PROOF_DIGESTS, ((), (RangeCfg::new(0..=MAX_VALUE), ())), (RangeCfg::new(0..=MAX_VALUE), ()))
}

/// A light client's check that `ledger_key` currently maps to `value` under `root`.
pub fn verify_value(root: &Root, ledger_key: &[u8], value: &[u8], proof: &ValueProof) -> bool {
    proof.verify::<Sha256, VariableEncoding<Value>>(db_key(ledger_key), frame(ledger_key, value), root)
}

/// A light client's check that `ledger_key` currently has no value under `root`.
pub fn verify_absent(root: &Root, ledger_key: &[u8], proof: &AbsenceProof) -> bool {
    proof.verify::<Sha256>(&db_key(ledger_key), root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips_and_rejects_garbage() {
        let f = frame(b"key", b"value");
        assert_eq!(unframe(&f), Some((&b"key"[..], &b"value"[..])));
        assert_eq!(unframe(&[1, 0]), None);
        assert_eq!(unframe(&[9, 0, 0, 0, 1]), None);
        let d = Sha256::hash(&[b"x"]);
        assert_eq!(parse_tip(&tip_value(42, &d)), Some((42, d)));
    }
}
