//! The key agent: shares encrypted jobs' input keys with their matched providers on the
//! requester's behalf, so a job is served (and re-matched after a failure) while its requester
//! is offline, and checks each delivered lease's outputs with the job's output key, confirming
//! or disputing them before the provider is paid (`crate::delivery`). `agora job
//! submit` names the node's account as the job's `key_agent` and deposits each shard's key and
//! the job's output key here, sealed to that account.
//!
//! Who can send what:
//! * `GET /api/v1/key-agent`: anyone; the account to name and seal keys to.
//! * `POST /api/v1/key-agent/jobs/{job}`: the job's requester only (an Ed25519 signature over
//!   the job id and the sealed keys), for a job on chain that names this node as its key agent,
//!   with exactly one key per shard, each of which this node can open, and the job's output
//!   key if it names one (opening to that key). Anything else is refused with the reason;
//!   nothing is stored.
//! * The node pays each `ShareKey`, `ConfirmOutputs` and `DisputeOutputs` fee (and a dispute's
//!   deposit, returned when the dispute holds). At most [`MAX_SHARES_PER_DAY`] such
//!   transactions a day are sent, so requesters who name a node they do not run can cost it at
//!   most that many.
//!
//! Deposits are kept 0600 under `<data dir>/key-agent/` (sealed, as received) until the job
//! finishes, and survive restarts.

use crate::delivery::check_delivered;
use crate::follow::share_input_key;
use agora_client::client::NodeClient;
use agora_client::protocol;
use agora_client::sender::TxSender;
use agora_core::tx::LeaseId;
use agora_core::{AccountId, Hash, SecretKey, Signature};
use agora_ledger::jobs::{Job, ShardStatus};
use agora_ledger::leases::LeaseStatus;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Most `ShareKey` transactions the agent sends (and pays for) per day.
pub const MAX_SHARES_PER_DAY: u32 = 10_000;
/// Largest sealed key accepted (a sealed 32-byte key is well under this).
const MAX_SEALED_KEY: usize = 256;
/// How often deposited jobs are checked for new leases.
const POLL: Duration = Duration::from_secs(1);

/// What a requester deposits: each shard's input key sealed to the agent, in shard order, the
/// job's output key (its seed) sealed to the agent, and its signature over
/// [`deposit_message`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deposit {
    /// Hex of each shard's sealed key.
    pub keys: Vec<String>,
    /// Hex of the sealed output key, for a job that names one.
    #[serde(default)]
    pub output: Option<String>,
    /// The requester's signature.
    pub signature: Signature,
}

/// The message a requester signs to deposit `keys` (the sealed keys' bytes) and `output` (the
/// sealed output key's) for `job`.
pub fn deposit_message(job: u64, keys: &[Vec<u8>], output: Option<&[u8]>) -> Vec<u8> {
    let id = job.to_le_bytes();
    let mut parts: Vec<&[u8]> = vec![&id];
    parts.extend(keys.iter().map(Vec::as_slice));
    // The output key is last, after a separator no sealed key can be (keys are not empty).
    parts.push(&[]);
    parts.extend(output);
    Hash::tagged("agora/key-agent/deposit", &parts).0.to_vec()
}

/// A deposit's contents, checked: the sealed input keys and the opened output key.
#[derive(Debug)]
struct Deposited {
    keys: Vec<Vec<u8>>,
    output: Option<SecretKey>,
}

/// The agent: its account, where deposits live, and the chain it reads and writes.
pub struct KeyAgent {
    key: SecretKey,
    dir: PathBuf,
    chain: NodeClient,
    sender: Arc<TxSender>,
    /// ShareKey transactions sent since `since`.
    spent: Mutex<(Instant, u32)>,
}

/// An API error: status and message.
type Refusal = (StatusCode, String);

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    (status, message.into())
}

impl KeyAgent {
    /// An agent signing with `key` (the node's account) and submitting through `sender`,
    /// reading the chain at `chain`, keeping deposits under `data_dir/key-agent`.
    pub fn new(
        key: SecretKey,
        data_dir: &std::path::Path,
        chain: NodeClient,
        sender: Arc<TxSender>,
    ) -> Arc<Self> {
        Arc::new(Self {
            key,
            dir: data_dir.join("key-agent"),
            chain,
            sender,
            spent: Mutex::new((Instant::now(), 0)),
        })
    }

