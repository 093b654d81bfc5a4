//! The off-chain conventions between requesters, providers and auditors: how shard inputs and
//! outputs are framed and encrypted, how keys travel, and what the audit-item endpoint returns.
//! Everything here is checked against on-chain commitments, so a party that deviates is
//! detected, not trusted.
//!
//! * **Inputs.** A shard's input items are framed ([`agora_store::items::frame`]); the blob is
//!   encrypted with a fresh random key when the job is encrypted. The manifest's `input` is the
//!   blob's hash and `items_root` the Merkle root over the *plaintext* items. After matching,
//!   the requester posts the key sealed to the provider (`ShareKey`).
//! * **Outputs.** The provider frames its output items; for encrypted jobs it encrypts the blob
//!   with [`output_key`] (agreed between provider and requester, bound to the lease), stores it,
//!   and commits the Merkle root over the plaintext output items and the blob's hash.
//! * **Audits.** An assigned auditor asks the provider for sampled items; the provider returns
//!   them in plaintext with Merkle proofs against `items_root` (inputs) and the commitment root
//!   (outputs). The auditor checks both proofs before recomputing anything.

use agora_core::merkle::{MerkleProof, MerkleTree, leaf_hash};
use agora_core::tx::LeaseId;
use agora_core::{Hash, PublicKey, SecretKey};
use agora_store::encrypt::{self, BlobKey};
use agora_store::items::{Items, frame};
use agora_store::seal::{self, agreed_key};
use serde::{Deserialize, Serialize};

/// Why protocol data was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Framing or parsing items failed.
    #[error("items: {0}")]
    Items(#[from] agora_store::items::ItemsError),
    /// Encryption or decryption failed.
    #[error("encryption: {0}")]
    Crypto(#[from] agora_store::encrypt::CryptoError),
    /// A key could not be sealed, opened or agreed.
    #[error("key exchange: {0}")]
    Seal(#[from] agora_store::seal::SealError),
    /// Data does not match its commitment.
    #[error("{0}")]
    Mismatch(String),
}

/// A shard's input or output blob, ready to upload.
pub struct EncodedShard {
    /// Bytes to store (ciphertext when a key was given).
    pub blob: Vec<u8>,
    /// The blob's content hash.
    pub hash: Hash,
    /// Merkle root over the plaintext items.
    pub items_root: Hash,
    /// Number of items.
    pub count: u32,
}

/// Frames `items` and encrypts them with `key` if given.
pub fn encode_shard<I: AsRef<[u8]>>(
    items: &[I],
    key: Option<&BlobKey>,
) -> Result<EncodedShard, ProtocolError> {
    let framed = frame(items)?;
    let blob = match key {
        Some(k) => encrypt::encrypt(k, &framed)?,
        None => framed,
    };
    Ok(EncodedShard {
        hash: Hash::of(&blob),
        items_root: MerkleTree::from_items(items).root(),
        count: items.len() as u32,
        blob,
    })
}

/// Largest output blob an auditor downloads to check, and a requester to read (larger is the
/// provider's fault: no requester could fetch it either within reason).
pub const MAX_OUTPUT_BLOB: u64 = 1 << 30;

/// Decrypts (if `key`) and parses a shard blob, checking the items against `items_root`.
fn decode_shard(
    blob: &[u8],
    key: Option<&BlobKey>,
    items_root: &Hash,
) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let plain;
    let framed = match key {
        Some(k) => {
            plain = encrypt::decrypt(k, blob)?;
            &plain[..]
        }
        None => blob,
    };
    let items: Vec<Vec<u8>> = Items::parse(framed)?.iter().map(<[u8]>::to_vec).collect();
    let root = MerkleTree::from_items(&items).root();
    if root != *items_root {
        return Err(ProtocolError::Mismatch(format!(
            "items hash to root {root}, the commitment says {items_root}"
        )));
    }
    Ok(items)
}

/// [`decode_shard`], also checking that the blob holds exactly `count` items (the count a
/// manifest or a commitment states beside the root).
pub fn decode_committed(
    blob: &[u8],
    key: Option<&BlobKey>,
    items_root: &Hash,
    count: u32,
) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let items = decode_shard(blob, key, items_root)?;
    if items.len() != count as usize {
        return Err(ProtocolError::Mismatch(format!(
            "the blob holds {} items, the commitment says {count}",
            items.len()
        )));
    }
    Ok(items)
}

