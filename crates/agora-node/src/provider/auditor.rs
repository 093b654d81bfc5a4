//! Audit duty: when the chain assigns this node to an audit, fetch the sampled items from the
//! provider (each checked against the on-chain commitments), recompute them with the same
//! runtime, compare with the kind's comparison function, and report the verdict.

use super::runtimes::Runtimes;
use crate::client::NodeClient;
use crate::protocol::{self, AUDITOR_HEADER, AuditItems, SIGNATURE_HEADER};
use crate::sender::TxSender;
use agora_core::tx::{AuditId, TxPayload};
use agora_core::{Hash, SecretKey};
use agora_runtime::executor::AuditRequest;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// What an auditor needs.
pub struct Auditor {
    /// Our key (signs item requests).
    pub key: SecretKey,
    /// Chain API.
    pub chain: NodeClient,
    /// Transaction sender.
    pub sender: Arc<TxSender>,
    /// Executors.
    pub runtimes: Arc<Runtimes>,
}

/// Why an audit could not be carried out by this node (as opposed to a failed audit).
#[derive(Debug, thiserror::Error)]
#[error("cannot audit: {0}")]
pub struct Unable(pub String);

impl Auditor {
    async fn fetch_items(&self, endpoint: &str, audit: AuditId) -> anyhow::Result<AuditItems> {
        let sig = self.key.sign(&protocol::audit_request_message(audit));
        let url = format!("{}/agent/audit/{audit}", endpoint.trim_end_matches('/'));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let resp = http
            .get(&url)
            .header(AUDITOR_HEADER, self.key.public().to_string())
            .header(SIGNATURE_HEADER, sig.to_string())
            .send()
            .await
            .with_context(|| format!("provider unreachable at {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            anyhow::bail!("provider answered {status}: {}", resp.text().await.unwrap_or_default());
        }
        Ok(resp.json().await?)
    }

    /// Audits and reports. Returns the verdict reported.
    pub async fn run(&self, audit_id: AuditId) -> anyhow::Result<bool> {
        let audit = self.chain.audit(audit_id).await?;
        let lease = self.chain.lease(audit.lease).await?;
        let job = self.chain.job(lease.job).await?;
        let m = &job.manifest;
        let shard = m.shards.get(lease.shard as usize).context("lease names a missing shard")?;
        let commitment = lease.commitment.clone().context("an audited lease has a commitment")?;
        let provider = self.chain.provider(&lease.provider).await?;
        // A model this node cannot load means it cannot audit (not that the provider cheated).
        let executor = self
            .runtimes
            .executor(m.kind(), &m.model, &m.sources)
            .await
            .map_err(|e| Unable(format!("loading the runtime: {e:#}")))?;
        let (passed, detail) = match self
            .check(
                &audit.items,
                audit_id,
                &provider.profile.endpoint,
                shard,
                &commitment.root,
                &job.manifest,
                &lease,
                executor,
            )
            .await
        {
            Ok((passed, detail)) => (passed, detail),
            Err(e) => {
                // The provider must serve what it committed to; anything else fails the audit.
                warn!(audit = audit_id, error = %format!("{e:#}"), "audit failed to obtain verifiable items");
                (false, format!("{e:#}"))
            }
        };
        self.sender
            .send(
                TxPayload::ReportAudit { audit: audit_id, passed, detail: Hash::of(detail.as_bytes()) },
                Duration::from_secs(60),
            )
            .await?;
        info!(audit = audit_id, passed, "audit reported");
        Ok(passed)
    }

    #[allow(clippy::too_many_arguments)]
    async fn check(
        &self,
        indices: &[u32],
        audit_id: AuditId,
        endpoint: &str,
        shard: &agora_core::manifest::ShardSpec,
        output_root: &Hash,
        manifest: &agora_core::JobManifest,
        lease: &agora_ledger::leases::Lease,
        executor: Arc<dyn agora_runtime::executor::Executor>,
    ) -> anyhow::Result<(bool, String)> {
        let items = self.fetch_items(endpoint, audit_id).await?;
        let inputs = items
            .inputs
            .iter()
            .map(|p| Ok((p.index, p.verified(&shard.items_root)?)))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("an input item does not match the requester's commitment")?;
        let claimed = items
            .outputs
            .iter()
            .map(|p| Ok((p.index, p.verified(output_root)?)))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("an output item does not match the provider's commitment")?;
        let request = AuditRequest { indices: indices.to_vec(), inputs, claimed };
        let ctx = protocol::task_context(lease.job, lease.shard, manifest, &lease.class);
        let ran = std::time::Instant::now();
        let outcome = tokio::task::spawn_blocking(move || {
            agora_runtime::audit::audit(executor.as_ref(), &ctx, &request)
        })
        .await?;
        crate::api::metrics::observe_runtime("audit", manifest.kind().name(), ran.elapsed());
        match outcome {
            Ok(o) => {
                let bad: Vec<String> = o
                    .verdicts
                    .iter()
                    .filter(|(_, v)| !v.matches)
                    .map(|(i, v)| format!("item {i}: {}", v.detail))
                    .collect();
                Ok((
                    bad.is_empty(),
                    if bad.is_empty() { format!("{} items match", o.verdicts.len()) } else { bad.join("; ") },
                ))
            }
            // The claimed outputs could not even be replayed (e.g. a malformed checkpoint).
            Err(e) => Ok((false, format!("recomputation rejected the claims: {e}"))),
        }
    }
}
