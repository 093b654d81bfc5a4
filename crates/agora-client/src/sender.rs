//! One account sending many transactions from several tasks: nonces are handed out locally so
//! concurrent sends never collide, and resynchronised from the chain when a transaction is
//! refused or lost.

use crate::client::{ClientError, NodeClient};
use agora_chain::TxStatus;
use agora_core::tx::{Transaction, TxPayload};
use agora_core::{Amount, Encode as _, Hash, SecretKey};
use anyhow::bail;
use std::time::Duration;
use tokio::sync::Mutex;

/// Signs and submits transactions for one key.
pub struct TxSender {
    key: SecretKey,
    client: NodeClient,
    chain: Mutex<Option<ChainTerms>>,
    next: Mutex<Option<u64>>,
}

/// What signing needs from the chain: its id and the fee schedule.
#[derive(Clone)]
struct ChainTerms {
    chain_id: String,
    min_fee: u128,
    fee_per_byte: u128,
}

impl ChainTerms {
    /// The least fee for a transaction of `size` encoded bytes (as the ledger computes it).
    fn fee(&self, size: usize) -> Amount {
        Amount(self.min_fee.saturating_add(self.fee_per_byte.saturating_mul(size as u128)))
    }
}

impl TxSender {
    /// A sender for `key` through `client`.
    pub fn new(key: SecretKey, client: NodeClient) -> Self {
        Self { key, client, chain: Mutex::new(None), next: Mutex::new(None) }
    }

    /// The signing key (also what opens outputs encrypted to this account).
    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// The account.
    pub fn account(&self) -> agora_core::AccountId {
        self.key.public()
    }

    async fn terms(&self) -> anyhow::Result<ChainTerms> {
        let mut terms = self.chain.lock().await;
        if terms.is_none() {
            let chain_id = self.client.status().await?.chain_id;
            let params: Vec<serde_json::Value> = self.client.get("/api/v1/params").await?;
            let param = |name: &str| -> anyhow::Result<u128> {
                params
                    .iter()
                    .find(|p| p["name"] == name)
                    .and_then(|p| p["value"].as_str()?.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("the node's /api/v1/params lacks {name}"))
            };
            *terms = Some(ChainTerms {
                chain_id,
                min_fee: param("min_fee")?,
                fee_per_byte: param("fee_per_byte")?,
            });
        }
        Ok(terms.clone().expect("set above"))
    }

    /// Signs `payload` with `nonce`, paying the least fee the chain accepts.
    fn sign(&self, terms: &ChainTerms, nonce: u64, payload: &TxPayload) -> agora_core::SignedTx {
        let tx = |fee| Transaction { sender: self.key.public(), nonce, fee, payload: payload.clone() };
        // The fee's own encoding is part of the size; a bound on it keeps this one pass.
        let size = tx(Amount(u128::MAX)).sign(&terms.chain_id, &self.key).encode().len();
        tx(terms.fee(size)).sign(&terms.chain_id, &self.key)
    }

    /// Signs and submits `payload` with the next nonce; returns the transaction id.
    pub async fn submit(&self, payload: TxPayload) -> anyhow::Result<Hash> {
        for attempt in 0..2 {
            let terms = self.terms().await?;
            let mut next = self.next.lock().await;
            let nonce = match *next {
                Some(n) => n,
                None => self.client.account(&self.key.public()).await?.state.nonce,
            };
            let tx = self.sign(&terms, nonce, &payload);
            match self.client.submit(&tx).await {
                Ok(id) => {
                    *next = Some(nonce + 1);
                    return Ok(id);
                }
                Err(ClientError::Api { status: 422, message })
                    if attempt == 0 && (message.contains("nonce") || message.contains("fee")) =>
                {
                    // Our view drifted: a transaction was lost or sent elsewhere, or governance
                    // changed the fee schedule.
                    *next = None;
                    *self.chain.lock().await = None;
                }
                Err(e) => return Err(e.into()),
            }
        }
        bail!("could not find a usable nonce and fee")
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
