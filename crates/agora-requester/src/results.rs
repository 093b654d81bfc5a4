//! Getting a job's results: download each settled shard's output blob from its provider
//! (verified chunk by chunk against the committed hash), decrypt it with the key agreed with
//! that provider, check every item against the committed Merkle root, and reassemble the shards
//! in order.

use agora_client::client::NodeClient;
use agora_client::protocol::{self, ProtocolError};
use agora_core::tx::LeaseId;
use agora_core::{JobKind, SecretKey};
use agora_ledger::jobs::{Job, ShardStatus};
use agora_ledger::leases::Lease;
use anyhow::{Context, bail};
use std::path::Path;

/// Output items of every settled shard, in shard order (`None` for shards that did not finish),
/// opened with `me`, the job's output key (`JobRecord::output_secret`).
pub async fn fetch(
    client: &NodeClient,
    me: &SecretKey,
    job: &Job,
) -> anyhow::Result<Vec<Option<Vec<Vec<u8>>>>> {
    let mut out = vec![];
    for (i, s) in job.shards.iter().enumerate() {
        let ShardStatus::Done(lease_id) = s.status else {
            out.push(None);
            continue;
        };
        let lease = client.lease(lease_id).await?;
        let blob = download_outputs(client, &lease).await.with_context(|| format!("shard {i}"))?;
        let items = open_outputs(me, job.manifest.encrypted, lease_id, &lease, &blob)
            .with_context(|| format!("shard {i}'s outputs do not match the provider's commitment"))?;
        out.push(Some(items));
    }
    Ok(out)
}

/// Downloads a committed lease's output blob from its provider's store (verified chunk by
/// chunk against the committed hash; at most [`protocol::MAX_OUTPUT_BLOB`] bytes).
pub async fn download_outputs(client: &NodeClient, lease: &Lease) -> anyhow::Result<Vec<u8>> {
    let commitment = lease.commitment.as_ref().context("the lease has no commitment yet")?;
    let endpoint = client.provider(&lease.provider).await?.profile.endpoint;
    let store = agora_store::http::Client::reaching(&endpoint, client.reach().await?)?
        .with_max_blob(protocol::MAX_OUTPUT_BLOB);
    let mut blob = Vec::new();
    store
        .download(&commitment.output, None, &mut blob, |_, _| {})
        .await
        .with_context(|| format!("downloading the outputs from {endpoint}"))?;
    Ok(blob)
}

/// The output items in lease `id`'s `blob`, decrypted with the key `me` (the job's output key)
/// agreed with its provider, for an encrypted job, and checked against the commitment's root
/// and count; an error means the blob is not what the provider committed to.
pub fn open_outputs(
    me: &SecretKey,
    encrypted: bool,
    id: LeaseId,
    lease: &Lease,
    blob: &[u8],
) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let commitment =
        lease.commitment.as_ref().ok_or_else(|| ProtocolError::Mismatch("no commitment".into()))?;
    let key = if encrypted { Some(protocol::output_key(me, &lease.provider, id)?) } else { None };
    protocol::decode_committed(blob, key.as_ref(), &commitment.root, commitment.item_count)
}

/// Writes the outputs of every shard, in order, to `dir` (layout: see
/// [`agora_runtime::local::write_items`]); returns the number of items.
pub fn write(dir: &Path, kind: JobKind, shards: &[Option<Vec<Vec<u8>>>]) -> anyhow::Result<usize> {
    if shards.iter().any(Option::is_none) {
        bail!("not every shard finished; results are complete only for settled jobs");
    }
    let items: Vec<Vec<u8>> = shards.iter().flatten().flatten().cloned().collect();
    agora_runtime::local::write_items(dir, kind, &items)?;
    Ok(items.len())
}
