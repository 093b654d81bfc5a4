//! Client access to a running chain: submit transactions, read the finalized state, follow
//! finalized blocks, look up blocks and transactions, and get state proofs.

use crate::executor::Shared;
use crate::mailbox::{Client, ExecutorMailbox};
use crate::mempool::{MempoolError, VerifiedTx};
use crate::records::{BlockRecord, Published, Snapshot, StateProof, TxStatus};
use crate::validator::Marshal;
use agora_core::Hash;
use commonware_codec::Encode;
use commonware_consensus::types::Height;
use std::sync::Arc;

/// Why a request could not be answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainError {
    /// The node is shutting down.
    #[error("the chain is not running (node shutting down?)")]
    Stopped,
    /// A bounded queue is full: the node refuses more work of this kind for now.
    #[error("the node is busy ({0} is full); retry shortly")]
    Busy(&'static str),
    /// The mempool refused a transaction.
    #[error("{0}")]
    Rejected(#[from] MempoolError),
    /// A proof could not be produced.
    #[error("cannot prove key: {0}")]
    Proof(String),
}

/// A cheap, cloneable handle to the chain. Reads are served from the published snapshot and
/// the block index; only submissions, pending look-ups and proofs reach the executor, on its
/// bounded client lane.
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

    /// The chain id transactions must be signed for.
    pub fn chain_id(&self) -> String {
        self.shared.snapshot().state.meta().chain_id.clone()
    }

    /// Submits a transaction whose signature was checked to this node's mempool (and gossips it
    /// to the other validators).
    pub async fn submit(&self, tx: VerifiedTx) -> Result<Hash, ChainError> {
        self.executor
            .ask_client(|reply| Client::Submit { tx: Box::new(tx), reply })
            .await?
            .map_err(Into::into)
    }

    /// Submits many checked transactions at once; one result per transaction, in order.
    pub async fn submit_batch(
        &self,
        txs: Vec<VerifiedTx>,
    ) -> Result<Vec<Result<Hash, MempoolError>>, ChainError> {
        self.executor.ask_client(|reply| Client::SubmitBatch { txs, reply }).await
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
        self.shared.index().block(height).await
    }

    /// A finalized block's record as JSON, exactly as stored (cheaper than [`Self::block`] for
    /// callers that pass it on).
    pub async fn block_json(&self, height: u64) -> Result<Option<String>, ChainError> {
        self.shared.index().block_json(height).await
    }

    /// Where a transaction is.
    pub async fn tx(&self, id: Hash) -> Result<TxStatus, ChainError> {
        if self.executor.ask_client(|response| Client::Pending { id, response }).await? {
            return Ok(TxStatus::Pending);
        }
        let Some((height, index)) = self.shared.index().tx_location(id).await? else {
            return Ok(TxStatus::Unknown);
        };
        let receipt = self.block(height).await?.and_then(|r| r.receipts.get(index as usize).cloned());
        Ok(match receipt {
            Some(receipt) => TxStatus::Finalized { height, index, receipt },
            None => TxStatus::Unknown,
        })
    }

    /// A proof of a ledger key's current value (or absence) at the finalized height.
    pub async fn prove(&self, key: Vec<u8>) -> Result<StateProof, ChainError> {
        self.executor.ask_client(|response| Client::Prove { key, response }).await?.map_err(ChainError::Proof)
    }

    /// Mempool size: (transactions, bytes), as published by the executor.
    pub fn mempool_size(&self) -> (usize, usize) {
        self.shared.mempool_size()
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
