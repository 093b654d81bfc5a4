//! `agora devnet`: a local network of real node processes on 127.0.0.1.
//!
//! The first run writes a genesis (funding a faucet account whose key goes into the data
//! directory), one key and one config per node, then starts one `agora node run` process per
//! node: validators (`nodeN.toml`) and provider-only nodes (`providerN.toml`) that follow a
//! validator's API. Later runs with the same directory resume the same chain. Ctrl-C stops
//! every process cleanly; a single node can be restarted on its own with
//! `agora node run --config <dir>/nodeN.toml` and catches up.

use crate::config::{
    ApiSection, GatewaySection, GatewaySessionSection, NodeConfig, Peer, ProviderSection, ServeSection,
    ValidatorSection, load_key, save_genesis, write_key,
};
use crate::provider::sessions::WindowPolicy;
use agora_core::{AccountId, Amount, SecretKey};
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
    /// Number of provider-only nodes.
    pub providers: usize,
    /// How many of the providers return wrong results (demonstrates audits and slashing).
    pub cheaters: usize,
    /// Share of output items a cheater corrupts, bps.
    pub cheat_bps: u32,
    /// Cheaters corrupt at least one item of every lease (see `ProviderSection`).
    pub cheat_every_lease: bool,
    /// Cheaters garble their encrypted output blobs instead of corrupting items (see
    /// `ProviderSection::garble_outputs`).
    pub cheat_blob: bool,
    /// Cheaters never commit the receipts they serve (see `ProviderSection::omit_receipts`).
    pub cheat_serving: bool,
    /// Cheaters alter `cheat_bps` of the chat answers they serve (see
    /// `ProviderSection::alter_answers_bps`).
    pub cheat_answers: bool,
    /// When providers commit their serving windows.
    pub window: WindowPolicy,
    /// Chat runs a provider decodes together (`[provider.serve] batch`).
    pub serve_batch: usize,
    /// Least time, ms, between an empty block and its parent (`[validator]
    /// empty_block_interval_ms`).
    pub empty_block_interval_ms: u64,
    /// How long the gateways' serving sessions last (`30m`).
    pub session_duration: String,
    /// Chain parameters to set in genesis, over [`devnet_params`].
    pub params: Vec<(String, u128)>,
    /// First port: validator i's API is `port_base + i`, its p2p port `port_base + 100 + i`;
    /// provider i's API is `port_base + 50 + i`.
    pub port_base: u16,
}

impl DevnetOptions {
    /// Whether cheaters corrupt lease output items (no other way of cheating was chosen).
    fn corrupts_items(&self) -> bool {
        !(self.cheat_blob || self.cheat_serving || self.cheat_answers)
    }
}

/// A devnet's window policy unless told otherwise: windows every 2 s, so that a demo's answers
/// are committed, audited and paid while one watches.
pub const DEVNET_WINDOW: WindowPolicy =
    WindowPolicy { receipts: crate::provider::sessions::WINDOW_RECEIPTS, max_age_ms: 2_000 };

/// A devnet's empty-block interval unless told otherwise: faster than production's
/// [`agora_chain::EMPTY_BLOCK_INTERVAL`] (250 ms), because the ledger counts its timers (epochs,
/// audit windows, liveness) in blocks and a devnet is for watching them pass; still a fifth of
/// the empty blocks an unpaced devnet built.
pub const DEVNET_EMPTY_BLOCK_INTERVAL_MS: u64 = 100;

/// Most validators, and most providers, a devnet's port layout has room for.
pub const MAX_DEVNET_NODES: usize = 50;

/// Share of output items a devnet cheater corrupts by default, bps.
pub const CHEATER_BPS: u32 = 2_000;

/// Chain id of devnets.
pub const DEVNET_CHAIN: &str = "agora-devnet";
/// Faucet balance.
pub const FAUCET_BALANCE: u128 = 1_000_000_000_000_000;
/// Genesis balance of each validator and provider account.
pub const PROVIDER_BALANCE: u128 = 100_000_000_000;
/// Genesis balance of the devnet's gateway account, and the budget of its API key.
pub const GATEWAY_BALANCE: u128 = 1_000_000_000_000;
/// Collateral each devnet provider locks.
pub const PROVIDER_COLLATERAL: u128 = 10_000_000_000;

