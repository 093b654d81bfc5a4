//! Audits: after a commitment is final, block randomness decides whether the lease is
//! audited, which items are re-computed, and by whom; failures escalate from one auditor to
//! three, and a confirmed 2-of-3 failure slashes the provider (`mechanisms.md` §F.1).
//!
//! **Probability.** `p = min(1, max(p_floor, t, p_econ))`, where the trust term `t` is 1
//! until a provider has `trust_threshold` clean audits in a row and `1/streak` after, and
//! `p_econ = λ·ΔĈ / ((1−α)·(R + S))` is the deterrence inequality solved for `p` with the
//! lease value `R`, the saving from cheating `ΔĈ = cheat_saving·R`, and the provider's
//! collateral `S` that stays answerable for this lease: its collateral minus what the
//! provider's *other* unsettled leases reserve. Because `p ≥ p_econ`, the expected loss from
//! cheating exceeds λ times its gain even when the provider cheats on every concurrent lease
//! (review F15: counting the whole collateral once per lease let 256 cheated leases share one
//! deterrent). Each lease reserves `slash_multiple·R` of collateral at matching
//! ([`crate::leases::reservation`]), which cannot be withdrawn until it settles.
//!
//! **Sample.** `k = min(N, max(sample_min, k*))` items, where `k*` is the least sample that
//! catches cheating on `detect_fraction` of the items with probability `detect_target`
//! (99% at 5% → 90 items); training audits replay `train_replay_segments` checkpoints.
//! Redundant jobs are re-computed in full by `replicas − 1` auditors.

use crate::delivery;
use crate::error::TxError;
use crate::events::{AuditOutcome, Event, LeaseFailure};
use crate::leases::{self, LeaseStatus};
use crate::params::Params;
use crate::sessions::WindowKey;
use crate::state::{Bucket, Ctx, State, Timer};
use agora_core::codec::{Decode, DecodeError, DecodeErrorKind, Encode, Reader};
use agora_core::manifest::{JobKind, VerificationPolicy};
use agora_core::tx::{AuditEvidence, AuditId, LeaseId};
use agora_core::{AccountId, Amount, Hash, ResourceClass as Class, codec_struct, codec_unit_enum};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Most items one audit samples (bounds the stored list).
pub const MAX_SAMPLE: u32 = 4096;
/// Most auditors on one audit, including replacements.
pub const MAX_AUDITORS: usize = 16;
const PPM: u128 = 1_000_000;

/// One auditor's duty on an audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Auditor.
    pub auditor: AccountId,
    /// Its verdict, once reported.
    pub verdict: Option<bool>,
    /// The evidence it reported with its verdict.
    pub evidence: Option<AuditEvidence>,
    /// Whether it was replaced for not reporting in time.
    pub replaced: bool,
    /// Whether it sits on the recount (a committee validator assigned at escalation).
    pub recount: bool,
}
codec_struct!(Assignment { auditor, verdict, evidence, replaced, recount });

/// Most committee validators on one recount.
pub const MAX_RECOUNT: usize = 7;

/// What an audit checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditSubject {
    /// The provider's committed outputs: a pass means they match a recomputation.
    Outputs,
    /// The provider's statement that the lease's inputs cannot be computed: a pass means the
    /// auditor found the same (the input blob unavailable, not matching its declared root or
    /// count, or the named item malformed).
    Inputs,
    /// Only that the committed output blob can be fetched from the provider and is the one
    /// committed (its hash, and for an unencrypted job its items' root and count): the check
    /// every lease the draw did not audit gets before it is paid. Also the check of an
    /// encrypted lease's outputs its requester disputed, which decrypts the blob with the key
    /// the requester disclosed and checks its items' root and count too.
    Availability,
    /// A serving window's sampled receipts (items are offsets from its first receipt): a pass
    /// means each answer was replayed on the session's model and matched its receipt (tokens
    /// and fingerprints, or embeddings); a failure names those that did not, or recomputed
    /// nothing because the provider did not hand them over with proof they are in the window.
    Serving,
}

codec_unit_enum!(AuditSubject { Outputs, Inputs, Availability, Serving });

/// What an audit is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditTarget {
    /// A lease.
    Lease(LeaseId),
    /// A serving window: session, provider, `seq` of its first receipt.
    Window(WindowKey),
}

impl AuditTarget {
    /// The lease, for a lease audit.
    pub fn lease(self) -> Option<LeaseId> {
        match self {
            AuditTarget::Lease(id) => Some(id),
            AuditTarget::Window(_) => None,
        }
    }
}

impl Encode for AuditTarget {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            AuditTarget::Lease(id) => {
                out.push(0);
                id.encode_to(out);
            }
            AuditTarget::Window(key) => {
                out.push(1);
                key.encode_to(out);
            }
        }
    }
}

impl Decode for AuditTarget {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.tag("AuditTarget")? {
            0 => Ok(AuditTarget::Lease(LeaseId::decode_from(r)?)),
            1 => Ok(AuditTarget::Window(WindowKey::decode_from(r)?)),
            t => Err(DecodeError::new("AuditTarget", DecodeErrorKind::UnknownTag(t))),
        }
    }
}

/// An audit of one lease or serving window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// What is audited.
    pub target: AuditTarget,
    /// What it checks.
    pub subject: AuditSubject,
    /// Provider audited.
    pub provider: AccountId,
    /// Job kind (auditors must run it; a serving window's is its session's runtime).
    pub kind: JobKind,
    /// Output item indices to re-compute (a serving window's: receipt offsets).
    pub items: Vec<u32>,
    /// Auditors, in assignment order.
    pub assignments: Vec<Assignment>,
    /// Whether a failure escalated it to more auditors.
    pub escalated: bool,
    /// Height by which current assignees must report.
    pub deadline_height: u64,
    /// Silent auditors replaced so far.
    pub replacements: u32,
    /// Final result, once resolved.
    pub outcome: Option<AuditOutcome>,
}
codec_struct!(Audit {
    target,
    subject,
    provider,
    kind,
    items: vec(MAX_SAMPLE as usize),
    assignments: vec(MAX_AUDITORS),
    escalated,
    deadline_height,
    replacements,
    outcome
});

impl Audit {
    /// Whether `who` holds an active assignment.
    pub fn is_assigned(&self, who: &AccountId) -> bool {
        self.assignments.iter().any(|a| a.auditor == *who && !a.replaced)
    }

