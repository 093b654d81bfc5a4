//! `agora bench market`: the marketplace's latency and the cost of verification, on a local
//! devnet of real node processes.
//!
//! * **Latency.** Small WebAssembly jobs are submitted at a steady interval; each is timed from
//!   the moment the requester starts submitting (prepare, upload, escrow transaction) until the
//!   chain shows a lease (*running*: matched, the provider may start), a result commitment
//!   (*committed*) and the job finished with every shard settled (*settled*, which includes the
//!   audit window). Reported as p50/p95.
//! * **Verification overhead.** One large embedding job is run; the runtimes' own timers
//!   (`agora_runtime_seconds` in every node's `/metrics`) give the seconds providers spent
//!   computing it and the seconds auditors spent recomputing samples. New providers are audited
//!   on every lease until they build a clean streak, so this run measures the cost of one audit
//!   per lease; the steady-state overhead applies the chain's audit probability for a provider
//!   at the trust threshold (it only falls after that), with the same per-audit detection.

use super::percentile;
use crate::client::NodeClient;
use crate::devnet::Devnet;
use crate::requester::{self, follow, jobfile::JobFile, receipt};
use crate::sender::TxSender;
use agora_ledger::jobs::ShardStatus;
use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use indicatif::ProgressBar;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

const CORPUS: &str = include_str!("../../../../../bench/corpus/fortunes-200.txt");

/// `agora bench market` options.
#[derive(Debug, Args)]
pub struct MarketBenchArgs {
    /// Validators in the devnet.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Providers in the devnet.
    #[arg(long, default_value_t = 3)]
    pub providers: usize,
    /// Small WebAssembly jobs timed for latency.
    #[arg(long, default_value_t = 20)]
    pub jobs: usize,
    /// Seconds between two job submissions.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
    /// Items of the embedding job whose verification overhead is measured (0 skips it).
    #[arg(long, default_value_t = 3_000)]
    pub embed_items: usize,
}

/// What `agora bench market` measured.
#[derive(Debug, Serialize)]
pub struct MarketBenchReport {
    /// Validators.
    pub validators: usize,
    /// Providers.
    pub providers: usize,
    /// Jobs timed.
    pub jobs: usize,
    /// Mean time between finalized blocks during the run, ms.
    pub block_time_ms: f64,
    /// Blocks a commitment waits before payment (part of submit → settled).
    pub audit_window_blocks: u64,
    /// Submit → running, p50 and p95, ms.
    pub submit_to_running_ms: [f64; 2],
    /// Submit → committed, p50 and p95, ms.
    pub submit_to_committed_ms: [f64; 2],
    /// Submit → settled, p50 and p95, ms.
    pub submit_to_settled_ms: [f64; 2],
    /// The verification overhead measurement, unless skipped.
    pub overhead: Option<OverheadReport>,
}

/// The cost of verifying one large job.
#[derive(Debug, Serialize)]
pub struct OverheadReport {
    /// Items embedded.
    pub items: usize,
    /// Leases that settled the job.
    pub leases: usize,
    /// Of those, leases audited.
    pub audited_leases: usize,
    /// Items recomputed per audit.
    pub sample: u32,
    /// Chance one audit catches a provider cheating on 5% of a lease's items.
    pub per_audit_detection: f64,
    /// Provider compute, seconds.
    pub compute_s: f64,
    /// Auditor recompute, seconds.
    pub audit_s: f64,
    /// audit_s / compute_s in this run.
    pub measured_overhead: f64,
    /// Audit probability of a lease like these once its provider reaches the trust threshold.
    pub trusted_audit_probability: f64,
    /// Overhead at that probability: the per-audited-lease cost × the probability.
    pub steady_state_overhead: f64,
}

