//! One account sending many transactions from several tasks: nonces are handed out locally so
//! concurrent sends never collide, and resynchronised from the chain when a transaction is
//! refused or lost.

use crate::client::{ClientError, NodeClient};
use agora_chain::executor::TxStatus;
use agora_core::tx::{Transaction, TxPayload};
use agora_core::{Amount, Hash, SecretKey};
use anyhow::bail;
use std::time::Duration;
use tokio::sync::Mutex;

/// Signs and submits transactions for one key.
pub struct TxSender {
    key: SecretKey,
    client: NodeClient,
    chain_id: Mutex<Option<String>>,
    next: Mutex<Option<u64>>,
}

impl TxSender {
    /// A sender for `key` through `client`.
    pub fn new(key: SecretKey, client: NodeClient) -> Self {
        Self { key, client, chain_id: Mutex::new(None), next: Mutex::new(None) }
    }

    /// The account.
    pub fn account(&self) -> agora_core::AccountId {
        self.key.public()
    }

    async fn chain_id(&self) -> Result<String, ClientError> {
        let mut id = self.chain_id.lock().await;
        if id.is_none() {
            *id = Some(self.client.status().await?.chain_id);
        }
        Ok(id.clone().expect("set above"))
    }

    /// Signs and submits `payload` with the next nonce; returns the transaction id.
    pub async fn submit(&self, payload: TxPayload) -> anyhow::Result<Hash> {
        let chain = self.chain_id().await?;
        for attempt in 0..2 {
            let mut next = self.next.lock().await;
            let nonce = match *next {
                Some(n) => n,
                None => self.client.account(&self.key.public()).await?.state.nonce,
            };
            let tx =
                Transaction { sender: self.key.public(), nonce, fee: Amount(10), payload: payload.clone() }
                    .sign(&chain, &self.key);
            match self.client.submit(&tx).await {
                Ok(id) => {
                    *next = Some(nonce + 1);
                    return Ok(id);
                }
                Err(ClientError::Api { status: 422, message })
                    if attempt == 0 && message.contains("nonce") =>
                {
                    // Our view of the nonce drifted (a transaction was lost or sent elsewhere).
                    *next = None;
                }
                Err(e) => return Err(e.into()),
            }
        }
        bail!("could not find a usable nonce")
    }

    /// Submits and waits until the transaction is finalized; fails if its payload was refused.
    pub async fn send(&self, payload: TxPayload, timeout: Duration) -> anyhow::Result<Hash> {
        let name = payload.name();
        let id = self.submit(payload).await?;
        match self.client.wait_tx(&id, timeout).await {
            Ok(TxStatus::Finalized { receipt, .. }) => match receipt.error {
                None => Ok(id),
                Some(e) => bail!("{name} was refused by the ledger: {e}"),
            },
            Ok(other) => bail!("{name} ended as {other:?}"),
            Err(e) => {
                // Lost (e.g. evicted): forget our nonce so the next send resynchronises.
                *self.next.lock().await = None;
                Err(e.into())
            }
        }
    }
}