    fn active(&self) -> impl Iterator<Item = &Assignment> {
        self.assignments.iter().filter(|a| !a.replaced)
    }

    fn counts(&self) -> (usize, usize, usize) {
        let fails = self.active().filter(|a| a.verdict == Some(false)).count();
        let passes = self.active().filter(|a| a.verdict == Some(true)).count();
        let pending = self.active().filter(|a| a.verdict.is_none()).count();
        (fails, passes, pending)
    }
}

/// `1 − (1 − f)^k` in ppm, for `f` in bps (integer arithmetic, so every node agrees).
pub fn detection_ppm(fraction_bps: u64, k: u32) -> u32 {
    let keep = PPM - u128::from(fraction_bps.min(10_000)) * 100; // (1 − f) in ppm
    let mut miss = PPM;
    for _ in 0..k {
        miss = miss * keep / PPM;
        if miss == 0 {
            break;
        }
    }
    (PPM - miss) as u32
}

/// Items sampled from a lease of `n` output items.
pub fn sample_size(params: &Params, kind: JobKind, policy: VerificationPolicy, n: u32) -> u32 {
    if matches!(policy, VerificationPolicy::Redundant { .. }) {
        return n.min(MAX_SAMPLE);
    }
    if kind == JobKind::Train {
        return n.min(Params::u64(params.train_replay_segments) as u32);
    }
    let f = Params::u64(params.detect_fraction_bps);
    let target = Params::u64(params.detect_target_ppm) as u32;
    let mut k_star = 1u32;
    while detection_ppm(f, k_star) < target && k_star < MAX_SAMPLE {
        k_star += 1;
    }
    let min = Params::u64(params.audit_sample_min).min(u64::from(MAX_SAMPLE)) as u32;
    n.min(k_star.max(min)).min(MAX_SAMPLE)
}

/// Audit probability for `lease` under `policy`, in ppm. The stake `S` is the collateral the
/// provider's other unsettled leases do not reserve.
pub fn audit_probability(state: &State, lease: &crate::leases::Lease, policy: VerificationPolicy) -> u32 {
    match state.providers.get(&lease.provider) {
        Some(prov) => {
            let others = prov.reserved.saturating_sub(lease.reserved);
            let answerable = prov.collateral.saturating_sub(others);
            probability_for(state.params(), &prov.trust, answerable, lease.value(), policy)
        }
        None => PPM as u32,
    }
}

/// The audit probability rule on its own (ppm), for quotes: a provider with this trust
/// record and collateral, a lease worth `value`, under `policy`.
pub fn probability_for(
    p: &Params,
    trust: &crate::registry::Trust,
    collateral: Amount,
    value: Amount,
    policy: VerificationPolicy,
) -> u32 {
    match policy {
        VerificationPolicy::None => return 0,
        VerificationPolicy::Redundant { .. } => return PPM as u32,
        VerificationPolicy::Standard => {}
    }
    if trust.forced_audits > 0 {
        return PPM as u32;
    }
    let threshold = Params::u64(p.trust_threshold);
    let streak = trust.clean_streak;
    let trust_term = if streak < threshold { PPM } else { PPM / u128::from(streak) };
    // p_econ = λ·save·R / ((1−α)·(R+S)), with λ, save, (1−α) in bps.
    let stake = value.checked_add(collateral).unwrap_or(Amount(u128::MAX));
    let p_econ = if stake.is_zero() {
        0
    } else {
        let scaled = value
            .mul_div(p.lambda_bps * p.cheat_saving_bps, 10_000 * (10_000 - p.collusion_alpha_bps))
            .map_or(PPM, |v| v.mul_div(PPM, stake.0).map_or(PPM, |x| x.0));
        scaled.min(PPM)
    };
    trust_term.max(p.audit_floor_ppm).max(p_econ).min(PPM) as u32
}

/// Eligible auditors for a lease, each with its weight: working providers that sell the
/// lease's class and run its job kind (the same kernels, so an honest recomputation agrees),
/// weighted by their collateral, and committee validators, weighted by their bonded stake
/// (both slashable when their verdict is refuted). Never the audited provider or the
/// requester or an account visibly related to either by funding ([`independent`]), never
/// someone already assigned, never anyone with nothing at stake.
///
/// The class names the device kind and, for CPUs, the ISA family (`cpu.x86_64`,
/// `cpu.aarch64`) or, for GPUs, the model (`gpu.nvidia.h100-80g`), so an auditor always runs
/// the same kernels as the provider it checks.
fn auditor_pool(
    state: &State,
    kind: JobKind,
    parties: &Parties,
    exclude: &BTreeSet<AccountId>,
    height: u64,
) -> Vec<(AccountId, Amount)> {
    let class = &parties.class;
    let mut pool: std::collections::BTreeMap<AccountId, Amount> = state
        .providers
        .iter()
        .filter(|(_, p)| {
            p.can_work(height) && p.profile.kinds.contains(&kind) && p.profile.classes.contains(class)
        })
        .map(|(k, p)| (*k, p.collateral))
        .collect();
    for v in &state.meta.committee {
        let stake = state.validators.get(v).map_or(Amount::ZERO, |x| x.stake);
        let w = pool.entry(*v).or_insert(Amount::ZERO);
        *w = w.checked_add(stake).unwrap_or(Amount(u128::MAX));
    }
    pool.into_iter()
        .filter(|(a, w)| !exclude.contains(a) && !w.is_zero() && independent(state, a, parties))
        .collect()
}

/// Who an audit's auditors must be independent of, and the class they must sell.
struct Parties {
    provider: AccountId,
    requester: AccountId,
    /// A lease's key agent, which answers for its requester.
    key_agent: Option<AccountId>,
    class: Class,
}

/// The parties of what `target` names (which exists while it is audited).
fn parties(state: &State, target: AuditTarget) -> Parties {
    match target {
        AuditTarget::Lease(id) => {
            let lease = state.leases.get(&id).expect("audited leases exist");
            Parties {
                provider: lease.provider,
                requester: lease.requester,
                key_agent: state.jobs.get(&lease.job).and_then(|j| j.manifest.key_agent),
                class: lease.class.clone(),
            }
        }
        AuditTarget::Window((session, provider, _)) => {
            let s = state.sessions.get(&session).expect("audited windows belong to sessions");
            Parties { provider, requester: s.requester, key_agent: None, class: s.terms.class.clone() }
        }
    }
}

