//! A typed client of a node's HTTP API, used by the CLI and by provider agents.

use crate::types::ErrorBody;
use crate::types::*;
use agora_chain::{BlockRecord, StateProof, TxStatus};
use agora_core::tx::{Transaction, TxPayload};
use agora_core::{AccountId, Amount, Hash, SecretKey, SignedTx};
use agora_ledger::ObjectKey;
use agora_ledger::jobs::Job;
use agora_ledger::leases::Lease;
use agora_store::http::outbound::Reach;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached.
    #[error(
        "cannot reach the node at {url}: {reason}. Is `agora node run` or `agora devnet` running there? (set --node URL)"
    )]
    Unreachable {
        /// Node URL.
        url: String,
        /// Transport error.
        reason: String,
    },
    /// The node answered with an error.
    #[error("the node refused the request ({status}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The node's message.
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected response from the node: {0}")]
    Protocol(String),
    /// Waiting timed out.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

/// A block's finalization as `/api/v1/blocks/{h}/finalization` serves it.
#[derive(Clone, Debug)]
pub struct Finalization {
    /// The encoded finalization certificate.
    pub certificate: Vec<u8>,
    /// The encoded consensus block it finalizes.
    pub block: Vec<u8>,
}

/// Largest answer read from a node's API (a page of objects, a block, a proof).
pub const MAX_RESPONSE: usize = 64 << 20;

/// A node API client.
#[derive(Clone, Debug)]
pub struct NodeClient {
    base: String,
    http: reqwest::Client,
}

