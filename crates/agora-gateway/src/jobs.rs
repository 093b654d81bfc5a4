//! Running one API request as a network job: the request's items become a job file (one item
//! per file, so texts may hold newlines), the job is prepared, checked against the key's
//! budget, submitted from the key's account, followed until every shard is verified and
//! settled, and its outputs are fetched and checked against the providers' commitments. The
//! gateway answers only with verified results, so the caller pays only for checked work.

use super::Gateway;
use super::keys::KeyEntry;
use super::openai::{AgoraInfo, OpenAiError};
use agora_core::{Amount, JobKind};
use agora_ledger::sessions::SessionStatus;
use agora_requester::{self as requester, follow, jobfile::JobFile, receipt, results};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// A request's verified outputs, in input order.
pub struct Verified {
    /// Output items.
    pub items: Vec<Vec<u8>>,
    /// The job behind them.
    pub info: AgoraInfo,
}

/// Items per shard: small requests take one lease; large embedding batches spread out.
const ITEMS_PER_SHARD: usize = 256;

/// Runs `items` through `model` as a `kind` job paid by `entry`'s account.
///
/// Everything is validated (the job file parses within the network's bounds, the manifest is
/// valid) and the key's budget is held before any money moves. From submission on, the job's
/// money is handled by a task of its own, not by this future: it submits the job, records its
/// maximum cost against the key durably, follows it, and reconciles the key's spend to what the
/// job actually cost — even if the client disconnects or this request times out (then
/// [`reconcile`] settles it later).
pub async fn run(
    gw: Arc<Gateway>,
    entry: &KeyEntry,
    kind: JobKind,
    model: &str,
    items: &[Vec<u8>],
    params: toml::Table,
) -> Result<Verified, OpenAiError> {
    let requests = gw.data_dir.join("gateway").join("requests");
    std::fs::create_dir_all(&requests).map_err(|e| internal(e.into()))?;
    let dir = tempfile::TempDir::new_in(&requests).map_err(|e| internal(e.into()))?;
    let job = job_file(&gw, dir.path(), kind, model, items, params)?;
    let prepared = requester::prepare_job(&gw.client, &gw.data_dir, &job)
        .await
        .map_err(|e| OpenAiError::invalid(None, format!("{e:#}")))?;
    let max_cost = prepared.manifest.max_cost().context("max cost overflows").map_err(internal)?;
    let (sender, reservation) = gw.reserve(entry, max_cost).await?;
    let (done, answer) = tokio::sync::oneshot::channel();
    let name = entry.name.clone();
    tokio::spawn(async move {
        let _dir = dir; // the inputs live until the job has them
        let _ = done.send(submit_and_settle(&gw, &name, &sender, &prepared, max_cost, reservation).await);
    });
    answer.await.map_err(|_| OpenAiError::internal("the job's task stopped"))?
}

/// The job file of a request: one item per file (so texts may hold newlines), the gateway's
/// market terms, one shard per [`ITEMS_PER_SHARD`] items.
fn job_file(
    gw: &Gateway,
    dir: &std::path::Path,
    kind: JobKind,
    model: &str,
    items: &[Vec<u8>],
    params: toml::Table,
) -> Result<JobFile, OpenAiError> {
    let mut inputs = vec![];
    for (i, item) in items.iter().enumerate() {
        let name = format!("item-{i:05}");
        std::fs::write(dir.join(&name), item).map_err(|e| internal(e.into()))?;
        inputs.push(toml::Value::String(name));
    }
    let shards = items.len().div_ceil(ITEMS_PER_SHARD).clamp(1, agora_core::manifest::MAX_SHARDS) as i64;
    let mut market = gw.market.clone();
    market.insert("shards".into(), shards.into());
    let mut table = toml::Table::new();
    table.insert("kind".into(), kind.name().into());
    table.insert("model".into(), model.into());
    table.insert("inputs".into(), toml::Value::Array(inputs));
    table.insert("input_format".into(), "files".into());
    table.insert("params".into(), toml::Value::Table(params));
    table.insert("market".into(), toml::Value::Table(market));
    let text = toml::to_string(&table).map_err(|e| internal(e.into()))?;
    JobFile::parse(&text, dir).map_err(|e| OpenAiError::invalid(None, format!("{e:#}")))
}

