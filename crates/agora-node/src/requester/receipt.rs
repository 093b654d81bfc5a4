//! The receipt of a job: per shard, who ran it, at what price, what was committed, how it was
//! verified (audit probability, sample, detection probability, outcome), what was paid and
//! refunded, and the energy and emissions it reported — and, with `--verify`, state proofs of
//! every lease and of the job checked against finalized headers whose finalization
//! certificates are checked against the committee.

use crate::client::NodeClient;
use agora_core::{AccountId, Amount, Decode, Hash, JobKind, PublicKey};
use agora_ledger::ObjectKey;
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
    /// Device-seconds used (and paid).
    pub units: u64,
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
    /// Root it verified against (state root of block height+1).
    pub root: Hash,
    /// Whether the finalization certificate of block height+1 verified against the committee.
    pub header_finalized: bool,
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
            r.units = lease.units_used();
            r.paid = paid;
            r.output_root = Some(commitment.root);
            r.audit_probability = f64::from(lease.verification.audit_ppm) / 1e6;
            r.sample = lease.verification.sample;
            r.detection_probability = f64::from(lease.verification.detection_ppm) / 1e6;
            r.audited = lease.verification.audited;
            r.audit_outcome = match lease.audit {
                Some(a) => client.audit(a).await?.outcome,
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
            let next = agora_chain::light::next_committee(&f.certificate, &f.block, committee).with_context(
                || format!("following the committee change at block {boundary} (end of epoch {last})"),
            )?;
            self.known.insert(last + 1, next);
        }
        Ok(&self.known[&epoch])
    }
}

/// Checks the job and every settled lease of `receipt` against finalized state: a state proof
/// against the next header's root, whose finalization certificate must verify under the
/// committee of its epoch, learned from `trust` forward; and the proven lease must agree with
/// what the receipt reports.
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
        let (proof, next) = client.verified_proof(&key, Duration::from_secs(30)).await?;
        let cert = client.finalization(next.block.header.height).await?.certificate;
        let committee = committees.at(next.block.header.height).await?;
        agora_chain::light::verify_finalization(&cert, &next.digest, committee).with_context(|| {
            format!("block {} is not finalized by the committee", next.block.header.height)
        })?;
        if let ObjectKey::Lease(id) = key {
            let value = proof.value.as_deref().context("a settled lease exists")?;
            let lease = Lease::decode(value)
                .map_err(|e| anyhow::anyhow!("proven lease {id} does not decode: {e}"))?;
            let shown = receipt.shards.iter().find(|s| s.lease == Some(id)).expect("from the receipt");
            if lease.commitment.as_ref().map(|c| c.root) != shown.output_root
                || Some(lease.provider) != shown.provider
            {
                bail!("the node's receipt for lease {id} disagrees with the proven state");
            }
        }
        receipt.proofs.push(ProofCheck {
            object: match key {
                ObjectKey::Job(j) => format!("job/{j}"),
                ObjectKey::Lease(l) => format!("lease/{l}"),
                _ => unreachable!("only jobs and leases"),
            },
            height: proof.height,
            root: proof.root,
            header_finalized: true,
        });
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
            "\n  proof {} at height {} against root {} (header finalized by the committee: {})",
            p.object,
            p.height,
            &p.root.to_string()[..16],
            p.header_finalized
        );
    }
    s
}