    /// The agent's routes.
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/api/v1/key-agent", get(account))
            .route("/api/v1/key-agent/jobs/{job}", post(deposit))
            .with_state(self.clone())
    }

    fn path(&self, job: u64) -> PathBuf {
        self.dir.join(format!("{job}.json"))
    }

    /// Checks and stores a deposit (see the module documentation for the rules).
    async fn accept(&self, job_id: u64, d: Deposit) -> Result<usize, Refusal> {
        let job =
            self.chain.job(job_id).await.map_err(|e| refuse(StatusCode::NOT_FOUND, format!("{e:#}")))?;
        let deposited = check_deposit(&self.key, job_id, &job, &d)?;
        let bytes = serde_json::to_vec(&d).expect("serializable");
        agora_client::keyfile::write_secret(&self.path(job_id), &bytes)
            .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        info!(job = job_id, shards = deposited.keys.len(), "key agent: keys deposited");
        Ok(deposited.keys.len())
    }

    /// The deposited jobs and their keys (checked when they were accepted).
    fn deposits(&self) -> Vec<(u64, Deposited)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return vec![] };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let job = e.path().file_stem()?.to_str()?.parse().ok()?;
                let d: Deposit = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                let keys = d.keys.iter().map(|k| hex::decode(k).ok()).collect::<Option<Vec<_>>>()?;
                let output = match &d.output {
                    None => None,
                    Some(h) => Some(open_output_key(&hex::decode(h).ok()?, &self.key).ok()?),
                };
                Some((job, Deposited { keys, output }))
            })
            .collect()
    }

    /// Takes one unit of the daily budget; false when it is used up.
    fn take_budget(&self) -> bool {
        let mut spent = self.spent.lock().expect("not poisoned");
        if spent.0.elapsed() > Duration::from_secs(86_400) {
            *spent = (Instant::now(), 0);
        }
        if spent.1 >= MAX_SHARES_PER_DAY {
            return false;
        }
        spent.1 += 1;
        true
    }

    /// Returns one unit taken by [`Self::take_budget`] that was not spent.
    fn give_back_budget(&self) {
        let mut spent = self.spent.lock().expect("not poisoned");
        spent.1 = spent.1.saturating_sub(1);
    }

    /// Shares keys for one deposited job's running leases and answers its delivered leases'
    /// outputs; forgets the job once it finished.
    async fn serve_job(
        &self,
        job_id: u64,
        deposited: &Deposited,
        (shared, answered): (&mut BTreeSet<LeaseId>, &mut BTreeSet<LeaseId>),
    ) -> anyhow::Result<()> {
        let job = self.chain.job(job_id).await?;
        if job.finished {
            std::fs::remove_file(self.path(job_id))?;
            info!(job = job_id, "key agent: job finished, keys deleted");
            return Ok(());
        }
        for (i, s) in job.shards.iter().enumerate() {
            let ShardStatus::Leased(l) = s.status else { continue };
            let lease = self.chain.lease(l).await?;
            let key = || {
                anyhow::ensure!(
                    self.take_budget(),
                    "the daily budget of {MAX_SHARES_PER_DAY} shared keys is used up"
                );
                let sealed = deposited.keys.get(i).ok_or_else(|| anyhow::anyhow!("no key for shard {i}"))?;
                Ok(protocol::open_input_key(sealed, &self.key)?)
            };
            if share_input_key(&self.sender, &job, l, &lease, key, shared).await? {
                info!(job = job_id, shard = i, lease = l, "key agent: key shared with the provider");
            }
            if let Some(output) = &deposited.output
                && lease.status == LeaseStatus::Delivered
                && !answered.contains(&l)
            {
                // The budget is taken for an answer sent, not for a download that failed.
                anyhow::ensure!(
                    self.take_budget(),
                    "the daily budget of {MAX_SHARES_PER_DAY} transactions is used up"
                );
                if check_delivered(&self.chain, &self.sender, (&job, output), l, &lease, answered)
                    .await?
                    .is_none()
                {
                    self.give_back_budget();
                }
            }
        }
        Ok(())
    }

    /// Runs until the process stops: every [`POLL`], shares keys for every deposited job.
    pub async fn run(self: Arc<Self>) {
        let (mut shared, mut answered) = (BTreeSet::new(), BTreeSet::new());
        loop {
            for (job, deposited) in self.deposits() {
                if let Err(e) = self.serve_job(job, &deposited, (&mut shared, &mut answered)).await {
                    warn!(job, error = %format!("{e:#}"), "key agent: cannot serve the job now");
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Opens an output key sealed to `me` (its seed, sealed as a blob key).
fn open_output_key(sealed: &[u8], me: &SecretKey) -> anyhow::Result<SecretKey> {
    Ok(SecretKey::from_seed(*protocol::open_input_key(sealed, me)?.as_bytes()))
}

/// Checks a deposit for `job` against the agent's key `me`: the job names `me` as its key
/// agent and is encrypted, there is one key per shard, each opens with `me`, the output key
/// opens with `me` to the job's `output_key` (when it names one), and the deposit is signed by
/// the job's requester.
fn check_deposit(me: &SecretKey, job_id: u64, job: &Job, d: &Deposit) -> Result<Deposited, Refusal> {
    let bad = |m: String| refuse(StatusCode::UNPROCESSABLE_ENTITY, m);
    if job.manifest.key_agent != Some(me.public()) {
        return Err(bad(format!("job {job_id} does not name this node ({}) as its key_agent", me.public())));
    }
    if !job.manifest.encrypted {
        return Err(bad(format!("job {job_id} is not encrypted: there are no keys to share")));
    }
    if d.keys.len() != job.manifest.shards.len() {
        return Err(bad(format!(
            "job {job_id} has {} shards, got {} keys",
            job.manifest.shards.len(),
            d.keys.len()
        )));
    }
    let sealed = d
        .keys
        .iter()
        .map(|k| hex::decode(k).ok().filter(|b| b.len() <= MAX_SEALED_KEY))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad(format!("every key must be hex of at most {MAX_SEALED_KEY} bytes")))?;
    let sealed_output =
        match &d.output {
            None => None,
            Some(h) => Some(hex::decode(h).ok().filter(|b| b.len() <= MAX_SEALED_KEY).ok_or_else(|| {
                bad(format!("the output key must be hex of at most {MAX_SEALED_KEY} bytes"))
            })?),
        };
    job.requester
        .verify(&deposit_message(job_id, &sealed, sealed_output.as_deref()), &d.signature)
        .map_err(|_| refuse(StatusCode::UNAUTHORIZED, format!("not signed by job {job_id}'s requester")))?;
    if let Some(i) = sealed.iter().position(|k| protocol::open_input_key(k, me).is_err()) {
        return Err(bad(format!("key {i} is not sealed to this node's account {}", me.public())));
    }
    let output = match (job.manifest.output_key, sealed_output) {
        (None, None) => None,
        (None, Some(_)) => return Err(bad(format!("job {job_id} names no output key; deposit none"))),
        (Some(_), None) => return Err(bad(format!("job {job_id} names an output key; deposit it too"))),
        (Some(expected), Some(s)) => match open_output_key(&s, me) {
            Ok(k) if k.public() == expected => Some(k),
            _ => {
                return Err(bad(format!(
                    "the output key does not open with this node to job {job_id}'s {expected}"
                )));
            }
        },
    };
    Ok(Deposited { keys: sealed, output })
}

/// `GET /api/v1/key-agent`: the account to name as `key_agent` and to seal keys to.
async fn account(State(agent): State<Arc<KeyAgent>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "account": agent.key.public() }))
}

