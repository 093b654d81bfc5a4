//! The requester side: job files, preparing and submitting jobs, following them to settlement
//! (sharing input keys with assigned providers, checking delivered encrypted outputs), fetching
//! and checking results, receipts, and quotes; and the [`key_agent`] a node runs to do the
//! following on behalf of requesters who are offline.

pub mod delivery;
pub mod follow;
pub mod jobfile;
pub mod key_agent;
pub mod prepare;
pub mod quote;
pub mod receipt;
pub mod record;
pub mod results;

use agora_chain::TxStatus;
use agora_client::client::NodeClient;
use agora_client::sender::TxSender;
use agora_core::JobManifest;
use agora_core::tx::TxPayload;
use agora_ledger::Event;
use anyhow::{Context, bail};
use jobfile::JobFile;
use prepare::Prepared;
use record::JobRecord;
use std::path::Path;
use std::time::Duration;

/// Prepares, uploads and submits a job; returns its local record. Refuses before any escrow is
/// locked if the manifest is invalid, its data is not available, or the account cannot cover
/// the maximum cost.
pub async fn submit(
    client: &NodeClient,
    sender: &TxSender,
    data_dir: &Path,
    job: &JobFile,
) -> anyhow::Result<JobRecord> {
    let prepared = prepare_job(client, data_dir, job).await?;
    submit_prepared(client, sender, data_dir, &prepared).await
}

/// Builds the manifest and shard blobs of `job` (provisioning its model if needed), with the
/// node behind `client` as the data source. Nothing moves yet.
pub async fn prepare_job(client: &NodeClient, data_dir: &Path, job: &JobFile) -> anyhow::Result<Prepared> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let (job, dir, node) = (job.clone(), data_dir.to_path_buf(), client.url().to_string());
    tokio::task::spawn_blocking(move || prepare::prepare(&job, &dir, vec![node], now)).await?
}

/// Uploads a prepared job's data and submits it; saves and returns its local record.
pub async fn submit_prepared(
    client: &NodeClient,
    sender: &TxSender,
    data_dir: &Path,
    prepared: &Prepared,
) -> anyhow::Result<JobRecord> {
    check_funds(client, sender, &prepared.manifest).await?;
    prepare::upload(prepared, client.url(), sender.key()).await.context("uploading the model and inputs")?;
    // An encrypted job names the node's key agent, which shares the keys with matched
    // providers for as long as the job runs, whether or not this process stays online.
    let mut manifest = prepared.manifest.clone();
    let agent = if manifest.encrypted { crate::key_agent::agent_of(client).await } else { None };
    manifest.key_agent = agent;
    let job_id = submit_manifest(client, sender, &manifest).await?;
    if let Some(agent) = agent {
        let keys: Option<Vec<_>> = prepared.keys.iter().cloned().collect();
        let keys = keys.context("an encrypted job has a key for every shard")?;
        crate::key_agent::deposit_keys(client, sender.key(), &agent, job_id, &keys, prepared.output.as_ref())
            .await
            .context("handing the input keys to the node's key agent")?;
    }
    let record = JobRecord {
        job: job_id,
        node: client.url().to_string(),
        keys: prepared.keys.iter().map(|k| k.as_ref().map(|k| hex::encode(k.as_bytes()))).collect(),
        output_key: prepared.output.as_ref().map(|k| hex::encode(k.seed())),
    };
    record.save(data_dir)?;
    Ok(record)
}

/// Refuses a manifest whose maximum cost the account cannot cover.
async fn check_funds(client: &NodeClient, sender: &TxSender, m: &JobManifest) -> anyhow::Result<()> {
    let max_cost = m.max_cost().context("max price × quantity overflows")?;
    let balance = client.account(&sender.account()).await?.state.balance;
    if balance < max_cost {
        bail!(
            "insufficient funds: the job may cost up to {max_cost} (max price × {} device-seconds) and the account holds {balance}; lower max_price, or fund {}",
            m.total_quantity().unwrap_or(0),
            sender.account()
        );
    }
    Ok(())
}

/// Checks that the model and every shard's input can be fetched from one of the manifest's
/// sources, so providers will be able to run it.
pub async fn check_available(m: &JobManifest) -> anyhow::Result<()> {
    let clients = m
        .sources
        .iter()
        .map(|s| agora_store::http::Client::new(s).with_context(|| format!("source {s:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let wanted = std::iter::once(("the model".to_string(), m.model))
        .chain(m.shards.iter().enumerate().map(|(i, s)| (format!("the input of shard {i}"), s.input)));
    for (what, hash) in wanted {
        let mut found = false;
        for c in &clients {
            if matches!(c.stat(&hash).await, Ok(Some(_))) {
                found = true;
                break;
            }
        }
        if !found {
            bail!(
                "{what} ({hash}) is not available from any of the job's sources ({}); upload it first",
                m.sources.join(", ")
            );
        }
    }
    Ok(())
}

/// Submits a prepared manifest whose data is already uploaded, after checking it is valid,
/// affordable and available; returns the job id once the submission is final.
pub async fn submit_manifest(client: &NodeClient, sender: &TxSender, m: &JobManifest) -> anyhow::Result<u64> {
    m.validate().map_err(|e| anyhow::anyhow!("invalid manifest: {e}"))?;
    check_funds(client, sender, m).await?;
    check_available(m).await?;
    let id = sender.submit(TxPayload::SubmitJob { manifest: m.clone() }).await?;
    let status = client.wait_tx(&id, Duration::from_secs(60)).await?;
    let TxStatus::Finalized { receipt, .. } = status else { bail!("the job transaction was not finalized") };
    if let Some(e) = receipt.error {
        bail!("the ledger refused the job: {e}");
    }
    receipt
        .events
        .iter()
        .find_map(|e| match e {
            Event::JobSubmitted { job, .. } => Some(*job),
            _ => None,
        })
        .context("the receipt names no job")
}
