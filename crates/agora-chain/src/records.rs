//! What readers of the chain get: finalized block records, the finalized snapshot, where a
//! transaction is, and state proofs. These are plain data, produced by the executor and the
//! block index and served to the API without touching consensus.

use crate::block::to_digest;
use crate::state_db;
use agora_core::{Block as LedgerBlock, Hash};
use agora_ledger::{Event, Receipt, State};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the index stores per finalized block, and what subscribers receive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockRecord {
    /// Consensus digest of the block.
    pub digest: Hash,
    /// The ledger block.
    pub block: LedgerBlock,
    /// Authenticated state root after this block (it appears in the next header).
    pub state_root: Hash,
    /// One receipt per transaction.
    pub receipts: Vec<Receipt>,
    /// Events not caused by a transaction (timers, clearing, evidence).
    pub events: Vec<Event>,
    /// Global sequence number of the block's first transaction.
    pub first_tx_seq: u64,
}

impl BlockRecord {
    /// Every event of the block in order: transaction events first, then block events.
    pub fn all_events(&self) -> impl Iterator<Item = &Event> {
        self.receipts.iter().flat_map(|r| r.events.iter()).chain(self.events.iter())
    }
}

/// The finalized state as readers see it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Height of the last finalized block.
    pub height: u64,
    /// Its digest.
    pub digest: Hash,
    /// Its timestamp.
    pub timestamp_ms: u64,
    /// Authenticated root after it.
    pub root: Hash,
    /// The ledger state after it.
    pub state: State,
}

/// Where a transaction is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum TxStatus {
    /// Waiting in this node's mempool.
    Pending,
    /// In a finalized block.
    Finalized {
        /// Block height.
        height: u64,
        /// Position in the block.
        index: u32,
        /// Its receipt.
        receipt: Receipt,
    },
    /// Not known to this node.
    Unknown,
}

/// A state proof: the current value (or absence) of a ledger key at a finalized height. The
/// root is the state after block `height`; it appears as `state_root` in block `height + 1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateProof {
    /// Height the proof is for.
    pub height: u64,
    /// Root it verifies against.
    pub root: Hash,
    /// The ledger key (hex in JSON).
    #[serde(with = "hex_bytes")]
    pub key: Vec<u8>,
    /// The value, if present.
    #[serde(with = "opt_hex_bytes")]
    pub value: Option<Vec<u8>>,
    /// Encoded QMDB proof (a value proof if `value` is set, else an absence proof).
    #[serde(with = "hex_bytes")]
    pub proof: Vec<u8>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod opt_hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| hex::decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl StateProof {
    /// Verifies the proof against `root` (taken from a finalized header by the caller).
    pub fn verify(&self, root: &Hash) -> bool {
        use commonware_codec::Decode as _;
        let r = to_digest(root);
        let bytes = bytes::Bytes::copy_from_slice(&self.proof);
        if self.root != *root {
            return false;
        }
        match &self.value {
            Some(v) => state_db::ValueProof::decode_cfg(bytes.clone(), &(state_db::MAX_PROOF_DIGESTS, ()))
                .is_ok_and(|p| state_db::verify_value(&r, &self.key, v, &p)),
            None => state_db::AbsenceProof::decode_cfg(bytes, &state_db::absence_proof_cfg())
                .is_ok_and(|p| state_db::verify_absent(&r, &self.key, &p)),
        }
    }
}

/// A finalized block as subscribers receive it: the record, and the JSON the index stored for
/// it, so event streams send it without encoding it again.
#[derive(Debug)]
pub struct Published {
    /// The block, its receipts and events.
    pub record: BlockRecord,
    /// `record` as JSON (one line).
    pub json: Arc<str>,
}
