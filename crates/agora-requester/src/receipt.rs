//! The receipt of a job: per shard, who ran it, at what price, what was committed, how it was
//! verified (audit probability, sample, detection probability, outcome), what was paid and
//! refunded, and the energy and emissions it reported — and, with `--verify`, state proofs of
//! every lease and of the job checked against finalized headers whose finalization
//! certificates are checked against the committee.

use agora_client::client::NodeClient;
use agora_core::{AccountId, Amount, Decode, Hash, JobKind, PublicKey};
use agora_ledger::ObjectKey;
use agora_ledger::audits::AuditSubject;
use agora_ledger::events::AuditOutcome;
use agora_ledger::jobs::Job;
use agora_ledger::leases::{Lease, LeaseStatus};
use anyhow::{Context, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What one shard cost and how it was checked.
#[derive(Debug, Clone, Serialize)]
pub struct ShardReceipt {
    /// Shard index.
    pub shard: u32,
    /// Final status.
    pub status: String,
    /// Leases tried (a shard is re-matched when a provider fails or cheats).
    pub leases: Vec<u64>,
    /// The lease that settled, if any.
    pub lease: Option<u64>,
    /// Its provider.
    pub provider: Option<AccountId>,
    /// Provider region.
    pub region: Option<String>,
    /// Price per device-second paid.
    pub unit_price: Option<Amount>,
    /// Device-seconds paid for.
    pub units: u64,
    /// Device-seconds the provider claimed (more than `units` when its audit cut the claim).
    pub units_claimed: u64,
    /// Paid for the shard (provider, auditors and the burned clearing spread).
    pub paid: Amount,
    /// Merkle root of the output items.
    pub output_root: Option<Hash>,
    /// Probability the lease was audited, as a fraction.
    pub audit_probability: f64,
    /// Items sampled if audited.
    pub sample: u32,
    /// Probability that cheating on 5% of items would have been caught.
    pub detection_probability: f64,
    /// Whether it was audited.
    pub audited: bool,
    /// Audit result.
    pub audit_outcome: Option<AuditOutcome>,
    /// Reported energy, kWh.
    pub energy_kwh: f64,
    /// Emissions: energy × the provider's declared grid intensity, gCO2e.
    pub emissions_g: f64,
}

/// A proof check in a verified receipt.
#[derive(Debug, Clone, Serialize)]
pub struct ProofCheck {
    /// Which object (e.g. `lease/12`).
    pub object: String,
    /// State height the proof is for.
    pub height: u64,
    /// Root it verified against: the state root of block height+1, read from the block's own
    /// consensus encoding, whose finalization certificate verified.
    pub root: Hash,
    /// The epoch whose committee (learned from the trusted one) signed that certificate.
    pub certified_in_epoch: u64,
}

/// A job's receipt.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    /// Job id.
    pub job: u64,
    /// Requester.
    pub requester: AccountId,
    /// Kind.
    pub kind: JobKind,
    /// Model content hash.
    pub model: Hash,
    /// Per shard.
    pub shards: Vec<ShardReceipt>,
    /// Total paid.
    pub total_paid: Amount,
    /// Escrow returned.
    pub refunded: Amount,
    /// Total energy, kWh.
    pub energy_kwh: f64,
    /// Total emissions, gCO2e.
    pub emissions_g: f64,
    /// Proofs checked (with `--verify`).
    pub proofs: Vec<ProofCheck>,
}

