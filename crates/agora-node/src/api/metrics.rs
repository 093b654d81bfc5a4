//! `GET /metrics`: the node's numbers in the Prometheus text exposition format (0.0.4).
//!
//! Gauges about the chain (height, mempool, market, jobs, leases, audits, providers) are read
//! from the finalized snapshot at scrape time, so they are exact and survive restarts. What
//! can only be seen as it happens is observed by this process into [`OBSERVED`]: finality
//! latency (a finalized block's arrival here minus its header timestamp), transactions and
//! ledger events per finalized block, and how long this node's runtimes took to compute or
//! audit. Those counters start at zero when the process starts, as Prometheus expects.

use super::ApiState;
use agora_chain::ChainHandle;
use agora_ledger::State;
use agora_ledger::audits::Audit;
use agora_ledger::events::LeaseFailure;
use agora_ledger::jobs::{Job, ShardStatus};
use agora_ledger::leases::LeaseStatus;
use agora_ledger::market::Order;
use axum::extract::State as Extract;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::error::RecvError;

/// The media type of the text exposition format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds of the finality latency histogram, seconds.
pub const FINALITY_BUCKETS: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Bucket bounds of the runtime duration histogram, seconds.
pub const RUNTIME_BUCKETS: &[f64] = &[0.01, 0.05, 0.25, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0];

/// A metric family's type.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Only goes up (resets when the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted into cumulative buckets.
    Histogram,
}

/// Writes families in the text exposition format: `# HELP`/`# TYPE` once per family, then its
/// samples, with label values and help text escaped as the format requires.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A family with one sample (no labels).
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A family with one sample per value of one label.
    pub fn by<'a>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, f64)>,
    ) {
        self.family(name, kind, help);
        for (v, x) in values {
            self.sample(name, &[(label, v)], x);
        }
    }

    /// The `_bucket` (cumulative, ending with `le="+Inf"`), `_sum` and `_count` samples of one
    /// histogram series.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0;
        let bucket = format!("{name}_bucket");
        for (i, count) in h.counts.iter().enumerate() {
            cumulative += count;
            let le = h.bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| number(*b));
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A float as the format spells it (`+Inf`, `-Inf`, `NaN`, integers without a fraction).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// Observations counted into fixed buckets (`counts[i]` holds those in `(bounds[i-1],
/// bounds[i]]`; the last slot holds those above every bound).
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    /// An empty histogram over increasing `bounds`.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0 }
    }

    /// Counts one observation.
    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
    }
}

/// What this process has seen happen (everything else is read from state at scrape time).
#[derive(Debug)]
pub struct Observed {
    finality: Histogram,
    txs_ok: u64,
    txs_failed: u64,
    events: BTreeMap<String, u64>,
    lagged: u64,
    runtime: BTreeMap<(&'static str, String), Histogram>,
}

/// The process's observations. Global because the runtimes that report durations are deep in
/// the provider agent, and a node runs at most one chain.
pub static OBSERVED: LazyLock<Mutex<Observed>> = LazyLock::new(|| {
    Mutex::new(Observed {
        finality: Histogram::new(FINALITY_BUCKETS),
        txs_ok: 0,
        txs_failed: 0,
        events: BTreeMap::new(),
        lagged: 0,
        runtime: BTreeMap::new(),
    })
});

fn observed() -> std::sync::MutexGuard<'static, Observed> {
    OBSERVED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records how long a runtime took: `phase` is `compute` (a provider's lease) or `audit` (an
/// auditor's re-computation); `kind` is the job kind.
pub fn observe_runtime(phase: &'static str, kind: &str, took: Duration) {
    observed()
        .runtime
        .entry((phase, kind.to_string()))
        .or_insert_with(|| Histogram::new(RUNTIME_BUCKETS))
        .observe(took.as_secs_f64());
}

/// Follows finalized blocks for as long as the chain runs, recording finality latency (arrival
/// here minus the header's timestamp; blocks fetched during catch-up count too, as they were
/// late), transactions and ledger events.
pub async fn observe_finality(chain: ChainHandle) {
    let mut blocks = chain.subscribe();
    loop {
        match blocks.recv().await {
            Ok(published) => {
                let record = &published.record;
                let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                let latency = now_ms.saturating_sub(record.block.header.timestamp_ms) as f64 / 1000.0;
                let names: Vec<String> = record
                    .all_events()
                    .filter_map(|e| Some(serde_json::to_value(e).ok()?.get("event")?.as_str()?.to_string()))
                    .collect();
                let mut o = observed();
                o.finality.observe(latency);
                let ok = record.receipts.iter().filter(|r| r.ok).count() as u64;
                o.txs_ok += ok;
                o.txs_failed += record.receipts.len() as u64 - ok;
                for n in names {
                    *o.events.entry(n).or_default() += 1;
                }
            }
            Err(RecvError::Lagged(n)) => observed().lagged += n,
            Err(RecvError::Closed) => return,
        }
    }
}

/// Where a job is: `matching` while any shard waits in the book, then `running` while any
/// lease computes, then `audit` (committed, waiting for the draw, window or auditors); once
/// finished, `settled` if every shard was paid, else `abandoned` (or `cancelled`). The
/// dashboard's `jobState` (web/fmt.js) follows the same rules.
pub fn job_state(job: &Job, state: &State) -> &'static str {
    if job.cancelled {
        return "cancelled";
    }
    if job.finished {
        let all_done = job.shards.iter().all(|s| matches!(s.status, ShardStatus::Done(_)));
        return if all_done { "settled" } else { "abandoned" };
    }
    let stage = |s: &ShardStatus| match s {
        ShardStatus::Open(_) => 0,
        ShardStatus::Leased(id) => match state.lease(*id).map(|l| l.status) {
            Some(LeaseStatus::Running) | None => 1,
            Some(_) => 2,
        },
        ShardStatus::Done(_) | ShardStatus::Abandoned => 3,
    };
    match job.shards.iter().map(|s| stage(&s.status)).min().unwrap_or(3) {
        0 => "matching",
        1 => "running",
        _ => "audit",
    }
}

/// Job states in pipeline order.
pub const JOB_STATES: [&str; 6] = ["matching", "running", "audit", "settled", "abandoned", "cancelled"];

fn lease_status(s: &LeaseStatus) -> &'static str {
    match s {
        LeaseStatus::Running => "running",
        LeaseStatus::Committed => "committed",
        LeaseStatus::Auditing => "auditing",
        LeaseStatus::InputDisputed => "input_disputed",
        LeaseStatus::Delivered => "delivered",
        LeaseStatus::OutputsDisputed => "outputs_disputed",
        LeaseStatus::Settled => "settled",
        LeaseStatus::Failed(_) => "failed",
    }
}