/// Submits the prepared job, records its maximum cost against key `name` durably, follows it,
/// and reconciles the key's spend to the job's actual cost; returns the verified outputs.
async fn submit_and_settle(
    gw: &Gateway,
    name: &str,
    sender: &agora_client::sender::TxSender,
    prepared: &requester::prepare::Prepared,
    max_cost: Amount,
    reservation: Reservation,
) -> Result<Verified, OpenAiError> {
    let record = requester::submit_prepared(&gw.client, sender, &gw.data_dir, prepared)
        .await
        .map_err(|e| refused(&e))?;
    // Durable before the in-memory hold goes: the spend is never uncounted.
    gw.keys.open_job(name, record.job, max_cost).map_err(internal)?;
    drop(reservation);
    let done = follow::follow(&gw.client, sender, &record, indicatif::ProgressBar::hidden(), gw.timeout)
        .await
        .map_err(|e| OpenAiError::unavailable(format!("{e:#}; its cost is reconciled when it settles")))?;
    let r = receipt::build(&gw.client, record.job, &done).await.map_err(internal)?;
    gw.keys.settle_job(name, record.job, r.total_paid).map_err(internal)?;
    let shards =
        results::fetch(&gw.client, &record.output_secret(sender.key()), &done).await.map_err(internal)?;
    if shards.iter().any(Option::is_none) {
        return Err(OpenAiError::unavailable(format!(
            "job {} was abandoned by the network before every shard was verified (you paid {} for what was); retry",
            record.job, r.total_paid
        )));
    }
    let detection = r.shards.iter().map(|s| s.detection_probability).fold(f64::INFINITY, f64::min);
    Ok(Verified {
        items: shards.into_iter().flatten().flatten().collect(),
        info: AgoraInfo::Job {
            job: record.job,
            paid: r.total_paid.to_string(),
            detection_probability: if detection.is_finite() { detection } else { 0.0 },
            energy_kwh: r.energy_kwh,
        },
    })
}

/// How often open jobs are reconciled.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// Settles every key's open jobs and serving sessions that have finished on chain at what
/// they actually cost; returns how many it settled. Run every [`RECONCILE_EVERY`], so a job
/// whose request ended early (a disconnect, a timeout, a restart) is counted at its maximum
/// only until it settles, and a session at its escrow until its last window is paid.
pub async fn reconcile(gw: &Gateway) -> anyhow::Result<usize> {
    let mut settled = 0;
    for entry in gw.keys.list()? {
        for &id in gw.keys.spend(&entry.name)?.open.keys() {
            let cost = match gw.client.job(id).await {
                Ok(j) if j.finished => receipt::build(&gw.client, id, &j).await?.total_paid,
                Ok(_) => continue,
                // Jobs and sessions share one id space: an id that is no job may be a session.
                Err(_) => match gw.client.session(id).await {
                    Ok(s) if s.session.status != SessionStatus::Open && s.session.escrow.is_zero() => {
                        s.session.paid
                    }
                    _ => continue,
                },
            };
            gw.keys.settle_job(&entry.name, id, cost)?;
            settled += 1;
        }
    }
    Ok(settled)
}

/// A failure of the gateway itself (500, with the whole error chain).
fn internal(e: anyhow::Error) -> OpenAiError {
    OpenAiError::internal(format!("{e:#}"))
}

/// A refusal before or at submission: the account's funds are the caller's to fix (429, as
/// OpenAI reports exhausted credit); the rest is the network's answer (503).
fn refused(e: &anyhow::Error) -> OpenAiError {
    let msg = format!("{e:#}");
    if msg.contains("insufficient funds") { OpenAiError::quota(msg) } else { OpenAiError::unavailable(msg) }
}

/// An amount of a key's budget held for a request in flight; released when dropped.
pub struct Reservation {
    pub(super) gw_reserved: Arc<std::sync::Mutex<std::collections::BTreeMap<String, Amount>>>,
    pub(super) name: String,
    pub(super) amount: Amount,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut held = self.gw_reserved.lock().expect("not poisoned");
        if let Some(v) = held.get_mut(&self.name) {
            *v = v.checked_sub(self.amount).unwrap_or(Amount::ZERO);
        }
    }
}