/// Builds the receipt of `job` from chain state.
pub async fn build(client: &NodeClient, id: u64, job: &Job) -> anyhow::Result<Receipt> {
    let mut shards = vec![];
    let (mut total, mut refunded, mut energy, mut emissions) = (Amount::ZERO, Amount::ZERO, 0.0, 0.0);
    for (i, s) in job.shards.iter().enumerate() {
        let mut r = ShardReceipt {
            shard: i as u32,
            status: format!("{:?}", s.status),
            leases: s.history.clone(),
            lease: None,
            provider: None,
            region: None,
            unit_price: None,
            units: 0,
            units_claimed: 0,
            paid: Amount::ZERO,
            output_root: None,
            audit_probability: 0.0,
            sample: 0,
            detection_probability: 0.0,
            audited: false,
            audit_outcome: None,
            energy_kwh: 0.0,
            emissions_g: 0.0,
        };
        for l in &s.history {
            let lease = client.lease(*l).await?;
            if let Some(settlement) = &lease.settlement {
                refunded = refunded.checked_add(settlement.requester_refund).context("overflow")?;
            }
            if lease.status != LeaseStatus::Settled {
                continue;
            }
            let provider = client.provider(&lease.provider).await?;
            let settlement = lease.settlement.clone().context("settled leases have a settlement")?;
            let paid = settlement
                .provider_paid
                .checked_add(settlement.auditors_paid)
                .and_then(|a| a.checked_add(settlement.burned))
                .context("overflow")?;
            let commitment = lease.commitment.clone().context("settled leases have a commitment")?;
            let kwh = commitment.metering.energy_mwh as f64 / 1e6;
            r.lease = Some(*l);
            r.provider = Some(lease.provider);
            r.region = Some(provider.profile.region.to_string());
            r.unit_price = Some(lease.buyer_price);
            r.units = settlement.units;
            r.units_claimed = lease.units_used();
            r.paid = paid;
            r.output_root = Some(commitment.root);
            r.audit_probability = f64::from(lease.verification.audit_ppm) / 1e6;
            r.sample = lease.verification.sample;
            r.detection_probability = f64::from(lease.verification.detection_ppm) / 1e6;
            r.audited = lease.verification.audited;
            // An availability check is not an audit: the receipt names audits of outputs only.
            r.audit_outcome = match lease.audit {
                Some(a) => Some(client.audit(a).await?)
                    .filter(|a| a.subject == AuditSubject::Outputs)
                    .and_then(|a| a.outcome),
                None => None,
            };
            r.energy_kwh = kwh;
            r.emissions_g = kwh * f64::from(provider.profile.carbon_g_per_kwh);
            total = total.checked_add(paid).context("overflow")?;
            energy += kwh;
            emissions += r.emissions_g;
        }
        shards.push(r);
    }
    Ok(Receipt {
        job: id,
        requester: job.requester,
        kind: job.manifest.kind(),
        model: job.manifest.model,
        shards,
        total_paid: total,
        refunded,
        energy_kwh: energy,
        emissions_g: emissions,
        proofs: vec![],
    })
}

/// The committee a user trusts to start from, and the epoch it served.
pub struct TrustedCommittee {
    /// Its epoch (0 for the genesis committee).
    pub epoch: u64,
    /// Its members.
    pub members: Vec<PublicKey>,
}

/// Committees by epoch, learned forward from a trusted one: each epoch's last block names the
/// next committee and is checked against its own epoch's committee (`light::next_committee`),
/// so later certificates verify without trusting the node that serves them.
struct CommitteeWalk<'a> {
    client: &'a NodeClient,
    epoch_length: u64,
    known: BTreeMap<u64, Vec<PublicKey>>,
}

impl<'a> CommitteeWalk<'a> {
    fn new(client: &'a NodeClient, epoch_length: u64, trust: TrustedCommittee) -> Self {
        Self {
            client,
            epoch_length: epoch_length.max(1),
            known: BTreeMap::from([(trust.epoch, trust.members)]),
        }
    }

    /// The committee that finalized blocks at `height`.
    async fn at(&mut self, height: u64) -> anyhow::Result<&[PublicKey]> {
        let epoch = height / self.epoch_length;
        let first = *self.known.keys().next().expect("starts with the trusted committee");
        if epoch < first {
            bail!(
                "block {height} is in epoch {epoch}, before the trusted committee's epoch {first}; pass --genesis <file> to verify from the genesis committee"
            );
        }
        loop {
            let (&last, committee) = self.known.last_key_value().expect("non-empty");
            if last >= epoch {
                break;
            }
            let boundary = (last + 1) * self.epoch_length - 1;
            let f = self.client.finalization(boundary).await?;
            let next = agora_chain::light::next_committee(
                &f.certificate,
                &f.block,
                last,
                self.epoch_length,
                committee,
            )
            .with_context(|| {
                format!("following the committee change at block {boundary} (end of epoch {last})")
            })?;
            self.known.insert(last + 1, next);
        }
        Ok(&self.known[&epoch])
    }
}