fn failure_reason(f: LeaseFailure) -> &'static str {
    match f {
        LeaseFailure::MissedDeadline => "missed_deadline",
        LeaseFailure::ProviderVanished => "provider_vanished",
        LeaseFailure::Cancelled => "cancelled",
        LeaseFailure::Fraud => "fraud",
        LeaseFailure::Unverified => "unverified",
        LeaseFailure::InvalidInput => "invalid_input",
        LeaseFailure::FalseInputClaim => "false_input_claim",
        LeaseFailure::OutputUnavailable => "output_unavailable",
    }
}

fn audit_outcome(a: &Audit) -> &'static str {
    use agora_ledger::events::AuditOutcome::*;
    match a.outcome {
        None => "open",
        Some(Clean) => "clean",
        Some(Inconclusive) => "inconclusive",
        Some(Fraud) => "fraud",
        Some(Unverified) => "unverified",
    }
}

fn count<'a>(x: &mut BTreeMap<&'a str, f64>, k: &'a str, by: f64) {
    *x.entry(k).or_default() += by;
}

fn zeros<'a>(keys: &[&'a str]) -> BTreeMap<&'a str, f64> {
    keys.iter().map(|k| (*k, 0.0)).collect()
}

/// Families read from the finalized snapshot and the mempool.
async fn chain_families(x: &mut Exposition, chain: &ChainHandle) {
    let snap = chain.snapshot();
    let st = &snap.state;
    let meta = st.meta();
    x.single("agora_chain_height", Kind::Gauge, "Last finalized block height", snap.height as f64);
    x.single(
        "agora_chain_block_timestamp_seconds",
        Kind::Gauge,
        "Header timestamp of the last finalized block",
        snap.timestamp_ms as f64 / 1000.0,
    );
    x.single(
        "agora_chain_committee_size",
        Kind::Gauge,
        "Validators in the consensus committee",
        meta.committee.len() as f64,
    );
    {
        let (txs, bytes) = chain.mempool_size();
        x.single(
            "agora_mempool_transactions",
            Kind::Gauge,
            "Pending transactions in this node's mempool",
            txs as f64,
        );
        x.single(
            "agora_mempool_bytes",
            Kind::Gauge,
            "Encoded size of the pending transactions",
            bytes as f64,
        );
    }
    let s = &meta.supply;
    let supply = [
        ("minted", s.minted),
        ("burned", s.burned),
        ("liquid", s.liquid),
        ("staked", s.staked),
        ("collateral", s.collateral),
        ("escrow", s.escrow),
    ];
    x.by(
        "agora_supply",
        Kind::Gauge,
        "Currency by bucket, base units (minted - burned = the rest)",
        "bucket",
        supply.iter().map(|(k, v)| (*k, v.0 as f64)),
    );

    let jailed = st.validators().filter(|(_, v)| v.jailed_until > snap.height).count();
    x.single(
        "agora_validators",
        Kind::Gauge,
        "Accounts with validator stake",
        st.validators().count() as f64,
    );
    x.single(
        "agora_validators_jailed",
        Kind::Gauge,
        "Validators jailed for a consensus fault",
        jailed as f64,
    );
    let mut providers = zeros(&["active", "inactive", "ejected"]);
    let mut frauds = 0;
    for (_, p) in st.providers() {
        let k = if p.ejected_until > snap.height {
            "ejected"
        } else if p.active {
            "active"
        } else {
            "inactive"
        };
        count(&mut providers, k, 1.0);
        frauds += p.trust.frauds;
    }
    x.by("agora_providers", Kind::Gauge, "Registered providers by state", "state", providers);
    x.single(
        "agora_provider_slashes_total",
        Kind::Counter,
        "Providers slashed for confirmed fraud, over the chain's life",
        frauds as f64,
    );

    market_families(x, st);

    let jobs = st.jobs().fold(zeros(&JOB_STATES), |mut m, (_, j)| {
        count(&mut m, job_state(j, st), 1.0);
        m
    });
    x.by("agora_jobs", Kind::Gauge, "Jobs by state", "state", jobs);
    let mut leases = zeros(&["running", "committed", "auditing", "input_disputed", "settled", "failed"]);
    let mut failures = zeros(&[
        "missed_deadline",
        "provider_vanished",
        "cancelled",
        "fraud",
        "unverified",
        "invalid_input",
        "false_input_claim",
        "output_unavailable",
    ]);
    for (_, l) in st.leases() {
        count(&mut leases, lease_status(&l.status), 1.0);
        if let LeaseStatus::Failed(f) = l.status {
            count(&mut failures, failure_reason(f), 1.0);
        }
    }
    x.by("agora_leases", Kind::Gauge, "Leases by status", "status", leases);
    x.by("agora_lease_failures", Kind::Gauge, "Failed leases by reason", "reason", failures);
    let audits = st.audits().fold(
        zeros(&["open", "clean", "inconclusive", "fraud", "unverified"]),
        |mut m, (_, a)| {
            count(&mut m, audit_outcome(a), 1.0);
            m
        },
    );
    x.by("agora_audits", Kind::Gauge, "Audits by outcome (open = not resolved yet)", "outcome", audits);
}