/// Runs `agora bench market`.
pub async fn market(g: &crate::cli::Global, a: MarketBenchArgs) -> anyhow::Result<()> {
    let d = super::BenchDevnet { validators: a.validators, providers: a.providers, ..Default::default() };
    let r = super::with_devnet(d, |_| false, async |net, dir| run(g, &a, net, dir).await).await?;
    crate::cli::output::print(g.json, &r, |r| {
        let mut s = format!(
            "devnet                {} validators, {} providers; block every {:.0} ms; audit window {} blocks\n\
             submit → running     p50 {:.0} ms, p95 {:.0} ms over {} jobs   (target p50 ≤ 3,000 ms)\n\
             submit → committed   p50 {:.0} ms, p95 {:.0} ms\n\
             submit → settled     p50 {:.0} ms, p95 {:.0} ms",
            r.validators,
            r.providers,
            r.block_time_ms,
            r.audit_window_blocks,
            r.submit_to_running_ms[0],
            r.submit_to_running_ms[1],
            r.jobs,
            r.submit_to_committed_ms[0],
            r.submit_to_committed_ms[1],
            r.submit_to_settled_ms[0],
            r.submit_to_settled_ms[1],
        );
        if let Some(o) = &r.overhead {
            s += &format!(
                "\nverification          {} items in {} leases ({} audited, {} items each, {:.1}% detection of 5% cheating per audit)\n\
                 \x20 compute {:.2} s, audits {:.2} s: {:.2}% overhead in this run (new providers: every lease audited)\n\
                 \x20 steady state: audit probability {:.1}% per lease → {:.2}% overhead   (target ≤ 2% at ≥ 99% detection)",
                o.items,
                o.leases,
                o.audited_leases,
                o.sample,
                o.per_audit_detection * 100.0,
                o.compute_s,
                o.audit_s,
                o.measured_overhead * 100.0,
                o.trusted_audit_probability * 100.0,
                o.steady_state_overhead * 100.0,
            );
        }
        s
    });
    Ok(())
}

async fn run(
    g: &crate::cli::Global,
    a: &MarketBenchArgs,
    net: &Devnet,
    dir: &Path,
) -> anyhow::Result<MarketBenchReport> {
    let (client, sender) = super::funded_requester(net).await?;
    let data_dir = dir.join("requester");
    let start_height = client.status().await?.height;
    let started = Instant::now();

    // Latency: small jobs at a steady interval, each followed to settlement.
    let jobs_dir = dir.join("jobs");
    let pb = if g.json { ProgressBar::hidden() } else { ProgressBar::new(a.jobs as u64) };
    pb.set_message("latency jobs settled");
    let timings: Vec<anyhow::Result<[f64; 3]>> = futures::stream::iter(0..a.jobs)
        .map(|i| {
            let (client, sender, data_dir, jobs_dir, pb) = (&client, &sender, &data_dir, &jobs_dir, &pb);
            async move {
                tokio::time::sleep(Duration::from_secs_f64(a.interval * i as f64)).await;
                let job = super::montecarlo_job(jobs_dir, i, 4)?;
                let t = time_job(client, sender, data_dir, &job).await;
                pb.inc(1);
                t
            }
        })
        .buffer_unordered(a.jobs.max(1))
        .collect()
        .await;
    pb.finish_and_clear();
    let timings = timings.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let stage = |i: usize| {
        let mut v: Vec<f64> = timings.iter().map(|t| t[i]).collect();
        v.sort_by(f64::total_cmp);
        [percentile(&v, 0.5), percentile(&v, 0.95)]
    };
    let blocks = client.status().await?.height.saturating_sub(start_height).max(1);
    let block_time_ms = started.elapsed().as_secs_f64() * 1000.0 / blocks as f64;

    let overhead = if a.embed_items == 0 {
        None
    } else {
        Some(overhead(g, a, net, &client, &sender, &data_dir, &jobs_dir).await?)
    };
    let params = client.params().await?;
    Ok(MarketBenchReport {
        validators: a.validators,
        providers: a.providers,
        jobs: timings.len(),
        block_time_ms,
        audit_window_blocks: agora_ledger::Params::u64(params.audit_window_blocks),
        submit_to_running_ms: stage(0),
        submit_to_committed_ms: stage(1),
        submit_to_settled_ms: stage(2),
        overhead,
    })
}

