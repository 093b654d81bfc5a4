//! Request and response bodies of the HTTP API, shared by the server and the client.

use agora_core::{AccountId, Amount, Hash, SignedTx};
use agora_ledger::accounts::Account;
use agora_ledger::audits::Audit;
use agora_ledger::governance::Proposal;
use agora_ledger::jobs::Job;
use agora_ledger::leases::Lease;
use agora_ledger::market::{ClassStats, Order};
use agora_ledger::registry::Provider;
use agora_ledger::staking::Validator;
use serde::{Deserialize, Serialize};

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and, where possible, how to fix it.
    pub error: String,
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// Chain id.
    pub chain_id: String,
    /// Node name.
    pub node: String,
    /// Roles this node runs.
    pub roles: Vec<String>,
    /// Last finalized height.
    pub height: u64,
    /// Its digest.
    pub digest: Hash,
    /// Its timestamp (unix ms).
    pub timestamp_ms: u64,
    /// State root after it.
    pub state_root: Hash,
    /// Current epoch.
    pub epoch: u64,
    /// Consensus committee.
    pub committee: Vec<AccountId>,
    /// Pending transactions in this node's mempool.
    pub mempool_txs: usize,
    /// Where every unit of the currency is (conservation: minted − burned = the rest).
    pub supply: agora_ledger::Supply,
}

/// `POST /api/v1/txs`: a signed transaction as JSON, or its canonical encoding as hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SubmitTx {
    /// Canonical encoding, hex.
    Hex {
        /// The bytes.
        tx_hex: String,
    },
    /// JSON form.
    Json {
        /// The transaction.
        tx: Box<SignedTx>,
    },
}

/// `POST /api/v1/txs/batch`: canonical encodings, hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitBatch {
    /// Transactions (at most 1,000).
    pub txs_hex: Vec<String>,
}

/// One transaction's fate in a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchResult {
    /// Its id, when admitted.
    pub id: Option<Hash>,
    /// Why it was refused, when it was.
    pub error: Option<String>,
}

/// Response of `POST /api/v1/txs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submitted {
    /// Transaction id.
    pub id: Hash,
}

/// `GET /api/v1/accounts/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountView {
    /// Account id.
    pub account: AccountId,
    /// Height the view is from.
    pub height: u64,
    /// Balance and nonce.
    pub state: Account,
    /// Validator stake, if any.
    pub validator: Option<Validator>,
    /// Provider registration, if any.
    pub provider: Option<Provider>,
}

/// An object with its id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry<K, V> {
    /// Id.
    pub id: K,
    /// Object.
    #[serde(flatten)]
    pub value: V,
}

/// `GET /api/v1/validators`.
pub type ValidatorList = Vec<Entry<AccountId, Validator>>;
/// `GET /api/v1/providers`.
pub type ProviderList = Vec<Entry<AccountId, Provider>>;
/// `GET /api/v1/orders`.
pub type OrderList = Vec<Entry<u64, Order>>;
/// `GET /api/v1/jobs`.
pub type JobList = Vec<Entry<u64, Job>>;
/// `GET /api/v1/leases`.
pub type LeaseList = Vec<Entry<u64, Lease>>;
/// `GET /api/v1/audits`.
pub type AuditList = Vec<Entry<u64, Audit>>;
/// `GET /api/v1/proposals`.
pub type ProposalList = Vec<Entry<u64, Proposal>>;
/// `GET /api/v1/sessions`.
pub type SessionList = Vec<Entry<u64, agora_ledger::sessions::Session>>;

/// `GET /api/v1/sessions/{id}`: a serving session with its providers' windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionDetail {
    /// Session id.
    pub id: u64,
    /// The session.
    pub session: agora_ledger::sessions::Session,
    /// Its providers' committed windows (the newest [`MAX_SESSION_WINDOWS`] per provider), by
    /// provider then first receipt.
    pub windows: Vec<WindowEntry>,
}

impl SessionDetail {
    /// The commitment of `provider`'s window starting at receipt `first_seq`, if listed.
    pub fn window(
        &self,
        provider: &AccountId,
        first_seq: u64,
    ) -> Option<&agora_core::session::WindowCommitment> {
        self.windows
            .iter()
            .find(|w| w.provider == *provider && w.first_seq == first_seq)
            .map(|w| &w.window.commitment)
    }
}

/// Most windows per provider `GET /api/v1/sessions/{id}` lists.
pub const MAX_SESSION_WINDOWS: usize = 256;

/// One committed window of a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowEntry {
    /// Its provider.
    pub provider: AccountId,
    /// `seq` of its first receipt.
    pub first_seq: u64,
    /// The window.
    #[serde(flatten)]
    pub window: agora_ledger::sessions::Window,
}

/// `GET /api/v1/market`: per-class statistics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarketClass {
    /// Class name.
    pub class: String,
    /// History.
    #[serde(flatten)]
    pub stats: ClassStats,
    /// Open asks (device-seconds offered).
    pub offered: u64,
    /// Open bids (device-seconds wanted).
    pub wanted: u64,
    /// Lowest open ask price.
    pub best_ask: Option<Amount>,
    /// Highest open bid price.
    pub best_bid: Option<Amount>,
}

/// A finalized block's headline, as streamed on `/api/v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockSummary {
    /// Height.
    pub height: u64,
    /// Digest.
    pub digest: Hash,
    /// Timestamp, unix ms.
    pub timestamp_ms: u64,
    /// Proposer.
    pub proposer: AccountId,
    /// Transactions.
    pub txs: usize,
}