impl NodeClient {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:7700`), with connect and read
    /// timeouts, no redirects, and answers capped at [`MAX_RESPONSE`] bytes.
    pub fn new(base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_string(), http: agora_store::http::outbound::client() }
    }

    /// The node's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, ClientError> {
        let resp =
            resp.map_err(|e| ClientError::Unreachable { url: self.base.clone(), reason: e.to_string() })?;
        let status = resp.status();
        let bytes = agora_store::http::outbound::read_capped(resp, MAX_RESPONSE)
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ClientError::Api { status: status.as_u16(), message });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("{e} in {}", String::from_utf8_lossy(&bytes))))
    }

    /// GET a JSON resource under the base URL.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await;
        self.decode(resp).await
    }

    /// POST a JSON body to a path under the base URL; the JSON answer.
    pub async fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let resp = self.http.post(format!("{}{path}", self.base)).json(body).send().await;
        self.decode(resp).await
    }

    /// Chain status.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.get("/api/v1/status").await
    }

    /// The chain's current parameters. Names this client does not know (a newer node's) are
    /// skipped; a value that is not a number is an error.
    pub async fn params(&self) -> Result<agora_ledger::Params, ClientError> {
        let list: Vec<serde_json::Value> = self.get("/api/v1/params").await?;
        let mut p = agora_ledger::Params::default();
        for item in list {
            let (Some(name), Some(value)) = (item["name"].as_str(), item["value"].as_str()) else { continue };
            let value: u128 = value.parse().map_err(|_| {
                ClientError::Protocol(format!("parameter {name} = {value:?} is not a number"))
            })?;
            let _ = p.set(name, value);
        }
        Ok(p)
    }

    /// Which addresses this chain lets its nodes dial at URLs strangers chose (registered
    /// endpoints, manifest sources): public ones only, unless `allow_private_endpoints` is set.
    pub async fn reach(&self) -> Result<Reach, ClientError> {
        Ok(Reach::for_chain(self.params().await?.allow_private_endpoints != 0))
    }

    /// Submits a signed transaction, in its canonical encoding (so the node decodes exactly
    /// what its peers will).
    pub async fn submit(&self, tx: &SignedTx) -> Result<Hash, ClientError> {
        let resp = self
            .http
            .post(format!("{}/api/v1/txs", self.base))
            .json(&serde_json::json!({ "tx_hex": hex::encode(agora_core::Encode::encode(tx)) }))
            .send()
            .await;
        Ok(self.decode::<Submitted>(resp).await?.id)
    }

    /// Submits many signed transactions; one result per transaction.
    pub async fn submit_batch(&self, txs: &[SignedTx]) -> Result<Vec<BatchResult>, ClientError> {
        let body =
            SubmitBatch { txs_hex: txs.iter().map(|t| hex::encode(agora_core::Encode::encode(t))).collect() };
        let resp = self.http.post(format!("{}/api/v1/txs/batch", self.base)).json(&body).send().await;
        self.decode(resp).await
    }

    /// Signs `payload` with `key` at the account's next nonce and submits it.
    pub async fn send(&self, key: &SecretKey, fee: Amount, payload: TxPayload) -> Result<Hash, ClientError> {
        let status = self.status().await?;
        let account = self.account(&key.public()).await?;
        let tx = Transaction { sender: key.public(), nonce: account.state.nonce, fee, payload }
            .sign(&status.chain_id, key);
        self.submit(&tx).await
    }

    /// Where a transaction is.
    pub async fn tx(&self, id: &Hash) -> Result<TxStatus, ClientError> {
        self.get(&format!("/api/v1/txs/{id}")).await
    }

    /// Waits until a transaction is finalized and returns its status.
    pub async fn wait_tx(&self, id: &Hash, timeout: Duration) -> Result<TxStatus, ClientError> {
        let start = std::time::Instant::now();
        loop {
            match self.tx(id).await? {
                s @ TxStatus::Finalized { .. } => return Ok(s),
                _ if start.elapsed() > timeout => {
                    return Err(ClientError::Timeout(timeout, format!("transaction {id}")));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// An account.
    pub async fn account(&self, id: &AccountId) -> Result<AccountView, ClientError> {
        self.get(&format!("/api/v1/accounts/{id}")).await
    }

    /// A finalized block.
    pub async fn block(&self, height: u64) -> Result<BlockRecord, ClientError> {
        self.get(&format!("/api/v1/blocks/{height}")).await
    }

    /// A finalized block's finalization certificate and the consensus-encoded block it signs
    /// (what a light client checks; see `agora_chain::light`).
    pub async fn finalization(&self, height: u64) -> Result<Finalization, ClientError> {
        let f: serde_json::Value = self.get(&format!("/api/v1/blocks/{height}/finalization")).await?;
        let field = |name: &str| {
            f[name].as_str().and_then(|h| hex::decode(h).ok()).ok_or_else(|| {
                ClientError::Protocol(format!("finalization of block {height}: {name} is missing or not hex"))
            })
        };
        Ok(Finalization { certificate: field("certificate")?, block: field("block")? })
    }

    /// A job.
    pub async fn job(&self, id: u64) -> Result<Job, ClientError> {
        self.get(&format!("/api/v1/jobs/{id}")).await
    }

    /// A lease.
    pub async fn lease(&self, id: u64) -> Result<Lease, ClientError> {
        self.get(&format!("/api/v1/leases/{id}")).await
    }

    /// A serving session with its windows.
    pub async fn session(&self, id: u64) -> Result<crate::types::SessionDetail, ClientError> {
        self.get(&format!("/api/v1/sessions/{id}")).await
    }

    /// An audit.
    pub async fn audit(&self, id: u64) -> Result<agora_ledger::audits::Audit, ClientError> {
        self.get(&format!("/api/v1/audits/{id}")).await
    }

    /// A registered provider.
    pub async fn provider(&self, id: &AccountId) -> Result<agora_ledger::registry::Provider, ClientError> {
        self.get(&format!("/api/v1/providers/{id}")).await
    }

    /// Finalized blocks from height `from` on, in order and without gaps, for as long as the
    /// node streams them (reconnect with the next height after an error).
    pub async fn follow(
        &self,
        from: u64,
    ) -> Result<impl futures::Stream<Item = Result<BlockRecord, ClientError>>, ClientError> {
        use futures::StreamExt;
        let url = format!("{}/api/v1/events?from={from}", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { url: self.base.clone(), reason: e.to_string() })?;
        if !resp.status().is_success() {
            return Err(ClientError::Api {
                status: resp.status().as_u16(),
                message: resp.text().await.unwrap_or_default(),
            });
        }
        let bytes = resp.bytes_stream();
        Ok(futures::stream::unfold((bytes, String::new()), |(mut bytes, mut buf)| async move {
            loop {
                if let Some(end) = buf.find("\n\n") {
                    let event: String = buf.drain(..end + 2).collect();
                    let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) else { continue };
                    let record = serde_json::from_str::<BlockRecord>(data.trim())
                        .map_err(|e| ClientError::Protocol(e.to_string()));
                    return Some((record, (bytes, buf)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buf.push_str(&String::from_utf8_lossy(&chunk)),
                    Some(Err(e)) => return Some((Err(ClientError::Protocol(e.to_string())), (bytes, buf))),
                    None => return None,
                }
            }
        }))
    }

    /// A state proof of a ledger object.
    pub async fn proof(&self, key: &ObjectKey) -> Result<StateProof, ClientError> {
        let (kind, id) = match key {
            ObjectKey::Account(a) => ("account", a.to_string()),
            ObjectKey::Validator(a) => ("validator", a.to_string()),
            ObjectKey::Provider(a) => ("provider", a.to_string()),
            ObjectKey::Order(i) => ("order", i.to_string()),
            ObjectKey::Job(i) => ("job", i.to_string()),
            ObjectKey::Lease(i) => ("lease", i.to_string()),
            ObjectKey::Audit(i) => ("audit", i.to_string()),
            ObjectKey::Proposal(i) => ("proposal", i.to_string()),
            ObjectKey::Session(i) => ("session", i.to_string()),
        };
        self.get(&format!("/api/v1/proofs/{kind}/{id}")).await
    }
}
