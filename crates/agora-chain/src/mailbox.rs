//! The executor's mailbox: two lanes, so consensus never waits behind clients.
//!
//! - The **consensus lane** carries propose, verify and finalized blocks. Its producers are
//!   consensus itself (one propose or verify in flight per view, finalized blocks within
//!   marshal's acknowledgement window) and marshal's reporter must never block, so it is not
//!   capped further.
//! - The **client lane** carries what clients and peers ask for: transactions (whose
//!   signatures were already checked, see [`VerifiedTx`]), pending look-ups and state proofs.
//!   It is bounded: when it is full a request is refused at once with [`ChainError::Busy`]
//!   rather than queued, so a flood costs the flooder, not memory or latency.
//!
//! The executor always serves the consensus lane first and takes one client message at a time
//! between consensus messages, so propose, verify and finalize wait for at most one client
//! message, never for a queue of them.

use crate::block::{ChainBlock, Ctx};
use crate::handle::ChainError;
use crate::mempool::{MempoolError, VerifiedTx};
use crate::records::StateProof;
use agora_core::Hash;
use commonware_consensus::marshal::Update;
use commonware_cryptography::Digested;
use futures::channel::{mpsc, oneshot};

/// Client messages the executor may hold queued before refusing more.
pub const CLIENT_LANE_CAPACITY: usize = 1024;

/// The executor's answer to [`Consensus::Propose`].
#[derive(Debug)]
pub enum Proposed {
    /// The block to propose.
    Block(Box<ChainBlock>),
    /// Nothing to include, and an empty block may not follow its parent before `due_ms`
    /// (unix ms): ask again then, or as soon as a transaction arrives.
    Idle {
        /// When an empty block may be proposed.
        due_ms: u64,
    },
    /// No block can be built on this parent: skip the slot.
    Skip,
}

/// A request from consensus.
pub enum Consensus {
    /// Build a block on `ancestry[0]` (ancestry: parent first, back to the last finalized).
    Propose {
        /// Consensus context for the new block.
        context: Ctx,
        /// Unfinalized ancestors, newest first.
        ancestry: Vec<Digested<ChainBlock>>,
        /// Proposer's clock, unix ms.
        now_ms: u64,
        /// The block, or why there is none.
        response: oneshot::Sender<Proposed>,
    },
    /// Check `ancestry[0]` (ancestry: the block first, then its unfinalized ancestors).
    Verify {
        /// Consensus context the block claims.
        context: Ctx,
        /// The block, then its unfinalized ancestors, newest first.
        ancestry: Vec<Digested<ChainBlock>>,
        /// Whether it is valid.
        response: oneshot::Sender<bool>,
    },
    /// A finalized block from marshal (acknowledge once durable).
    Finalized(Update<ChainBlock>),
}

/// A request from a client or a peer.
pub enum Client {
    /// A transaction from a client, gossiped once admitted.
    Submit {
        /// The transaction, its signature already checked (boxed: it is large).
        tx: Box<VerifiedTx>,
        /// Where to send the result.
        reply: oneshot::Sender<Result<Hash, MempoolError>>,
    },
    /// A peer's gossip batch: admitted one by one, not gossiped again, nobody waits for it.
    Gossiped {
        /// The transactions that decoded and verified.
        txs: Vec<VerifiedTx>,
    },
    /// Many transactions from a client: each is admitted or refused on its own; admitted ones
    /// are gossiped.
    SubmitBatch {
        /// The transactions, their signatures already checked.
        txs: Vec<VerifiedTx>,
        /// One result per transaction, in order.
        reply: oneshot::Sender<Vec<Result<Hash, MempoolError>>>,
    },
    /// Whether a transaction waits in the mempool.
    Pending {
        /// Transaction id.
        id: Hash,
        /// The answer.
        response: oneshot::Sender<bool>,
    },
    /// Prove a ledger key at the latest finalized height.
    Prove {
        /// Ledger key.
        key: Vec<u8>,
        /// The proof, or an error message.
        response: oneshot::Sender<Result<StateProof, String>>,
    },
}

/// The receiving ends the executor runs on.
pub struct Lanes {
    /// Consensus requests, served first.
    pub consensus: mpsc::UnboundedReceiver<Consensus>,
    /// Client requests.
    pub clients: tokio::sync::mpsc::Receiver<Client>,
}

/// A cheap handle to the executor for other tasks.
#[derive(Clone)]
pub struct ExecutorMailbox {
    consensus: mpsc::UnboundedSender<Consensus>,
    clients: tokio::sync::mpsc::Sender<Client>,
}

impl ExecutorMailbox {
    /// A mailbox whose client lane holds at most `client_capacity` messages, and the lanes
    /// the executor runs on.
    pub fn new(client_capacity: usize) -> (Self, Lanes) {
        let (consensus, consensus_rx) = mpsc::unbounded();
        let (clients, clients_rx) = tokio::sync::mpsc::channel(client_capacity.max(1));
        (Self { consensus, clients }, Lanes { consensus: consensus_rx, clients: clients_rx })
    }

    /// Sends a consensus message; false if the executor has stopped.
    pub fn consensus(&self, message: Consensus) -> bool {
        self.consensus.unbounded_send(message).is_ok()
    }

    /// Sends a consensus request and waits for its answer; `None` if the executor stopped.
    pub async fn ask_consensus<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Consensus) -> Option<T> {
        let (response, receiver) = oneshot::channel();
        if !self.consensus(make(response)) {
            return None;
        }
        receiver.await.ok()
    }

    /// Queues a client message, or refuses it at once when the lane is full.
    pub fn client(&self, message: Client) -> Result<(), ChainError> {
        self.clients.try_send(message).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => {
                ChainError::Busy("the executor's client queue")
            }
            tokio::sync::mpsc::error::TrySendError::Closed(_) => ChainError::Stopped,
        })
    }

    /// Sends a client request and waits for its answer.
    pub async fn ask_client<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Client,
    ) -> Result<T, ChainError> {
        let (response, receiver) = oneshot::channel();
        self.client(make(response))?;
        receiver.await.map_err(|_| ChainError::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_client_lane_refuses_clients_but_never_consensus() {
        let (mailbox, mut lanes) = ExecutorMailbox::new(2);
        let pending = |id: u8| {
            let (response, _) = oneshot::channel();
            Client::Pending { id: Hash([id; 32]), response }
        };
        mailbox.client(pending(1)).unwrap();
        mailbox.client(pending(2)).unwrap();
        assert!(matches!(mailbox.client(pending(3)), Err(ChainError::Busy(_))), "bounded");
        for _ in 0..10_000 {
            let (response, _) = oneshot::channel();
            let update = Consensus::Verify {
                context: ChainBlock::genesis("t", 0).context,
                ancestry: vec![],
                response,
            };
            assert!(mailbox.consensus(update), "consensus is never refused for client traffic");
        }
        assert!(lanes.clients.try_recv().is_ok());
        mailbox.client(pending(4)).expect("room again once the executor took one");
        drop(lanes);
        assert!(matches!(mailbox.client(pending(5)), Err(ChainError::Stopped)));
    }
}
