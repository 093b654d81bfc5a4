//! Node configuration (`node.toml`), key files and genesis files.
//!
//! Relative paths in a config file are resolved against the file's directory, so a devnet
//! directory can be moved as a whole.

use agora_core::{Amount, PublicKey};
use agora_ledger::Genesis;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use agora_client::keyfile::{load_key, write_key, write_secret};
pub use agora_gateway::config::{GatewaySection, GatewaySessionSection};

/// Default API address.
pub const DEFAULT_API: &str = "127.0.0.1:7700";

/// A validator peer: its consensus key and p2p address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Consensus public key (= ledger account).
    pub key: PublicKey,
    /// Where it listens for p2p connections.
    pub address: SocketAddr,
}

/// Settings of the consensus role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorSection {
    /// p2p listen address.
    pub p2p_listen: SocketAddr,
    /// The committee's addresses (this node included).
    pub peers: Vec<Peer>,
    /// Most transactions per block.
    #[serde(default = "default_block_txs")]
    pub max_block_txs: usize,
    /// p2p settings profile.
    #[serde(default)]
    pub network: NetworkProfile,
    /// Least time, ms, between an empty block and its parent: an idle chain grows by one block
    /// per interval, and a transaction ends the wait at once. Below the 1,000 ms leader timeout.
    #[serde(default = "default_empty_block_interval_ms")]
    pub empty_block_interval_ms: u64,
}

pub(crate) fn default_empty_block_interval_ms() -> u64 {
    agora_chain::EMPTY_BLOCK_INTERVAL.as_millis() as u64
}

impl ValidatorSection {
    /// Consensus timing: the defaults, with this section's empty-block interval.
    pub fn timing(&self) -> anyhow::Result<agora_chain::Timing> {
        let timing = agora_chain::Timing {
            empty_block_interval: std::time::Duration::from_millis(self.empty_block_interval_ms),
            ..Default::default()
        };
        if timing.empty_block_interval >= timing.leader_timeout {
            bail!(
                "[validator] empty_block_interval_ms = {} must be below the leader timeout of {} ms, or peers skip the proposer",
                self.empty_block_interval_ms,
                timing.leader_timeout.as_millis()
            );
        }
        Ok(timing)
    }
}

/// Which p2p settings a validator uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkProfile {
    /// Commonware's recommended settings for production: private and loopback peer addresses
    /// refused, one handshake per IP per 5 s, long block durations for misbehaving peers.
    #[default]
    Public,
    /// Settings for a network on one machine or a LAN (devnets): private addresses allowed,
    /// frequent handshakes and dials. Commonware documents them as not for production.
    Local,
}

fn default_block_txs() -> usize {
    5_000
}

/// Settings of the provider role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSection {
    /// Chain API to follow and submit to (a validator's API; defaults to this node's own
    /// API when it is a validator).
    #[serde(default)]
    pub upstream: Option<String>,
    /// Collateral to lock when registering.
    pub collateral: Amount,
    /// `fixed:<price>` or `auto[:<floor>]`.
    pub price: String,
    /// Region name.
    #[serde(default = "default_region")]
    pub region: String,
    /// Declared grid carbon intensity, gCO2e/kWh.
    #[serde(default = "default_carbon")]
    pub carbon_g_per_kwh: u32,
    /// Device-seconds offered per ask.
    #[serde(default = "default_capacity")]
    pub capacity: u64,
    /// Test hook for demos: return wrong outputs for this share of items (bps). Never set
    /// this on a real provider: it will be caught and slashed.
    #[serde(default)]
    pub cheat_bps: u32,
    /// With `cheat_bps`: corrupt at least one item of every lease (a cheater that always saves
    /// work), instead of drawing each item independently.
    #[serde(default)]
    pub cheat_every_lease: bool,
    /// Test hook for demos: commit an encrypted job's true outputs but store their blob
    /// encrypted under a key the requester cannot derive (only the requester's delivery check
    /// can tell). Never set this on a real provider: it is a non-delivery.
    #[serde(default)]
    pub garble_outputs: bool,
    /// Test hook for demos: serve sessions but never commit the receipts (nothing served can
    /// then be audited). Never set this on a real provider: the omission is proven from the
    /// clients' receipts and slashed.
    #[serde(default)]
    pub omit_receipts: bool,
    /// Test hook for demos and benchmarks: alter this share (bps) of the chat answers served in
    /// sessions, receipting them as if honest (see `agora_serve::server::Server::altering`).
    /// Never set this on a real provider: window audits replay the answers, and convict it.
    #[serde(default)]
    pub alter_answers_bps: u32,
    /// Serving sessions: the least this provider accepts (absent: it serves none).
    #[serde(default)]
    pub serve: Option<ServeSection>,
}