/// The key-derivation context of lease `lease`'s output key.
fn output_context(lease: LeaseId) -> Vec<u8> {
    let mut context = b"agora/lease-output".to_vec();
    context.extend_from_slice(&lease.to_le_bytes());
    context
}

/// The key a lease's outputs are encrypted with: agreed between the provider and the job's
/// output key (`JobManifest::output_recipient`: a per-job key of the requester's).
pub fn output_key(me: &SecretKey, peer: &PublicKey, lease: LeaseId) -> Result<BlobKey, ProtocolError> {
    Ok(agreed_key(me, peer, &output_context(lease))?)
}

/// The proven disclosure, by the holder of the job's output key, of the secret lease `lease`'s
/// output key is derived from, for a dispute of the delivered outputs (`DisputeOutputs`).
pub fn disclose_output_key(
    requester: &SecretKey,
    provider: &PublicKey,
    lease: LeaseId,
) -> Result<agora_core::disclosure::KeyDisclosure, ProtocolError> {
    Ok(seal::disclose_agreed(requester, provider, &agora_core::disclosure::output_key_context(lease))?)
}

/// Lease `lease`'s output key, from the output key holder's disclosure
/// ([`disclose_output_key`]); `requester` is the job's output key.
pub fn open_disclosed_output_key(
    requester: &PublicKey,
    provider: &PublicKey,
    disclosure: &agora_core::disclosure::KeyDisclosure,
    lease: LeaseId,
) -> Result<BlobKey, seal::SealError> {
    let disclosed_for = agora_core::disclosure::output_key_context(lease);
    seal::agreed_key_disclosed(requester, provider, disclosure, &disclosed_for, &output_context(lease))
}

/// Seals a shard's input key to the provider assigned to it.
pub fn seal_input_key(key: &BlobKey, provider: &PublicKey) -> Result<Vec<u8>, ProtocolError> {
    Ok(seal::seal_key(key, provider)?)
}

/// Opens an input key sealed to this account.
pub fn open_input_key(sealed: &[u8], me: &SecretKey) -> Result<BlobKey, ProtocolError> {
    Ok(seal::open_key(sealed, me)?)
}

/// The provider's proven disclosure of the input key sealed to it for `lease`, which lets
/// auditors open its inputs as it did ([`open_disclosed_input_key`]).
pub fn disclose_input_key(
    sealed: &[u8],
    me: &SecretKey,
    lease: LeaseId,
) -> Result<agora_core::disclosure::KeyDisclosure, ProtocolError> {
    Ok(seal::disclose(sealed, me, &agora_core::disclosure::input_key_context(lease))?)
}

/// Opens the input key sealed to `provider` for `lease` with the provider's disclosure: the
/// key the provider itself opened, or why not ([`seal::SealError::WrongKey`] when the key the
/// requester sealed does not open at all).
pub fn open_disclosed_input_key(
    sealed: &[u8],
    provider: &PublicKey,
    disclosure: &agora_core::disclosure::KeyDisclosure,
    lease: LeaseId,
) -> Result<BlobKey, seal::SealError> {
    seal::open_disclosed(sealed, provider, disclosure, &agora_core::disclosure::input_key_context(lease))
}

/// The runtime's view of a lease's task: identity, parameters and model. Providers and
/// auditors build it alike, so per-item seeds agree; a shard re-matched to another provider
/// keeps the same task (the job and shard, not the lease, name it).
pub fn task_context(
    job: u64,
    shard: u32,
    manifest: &agora_core::JobManifest,
    class: &agora_core::ResourceClass,
) -> agora_runtime::executor::TaskContext {
    agora_runtime::executor::TaskContext {
        job: Hash::tagged("agora/job-id", &[&job.to_le_bytes()]),
        shard,
        model: manifest.model,
        params: manifest.params.clone(),
        power: agora_runtime::metering::PowerModel::for_device(class.kind),
        device_seconds: manifest.shards.get(shard as usize).map(|s| s.quantity),
    }
}

/// The message an auditor signs to fetch an audit's items from the provider.
pub fn audit_request_message(audit: u64) -> Vec<u8> {
    let mut m = b"agora/audit-items/v1".to_vec();
    m.extend_from_slice(&audit.to_le_bytes());
    m
}

/// Header carrying the auditor's account id.
pub const AUDITOR_HEADER: &str = "x-agora-auditor";
/// Header carrying the auditor's signature over [`audit_request_message`].
pub const SIGNATURE_HEADER: &str = "x-agora-signature";

/// One item with its proof, as served to auditors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvenItem {
    /// Item index.
    pub index: u32,
    /// The plaintext item, hex.
    pub bytes: String,
    /// Proof against the relevant root.
    pub proof: MerkleProof,
}

