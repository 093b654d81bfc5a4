//! What a requester keeps locally about its jobs: the input keys (needed to share with each
//! shard's provider, including providers of re-matched shards), the output key (which opens
//! the outputs) and where it submitted.

use agora_core::SecretKey;
use agora_store::encrypt::BlobKey;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A submitted job's local record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id on chain.
    pub job: u64,
    /// Node the job was submitted to.
    pub node: String,
    /// Input key per shard (hex), for encrypted jobs.
    pub keys: Vec<Option<String>>,
    /// The job's output key (hex of its seed), for encrypted jobs: outputs are encrypted to it.
    #[serde(default)]
    pub output_key: Option<String>,
}

impl JobRecord {
    fn path(data_dir: &Path, job: u64) -> PathBuf {
        data_dir.join("jobs").join(format!("{job}.json"))
    }

    /// Saves the record, readable only by the owner (it holds the shards' input keys).
    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        agora_client::keyfile::write_secret(
            &Self::path(data_dir, self.job),
            &serde_json::to_vec_pretty(self)?,
        )
    }

    /// Loads the record of `job`, if this machine submitted it.
    pub fn load(data_dir: &Path, job: u64) -> anyhow::Result<Option<Self>> {
        match std::fs::read(Self::path(data_dir, job)) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).context("job record is corrupt")?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The key that opens the job's outputs: its output key, or (jobs without one) `account`,
    /// the requester's own.
    pub fn output_secret(&self, account: &SecretKey) -> SecretKey {
        let seed = self.output_key.as_ref().and_then(|h| <[u8; 32]>::try_from(hex::decode(h).ok()?).ok());
        seed.map_or_else(|| account.clone(), SecretKey::from_seed)
    }

    /// The input key of `shard`.
    pub fn key(&self, shard: u32) -> Option<BlobKey> {
        let hex_key = self.keys.get(shard as usize)?.as_ref()?;
        let bytes: [u8; 32] = hex::decode(hex_key).ok()?.try_into().ok()?;
        Some(BlobKey::from_bytes(bytes))
    }
}