/// Order book and clearing families, per class.
fn market_families(x: &mut Exposition, st: &State) {
    let mut orders: BTreeMap<(String, &str), (f64, f64)> = BTreeMap::new();
    for (_, o) in st.orders() {
        let (side, qty) = match o {
            Order::Ask(a) => ("ask", a.quantity),
            Order::Bid(b) => ("bid", b.quantity),
        };
        let e = orders.entry((o.class().to_string(), side)).or_default();
        e.0 += 1.0;
        e.1 += qty as f64;
    }
    x.family("agora_market_open_orders", Kind::Gauge, "Open orders by class and side");
    for ((class, side), (n, _)) in &orders {
        x.sample("agora_market_open_orders", &[("class", class), ("side", side)], *n);
    }
    x.family(
        "agora_market_open_device_seconds",
        Kind::Gauge,
        "Device-seconds in open orders by class and side",
    );
    for ((class, side), (_, q)) in &orders {
        x.sample("agora_market_open_device_seconds", &[("class", class), ("side", side)], *q);
    }
    let stats: Vec<(String, &agora_ledger::market::ClassStats)> =
        st.all_class_stats().map(|(c, s)| (c.to_string(), s)).collect();
    x.family(
        "agora_market_last_price",
        Kind::Gauge,
        "Last clearing price per device-second, by class and side",
    );
    for (class, s) in &stats {
        if let Some(c) = s.recent.last() {
            x.sample(
                "agora_market_last_price",
                &[("class", class), ("side", "buyer")],
                c.buyer_price.0 as f64,
            );
            x.sample(
                "agora_market_last_price",
                &[("class", class), ("side", "seller")],
                c.seller_price.0 as f64,
            );
        }
    }
    x.family(
        "agora_market_traded_device_seconds_total",
        Kind::Counter,
        "Device-seconds ever matched, by class",
    );
    for (class, s) in &stats {
        x.sample("agora_market_traded_device_seconds_total", &[("class", class)], s.total_volume as f64);
    }
    let mut matches: BTreeMap<String, f64> = BTreeMap::new();
    for (_, l) in st.leases() {
        *matches.entry(l.class.to_string()).or_default() += 1.0;
    }
    x.family("agora_market_matches_total", Kind::Counter, "Matches (leases created), by class");
    for (class, n) in &matches {
        x.sample("agora_market_matches_total", &[("class", class)], *n);
    }
}

