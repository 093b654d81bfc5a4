//! The agent a node runs for the market: as a **provider** it registers (hardware, benchmark,
//! classes, region, carbon, price policy, coordinate), keeps asks open, sends heartbeats with
//! its Vivaldi coordinate, and runs the leases it wins; as an **auditor** (every node, since
//! committee validators are in the auditor pool) it carries out the audits it is assigned.
//!
//! It follows finalized blocks from its upstream chain API, remembers its progress on disk, and
//! after a restart resumes leases it had not committed — reusing saved outputs, so a lease is
//! never committed twice with different results.

use super::auditor::{Auditor, Isolation};
use super::hardware;
use super::runtimes::Runtimes;
use super::sessions::{SessionDirectory, Windows};
use super::state::{AgentState, LeaseRecord, Phase, StateDir};
use super::vivaldi::Vivaldi;
use super::work::Worker;
use super::{pricing, serve};
use crate::client::NodeClient;
use crate::config::ProviderSection;
use crate::sender::TxSender;
use crate::store_keeper::{StoreKeeper, audit_owner};
use agora_core::tx::{AuditId, LeaseId, ProviderProfile, TxPayload};
use agora_core::{AccountId, Region, SecretKey};
use agora_ledger::Event;
use agora_ledger::market::Order;
use agora_store::Store;
use anyhow::Context;
use futures::StreamExt;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{info, warn};

/// Longest a round-trip probe of another provider may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Leases in progress at once (fetching, waiting for keys, committing); the compute step
/// itself takes the device one lease at a time.
const LEASE_WORKERS: usize = 2;
/// Longest an audit may take (fetching items, recomputing, reporting) before it is abandoned.
const AUDIT_DEADLINE: Duration = Duration::from_secs(600);
/// Time past a lease's deadline allowed for its commitment to be sent and finalized.
const COMMIT_ALLOWANCE: Duration = Duration::from_secs(60);
/// Longest any one lease may take on this agent.
const MAX_LEASE_TIME: Duration = Duration::from_secs(24 * 3_600);
/// Longest one round of ask maintenance or one heartbeat may take.
const UPKEEP_DEADLINE: Duration = Duration::from_secs(60);

/// Detects this machine's hardware, runs the standard benchmark, and describes the provider.
pub async fn build_profile(
    p: &ProviderSection,
    endpoint: &str,
    coord: agora_core::Coord,
) -> anyhow::Result<ProviderProfile> {
    let mut hw = hardware::detect();
    hw.benchmark_score =
        tokio::task::spawn_blocking(|| hardware::benchmark(Duration::from_millis(500)).score).await?;
    Ok(ProviderProfile {
        classes: hardware::classes(&hw),
        hardware: hw,
        kinds: Runtimes::kinds(),
        region: p.region.parse::<Region>().map_err(|e| anyhow::anyhow!("{e}"))?,
        carbon_g_per_kwh: p.carbon_g_per_kwh,
        price_policy: pricing::parse(&p.price).map_err(|e| anyhow::anyhow!(e))?,
        coord,
        endpoint: endpoint.to_string(),
        serve: p.serve.as_ref().map(crate::config::ServeSection::rates),
    })
}

/// Agent settings.
pub struct AgentConfig {
    /// The node's key (its account).
    pub key: SecretKey,
    /// Chain API to follow and submit to.
    pub upstream: String,
    /// This node's own API URL (registered as the provider endpoint).
    pub endpoint: String,
    /// The local content store.
    pub store: Store,
    /// Where the agent keeps its state and models.
    pub dir: PathBuf,
    /// Provider settings; `None` for an auditor-only agent (validators).
    pub provider: Option<ProviderSection>,
    /// Bytes the content store is collected down to.
    pub store_budget_bytes: u64,
    /// Run audits in child processes (validators: see [`super::isolate`]).
    pub isolation: Option<Isolation>,
}

