//! Keeps the node's content store within its budget.
//!
//! What a job or lease needs is pinned under its name while it runs, and released when it
//! finishes, settles or fails: a requester's uploaded model and inputs (held by `job:<id>` once
//! the job is on chain; before that by the uploading account's pin, which lapses), a provider's
//! fetched model and inputs (`lease:<id>`), an auditor's model (`audit:<id>`, released when the
//! audit is done). A provider's published outputs are kept for [`OUTPUT_RETENTION`] so the
//! requester can download them. A collection runs every [`COLLECT_EVERY`]: lapsed pins are
//! dropped, then the least recently stored unpinned blobs until the store fits its budget.
//!
//! Guarantee: a blob a running job, lease or audit of this node needs is never collected; a
//! blob nothing holds is, once the store is over budget.

use crate::client::NodeClient;
use agora_core::{Hash, JobManifest};
use agora_ledger::Event;
use agora_store::{Pin, Store};
use std::time::Duration;
use tracing::{info, warn};

/// How long a provider keeps a lease's published outputs for its requester.
pub const OUTPUT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3_600);
/// How often the store is collected.
pub const COLLECT_EVERY: Duration = Duration::from_secs(300);

/// The owner of the pins a job holds on the requester's node.
pub fn job_owner(job: u64) -> String {
    format!("job:{job}")
}

/// The owner of the pins a lease holds on its provider.
pub fn lease_owner(lease: u64) -> String {
    format!("lease:{lease}")
}

/// The owner of the pins an audit holds on its auditor.
pub fn audit_owner(audit: u64) -> String {
    format!("audit:{audit}")
}

/// The pin on a lease's published outputs: they stay [`OUTPUT_RETENTION`] from `now_ms`.
pub fn output_pin(lease: u64, now_ms: u64) -> Pin {
    Pin::until(format!("output:{lease}"), now_ms.saturating_add(OUTPUT_RETENTION.as_millis() as u64))
}

/// The blobs a job's manifest names: its model and every shard's input.
fn blobs_of(m: &JobManifest) -> impl Iterator<Item = Hash> + '_ {
    std::iter::once(m.model).chain(m.shards.iter().map(|s| s.input))
}

/// Pins and releases the store's blobs as the chain's jobs and leases come and go.
#[derive(Clone)]
pub struct StoreKeeper {
    store: Store,
    chain: NodeClient,
}

impl StoreKeeper {
    /// A keeper of `store`, reading jobs from `chain`.
    pub fn new(store: Store, chain: NodeClient) -> Self {
        Self { store, chain }
    }

    /// Pins or releases what one finalized event concerns.
    pub async fn on_event(&self, event: &Event) -> anyhow::Result<()> {
        match event {
            Event::JobSubmitted { job, .. } => {
                let manifest = self.chain.job(*job).await?.manifest;
                let (store, owner) = (self.store.clone(), job_owner(*job));
                let held: Vec<Hash> = blobs_of(&manifest).filter(|h| self.store.has(h)).collect();
                if !held.is_empty() {
                    tokio::task::spawn_blocking(move || {
                        held.iter().try_for_each(|h| match store.pin_for(h, Pin::held_by(owner.clone())) {
                            // Collected since the check: nothing of it to keep.
                            Ok(_) | Err(agora_store::StoreError::NotFound(_)) => Ok(()),
                            Err(e) => Err(e),
                        })
                    })
                    .await??;
                }
            }
            Event::JobFinished { job, .. } => self.release(job_owner(*job)).await?,
            Event::LeaseSettled { lease, .. } | Event::LeaseFailed { lease, .. } => {
                self.release(lease_owner(*lease)).await?
            }
            _ => {}
        }
        Ok(())
    }

    /// Drops every pin `owner` holds.
    pub async fn release(&self, owner: String) -> anyhow::Result<()> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.release(&owner)).await??;
        Ok(())
    }

    /// Drops lapsed pins, then collects down to `budget_bytes`.
    pub async fn collect(&self, budget_bytes: u64) -> anyhow::Result<agora_store::GcReport> {
        let store = self.store.clone();
        let now = agora_store::http::auth::now_ms();
        Ok(tokio::task::spawn_blocking(move || {
            store.expire(now)?;
            store.gc(budget_bytes)
        })
        .await??)
    }

    /// Collects every [`COLLECT_EVERY`], forever.
    pub async fn collect_forever(self, budget_bytes: u64) {
        let mut every = tokio::time::interval(COLLECT_EVERY);
        loop {
            every.tick().await;
            match self.collect(budget_bytes).await {
                Ok(r) if !r.removed.is_empty() => {
                    info!(
                        removed = r.removed.len(),
                        freed = r.freed_bytes,
                        kept = r.kept_bytes,
                        "store collected"
                    )
                }
                Ok(r) if r.over_budget() => {
                    warn!(
                        kept = r.kept_bytes,
                        budget = r.budget_bytes,
                        "pinned blobs alone exceed the store budget"
                    )
                }
                Ok(_) => {}
                Err(e) => warn!(error = %format!("{e:#}"), "store collection failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Amount;

    #[tokio::test]
    async fn settlement_releases_what_a_lease_held_and_collection_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Nothing here reads the chain.
        let keeper = StoreKeeper::new(store.clone(), NodeClient::new("http://127.0.0.1:1"));
        let input =
            store.put_reader_pinned(&vec![1u8; 5000][..], Some(Pin::held_by(lease_owner(4)))).unwrap();
        let model = store.put_reader_pinned(&vec![2u8; 5000][..], Some(Pin::held_by(job_owner(3)))).unwrap();
        let now = agora_store::http::auth::now_ms();
        let output = store.put_reader_pinned(&vec![3u8; 5000][..], Some(output_pin(4, now))).unwrap();
        let lapsed =
            store.put_reader_pinned(&vec![4u8; 5000][..], Some(Pin::until("upload:x", now - 1))).unwrap();

        assert!(keeper.collect(0).await.unwrap().removed == vec![lapsed.hash], "only the lapsed pin lets go");
        let settled = Event::LeaseSettled {
            lease: 4,
            provider_paid: Amount(1),
            auditors_paid: Amount(0),
            requester_refund: Amount(0),
            burned: Amount(0),
        };
        keeper.on_event(&settled).await.unwrap();
        keeper.on_event(&Event::JobFinished { job: 3, completed: 1, abandoned: 0 }).await.unwrap();
        let mut gone = keeper.collect(0).await.unwrap().removed;
        gone.sort();
        let mut expected = vec![input.hash, model.hash];
        expected.sort();
        assert_eq!(gone, expected);
        assert!(store.has(&output.hash), "outputs stay for the requester");
        let until = store.pins(&output.hash).unwrap()[0].until_ms.unwrap();
        assert_eq!(until, now + OUTPUT_RETENTION.as_millis() as u64, "but not forever");
    }
}
