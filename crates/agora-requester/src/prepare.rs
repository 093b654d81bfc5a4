//! Turning a job file into a manifest: resolve (and if needed provision) the model, read the
//! input items, split them into shards, frame and encrypt each shard, and upload the model and
//! the shards to the node's content store. Nothing here moves money.

use super::jobfile::JobFile;
use agora_client::protocol::{self, EncodedShard};
use agora_core::manifest::{JobManifest, ShardSpec};
use agora_core::{JobKind, JobParams, SecretKey};
use agora_runtime::provision::Provisioner;
use agora_store::encrypt::BlobKey;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// Environment variable naming a models directory shared by every data directory.
pub const MODELS_DIR_ENV: &str = "AGORA_MODELS_DIR";

/// The provisioner of a data directory (its `models/`, or `$AGORA_MODELS_DIR` when set), able
/// to derive every catalog model.
pub fn provisioner(data_dir: &Path) -> Provisioner {
    let p = Provisioner::new(data_dir).with_derivation(Box::new(agora_ml::Requantize));
    match std::env::var_os(MODELS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => p.with_models_dir(dir.into()),
        _ => p,
    }
}

/// A job ready to submit.
pub struct Prepared {
    /// The on-chain terms.
    pub manifest: JobManifest,
    /// Each shard's input key (encrypted jobs), to seal to its provider once matched.
    pub keys: Vec<Option<BlobKey>>,
    /// The job's output key (encrypted jobs): its outputs are encrypted to it, and whoever
    /// holds it (the requester, and its key agent) checks them.
    pub output: Option<SecretKey>,
    /// Each shard's encoded input blob.
    pub shards: Vec<EncodedShard>,
    /// The model's file to upload: a bundle, or a wasm module.
    pub model_file: PathBuf,
}

/// Splits `items` into at most `n` contiguous, nearly equal shards.
pub fn split<T: Clone>(items: &[T], n: usize) -> Vec<Vec<T>> {
    let n = n.clamp(1, items.len().max(1));
    let base = items.len() / n;
    let extra = items.len() % n;
    let mut out = Vec::with_capacity(n);
    let mut at = 0;
    for i in 0..n {
        let len = base + usize::from(i < extra);
        out.push(items[at..at + len].to_vec());
        at += len;
    }
    out
}

/// Builds the manifest and the shard blobs for `job`; `now_ms` starts the deadline.
pub fn prepare(
    job: &JobFile,
    data_dir: &Path,
    sources: Vec<String>,
    now_ms: u64,
) -> anyhow::Result<Prepared> {
    let provisioner = provisioner(data_dir);
    let model = job.local.resolve_model(&provisioner).context("resolving the model")?;
    let model_file = match provisioner.get(&job.local.model)? {
        Some(p) => p.bundle_path,
        None if model.path.is_file() => model.path.clone(),
        None => {
            let names = bundle_names(&model.path)?;
            let out = data_dir.join("bundles").join(format!("{}.bundle", model.hash));
            std::fs::create_dir_all(out.parent().expect("has parent"))?;
            let mut f = std::fs::File::create(&out)?;
            agora_runtime::provision::bundle::write_bundle(&model.path, &names, &mut f)?;
            out
        }
    };
    let items = job.local.read_inputs(&model).context("reading the inputs")?;
    if items.is_empty() {
        bail!("the job has no input items (check `inputs` in the job file)");
    }
    let kind = job.local.kind();
    if kind == JobKind::Train && job.shards > 1 {
        bail!("a training job is one run over its data set: use shards = 1");
    }
    let mut keys = vec![];
    let mut shards = vec![];
    let mut specs = vec![];
    for chunk in split(&items, job.shards as usize) {
        let key = job.encrypted.then(BlobKey::generate);
        let enc = protocol::encode_shard(&chunk, key.as_ref())?;
        let work_units = match &job.local.params {
            JobParams::Train { steps, .. } => f64::from(*steps),
            _ => chunk.len() as f64,
        };
        let quantity = ((work_units * job.seconds_per_item).ceil() as u64).max(1);
        specs.push(ShardSpec {
            input: enc.hash,
            items_root: enc.items_root,
            item_count: enc.count,
            quantity,
        });
        keys.push(key);
        shards.push(enc);
    }
    let output = job.encrypted.then(SecretKey::generate);
    let manifest = JobManifest {
        model: model.hash,
        params: job.local.params.clone(),
        class: job.class.clone(),
        shards: specs,
        max_unit_price: job.max_price,
        deadline_ms: now_ms.saturating_add(job.deadline_ms),
        policy: job.policy,
        constraints: job.constraints.clone(),
        encrypted: job.encrypted,
        sources,
        key_agent: None,
        output_key: output.as_ref().map(SecretKey::public),
    };
    manifest.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Prepared { manifest, keys, output, shards, model_file })
}

fn bundle_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = vec![];
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

/// Uploads the model file and every shard blob to the node at `node`, pinned, signed as
/// `signer`'s account (the requester's: nodes store only for accounts with a reason to).
pub async fn upload(prepared: &Prepared, node: &str, signer: &agora_core::SecretKey) -> anyhow::Result<()> {
    let client = agora_store::http::Client::new(node)?.with_signer(signer.clone());
    upload_model(&client, &prepared.model_file, prepared.manifest.model).await?;
    for (i, shard) in prepared.shards.iter().enumerate() {
        let info = client
            .upload_bytes(shard.blob.clone(), true)
            .await
            .with_context(|| format!("uploading shard {i}"))?;
        if info.hash != shard.hash {
            bail!("the node stored shard {i} as {}, expected {}", info.hash, shard.hash);
        }
    }
    Ok(())
}

/// Uploads model file `file` (whose hash is `model`) through `client`, pinned, unless the node
/// holds it already.
pub async fn upload_model(
    client: &agora_store::http::Client,
    file: &Path,
    model: agora_core::Hash,
) -> anyhow::Result<()> {
    if client.stat(&model).await?.is_none() {
        let info = client
            .upload_file(file, true, None, |_, _| {})
            .await
            .with_context(|| format!("uploading the model {}", file.display()))?;
        if info.hash != model {
            bail!("the node stored the model as {}, expected {model}", info.hash);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_evenly_and_in_order() {
        let items: Vec<u32> = (0..10).collect();
        let s = split(&items, 3);
        assert_eq!(s.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 3, 3]);
        assert_eq!(s.concat(), items);
        assert_eq!(split(&items[..2], 5).len(), 2, "never more shards than items");
        assert_eq!(split::<u32>(&[], 3).len(), 1);
    }
}