/// Submits `job` and follows it; returns ms from the start of submission to running,
/// committed and settled.
async fn time_job(
    client: &NodeClient,
    sender: &TxSender,
    data_dir: &Path,
    job: &JobFile,
) -> anyhow::Result<[f64; 3]> {
    let t0 = Instant::now();
    let record = requester::submit(client, sender, data_dir, job).await?;
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1000.0;
    // `follow` shares the input key with the provider; this loop only watches, more often.
    let follow = follow::follow(client, sender, &record, ProgressBar::hidden(), Duration::from_secs(600));
    let watch = async {
        let (mut running, mut committed) = (None, None);
        loop {
            let j = client.job(record.job).await?;
            let now = Instant::now();
            for s in &j.shards {
                let lease = match s.status {
                    ShardStatus::Leased(l) | ShardStatus::Done(l) => l,
                    _ => continue,
                };
                running.get_or_insert(now);
                if committed.is_none() && client.lease(lease).await?.commitment.is_some() {
                    committed = Some(now);
                }
            }
            if j.finished {
                return anyhow::Ok([ms(running.unwrap_or(now)), ms(committed.unwrap_or(now)), ms(now)]);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (followed, watched) = tokio::join!(follow, watch);
    followed?;
    watched
}

/// Sum of `agora_runtime_seconds_sum{phase=…,kind="embed"}` over every node's `/metrics`.
async fn runtime_seconds(net: &Devnet, phase: &str) -> anyhow::Result<f64> {
    let prefix = format!("agora_runtime_seconds_sum{{phase=\"{phase}\",kind=\"embed\"}}");
    let mut total = 0.0;
    for url in net.urls() {
        let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix(&prefix) {
                total += v.trim().parse::<f64>().context("a metrics value is not a number")?;
            }
        }
    }
    Ok(total)
}

/// Runs one large embedding job and measures what verifying it cost.
async fn overhead(
    g: &crate::cli::Global,
    a: &MarketBenchArgs,
    net: &Devnet,
    client: &NodeClient,
    sender: &TxSender,
    data_dir: &Path,
    jobs_dir: &Path,
) -> anyhow::Result<OverheadReport> {
    let texts: Vec<&str> = CORPUS.lines().filter(|l| !l.trim().is_empty()).collect();
    // Distinct items (a numbered copy of the corpus), so no two items are the same text.
    let corpus: String =
        (0..a.embed_items).map(|i| format!("{} ({})\n", texts[i % texts.len()], i / texts.len())).collect();
    std::fs::write(jobs_dir.join("corpus.txt"), corpus)?;
    let text = format!(
        "kind = \"embed\"\nmodel = \"all-minilm-l6-v2\"\ninputs = [\"corpus.txt\"]\n[params]\nbatch_size = 32\n\
         [market]\nshards = {}\nmax_price = 100\ndeadline = \"30m\"\nseconds_per_item = 0.2\n",
        a.providers.max(1)
    );
    let job = JobFile::parse(&text, jobs_dir)?;
    let (compute0, audit0) = (runtime_seconds(net, "compute").await?, runtime_seconds(net, "audit").await?);
    let pb = follow::progress_bar(!g.json);
    pb.set_prefix(format!("embedding {} items", a.embed_items));
    let record = requester::submit(client, sender, data_dir, &job).await?;
    let done = follow::follow(client, sender, &record, pb, Duration::from_secs(3600)).await?;
    let r = receipt::build(client, record.job, &done).await?;
    let compute_s = runtime_seconds(net, "compute").await? - compute0;
    let audit_s = runtime_seconds(net, "audit").await? - audit0;

    let leases = r.shards.len();
    let audited: Vec<_> = r.shards.iter().filter(|s| s.audited).collect();
    let sample = audited.iter().map(|s| s.sample).max().unwrap_or(0);
    let params = client.params().await?;
    let trusted = agora_ledger::registry::Trust {
        clean_streak: agora_ledger::Params::u64(params.trust_threshold),
        ..Default::default()
    };
    let mut trusted_p = 0.0f64;
    for s in &r.shards {
        let provider = client.provider(&s.provider.context("a settled shard has a provider")?).await?;
        let ppm = agora_ledger::audits::probability_for(
            &params,
            &trusted,
            provider.collateral,
            s.paid,
            done.manifest.policy,
        );
        trusted_p = trusted_p.max(f64::from(ppm) / 1e6);
    }
    let fraction = agora_ledger::Params::u64(params.detect_fraction_bps);
    let per_audited_lease =
        if audited.is_empty() { 0.0 } else { audit_s / (compute_s * audited.len() as f64 / leases as f64) };
    Ok(OverheadReport {
        items: a.embed_items,
        leases,
        audited_leases: audited.len(),
        sample,
        per_audit_detection: f64::from(agora_ledger::audits::detection_ppm(fraction, sample)) / 1e6,
        compute_s,
        audit_s,
        measured_overhead: audit_s / compute_s,
        trusted_audit_probability: trusted_p,
        steady_state_overhead: per_audited_lease * trusted_p,
    })
}