/// Path of validator `i`'s config.
pub fn node_config_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("node{i}.toml"))
}

/// Path of provider `i`'s config.
pub fn provider_config_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("provider{i}.toml"))
}

/// Regions and grid carbon intensities (gCO2e/kWh) handed out to devnet providers in turn, so
/// region and carbon constraints have something to choose between.
const PROVIDER_SITES: &[(&str, u32)] = &[("eu-north", 30), ("us-east", 380), ("ap-south", 650)];

/// Chain parameters for a devnet. Blocks come every ~50–200 ms on one machine, so windows
/// counted in blocks are set to span seconds to minutes (the defaults assume slower blocks).
/// Epochs are short (seconds) so a devnet exercises consensus hand-overs between epochs.
pub fn devnet_params(validators: usize) -> Params {
    Params {
        committee_size: validators as u128,
        epoch_length: 100,
        liveness_blocks: 1_500,
        audit_window_blocks: 20,
        audit_report_blocks: 1_500,
        unbonding_blocks: 600,
        gov_voting_ms: 20_000,
        delivery_window_ms: 20_000,
        session_min_ms: 10_000,
        session_commit_grace_ms: 15_000,
        allow_private_endpoints: 1,
        ..Params::default()
    }
}

/// A `port_base` whose ports are all free for `validators` validators and `providers`
/// providers (for tests and benchmarks that start devnets side by side).
pub fn free_port_base(validators: usize, providers: usize) -> anyhow::Result<u16> {
    // Each call in this process starts from its own offset: two devnets started at once (tests
    // in one binary run in parallel) would otherwise both find the same block free.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (v, p) = (validators as u16, providers as u16);
    for attempt in 0..500u32 {
        let offset = std::process::id()
            .wrapping_mul(7919)
            .wrapping_add(call.wrapping_mul(4_099))
            .wrapping_add(attempt * 131);
        let base = 20_000 + (offset % 30_000) as u16;
        let ok = (0..v)
            .chain(100..100 + v)
            .chain(50..50 + p)
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if ok {
            return Ok(base);
        }
    }
    bail!("no free block of ports on 127.0.0.1")
}

/// The config paths of an existing devnet: validators first, then providers.
fn existing_configs(dir: &Path) -> Vec<PathBuf> {
    let validators = (0..).map(|i| node_config_path(dir, i)).take_while(|p| p.exists());
    let providers = (0..).map(|i| provider_config_path(dir, i)).take_while(|p| p.exists());
    validators.chain(providers).collect()
}

/// The file holding the API key of a devnet's OpenAI-compatible gateway (served by node0).
pub fn gateway_api_key_path(dir: &Path) -> PathBuf {
    dir.join("gateway-api.key")
}

/// The faucet key of a devnet.
pub fn faucet_key(dir: &Path) -> anyhow::Result<SecretKey> {
    load_key(&dir.join("faucet.key"))
}

