//! `agora bench flood`: does consensus come first when every validator's API is flooded?
//!
//! Starts a local devnet and measures two windows of the same length: idle, then while
//! flooders hammer every validator with what anyone may send — status, block, transaction and
//! proof reads, event replays from height 1, and batches of transactions with junk signatures.
//! In both windows an honest client sends one transfer at a time and times it to finality.
//! Flooders send from other loopback addresses (127.0.0.2 and up) than the honest client
//! (127.0.0.1), as distinct hosts would, so per-client limits apply to them and not to it.
//! Reports blocks per second and finality p50/p95 for both windows, their ratios against the
//! targets (under flood at least 50% of idle throughput, finality p50 within 3× idle), and what
//! the flooders were answered.

use super::{SeenAt, percentile, transfer, wait_all, watch_finality, with_validators};
use crate::cli::Global;
use crate::cli::output::print;
use crate::client::NodeClient;
use crate::devnet::{Devnet, faucet_key};
use agora_core::{Encode, Hash, SecretKey};
use clap::Args;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `agora bench flood` options.
#[derive(Debug, Args)]
pub struct FloodBenchArgs {
    /// Validators in the devnet.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Length of each window (idle, then flooded), seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Flooding connections per validator.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Distinct flooding addresses (127.0.0.2, 127.0.0.3, ...).
    #[arg(long, default_value_t = 4)]
    pub sources: u8,
    /// Transactions per junk-signature batch.
    #[arg(long, default_value_t = 1_000)]
    pub junk_batch: usize,
}

/// One window's figures.
#[derive(Debug, Serialize)]
pub struct Window {
    /// Blocks finalized per second.
    pub blocks_per_s: f64,
    /// Honest transfers timed to finality.
    pub samples: usize,
    /// Their finality latency, p50, ms.
    pub finality_p50_ms: f64,
    /// p95, ms.
    pub finality_p95_ms: f64,
}

/// What the flooders were answered.
#[derive(Debug, Default, Serialize)]
pub struct FloodAnswers {
    /// Requests sent.
    pub sent: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Refused with 4xx (429 rate and concurrency limits, 4xx for the junk itself).
    pub refused_4xx: u64,
    /// Refused with 503 (a full queue or pool).
    pub refused_503: u64,
    /// Failed otherwise (connection errors, timeouts).
    pub failed: u64,
}

/// What `agora bench flood` measured.
#[derive(Debug, Serialize)]
pub struct FloodReport {
    /// Validators.
    pub validators: usize,
    /// Window length, seconds.
    pub seconds: u64,
    /// The idle window.
    pub idle: Window,
    /// The flooded window.
    pub flood: Window,
    /// Flooded blocks/s over idle blocks/s (target ≥ 0.5).
    pub throughput_ratio: f64,
    /// Flooded finality p50 over idle p50 (target ≤ 3).
    pub finality_ratio: f64,
    /// What the flooders were answered.
    pub answers: FloodAnswers,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    refused_4xx: AtomicU64,
    refused_503: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn count(&self, result: Result<reqwest::StatusCode, reqwest::Error>) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let bucket = match result {
            Ok(s) if s.is_success() => &self.ok,
            Ok(s) if s == reqwest::StatusCode::SERVICE_UNAVAILABLE => &self.refused_503,
            Ok(s) if s.is_client_error() => &self.refused_4xx,
            _ => &self.failed,
        };
        bucket.fetch_add(1, Ordering::Relaxed);
    }

    fn answers(&self) -> FloodAnswers {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FloodAnswers {
            sent: get(&self.sent),
            ok: get(&self.ok),
            refused_4xx: get(&self.refused_4xx),
            refused_503: get(&self.refused_503),
            failed: get(&self.failed),
        }
    }
}

/// A `POST /api/v1/txs/batch` body of `n` well-formed transfers whose signatures are for
/// another chain: every one costs the node a signature check and is refused.
fn junk_batch(n: usize) -> String {
    let txs: Vec<String> = (0..n)
        .map(|i| {
            let key = SecretKey::from_label(&format!("flood-{i}"));
            hex::encode(transfer(&key, 0, "not-this-chain").encode())
        })
        .collect();
    serde_json::json!({ "txs_hex": txs }).to_string()
}

