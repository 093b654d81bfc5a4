//! `agora node run`: start a node from its config — consensus (for validators) on Commonware's
//! tokio runtime with authenticated p2p, the HTTP API, the content store and, for providers,
//! the provider agent — and stop cleanly on Ctrl-C or SIGTERM.

use crate::address_book::AddressBook;
use crate::api::{self, ApiState, NodeInfo};
use crate::config::{NetworkProfile, NodeConfig, load_genesis, load_key};
use crate::key_agent::KeyAgent;
use agora_chain::block::{consensus_key, consensus_public_key};
use agora_chain::mempool::Limits;
use agora_chain::validator::{
    CH_BACKFILL, CH_BLOCKS, CH_CERTS, CH_MEMPOOL, CH_RESOLVER, CH_VOTES, Channels, NAMESPACE,
    ValidatorConfig, default_page_cache, max_message_size,
};
use agora_chain::{BlockCfg, ChainHandle, start_validator};
use agora_core::PublicKey;
use anyhow::{Context, bail};
use commonware_cryptography::{ChaCha20Poly1305, ed25519};
use commonware_p2p::{Address, authenticated::lookup};
use commonware_runtime::{Quota, Runner as _, Supervisor as _};
use commonware_stream::cups::{self, Cups};
use commonware_stream::sake::{self, Sake};
use commonware_utils::{NZU32, NZUsize, ordered::Map};
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// Runs a node until it is told to stop.
pub fn run(config: NodeConfig) -> anyhow::Result<()> {
    let key = load_key(&config.key_file)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let store = agora_store::Store::open(config.data_dir.join("blobs"))
        .with_context(|| format!("cannot open the content store in {}", config.data_dir.display()))?;
    let mut roles = vec![];
    if config.validator.is_some() {
        roles.push("validator".to_string());
    }
    if config.provider.is_some() {
        roles.push("provider".to_string());
    }
    let info = NodeInfo {
        name: config.name.clone(),
        roles,
        upstream: config.provider.as_ref().and_then(|p| p.upstream.clone()),
    };
    // A validator's process runs consensus: no model may take it down.
    let isolation = match config.validator {
        Some(_) => Some(crate::provider::agent::isolation(
            std::env::current_exe().context("locating this binary for audit processes")?,
        )),
        None => None,
    };
    let agent_cfg = |upstream: String| crate::provider::agent::AgentConfig {
        key: key.clone(),
        upstream,
        endpoint: config.api_url(),
        store: store.clone(),
        dir: config.data_dir.clone(),
        provider: config.provider.clone(),
        store_budget_bytes: config.api.store_max_mb.saturating_mul(1 << 20),
        isolation: isolation.clone(),
    };
    let Some(v) = config.validator.clone() else {
        // A provider-only node: no consensus; it follows and submits to its upstream's API.
        let upstream = config
            .provider
            .as_ref()
            .and_then(|p| p.upstream.clone())
            .expect("checked when the config was loaded");
        let (agent, routes) = crate::provider::agent::Agent::new(agent_cfg(upstream.clone()))?;
        let keys = KeyAgent::new(key.clone(), &config.data_dir, agent.chain(), agent.sender());
        let state = Arc::new(ApiState::new(
            None,
            store.clone(),
            info,
            config.api.limits.clone(),
            config.worker_threads(),
        ));
        let limits = store_config(&config, key.public(), None);
        let gateway = crate::gateway::Gateway::new(&upstream, config.data_dir.clone(), &config.gateway)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads())
            .enable_all()
            .build()?;
        return rt.block_on(async move {
            let router =
                api::router(state.clone(), limits).merge(routes).merge(gateway.routes()).merge(keys.routes());
            let listener = tokio::net::TcpListener::bind(config.api.listen).await.with_context(|| {
                format!("cannot listen on {} (is another node using the port?)", config.api.listen)
            })?;
            tokio::spawn(agent.run());
            tokio::spawn(keys.run());
            println!("node {} ready: API {}", config.name, config.api_url());
            serve_until_stopped(listener, router, &state).await?;
            Ok(())
        });
    };
    // Validators audit too (committee members are in the auditor pool); they follow themselves.
    let (agent, agent_routes) = crate::provider::agent::Agent::new(agent_cfg(config.api_url()))?;
    let keys = KeyAgent::new(key.clone(), &config.data_dir, agent.chain(), agent.sender());
    let gateway = crate::gateway::Gateway::new(&config.api_url(), config.data_dir.clone(), &config.gateway)?;
    let genesis_file = config.genesis_file.clone().context("a validator's config needs genesis_file")?;
    let genesis = load_genesis(&genesis_file)?;
    let me = key.public();
    if !v.peers.iter().any(|p| p.key == me) {
        bail!("this node's key {me} is not among the [validator] peers; it cannot take part in consensus");
    }
    let timing = v.timing()?;
    let signer = consensus_key(&key.seed());
    let pks: Vec<ed25519::PublicKey> = v
        .peers
        .iter()
        .map(|p| {
            consensus_public_key(&p.key)
                .ok_or_else(|| anyhow::anyhow!("peer key {} is not a valid Ed25519 key", p.key))
        })
        .collect::<anyhow::Result<_>>()?;
    let chain_dir = config.data_dir.join("chain");
    let rt = commonware_runtime::tokio::Config::new()
        .with_storage_directory(&chain_dir)
        .with_worker_threads(config.worker_threads())
        .with_tcp_nodelay(Some(true))
        .with_catch_panics(false);
    let api_addr = config.api.listen;
    let operator = key.public();
    // Clients are served on a runtime of their own, at a lower OS priority than consensus: a
    // flood of requests competes with other requests, not with propose, verify and finalize.
    let api_rt = api_runtime(config.worker_threads())?;
    let api = api_rt.handle().clone();
    commonware_runtime::tokio::Runner::new(rt).start(|ctx| async move {
        let n = pks.len();
        let handshake = Cups::<_, ChaCha20Poly1305>::new(
            Sake {
                signer: signer.clone(),
                synchrony_bound: Duration::from_secs(5),
                max_handshake_age: Duration::from_secs(10),
                version: sake::Version::V1,
            },
            cups::Version::V1,
        );
        let block_cfg = BlockCfg::default();
        let profile = match v.network {
            NetworkProfile::Public => lookup::Config::recommended,
            NetworkProfile::Local => lookup::Config::local,
        };
        let p2p = profile(
            handshake,
            NAMESPACE,
            v.p2p_listen,
            NZUsize!(n.max(1)),
            max_message_size(&block_cfg),
            NZUsize!(4096),
        );
        let (mut network, oracle) = lookup::Network::new(ctx.child("network"), p2p);
        let peers: Map<ed25519::PublicKey, Address> = pks
            .iter()
            .zip(&v.peers)
            .map(|(pk, p)| (pk.clone(), Address::from(p.address)))
            .collect::<Vec<_>>()
            .try_into()
            .expect("validator keys are unique");
        // Each epoch's peer set is installed by consensus as it enters the epoch.
        let book = AddressBook::new(oracle.clone(), peers);
        let quota = Quota::per_second(NZU32!(1024));
        let mut reg = |ch| network.register(ch, quota);
        let channels = Channels {
            votes: reg(CH_VOTES),
            certs: reg(CH_CERTS),
            resolver: reg(CH_RESOLVER),
            blocks: reg(CH_BLOCKS),
            backfill: reg(CH_BACKFILL),
            mempool: reg(CH_MEMPOOL),
        };
        network.start();
        let validator = start_validator(
            ctx.child("validator"),
            ValidatorConfig {
                prefix: "agora".into(),
                key: signer,
                peers: book,
                blocker: oracle.clone(),
                provider: oracle.clone(),
                genesis,
                block_cfg,
                timing,
                mempool: Limits::default(),
                max_block_txs: v.max_block_txs,
                mailbox_size: NZUsize!(4096),
                page_cache: default_page_cache(),
            },
            channels,
        )
        .await
        .expect("the validator's storage opens (see the error above)");
        let chain: ChainHandle = validator.chain.clone();
        let threads = config.worker_threads();
        let served = api.spawn(async move {
            let state =
                Arc::new(ApiState::new(Some(chain.clone()), store, info, config.api.limits.clone(), threads));
            let store_cfg = store_config(&config, operator, Some(chain.clone()));
            let router = api::router(state.clone(), store_cfg)
                .merge(agent_routes)
                .merge(gateway.routes())
                .merge(keys.routes());
            let listener = match tokio::net::TcpListener::bind(api_addr).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: cannot listen on {api_addr}: {e} (is another node using the port?)");
                    std::process::exit(2);
                }
            };
            info!(api = %api_addr, height = chain.snapshot().height, "node running");
            tokio::spawn(agent.run());
            tokio::spawn(keys.run());
            println!("node {} ready: API http://{api_addr}", config.name);
            serve_until_stopped(listener, router, &state).await
        });
        tokio::select! {
            r = served => {
                if let Ok(Err(e)) = r { eprintln!("API server stopped: {e}"); }
            }
            _ = validator.engine => { eprintln!("consensus stopped"); }
        }
        info!("node stopping");
    });
    api_rt.shutdown_timeout(SHUTDOWN_GRACE);
    Ok(())
}