/// How a validator runs audits: in a child of `exe` with address space for the largest model
/// plus 8 GiB (working memory and a wasm instance's 4 GiB reservation), the audit deadline of
/// wall time, and that much CPU time on every core.
pub fn isolation(exe: PathBuf) -> Isolation {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    Isolation {
        exe,
        limits: super::isolate::Limits {
            memory_bytes: super::runtimes::max_model_bytes(agora_core::JobKind::Generate) + (8 << 30),
            cpu_seconds: AUDIT_DEADLINE.as_secs() * cores,
            wall: AUDIT_DEADLINE,
        },
    }
}

enum Task {
    Lease(LeaseId),
    Audit(AuditId),
}

/// Work waiting for the (single, CPU-bound) worker: audits first, they have deadlines.
#[derive(Default)]
struct Queue {
    audits: VecDeque<AuditId>,
    leases: VecDeque<LeaseId>,
}

/// A running agent.
pub struct Agent {
    me: AccountId,
    chain: NodeClient,
    sender: Arc<TxSender>,
    state_dir: StateDir,
    state: Mutex<AgentState>,
    queue: Mutex<Queue>,
    /// Wakes the audit worker.
    audits_ready: Notify,
    /// Wakes the lease worker.
    leases_ready: Notify,
    worker: Worker,
    auditor: Auditor,
    provider: Option<ProviderSection>,
    endpoint: String,
    coord: Mutex<Vivaldi>,
    keeper: StoreKeeper,
    store_budget_bytes: u64,
    /// Serving sessions, when the provider serves them.
    serving: Option<(Arc<SessionDirectory>, Arc<Windows>)>,
}

impl Agent {
    /// The transaction sender of the node's account (shared, so nonces never collide).
    pub fn sender(&self) -> Arc<TxSender> {
        self.sender.clone()
    }

    /// The chain client the agent follows.
    pub fn chain(&self) -> NodeClient {
        self.chain.clone()
    }

    /// Prepares an agent and the routes it serves (`/agent/...`).
    pub fn new(cfg: AgentConfig) -> anyhow::Result<(Arc<Self>, axum::Router)> {
        let chain = NodeClient::new(&cfg.upstream);
        let sender = Arc::new(TxSender::new(cfg.key.clone(), chain.clone()));
        let state_dir = StateDir::new(&cfg.dir.join("agent"))?;
        let state = state_dir.load()?;
        let runtimes = Arc::new(Runtimes::new(cfg.store.clone(), cfg.dir.join("models")));
        let cheat_bps = cfg.provider.as_ref().map_or(0, |p| p.cheat_bps);
        let cheat_every_lease = cfg.provider.as_ref().is_some_and(|p| p.cheat_every_lease);
        let garble_outputs = cfg.provider.as_ref().is_some_and(|p| p.garble_outputs);
        // One device: leases and audit recomputations take turns on it.
        let device = Arc::new(tokio::sync::Semaphore::new(1));
        let worker = Worker {
            key: cfg.key.clone(),
            chain: chain.clone(),
            sender: sender.clone(),
            store: cfg.store.clone(),
            runtimes: runtimes.clone(),
            state: state_dir.clone(),
            cheat_bps,
            cheat_every_lease,
            garble_outputs,
            device: device.clone(),
        };
        let auditor = Auditor {
            key: cfg.key.clone(),
            chain: chain.clone(),
            sender: sender.clone(),
            runtimes,
            device,
            isolation: cfg.isolation,
        };
        let chain_for_keeper = chain.clone();
        let serves = cfg.provider.as_ref().and_then(|p| Some((p, p.serve.as_ref()?)));
        let (serving, books, server_routes) = match serves {
            Some((p, s)) => {
                let side = serving(&cfg.key, &chain, &sender, worker.runtimes.clone(), &cfg.dir, (p, s))?;
                (Some((side.directory, side.windows)), Some(side.books), Some(side.routes))
            }
            None => (None, None, None),
        };
        let mut routes = serve::router(Arc::new(serve::AuditServer {
            me: cfg.key.public(),
            chain: chain.clone(),
            state: state_dir.clone(),
            books,
        }));
        if let Some(server_routes) = server_routes {
            routes = routes.merge(server_routes);
        }
        let agent = Arc::new(Self {
            me: cfg.key.public(),
            chain,
            sender,
            state_dir,
            state: Mutex::new(state),
            queue: Mutex::default(),
            audits_ready: Notify::new(),
            leases_ready: Notify::new(),
            worker,
            auditor,
            provider: cfg.provider,
            endpoint: cfg.endpoint,
            coord: Mutex::new(Vivaldi::default()),
            keeper: StoreKeeper::new(cfg.store, chain_for_keeper),
            store_budget_bytes: cfg.store_budget_bytes,
            serving,
        });
        Ok((agent, routes))
    }