/// One flooding connection: cycles through the request kinds until `stop`.
async fn flood_one(
    url: String,
    source: IpAddr,
    seed: u64,
    junk: Arc<String>,
    stop: Arc<AtomicBool>,
    counts: Arc<Counters>,
) {
    let Ok(http) = reqwest::Client::builder()
        .local_address(source)
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    else {
        return;
    };
    let faucet = SecretKey::from_label("flood-proof").public();
    let mut i = seed;
    while !stop.load(Ordering::Relaxed) {
        i = i.wrapping_add(1);
        let result = match i % 6 {
            0 => http.get(format!("{url}/api/v1/status")).send().await,
            1 => http.get(format!("{url}/api/v1/blocks/{}", 1 + i % 50)).send().await,
            2 => http.get(format!("{url}/api/v1/txs/{}", Hash::of(&i.to_le_bytes()))).send().await,
            3 => http.get(format!("{url}/api/v1/proofs/account/{faucet}")).send().await,
            4 => {
                http.post(format!("{url}/api/v1/txs/batch"))
                    .header("content-type", "application/json")
                    .body(junk.as_str().to_owned())
                    .send()
                    .await
            }
            _ => match http.get(format!("{url}/api/v1/events?from=1")).send().await {
                // Read a little of the replay, then hang up, as a scraper would.
                Ok(mut r) => {
                    let status = r.status();
                    let _ = tokio::time::timeout(Duration::from_millis(200), r.chunk()).await;
                    counts.count(Ok(status));
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        counts.count(result.map(|r| r.status()));
    }
}

/// Sends one transfer at a time from the faucet for `window`, timing each to finality.
async fn time_transfers(
    client: &NodeClient,
    seen: &SeenAt,
    chain: &str,
    faucet: &SecretKey,
    nonce: &mut u64,
    window: Duration,
) -> anyhow::Result<Vec<f64>> {
    let start = Instant::now();
    let mut samples = vec![];
    while start.elapsed() < window {
        let tx = transfer(faucet, *nonce, chain);
        *nonce += 1;
        let sent = Instant::now();
        let id = client.submit(&tx).await?;
        wait_all(seen, &[id], Duration::from_secs(60)).await?;
        let at = seen.lock().expect("not poisoned")[&id];
        samples.push(at.duration_since(sent).as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

fn window(samples: &[f64], blocks: usize, secs: f64) -> Window {
    Window {
        blocks_per_s: blocks as f64 / secs,
        samples: samples.len(),
        finality_p50_ms: percentile(samples, 0.5),
        finality_p95_ms: percentile(samples, 0.95),
    }
}

/// Runs `agora bench flood`.
pub async fn flood(g: &Global, a: FloodBenchArgs) -> anyhow::Result<()> {
    // Empty blocks unpaced: rounds go as fast as consensus allows, so the block rate measures
    // how much the flood slows consensus, not the pacing interval.
    let r = with_validators(a.validators, 0, async |net| run(&a, net).await).await?;
    print(g.json, &r, |r| {
        format!(
            "validators {}, {} s per window\n\
             idle     {:.1} blocks/s, finality p50 {:.0} ms, p95 {:.0} ms ({} transfers)\n\
             flooded  {:.1} blocks/s, finality p50 {:.0} ms, p95 {:.0} ms ({} transfers)\n\
             ratio    throughput {:.2} (target ≥ 0.50), finality p50 {:.2}× (target ≤ 3)\n\
             flooders sent {} requests: {} ok, {} refused 4xx, {} refused 503, {} failed",
            r.validators,
            r.seconds,
            r.idle.blocks_per_s,
            r.idle.finality_p50_ms,
            r.idle.finality_p95_ms,
            r.idle.samples,
            r.flood.blocks_per_s,
            r.flood.finality_p50_ms,
            r.flood.finality_p95_ms,
            r.flood.samples,
            r.throughput_ratio,
            r.finality_ratio,
            r.answers.sent,
            r.answers.ok,
            r.answers.refused_4xx,
            r.answers.refused_503,
            r.answers.failed
        )
    });
    Ok(())
}

async fn run(a: &FloodBenchArgs, net: &mut Devnet) -> anyhow::Result<FloodReport> {
    let h = net.wait_ready(Duration::from_secs(120)).await?;
    let urls = net.validator_urls();
    let client = NodeClient::new(&urls[0]);
    let chain = client.status().await?.chain_id;
    let faucet = faucet_key(&net.dir)?;
    let mut nonce = client.account(&faucet.public()).await?.state.nonce;
    let (seen, blocks) = watch_finality(&client, h + 1);
    let span = Duration::from_secs(a.seconds.max(1));
    let count_blocks = || blocks.lock().expect("not poisoned").len();

    let (t, b) = (Instant::now(), count_blocks());
    let idle = time_transfers(&client, &seen, &chain, &faucet, &mut nonce, span).await?;
    let idle = window(&idle, count_blocks() - b, t.elapsed().as_secs_f64());

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counters::default());
    let junk = Arc::new(junk_batch(a.junk_batch));
    let mut flooders = vec![];
    for (v, url) in urls.iter().enumerate() {
        for c in 0..a.connections {
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (c % a.sources.max(1) as usize) as u8));
            let seed = (v * a.connections + c) as u64;
            flooders.push(tokio::spawn(flood_one(
                url.clone(),
                source,
                seed,
                junk.clone(),
                stop.clone(),
                counts.clone(),
            )));
        }
    }
    // Let the flood build up before timing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (t, b) = (Instant::now(), count_blocks());
    let flooded = time_transfers(&client, &seen, &chain, &faucet, &mut nonce, span).await;
    let elapsed = t.elapsed().as_secs_f64();
    let flood_blocks = count_blocks() - b;
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        let _ = f.await;
    }
    let flood = window(&flooded?, flood_blocks, elapsed);
    Ok(FloodReport {
        validators: a.validators,
        seconds: a.seconds,
        throughput_ratio: flood.blocks_per_s / idle.blocks_per_s,
        finality_ratio: flood.finality_p50_ms / idle.finality_p50_ms,
        idle,
        flood,
        answers: counts.answers(),
    })
}