/// Whether `auditor` is neither the provider, the requester nor its key agent, nor related to
/// the provider or requester by funding: it created one of them, one of them created it, or
/// the same sender created both in one block ([`crate::accounts::related`]).
fn independent(state: &State, auditor: &AccountId, parties: &Parties) -> bool {
    parties.key_agent != Some(*auditor)
        && !crate::accounts::related(state, auditor, &parties.provider)
        && !crate::accounts::related(state, auditor, &parties.requester)
}

/// Draws `n` distinct members of `pool` (fewer if the pool is smaller), each draw with
/// probability proportional to its weight: an adversary's chance of being picked is its share
/// of the auditor stake, not its share of identities.
fn pick(cx: &Ctx, purpose: &str, salt: u64, mut pool: Vec<(AccountId, Amount)>, n: usize) -> Vec<AccountId> {
    let mut out = Vec::new();
    for i in 0..n.min(pool.len()) {
        let total = pool.iter().fold(0u128, |t, (_, w)| t.saturating_add(w.0));
        let draw = cx.draw(purpose, salt.wrapping_mul(1_000_003).wrapping_add(i as u64));
        // 128 bits from two draws, so the modulo bias is negligible for any total.
        let wide = (u128::from(draw) << 64) | u128::from(cx.draw(purpose, !salt ^ i as u64));
        let mut target = wide % total.max(1);
        let j = pool
            .iter()
            .position(|(_, w)| {
                if target < w.0 {
                    return true;
                }
                target -= w.0;
                false
            })
            .unwrap_or(pool.len() - 1);
        out.push(pool.remove(j).0);
    }
    out
}

/// Draws `k` distinct item indices below `n`, sorted.
fn sample_items(cx: &Ctx, lease: LeaseId, n: u32, k: u32) -> Vec<u32> {
    if k >= n {
        return (0..n).collect();
    }
    let mut chosen = BTreeSet::new();
    let mut counter = 0u64;
    while chosen.len() < k as usize {
        let draw = cx.draw("sample", lease.wrapping_mul(1 << 24).wrapping_add(counter));
        chosen.insert((draw % u64::from(n)) as u32);
        counter += 1;
    }
    chosen.into_iter().collect()
}

/// Runs from the `AuditDraw` timer, one block after the commitment.
pub(crate) fn draw(state: &mut State, cx: &mut Ctx, id: LeaseId) {
    let Some(lease) = state.leases.get(&id).cloned() else { return };
    if lease.status == LeaseStatus::InputDisputed {
        return draw_input_check(state, cx, id, &lease);
    }
    if lease.status == LeaseStatus::OutputsDisputed {
        return draw_delivery_check(state, cx, id, &lease);
    }
    if lease.status != LeaseStatus::Committed {
        return;
    }
    let job = state.jobs.get(&lease.job).expect("exists");
    let (kind, policy) = (job.manifest.kind(), job.manifest.policy);
    let n = lease.commitment.as_ref().expect("committed").item_count;
    let p = audit_probability(state, &lease, policy);
    let k = sample_size(state.params(), kind, policy, n);
    let f = Params::u64(state.params().detect_fraction_bps);
    let detection = (u64::from(p) * u64::from(detection_ppm(f, k)) / 1_000_000) as u32;
    let audited = u128::from(cx.draw("audit", id) % 1_000_000) < u128::from(p);
    let stage_one = match policy {
        VerificationPolicy::Redundant { replicas } => usize::from(replicas.saturating_sub(1)).max(1),
        _ => stage_one_size(state, cx, id),
    };
    let auditors = if audited { draw_auditors(state, cx, "auditor", id, &lease, stage_one) } else { vec![] };
    let audited = audited && !auditors.is_empty();
    if let Some(prov) = state.providers.get_mut(&lease.provider)
        && audited
    {
        prov.trust.forced_audits = prov.trust.forced_audits.saturating_sub(1);
    }
    let l = state.leases.get_mut(&id).expect("exists");
    l.verification = leases::Verification { audit_ppm: p, sample: k, detection_ppm: detection, audited };
    cx.emit(Event::AuditDrawn { lease: id, audited, probability_ppm: p });
    if !audited {
        return probe_availability(state, cx, id, &lease);
    }
    let items = sample_items(cx, id, n, k);
    open_audit(state, cx, &lease, id, AuditSubject::Outputs, items, auditors);
    state.leases.get_mut(&id).expect("exists").status = LeaseStatus::Auditing;
}

/// Runs from the `DrawWindowAudit` timer, one block after a serving window is committed (so
/// its provider could not know the draw when it committed): whether the window is audited, by
/// the lease rule ([`probability_for`]) for the window's charge against the collateral the
/// provider's place in the session reserves; which receipts, as many as a lease of that many
/// items would sample ([`sample_size`]); and by whom, from the providers that sell the
/// session's class and run its runtime and the committee, as for a lease. The window is paid
/// only once its audit resolves; an unaudited one when its audit window closes.
pub(crate) fn draw_window(state: &mut State, cx: &mut Ctx, key: WindowKey) {
    let (session, provider, first_seq) = key;
    let Some(w) = state.windows.get(&key) else { return };
    if w.status != crate::sessions::WindowStatus::Held {
        return;
    }
    let (n, charge) = (w.commitment.receipts, w.charge);
    let s = state.sessions.get(&session).expect("windows belong to sessions");
    let kind = crate::sessions::runtime_of(s.terms.kind);
    let answerable = s.member(&provider).map_or(Amount::ZERO, |m| m.reserved);
    let p = state.providers.get(&provider).map_or(PPM as u32, |prov| {
        probability_for(state.params(), &prov.trust, answerable, charge, VerificationPolicy::Standard)
    });
    state.windows.get_mut(&key).expect("exists").audit_ppm = p;
    let salt =
        Hash::tagged("agora/window-audit", &[&session.to_le_bytes(), &provider.0, &first_seq.to_le_bytes()])
            .to_u64();
    if u128::from(cx.draw("window-audit", salt) % 1_000_000) >= u128::from(p) {
        return;
    }
    let pool =
        auditor_pool(state, kind, &parties(state, AuditTarget::Window(key)), &BTreeSet::new(), cx.height);
    let auditors = pick(cx, "window-auditor", salt, pool, stage_one_size(state, cx, salt));
    if auditors.is_empty() {
        return;
    }
    if let Some(prov) = state.providers.get_mut(&provider) {
        prov.trust.forced_audits = prov.trust.forced_audits.saturating_sub(1);
    }
    let k = sample_size(state.params(), kind, VerificationPolicy::Standard, n);
    let items = sample_items(cx, salt, n, k);
    let id =
        open(state, cx, AuditTarget::Window(key), provider, kind, AuditSubject::Serving, items, auditors);
    state.windows.get_mut(&key).expect("exists").audit = Some(id);
}