/// `[provider.serve]`: the prices below which this provider does not serve sessions, and how
/// many requests it runs at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeSection {
    /// Least price per 1,000 prompt tokens.
    #[serde(default)]
    pub prompt_per_1k: Amount,
    /// Least price per 1,000 completion tokens.
    #[serde(default)]
    pub completion_per_1k: Amount,
    /// Least price per embedded item.
    #[serde(default)]
    pub per_item: Amount,
    /// Embedding requests run at once (the rest wait their turn, first come first served).
    #[serde(default = "default_serve_parallel")]
    pub parallel: usize,
    /// Chat runs of a model decoded together (continuous batching; the rest wait their turn,
    /// first come first served).
    #[serde(default = "default_serve_batch")]
    pub batch: usize,
    /// Answers that make a serving window due: the larger, the smaller the share of them an
    /// audit replays (see `provider::sessions::WindowPolicy`).
    #[serde(default = "default_window_receipts")]
    pub window_receipts: u32,
    /// Longest an answer waits for its window (and its payment), in ms.
    #[serde(default = "default_window_max_age_ms")]
    pub window_max_age_ms: u64,
}

fn default_window_receipts() -> u32 {
    crate::provider::sessions::DEFAULT_WINDOW.receipts
}

fn default_window_max_age_ms() -> u64 {
    crate::provider::sessions::DEFAULT_WINDOW.max_age_ms
}

/// Chat runs of a model decoded together unless `[provider.serve] batch` says otherwise.
pub const DEFAULT_SERVE_BATCH: usize = 16;

fn default_serve_batch() -> usize {
    DEFAULT_SERVE_BATCH
}

fn default_serve_parallel() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl ServeSection {
    /// A floor written `PROMPT,COMPLETION,ITEM` (base units), serving as many requests at once
    /// as there are cores.
    pub fn parse_floor(s: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [prompt, completion, item] = parts.as_slice() else {
            anyhow::bail!(
                "a serving floor is PROMPT,COMPLETION,ITEM (per 1,000 prompt tokens, per 1,000 completion tokens, per item), got {s:?}"
            );
        };
        let amount =
            |x: &str| x.parse::<Amount>().map_err(|e| anyhow::anyhow!("{x:?} is not an amount: {e}"));
        Ok(Self {
            prompt_per_1k: amount(prompt)?,
            completion_per_1k: amount(completion)?,
            per_item: amount(item)?,
            parallel: default_serve_parallel(),
            batch: default_serve_batch(),
            window_receipts: default_window_receipts(),
            window_max_age_ms: default_window_max_age_ms(),
        })
    }

    /// When served receipts are committed; an error names the setting out of bounds.
    pub fn window(&self) -> anyhow::Result<crate::provider::sessions::WindowPolicy> {
        use crate::provider::sessions::{WINDOW_RECEIPTS, WindowPolicy};
        anyhow::ensure!(
            (1..=WINDOW_RECEIPTS).contains(&self.window_receipts),
            "[provider.serve] window_receipts = {} must be 1 to {WINDOW_RECEIPTS}",
            self.window_receipts
        );
        anyhow::ensure!(
            self.window_max_age_ms > 0,
            "[provider.serve] window_max_age_ms must be above 0 (answers would never be committed)"
        );
        Ok(WindowPolicy { receipts: self.window_receipts, max_age_ms: self.window_max_age_ms })
    }

    /// The floor as the ledger states it.
    pub fn rates(&self) -> agora_core::session::ServeRates {
        agora_core::session::ServeRates {
            prompt_per_1k: self.prompt_per_1k,
            completion_per_1k: self.completion_per_1k,
            per_item: self.per_item,
        }
    }
}

fn default_region() -> String {
    "local".into()
}
fn default_carbon() -> u32 {
    400
}
fn default_capacity() -> u64 {
    3_600
}

/// Settings of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiSection {
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest blob upload, MiB.
    #[serde(default = "default_upload_mb")]
    pub max_upload_mb: u64,
    /// Per-client and node-wide request limits.
    #[serde(default)]
    pub limits: crate::api::limits::ApiLimits,
    /// Bytes an account (other than the operator's) may store on this node a day, MiB.
    #[serde(default = "default_store_quota_mb")]
    pub store_quota_mb: u64,
    /// Least balance an account needs to store here (registered providers need none).
    #[serde(default = "default_store_min_balance")]
    pub store_min_balance: Amount,
    /// Size the content store is collected down to every few minutes, MiB: unpinned blobs go,
    /// least recently stored first (pins held by running jobs, leases and audits are kept).
    #[serde(default = "default_store_max_mb")]
    pub store_max_mb: u64,
}

impl ApiSection {
    /// An API listening on `listen`, every other setting at its default.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_upload_mb: default_upload_mb(),
            limits: Default::default(),
            store_quota_mb: default_store_quota_mb(),
            store_min_balance: default_store_min_balance(),
            store_max_mb: default_store_max_mb(),
        }
    }
}

fn default_store_quota_mb() -> u64 {
    16 * 1024
}

fn default_store_max_mb() -> u64 {
    64 * 1024
}

fn default_store_min_balance() -> Amount {
    Amount(1_000)
}

fn default_upload_mb() -> u64 {
    8192
}

