//! `agora bench ...`: benchmarks a user can run, printing the figures BENCHMARKS.md records.
//!
//! `agora bench chain` starts a local devnet of real node processes and measures finality
//! latency (idle chain: submit → seen in a finalized block, one transfer at a time) and
//! sustained throughput (many senders submitting signed transfers to every node at once).
//! `agora bench market` measures job latency and verification overhead (see [`market`]).

pub mod adversary;
pub mod detection;
pub mod flood;
pub mod market;
pub mod serve;
pub mod serve_audits;

use super::Global;
use super::output::print;
use crate::client::NodeClient;
use crate::devnet::{Devnet, DevnetOptions, faucet_key, free_port_base};
use crate::provider::sessions::WindowPolicy;
use crate::requester;
use agora_core::tx::{Transaction, TxPayload};
use agora_core::{Amount, Hash, SecretKey, SignedTx};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::ProgressBar;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `agora bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Finality latency and signed-transaction throughput of a local 4-validator devnet.
    Chain(ChainBenchArgs),
    /// Job latency (submit → running → settled) and verification overhead on a local devnet
    /// with providers (needs the all-minilm-l6-v2 model; pulled on first use).
    Market(market::MarketBenchArgs),
    /// Detection rate of cheating providers over many leases, against the probability the
    /// chain states for each lease.
    Detection(detection::DetectionBenchArgs),
    /// The adversarial market simulated on the real ledger over many seeds: honest providers
    /// slashed, cheaters' gain, detection, requester-caused penalties, at 10/30/45% Sybil stake.
    Adversary(adversary::AdversaryBenchArgs),
    /// Finality and block rate of a local devnet idle and while every validator's API is
    /// flooded with reads and junk-signature batches.
    Flood(flood::FloodBenchArgs),
    /// Serving sessions through `/v1` on a local devnet: time to first token, streaming
    /// throughput against the same model locally, one-text embeddings, concurrent clients
    /// (needs the smollm2-135m-instruct and all-minilm-l6-v2 models).
    Serve(serve::ServeBenchArgs),
    /// Window audits of serving sessions on a local devnet whose providers but one alter a
    /// share of their chat answers: the altered answers paid for, cheaters convicted, the
    /// honest provider never, and the auditors' replays against the serving compute (needs the
    /// smollm2-135m-instruct model).
    ServeAudits(serve_audits::ServeAuditsBenchArgs),
}

/// `agora bench chain` options.
#[derive(Debug, Args)]
pub struct ChainBenchArgs {
    /// Validators in the devnet.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Transfers in the throughput run.
    #[arg(long, default_value_t = 10_000)]
    pub txs: usize,
    /// Distinct sending accounts (each sends txs/senders transfers with consecutive nonces).
    #[arg(long, default_value_t = 250)]
    pub senders: usize,
    /// Transfers timed one at a time on an idle chain for the latency figure.
    #[arg(long, default_value_t = 40)]
    pub latency_samples: usize,
    /// Concurrent HTTP submissions.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Least time, ms, between an empty block and its parent (0: as fast as rounds go).
    #[arg(long, default_value_t = crate::config::default_empty_block_interval_ms(),
          value_parser = crate::cli::devnet::empty_block_interval())]
    pub empty_block_interval_ms: u64,
    /// Transactions per submission request (`POST /api/v1/txs/batch`).
    #[arg(long, default_value_t = 250)]
    pub batch: usize,
}

/// What `agora bench chain` measured.
#[derive(Debug, Serialize)]
pub struct ChainBenchReport {
    /// Validators.
    pub validators: usize,
    /// Finality latency at idle, p50, ms.
    pub idle_latency_p50_ms: f64,
    /// Finality latency at idle, p95, ms.
    pub idle_latency_p95_ms: f64,
    /// Transfers in the throughput run.
    pub txs: usize,
    /// Finalized transfers per second over the throughput run.
    pub throughput_tx_s: f64,
    /// Submissions accepted per second by the nodes' APIs.
    pub submit_tx_s: f64,
    /// Latency under load, p50, ms.
    pub loaded_latency_p50_ms: f64,
    /// Latency under load, p95, ms.
    pub loaded_latency_p95_ms: f64,
    /// Blocks per second during the run.
    pub blocks_per_s: f64,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// When each transaction id was first seen, shared between tasks.
pub(crate) type SeenAt = Arc<Mutex<HashMap<Hash, Instant>>>;

/// Records when each transaction id first appears in a finalized block, and when each block
/// arrived.
pub(crate) fn watch_finality(client: &NodeClient, from: u64) -> (SeenAt, Arc<Mutex<Vec<Instant>>>) {
    let seen: SeenAt = Arc::default();
    let blocks: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let (s, b) = (seen.clone(), blocks.clone());
    let url = format!("{}/api/v1/events?from={from}", client.url());
    tokio::spawn(async move {
        let Ok(resp) = reqwest::get(url).await else { return };
        let mut stream = resp.bytes_stream();
        // Bytes received and not yet parsed; `scanned` of them are known to hold no event end,
        // so a large event arriving in many chunks is searched once, not once per chunk.
        let mut buf: Vec<u8> = vec![];
        let mut scanned = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf[scanned..].windows(2).position(|w| w == b"\n\n").map(|i| scanned + i) {
                let event: Vec<u8> = buf.drain(..end + 2).collect();
                scanned = 0;
                let now = Instant::now();
                let event = String::from_utf8_lossy(&event);
                let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) else { continue };
                let Ok(record) = serde_json::from_str::<agora_chain::BlockRecord>(data.trim()) else {
                    continue;
                };
                b.lock().expect("not poisoned").push(now);
                let mut seen = s.lock().expect("not poisoned");
                for r in &record.receipts {
                    seen.entry(r.tx).or_insert(now);
                }
            }
            scanned = buf.len().saturating_sub(1);
        }
    });
    (seen, blocks)
}

/// The fee the benchmark's devnet charges per transfer (fee_per_byte is zero there).
fn devnet_fee() -> Amount {
    Amount(crate::devnet::devnet_params(1).min_fee)
}

pub(crate) fn transfer(key: &SecretKey, nonce: u64, chain: &str) -> SignedTx {
    Transaction {
        sender: key.public(),
        nonce,
        fee: devnet_fee(),
        payload: TxPayload::Transfer { to: SecretKey::from_label("bench-sink").public(), amount: Amount(1) },
    }
    .sign(chain, key)
}

pub(crate) async fn wait_all(
    seen: &Mutex<HashMap<Hash, Instant>>,
    ids: &[Hash],
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    // Transactions finalize roughly in submission order: skip past the seen prefix once, then
    // only re-check from the first one still missing.
    let mut done = 0;
    loop {
        {
            let s = seen.lock().expect("not poisoned");
            while done < ids.len() && s.contains_key(&ids[done]) {
                done += 1;
            }
        }
        if done == ids.len() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            let s = seen.lock().expect("not poisoned");
            let finalized = ids.iter().filter(|id| s.contains_key(id)).count();
            bail!("only {finalized} of {} transactions were finalized within {timeout:?}", ids.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `agora bench chain`.
pub async fn chain(g: &Global, a: ChainBenchArgs) -> anyhow::Result<()> {
    let report = with_validators(a.validators, a.empty_block_interval_ms, async |net| {
        run_chain_bench(g, &a, net).await
    })
    .await?;
    print(g.json, &report, |r| {
        format!(
            "validators            {}\nfinality latency idle p50 {:.0} ms, p95 {:.0} ms   (target p50 ≤ 500 ms)\nthroughput            {:.0} finalized tx/s over {} signed transfers   (target ≥ 5,000)\nsubmission            {:.0} tx/s accepted by the APIs\nlatency under load    p50 {:.0} ms, p95 {:.0} ms\nblocks                {:.1} per second",
            r.validators,
            r.idle_latency_p50_ms,
            r.idle_latency_p95_ms,
            r.throughput_tx_s,
            r.txs,
            r.submit_tx_s,
            r.loaded_latency_p50_ms,
            r.loaded_latency_p95_ms,
            r.blocks_per_s
        )
    });
    Ok(())
}

/// Starts a devnet of `validators` validators (no providers, an empty block every
/// `empty_block_interval_ms` at most) in a fresh temporary directory, runs `f` on it, and stops
/// it and removes it whatever `f` returned.
pub(crate) async fn with_validators<T>(
    validators: usize,
    empty_block_interval_ms: u64,
    f: impl AsyncFnOnce(&mut Devnet) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dir = tempfile_dir()?;
    let opts = DevnetOptions {
        dir: dir.clone(),
        validators,
        providers: 0,
        cheaters: 0,
        cheat_bps: 0,
        cheat_every_lease: false,
        cheat_blob: false,
        cheat_serving: false,
        cheat_answers: false,
        window: crate::devnet::DEVNET_WINDOW,
        serve_batch: crate::config::DEFAULT_SERVE_BATCH,
        empty_block_interval_ms,
        session_duration: "30m".into(),
        params: vec![],
        port_base: free_port_base(validators, 0)?,
    };
    let mut net = Devnet::start(&opts).await?;
    let result = f(&mut net).await;
    net.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The example Monte-Carlo module, the job of the marketplace benchmarks.
const MONTECARLO: &[u8] = include_bytes!("../../../../../examples/wasm/montecarlo.wasm");

/// Writes job `i` (a Monte-Carlo estimate over `items` input lines, one shard) into `dir` and
/// returns its job file.
fn montecarlo_job(
    dir: &std::path::Path,
    i: usize,
    items: usize,
) -> anyhow::Result<requester::jobfile::JobFile> {
    std::fs::create_dir_all(dir)?;
    let module = dir.join("montecarlo.wasm");
    if !module.exists() {
        std::fs::write(&module, MONTECARLO)?;
    }
    let lines: String = (0..items).map(|k| format!("samples={}\n", 5_000 + 100 * i + k)).collect();
    std::fs::write(dir.join(format!("job{i}.txt")), lines)?;
    let text = format!(
        "kind = \"wasm\"\nmodel = \"montecarlo.wasm\"\ninputs = [\"job{i}.txt\"]\ninput_format = \"lines\"\n\
         [market]\nmax_price = 100\ndeadline = \"10m\"\n"
    );
    requester::jobfile::JobFile::parse(&text, dir)
}

/// A new requester account funded by the devnet's faucet, and its sender, on validator 0.
async fn funded_requester(net: &Devnet) -> anyhow::Result<(NodeClient, crate::sender::TxSender)> {
    let client = NodeClient::new(&net.validator_urls()[0]);
    let requester = SecretKey::generate();
    crate::sender::TxSender::new(faucet_key(&net.dir)?, client.clone())
        .send(
            TxPayload::Transfer { to: requester.public(), amount: Amount(1_000_000_000_000) },
            Duration::from_secs(60),
        )
        .await
        .context("funding the requester")?;
    Ok((client.clone(), crate::sender::TxSender::new(requester, client)))
}

/// The devnet a benchmark runs on: its size, and which of its providers cheat, and how.
pub(crate) struct BenchDevnet {
    /// Validators.
    pub validators: usize,
    /// Providers.
    pub providers: usize,
    /// How many of the providers (the last ones) cheat.
    pub cheaters: usize,
    /// Share of items (or, with `cheat_answers`, of chat answers) a cheater corrupts, bps.
    pub cheat_bps: u32,
    /// Cheaters alter chat answers instead of lease output items.
    pub cheat_answers: bool,
    /// When providers commit their serving windows.
    pub window: WindowPolicy,
    /// Chat runs a provider decodes together.
    pub serve_batch: usize,
    /// Least time, ms, between an empty block and its parent.
    pub empty_block_interval_ms: u64,
}

impl Default for BenchDevnet {
    fn default() -> Self {
        BenchDevnet {
            validators: 0,
            providers: 0,
            cheaters: 0,
            cheat_bps: 0,
            cheat_answers: false,
            window: crate::devnet::DEVNET_WINDOW,
            serve_batch: crate::config::DEFAULT_SERVE_BATCH,
            empty_block_interval_ms: crate::config::default_empty_block_interval_ms(),
        }
    }
}

/// Starts the devnet `d` in a fresh temporary directory, waits until every provider has asks
/// on the book, runs `f` on it, and stops it whatever `f` returned. The directory is removed,
/// unless `keep` says the result needs the devnet's logs (then it says where they are).
async fn with_devnet<T>(
    d: BenchDevnet,
    keep: impl FnOnce(&T) -> bool,
    f: impl AsyncFnOnce(&Devnet, &std::path::Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dir = tempfile_dir()?;
    let opts = DevnetOptions {
        dir: dir.join("network"),
        validators: d.validators,
        providers: d.providers,
        cheaters: d.cheaters,
        cheat_bps: d.cheat_bps,
        cheat_every_lease: false,
        cheat_blob: false,
        cheat_serving: false,
        cheat_answers: d.cheat_answers,
        window: d.window,
        serve_batch: d.serve_batch,
        empty_block_interval_ms: d.empty_block_interval_ms,
        session_duration: "30m".into(),
        params: vec![],
        port_base: free_port_base(d.validators, d.providers)?,
    };
    let mut net = Devnet::start(&opts).await?;
    let result = async {
        net.wait_ready(Duration::from_secs(120)).await?;
        net.wait_providers(Duration::from_secs(300)).await?;
        f(&net, &dir).await
    }
    .await;
    net.stop().await;
    if result.as_ref().is_ok_and(keep) {
        eprintln!("the devnet's logs are kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

pub(crate) fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("agora-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn run_chain_bench(
    g: &Global,
    a: &ChainBenchArgs,
    net: &mut Devnet,
) -> anyhow::Result<ChainBenchReport> {
    let quiet = g.json;
    let h = net.wait_ready(Duration::from_secs(120)).await?;
    let clients: Vec<NodeClient> = net.urls().iter().map(|u| NodeClient::new(u)).collect();
    let chain = clients[0].status().await?.chain_id;
    let faucet = faucet_key(&net.dir)?;
    let (seen, blocks) = watch_finality(&clients[0], h + 1);

    // 1. Idle finality latency: one transfer at a time.
    let mut idle = vec![];
    let mut nonce = clients[0].account(&faucet.public()).await?.state.nonce;
    for _ in 0..a.latency_samples {
        let tx = transfer(&faucet, nonce, &chain);
        nonce += 1;
        let start = Instant::now();
        let id = clients[0].submit(&tx).await?;
        wait_all(&seen, &[id], Duration::from_secs(30)).await?;
        idle.push(seen.lock().expect("not poisoned")[&id].duration_since(start).as_secs_f64() * 1000.0);
    }
    idle.sort_by(f64::total_cmp);

    // 2. Fund the senders (the faucet's nonce window is 64 per round).
    let senders: Vec<SecretKey> =
        (0..a.senders).map(|i| SecretKey::from_label(&format!("bench-sender-{i}"))).collect();
    for chunk in senders.chunks(60) {
        let mut ids = vec![];
        for s in chunk {
            let tx = Transaction {
                sender: faucet.public(),
                nonce,
                fee: devnet_fee(),
                payload: TxPayload::Transfer { to: s.public(), amount: Amount(1_000_000) },
            }
            .sign(&chain, &faucet);
            nonce += 1;
            ids.push(clients[0].submit(&tx).await?);
        }
        wait_all(&seen, &ids, Duration::from_secs(60)).await?;
    }

    // 3. Throughput: every sender's transfers, submitted round-robin to every node.
    let per = a.txs.div_ceil(a.senders.max(1)).min(60) as u64;
    let txs: Vec<SignedTx> = (0..per)
        .flat_map(|n| senders.iter().map(move |s| (s, n)))
        .map(|(s, n)| transfer(s, n, &chain))
        .take(a.txs)
        .collect();
    let ids: Vec<Hash> = txs.iter().map(SignedTx::id).collect();
    let submitted: SeenAt = Arc::default();
    let pb = if quiet { ProgressBar::hidden() } else { ProgressBar::new(txs.len() as u64) };
    let start = Instant::now();
    let blocks_before = blocks.lock().expect("not poisoned").len();
    let batches: Vec<Vec<SignedTx>> = txs.chunks(a.batch.max(1)).map(<[SignedTx]>::to_vec).collect();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(batches.into_iter().enumerate())
        .map(|(i, batch)| {
            let client = clients[i % clients.len()].clone();
            let submitted = submitted.clone();
            let pb = pb.clone();
            async move {
                let t = Instant::now();
                let results =
                    client.submit_batch(&batch).await.with_context(|| format!("submitting batch {i}"))?;
                if let Some(e) = results.iter().find_map(|r| r.error.clone()) {
                    bail!("a transaction of batch {i} was refused: {e}");
                }
                let mut s = submitted.lock().expect("not poisoned");
                for tx in &batch {
                    s.insert(tx.id(), t);
                }
                pb.inc(batch.len() as u64);
                Ok(())
            }
        })
        .buffer_unordered(a.concurrency)
        .collect()
        .await;
    let submit_secs = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    wait_all(&seen, &ids, Duration::from_secs(300)).await?;
    let seen = seen.lock().expect("not poisoned");
    let last = ids.iter().map(|id| seen[id]).max().expect("non-empty");
    let secs = last.duration_since(start).as_secs_f64();
    let submitted = submitted.lock().expect("not poisoned");
    let mut loaded: Vec<f64> =
        ids.iter().map(|id| seen[id].duration_since(submitted[id]).as_secs_f64() * 1000.0).collect();
    loaded.sort_by(f64::total_cmp);
    let blocks = blocks.lock().expect("not poisoned");
    let run_blocks = blocks.len() - blocks_before;
    Ok(ChainBenchReport {
        validators: a.validators,
        idle_latency_p50_ms: percentile(&idle, 0.5),
        idle_latency_p95_ms: percentile(&idle, 0.95),
        txs: ids.len(),
        throughput_tx_s: ids.len() as f64 / secs,
        submit_tx_s: ids.len() as f64 / submit_secs,
        loaded_latency_p50_ms: percentile(&loaded, 0.5),
        loaded_latency_p95_ms: percentile(&loaded, 0.95),
        blocks_per_s: run_blocks as f64 / secs,
    })
}
