//! `agora devnet`: a local network of real node processes on 127.0.0.1.
//!
//! The first run writes a genesis (funding a faucet account whose key goes into the data
//! directory), one key and one config per node, then starts one `agora node run` process per
//! node. Later runs with the same directory resume the same chain. Ctrl-C stops every process
//! cleanly; a single node can be restarted on its own with
//! `agora node run --config <dir>/nodeN.toml` and catches up.

use crate::config::{ApiSection, NodeConfig, Peer, ValidatorSection, load_key, save_genesis, write_key};
use agora_core::{Amount, SecretKey};
use agora_ledger::{Genesis, GenesisAccount, GenesisValidator, Params};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Devnet settings.
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    /// Where everything lives.
    pub dir: PathBuf,
    /// Number of validators.
    pub validators: usize,
    /// First port: node i's API is `port_base + i`, its p2p port `port_base + 100 + i`.
    pub port_base: u16,
}

/// Chain id of devnets.
pub const DEVNET_CHAIN: &str = "agora-devnet";
/// Faucet balance.
pub const FAUCET_BALANCE: u128 = 1_000_000_000_000_000;

/// Path of node `i`'s config.
pub fn node_config_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("node{i}.toml"))
}

/// The faucet key of a devnet.
pub fn faucet_key(dir: &Path) -> anyhow::Result<SecretKey> {
    load_key(&dir.join("faucet.key"))
}

/// Writes genesis, keys and configs for a new devnet (or checks an existing one).
pub fn prepare(opts: &DevnetOptions) -> anyhow::Result<Vec<NodeConfig>> {
    let genesis_path = opts.dir.join("genesis.toml");
    if genesis_path.exists() {
        let mut configs = vec![];
        for i in 0.. {
            let p = node_config_path(&opts.dir, i);
            if !p.exists() {
                break;
            }
            configs.push(NodeConfig::load(&p)?);
        }
        if configs.is_empty() {
            bail!(
                "{} has a genesis but no node configs; remove the directory to start a new devnet",
                opts.dir.display()
            );
        }
        return Ok(configs);
    }
    if opts.validators == 0 {
        bail!("a devnet needs at least one validator");
    }
    std::fs::create_dir_all(&opts.dir).with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let faucet = SecretKey::generate();
    write_key(&opts.dir.join("faucet.key"), &faucet)?;
    let keys: Vec<SecretKey> = (0..opts.validators).map(|_| SecretKey::generate()).collect();
    let port = |offset: usize| -> anyhow::Result<u16> {
        u16::try_from(opts.port_base as usize + offset)
            .context("port numbers run past 65535; lower --port-base")
    };
    let mut peers = vec![];
    for (i, k) in keys.iter().enumerate() {
        peers.push(Peer { key: k.public(), address: format!("127.0.0.1:{}", port(100 + i)?).parse()? });
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let genesis = Genesis {
        chain_id: DEVNET_CHAIN.into(),
        genesis_time_ms: now,
        accounts: std::iter::once(GenesisAccount {
            account: faucet.public(),
            balance: Amount(FAUCET_BALANCE),
        })
        .chain(keys.iter().map(|k| GenesisAccount { account: k.public(), balance: Amount(1_000_000_000) }))
        .collect(),
        validators: keys
            .iter()
            .map(|k| GenesisValidator { account: k.public(), stake: Amount(1_000_000) })
            .collect(),
        params: Params { committee_size: opts.validators as u128, ..Params::default() },
    };
    save_genesis(&genesis_path, &genesis)?;
    let mut configs = vec![];
    for (i, k) in keys.iter().enumerate() {
        write_key(&opts.dir.join(format!("node{i}")).join("node.key"), k)?;
        let cfg = NodeConfig {
            name: format!("node{i}"),
            data_dir: format!("node{i}").into(),
            key_file: format!("node{i}/node.key").into(),
            genesis_file: Some("genesis.toml".into()),
            api: ApiSection { listen: format!("127.0.0.1:{}", port(i)?).parse()?, max_upload_mb: 8192 },
            validator: Some(ValidatorSection {
                p2p_listen: peers[i].address,
                peers: peers.clone(),
                max_block_txs: 5_000,
            }),
            provider: None,
        };
        let path = node_config_path(&opts.dir, i);
        cfg.save(&path)?;
        configs.push(NodeConfig::load(&path)?);
    }
    Ok(configs)
}

/// A running devnet: one child process per node.
pub struct Devnet {
    /// Node configs.
    pub configs: Vec<NodeConfig>,
    children: Vec<tokio::process::Child>,
    /// Data directory.
    pub dir: PathBuf,
}

impl Devnet {
    /// Starts every node as a child process of this executable, logging to `<dir>/nodeN.log`.
    pub async fn start(opts: &DevnetOptions) -> anyhow::Result<Self> {
        let configs = prepare(opts)?;
        let exe = std::env::current_exe().context("cannot find the agora executable")?;
        let mut children = vec![];
        for (i, _) in configs.iter().enumerate() {
            let log = std::fs::File::create(opts.dir.join(format!("node{i}.log")))?;
            let child = tokio::process::Command::new(&exe)
                .arg("node")
                .arg("run")
                .arg("--config")
                .arg(node_config_path(&opts.dir, i))
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start node {i}"))?;
            children.push(child);
        }
        Ok(Self { configs, children, dir: opts.dir.clone() })
    }

    /// API URLs of the nodes.
    pub fn urls(&self) -> Vec<String> {
        self.configs.iter().map(NodeConfig::api_url).collect()
    }

    /// Waits until every node answers and the chain has finalized a block past `height`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        let start = Instant::now();
        let clients: Vec<_> = self.urls().iter().map(|u| crate::client::NodeClient::new(u)).collect();
        loop {
            for (i, c) in self.children.iter_mut().enumerate() {
                if let Some(status) = c.try_wait()? {
                    bail!(
                        "node {i} exited ({status}); see {}",
                        self.dir.join(format!("node{i}.log")).display()
                    );
                }
            }
            let mut heights = vec![];
            for c in &clients {
                if let Ok(s) = c.status().await {
                    heights.push(s.height);
                }
            }
            if heights.len() == clients.len() && heights.iter().all(|h| *h >= 1) {
                return Ok(*heights.iter().min().expect("non-empty"));
            }
            if start.elapsed() > timeout {
                bail!(
                    "the devnet did not finalize a block within {timeout:?}; see the logs in {}",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends SIGTERM to every node and waits for them to exit (SIGKILL after a grace period).
    pub async fn stop(mut self) {
        for c in &self.children {
            if let Some(pid) = c.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for c in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(10), c.wait()).await.is_err() {
                let _ = c.kill().await;
            }
        }
    }
}