    fn save(&self) {
        let st = self.state.lock().expect("not poisoned").clone();
        if let Err(e) = self.state_dir.save(&st) {
            warn!(error = %format!("{e:#}"), "cannot save agent state");
        }
    }

    /// Records that `lease` reached `phase`, durably.
    fn set_phase(&self, lease: LeaseId, phase: Phase) {
        if let Some(r) = self.state.lock().expect("not poisoned").leases.get_mut(&lease) {
            r.phase = phase;
        }
        self.save();
    }

    fn enqueue(&self, task: Task) {
        let mut q = self.queue.lock().expect("not poisoned");
        match task {
            Task::Lease(l) if !q.leases.contains(&l) => q.leases.push_back(l),
            Task::Audit(a) if !q.audits.contains(&a) => q.audits.push_back(a),
            _ => {}
        }
        drop(q);
        match task {
            Task::Lease(_) => self.leases_ready.notify_one(),
            Task::Audit(_) => self.audits_ready.notify_one(),
        }
    }

    /// Registers this provider on chain if it is not yet registered.
    async fn register(&self, p: &ProviderSection) -> anyhow::Result<()> {
        if self.chain.provider(&self.me).await.is_ok() {
            return Ok(());
        }
        let coord = self.coord.lock().expect("not poisoned").to_coord();
        let profile = build_profile(p, &self.endpoint, coord).await?;
        self.sender
            .send(TxPayload::RegisterProvider { profile, collateral: p.collateral }, Duration::from_secs(60))
            .await
            .context("registering as a provider")?;
        info!(account = %self.me, "registered as a provider");
        Ok(())
    }

    /// Keeps asks open for every class this provider sells.
    async fn maintain_asks(&self, p: &ProviderSection) -> anyhow::Result<()> {
        let me = self.chain.provider(&self.me).await?;
        if !me.active || me.ejected_until > 0 && me.ejected_until > self.chain.status().await?.height {
            return Ok(());
        }
        let orders: crate::api::types::OrderList =
            self.chain.get(&format!("/api/v1/orders?account={}", self.me)).await?;
        let market: Vec<crate::api::types::MarketClass> = self.chain.get("/api/v1/market").await?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
        for class in &me.profile.classes {
            let open: u64 = orders
                .iter()
                .filter_map(|o| match &o.value {
                    Order::Ask(a) if a.class == *class => Some(a.quantity),
                    _ => None,
                })
                .sum();
            if open >= p.capacity / 2 {
                continue;
            }
            let last =
                market.iter().find(|m| m.class == class.to_string()).and_then(|m| m.stats.last_price());
            let price = pricing::ask_price(&me.profile.price_policy, last);
            self.sender
                .send(
                    TxPayload::PostAsk {
                        class: class.clone(),
                        quantity: p.capacity - open,
                        min_unit_price: price,
                        expiry_ms: now + 3_600_000,
                    },
                    Duration::from_secs(60),
                )
                .await?;
        }
        Ok(())
    }