/// How many stage-one auditors a standard audit gets: one, or two with probability
/// `audit_second_opinion_ppm`. A second opinion, now and then, is what catches an auditor
/// that passes without recomputing: two stage-one auditors that disagree escalate, and the
/// recount slashes the one it refutes.
fn stage_one_size(state: &State, cx: &Ctx, id: LeaseId) -> usize {
    let second_opinion =
        u128::from(cx.draw("second-opinion", id) % 1_000_000) < state.params().audit_second_opinion_ppm;
    if second_opinion { 2 } else { 1 }
}

/// Draws `n` stage-one auditors for lease `id` from [`auditor_pool`] (never its parties or
/// accounts related to them), by stake, with the draw named `purpose`.
fn draw_auditors(
    state: &State,
    cx: &Ctx,
    purpose: &str,
    id: LeaseId,
    lease: &crate::leases::Lease,
    n: usize,
) -> Vec<AccountId> {
    let kind = state.jobs.get(&lease.job).expect("leases belong to jobs").manifest.kind();
    let parties = parties(state, AuditTarget::Lease(id));
    pick(cx, purpose, id, auditor_pool(state, kind, &parties, &BTreeSet::new(), cx.height), n)
}

/// A lease the draw did not audit is still not paid on the provider's word that its outputs
/// exist: one auditor, drawn as for an audit, fetches the output blob and checks it is the
/// committed one ([`AuditSubject::Availability`]); a failure escalates to the recount like any
/// other. Only if nobody could be drawn (a network without auditors) is the lease paid when
/// its window closes, as before.
fn probe_availability(state: &mut State, cx: &mut Ctx, id: LeaseId, lease: &crate::leases::Lease) {
    let auditors = draw_auditors(state, cx, "availability", id, lease, 1);
    if auditors.is_empty() {
        let at = cx.height + Params::u64(state.params().audit_window_blocks);
        return state.schedule(at, Timer::SettleLease(id));
    }
    open_audit(state, cx, lease, id, AuditSubject::Availability, vec![], auditors);
    state.leases.get_mut(&id).expect("exists").status = LeaseStatus::Auditing;
}

/// Opens the check of outputs the requester disputed ([`crate::delivery::dispute`]): an
/// availability check by one auditor drawn as for any other, which decrypts the blob with the
/// disclosed key. With nobody to draw, the outputs stand: paid, and the deposit returned.
fn draw_delivery_check(state: &mut State, cx: &mut Ctx, id: LeaseId, lease: &crate::leases::Lease) {
    let auditors = draw_auditors(state, cx, "delivery", id, lease, 1);
    if auditors.is_empty() {
        delivery::return_deposit(state, id);
        return delivery::release(state, cx, id, &[], None);
    }
    open_audit(state, cx, lease, id, AuditSubject::Availability, vec![], auditors);
    state.leases.get_mut(&id).expect("exists").status = LeaseStatus::Auditing;
}

/// Opens the check of a provider's statement that a lease's inputs cannot be computed: always
/// (a statement nobody checks would let any provider walk away from any lease), by stage-one
/// auditors drawn as for an output audit, with the usual second opinion, escalation and
/// replacement. With no auditor to draw, the lease fails unverified: no penalty, and the
/// shard is re-matched.
fn draw_input_check(state: &mut State, cx: &mut Ctx, id: LeaseId, lease: &crate::leases::Lease) {
    let auditors = draw_auditors(state, cx, "auditor", id, lease, stage_one_size(state, cx, id));
    if auditors.is_empty() {
        return leases::fail(state, cx, id, LeaseFailure::Unverified);
    }
    let items = lease.disputed_item.into_iter().collect();
    open_audit(state, cx, lease, id, AuditSubject::Inputs, items, auditors);
}

/// Records a new audit of lease `id` by `auditors` and starts its report deadline.
fn open_audit(
    state: &mut State,
    cx: &mut Ctx,
    lease: &crate::leases::Lease,
    id: LeaseId,
    subject: AuditSubject,
    items: Vec<u32>,
    auditors: Vec<AccountId>,
) {
    let kind = state.jobs.get(&lease.job).expect("exists").manifest.kind();
    let audit_id = open(state, cx, AuditTarget::Lease(id), lease.provider, kind, subject, items, auditors);
    state.leases.get_mut(&id).expect("exists").audit = Some(audit_id);
}

/// Records a new audit of `target` (whose provider is `provider`) by `auditors`, starts its
/// report deadline, and returns its id.
#[allow(clippy::too_many_arguments)]
fn open(
    state: &mut State,
    cx: &mut Ctx,
    target: AuditTarget,
    provider: AccountId,
    kind: JobKind,
    subject: AuditSubject,
    items: Vec<u32>,
    auditors: Vec<AccountId>,
) -> AuditId {
    let audit_id = state.next_id();
    let deadline_height = cx.height + Params::u64(state.params().audit_report_blocks);
    let assignments = auditors
        .iter()
        .map(|a| Assignment { auditor: *a, verdict: None, evidence: None, replaced: false, recount: false })
        .collect();
    state.audits.insert(
        audit_id,
        Audit {
            target,
            subject,
            provider,
            kind,
            items: items.clone(),
            assignments,
            escalated: false,
            deadline_height,
            replacements: 0,
            outcome: None,
        },
    );
    state.schedule(deadline_height, Timer::AuditDeadline(audit_id));
    cx.emit(Event::AuditAssigned { audit: audit_id, target, auditors, items, deadline_height });
    audit_id
}