/// Checks the job and every settled lease of `receipt` against finalized state, trusting
/// nothing the node says except bytes it can check:
/// - each state proof must be for the object asked for (its key), and verify against the state
///   root of block height+1 *as decoded from that block's consensus encoding*;
/// - that block's finalization certificate must finalize exactly its digest, signed in the
///   block's own epoch by that epoch's committee, learned from `trust` forward;
/// - the proven job and leases must agree with everything the receipt reports.
pub async fn verify(
    client: &NodeClient,
    receipt: &mut Receipt,
    epoch_length: u64,
    trust: TrustedCommittee,
) -> anyhow::Result<()> {
    let mut committees = CommitteeWalk::new(client, epoch_length, trust);
    let mut objects = vec![ObjectKey::Job(receipt.job)];
    objects.extend(receipt.shards.iter().filter_map(|s| s.lease).map(ObjectKey::Lease));
    for key in objects {
        let proof = client.proof(&key).await?;
        if proof.key != key.store_key() {
            bail!("the node answered a proof of {key:?} with a proof of another object");
        }
        let height = proof.height.checked_add(1).context("proof height overflows")?;
        let f = finalization_when_ready(client, height, Duration::from_secs(30)).await?;
        let epoch = height / committees.epoch_length;
        let committee = committees.at(height).await?;
        let header = agora_chain::light::finalized_header(&f.certificate, &f.block, height, epoch, committee)
            .with_context(|| format!("block {height} is not finalized by the committee of epoch {epoch}"))?;
        if !proof.verify(&header.state_root) {
            bail!(
                "the node's proof of {key:?} does not verify against finalized block {height}'s state root"
            );
        }
        let value = proof.value.as_deref().with_context(|| format!("the node proves {key:?} absent"))?;
        match key {
            ObjectKey::Job(id) => check_job(receipt, &decode_proven::<Job>(value, "job", id)?)?,
            ObjectKey::Lease(id) => check_lease(receipt, id, &decode_proven::<Lease>(value, "lease", id)?)?,
            _ => unreachable!("only jobs and leases"),
        }
        receipt.proofs.push(ProofCheck {
            object: match key {
                ObjectKey::Job(j) => format!("job/{j}"),
                ObjectKey::Lease(l) => format!("lease/{l}"),
                _ => unreachable!("only jobs and leases"),
            },
            height: proof.height,
            root: header.state_root,
            certified_in_epoch: epoch,
        });
    }
    Ok(())
}

/// The finalization of block `height`, waiting up to `timeout` for it to exist.
async fn finalization_when_ready(
    client: &NodeClient,
    height: u64,
    timeout: Duration,
) -> anyhow::Result<agora_client::client::Finalization> {
    let start = std::time::Instant::now();
    loop {
        match client.finalization(height).await {
            Err(agora_client::client::ClientError::Api { status: 404, .. }) if start.elapsed() < timeout => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => return Ok(other?),
        }
    }
}

fn decode_proven<T: Decode>(value: &[u8], what: &str, id: u64) -> anyhow::Result<T> {
    T::decode(value).map_err(|e| anyhow::anyhow!("proven {what} {id} does not decode: {e}"))
}

/// The proven job must be the receipt's: same requester, model and kind, and every lease the
/// receipt names must be in the proven history of its shard.
fn check_job(receipt: &Receipt, job: &Job) -> anyhow::Result<()> {
    if job.requester != receipt.requester
        || job.manifest.model != receipt.model
        || job.manifest.kind() != receipt.kind
        || job.shards.len() != receipt.shards.len()
    {
        bail!("the node's receipt for job {} disagrees with the proven job", receipt.job);
    }
    for (shown, proven) in receipt.shards.iter().zip(&job.shards) {
        if shown.leases != proven.history || shown.lease.is_some_and(|l| !proven.history.contains(&l)) {
            bail!(
                "the node's receipt for shard {} disagrees with the proven job's lease history",
                shown.shard
            );
        }
    }
    Ok(())
}

/// The proven lease must be the settled lease the receipt reports for its shard: same job,
/// shard, provider, output root, price, units and payment.
fn check_lease(receipt: &Receipt, id: u64, lease: &Lease) -> anyhow::Result<()> {
    let shown = receipt.shards.iter().find(|s| s.lease == Some(id)).expect("from the receipt");
    let paid = lease
        .settlement
        .as_ref()
        .and_then(|s| s.provider_paid.checked_add(s.auditors_paid).and_then(|a| a.checked_add(s.burned)));
    if lease.job != receipt.job
        || lease.shard != shown.shard
        || lease.status != LeaseStatus::Settled
        || lease.commitment.as_ref().map(|c| c.root) != shown.output_root
        || Some(lease.provider) != shown.provider
        || Some(lease.buyer_price) != shown.unit_price
        || lease.units_paid() != Some(shown.units)
        || lease.units_used() != shown.units_claimed
        || paid != Some(shown.paid)
    {
        bail!("the node's receipt for lease {id} disagrees with the proven state");
    }
    Ok(())
}