/// `POST /api/v1/key-agent/jobs/{job}`: a requester deposits its job's sealed keys.
async fn deposit(
    State(agent): State<Arc<KeyAgent>>,
    UrlPath(job): UrlPath<u64>,
    Json(d): Json<Deposit>,
) -> Result<Json<serde_json::Value>, Refusal> {
    let keys = agent.accept(job, d).await?;
    Ok(Json(serde_json::json!({ "job": job, "keys": keys })))
}

/// The key agent of the node behind `client`, if it runs one.
pub async fn agent_of(client: &NodeClient) -> Option<AccountId> {
    let v: serde_json::Value = client.get("/api/v1/key-agent").await.ok()?;
    serde_json::from_value(v["account"].clone()).ok()
}

/// Deposits `keys` (one per shard) and the job's `output` key for `job` with the key agent
/// `agent` behind `client`, sealed to it and signed by `requester`.
pub async fn deposit_keys(
    client: &NodeClient,
    requester: &SecretKey,
    agent: &AccountId,
    job: u64,
    keys: &[agora_store::encrypt::BlobKey],
    output: Option<&SecretKey>,
) -> anyhow::Result<()> {
    let sealed = keys.iter().map(|k| protocol::seal_input_key(k, agent)).collect::<Result<Vec<_>, _>>()?;
    let sealed_output = output
        .map(|k| protocol::seal_input_key(&agora_store::encrypt::BlobKey::from_bytes(k.seed()), agent))
        .transpose()?;
    let signature = requester.sign(&deposit_message(job, &sealed, sealed_output.as_deref()));
    let body = Deposit {
        keys: sealed.iter().map(hex::encode).collect(),
        output: sealed_output.map(hex::encode),
        signature,
    };
    let _: serde_json::Value = client.post(&format!("/api/v1/key-agent/jobs/{job}"), &body).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_store::encrypt::BlobKey;

    fn job(requester: &SecretKey, agent: &SecretKey, shards: usize) -> Job {
        use agora_core::manifest::{Constraints, JobParams, ShardSpec, VerificationPolicy};
        let shard = ShardSpec { input: Hash::ZERO, items_root: Hash::ZERO, item_count: 1, quantity: 1 };
        let mut manifest = agora_core::JobManifest {
            model: Hash::ZERO,
            params: JobParams::Embed { batch_size: 8 },
            class: "cpu.x86_64".parse().unwrap(),
            shards: vec![shard; shards],
            max_unit_price: agora_core::Amount(10),
            deadline_ms: 1,
            policy: VerificationPolicy::Standard,
            constraints: Constraints::default(),
            encrypted: true,
            sources: vec![],
            key_agent: None,
            output_key: None,
        };
        manifest.key_agent = Some(agent.public());
        Job {
            requester: requester.public(),
            manifest,
            submitted_height: 0,
            shards: vec![],
            finished: false,
            cancelled: false,
        }
    }

    fn deposit(signer: &SecretKey, to: &AccountId, job: u64, n: usize) -> Deposit {
        with_output(signer, to, job, n, None)
    }

    fn with_output(
        signer: &SecretKey,
        to: &AccountId,
        job: u64,
        n: usize,
        output: Option<&SecretKey>,
    ) -> Deposit {
        let sealed: Vec<Vec<u8>> =
            (0..n).map(|_| protocol::seal_input_key(&BlobKey::generate(), to).unwrap()).collect();
        let output = output.map(|k| protocol::seal_input_key(&BlobKey::from_bytes(k.seed()), to).unwrap());
        Deposit {
            keys: sealed.iter().map(hex::encode).collect(),
            output: output.as_ref().map(hex::encode),
            signature: signer.sign(&deposit_message(job, &sealed, output.as_deref())),
        }
    }

    #[test]
    fn the_output_key_is_kept_only_if_it_is_the_jobs() {
        let (requester, me) = (SecretKey::from_label("r"), SecretKey::from_label("a"));
        let output = SecretKey::from_label("job output");
        let mut j = job(&requester, &me, 1);
        j.manifest.output_key = Some(output.public());
        let kept =
            check_deposit(&me, 7, &j, &with_output(&requester, &me.public(), 7, 1, Some(&output))).unwrap();
        assert_eq!(kept.output.map(|k| k.public()), Some(output.public()));
        // Another key, none at all, or one for a job that names none.
        let other = SecretKey::from_label("not the job's");
        let e = check_deposit(&me, 7, &j, &with_output(&requester, &me.public(), 7, 1, Some(&other)))
            .unwrap_err();
        assert!(e.1.contains("does not open"), "{}", e.1);
        assert!(
            check_deposit(&me, 7, &j, &deposit(&requester, &me.public(), 7, 1))
                .unwrap_err()
                .1
                .contains("deposit it")
        );
        let plain = job(&requester, &me, 1);
        let e = check_deposit(&me, 7, &plain, &with_output(&requester, &me.public(), 7, 1, Some(&output)))
            .unwrap_err();
        assert!(e.1.contains("names no output key"), "{}", e.1);
        // The signature covers the output key: swapping it in after signing is refused.
        let mut swapped = with_output(&requester, &me.public(), 7, 1, Some(&output));
        swapped.output = with_output(&requester, &me.public(), 7, 1, Some(&output)).output;
        assert_eq!(check_deposit(&me, 7, &j, &swapped).unwrap_err().0, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn only_the_requesters_deposit_for_a_job_naming_this_agent_is_kept() {
        let (requester, me, stranger) =
            (SecretKey::from_label("r"), SecretKey::from_label("a"), SecretKey::from_label("s"));
        let j = job(&requester, &me, 2);
        assert_eq!(
            check_deposit(&me, 7, &j, &deposit(&requester, &me.public(), 7, 2)).unwrap().keys.len(),
            2
        );
        // Anyone else's signature, or the requester's for another job, is refused.
        let forged = check_deposit(&me, 7, &j, &deposit(&stranger, &me.public(), 7, 2)).unwrap_err();
        assert_eq!(forged.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            check_deposit(&me, 7, &j, &deposit(&requester, &me.public(), 8, 2)).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        // Keys this agent cannot open, a wrong count, or a job naming another agent.
        let sealed_elsewhere =
            check_deposit(&me, 7, &j, &deposit(&requester, &stranger.public(), 7, 2)).unwrap_err();
        assert!(sealed_elsewhere.1.contains("not sealed to this node"), "{}", sealed_elsewhere.1);
        assert!(
            check_deposit(&me, 7, &j, &deposit(&requester, &me.public(), 7, 3))
                .unwrap_err()
                .1
                .contains("2 shards")
        );
        let other = job(&requester, &stranger, 2);
        assert!(
            check_deposit(&me, 7, &other, &deposit(&requester, &me.public(), 7, 2))
                .unwrap_err()
                .1
                .contains("key_agent")
        );
    }
}