/// Records an assigned auditor's verdict, and resolves or escalates once every active
/// assignee has reported.
pub(crate) fn report(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    id: AuditId,
    passed: bool,
    evidence: AuditEvidence,
) -> Result<(), TxError> {
    let audit = state.audits.get(&id).ok_or_else(|| TxError::not_found("audit", id))?;
    if audit.outcome.is_some() {
        return Err(TxError::InvalidState("audit already resolved".into()));
    }
    let Some(pos) = audit.assignments.iter().position(|a| a.auditor == who && !a.replaced) else {
        return Err(TxError::Unauthorized("not assigned to this audit".into()));
    };
    if audit.assignments[pos].verdict.is_some() {
        return Err(TxError::InvalidState("already reported".into()));
    }
    check_evidence(audit, passed, &evidence)?;
    let a = state.audits.get_mut(&id).expect("checked");
    a.assignments[pos].verdict = Some(passed);
    a.assignments[pos].evidence = Some(evidence);
    cx.emit(Event::AuditReported { audit: id, auditor: who, passed });
    let (_, _, pending) = state.audits.get(&id).expect("exists").counts();
    if pending == 0 {
        evaluate(state, cx, id, false);
    }
    Ok(())
}

/// Whether `evidence` can back the verdict `passed` on `audit`: a pass shows a recomputation
/// and disputes nothing; a failure either recomputed nothing (withholding, unverifiable or
/// unreplayable claims: no root, nothing disputed) or names the sampled items that did not
/// match, each once, in ascending order.
fn check_evidence(audit: &Audit, passed: bool, evidence: &AuditEvidence) -> Result<(), TxError> {
    let invalid = |why: &str| Err(TxError::Invalid(format!("audit evidence: {why}")));
    if !matches!(audit.subject, AuditSubject::Outputs | AuditSubject::Serving) {
        // Either verdict states what the auditor found (the root it computed, or a hash of
        // why it could not): no item recomputation to dispute.
        if evidence.recomputed_root == Hash::ZERO || !evidence.disputed.is_empty() {
            return invalid(
                "a check of inputs or availability commits to what it found and disputes no item",
            );
        }
        return Ok(());
    }
    if passed {
        if evidence.recomputed_root == Hash::ZERO || !evidence.disputed.is_empty() {
            return invalid("a pass must commit to its recomputation and dispute no item");
        }
        return Ok(());
    }
    if evidence.recomputed_nothing() {
        return Ok(());
    }
    if evidence.recomputed_root == Hash::ZERO || evidence.disputed.is_empty() {
        return invalid("a failure names the disputed items with the recomputation's root, or neither");
    }
    if !evidence.disputed.windows(2).all(|w| w[0].index < w[1].index) {
        return invalid("disputed items must be in ascending order, each once");
    }
    if let Some(d) = evidence.disputed.iter().find(|d| audit.items.binary_search(&d.index).is_err()) {
        return invalid(&format!("item {} was not sampled", d.index));
    }
    Ok(())
}

/// Decides what happens next for an audit whose current assignees have all reported (or
/// whose deadline passed, `timed_out`).
fn evaluate(state: &mut State, cx: &mut Ctx, id: AuditId, timed_out: bool) {
    let audit = state.audits.get(&id).expect("exists").clone();
    let (fails, passes, pending) = audit.counts();
    if timed_out
        && pending > 0
        && audit.replacements < Params::u64(state.params().audit_max_reassign) as u32
        && replace_silent(state, cx, id)
    {
        return;
    }
    if !audit.escalated {
        if fails == 0 {
            // A claim of more device time than stage one measured is decided by the recount's
            // own measurements: one auditor's word never cuts a provider's pay.
            if passes > 0 && over_claimed(state, &audit) && escalate(state, cx, id) {
                return;
            }
            // Silence is not a pass: at least one auditor must have recomputed and agreed.
            let outcome = if passes > 0 { AuditOutcome::Clean } else { AuditOutcome::Unverified };
            return resolve(state, cx, id, outcome);
        }
        if escalate(state, cx, id) {
            return;
        }
    }
    let outcome = recount_outcome(state, &state.audits.get(&id).expect("exists").clone());
    resolve(state, cx, id, outcome);
}

/// The verdict of an escalated audit, decided by its recount: committee validators weighted by
/// bonded stake. Fraud needs more than two thirds of the stake that reported to fail it, and
/// that stake must itself be at least two thirds of the panel's (so honest providers are
/// convicted only if more than a third of the committee's stake lies, the assumption consensus
/// already makes); a majority passing clears the provider (and refutes its accusers); a recount
/// that reported less than two thirds of its stake is unverified (unpaid, re-matched); a split
/// one is inconclusive. With no recount possible, a failure stays inconclusive.
fn recount_outcome(state: &State, audit: &Audit) -> AuditOutcome {
    let stake = |a: &AccountId| state.validators.get(a).map_or(0, |v| v.stake.0);
    let panel: Vec<&Assignment> = audit.active().filter(|a| a.recount).collect();
    if panel.is_empty() {
        let reported = audit.active().any(|a| a.verdict.is_some());
        return if reported { AuditOutcome::Inconclusive } else { AuditOutcome::Unverified };
    }
    let total: u128 = panel.iter().map(|a| stake(&a.auditor)).sum();
    let weigh =
        |v: bool| panel.iter().filter(|a| a.verdict == Some(v)).map(|a| stake(&a.auditor)).sum::<u128>();
    let (fail, pass) = (weigh(false), weigh(true));
    let reported = fail + pass;
    if reported == 0 || reported * 3 < total * 2 {
        // Too few of the recount reported to decide either way: silence is not a pass, so
        // the lease is not paid (and its outputs not delivered) but re-matched.
        AuditOutcome::Unverified
    } else if fail * 3 > reported * 2 {
        AuditOutcome::Fraud
    } else if pass * 2 > reported {
        AuditOutcome::Clean
    } else {
        AuditOutcome::Inconclusive
    }
}

/// Committee validators eligible for a recount, weighted by bonded stake; never one related
/// to the audit's parties by funding.
fn committee_pool(state: &State, audit: &Audit) -> Vec<(AccountId, Amount)> {
    let parties = parties(state, audit.target);
    let exclude = assigned(audit);
    state
        .meta
        .committee
        .iter()
        .filter(|v| !exclude.contains(v) && independent(state, v, &parties))
        .map(|v| (*v, state.validators.get(v).map_or(Amount::ZERO, |x| x.stake)))
        .filter(|(_, w)| !w.is_zero())
        .collect()
}

/// Everyone ever assigned to `audit` (its parties are kept out by [`independent`]).
fn assigned(audit: &Audit) -> BTreeSet<AccountId> {
    audit.assignments.iter().map(|a| a.auditor).collect()
}