/// Families this process observed since it started.
fn observed_families(x: &mut Exposition, with_chain: bool) {
    let o = observed();
    if with_chain {
        x.family(
            "agora_finality_latency_seconds",
            Kind::Histogram,
            "Finalized block's arrival at this node minus its header timestamp",
        );
        x.histogram("agora_finality_latency_seconds", &[], &o.finality);
        x.by(
            "agora_chain_transactions_total",
            Kind::Counter,
            "Transactions in blocks finalized since this node started, by result",
            "result",
            [("ok", o.txs_ok as f64), ("failed", o.txs_failed as f64)],
        );
        x.by(
            "agora_ledger_events_total",
            Kind::Counter,
            "Ledger events in blocks finalized since this node started (e.g. lease_created = matches, provider_slashed = slashes)",
            "event",
            o.events.iter().map(|(k, v)| (k.as_str(), *v as f64)),
        );
        x.single(
            "agora_chain_events_lagged_total",
            Kind::Counter,
            "Finalized blocks the metrics observer fell behind on and skipped",
            o.lagged as f64,
        );
    }
    x.family(
        "agora_runtime_seconds",
        Kind::Histogram,
        "Runtime execution time on this node, by phase (compute or audit) and job kind",
    );
    for ((phase, kind), h) in &o.runtime {
        x.histogram("agora_runtime_seconds", &[("phase", phase), ("kind", kind)], h);
    }
}

/// The content store's size.
async fn store_families(x: &mut Exposition, store: &agora_store::Store) {
    let store = store.clone();
    let Ok(Ok(blobs)) = tokio::task::spawn_blocking(move || store.list()).await else { return };
    let (mut bytes, mut n) = ([0.0; 2], [0.0; 2]);
    for b in blobs {
        bytes[b.pinned as usize] += b.size as f64;
        n[b.pinned as usize] += 1.0;
    }
    let split = |v: [f64; 2]| [("false", v[0]), ("true", v[1])];
    x.by(
        "agora_store_bytes",
        Kind::Gauge,
        "Bytes in the content store, by pin state",
        "pinned",
        split(bytes),
    );
    x.by("agora_store_blobs", Kind::Gauge, "Blobs in the content store, by pin state", "pinned", split(n));
}

/// `GET /metrics`
pub async fn metrics(Extract(s): Extract<Arc<ApiState>>) -> impl IntoResponse {
    let mut x = Exposition::default();
    x.family("agora_node_info", Kind::Gauge, "This node: name, roles and version (value 1)");
    let roles = s.info.roles.join(",");
    let info =
        [("name", s.info.name.as_str()), ("roles", roles.as_str()), ("version", env!("CARGO_PKG_VERSION"))];
    x.sample("agora_node_info", &info, 1.0);
    if let Some(chain) = &s.chain {
        chain_families(&mut x, chain).await;
    }
    observed_families(&mut x, s.chain.is_some());
    store_families(&mut x, &s.store).await;
    ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], x.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut x = Exposition::default();
        x.family("m", Kind::Gauge, "a \\ help\nline");
        x.sample("m", &[("a", "q\"uote"), ("b", "back\\slash\nnl")], 1.5);
        assert_eq!(
            x.finish(),
            "# HELP m a \\\\ help\\nline\n# TYPE m gauge\nm{a=\"q\\\"uote\",b=\"back\\\\slash\\nnl\"} 1.5\n"
        );
    }

    #[test]
    fn numbers_use_the_formats_spelling() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        static B: &[f64] = &[0.5, 2.0];
        let mut h = Histogram::new(B);
        for v in [0.25, 0.5, 1.0, 4.0, 8.0] {
            h.observe(v);
        }
        let mut x = Exposition::default();
        x.histogram("lat", &[("k", "v")], &h);
        assert_eq!(
            x.finish(),
            "lat_bucket{k=\"v\",le=\"0.5\"} 2\nlat_bucket{k=\"v\",le=\"2\"} 3\nlat_bucket{k=\"v\",le=\"+Inf\"} 5\n\
             lat_sum{k=\"v\"} 13.75\nlat_count{k=\"v\"} 5\n"
        );
    }

    #[test]
    fn runtime_observations_appear_per_phase_and_kind() {
        observe_runtime("compute", "wasm-test", Duration::from_millis(30));
        let mut x = Exposition::default();
        observed_families(&mut x, false);
        let text = x.finish();
        assert!(
            text.contains("agora_runtime_seconds_bucket{phase=\"compute\",kind=\"wasm-test\",le=\"0.05\"} 1")
        );
        assert!(!text.contains("agora_finality_latency_seconds"), "no chain, no finality");
    }
}
