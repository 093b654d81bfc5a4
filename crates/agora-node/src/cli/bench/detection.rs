//! `agora bench detection`: does the chain catch cheaters as often as it says it will?
//!
//! A devnet whose providers all cheat (each corrupts every output item independently with
//! probability `--cheat-bps`), except provider 0, runs many one-shard WebAssembly jobs. Each
//! lease that reaches a commitment is a trial: the chain stated its audit probability and
//! sample size for it, so the chance it is caught is `p_audit × (1 − (1 − f)^sample)`. The
//! bench compares the number of leases convicted of fraud with the sum of those chances
//! (a binomial test), and checks that the honest provider was never convicted. Convicted
//! providers are ejected, so later jobs go to the others; each lease is still one trial.

use crate::client::NodeClient;
use crate::devnet::Devnet;
use crate::requester::{self, follow};
use agora_ledger::events::LeaseFailure;
use agora_ledger::leases::LeaseStatus;
use clap::Args;
use futures::StreamExt;
use indicatif::ProgressBar;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// `agora bench detection` options.
#[derive(Debug, Args)]
pub struct DetectionBenchArgs {
    /// Validators in the devnet.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Providers; all but provider 0 cheat.
    #[arg(long, default_value_t = 12)]
    pub providers: usize,
    /// One-shard jobs to run.
    #[arg(long, default_value_t = 40)]
    pub jobs: usize,
    /// Items per job (every one is sampled when fewer than the chain's sample size).
    #[arg(long, default_value_t = 4)]
    pub items: usize,
    /// Share of items a cheater corrupts, bps (500 = 5%, the fraction audits are sized for).
    #[arg(long, default_value_t = 500)]
    pub cheat_bps: u32,
    /// Jobs in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

/// What `agora bench detection` found.
#[derive(Debug, Serialize)]
pub struct DetectionReport {
    /// Leases of cheating providers that reached a commitment (the trials).
    pub cheating_leases: usize,
    /// Of those, leases convicted of fraud.
    pub caught: usize,
    /// caught / cheating_leases.
    pub measured_rate: f64,
    /// Mean of the per-lease catch probabilities the chain's own numbers imply.
    pub stated_rate: f64,
    /// (caught − expected) / standard deviation of the binomial sum.
    pub z_score: f64,
    /// Leases the honest provider committed.
    pub honest_leases: usize,
    /// Of those, leases convicted (must be 0).
    pub honest_convicted: usize,
    /// Providers ejected for fraud.
    pub ejected_providers: usize,
}

/// Runs `agora bench detection`.
pub async fn detection(g: &crate::cli::Global, a: DetectionBenchArgs) -> anyhow::Result<()> {
    if a.providers < 2 {
        anyhow::bail!("--providers must be at least 2: provider 0 is honest, the others cheat");
    }
    let d = super::BenchDevnet {
        validators: a.validators,
        providers: a.providers,
        cheaters: a.providers - 1,
        cheat_bps: a.cheat_bps,
        cheat_answers: false,
        ..Default::default()
    };
    let r = super::with_devnet(d, |_| false, async |net, dir| run(g, &a, net, dir).await).await?;
    crate::cli::output::print(g.json, &r, |r| {
        format!(
            "cheating leases       {} ({} bps of items corrupted)\n\
             caught                {} = {:.1}%; the chain's stated probabilities imply {:.1}% (z = {:+.2})\n\
             honest provider       {} leases, {} convicted\n\
             cheaters ejected      {}",
            r.cheating_leases,
            a.cheat_bps,
            r.caught,
            r.measured_rate * 100.0,
            r.stated_rate * 100.0,
            r.z_score,
            r.honest_leases,
            r.honest_convicted,
            r.ejected_providers,
        )
    });
    Ok(())
}

async fn run(
    g: &crate::cli::Global,
    a: &DetectionBenchArgs,
    net: &Devnet,
    dir: &Path,
) -> anyhow::Result<DetectionReport> {
    let (client, sender) = super::funded_requester(net).await?;
    let data_dir = dir.join("requester");
    let jobs_dir = dir.join("jobs");
    let pb = if g.json { ProgressBar::hidden() } else { ProgressBar::new(a.jobs as u64) };
    let finished: Vec<anyhow::Result<agora_ledger::jobs::Job>> = futures::stream::iter(0..a.jobs)
        .map(|i| {
            let (client, sender, data_dir, jobs_dir, pb) = (&client, &sender, &data_dir, &jobs_dir, &pb);
            async move {
                let job = super::montecarlo_job(jobs_dir, i, a.items)?;
                let record = requester::submit(client, sender, data_dir, &job).await?;
                let done =
                    follow::follow(client, sender, &record, ProgressBar::hidden(), Duration::from_secs(900))
                        .await;
                pb.inc(1);
                done
            }
        })
        .buffer_unordered(a.concurrency.max(1))
        .collect()
        .await;
    pb.finish_and_clear();
    let jobs = finished.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    // Provider 0 is the honest one (a devnet's cheaters are its last providers).
    let honest = match net.configs.iter().find(|c| c.validator.is_none()) {
        Some(c) => Some(crate::config::load_key(&c.key_file)?.public()),
        None => None,
    };
    tally(&client, honest, a, &jobs).await
}

/// Counts trials and convictions over every lease of `jobs`.
async fn tally(
    client: &NodeClient,
    honest: Option<agora_core::AccountId>,
    a: &DetectionBenchArgs,
    jobs: &[agora_ledger::jobs::Job],
) -> anyhow::Result<DetectionReport> {
    let (mut trials, mut caught, mut expected, mut variance) = (0usize, 0usize, 0.0f64, 0.0f64);
    let (mut honest_leases, mut honest_convicted) = (0, 0);
    let mut ejected = std::collections::BTreeSet::new();
    for job in jobs {
        for lease_id in job.shards.iter().flat_map(|s| &s.history) {
            let lease = client.lease(*lease_id).await?;
            if lease.commitment.is_none() {
                continue;
            }
            let fraud = lease.status == LeaseStatus::Failed(LeaseFailure::Fraud);
            if Some(lease.provider) == honest {
                honest_leases += 1;
                honest_convicted += usize::from(fraud);
                continue;
            }
            let v = &lease.verification;
            let detect = agora_ledger::audits::detection_ppm(u64::from(a.cheat_bps), v.sample);
            let p = f64::from(v.audit_ppm) / 1e6 * f64::from(detect) / 1e6;
            trials += 1;
            expected += p;
            variance += p * (1.0 - p);
            if fraud {
                caught += 1;
                ejected.insert(lease.provider);
            }
        }
    }
    anyhow::ensure!(trials > 0, "no cheating lease reached a commitment; run more jobs");
    Ok(DetectionReport {
        cheating_leases: trials,
        caught,
        measured_rate: caught as f64 / trials as f64,
        stated_rate: expected / trials as f64,
        z_score: if variance > 0.0 { (caught as f64 - expected) / variance.sqrt() } else { 0.0 },
        honest_leases,
        honest_convicted,
        ejected_providers: ejected.len(),
    })
}
