//! Following a job from matching to settlement: shows each shard's stage, shares each shard's
//! input key with its provider as soon as the shard is leased (again after a re-match), and
//! checks each delivered encrypted lease's outputs before its provider is paid
//! ([`super::delivery`]).

use super::record::JobRecord;
use agora_client::client::NodeClient;
use agora_client::protocol;
use agora_client::sender::TxSender;
use agora_core::tx::LeaseId;
use agora_core::tx::TxPayload;
use agora_ledger::jobs::{Job, ShardStatus};
use agora_ledger::leases::{Lease, LeaseStatus};
use agora_store::encrypt::BlobKey;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How many shards are at each stage.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Stages {
    /// Waiting for a provider.
    pub matching: u32,
    /// Being computed.
    pub running: u32,
    /// Commitment posted, audit draw pending.
    pub committed: u32,
    /// Under audit.
    pub auditing: u32,
    /// Checked by the network; the requester checks an encrypted lease's outputs.
    pub delivered: u32,
    /// Paid out.
    pub settled: u32,
    /// Given up.
    pub abandoned: u32,
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "matching {} · running {} · committed {} · auditing {} · delivered {} · settled {}{}",
            self.matching,
            self.running,
            self.committed,
            self.auditing,
            self.delivered,
            self.settled,
            if self.abandoned > 0 { format!(" · abandoned {}", self.abandoned) } else { String::new() }
        )
    }
}

/// A progress bar for following a job (hidden when `show` is false, e.g. with `--json`).
pub fn progress_bar(show: bool) -> ProgressBar {
    let pb = if show { ProgressBar::new(0) } else { ProgressBar::hidden() };
    pb.set_style(
        ProgressStyle::with_template("job {prefix:<12} [{bar:20}] {pos}/{len} settled  {msg}")
            .expect("static")
            .progress_chars("=> "),
    );
    pb
}

/// Shares a shard's input key with `lease`'s provider when the job is encrypted, the lease is
/// running, and no key for its provider is on chain or was sent by us (`shared`) yet. `key`
/// gives the shard's key. Returns whether a key was sent.
pub async fn share_input_key(
    sender: &TxSender,
    job: &Job,
    id: LeaseId,
    lease: &Lease,
    key: impl FnOnce() -> anyhow::Result<BlobKey>,
    shared: &mut BTreeSet<LeaseId>,
) -> anyhow::Result<bool> {
    let needs_key = job.manifest.encrypted
        && lease.is_running()
        && lease.key_for(&lease.provider).is_none()
        && !shared.contains(&id);
    if !needs_key {
        return Ok(false);
    }
    let sealed = protocol::seal_input_key(&key()?, &lease.provider)?;
    sender.submit(TxPayload::ShareKey { lease: id, to: lease.provider, sealed_key: sealed }).await?;
    shared.insert(id);
    Ok(true)
}

/// Follows `record`'s job until every shard is settled or abandoned, or `timeout` passes,
/// showing its stages on `pb` (see [`progress_bar`]). Returns the finished job.
pub async fn follow(
    client: &NodeClient,
    sender: &TxSender,
    record: &JobRecord,
    pb: ProgressBar,
    timeout: Duration,
) -> anyhow::Result<Job> {
    if pb.prefix().is_empty() {
        pb.set_prefix(record.job.to_string());
    }
    let start = Instant::now();
    let (mut shared, mut answered) = (BTreeSet::new(), BTreeSet::new());
    let output = record.output_secret(sender.key());
    loop {
        let job = client.job(record.job).await?;
        pb.set_length(job.shards.len() as u64);
        let mut st = Stages::default();
        for (i, s) in job.shards.iter().enumerate() {
            match s.status {
                ShardStatus::Open(_) => st.matching += 1,
                ShardStatus::Done(_) => st.settled += 1,
                ShardStatus::Abandoned => st.abandoned += 1,
                ShardStatus::Leased(l) => {
                    let lease = client.lease(l).await?;
                    match lease.status {
                        LeaseStatus::Running => st.running += 1,
                        LeaseStatus::Committed => st.committed += 1,
                        LeaseStatus::Auditing | LeaseStatus::InputDisputed | LeaseStatus::OutputsDisputed => {
                            st.auditing += 1
                        }
                        LeaseStatus::Delivered => st.delivered += 1,
                        LeaseStatus::Settled => st.settled += 1,
                        LeaseStatus::Failed(_) => st.matching += 1,
                    }
                    let key = || {
                        record.key(i as u32).with_context(|| {
                            format!(
                                "this machine has no input key for shard {i} of job {}; it was submitted elsewhere",
                                record.job
                            )
                        })
                    };
                    share_input_key(sender, &job, l, &lease, key, &mut shared).await?;
                    super::delivery::check_delivered(
                        client,
                        sender,
                        (&job, &output),
                        l,
                        &lease,
                        &mut answered,
                    )
                    .await?;
                }
            }
        }
        pb.set_position(u64::from(st.settled));
        pb.set_message(st.to_string());
        if job.finished {
            pb.finish_and_clear();
            return Ok(job);
        }
        if start.elapsed() > timeout {
            pb.abandon();
            bail!(
                "job {} is not finished after {timeout:?} ({st}); follow it with `agora job status {}`",
                record.job,
                record.job
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
