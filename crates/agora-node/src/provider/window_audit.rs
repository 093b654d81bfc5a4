//! Audit duty for a serving window: fetch the sampled records from the provider, check that
//! each is the committed, client-signed, receipted one ([`claim_of`]), replay each on the
//! session's model ([`agora_serve::audit::recheck`]; in a child process on nodes that isolate
//! audits), and report.
//!
//! As for leases, what the provider is to blame for fails the audit: records it does not hand
//! over, records that are not the committed ones, answers the model does not reproduce. What
//! this node is to blame for (no route to the provider, a model it cannot load) reports
//! nothing, so the chain replaces it.

use super::auditor::{Auditor, FETCH_PATIENCE, Unable, own_failure, with_patience};
use super::isolate::{self, Answer, Replayed};
use crate::store_keeper::audit_owner;
use agora_core::Hash;
use agora_core::codec::Reader;
use agora_core::session::{SessionTerms, WindowCommitment};
use agora_core::tx::{AuditEvidence, AuditId, Disputed};
use agora_ledger::audits::{Audit, MAX_SAMPLE};
use agora_ledger::sessions::{WindowKey, runtime_of};
use agora_serve::audit::{Claim, ProvenRecord, Sampled, claim_of};
use agora_store::Pin;
use agora_store::http::outbound::Reach;
use anyhow::Context;

impl Auditor {
    /// Audits the serving window `key` and reports. Returns the verdict reported.
    pub(super) async fn run_window(
        &self,
        id: AuditId,
        audit: &Audit,
        key: WindowKey,
    ) -> anyhow::Result<bool> {
        let (session, provider, first_seq) = key;
        let detail = self.chain.session(session).await?;
        let window =
            detail.window(&provider, first_seq).context("the audited window is not on chain")?.clone();
        let terms = detail.session.terms.clone();
        let chain_id = self.chain.status().await?.chain_id;
        let endpoint = self.chain.provider(&provider).await?.profile.endpoint;
        let reach = self.chain.reach().await?;
        let path = format!("/agent/audit/{id}/records");
        let fetched = with_patience(FETCH_PATIENCE, || self.fetch_signed(&endpoint, &path, id, reach)).await;
        let claims = match fetched {
            Err(e) if own_failure(&e) => return Err(e.context("cannot fetch the sampled records")),
            Err(e) => Err(format!("{e:#}")),
            Ok(body) => {
                let sampled = Sampled {
                    chain_id: &chain_id,
                    provider: &provider,
                    client: &terms.client,
                    window: &window,
                    seq: 0,
                };
                claims(&body, audit, &sampled)
            }
        };
        let claims = match claims {
            Ok(c) => c,
            // Withheld or not the committed records: nothing to replay, the provider's fault.
            Err(why) => return self.report(id, false, &why, AuditEvidence::nothing_recomputed()).await,
        };
        let ran = std::time::Instant::now();
        let replayed = self.replay(id, &terms, &claims, reach).await?;
        let measured_ms = ran.elapsed().as_millis() as u64;
        let (passed, detail, evidence) = evidence(&window, &replayed, measured_ms);
        self.report(id, passed, &detail, evidence).await
    }

    /// Replays `claims` on the session's model, holding the device meanwhile: here, or in a
    /// child process. A model this node cannot load, or a replay that cannot run, is [`Unable`].
    async fn replay(
        &self,
        id: AuditId,
        terms: &SessionTerms,
        claims: &[(u32, Claim)],
        reach: Reach,
    ) -> anyhow::Result<Vec<Replayed>> {
        let kind = runtime_of(terms.kind);
        let pin = Pin::held_by(audit_owner(id));
        let unable = |e: anyhow::Error| Unable(format!("loading the session's model: {e:#}"));
        let device = self.device.acquire().await.expect("never closed");
        let answer = match &self.isolation {
            None => {
                let dir = self
                    .runtimes
                    .unpacked_model(kind, &terms.model, &terms.sources, reach, &pin)
                    .await
                    .map_err(unable)?;
                let claims = claims.to_vec();
                tokio::task::spawn_blocking(move || match super::sessions::open_model(kind, &dir) {
                    Ok(model) => isolate::replay(&model, &claims),
                    Err(e) => Answer::Failed(format!("loading the session's model: {e:#}")),
                })
                .await?
            }
            Some(isolation) => {
                let model_file = self
                    .runtimes
                    .model_file(kind, &terms.model, &terms.sources, reach, &pin)
                    .await
                    .map_err(unable)?;
                let audit = isolate::ServingAudit {
                    kind,
                    model: terms.model,
                    model_file,
                    models_dir: self.runtimes.models_dir().to_path_buf(),
                    claims,
                };
                isolate::run_serving(&isolation.exe, audit, isolation.limits).await?
            }
        };
        drop(device);
        match answer {
            Answer::Replayed(r) if r.len() == claims.len() => Ok(r),
            Answer::Failed(why) => Err(Unable(why).into()),
            other => Err(Unable(format!("the replay answered {other:?}")).into()),
        }
    }
}

