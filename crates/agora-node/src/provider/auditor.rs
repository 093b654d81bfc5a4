//! Audit duty: when the chain assigns this node to an audit, fetch the sampled items from the
//! provider (each checked against the on-chain commitments), recompute them with the same
//! runtime, compare with the kind's comparison function, and report the verdict.

use super::isolate::{self, Answer};
use super::runtimes::Runtimes;
use super::work::load_inputs;
use crate::client::NodeClient;
use crate::protocol::{self, AUDITOR_HEADER, AuditItems, SIGNATURE_HEADER};
use crate::sender::TxSender;
use crate::store_keeper::audit_owner;
use agora_core::SecretKey;
use agora_core::tx::{AuditEvidence, AuditId, LeaseId, TxPayload};
use agora_ledger::audits::{AuditSubject, AuditTarget};
use agora_ledger::leases::Lease;
use agora_runtime::executor::AuditRequest;
use agora_store::Pin;
use agora_store::http::outbound::Reach;
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

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
    /// The device, shared with the lease worker: a recomputation never runs beside a lease's
    /// compute (which would slow it past what its requester bought).
    pub device: Arc<tokio::sync::Semaphore>,
    /// Where recomputations run: `None` in this process, else in a child process (validators,
    /// whose process must survive any model).
    pub isolation: Option<Isolation>,
}

/// How audits run in a child process.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The binary to run as `agora sandbox audit` (this node's own).
    pub exe: PathBuf,
    /// What the child may use.
    pub limits: isolate::Limits,
}

/// Where one audit's recomputation runs.
enum Recompute<'a> {
    /// Here, with the cached executor.
    Here(Arc<dyn agora_runtime::executor::Executor>),
    /// In a child process, loading the model file.
    Child(&'a Isolation, PathBuf),
}