fn assign(state: &mut State, cx: &mut Ctx, id: AuditId, new: Vec<AccountId>, recount: bool) {
    let deadline_height = cx.height + Params::u64(state.params().audit_report_blocks);
    let a = state.audits.get_mut(&id).expect("exists");
    let old_deadline = a.deadline_height;
    a.deadline_height = deadline_height;
    a.assignments.extend(new.iter().map(|x| Assignment {
        auditor: *x,
        verdict: None,
        evidence: None,
        replaced: false,
        recount,
    }));
    let (target, items) = (a.target, a.items.clone());
    state.unschedule(old_deadline, Timer::AuditDeadline(id));
    state.schedule(deadline_height, Timer::AuditDeadline(id));
    cx.emit(Event::AuditAssigned { audit: id, target, auditors: new, items, deadline_height });
}

/// After a failure, convenes the recount: up to [`MAX_RECOUNT`] committee validators drawn by
/// stake (all of a small committee), none already assigned. Returns false if none is available.
fn escalate(state: &mut State, cx: &mut Ctx, id: AuditId) -> bool {
    let audit = state.audits.get(&id).expect("exists").clone();
    let room = MAX_AUDITORS.saturating_sub(audit.assignments.len()).min(MAX_RECOUNT);
    let pool = committee_pool(state, &audit);
    let new = pick(cx, "escalate", id, pool, room);
    state.audits.get_mut(&id).expect("exists").escalated = true;
    if new.is_empty() {
        return false;
    }
    assign(state, cx, id, new, true);
    true
}

/// Replaces assignees that did not report. Returns false if no replacement is available.
fn replace_silent(state: &mut State, cx: &mut Ctx, id: AuditId) -> bool {
    let audit = state.audits.get(&id).expect("exists").clone();
    let silent: Vec<usize> = audit
        .assignments
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.replaced && a.verdict.is_none())
        .map(|(i, _)| i)
        .collect();
    let room = MAX_AUDITORS.saturating_sub(audit.assignments.len()).min(silent.len());
    // A recount's silent members are replaced from the committee, stage one's from the pool.
    let pool = if audit.escalated {
        committee_pool(state, &audit)
    } else {
        auditor_pool(state, audit.kind, &parties(state, audit.target), &assigned(&audit), cx.height)
    };
    let new = pick(cx, "replace", id.wrapping_add(u64::from(audit.replacements) << 32), pool, room);
    if new.is_empty() {
        return false;
    }
    let a = state.audits.get_mut(&id).expect("exists");
    for &i in silent.iter().take(new.len()) {
        a.assignments[i].replaced = true;
    }
    a.replacements += 1;
    let recount = a.escalated;
    assign(state, cx, id, new, recount);
    true
}

/// Runs from the `AuditDeadline` timer.
pub(crate) fn deadline(state: &mut State, cx: &mut Ctx, id: AuditId) {
    if state.audits.get(&id).is_some_and(|a| a.outcome.is_none() && a.deadline_height <= cx.height) {
        evaluate(state, cx, id, true);
    }
}

/// Applies an audit's outcome to the provider's record, the lease or window and the money.
fn resolve(state: &mut State, cx: &mut Ctx, id: AuditId, outcome: AuditOutcome) {
    let audit = state.audits.get(&id).expect("exists").clone();
    let deadline = audit.deadline_height;
    state.unschedule(deadline, Timer::AuditDeadline(id));
    state.audits.get_mut(&id).expect("exists").outcome = Some(outcome);
    cx.emit(Event::AuditResolved { audit: id, target: audit.target, outcome });
    slash_refuted_auditors(state, cx, id, &audit, outcome);
    let accusers: Vec<AccountId> =
        audit.active().filter(|a| a.verdict == Some(false)).map(|a| a.auditor).collect();
    match audit.target {
        AuditTarget::Lease(lease) => resolve_lease(state, cx, &audit, lease, outcome, &accusers),
        AuditTarget::Window(key) => {
            if outcome != AuditOutcome::Fraud {
                record_trust(state, &audit, outcome);
            }
            crate::sessions::audited(state, cx, key, outcome, &accusers);
        }
    }
}

/// Notes a recomputation's outcome short of fraud in the provider's trust record (fraud is
/// noted by [`punish_fraud`]).
fn record_trust(state: &mut State, audit: &Audit, outcome: AuditOutcome) {
    let forced = Params::u64(state.params().forced_audits_after_inconclusive);
    let full = sample_size(state.params(), audit.kind, VerificationPolicy::Standard, u32::MAX);
    let Some(p) = state.providers.get_mut(&audit.provider) else { return };
    match outcome {
        AuditOutcome::Clean => p.trust.passed(audit.items.len() as u64, u64::from(full)),
        AuditOutcome::Inconclusive => {
            p.trust.reset_streak();
            p.trust.audits_inconclusive += 1;
            p.trust.forced_audits = forced;
        }
        AuditOutcome::Unverified => {
            p.trust.reset_streak();
            p.trust.forced_audits = forced;
        }
        AuditOutcome::Fraud => {}
    }
}

/// [`resolve`] for a lease audit.
fn resolve_lease(
    state: &mut State,
    cx: &mut Ctx,
    audit: &Audit,
    lease: LeaseId,
    outcome: AuditOutcome,
    accusers: &[AccountId],
) {
    let reporters: Vec<AccountId> =
        audit.active().filter(|a| a.verdict.is_some()).map(|a| a.auditor).collect();
    // What an escalated audit's recount measured bounds the device time paid for.
    let recounted_ms = if audit.escalated { measured_ms(state, audit) } else { None };
    if audit.subject == AuditSubject::Inputs {
        // Upheld: the requester's inputs are at fault. Refuted: the provider walked away from
        // computable work. Undecided: re-matched, no penalty.
        let reason = match outcome {
            AuditOutcome::Clean => LeaseFailure::InvalidInput,
            AuditOutcome::Fraud => LeaseFailure::FalseInputClaim,
            AuditOutcome::Inconclusive | AuditOutcome::Unverified => LeaseFailure::Unverified,
        };
        return leases::fail(state, cx, lease, reason);
    }
    if audit.subject == AuditSubject::Availability {
        // Available: paid (no trust gained: nothing was recomputed). Confirmed unavailable: a
        // non-delivery. Undecided: paid, as an output audit's inconclusive end is. Nobody
        // reported: not paid on silence, re-matched without penalty.
        return match outcome {
            AuditOutcome::Clean | AuditOutcome::Inconclusive => {
                delivery::release(state, cx, lease, &reporters, None)
            }
            AuditOutcome::Fraud => leases::fail(state, cx, lease, LeaseFailure::OutputUnavailable),
            AuditOutcome::Unverified => leases::fail(state, cx, lease, LeaseFailure::Unverified),
        };
    }
    record_trust(state, audit, outcome);
    match outcome {
        AuditOutcome::Clean | AuditOutcome::Inconclusive => {
            delivery::release(state, cx, lease, &reporters, recounted_ms)
        }
        AuditOutcome::Unverified => leases::fail(state, cx, lease, LeaseFailure::Unverified),
        AuditOutcome::Fraud => {
            slash(state, cx, audit, lease, accusers);
            leases::fail(state, cx, lease, LeaseFailure::Fraud);
        }
    }
}