/// Decodes the provider's answer to a records request and checks each record against what the
/// chain says was sampled ([`claim_of`]): exactly the audit's items, in order. `sampled.seq` is
/// set per record. An `Err` names what is wrong: the provider's fault.
fn claims(body: &[u8], audit: &Audit, sampled: &Sampled<'_>) -> Result<Vec<(u32, Claim)>, String> {
    let mut r = Reader::new(body);
    let records: Vec<ProvenRecord> = r
        .vec(MAX_SAMPLE as usize, "records")
        .and_then(|v| r.finish("records").map(|()| v))
        .map_err(|e| format!("the records do not decode: {e}"))?;
    if records.len() != audit.items.len() {
        return Err(format!("{} records for {} sampled receipts", records.len(), audit.items.len()));
    }
    records
        .iter()
        .zip(&audit.items)
        .map(|(record, i)| {
            let seq = sampled.window.first_seq + u64::from(*i);
            claim_of(record, &Sampled { seq, ..*sampled }).map(|c| (*i, c))
        })
        .collect()
}

/// The verdict and evidence of a replay: a pass commits to every replayed answer's detail; a
/// failure names the receipts that did not reproduce.
fn evidence(
    window: &WindowCommitment,
    replayed: &[Replayed],
    measured_ms: u64,
) -> (bool, String, AuditEvidence) {
    let hash_of =
        |r: &Replayed| Hash::tagged("agora/serving-replay", &[&r.index.to_le_bytes(), r.detail.as_bytes()]);
    let leaves: Vec<Hash> = replayed.iter().map(hash_of).collect();
    let root = Hash::tagged(
        "agora/serving-audit",
        &[&window.root.0, &agora_core::merkle::MerkleTree::new(leaves).root().0],
    );
    let disputed: Vec<Disputed> = replayed
        .iter()
        .filter(|r| !r.matches)
        .map(|r| Disputed { index: r.index, recomputed: hash_of(r) })
        .collect();
    let passed = disputed.is_empty();
    let detail = match replayed.iter().find(|r| !r.matches) {
        Some(r) => format!(
            "{} of {} answers differ; receipt offset {}: {}",
            disputed.len(),
            replayed.len(),
            r.index,
            r.detail
        ),
        None => format!("{} answers reproduced", replayed.len()),
    };
    (passed, detail, AuditEvidence { recomputed_root: root, disputed, measured_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::manifest::JobKind;
    use agora_ledger::audits::{AuditSubject, AuditTarget};

    #[test]
    fn a_records_answer_that_is_garbage_or_short_fails_the_provider() {
        let provider = agora_core::SecretKey::from_seed([3; 32]).public();
        let audit = Audit {
            target: AuditTarget::Window((7, provider, 0)),
            subject: AuditSubject::Serving,
            provider,
            kind: JobKind::Generate,
            items: vec![0, 2],
            assignments: vec![],
            escalated: false,
            deadline_height: 10,
            replacements: 0,
            outcome: None,
        };
        let window = WindowCommitment {
            session: 7,
            first_seq: 0,
            receipts: 3,
            root: Hash::of(b"root"),
            total: Default::default(),
        };
        let sampled =
            Sampled { chain_id: "test", provider: &provider, client: &provider, window: &window, seq: 0 };
        let err = claims(&[0xff; 9], &audit, &sampled).unwrap_err();
        assert!(err.contains("do not decode"), "{err}");
        // A length prefix promising more records than the body holds is refused before allocating.
        assert!(claims(&u32::MAX.to_le_bytes(), &audit, &sampled).unwrap_err().contains("do not decode"));
        let mut none = vec![];
        agora_core::codec::encode_seq(Vec::<ProvenRecord>::new().iter(), &mut none);
        assert!(claims(&none, &audit, &sampled).unwrap_err().contains("0 records for 2 sampled"));
    }
}