    /// Measures round-trip time to another provider (within [`PROBE_TIMEOUT`]) and sends a
    /// heartbeat with the coordinate.
    async fn heartbeat(&self) -> anyhow::Result<()> {
        let providers: crate::api::types::ProviderList = self.chain.get("/api/v1/providers").await?;
        let peers: Vec<_> = providers.iter().filter(|p| p.id != self.me).collect();
        if !peers.is_empty() {
            let peer = peers[(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis()
                as usize)
                % peers.len()];
            let url = format!("{}/health", peer.value.profile.endpoint.trim_end_matches('/'));
            let start = std::time::Instant::now();
            // The peer's endpoint is whatever it registered: a tarpit must not hold this loop,
            // and a name re-pointed into this network must not be dialled.
            let reach = self.chain.reach().await?;
            let probe = agora_store::http::outbound::client_reaching(reach, Some(PROBE_TIMEOUT));
            if reach.check_url(&url).is_ok()
                && probe.get(&url).send().await.is_ok_and(|r| r.status().is_success())
            {
                let rtt = start.elapsed().as_secs_f64() * 1000.0;
                let remote = Vivaldi::remote_from_coord(&peer.value.profile.coord);
                self.coord.lock().expect("not poisoned").observe(&remote, rtt, peer.id.0[0] as u64);
            }
        }
        let coord = self.coord.lock().expect("not poisoned").to_coord();
        self.sender.send(TxPayload::Heartbeat { coord }, Duration::from_secs(60)).await?;
        Ok(())
    }

    /// Reacts to one finalized block's events.
    fn on_block(&self, record: &agora_chain::BlockRecord) {
        for e in record.all_events() {
            match e {
                Event::LeaseCreated { lease, job, shard, provider, .. } if *provider == self.me => {
                    self.state
                        .lock()
                        .expect("not poisoned")
                        .leases
                        .insert(*lease, LeaseRecord { job: *job, shard: *shard, phase: Phase::Queued });
                    self.enqueue(Task::Lease(*lease));
                }
                Event::AuditAssigned { audit, auditors, .. } if auditors.contains(&self.me) => {
                    self.enqueue(Task::Audit(*audit));
                }
                Event::SessionMatched { session, provider, .. } if *provider == self.me => {
                    self.on_session(*session, true);
                }
                Event::SessionEnded { session, .. } | Event::SessionClosed { session, .. } => {
                    self.on_session(*session, false);
                }
                Event::ServingFraud { session, provider, .. }
                | Event::SessionLeft { session, provider, .. }
                    if *provider == self.me =>
                {
                    self.on_session(*session, false);
                }
                Event::ReceiptChallenged { session, provider, seq, .. } if *provider == self.me => {
                    if let Some((_, windows)) = &self.serving {
                        let (windows, session, seq) = (windows.clone(), *session, *seq);
                        tokio::spawn(async move {
                            if let Err(e) = windows.answer(session, seq).await {
                                warn!(session, seq, error = %format!("{e:#}"), "cannot answer a receipt challenge");
                            }
                        });
                    }
                }
                Event::LeaseSettled { lease, .. } | Event::LeaseFailed { lease, .. } => {
                    if let Some(r) = self.state.lock().expect("not poisoned").leases.get_mut(lease) {
                        r.phase = Phase::Closed;
                        // No audit can ask for them any more: the plaintext goes.
                        if let Err(e) = self.state_dir.remove_items(*lease) {
                            warn!(lease, error = %format!("{e:#}"), "cannot delete a settled lease's plaintext");
                        }
                    }
                }
                _ => {}
            }
        }
        self.state.lock().expect("not poisoned").next_height = record.block.header.height + 1;
    }

    /// A session this provider serves changed: reads it again, and warms its model when the
    /// provider was just matched (so the first request does not wait for the load).
    fn on_session(&self, session: u64, warm: bool) {
        let Some((directory, _)) = &self.serving else { return };
        let directory = directory.clone();
        tokio::spawn(async move {
            if let Err(e) = directory.refresh(session).await {
                warn!(session, error = %e, "cannot read a session");
            }
            if warm && let Err(e) = directory.warm(session).await {
                warn!(session, error = %format!("{e:#}"), "cannot warm a session's model");
            }
        });
    }

