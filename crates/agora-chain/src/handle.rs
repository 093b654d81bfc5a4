//! Client access to a running chain: submit transactions, read the finalized state, follow
//! finalized blocks, look up blocks and transactions, and get state proofs.

use crate::executor::{
    BlockRecord, ExecutorMailbox, Message, Published, Shared, Snapshot, StateProof, TxStatus,
};
use crate::mempool::MempoolError;
use crate::validator::Marshal;
use agora_core::{Hash, SignedTx};
use commonware_codec::Encode;
use commonware_consensus::types::Height;
use std::sync::Arc;

/// Why a request could not be answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainError {
    /// The node is shutting down.
    #[error("the chain is not running (node shutting down?)")]
    Stopped,
    /// The mempool refused a transaction.
    #[error("{0}")]
    Rejected(#[from] MempoolError),
    /// A proof could not be produced.
    #[error("cannot prove key: {0}")]
    Proof(String),
}

/// A cheap, cloneable handle to the chain.
#[derive(Clone)]
pub struct ChainHandle {
    executor: ExecutorMailbox,
    shared: Shared,
    marshal: Marshal,
}

impl ChainHandle {
    /// Wraps the executor, its shared view and marshal.
    pub fn new(executor: ExecutorMailbox, shared: Shared, marshal: Marshal) -> Self {
        Self { executor, shared, marshal }
    }

    /// Submits a transaction to this node's mempool (and gossips it to the other validators).
    pub async fn submit(&self, tx: SignedTx) -> Result<Hash, ChainError> {
        self.executor
            .ask(|reply| Message::Submit { tx, reply: Some(reply) })
            .await
            .ok_or(ChainError::Stopped)?
            .map_err(Into::into)
    }

    /// Submits many transactions at once; one result per transaction, in order.
    pub async fn submit_batch(
        &self,
        txs: Vec<SignedTx>,
    ) -> Result<Vec<Result<Hash, MempoolError>>, ChainError> {
        self.executor.ask(|reply| Message::SubmitBatch { txs, reply }).await.ok_or(ChainError::Stopped)
    }

    /// The latest finalized snapshot (state, height, root).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot()
    }

    /// Finalized blocks as they are applied.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Published>> {
        self.shared.subscribe()
    }

    /// A finalized block with its receipts and events.
    pub async fn block(&self, height: u64) -> Result<Option<BlockRecord>, ChainError> {
        self.executor.ask(|response| Message::Block { height, response }).await.ok_or(ChainError::Stopped)
    }

    /// A finalized block's record as JSON, exactly as stored (cheaper than [`Self::block`] for
    /// callers that pass it on).
    pub async fn block_json(&self, height: u64) -> Result<Option<String>, ChainError> {
        self.executor.ask(|response| Message::BlockJson { height, response }).await.ok_or(ChainError::Stopped)
    }

    /// Where a transaction is.
    pub async fn tx(&self, id: Hash) -> Result<TxStatus, ChainError> {
        self.executor.ask(|response| Message::Tx { id, response }).await.ok_or(ChainError::Stopped)
    }

    /// A proof of a ledger key's current value (or absence) at the finalized height.
    pub async fn prove(&self, key: Vec<u8>) -> Result<StateProof, ChainError> {
        self.executor
            .ask(|response| Message::Prove { key, response })
            .await
            .ok_or(ChainError::Stopped)?
            .map_err(ChainError::Proof)
    }

    /// Mempool size: (transactions, bytes).
    pub async fn mempool_size(&self) -> Result<(usize, usize), ChainError> {
        self.executor.ask(|response| Message::MempoolSize { response }).await.ok_or(ChainError::Stopped)
    }

    /// The encoded finalization certificate of a block (2f+1 validator signatures), for light
    /// clients to check a header independently.
    pub async fn finalization(&self, height: u64) -> Option<Vec<u8>> {
        self.marshal.get_finalization(Height::new(height)).await.map(|f| f.encode().to_vec())
    }

    /// A finalized block as consensus encoded it (context, ledger block, next committee): what
    /// its finalization certificate signs, so a light client can check both together.
    pub async fn consensus_block(&self, height: u64) -> Option<Vec<u8>> {
        self.marshal.get_block(Height::new(height)).await.map(|b| b.inner().encode().to_vec())
    }
}
