//! `agora job ...`: submit, quote, follow, fetch results, receipts, cancel.

use super::Global;
use super::output::print;
use crate::client::NodeClient;
use crate::requester::{self, jobfile::JobFile, receipt, record::JobRecord, results};
use crate::sender::TxSender;
use agora_core::tx::TxPayload;
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::time::Duration;

/// `agora job ...`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Upload inputs (encrypted), lock escrow and submit a job; with --wait, follow it to
    /// settlement and print the receipt.
    Submit {
        /// The job file (format: see the README, "Job files").
        file: PathBuf,
        /// Follow the job until it settles and print its receipt (checking each lease's
        /// encrypted outputs and confirming or disputing them before the provider is paid).
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
    },
    /// Whether a job can be placed now, at what price, with what detection probability — before
    /// any money moves.
    Quote {
        /// The job file.
        file: PathBuf,
    },
    /// A job's shards and their stages.
    Status {
        /// Job id.
        id: u64,
    },
    /// Follow a job until it settles (sharing input keys with its providers, and checking each
    /// lease's delivered encrypted outputs: confirmed, the provider is paid at once; disputed,
    /// an auditor decrypts them with the key this discloses).
    Wait {
        /// Job id.
        id: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
    },
    /// Download, decrypt and check a finished job's outputs into a directory.
    Result {
        /// Job id.
        id: u64,
        /// Output directory.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// What the job cost and how it was verified; --verify checks proofs against finalized headers.
    Receipt {
        /// Job id.
        id: u64,
        /// Check every lease's state proof and the finalization certificates of the headers.
        #[arg(long)]
        verify: bool,
        /// Genesis file whose committee to start from: later committees are learned from the
        /// epochs' last blocks, each checked against the one before (default: trust the
        /// committee the node reports now, which covers only the current epoch).
        #[arg(long)]
        genesis: Option<PathBuf>,
    },
    /// Cancel a job: open shards are refunded, running leases are cancelled.
    Cancel {
        /// Job id.
        id: u64,
    },
}

