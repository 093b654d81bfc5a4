//! Running a lease: fetch the model and the shard's inputs (verified), decrypt with the key the
//! requester sealed to us, execute, keep the plaintext items for auditors, store the outputs
//! (encrypted to the requester), and commit.

use super::runtimes::Runtimes;
use super::state::{Phase, StateDir};
use crate::client::NodeClient;
use crate::protocol;
use crate::sender::TxSender;
use crate::store_keeper;
use agora_core::JobManifest;
use agora_core::manifest::ShardSpec;
use agora_core::tx::{LeaseId, Metering, ResultCommitment, TxPayload};
use agora_core::{AccountId, Hash, SecretKey};
use agora_runtime::items::malformed_input;
use agora_store::encrypt::BlobKey;
use agora_store::http::outbound::Reach;
use agora_store::{Pin, Store};
use anyhow::{Context, bail};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::info;

/// How long the shard's input blob is sought from its sources before it counts as
/// unavailable (a statement auditors then check by fetching it themselves).
const INPUT_PATIENCE: Duration = Duration::from_secs(30);

/// A lease's inputs cannot be computed, by the requester's fault: its input blob is
/// unavailable or does not match the manifest's root and count (`item: None`), or input item
/// `item` is malformed for the kind ([`malformed_input`]) or refused by the model
/// ([`agora_runtime::Executor::check_input`]), or (encrypted jobs) the input key the requester
/// sealed to the provider does not open.
#[derive(Debug, thiserror::Error)]
#[error("the lease's inputs cannot be computed: {why}")]
pub struct InvalidInput {
    /// The malformed item, or `None` for the shard's input as a whole.
    pub item: Option<u32>,
    /// What is wrong.
    pub why: String,
}

/// A shard's input items: its input blob fetched from the job's sources (for up to
/// [`INPUT_PATIENCE`]), opened with `key` for an encrypted job, checked against the
/// manifest's root and count, and each item's format checked ([`malformed_input`]). The
/// provider decides with it whether to state the inputs invalid, and the auditors who check
/// that statement decide with it too, so an honest statement is always upheld by honest
/// auditors who can reach the same sources.
pub async fn load_inputs(
    runtimes: &Runtimes,
    m: &JobManifest,
    shard: &ShardSpec,
    key: Option<&BlobKey>,
    reach: Reach,
    pin: &Pin,
) -> Result<Vec<Vec<u8>>, InvalidInput> {
    let whole = |why: String| InvalidInput { item: None, why };
    let blob = super::auditor::with_patience(INPUT_PATIENCE, || {
        runtimes.fetch_input(&shard.input, &m.sources, reach, pin)
    })
    .await
    .map_err(|e| whole(format!("the shard's input blob {} is unavailable: {e:#}", shard.input)))?;
    let inputs = protocol::decode_committed(&blob, key, &shard.items_root, shard.item_count)
        .map_err(|e| whole(format!("the shard's inputs do not match the manifest: {e}")))?;
    match inputs.iter().enumerate().find_map(|(i, x)| Some((i, malformed_input(m.kind(), x)?))) {
        Some((i, why)) => {
            Err(InvalidInput { item: Some(i as u32), why: format!("input item {i} is malformed: {why}") })
        }
        None => Ok(inputs),
    }
}

/// What a worker needs.
pub struct Worker {
    /// Our key (opens sealed input keys, agrees output keys).
    pub key: SecretKey,
    /// Chain API.
    pub chain: NodeClient,
    /// Transaction sender for our account.
    pub sender: Arc<TxSender>,
    /// Local content store (outputs are served from here).
    pub store: Store,
    /// Executors.
    pub runtimes: Arc<Runtimes>,
    /// Durable agent state.
    pub state: StateDir,
    /// Share of output items to corrupt, bps (demo cheaters only).
    pub cheat_bps: u32,
    /// Corrupt at least one item of every lease (demo cheaters).
    pub cheat_every_lease: bool,
    /// Demo cheat: store encrypted outputs under a key the requester cannot derive.
    pub garble_outputs: bool,
    /// The device: one lease computes on it at a time (others fetch inputs or wait for keys
    /// meanwhile), so concurrent leases do not slow each other past what they bought.
    pub device: Arc<tokio::sync::Semaphore>,
}