/// A receipt as text.
pub fn render(r: &Receipt) -> String {
    let mut s = format!("receipt for job {} ({}, model {})\n", r.job, r.kind, &r.model.to_string()[..16]);
    for sh in &r.shards {
        match (sh.lease, sh.provider) {
            (Some(l), Some(p)) => {
                s += &format!(
                    "  shard {:>2}: lease {l:<4} provider {} ({})  {} units × {} = {}  audit p={:.2} sample {} → detection {:.1}%{}  {:.6} kWh {:.3} gCO2e\n",
                    sh.shard,
                    p.short(),
                    sh.region.as_deref().unwrap_or("?"),
                    sh.units,
                    sh.unit_price.unwrap_or_default(),
                    sh.paid,
                    sh.audit_probability,
                    sh.sample,
                    sh.detection_probability * 100.0,
                    match sh.audit_outcome {
                        Some(o) => format!(" [{o:?}]"),
                        None if sh.audited => " [audit pending]".into(),
                        None => " [not drawn]".into(),
                    },
                    sh.energy_kwh,
                    sh.emissions_g,
                );
                if sh.units < sh.units_claimed {
                    s += &format!(
                        "            metering cut by the audit: {} device-seconds claimed, {} paid\n",
                        sh.units_claimed, sh.units
                    );
                }
                if sh.leases.len() > 1 {
                    s += &format!("            re-matched: leases tried {:?}\n", sh.leases);
                }
            }
            _ => s += &format!("  shard {:>2}: {}\n", sh.shard, sh.status),
        }
    }
    s += &format!(
        "  total paid {}  refunded {}  energy {:.6} kWh  emissions {:.3} gCO2e",
        r.total_paid, r.refunded, r.energy_kwh, r.emissions_g
    );
    for p in &r.proofs {
        s += &format!(
            "\n  proof {} at height {} against root {} (header certified by the committee of epoch {})",
            p.object,
            p.height,
            &p.root.to_string()[..16],
            p.certified_in_epoch
        );
    }
    s
}

#[cfg(test)]
mod tests {
    //! A node that serves forged data must not get a receipt verified: these tests stand up a
    //! fake node on 127.0.0.1 that pairs a genuine finalization certificate with a made-up
    //! header, proof or object.
    use super::*;
    use agora_chain::ChainBlock;
    use agora_chain::StateProof;
    use agora_chain::block::{consensus_key, to_digest};
    use agora_core::SecretKey;
    use axum::extract::{Path, State};
    use commonware_codec::Encode as _;
    use commonware_consensus::simplex::scheme::ed25519::Scheme;
    use commonware_consensus::simplex::types::{Finalization, Finalize, Proposal};
    use commonware_consensus::types::{Epoch, Round, View};
    use commonware_cryptography::{Digestible as _, Signer as _};
    use commonware_utils::iter::NonEmpty;
    use commonware_utils::ordered::Set;
    use std::collections::HashMap;
    use std::sync::Arc;

    const SEEDS: [[u8; 32]; 4] = [[1; 32], [2; 32], [3; 32], [4; 32]];

    fn committee() -> Vec<PublicKey> {
        SEEDS.iter().map(|s| SecretKey::from_seed(*s).public()).collect()
    }

    /// A block at `height` whose state root is `root`.
    fn block(height: u64, root: Hash) -> ChainBlock {
        let mut b = ChainBlock::genesis("forge", 1);
        b.context.round = Round::new(Epoch::zero(), View::new(height));
        b.block.header.height = height;
        b.block.header.state_root = root;
        b
    }

    /// The committee's genuine finalization certificate of `b` (every member signs).
    fn certify(b: &ChainBlock) -> Vec<u8> {
        let keys = Set::from_iter_dedup(SEEDS.iter().map(|s| consensus_key(s).public_key()));
        let round = b.context.round;
        let proposal = Proposal::new(round, View::new(round.view().get() - 1), b.digest());
        let votes: Vec<Finalize<Scheme, _>> = SEEDS
            .iter()
            .map(|s| {
                let signer =
                    Scheme::signer(agora_chain::validator::NAMESPACE, keys.clone(), consensus_key(s))
                        .expect("a member");
                Finalize::sign(&signer, proposal.clone()).expect("signs")
            })
            .collect();
        let verifier = Scheme::verifier(agora_chain::validator::NAMESPACE, keys);
        let votes = NonEmpty::new(&votes[0], votes[1..].iter());
        let f =
            Finalization::from_finalizes(&verifier, votes, &commonware_parallel::Sequential).expect("quorum");
        f.encode().to_vec()
    }