/// The insurance pool: an account nobody holds the key of. Fraud slashes feed it and it
/// pays the auditors who proved the fraud, so an accuser's reward never depends on how much
/// its accusation takes from the accused.
pub fn insurance_pool() -> AccountId {
    agora_core::PublicKey(Hash::tagged("agora/insurance-pool", &[]).0)
}

/// Slashes a provider for confirmed fraud: `min(collateral, max(slash_multiple·R,
/// λ·ΔĈ/p − R))`, counting collateral that is still unlocking; `slash_pool_share` goes to the
/// insurance pool and the rest is burned. Each accuser is paid `accuser_reward` of the lease
/// value from the pool while it lasts. The provider is ejected and its asks close.
fn slash(state: &mut State, cx: &mut Ctx, audit: &Audit, lease: LeaseId, accusers: &[AccountId]) {
    let lease = state.leases.get(&lease).expect("exists").clone();
    let params = state.params().clone();
    let value = lease.value();
    let p = u128::from(lease.verification.audit_ppm.max(1));
    let deterrent = value
        .mul_div(params.lambda_bps * params.cheat_saving_bps, 10_000 * 10_000)
        .and_then(|v| v.mul_div(PPM, p))
        .unwrap_or(Amount(u128::MAX))
        .saturating_sub(value);
    let multiple = value.checked_mul(params.slash_multiple).unwrap_or(Amount(u128::MAX));
    punish_fraud(state, cx, audit.provider, value, multiple.max(deterrent), accusers);
}

/// Punishes `provider` for confirmed fraud on work worth `value`: takes `due` from its
/// collateral (locked first, then what is still unlocking), `slash_pool_share` to the
/// insurance pool and the rest burned; pays each accuser `accuser_reward` of `value` from the
/// pool while it lasts; ejects the provider and closes its asks. Returns what was taken.
pub(crate) fn punish_fraud(
    state: &mut State,
    cx: &mut Ctx,
    provider: AccountId,
    value: Amount,
    due: Amount,
    accusers: &[AccountId],
) -> Amount {
    let params = state.params().clone();
    let ejected_until = cx.height + Params::u64(params.ejection_blocks);
    let Some(prov) = state.providers.get_mut(&provider) else { return Amount::ZERO };
    // Locked collateral first, then collateral still unlocking (review F4: a withdrawal
    // started after the commitment must not carry the slash away).
    let amount = prov.take_collateral(due);
    prov.ejected_until = prov.ejected_until.max(ejected_until);
    prov.trust.reset_streak();
    prov.trust.frauds += 1;
    prov.trust.leases_failed += 1;
    let pool = insurance_pool();
    forfeit(state, amount);
    let reward = value.bps(Params::u64(params.accuser_reward_bps));
    let mut paid = Amount::ZERO;
    for a in accusers {
        let r = reward.min(state.balance(&pool));
        if !r.is_zero() {
            crate::accounts::transfer(state, cx, pool, *a, r).expect("within the pool's balance");
            paid = paid.checked_add(r).expect("bounded");
        }
    }
    cx.emit(Event::ProviderSlashed { provider, amount, to_auditors: paid, ejected_until });
    crate::market::close_asks_of(state, cx, provider);
    amount
}

/// Whether the lease's metered device time exceeds what the audit's measurements allow
/// ([`leases::metering_bound`]).
fn over_claimed(state: &State, audit: &Audit) -> bool {
    let Some(lease) = audit.target.lease().and_then(|id| state.leases.get(&id)) else { return false };
    let claimed = lease.claimed_ms();
    measured_ms(state, audit).is_some_and(|m| claimed > leases::metering_bound(state.params(), m))
}

/// The audit's measurement of the device time the whole shard takes on the provider's
/// machine (the recount's alone once the audit escalated: a lease is paid less than it claims
/// only on the recount's word, never on one stage-one auditor's). Each passing auditor's
/// measured time for the sample is scaled to the shard's item count and by the ratio of its
/// registered benchmark score to the provider's (clamped to 1/16..16, so a self-declared slow
/// score cannot stretch it without limit; validators without a provider record count as the
/// provider's equal); the median of those. `None` when no passing auditor measured anything.
fn measured_ms(state: &State, audit: &Audit) -> Option<u64> {
    let lease = state.leases.get(&audit.target.lease()?)?;
    let items = u128::from(lease.commitment.as_ref()?.item_count);
    let sampled = audit.items.len().max(1) as u128;
    let score =
        |a: &AccountId| state.providers.get(a).map(|p| u128::from(p.profile.hardware.benchmark_score));
    let provider_score = score(&lease.provider).filter(|s| *s > 0);
    let mut scaled: Vec<u128> = audit
        .active()
        .filter(|a| a.verdict == Some(true) && a.recount == audit.escalated)
        .filter_map(|a| a.evidence.as_ref().map(|e| (a.auditor, e.measured_ms)))
        .filter(|(_, ms)| *ms > 0)
        .map(|(auditor, ms)| {
            let whole = u128::from(ms) * items / sampled;
            match (score(&auditor).filter(|s| *s > 0), provider_score) {
                (Some(mine), Some(theirs)) => {
                    (whole * mine / theirs).clamp(whole / 16, whole.saturating_mul(16))
                }
                _ => whole,
            }
        })
        .collect();
    if scaled.is_empty() {
        return None;
    }
    scaled.sort_unstable();
    Some(u64::try_from(scaled[(scaled.len() - 1) / 2]).unwrap_or(u64::MAX))
}

