//! The requester side: job files, preparing and submitting jobs, following them to settlement
//! (sharing input keys with assigned providers), fetching and checking results, receipts, and
//! quotes.

pub mod follow;
pub mod jobfile;
pub mod prepare;
pub mod quote;
pub mod receipt;
pub mod record;
pub mod results;

use crate::client::NodeClient;
use crate::sender::TxSender;
use agora_chain::executor::TxStatus;
use agora_core::tx::TxPayload;
use agora_ledger::Event;
use anyhow::{Context, bail};
use jobfile::JobFile;
use record::JobRecord;
use std::path::Path;
use std::time::Duration;

/// Prepares, uploads and submits a job; returns its local record. Refuses before any escrow is
/// locked if the manifest is invalid or the account cannot cover the maximum cost.
pub async fn submit(
    client: &NodeClient,
    sender: &TxSender,
    data_dir: &Path,
    job: &JobFile,
) -> anyhow::Result<JobRecord> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let (job_owned, dir, node) = (job.clone(), data_dir.to_path_buf(), client.url().to_string());
    let prepared =
        tokio::task::spawn_blocking(move || prepare::prepare(&job_owned, &dir, vec![node], now)).await??;
    let max_cost = prepared.manifest.max_cost().context("max price × quantity overflows")?;
    let balance = client.account(&sender.account()).await?.state.balance;
    if balance < max_cost {
        bail!(
            "insufficient funds: the job may cost up to {max_cost} (max price × {} device-seconds) and the account holds {balance}; lower max_price, or fund {}",
            prepared.manifest.total_quantity().unwrap_or(0),
            sender.account()
        );
    }
    prepare::upload(&prepared, client.url()).await.context("uploading the model and inputs")?;
    let id = sender.submit(TxPayload::SubmitJob { manifest: prepared.manifest.clone() }).await?;
    let status = client.wait_tx(&id, Duration::from_secs(60)).await?;
    let TxStatus::Finalized { receipt, .. } = status else { bail!("the job transaction was not finalized") };
    if let Some(e) = receipt.error {
        bail!("the ledger refused the job: {e}");
    }
    let job_id = receipt
        .events
        .iter()
        .find_map(|e| match e {
            Event::JobSubmitted { job, .. } => Some(*job),
            _ => None,
        })
        .context("the receipt names no job")?;
    let record = JobRecord {
        job: job_id,
        node: client.url().to_string(),
        keys: prepared.keys.iter().map(|k| k.as_ref().map(|k| hex::encode(k.as_bytes()))).collect(),
    };
    record.save(data_dir)?;
    Ok(record)
}