    struct Served {
        proof: StateProof,
        finalizations: HashMap<u64, (Vec<u8>, Vec<u8>)>,
    }

    /// Serves `served` as a node would, on an ephemeral local port, and verifies job 1's receipt
    /// against it from the genuine committee.
    async fn verify_against(served: Served) -> anyhow::Error {
        let app = axum::Router::new()
            .route(
                "/api/v1/proofs/{kind}/{id}",
                axum::routing::get(|State(s): State<Arc<Served>>| async move { axum::Json(s.proof.clone()) }),
            )
            .route(
                "/api/v1/blocks/{h}/finalization",
                axum::routing::get(|State(s): State<Arc<Served>>, Path(h): Path<u64>| async move {
                    let (c, b) = s.finalizations.get(&h).cloned().unwrap_or_default();
                    axum::Json(serde_json::json!({"certificate": hex::encode(c), "block": hex::encode(b)}))
                }),
            )
            .with_state(Arc::new(served));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut receipt = Receipt {
            job: 1,
            requester: SecretKey::from_label("requester").public(),
            kind: JobKind::Embed,
            model: Hash::of(b"model"),
            shards: vec![],
            total_paid: Amount::ZERO,
            refunded: Amount::ZERO,
            energy_kwh: 0.0,
            emissions_g: 0.0,
            proofs: vec![],
        };
        let trust = TrustedCommittee { epoch: 0, members: committee() };
        let err = verify(&NodeClient::new(&url), &mut receipt, 100, trust).await.expect_err("forged");
        server.abort();
        assert!(receipt.proofs.is_empty());
        err
    }

    /// The forged state: a proof of job 1 against a made-up root (a QMDB proof cannot be
    /// produced for a root no validator computed, so the bytes are junk either way).
    fn forged_proof(key: ObjectKey, root: Hash) -> StateProof {
        StateProof { height: 1, root, key: key.store_key(), value: Some(vec![1, 2, 3]), proof: vec![0; 8] }
    }

    #[tokio::test]
    async fn a_genuine_certificate_with_a_forged_header_is_refused() {
        let (real, forged) = (Hash::of(b"real root"), Hash::of(b"forged root"));
        let genuine = block(2, real);
        let fake = block(2, forged);
        let served = Served {
            proof: forged_proof(ObjectKey::Job(1), forged),
            finalizations: HashMap::from([(2, (certify(&genuine), fake.encode().to_vec()))]),
        };
        let err = format!("{:#}", verify_against(served).await);
        assert!(err.contains("block 2 is not finalized by the committee of epoch 0"), "{err}");
        assert!(err.contains("the certificate finalizes block"), "{err}");
        assert_ne!(to_digest(&forged), to_digest(&real));
    }

    #[tokio::test]
    async fn a_proof_against_a_root_the_certified_header_does_not_carry_is_refused() {
        let genuine = block(2, Hash::of(b"real root"));
        let served = Served {
            proof: forged_proof(ObjectKey::Job(1), Hash::of(b"forged root")),
            finalizations: HashMap::from([(2, (certify(&genuine), genuine.encode().to_vec()))]),
        };
        let err = format!("{:#}", verify_against(served).await);
        assert!(err.contains("does not verify against finalized block 2's state root"), "{err}");
    }

    #[tokio::test]
    async fn a_proof_of_another_object_is_refused() {
        let genuine = block(2, Hash::of(b"real root"));
        let served = Served {
            proof: forged_proof(ObjectKey::Job(2), Hash::of(b"real root")),
            finalizations: HashMap::from([(2, (certify(&genuine), genuine.encode().to_vec()))]),
        };
        let err = format!("{:#}", verify_against(served).await);
        assert!(err.contains("with a proof of another object"), "{err}");
    }

    #[tokio::test]
    async fn a_genuine_finalization_of_another_height_is_refused() {
        let other = block(3, Hash::of(b"real root"));
        let served = Served {
            proof: forged_proof(ObjectKey::Job(1), Hash::of(b"real root")),
            finalizations: HashMap::from([(2, (certify(&other), other.encode().to_vec()))]),
        };
        let err = format!("{:#}", verify_against(served).await);
        assert!(err.contains("asked for block 2, the node served block 3"), "{err}");
    }
}