impl ProvenItem {
    /// Builds the proof of item `index` of `items`.
    pub fn new(tree: &MerkleTree, items: &[Vec<u8>], index: u32) -> Option<Self> {
        let item = items.get(index as usize)?;
        Some(Self { index, bytes: hex::encode(item), proof: tree.proof(index as usize)? })
    }

    /// The item, after checking its proof against `root`, a tree of `count` items (the
    /// shard's or the commitment's count: the root binds it, and so does this check).
    pub fn verified(&self, root: &Hash, count: u32) -> Result<Vec<u8>, ProtocolError> {
        let bytes = hex::decode(&self.bytes)
            .map_err(|e| ProtocolError::Mismatch(format!("item {} is not hex: {e}", self.index)))?;
        if self.proof.count != u64::from(count) {
            return Err(ProtocolError::Mismatch(format!(
                "item {}'s proof is for a tree of {} items, not {count}",
                self.index, self.proof.count
            )));
        }
        if self.proof.index != u64::from(self.index) || !self.proof.verify(root, leaf_hash(&bytes)) {
            return Err(ProtocolError::Mismatch(format!(
                "item {} does not match its commitment {root}",
                self.index
            )));
        }
        Ok(bytes)
    }
}

/// What `GET /agent/audit/{audit}` returns: the items an auditor needs, each with a proof.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditItems {
    /// The audit.
    pub audit: u64,
    /// Input items (against the shard's `items_root`).
    pub inputs: Vec<ProvenItem>,
    /// Claimed output items (against the commitment root).
    pub outputs: Vec<ProvenItem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_round_trip_encrypted_and_plain() {
        let items: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; i as usize + 1]).collect();
        let key = BlobKey::generate();
        let enc = encode_shard(&items, Some(&key)).unwrap();
        assert_eq!(decode_shard(&enc.blob, Some(&key), &enc.items_root).unwrap(), items);
        assert!(decode_shard(&enc.blob, Some(&BlobKey::generate()), &enc.items_root).is_err());
        let plain = encode_shard(&items, None).unwrap();
        assert_eq!(plain.items_root, enc.items_root, "the root is over plaintext items");
        assert!(decode_shard(&plain.blob, None, &Hash::ZERO).is_err());
    }

    #[test]
    fn proven_items_verify_and_forgeries_fail() {
        let items: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i]).collect();
        let tree = MerkleTree::from_items(&items);
        let p = ProvenItem::new(&tree, &items, 3).unwrap();
        assert_eq!(p.verified(&tree.root(), 7).unwrap(), vec![3]);
        assert!(p.verified(&tree.root(), 8).unwrap_err().to_string().contains("not 8"));
        let mut forged = p.clone();
        forged.bytes = hex::encode([9u8]);
        assert!(forged.verified(&tree.root(), 7).is_err());
        let mut moved = p;
        moved.index = 4;
        assert!(moved.verified(&tree.root(), 7).is_err());
    }

    #[test]
    fn a_tail_item_cannot_answer_for_another_index() {
        // Review F6: the provider serves item 2 of [a, b, c] as index 1 of a two-item tree,
        // whose only sibling is node(a, b): the path item 2 really has.
        let items = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        let tree = MerkleTree::from_items(&items);
        let real = tree.proof(2).unwrap();
        let fake = ProvenItem {
            index: 1,
            bytes: hex::encode(b"c"),
            proof: MerkleProof { index: 1, count: 2, siblings: real.siblings },
        };
        assert!(fake.verified(&tree.root(), 3).is_err());
        let lying = MerkleProof { count: 3, ..fake.proof.clone() };
        assert!(ProvenItem { proof: lying, ..fake }.verified(&tree.root(), 3).is_err());
    }

    #[test]
    fn output_keys_agree() {
        let (p, r) = (SecretKey::from_label("p"), SecretKey::from_label("r"));
        assert_eq!(output_key(&p, &r.public(), 9).unwrap(), output_key(&r, &p.public(), 9).unwrap());
        // And the requester's disclosure gives auditors the same key, for that lease only.
        let d = disclose_output_key(&r, &p.public(), 9).unwrap();
        let opened = open_disclosed_output_key(&r.public(), &p.public(), &d, 9).unwrap();
        assert_eq!(opened, output_key(&p, &r.public(), 9).unwrap());
        assert!(open_disclosed_output_key(&r.public(), &p.public(), &d, 10).is_err());
    }
}