/// The content store's settings: uploads up to the configured size, signed by accounts the
/// node's write policy admits.
fn store_config(
    config: &NodeConfig,
    operator: PublicKey,
    chain: Option<ChainHandle>,
) -> agora_store::http::ServerConfig {
    let policy = crate::store_policy::NodeWritePolicy::new(
        operator,
        chain,
        config.api.store_min_balance,
        config.api.store_quota_mb << 20,
    );
    agora_store::http::ServerConfig {
        max_upload_bytes: config.api.max_upload_mb << 20,
        writers: agora_store::http::auth::Writers::Signed(Arc::new(policy)),
    }
}

/// Nice value of the API's threads: below consensus, which runs at the default 0, and level
/// with the signature checks (10), so a flood of requests competes with other requests, not
/// with consensus (at 5 a flood took the block rate to 0.41–0.45× idle; see BENCHMARKS.md).
const API_NICE: i32 = 10;

/// The runtime clients are served on: `threads` workers named `agora-api`, each at
/// [`API_NICE`].
fn api_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("agora-api")
        .on_thread_start(|| {
            // On Linux a PRIO_PROCESS priority for the caller applies to this thread only.
            let _ = rustix::process::setpriority_process(None, API_NICE);
        })
        .enable_all()
        .build()
}

/// How long in-flight requests get to finish after a stop signal. Long-lived event streams
/// (our own agent follows this API) would otherwise hold a graceful shutdown open forever.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Serves the API until Ctrl-C or SIGTERM, then lets open requests finish for at most
/// [`SHUTDOWN_GRACE`].
async fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    state: &ApiState,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = api::serve(listener, router, state, stopped(stop_rx.clone()));
    tokio::select! {
        r = server => r,
        _ = async { stopped(stop_rx).await; tokio::time::sleep(SHUTDOWN_GRACE).await } => Ok(()),
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