    /// Follows finalized blocks forever, reconnecting after errors.
    async fn follow(self: Arc<Self>) {
        loop {
            let saved = self.state.lock().expect("not poisoned").next_height;
            // A fresh agent starts at the chain's tip: earlier blocks hold nothing for it.
            let from =
                if saved == 0 { self.chain.status().await.map_or(1, |s| s.height.max(1)) } else { saved };
            match self.chain.follow(from).await {
                Ok(stream) => {
                    let mut stream = Box::pin(stream);
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(record) => {
                                self.on_block(&record);
                                for event in record.all_events() {
                                    if let Err(e) = self.keeper.on_event(event).await {
                                        warn!(error = %format!("{e:#}"), "cannot update the store's pins");
                                    }
                                }
                                if record.block.header.height % 20 == 0 {
                                    self.save();
                                }
                            }
                            Err(e) => {
                                warn!(error = %e, "event stream error");
                                break;
                            }
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot follow the chain; retrying"),
            }
            self.save();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn do_lease(&self, lease: LeaseId) {
        let saved = self.state.lock().expect("not poisoned").leases.get(&lease).map(|r| r.phase.clone());
        if matches!(saved, Some(Phase::Committed | Phase::Closed)) {
            return;
        }
        match self.chain.lease(lease).await {
            Ok(l) if !l.is_running() => {
                return self
                    .set_phase(lease, if l.commitment.is_some() { Phase::Committed } else { Phase::Closed });
            }
            Err(e) => {
                warn!(lease, error = %e, "cannot read lease");
                return;
            }
            Ok(_) => {}
        }
        let commitment = match self.worker.compute(lease, saved.as_ref()).await {
            Ok(c) => c,
            Err(e) => {
                warn!(lease, error = %format!("{e:#}"), "cannot compute lease");
                if let Some(bad) = e.downcast_ref::<super::work::InvalidInput>() {
                    match self.worker.report_invalid(lease, bad).await {
                        Ok(()) => self.set_phase(lease, Phase::Closed),
                        Err(e) => warn!(lease, error = %format!("{e:#}"), "cannot report the inputs invalid"),
                    }
                }
                return;
            }
        };
        let computed = Phase::Computed {
            root: commitment.root,
            output: commitment.output,
            items: commitment.item_count,
            metering: commitment.metering,
        };
        self.set_phase(lease, computed);
        match self.worker.commit(lease, commitment).await {
            Ok(()) => {
                self.set_phase(lease, Phase::Committed);
                info!(lease, "committed");
            }
            Err(e) => warn!(lease, error = %format!("{e:#}"), "cannot commit lease"),
        }
    }

    async fn do_audit(&self, audit: AuditId) {
        if self.state.lock().expect("not poisoned").audits_done.contains(&audit) {
            return;
        }
        match self.auditor.run(audit).await {
            Ok(_) => {
                self.state.lock().expect("not poisoned").audits_done.insert(audit);
                self.save();
            }
            Err(e) => warn!(audit, error = %format!("{e:#}"), "audit not carried out"),
        }
        // Done or given up: the model it fetched is a cache again.
        if let Err(e) = self.keeper.release(audit_owner(audit)).await {
            warn!(audit, error = %format!("{e:#}"), "cannot release the audit's pins");
        }
    }

    /// The audit worker: one audit at a time, each within [`AUDIT_DEADLINE`], never behind a
    /// lease.
    async fn work_audits(self: Arc<Self>) {
        loop {
            let next = self.queue.lock().expect("not poisoned").audits.pop_front();
            let Some(audit) = next else {
                self.audits_ready.notified().await;
                continue;
            };
            if tokio::time::timeout(AUDIT_DEADLINE, self.do_audit(audit)).await.is_err() {
                warn!(audit, "audit abandoned: it took longer than {AUDIT_DEADLINE:?}");
            }
        }
    }

    /// The lease worker: up to [`LEASE_WORKERS`] leases in progress at once (computing one at a
    /// time on the device), each within its own deadline
    /// on chain (plus a little for the commitment to finalize), so one slow or hostile lease
    /// (a tarpit source, a withheld key, a long run) cannot hold up the others.
    async fn work_leases(self: Arc<Self>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(LEASE_WORKERS));
        loop {
            let next = self.queue.lock().expect("not poisoned").leases.pop_front();
            let Some(lease) = next else {
                self.leases_ready.notified().await;
                continue;
            };
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let agent = self.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let limit = agent.lease_time_left(lease).await;
                if tokio::time::timeout(limit, agent.do_lease(lease)).await.is_err() {
                    warn!(lease, "lease abandoned: its deadline passed");
                }
            });
        }
    }