/// Runs `attempt` until it succeeds or `patience` has passed, backing off from 200 ms to 2 s;
/// returns the last error.
pub(super) async fn with_patience<T, Fut>(
    patience: Duration,
    mut attempt: impl FnMut() -> Fut,
) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let start = std::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() + delay < patience => {
                debug!(error = %format!("{e:#}"), "request refused; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Why an audit could not be carried out by this node (as opposed to a failed audit).
#[derive(Debug, thiserror::Error)]
#[error("cannot audit: {0}")]
pub struct Unable(pub String);

/// Whether an audit error is this node's own failure rather than the provider's: [`Unable`],
/// or a transport error (no route, refused connection, timeout) reaching the provider. A
/// provider that answers, but with an error or with items that do not verify, is at fault.
pub(super) fn own_failure(e: &anyhow::Error) -> bool {
    e.is::<Unable>() || e.chain().any(|c| c.is::<reqwest::Error>())
}

/// How long refused or failed item requests are retried before they count as withholding.
/// The provider checks the request against its own view of the chain, which can trail ours by a
/// few blocks: an auditor added by an escalation asks as soon as it sees its assignment, and
/// may hear "not assigned" or "no such audit" first.
pub(super) const FETCH_PATIENCE: Duration = Duration::from_secs(10);

/// Largest answer read from a provider's audit endpoint: the sampled items (hex) with proofs.
pub const MAX_AUDIT_RESPONSE: usize = 256 << 20;

impl Auditor {
    /// Fetches the audit's items, retrying for up to [`FETCH_PATIENCE`].
    async fn fetch_items_patiently(
        &self,
        endpoint: &str,
        audit: AuditId,
        reach: Reach,
    ) -> anyhow::Result<AuditItems> {
        with_patience(FETCH_PATIENCE, || self.fetch_items(endpoint, audit, reach)).await
    }

    async fn fetch_items(&self, endpoint: &str, audit: AuditId, reach: Reach) -> anyhow::Result<AuditItems> {
        let body = self.fetch_signed(endpoint, &format!("/agent/audit/{audit}"), audit, reach).await?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// GETs `path` of the provider's agent at `endpoint`, as the assigned auditor of `audit`
    /// (signed); the body, at most [`MAX_AUDIT_RESPONSE`] bytes, of a successful answer.
    pub(super) async fn fetch_signed(
        &self,
        endpoint: &str,
        path: &str,
        audit: AuditId,
        reach: Reach,
    ) -> anyhow::Result<Vec<u8>> {
        let sig = self.key.sign(&protocol::audit_request_message(audit));
        let url = format!("{}{path}", endpoint.trim_end_matches('/'));
        // Not reachable from here is this auditor's problem to report as nothing, like a DNS
        // name that resolves only inside the network (a transport error).
        reach.check_url(&url).map_err(|e| Unable(e.to_string()))?;
        let http = agora_store::http::outbound::client_reaching(reach, Some(Duration::from_secs(30)));
        let resp = http
            .get(&url)
            .header(AUDITOR_HEADER, self.key.public().to_string())
            .header(SIGNATURE_HEADER, sig.to_string())
            .send()
            .await
            .with_context(|| format!("provider unreachable at {url}"))?;
        let status = resp.status();
        let body = agora_store::http::outbound::read_capped(resp, MAX_AUDIT_RESPONSE).await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned();
            anyhow::bail!("provider answered {status}: {text}");
        }
        Ok(body)
    }

    /// Audits and reports. Returns the verdict reported.
    pub async fn run(&self, audit_id: AuditId) -> anyhow::Result<bool> {
        let audit = self.chain.audit(audit_id).await?;
        let lease_id = match audit.target {
            AuditTarget::Lease(id) => id,
            AuditTarget::Window(key) => return self.run_window(audit_id, &audit, key).await,
        };
        let lease = self.chain.lease(lease_id).await?;
        let job = self.chain.job(lease.job).await?;
        let m = &job.manifest;
        let shard = m.shards.get(lease.shard as usize).context("lease names a missing shard")?;
        let (reach, pin) = (self.chain.reach().await?, Pin::held_by(audit_owner(audit_id)));
        if audit.subject == AuditSubject::Inputs {
            let (passed, detail, evidence) =
                self.check_inputs(m, shard, (lease_id, &lease), reach, &pin).await?;
            return self.report(audit_id, passed, &detail, evidence).await;
        }
        let commitment = lease.commitment.clone().context("an audited lease has a commitment")?;
        let provider = self.chain.provider(&lease.provider).await?;
        // Every audit, and the availability check of a lease the draw did not audit, first
        // fetches the committed output blob: payment needs outputs the requester can get.
        let endpoint = &provider.profile.endpoint;
        let binding = Binding::of(m, lease_id, &lease)?;
        let available =
            with_patience(FETCH_PATIENCE, || check_output(endpoint, reach, &commitment, &binding)).await;
        if let Err(e) = &available
            && own_failure(e)
        {
            return Err(anyhow::anyhow!("{e:#}").context("cannot check the outputs"));
        }
        if audit.subject == AuditSubject::Availability || available.is_err() {
            let (passed, detail, root) = match available {
                Ok(()) => (true, "the committed output blob is available".to_string(), commitment.root),
                Err(e) => (false, format!("{e:#}"), agora_core::Hash::of(format!("{e:#}").as_bytes())),
            };
            return self.report(audit_id, passed, &detail, AuditEvidence::finding(root)).await;
        }
        let recompute = self.recompute_for(m, reach, &pin).await?;
        let (passed, detail, evidence) = match self
            .check(
                &audit.items,
                audit_id,
                &provider.profile.endpoint,
                reach,
                shard,
                &commitment,
                &job.manifest,
                &lease,
                recompute,
            )
            .await
        {
            Ok(found) => found,
            // This node's own failure (no route to the provider, a timeout, its own limits):
            // it reports nothing, so the chain replaces it. Never an accusation.
            Err(e) if own_failure(&e) => {
                return Err(e.context("cannot audit"));
            }
            Err(e) => {
                // The provider answered, but not with what it committed to: withholding or
                // items that do not verify fail the audit.
                (false, format!("{e:#}"), AuditEvidence::nothing_recomputed())
            }
        };
        self.report(audit_id, passed, &detail, evidence).await
    }

    /// Sends a verdict with its evidence.
    pub(super) async fn report(
        &self,
        audit: AuditId,
        passed: bool,
        detail: &str,
        evidence: AuditEvidence,
    ) -> anyhow::Result<bool> {
        if !passed {
            warn!(audit, detail = %detail, "audit failed");
        }
        let measured_ms = evidence.measured_ms;
        self.sender.send(TxPayload::ReportAudit { audit, passed, evidence }, Duration::from_secs(60)).await?;
        info!(audit, passed, measured_ms, "audit reported");
        Ok(passed)
    }

    /// Where this node runs the job's executor: here, or (validators) in a child process. A
    /// model this node cannot load means it cannot audit ([`Unable`]), not that the provider
    /// cheated.
    async fn recompute_for(
        &self,
        m: &agora_core::JobManifest,
        reach: Reach,
        pin: &Pin,
    ) -> anyhow::Result<Recompute<'_>> {
        let unable = |e: anyhow::Error| Unable(format!("loading the runtime: {e:#}"));
        Ok(match &self.isolation {
            None => Recompute::Here(
                self.runtimes.executor(m.kind(), &m.model, &m.sources, reach, pin).await.map_err(unable)?,
            ),
            Some(isolation) => Recompute::Child(
                isolation,
                self.runtimes.model_file(m.kind(), &m.model, &m.sources, reach, pin).await.map_err(unable)?,
            ),
        })
    }

    /// Recomputes `request`'s sample (or, with `check_inputs`, checks its input items) where
    /// `recompute` says, holding the device meanwhile.
    async fn answer(
        &self,
        recompute: Recompute<'_>,
        manifest: &agora_core::JobManifest,
        ctx: agora_runtime::executor::TaskContext,
        request: AuditRequest,
        check_inputs: bool,
    ) -> anyhow::Result<Answer> {
        let device = self.device.acquire().await.expect("never closed");
        let ran = std::time::Instant::now();
        let answer = match recompute {
            Recompute::Here(executor) => {
                tokio::task::spawn_blocking(move || match check_inputs {
                    true => isolate::check_inputs(executor.as_ref(), &ctx, &request),
                    false => isolate::recompute(executor.as_ref(), &ctx, &request),
                })
                .await?
            }
            Recompute::Child(isolation, model_file) => {
                let audit = isolate::Audit {
                    kind: manifest.kind(),
                    model: manifest.model,
                    model_file,
                    models_dir: self.runtimes.models_dir().to_path_buf(),
                    ctx: &ctx,
                    request: &request,
                    check_inputs,
                };
                isolate::run(&isolation.exe, audit, isolation.limits).await?
            }
        };
        drop(device);
        crate::api::metrics::observe_runtime("audit", manifest.kind().name(), ran.elapsed());
        Ok(answer)
    }

    /// Checks a provider's statement that a lease's inputs cannot be computed, the way the
    /// provider decided it: upheld (`true`) if the inputs fail to load ([`load_inputs`]) or,
    /// for a statement naming an item, if the model refuses that item
    /// ([`agora_runtime::Executor::check_input`]: a prompt longer than it accepts); refuted if
    /// they load and the item is usable. The evidence commits to what was found: the hash of
    /// the reason, or the inputs' root. An encrypted job's inputs are opened with the key the
    /// provider disclosed ([`protocol::open_disclosed_input_key`]); a sealed key that does not
    /// open upholds the statement (the requester sent it).
    async fn check_inputs(
        &self,
        m: &agora_core::JobManifest,
        shard: &agora_core::manifest::ShardSpec,
        (id, lease): (LeaseId, &Lease),
        reach: Reach,
        pin: &Pin,
    ) -> anyhow::Result<(bool, String, AuditEvidence)> {
        let found = |passed: bool, detail: String, root: agora_core::Hash| {
            (passed, detail, AuditEvidence::finding(root))
        };
        let upheld = |why: String| found(true, why.clone(), agora_core::Hash::of(why.as_bytes()));
        let key = match (m.encrypted, lease.input_disclosure, lease.key_for(&lease.provider)) {
            (false, ..) => None,
            (true, Some(disclosure), Some(sealed)) => {
                match protocol::open_disclosed_input_key(&sealed.sealed, &lease.provider, &disclosure, id) {
                    Ok(key) => Some(key),
                    // The chain admitted the disclosure, so the key itself does not open.
                    Err(e) => {
                        return Ok(upheld(format!(
                            "the input key sealed to the provider does not open: {e}"
                        )));
                    }
                }
            }
            (true, ..) => {
                return Err(Unable("the statement carries no key disclosure to check".into()).into());
            }
        };
        let items = match load_inputs(&self.runtimes, m, shard, key.as_ref(), reach, pin).await {
            Err(bad) => return Ok(upheld(bad.why)),
            Ok(items) => items,
        };
        let root = agora_core::merkle::MerkleTree::from_items(&items).root();
        let loaded = format!("all {} input items load and are well-formed", items.len());
        let Some(item) = lease.disputed_item else { return Ok(found(false, loaded, root)) };
        let bytes =
            items.get(item as usize).context("the disputed item is within the shard (ledger-checked)")?;
        let request = AuditRequest { indices: vec![], inputs: vec![(item, bytes.clone())], claimed: vec![] };
        let ctx = protocol::task_context(lease.job, lease.shard, m, &lease.class);
        let recompute = self.recompute_for(m, reach, pin).await?;
        match self.answer(recompute, m, ctx, request, true).await? {
            Answer::Unusable(why) => Ok(upheld(why)),
            Answer::Usable => Ok(found(false, format!("{loaded}, and the model accepts item {item}"), root)),
            Answer::Failed(e) => Err(Unable(e).into()),
            other => Err(Unable(format!("an input check answered {other:?}")).into()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn check(
        &self,
        indices: &[u32],
        audit_id: AuditId,
        endpoint: &str,
        reach: Reach,
        shard: &agora_core::manifest::ShardSpec,
        commitment: &agora_core::tx::ResultCommitment,
        manifest: &agora_core::JobManifest,
        lease: &Lease,
        recompute: Recompute<'_>,
    ) -> anyhow::Result<(bool, String, AuditEvidence)> {
        // The ledger accepted the commitment only with the shard's output count (training
        // commits checkpoints, not one output per input), so output proofs are checked
        // against the commitment's count and input proofs against the shard's.
        let items = self.fetch_items_patiently(endpoint, audit_id, reach).await?;
        let inputs = items
            .inputs
            .iter()
            .map(|p| Ok((p.index, p.verified(&shard.items_root, shard.item_count)?)))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("an input item does not match the requester's commitment")?;
        let claimed = items
            .outputs
            .iter()
            .map(|p| Ok((p.index, p.verified(&commitment.root, commitment.item_count)?)))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("an output item does not match the provider's commitment")?;
        let request = AuditRequest { indices: indices.to_vec(), inputs, claimed };
        let ctx = protocol::task_context(lease.job, lease.shard, manifest, &lease.class);
        match self.answer(recompute, manifest, ctx, request, false).await? {
            Answer::Outcome(o) => {
                let bad: Vec<String> = o
                    .verdicts
                    .iter()
                    .filter(|(_, v)| !v.matches)
                    .map(|(i, v)| format!("item {i}: {}", v.detail))
                    .collect();
                let detail =
                    if bad.is_empty() { format!("{} items match", o.verdicts.len()) } else { bad.join("; ") };
                Ok((bad.is_empty(), detail, o.evidence()))
            }
            // The claimed outputs could not even be replayed (e.g. a malformed checkpoint).
            Answer::BadClaims(e) => Ok((
                false,
                format!("recomputation rejected the claims: {e}"),
                AuditEvidence::nothing_recomputed(),
            )),
            // The recomputation itself failed here (the model, a resource stop, unusable
            // inputs or parameters the provider is not to blame for): unable, not fraud.
            Answer::Failed(e) => Err(Unable(e).into()),
            other => Err(Unable(format!("a recomputation answered {other:?}")).into()),
        }
    }
}

/// How an auditor ties a lease's output blob to the committed items.
enum Binding {
    /// By decoding the blob (decrypted with the key, for an encrypted job whose requester
    /// disclosed it in a dispute) and checking the items' root and count.
    Items(Option<agora_store::encrypt::BlobKey>),
    /// By its hash alone: an encrypted job's blob, whose key only the requester holds.
    HashOnly,
}

impl Binding {
    /// The binding an auditor can check for lease `id` of a job with manifest `m`.
    fn of(m: &agora_core::JobManifest, id: LeaseId, lease: &Lease) -> anyhow::Result<Self> {
        let dispute = lease.delivery.as_ref().and_then(|d| d.dispute.as_ref());
        match (m.encrypted, dispute) {
            (false, _) => Ok(Binding::Items(None)),
            (true, None) => Ok(Binding::HashOnly),
            (true, Some(d)) => {
                let recipient = m.output_recipient(&lease.requester);
                protocol::open_disclosed_output_key(&recipient, &lease.provider, &d.disclosure, id)
                    .map(|key| Binding::Items(Some(key)))
                    // The chain admitted the disclosure, so this node's view of it is wrong.
                    .map_err(|e| Unable(format!("deriving the disclosed output key: {e}")).into())
            }
        }
    }
}

/// Fetches a lease's committed output blob from the provider's store at `endpoint` into a
/// temporary file (at most [`protocol::MAX_OUTPUT_BLOB`] bytes: asked first, and a provider that
/// understates the size has the download refused before its content is read) and checks it is
/// the committed one: its hash (verified chunk by chunk as it arrives) and, where the
/// [`Binding`] allows (an unencrypted job, or a disputed one's disclosed key), that its items
/// hash to the committed root and count.
/// Transport errors stay in the chain (this node's problem, [`own_failure`]); anything else is
/// the provider's.
async fn check_output(
    endpoint: &str,
    reach: Reach,
    commitment: &agora_core::tx::ResultCommitment,
    binding: &Binding,
) -> anyhow::Result<()> {
    let store = agora_store::http::Client::reaching(endpoint, reach)
        .map_err(|e| Unable(e.to_string()))?
        .with_max_blob(protocol::MAX_OUTPUT_BLOB);
    // The size first, so a blob too large for any requester is refused without storing it.
    match store.stat(&commitment.output).await.context("asking for the output blob's size")? {
        None => anyhow::bail!("the provider does not serve the committed output blob {}", commitment.output),
        Some(info) if info.size > protocol::MAX_OUTPUT_BLOB => {
            anyhow::bail!("the output blob is {} bytes, more than {}", info.size, protocol::MAX_OUTPUT_BLOB)
        }
        Some(_) => {}
    }
    let file = tempfile::NamedTempFile::new().map_err(|e| Unable(format!("a temporary file: {e}")))?;
    store
        .download_to_file(&commitment.output, file.path(), None, |_, _| {})
        .await
        .with_context(|| format!("fetching the committed output blob {}", commitment.output))?;
    if let Binding::Items(key) = binding {
        let blob = std::fs::read(file.path()).map_err(|e| Unable(format!("reading the blob back: {e}")))?;
        protocol::decode_committed(&blob, key.as_ref(), &commitment.root, commitment.item_count)
            .context("the output blob is not the committed items")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn an_unreachable_provider_is_the_auditors_problem_a_refusal_is_the_providers() {
        // Nothing listens on port 1: connecting fails, as it would for an auditor whose own
        // network is down. That must not become a fraud report.
        let http = agora_store::http::outbound::client_with_total(Duration::from_secs(5));
        let err = http.get("http://127.0.0.1:1/agent/audit/1").send().await.unwrap_err();
        let err = anyhow::Error::new(err).context("provider unreachable at http://127.0.0.1:1");
        assert!(own_failure(&err));
        assert!(own_failure(&anyhow::Error::new(Unable("recomputing: model problem".into()))));
        assert!(!own_failure(&anyhow::anyhow!("provider answered 403 Forbidden: not assigned")));
        assert!(!own_failure(&anyhow::anyhow!("item 3 does not match its commitment")));
    }

    #[tokio::test]
    async fn an_output_blob_is_checked_against_the_commitment_before_payment() {
        let dir = tempfile::tempdir().unwrap();
        let store = agora_store::Store::open(dir.path()).unwrap();
        let items = vec![b"one".to_vec(), b"two".to_vec()];
        let encoded = protocol::encode_shard(&items, None).unwrap();
        store.put(&encoded.blob, true).unwrap();
        let app = agora_store::http::router(store.clone(), agora_store::http::ServerConfig::open());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let commitment = |output, root, count| agora_core::tx::ResultCommitment {
            root,
            item_count: count,
            output,
            metering: Default::default(),
        };
        let good = commitment(encoded.hash, encoded.items_root, 2);
        check_output(&url, Reach::Any, &good, &Binding::Items(None)).await.unwrap();
        // A blob the provider does not serve (withheld, or never published): its fault.
        let missing = commitment(agora_core::Hash::of(b"never stored"), encoded.items_root, 2);
        let e = check_output(&url, Reach::Any, &missing, &Binding::Items(None)).await.unwrap_err();
        assert!(!own_failure(&e), "{e:#}");
        // A blob that is not the committed items (another root, or another count).
        let e = check_output(
            &url,
            Reach::Any,
            &commitment(encoded.hash, agora_core::Hash::of(b"x"), 2),
            &Binding::Items(None),
        )
        .await
        .unwrap_err();
        assert!(!own_failure(&e) && format!("{e:#}").contains("not the committed items"), "{e:#}");
        let e = check_output(
            &url,
            Reach::Any,
            &commitment(encoded.hash, encoded.items_root, 3),
            &Binding::Items(None),
        )
        .await
        .unwrap_err();
        assert!(format!("{e:#}").contains("holds 2 items"), "{e:#}");
        // An encrypted blob is checked by its hash alone (the requester holds the key).
        check_output(
            &url,
            Reach::Any,
            &commitment(encoded.hash, agora_core::Hash::of(b"x"), 9),
            &Binding::HashOnly,
        )
        .await
        .unwrap();
        // An encrypted blob whose requester disputed it is decrypted with the disclosed key:
        // the committed items pass; a blob the provider encrypted under another key (so the
        // requester cannot open it) fails, as the provider's fault.
        let (provider, requester) = (SecretKey::from_label("p"), SecretKey::from_label("r"));
        let key = protocol::output_key(&provider, &requester.public(), 7).unwrap();
        let sealed = protocol::encode_shard(&items, Some(&key)).unwrap();
        let wrong = protocol::encode_shard(&items, Some(&agora_store::encrypt::BlobKey::generate())).unwrap();
        store.put(&sealed.blob, true).unwrap();
        store.put(&wrong.blob, true).unwrap();
        let d = protocol::disclose_output_key(&requester, &provider.public(), 7).unwrap();
        let disclosed =
            protocol::open_disclosed_output_key(&requester.public(), &provider.public(), &d, 7).unwrap();
        let with_key = Binding::Items(Some(disclosed));
        check_output(&url, Reach::Any, &commitment(sealed.hash, sealed.items_root, 2), &with_key)
            .await
            .unwrap();
        let e = check_output(&url, Reach::Any, &commitment(wrong.hash, wrong.items_root, 2), &with_key)
            .await
            .unwrap_err();
        assert!(!own_failure(&e) && format!("{e:#}").contains("not the committed items"), "{e:#}");
        // Without the key, only the hash could be checked.
        check_output(&url, Reach::Any, &commitment(wrong.hash, wrong.items_root, 2), &Binding::HashOnly)
            .await
            .unwrap();
        // Nobody listening: this auditor's own problem, never the provider's fault.
        let e =
            check_output("http://127.0.0.1:1", Reach::Any, &good, &Binding::Items(None)).await.unwrap_err();
        assert!(own_failure(&e), "{e:#}");
    }

    #[tokio::test]
    async fn refusals_are_retried_before_they_count() {
        let calls = AtomicU32::new(0);
        let got = with_patience(Duration::from_secs(5), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => anyhow::bail!("provider answered 403: not assigned to this audit"),
                _ => Ok("items"),
            }
        })
        .await;
        assert_eq!(got.unwrap(), "items");
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let err = with_patience(Duration::from_millis(500), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            anyhow::Result::<()>::Err(anyhow::anyhow!("withheld"))
        })
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "withheld");
        assert!(calls.load(Ordering::SeqCst) >= 2, "retried before giving up");
    }
}