/// A node's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Human-readable name (logs, dashboard).
    pub name: String,
    /// Where the node keeps its state.
    pub data_dir: PathBuf,
    /// The node's key (hex seed).
    pub key_file: PathBuf,
    /// The chain's genesis (validators only).
    #[serde(default)]
    pub genesis_file: Option<PathBuf>,
    /// HTTP API.
    pub api: ApiSection,
    /// Consensus role, if this node is a validator.
    #[serde(default)]
    pub validator: Option<ValidatorSection>,
    /// Provider role, if this node sells compute.
    #[serde(default)]
    pub provider: Option<ProviderSection>,
    /// The OpenAI-compatible gateway's job terms.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// Threads running the node's async tasks (default: one per core). Devnets, which run
    /// every node on one machine, divide the cores among their nodes: more runnable threads
    /// than cores only adds context switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
}

/// The cores this machine offers (2 if the OS will not say): the default worker thread count,
/// and what a devnet divides among its nodes.
pub fn machine_cores() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

impl NodeConfig {
    /// The number of async worker threads to run.
    pub fn worker_threads(&self) -> usize {
        self.worker_threads.unwrap_or_else(machine_cores).max(1)
    }

    /// Reads a config file and resolves its relative paths.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("cannot read config {}; create one with `agora devnet` or see the README", path.display())
        })?;
        let mut cfg: NodeConfig =
            toml::from_str(&text).with_context(|| format!("config {} is not valid", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.data_dir, &mut cfg.key_file].into_iter().chain(cfg.genesis_file.as_mut()) {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(v) = &cfg.validator {
            v.timing().with_context(|| format!("config {}", path.display()))?;
        }
        if cfg.validator.is_none() && cfg.provider.as_ref().is_none_or(|p| p.upstream.is_none()) {
            bail!(
                "config {}: a node must be a validator or a provider with an `upstream` chain API",
                path.display()
            );
        }
        Ok(cfg)
    }

    /// Writes the config file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The base URL of this node's API.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api.listen)
    }
}

/// Reads a genesis file (TOML).
pub fn load_genesis(path: &Path) -> anyhow::Result<Genesis> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read genesis {}", path.display()))?;
    let genesis: Genesis =
        toml::from_str(&text).with_context(|| format!("genesis {} is not valid", path.display()))?;
    genesis.build().with_context(|| format!("genesis {} is not valid", path.display()))?;
    Ok(genesis)
}

/// Writes a genesis file (TOML).
pub fn save_genesis(path: &Path, genesis: &Genesis) -> anyhow::Result<()> {
    std::fs::write(path, toml::to_string_pretty(genesis)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serving_section_without_window_settings_gets_the_default_and_bad_ones_are_named() {
        let mut s: ServeSection = toml::from_str("prompt_per_1k = 1").unwrap();
        assert_eq!(s.window().unwrap(), crate::provider::sessions::DEFAULT_WINDOW);
        s.window_receipts = 0;
        assert!(s.window().unwrap_err().to_string().contains("window_receipts"));
        s.window_receipts = crate::provider::sessions::WINDOW_RECEIPTS + 1;
        assert!(s.window().is_err());
        s.window_receipts = 300;
        s.window_max_age_ms = 0;
        assert!(s.window().unwrap_err().to_string().contains("window_max_age_ms"));
    }

    #[test]
    fn config_round_trip_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = NodeConfig {
            name: "node0".into(),
            data_dir: "node0".into(),
            key_file: "node0/node.key".into(),
            genesis_file: Some("genesis.toml".into()),
            api: ApiSection {
                listen: DEFAULT_API.parse().unwrap(),
                max_upload_mb: 10,
                limits: Default::default(),
                store_quota_mb: 1024,
                store_min_balance: Amount(1),
                store_max_mb: 2048,
            },
            validator: Some(ValidatorSection {
                p2p_listen: "127.0.0.1:7800".parse().unwrap(),
                peers: vec![],
                max_block_txs: 10,
                network: NetworkProfile::Local,
                empty_block_interval_ms: default_empty_block_interval_ms(),
            }),
            provider: None,
            gateway: GatewaySection::default(),
            worker_threads: Some(1),
        };
        let path = dir.path().join("node0.toml");
        cfg.save(&path).unwrap();
        let back = NodeConfig::load(&path).unwrap();
        assert_eq!(back.data_dir, dir.path().join("node0"));
        assert_eq!(back.api, cfg.api);
        std::fs::write(&path, "name = 3").unwrap();
        assert!(NodeConfig::load(&path).unwrap_err().to_string().contains("not valid"));
        // A config without the interval gets the production one; one the peers' leader timeout
        // would cut short is refused with its limit named.
        let text = toml::to_string_pretty(&cfg).unwrap().replace("empty_block_interval_ms = 250\n", "");
        std::fs::write(&path, &text).unwrap();
        let v = NodeConfig::load(&path).unwrap().validator.unwrap();
        assert_eq!(v.timing().unwrap().empty_block_interval, agora_chain::EMPTY_BLOCK_INTERVAL);
        std::fs::write(&path, text.replace("[validator]\n", "[validator]\nempty_block_interval_ms = 1000\n"))
            .unwrap();
        let err = format!("{:#}", NodeConfig::load(&path).unwrap_err());
        assert!(err.contains("below the leader timeout of 1000 ms"), "{err}");
    }
}