    /// How long lease `lease` may still take: until its deadline plus [`COMMIT_ALLOWANCE`]
    /// (at most [`MAX_LEASE_TIME`], and that when the lease cannot be read).
    async fn lease_time_left(&self, lease: LeaseId) -> Duration {
        let Ok(l) = self.chain.lease(lease).await else { return MAX_LEASE_TIME };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        (Duration::from_millis(l.deadline_ms.saturating_sub(now)) + COMMIT_ALLOWANCE).min(MAX_LEASE_TIME)
    }

    /// Runs the agent until the process stops.
    pub async fn run(self: Arc<Self>) {
        // Resume unfinished leases from before a restart.
        let pending: Vec<LeaseId> = self
            .state
            .lock()
            .expect("not poisoned")
            .leases
            .iter()
            .filter(|(_, r)| matches!(r.phase, Phase::Queued | Phase::Computed { .. }))
            .map(|(l, _)| *l)
            .collect();
        for l in pending {
            self.enqueue(Task::Lease(l));
        }
        tokio::spawn(self.clone().work_audits());
        tokio::spawn(self.clone().work_leases());
        tokio::spawn(self.clone().follow());
        tokio::spawn(self.keeper.clone().collect_forever(self.store_budget_bytes));
        if let Some((_, windows)) = &self.serving {
            tokio::spawn(windows.clone().run());
        }
        let Some(p) = self.provider.clone() else { return };
        // Registration waits for the chain to be reachable.
        loop {
            match self.register(&p).await {
                Ok(()) => break,
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "registration failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        let mut tick = 0u64;
        loop {
            match tokio::time::timeout(UPKEEP_DEADLINE, self.maintain_asks(&p)).await {
                Ok(Err(e)) => warn!(error = %format!("{e:#}"), "cannot maintain asks"),
                Err(_) => warn!("maintaining asks took longer than {UPKEEP_DEADLINE:?}"),
                Ok(Ok(())) => {}
            }
            if tick.is_multiple_of(3) {
                match tokio::time::timeout(UPKEEP_DEADLINE, self.heartbeat()).await {
                    Ok(Err(e)) => warn!(error = %format!("{e:#}"), "heartbeat failed"),
                    Err(_) => warn!("the heartbeat took longer than {UPKEEP_DEADLINE:?}"),
                    Ok(Ok(())) => {}
                }
            }
            tick += 1;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// The serving side of a provider.
struct ServingSide {
    /// Its sessions, and their warm models.
    directory: Arc<SessionDirectory>,
    /// Its window committer.
    windows: Arc<Windows>,
    /// Its receipts (kept under `dir/serving`).
    books: Arc<agora_serve::book::Books>,
    /// The routes of its serving endpoints.
    routes: axum::Router,
}

/// Assembles a provider's [`ServingSide`].
fn serving(
    key: &SecretKey,
    chain: &NodeClient,
    sender: &Arc<TxSender>,
    runtimes: Arc<Runtimes>,
    dir: &std::path::Path,
    (provider, serve): (&ProviderSection, &crate::config::ServeSection),
) -> anyhow::Result<ServingSide> {
    let books = Arc::new(agora_serve::book::Books::new(&dir.join("serving"))?);
    let directory = Arc::new(SessionDirectory::new(key.public(), chain.clone(), runtimes));
    let omit = provider.omit_receipts;
    let policy = serve.window()?;
    let windows =
        Arc::new(Windows::new(key.public(), chain.clone(), sender.clone(), books.clone(), policy, omit));
    let server = agora_serve::server::Server::new(
        key.clone(),
        directory.clone(),
        books.clone(),
        agora_serve::engine::Engine::new(serve.parallel, serve.batch),
    )
    .altering(provider.alter_answers_bps);
    Ok(ServingSide { directory, windows, books, routes: agora_serve::server::router(Arc::new(server)) })
}