/// Runs a job command.
pub async fn run(g: &Global, cmd: JobCommand) -> anyhow::Result<()> {
    let client = g.client();
    match cmd {
        JobCommand::Submit { file, wait, timeout } => {
            let job = JobFile::load(&file)?;
            let key = g.signer()?;
            let sender = TxSender::new(key.clone(), client.clone());
            let record = requester::submit(&client, &sender, &g.data_dir, &job).await?;
            if !wait {
                print(g.json, &serde_json::json!({"job": record.job}), |_| {
                    format!(
                        "submitted job {}\nthe node's key agent shares its input keys with the providers; follow it with: agora job wait {}",
                        record.job, record.job
                    )
                });
                return Ok(());
            }
            if !g.json {
                eprintln!("submitted job {}", record.job);
            }
            follow_and_print(g, &client, &sender, &record, timeout).await?;
        }
        JobCommand::Quote { file } => {
            let job = JobFile::load(&file)?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
            let dir = g.data_dir.clone();
            let node = g.node.clone();
            let job2 = job.clone();
            let prepared = tokio::task::spawn_blocking(move || {
                requester::prepare::prepare(&job2, &dir, vec![node], now)
            })
            .await??;
            let requester = g.signer().map(|k| k.public()).unwrap_or(agora_core::PublicKey([0; 32]));
            let q = requester::quote::quote(&client, &prepared.manifest, &requester).await?;
            print(g.json, &q, |q| {
                let mut s = if q.placeable {
                    "placeable now".to_string()
                } else {
                    format!("NOT placeable now:\n  - {}", q.reasons.join("\n  - "))
                };
                s += &format!(
                    "\n{} eligible providers; {} device-seconds; expected price {} (cost {}), at most {}\naudit probability {:.2}, sample {} items → detection of 5% cheating {:.1}%",
                    q.eligible_providers.len(),
                    q.quantity,
                    q.expected_unit_price.map_or("unknown".into(), |p| p.to_string()),
                    q.expected_cost.map_or("unknown".into(), |p| p.to_string()),
                    q.max_cost,
                    q.audit_probability,
                    q.sample,
                    q.detection_probability * 100.0
                );
                s
            });
            if !q.placeable {
                std::process::exit(3);
            }
        }
        JobCommand::Status { id } => {
            let job = client.job(id).await?;
            print(g.json, &job, |j| {
                let mut s = format!(
                    "job {id}: {} {} shards, max price {}{}\n",
                    j.manifest.kind(),
                    j.shards.len(),
                    j.manifest.max_unit_price,
                    if j.finished { " (finished)" } else { "" }
                );
                for (i, sh) in j.shards.iter().enumerate() {
                    s += &format!("  shard {i}: {:?} (attempts {})\n", sh.status, sh.attempts);
                }
                s.trim_end().to_string()
            });
        }
        JobCommand::Wait { id, timeout } => {
            let record = JobRecord::load(&g.data_dir, id)?.unwrap_or(JobRecord {
                job: id,
                node: g.node.clone(),
                keys: vec![],
                output_key: None,
            });
            let sender = TxSender::new(g.signer()?, client.clone());
            follow_and_print(g, &client, &sender, &record, timeout).await?;
        }
        JobCommand::Result { id, out } => {
            let job = client.job(id).await?;
            let key = g.signer()?;
            if job.requester != key.public() {
                anyhow::bail!(
                    "job {id} belongs to {}; its outputs are encrypted to that account's key for the job",
                    job.requester
                );
            }
            let output = match JobRecord::load(&g.data_dir, id)? {
                Some(record) => record.output_secret(&key),
                None if job.manifest.output_key.is_none() => key,
                None => anyhow::bail!(
                    "job {id}'s outputs are encrypted to a key made for it when it was submitted, kept in its \
                     record on that machine; run `agora job result` there"
                ),
            };
            let shards = results::fetch(&client, &output, &job).await?;
            let n = results::write(&out, job.manifest.kind(), &shards)?;
            print(g.json, &serde_json::json!({"job": id, "items": n, "dir": out}), |_| {
                format!("{n} output items verified against their commitments -> {}", out.display())
            });
        }
        JobCommand::Receipt { id, verify, genesis } => {
            let job = client.job(id).await?;
            let mut r = receipt::build(&client, id, &job).await?;
            if verify {
                let (trust, epoch_length) = match genesis {
                    Some(path) => {
                        let genesis = crate::config::load_genesis(&path)?;
                        let state = genesis.build().context("the genesis file is invalid")?;
                        let members = state.meta().committee.clone();
                        (receipt::TrustedCommittee { epoch: 0, members }, genesis.params.blocks_per_epoch())
                    }
                    None => {
                        let status = client.status().await?;
                        let trust =
                            receipt::TrustedCommittee { epoch: status.epoch, members: status.committee };
                        (trust, client.params().await?.blocks_per_epoch())
                    }
                };
                receipt::verify(&client, &mut r, epoch_length, trust)
                    .await
                    .context("verifying the receipt")?;
            }
            print(g.json, &r, receipt::render);
        }
        JobCommand::Cancel { id } => {
            let sender = TxSender::new(g.signer()?, client.clone());
            sender.send(TxPayload::CancelJob { job: id }, Duration::from_secs(60)).await?;
            print(g.json, &serde_json::json!({"job": id, "cancelled": true}), |_| {
                format!("job {id} cancelled")
            });
        }
    }
    Ok(())
}

/// Follows `record`'s job to the end with a progress display, then prints its receipt.
async fn follow_and_print(
    g: &Global,
    client: &NodeClient,
    sender: &TxSender,
    record: &JobRecord,
    timeout_secs: u64,
) -> anyhow::Result<()> {
    let pb = requester::follow::progress_bar(!g.json);
    let done =
        requester::follow::follow(client, sender, record, pb, Duration::from_secs(timeout_secs)).await?;
    let r = receipt::build(client, record.job, &done).await?;
    print(g.json, &r, receipt::render);
    Ok(())
}