/// Moves collateral a provider forfeited (already taken from its record): the
/// `slash_pool_share` to the insurance pool, the rest burned.
pub(crate) fn forfeit(state: &mut State, amount: Amount) {
    let to_pool = amount.bps(Params::u64(state.params().slash_pool_share_bps));
    state.pay_out(Bucket::Collateral, &insurance_pool(), to_pool);
    state.burn(Bucket::Collateral, amount.checked_sub(to_pool).expect("share ≤ amount"));
}

/// The auditors whose verdict the outcome refutes: those who passed a lease found fraudulent,
/// and those who failed a lease the recount cleared.
fn refuted(audit: &Audit, outcome: AuditOutcome) -> Vec<AccountId> {
    let wrong = match outcome {
        AuditOutcome::Fraud => Some(true),
        AuditOutcome::Clean if audit.escalated => Some(false),
        _ => None,
    };
    audit.active().filter(|a| wrong.is_some() && a.verdict == wrong).map(|a| a.auditor).collect()
}

/// Slashes each auditor whose verdict the outcome refutes by `auditor_slash` of the value of
/// what was audited (the lease's, or the window's charge), from its provider collateral first, then its validator stake; burned. A false pass
/// costs as much as a false accusation, so reporting without recomputing does not pay.
fn slash_refuted_auditors(
    state: &mut State,
    cx: &mut Ctx,
    id: AuditId,
    audit: &Audit,
    outcome: AuditOutcome,
) {
    let value = match audit.target {
        AuditTarget::Lease(id) => state.leases.get(&id).map_or(Amount::ZERO, leases::Lease::value),
        AuditTarget::Window(key) => state.windows.get(&key).map_or(Amount::ZERO, |w| w.charge),
    };
    let due = value.bps(Params::u64(state.params().auditor_slash_bps));
    for auditor in refuted(audit, outcome) {
        let mut left = due;
        if let Some(p) = state.providers.get_mut(&auditor) {
            let take = left.min(p.collateral);
            p.collateral = p.collateral.checked_sub(take).expect("min");
            left = left.checked_sub(take).expect("min");
            state.burn(Bucket::Collateral, take);
        }
        if let Some(v) = state.validators.get_mut(&auditor) {
            let take = left.min(v.stake);
            v.stake = v.stake.checked_sub(take).expect("min");
            left = left.checked_sub(take).expect("min");
            state.burn(Bucket::Staked, take);
        }
        let amount = due.checked_sub(left).expect("taken ≤ due");
        cx.emit(Event::AuditorSlashed { audit: id, auditor, amount });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auditors_are_drawn_by_stake_not_by_identity() {
        // Review F5: 20 Sybil identities at the minimum collateral against one honest auditor
        // with 50× their combined stake. Drawn by identity, a Sybil sat on ~95% of audits.
        let sybils: Vec<(AccountId, Amount)> =
            (0..20u8).map(|i| (agora_core::PublicKey([i + 1; 32]), Amount(1_000))).collect();
        let honest = (agora_core::PublicKey([99; 32]), Amount(1_000_000));
        let mut pool = sybils.clone();
        pool.push(honest);
        let draws = 20_000u64;
        let mut sybil = 0u64;
        for n in 0..draws {
            let cx = Ctx {
                height: n,
                time_ms: 0,
                seed: Hash::of(&n.to_le_bytes()),
                proposer: agora_core::PublicKey([0; 32]),
                events: vec![],
            };
            let got = pick(&cx, "auditor", n, pool.clone(), 1);
            sybil += u64::from(got[0] != honest.0);
        }
        let share = sybil as f64 / draws as f64;
        let stake_share = 20_000.0 / 1_020_000.0; // ≈ 1.96%, σ ≈ 0.1% over 20,000 draws
        assert!(
            (share - stake_share).abs() < 0.006,
            "Sybils drawn {share:.4} vs stake share {stake_share:.4}"
        );
        // Distinct picks, never more than the pool.
        let cx = Ctx { height: 0, time_ms: 0, seed: Hash::ZERO, proposer: honest.0, events: vec![] };
        let three = pick(&cx, "auditor", 1, pool.clone(), 3);
        assert_eq!(three.iter().collect::<BTreeSet<_>>().len(), 3);
        assert_eq!(pick(&cx, "auditor", 1, pool[..2].to_vec(), 5).len(), 2);
    }

    #[test]
    fn detection_matches_closed_form() {
        // 1 − 0.95^90 = 0.99010...
        let d = detection_ppm(500, 90);
        assert!((990_000..990_200).contains(&d), "{d}");
        assert_eq!(detection_ppm(500, 0), 0);
        assert_eq!(detection_ppm(10_000, 1), 1_000_000);
    }

    #[test]
    fn sampled_detection_rate_matches_the_stated_probability() {
        // Many leases, each with 10% of its 200 items corrupted at random; the ledger's own
        // sampler draws k = 20 items per audit. The share of cheating leases caught must match
        // the stated 1 − 0.9^20 ≈ 87.8% (σ ≈ 0.6% over 3000 leases; tolerance 5σ).
        let (n, k, leases) = (200u32, 20u32, 3_000u64);
        let stated = f64::from(detection_ppm(1_000, k)) / 1e6;
        let mut caught = 0u64;
        for lease in 0..leases {
            let cx = Ctx {
                height: lease,
                time_ms: 0,
                seed: Hash::of(&lease.to_le_bytes()),
                proposer: agora_core::PublicKey([0; 32]),
                events: vec![],
            };
            let corrupted = |i: u32| {
                Hash::tagged("test/corrupt", &[&lease.to_le_bytes(), &i.to_le_bytes()])
                    .to_u64()
                    .is_multiple_of(10)
            };
            if sample_items(&cx, lease, n, k).into_iter().any(corrupted) {
                caught += 1;
            }
        }
        let rate = caught as f64 / leases as f64;
        assert!((rate - stated).abs() < 0.03, "caught {rate:.4}, stated {stated:.4}");
    }

    #[test]
    fn sample_sizes_follow_the_target() {
        let p = Params::default();
        assert_eq!(sample_size(&p, JobKind::Embed, VerificationPolicy::Standard, 10_000), 90);
        assert_eq!(sample_size(&p, JobKind::Embed, VerificationPolicy::Standard, 20), 20);
        assert_eq!(sample_size(&p, JobKind::Train, VerificationPolicy::Standard, 50), 3);
        assert_eq!(sample_size(&p, JobKind::Wasm, VerificationPolicy::Redundant { replicas: 3 }, 7), 7);
    }
}
