//! Running one API request as a network job: the request's items become a job file (one item
//! per file, so texts may hold newlines), the job is prepared, checked against the key's
//! budget, submitted from the key's account, followed until every shard is verified and
//! settled, and its outputs are fetched and checked against the providers' commitments. The
//! gateway answers only with verified results, so the caller pays only for checked work.

use super::Gateway;
use super::keys::KeyEntry;
use super::openai::{AgoraInfo, OpenAiError};
use crate::requester::{self, follow, jobfile::JobFile, receipt, results};
use agora_core::{Amount, JobKind};
use anyhow::Context;
use std::sync::Arc;

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
pub async fn run(
    gw: &Gateway,
    entry: &KeyEntry,
    kind: JobKind,
    model: &str,
    items: &[Vec<u8>],
    params: toml::Table,
) -> Result<Verified, OpenAiError> {
    let internal = |e: anyhow::Error| OpenAiError::internal(format!("{e:#}"));
    let requests = gw.data_dir.join("gateway").join("requests");
    std::fs::create_dir_all(&requests).map_err(|e| internal(e.into()))?;
    let dir = tempfile::TempDir::new_in(&requests).map_err(|e| internal(e.into()))?;
    let mut inputs = vec![];
    for (i, item) in items.iter().enumerate() {
        let name = format!("item-{i:05}");
        std::fs::write(dir.path().join(&name), item).map_err(|e| internal(e.into()))?;
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
    let job = JobFile::parse(&text, dir.path()).map_err(|e| OpenAiError::invalid(None, format!("{e:#}")))?;

    let prepared = requester::prepare_job(&gw.client, &gw.data_dir, &job).await.map_err(internal)?;
    let max_cost = prepared.manifest.max_cost().context("max cost overflows").map_err(internal)?;
    let (sender, _reservation) = gw.reserve(entry, max_cost).await?;
    let record = requester::submit_prepared(&gw.client, &sender, &gw.data_dir, &prepared)
        .await
        .map_err(|e| refused(&e))?;
    let done = follow::follow(&gw.client, &sender, &record, indicatif::ProgressBar::hidden(), gw.timeout)
        .await
        .map_err(|e| OpenAiError::unavailable(format!("{e:#}")))?;
    let r = receipt::build(&gw.client, record.job, &done).await.map_err(internal)?;
    gw.keys.record_spend(&entry.name, r.total_paid).map_err(internal)?;
    let shards = results::fetch(&gw.client, sender.key(), &done).await.map_err(internal)?;
    if shards.iter().any(Option::is_none) {
        return Err(OpenAiError::unavailable(format!(
            "job {} was abandoned by the network before every shard was verified (you paid {} for what was); retry",
            record.job, r.total_paid
        )));
    }
    let detection = r.shards.iter().map(|s| s.detection_probability).fold(f64::INFINITY, f64::min);
    Ok(Verified {
        items: shards.into_iter().flatten().flatten().collect(),
        info: AgoraInfo {
            job: record.job,
            paid: r.total_paid.to_string(),
            detection_probability: if detection.is_finite() { detection } else { 0.0 },
            energy_kwh: r.energy_kwh,
        },
    })
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
