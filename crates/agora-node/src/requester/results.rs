//! Getting a job's results: download each settled shard's output blob from its provider
//! (verified chunk by chunk against the committed hash), decrypt it with the key agreed with
//! that provider, check every item against the committed Merkle root, and reassemble the shards
//! in order.

use crate::client::NodeClient;
use crate::protocol;
use agora_core::{JobKind, SecretKey};
use agora_ledger::jobs::{Job, ShardStatus};
use agora_runtime::items::{generation::Generation, training::Checkpoint, vector::decode_vector};
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
        let store = agora_store::http::Client::new(&provider.profile.endpoint)?;
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
        let items = protocol::decode_shard(&blob, key.as_ref(), &commitment.root)
            .with_context(|| format!("shard {i}'s outputs do not match the provider's commitment"))?;
        out.push(Some(items));
    }
    Ok(out)
}

/// Writes the outputs to `dir` in a form for people and tools: JSON lines of vectors
/// (embed), JSON lines of completions (generate), one file per item (wasm), checkpoints
/// (train) — plus `outputs.items`, the raw framed items of all shards in order.
pub fn write(dir: &Path, kind: JobKind, shards: &[Option<Vec<Vec<u8>>>]) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if shards.iter().any(Option::is_none) {
        bail!("not every shard finished; results are complete only for settled jobs");
    }
    let items: Vec<Vec<u8>> = shards.iter().flatten().flatten().cloned().collect();
    std::fs::write(dir.join("outputs.items"), agora_store::items::frame(&items)?)?;
    match kind {
        JobKind::Embed => {
            let mut lines = String::new();
            for it in &items {
                lines += &serde_json::to_string(&decode_vector(it)?)?;
                lines.push('\n');
            }
            std::fs::write(dir.join("embeddings.jsonl"), lines)?;
        }
        JobKind::Generate => {
            let mut lines = String::new();
            for it in &items {
                let g = Generation::from_item(it)?;
                lines += &serde_json::to_string(&serde_json::json!({"text": g.text, "tokens": g.tokens}))?;
                lines.push('\n');
            }
            std::fs::write(dir.join("completions.jsonl"), lines)?;
        }
        JobKind::Wasm => {
            for (i, it) in items.iter().enumerate() {
                std::fs::write(dir.join(format!("item-{i}.out")), it)?;
            }
        }
        JobKind::Train => {
            let mut losses = vec![];
            for (i, it) in items.iter().enumerate() {
                let c = Checkpoint::from_item(it)?;
                losses.push(serde_json::json!({"checkpoint": i, "step": c.step, "loss": c.loss}));
                std::fs::write(dir.join(format!("checkpoint-{i}.bin")), it)?;
            }
            std::fs::write(dir.join("training.json"), serde_json::to_vec_pretty(&losses)?)?;
        }
    }
    Ok(items.len())
}
