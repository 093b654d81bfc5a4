//! Getting a job's results: download each settled shard's output blob from its provider
//! (verified chunk by chunk against the committed hash), decrypt it with the key agreed with
//! that provider, check every item against the committed Merkle root, and reassemble the shards
//! in order.

use crate::client::NodeClient;
use crate::protocol;
use agora_core::{JobKind, SecretKey};
use agora_ledger::jobs::{Job, ShardStatus};
use anyhow::{Context, bail};
use std::path::Path;

/// Output items of every settled shard, in shard order (`None` for shards that did not finish).
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
        let commitment = lease.commitment.context("a settled lease has a commitment")?;
        let provider = client.provider(&lease.provider).await?;
        let store = agora_store::http::Client::reaching(&provider.profile.endpoint, client.reach().await?)?
            .with_max_blob(protocol::MAX_OUTPUT_BLOB);
        let mut blob = Vec::new();
        store
            .download(&commitment.output, None, &mut blob, |_, _| {})
            .await
            .with_context(|| format!("downloading shard {i}'s outputs from {}", provider.profile.endpoint))?;
        let key = if job.manifest.encrypted {
            Some(protocol::output_key(me, &lease.provider, lease_id)?)
        } else {
            None
        };
        let items = protocol::decode_committed(&blob, key.as_ref(), &commitment.root, commitment.item_count)
            .with_context(|| format!("shard {i}'s outputs do not match the provider's commitment"))?;
        out.push(Some(items));
    }
    Ok(out)
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