/// Writes genesis, keys and configs for a new devnet (or loads an existing one). Returns each
/// node's config path and config, validators first.
pub fn prepare(opts: &DevnetOptions) -> anyhow::Result<Vec<(PathBuf, NodeConfig)>> {
    let genesis_path = opts.dir.join("genesis.toml");
    if genesis_path.exists() {
        let configs = existing_configs(&opts.dir)
            .into_iter()
            .map(|p| Ok((p.clone(), NodeConfig::load(&p)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
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
    if opts.validators > MAX_DEVNET_NODES || opts.providers > MAX_DEVNET_NODES {
        bail!("a devnet has room for at most {MAX_DEVNET_NODES} validators and {MAX_DEVNET_NODES} providers");
    }
    let mut params = devnet_params(opts.validators);
    for (name, value) in &opts.params {
        params.set(name, *value)?;
    }
    if opts.cheaters > opts.providers {
        bail!("--cheaters ({}) cannot exceed --providers ({})", opts.cheaters, opts.providers);
    }
    std::fs::create_dir_all(&opts.dir).with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let faucet = SecretKey::generate();
    write_key(&opts.dir.join("faucet.key"), &faucet)?;
    let keys: Vec<SecretKey> = (0..opts.validators).map(|_| SecretKey::generate()).collect();
    let provider_keys: Vec<SecretKey> = (0..opts.providers).map(|_| SecretKey::generate()).collect();
    let port = |offset: usize| -> anyhow::Result<u16> {
        u16::try_from(opts.port_base as usize + offset)
            .context("port numbers run past 65535; lower --port-base")
    };
    let mut peers = vec![];
    for (i, k) in keys.iter().enumerate() {
        peers.push(Peer { key: k.public(), address: format!("127.0.0.1:{}", port(100 + i)?).parse()? });
    }
    let gateway_account = SecretKey::generate();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let funded = |k: &SecretKey| GenesisAccount { account: k.public(), balance: Amount(PROVIDER_BALANCE) };
    let genesis = Genesis {
        chain_id: DEVNET_CHAIN.into(),
        genesis_time_ms: now,
        accounts: std::iter::once(GenesisAccount {
            account: faucet.public(),
            balance: Amount(FAUCET_BALANCE),
        })
        .chain(keys.iter().chain(&provider_keys).map(funded))
        .chain([GenesisAccount { account: gateway_account.public(), balance: Amount(GATEWAY_BALANCE) }])
        .collect(),
        validators: keys
            .iter()
            .map(|k| GenesisValidator { account: k.public(), stake: Amount(1_000_000) })
            .collect(),
        params,
    };
    save_genesis(&genesis_path, &genesis)?;
    // Every node runs on this machine: share its cores among them.
    let threads_per_node = (crate::config::machine_cores() / (opts.validators + opts.providers)).max(1);
    let mut configs = vec![];
    for (i, k) in keys.iter().enumerate() {
        write_key(&opts.dir.join(format!("node{i}")).join("node.key"), k)?;
        let cfg = NodeConfig {
            name: format!("node{i}"),
            data_dir: format!("node{i}").into(),
            key_file: format!("node{i}/node.key").into(),
            genesis_file: Some("genesis.toml".into()),
            api: ApiSection::new(format!("127.0.0.1:{}", port(i)?).parse()?),
            validator: Some(ValidatorSection {
                p2p_listen: peers[i].address,
                peers: peers.clone(),
                max_block_txs: 5_000,
                network: crate::config::NetworkProfile::Local,
                empty_block_interval_ms: opts.empty_block_interval_ms,
            }),
            provider: None,
            gateway: GatewaySection {
                session: Some(devnet_session_terms(&opts.session_duration)),
                ..GatewaySection::default()
            },
            worker_threads: Some(threads_per_node),
        };
        let path = node_config_path(&opts.dir, i);
        cfg.save(&path)?;
        configs.push((path.clone(), NodeConfig::load(&path)?));
    }
    // node0's gateway pays from a funded account; its API key goes beside the faucet key.
    let (api_key, _) = crate::gateway::keys::KeyStore::new(&opts.dir.join("node0")).add(
        "devnet",
        Amount(GATEWAY_BALANCE),
        Some(gateway_account),
    )?;
    crate::config::write_secret(&gateway_api_key_path(&opts.dir), format!("{api_key}\n").as_bytes())?;
    for (i, k) in provider_keys.iter().enumerate() {
        write_key(&opts.dir.join(format!("provider{i}")).join("node.key"), k)?;
        let (region, carbon) = PROVIDER_SITES[i % PROVIDER_SITES.len()];
        // The last `cheaters` providers cheat, so provider0 is always honest.
        let cheats = i >= opts.providers - opts.cheaters;
        let cfg = NodeConfig {
            name: format!("provider{i}"),
            data_dir: format!("provider{i}").into(),
            key_file: format!("provider{i}/node.key").into(),
            genesis_file: None,
            api: ApiSection::new(format!("127.0.0.1:{}", port(50 + i)?).parse()?),
            validator: None,
            provider: Some(ProviderSection {
                upstream: Some(format!("http://127.0.0.1:{}", port(i % opts.validators)?)),
                collateral: Amount(PROVIDER_COLLATERAL),
                price: "auto:10".into(),
                region: region.into(),
                carbon_g_per_kwh: carbon,
                capacity: 3_600,
                cheat_bps: if cheats && opts.corrupts_items() { opts.cheat_bps } else { 0 },
                cheat_every_lease: cheats && opts.cheat_every_lease,
                garble_outputs: cheats && opts.cheat_blob,
                omit_receipts: cheats && opts.cheat_serving,
                alter_answers_bps: if cheats && opts.cheat_answers { opts.cheat_bps } else { 0 },
                serve: Some(ServeSection {
                    prompt_per_1k: Amount(1),
                    completion_per_1k: Amount(1),
                    per_item: Amount(1),
                    parallel: threads_per_node.max(1),
                    batch: opts.serve_batch,
                    window_receipts: opts.window.receipts,
                    window_max_age_ms: opts.window.max_age_ms,
                }),
            }),
            gateway: GatewaySection::default(),
            worker_threads: Some(threads_per_node),
        };
        let path = provider_config_path(&opts.dir, i);
        cfg.save(&path)?;
        configs.push((path.clone(), NodeConfig::load(&path)?));
    }
    Ok(configs)
}

/// The serving sessions a devnet's gateways open: priced above the providers' floors, with
/// escrow every provider's collateral deters many times over, matched within 30 s.
fn devnet_session_terms(duration: &str) -> GatewaySessionSection {
    GatewaySessionSection {
        escrow: Amount(10_000_000),
        duration: duration.into(),
        providers: 2,
        prompt_per_1k: Amount(10),
        completion_per_1k: Amount(20),
        per_item: Amount(1),
        ttft_ms: 100,
        match_timeout: "30s".into(),
    }
}

/// A running devnet: one child process per node.
pub struct Devnet {
    /// Node configs, validators first.
    pub configs: Vec<NodeConfig>,
    children: Vec<tokio::process::Child>,
    /// Data directory.
    pub dir: PathBuf,
}

impl Devnet {
    /// Starts every node as a child process of this executable, logging to `<dir>/nodeN.log`.
    pub async fn start(opts: &DevnetOptions) -> anyhow::Result<Self> {
        let nodes = prepare(opts)?;
        let exe = std::env::current_exe().context("cannot find the agora executable")?;
        let mut children = vec![];
        for (path, cfg) in &nodes {
            let log = std::fs::File::create(opts.dir.join(format!("{}.log", cfg.name)))?;
            let child = tokio::process::Command::new(&exe)
                .arg("node")
                .arg("run")
                .arg("--config")
                .arg(path)
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", cfg.name))?;
            children.push(child);
        }
        let configs = nodes.into_iter().map(|(_, c)| c).collect();
        Ok(Self { configs, children, dir: opts.dir.clone() })
    }

    /// API URLs of the nodes, validators first.
    pub fn urls(&self) -> Vec<String> {
        self.configs.iter().map(NodeConfig::api_url).collect()
    }

    /// API URLs of the validators.
    pub fn validator_urls(&self) -> Vec<String> {
        self.configs.iter().filter(|c| c.validator.is_some()).map(NodeConfig::api_url).collect()
    }

    /// Waits until every provider is registered and has asks on the book.
    pub async fn wait_providers(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        let chain = crate::client::NodeClient::new(&self.validator_urls()[0]);
        let wanted: Vec<AccountId> = self
            .configs
            .iter()
            .filter(|c| c.validator.is_none())
            .map(|c| load_key(&c.key_file).map(|k| k.public()))
            .collect::<anyhow::Result<_>>()?;
        loop {
            self.check_alive()?;
            let mut ready = 0;
            for who in &wanted {
                let asks: anyhow::Result<crate::api::types::OrderList> =
                    chain.get(&format!("/api/v1/orders?account={who}")).await.map_err(Into::into);
                if asks.is_ok_and(|a| !a.is_empty()) {
                    ready += 1;
                }
            }
            if ready == wanted.len() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "only {ready} of {} providers registered and posted asks within {timeout:?}; see the \
                     provider logs in {}",
                    wanted.len(),
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Fails if any node process has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (c, cfg) in self.children.iter_mut().zip(&self.configs) {
            if let Some(status) = c.try_wait()? {
                bail!(
                    "{} exited ({status}); see {}",
                    cfg.name,
                    self.dir.join(format!("{}.log", cfg.name)).display()
                );
            }
        }
        Ok(())
    }

    /// Waits until every node answers and the chain has finalized a block past `height`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        let start = Instant::now();
        let clients: Vec<_> =
            self.validator_urls().iter().map(|u| crate::client::NodeClient::new(u)).collect();
        loop {
            self.check_alive()?;
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