impl Worker {
    /// Waits for the input key sealed to this provider for `lease` (by the requester or its
    /// key agent) and returns it as sealed.
    async fn sealed_input_key(&self, lease: LeaseId, deadline_ms: u64) -> anyhow::Result<Vec<u8>> {
        loop {
            let l = self.chain.lease(lease).await?;
            if let Some(k) = l.key_for(&self.key.public()) {
                return Ok(k.sealed.clone());
            }
            if !l.is_running() {
                bail!("lease {lease} is no longer running");
            }
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
            if now > deadline_ms {
                bail!("the requester never shared the input key of lease {lease}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Computes (or reuses the saved result of) a lease and returns its commitment.
    pub async fn compute(
        &self,
        lease_id: LeaseId,
        saved: Option<&Phase>,
    ) -> anyhow::Result<ResultCommitment> {
        if let Some(Phase::Computed { root, output, items, metering }) = saved {
            return Ok(ResultCommitment {
                root: *root,
                item_count: *items,
                output: *output,
                metering: *metering,
            });
        }
        let lease = self.chain.lease(lease_id).await?;
        let job = self.chain.job(lease.job).await?;
        let m = &job.manifest;
        let shard = m.shards.get(lease.shard as usize).context("lease names a shard the job lacks")?;
        let started = Instant::now();
        let runtimes = &self.runtimes;
        let reach = self.chain.reach().await?;
        let pin = Pin::held_by(store_keeper::lease_owner(lease_id));
        let key = match m.encrypted {
            false => None,
            true => {
                let sealed = self.sealed_input_key(lease_id, lease.deadline_ms).await?;
                Some(protocol::open_input_key(&sealed, &self.key).map_err(|e| InvalidInput {
                    item: None,
                    why: format!("the input key sealed to this provider does not open: {e}"),
                })?)
            }
        };
        // Inputs that cannot be computed are a statement for auditors to check.
        let inputs = load_inputs(runtimes, m, shard, key.as_ref(), reach, &pin).await?;
        self.state.save_items(lease_id, "inputs", &inputs)?;
        let executor = runtimes
            .executor(m.kind(), &m.model, &m.sources, reach, &pin)
            .await
            .context("loading the runtime")?;
        let ctx = protocol::task_context(lease.job, lease.shard, m, &lease.class);
        let device = self.device.acquire().await.expect("never closed");
        let ran = Instant::now();
        let run = tokio::task::spawn_blocking(move || -> anyhow::Result<agora_runtime::RunOutput> {
            // An item the model refuses before computing anything (a prompt longer than it
            // accepts) is a statement for auditors, who check it with the same function.
            let items = inputs.iter().enumerate().map(|(i, x)| (i as u32, x.as_slice()));
            if let Some((index, why)) =
                agora_runtime::executor::first_unusable(executor.as_ref(), &ctx, items)?
            {
                let why = format!("input item {index} is unusable: {why}");
                return Err(InvalidInput { item: Some(index), why }.into());
            }
            Ok(executor.run(&ctx, &inputs)?)
        })
        .await??;
        drop(device);
        crate::api::metrics::observe_runtime("compute", m.kind().name(), ran.elapsed());
        let mut items = run.items;
        if self.cheat_bps > 0 {
            cheat(&mut items, &self.key.public(), lease_id, self.cheat_bps, self.cheat_every_lease);
        }
        self.state.save_items(lease_id, "outputs", &items)?;
        let out_key = match (m.encrypted, self.garble_outputs) {
            (false, _) => None,
            (true, false) => {
                Some(protocol::output_key(&self.key, &m.output_recipient(&lease.requester), lease_id)?)
            }
            (true, true) => Some(agora_store::encrypt::BlobKey::generate()),
        };
        let encoded = protocol::encode_shard(&items, out_key.as_ref())?;
        // Held privately until the commitment is final (see `commit`): a requester who could
        // fetch the outputs first could cancel the lease and keep them for the cancel fee.
        crate::config::write_secret(&self.state.pending_output_path(lease_id), &encoded.blob)?;
        let metering = Metering { wall_ms: started.elapsed().as_millis() as u64, ..run.metering };
        info!(lease = lease_id, items = items.len(), ms = metering.wall_ms, "computed lease");
        Ok(ResultCommitment {
            root: encoded.items_root,
            item_count: encoded.count,
            output: encoded.hash,
            metering,
        })
    }

    /// Posts the commitment, waits for it to be final, and only then publishes the output blob
    /// in the store for the requester (kept for [`store_keeper::OUTPUT_RETENTION`]).
    pub async fn commit(&self, lease: LeaseId, commitment: ResultCommitment) -> anyhow::Result<()> {
        let output = commitment.output;
        self.sender.send(TxPayload::CommitResult { lease, commitment }, Duration::from_secs(60)).await?;
        self.publish_output(lease, &output)
    }

    /// States on chain that `lease`'s inputs cannot be computed, for auditors to check; for an
    /// encrypted job with the proven disclosure of the input key sealed to this provider, so
    /// they open the inputs as it did.
    pub async fn report_invalid(&self, lease: LeaseId, bad: &InvalidInput) -> anyhow::Result<()> {
        let l = self.chain.lease(lease).await?;
        let disclosure = match self.chain.job(l.job).await?.manifest.encrypted {
            false => None,
            true => {
                let sealed = self.sealed_input_key(lease, l.deadline_ms).await?;
                Some(protocol::disclose_input_key(&sealed, &self.key, lease)?)
            }
        };
        let tx = TxPayload::ReportInvalidInput { lease, item: bad.item, disclosure };
        self.sender.send(tx, Duration::from_secs(60)).await?;
        info!(lease, item = ?bad.item, why = %bad.why, "reported the lease's inputs invalid");
        Ok(())
    }

    /// Moves a lease's held output blob into the store, checking it is the committed one.
    fn publish_output(&self, lease: LeaseId, output: &agora_core::Hash) -> anyhow::Result<()> {
        let pending = self.state.pending_output_path(lease);
        match std::fs::File::open(&pending) {
            Ok(file) => {
                let pin = store_keeper::output_pin(lease, agora_store::http::auth::now_ms());
                let info = self.store.put_reader_pinned(file, Some(pin))?;
                if info.hash != *output {
                    bail!("lease {lease}'s held output is {}, but {output} was committed", info.hash);
                }
                std::fs::remove_file(&pending)?;
                Ok(())
            }
            // Published already (a restart after the move).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.store.has(output) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("lease {lease}'s output is missing")),
        }
    }
}

/// Corrupts about a `bps` share of the items (demo cheaters: a cheaper, wrong result). Each
/// item is drawn independently from the provider's key, the lease and the item index, so
/// different providers (and different devnets) cheat on different items; with `every_lease`,
/// a lease none of whose items was drawn still gets one wrong item.
fn cheat(items: &mut [Vec<u8>], provider: &AccountId, lease: LeaseId, bps: u32, every_lease: bool) {
    let draw = |i: u64| {
        Hash::tagged("agora/demo-cheat", &[&provider.0, &lease.to_le_bytes(), &i.to_le_bytes()]).to_u64()
    };
    let mut corrupted = false;
    for (i, item) in items.iter_mut().enumerate() {
        if draw(i as u64) % 10_000 < u64::from(bps) {
            corrupt(item);
            corrupted = true;
        }
    }
    if every_lease && !corrupted && !items.is_empty() {
        let i = (draw(u64::MAX) % items.len() as u64) as usize;
        corrupt(&mut items[i]);
    }
}

/// Makes one item wrong, beyond any audit tolerance: the top bit of every fourth byte (the sign
/// of each value of a little-endian f32 vector, so an embedding points elsewhere rather than
/// drifting by rounding noise) and the first byte (the version tag of structured items).
fn corrupt(item: &mut Vec<u8>) {
    if item.is_empty() {
        item.push(0x5A);
        return;
    }
    for b in item.iter_mut().skip(3).step_by(4) {
        *b ^= 0x80;
    }
    item[0] ^= 0x5A;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheating_changes_about_the_stated_share() {
        let mut items: Vec<Vec<u8>> = (0..2000).map(|i| vec![(i % 200) as u8; 8]).collect();
        let orig = items.clone();
        cheat(&mut items, &SecretKey::from_label("cheater").public(), 3, 1000, false);
        let changed = items.iter().zip(&orig).filter(|(a, b)| a != b).count();
        assert!((120..=280).contains(&changed), "{changed}");
    }

    #[test]
    fn an_every_lease_cheater_leaves_no_lease_clean() {
        let who = SecretKey::from_label("cheater").public();
        for lease in 0..200 {
            let mut items: Vec<Vec<u8>> = (0..3).map(|i| vec![i as u8; 4]).collect();
            let orig = items.clone();
            cheat(&mut items, &who, lease, 500, true);
            assert_ne!(items, orig, "lease {lease} came out clean");
        }
    }

    #[test]
    fn a_corrupted_embedding_points_elsewhere() {
        let v: Vec<f32> = (0..384).map(|i| ((i as f32) * 0.37).sin()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let v: Vec<f32> = v.iter().map(|x| x / norm).collect();
        let mut item = agora_runtime::items::vector::encode_vector(&v);
        corrupt(&mut item);
        let w = agora_runtime::items::vector::decode_vector(&item).unwrap();
        let cosine: f32 = v.iter().zip(&w).map(|(a, b)| a * b).sum();
        assert!(cosine < 0.0, "cosine {cosine}: within what an audit would tolerate");
    }
}
