//! The adversarial market simulation behind `agora bench adversary`: the real ledger, driven
//! block by block by agents of every kind, over many seeds.
//!
//! Actors (all agents act on what the chain tells them, as the node's agents do):
//! * 4 validators (100,000 stake each) and 5 honest providers (200,000 collateral each):
//!   compute honestly and audit truthfully.
//! * 2 cheating providers: commit garbage for `cheat_bps` of their leases.
//! * Sybil auditors: 10 identities registered as providers that never sell, holding together
//!   with the cheaters `sybil_bps` of all auditor stake. The coalition passes the cheaters'
//!   leases and accuses honest providers whenever it is drawn.
//! * 1 lazy auditor (an otherwise honest provider): passes everything without recomputing.
//! * 3 honest requesters, who share their input keys at once, and 1 withholding requester,
//!   who never does.
//! * With [`Scenario::withholding`], one of the 4 validators colludes with the cheaters as a
//!   proposer: leaders take turns by height, and whenever its block would draw an audit of a
//!   cheated lease it withholds the block, so the next leader's view brings another seed (the
//!   one choice the commit-reveal beacon leaves a proposer). It audits honestly otherwise.
//! * With [`Scenario::overclaim`], the cheaters also meter every lease at the whole 60
//!   device-seconds it bought, where 15 were used (4×, beyond the 3× slack); honest auditors report what the sample
//!   really took them, the adversary's auditors what the claim implies.

use super::{START_MS, TestChain, all_events, commitment, honest_root, id, manifest, profile};
use crate::events::{Event, LeaseFailure};
use crate::genesis::{Genesis, GenesisAccount, GenesisValidator};
use crate::params::Params;
use agora_core::tx::{LeaseId, TxPayload};
use agora_core::{AccountId, Amount, Hash};
use std::collections::{BTreeMap, BTreeSet};

/// One adversarial setting.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The adversary's share of auditor stake (Sybils plus cheaters), bps.
    pub sybil_bps: u32,
    /// Share of a cheater's leases it commits garbage for, bps.
    pub cheat_bps: u32,
    /// Rounds of job submissions (each requester submits one job per round).
    pub rounds: u32,
    /// Whether a colluding validator withholds its blocks to re-roll audits of cheated leases.
    pub withholding: bool,
    /// Whether the cheaters claim more device time than they used.
    pub overclaim: bool,
}

/// What one or more runs of a scenario measured.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// Seeds run.
    pub seeds: u32,
    /// Leases created.
    pub leases: u64,
    /// Times an honest provider was slashed.
    pub honest_slashed: u64,
    /// Leases a cheater committed garbage for.
    pub cheated: u64,
    /// Of those, confirmed as fraud.
    pub caught: u64,
    /// Sum over cheated leases of the audit probability the ledger stated, ppm.
    pub stated_ppm_sum: u64,
    /// Cheaters' gain over behaving honestly on the same leases (saved compute on leases that
    /// were paid, minus slashes and the payments lost), base units. Negative: cheating lost.
    pub cheater_gain: i128,
    /// Penalties charged to providers for leases whose requester withheld the key.
    pub withheld_penalties: u128,
    /// What the withholding requester gained over its fees and the escrow it still has
    /// locked: positive only if failures it caused paid it.
    pub withholder_gain: i128,
    /// Lazy-auditor slashes (its passes refuted by a recount).
    pub lazy_slashed: u64,
    /// Slashes of the adversary's auditors (Sybils and cheaters) for refuted verdicts.
    pub sybil_auditor_slashed: u64,
    /// Blocks the colluding proposer withheld.
    pub withheld_blocks: u64,
    /// Cheaters' gain from over-claimed device time: the excess paid, less the fines.
    pub overclaim_gain: i128,
    /// Over-claimed leases that were paid in full (unaudited, or shielded by the adversary's
    /// auditors).
    pub overclaims_paid: u64,
    /// Over-claimed leases cut to what the audit measured.
    pub overclaims_cut: u64,
    /// Whether supply was conserved after every block of every seed.
    pub supply_conserved: bool,
}

impl Report {
    /// A report of no runs (supply trivially conserved), to [`Report::absorb`] runs into.
    pub fn empty() -> Self {
        Report { supply_conserved: true, ..Report::default() }
    }

    /// The share of cheated leases caught.
    pub fn detection(&self) -> f64 {
        if self.cheated == 0 { 0.0 } else { self.caught as f64 / self.cheated as f64 }
    }

    /// The mean stated audit probability of the cheated leases.
    pub fn stated(&self) -> f64 {
        if self.cheated == 0 { 0.0 } else { self.stated_ppm_sum as f64 / 1e6 / self.cheated as f64 }
    }

    /// Cheaters' mean gain per cheated lease.
    pub fn gain_per_cheat(&self) -> f64 {
        if self.cheated == 0 { 0.0 } else { self.cheater_gain as f64 / self.cheated as f64 }
    }

    /// Adds another run's figures to these.
    pub fn absorb(&mut self, o: &Report) {
        self.seeds += o.seeds;
        self.leases += o.leases;
        self.honest_slashed += o.honest_slashed;
        self.cheated += o.cheated;
        self.caught += o.caught;
        self.stated_ppm_sum += o.stated_ppm_sum;
        self.cheater_gain += o.cheater_gain;
        self.withheld_penalties += o.withheld_penalties;
        self.withholder_gain += o.withholder_gain;
        self.lazy_slashed += o.lazy_slashed;
        self.sybil_auditor_slashed += o.sybil_auditor_slashed;
        self.withheld_blocks += o.withheld_blocks;
        self.overclaim_gain += o.overclaim_gain;
        self.overclaims_paid += o.overclaims_paid;
        self.overclaims_cut += o.overclaims_cut;
        self.supply_conserved &= o.supply_conserved;
    }
}

const VALIDATORS: usize = 4;
const HONEST: usize = 5;
const CHEATERS: usize = 2;
const SYBILS: usize = 10;
const REQUESTERS: usize = 3;
const STAKE: u128 = 100_000;
const COLLATERAL: u128 = 200_000;
/// Blocks between submission rounds.
const ROUND_BLOCKS: u64 = 10;
/// Device-ms a lease's 20 items really take.
const USED_MS: u64 = 15_000;
/// Device-ms an over-claiming cheater meters: the whole lease.
const CLAIMED_MS: u64 = 60_000;
/// The validator that colludes with the cheaters as a proposer.
const COLLUDER: &str = "v3";

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Who is who, by account.
struct Cast {
    honest: BTreeSet<AccountId>,
    cheaters: BTreeSet<AccountId>,
    sybils: BTreeSet<AccountId>,
    lazy: AccountId,
    withholder: AccountId,
    names: BTreeMap<AccountId, String>,
}

impl Cast {
    fn new() -> Self {
        let all: Vec<String> = [
            names("v", VALIDATORS),
            names("h", HONEST),
            names("c", CHEATERS),
            names("s", SYBILS),
            vec!["lazy".into(), "w0".into()],
            names("r", REQUESTERS),
        ]
        .concat();
        let set = |p: &str, n| names(p, n).iter().map(|x| id(x)).collect();
        Cast {
            honest: set("h", HONEST),
            cheaters: set("c", CHEATERS),
            sybils: set("s", SYBILS),
            lazy: id("lazy"),
            withholder: id("w0"),
            names: all.into_iter().map(|n| (id(&n), n)).collect(),
        }
    }

    fn name(&self, a: &AccountId) -> &str {
        &self.names[a]
    }

    fn adversary(&self, a: &AccountId) -> bool {
        self.sybils.contains(a) || self.cheaters.contains(a)
    }
}

/// The coalition's total collateral for `sybil_bps` of auditor stake: honest auditor stake is
/// the validators', the honest providers' and the lazy auditor's.
fn sybil_collateral(sybil_bps: u32) -> u128 {
    let honest = STAKE * VALIDATORS as u128 + COLLATERAL * (HONEST as u128 + 1);
    let q = u128::from(sybil_bps.min(9_999));
    let coalition = honest * q / (10_000 - q);
    (coalition.saturating_sub(COLLATERAL * CHEATERS as u128) / SYBILS as u128).max(1_000)
}

/// Genesis balance of every actor.
const BALANCE: u128 = 100_000_000_000;

fn genesis() -> Genesis {
    let cast = Cast::new();
    let accounts =
        cast.names.keys().map(|a| GenesisAccount { account: *a, balance: Amount(BALANCE) }).collect();
    let validators = names("v", VALIDATORS)
        .iter()
        .map(|v| GenesisValidator { account: id(v), stake: Amount(STAKE) })
        .collect();
    let params = Params { liveness_blocks: 1_000, ..Params::default() };
    Genesis { chain_id: super::CHAIN.into(), genesis_time_ms: START_MS, accounts, validators, params }
}

/// An ask for one shard's capacity: sellers post one at a time, and another each time one
/// fills, so shards spread over the sellers as the tie-breaker draws them.
fn one_shard_ask(c: &TestChain) -> TxPayload {
    TxPayload::PostAsk {
        class: "cpu.x86_64".parse().expect("class"),
        quantity: 60,
        min_unit_price: Amount(2),
        expiry_ms: c.now_ms() + 86_400_000,
    }
}

/// Per-lease facts the agents and the tally need.
struct LeaseFacts {
    provider: AccountId,
    requester: AccountId,
    job: u64,
    value: u128,
    cheated: bool,
    committed: bool,
}

/// Runs `scenario` once with `seed`.
pub fn run_seed(s: &Scenario, seed: u64) -> Report {
    let cast = Cast::new();
    let mut c = TestChain::from_genesis(genesis());
    c.salt = seed.wrapping_add(1);
    let mut r = Report { seeds: 1, ..Report::empty() };
    // Registration and asks.
    let mut txs = vec![];
    let per_sybil = sybil_collateral(s.sybil_bps);
    for (who, collateral, sells) in cast
        .honest
        .iter()
        .chain(&cast.cheaters)
        .map(|a| (*a, COLLATERAL, true))
        .chain([(cast.lazy, COLLATERAL, true)])
        .chain(cast.sybils.iter().map(|a| (*a, per_sybil, false)))
    {
        let name = cast.name(&who).to_string();
        txs.push(c.tx_n(
            &name,
            TxPayload::RegisterProvider { profile: profile("local", 100), collateral: Amount(collateral) },
            0,
        ));
        if sells {
            txs.push(c.tx_n(&name, one_shard_ask(&c), 1));
        }
    }
    c.block(txs);
    let mut leases: BTreeMap<LeaseId, LeaseFacts> = BTreeMap::new();
    let mut pending: Vec<(String, TxPayload)> = vec![];
    let total_blocks = u64::from(s.rounds) * ROUND_BLOCKS + 400;
    for b in 0..total_blocks {
        if b % ROUND_BLOCKS == 0 && b < u64::from(s.rounds) * ROUND_BLOCKS {
            for req in names("r", REQUESTERS).into_iter().chain(["w0".to_string()]) {
                let mut m = manifest(&c, 1, 20, 60, 10);
                m.encrypted = true;
                pending.push((req, TxPayload::SubmitJob { manifest: m }));
            }
        }
        if b % 30 == 0 {
            for n in cast
                .names
                .values()
                .filter(|n| !n.starts_with('v') && !n.starts_with('r') && n.as_str() != "w0")
            {
                pending.push((n.clone(), TxPayload::Heartbeat { coord: agora_core::Coord::default() }));
            }
        }
        // Sign this block's transactions with per-sender nonces.
        let mut nonce: BTreeMap<String, u64> = BTreeMap::new();
        let txs = std::mem::take(&mut pending)
            .into_iter()
            .map(|(who, p)| {
                let n = nonce.entry(who.clone()).or_default();
                let tx = c.tx_n(&who, p, *n);
                *n += 1;
                tx
            })
            .collect();
        let events = propose(&mut c, txs, s, &leases, &mut r);
        r.supply_conserved &= c.state.meta().supply.is_conserved();
        react(&c, &cast, s, seed, &events, &mut leases, &mut pending, &mut r);
    }
    r.withholder_gain = withholder_gain(&c, cast.withholder);
    r
}

/// Applies the next block: its leader (by height, over the committee) proposes it, unless the
/// leader is the colluding validator and the block would audit a cheated lease; then it is
/// withheld, the view passes to the next leader with a fresh seed, and the colluder's missed
/// slot is recorded as consensus would. Returns the applied block's events.
fn propose(
    c: &mut TestChain,
    txs: Vec<agora_core::tx::SignedTx>,
    s: &Scenario,
    leases: &BTreeMap<LeaseId, LeaseFacts>,
    r: &mut Report,
) -> Vec<Event> {
    let committee = c.state.meta().committee.clone();
    let height = c.height() + 1;
    let leader = committee[(height % committee.len() as u64) as usize];
    let block = c.block_in_view(txs.clone(), leader, 0);
    let audits_a_cheat = |events: &[Event]| {
        events.iter().any(|e| {
            matches!(e, Event::AuditDrawn { lease, audited: true, .. }
                if leases.get(lease).is_some_and(|f| f.cheated))
        })
    };
    let withhold = s.withholding && leader == id(COLLUDER) && {
        let (_, trial) = crate::apply::apply_block_with(&c.state, &block, Default::default(), |_| false)
            .expect("a valid block");
        audits_a_cheat(&all_events(&trial))
    };
    let outcome = if withhold {
        r.withheld_blocks += 1;
        let next = committee[((height + 1) % committee.len() as u64) as usize];
        let retry = c.block_in_view(txs, next, 1);
        c.apply_after_missed(&retry, vec![leader]).expect("a valid block")
    } else {
        c.apply(&block).expect("a valid block")
    };
    let events = all_events(outcome);
    c.outcomes.clear();
    events
}

/// The withholder's balance plus the escrow its open bids and leases still hold, less what it
/// started with and the fees it paid: any positive remainder came from failures it caused.
fn withholder_gain(c: &TestChain, who: AccountId) -> i128 {
    let bids: u128 = c
        .state
        .orders()
        .filter_map(|(_, o)| match o {
            crate::market::Order::Bid(b) if b.requester == who => Some(b.escrow.0),
            _ => None,
        })
        .sum();
    let leased: u128 = c.state.leases().filter(|(_, l)| l.requester == who).map(|(_, l)| l.escrow.0).sum();
    let fees = u128::from(c.state.nonce(&who)) * 10;
    (c.state.balance(&who).0 + bids + leased) as i128 - (BALANCE - fees) as i128
}

/// The agents' responses to one block's events, queued for the next block; and the tally.
#[allow(clippy::too_many_arguments)]
fn react(
    c: &TestChain,
    cast: &Cast,
    s: &Scenario,
    seed: u64,
    events: &[Event],
    leases: &mut BTreeMap<LeaseId, LeaseFacts>,
    pending: &mut Vec<(String, TxPayload)>,
    r: &mut Report,
) {
    for e in events {
        match e {
            Event::LeaseCreated { lease, job, provider, requester, unit_price, quantity, .. } => {
                r.leases += 1;
                let cheated = cast.cheaters.contains(provider)
                    && Hash::tagged("cheat", &[&seed.to_le_bytes(), &lease.to_le_bytes()]).0[0] as u32
                        * 10_000
                        < s.cheat_bps * 256;
                leases.insert(
                    *lease,
                    LeaseFacts {
                        provider: *provider,
                        requester: *requester,
                        job: *job,
                        value: unit_price.0 * u128::from(*quantity),
                        cheated,
                        committed: false,
                    },
                );
                pending.push((cast.name(provider).to_string(), one_shard_ask(c)));
                if *requester != cast.withholder {
                    let to = *provider;
                    pending.push((
                        cast.name(requester).to_string(),
                        TxPayload::ShareKey { lease: *lease, to, sealed_key: crate::sim::sealed_key() },
                    ));
                }
            }
            Event::KeyShared { lease, to } => {
                let Some(f) = leases.get_mut(lease) else { continue };
                if *to != f.provider || f.committed {
                    continue;
                }
                f.committed = true;
                let root = if f.cheated { Hash::of(b"garbage") } else { honest_root(f.job, 0) };
                if f.cheated {
                    r.cheated += 1;
                }
                let claim =
                    if s.overclaim && cast.cheaters.contains(&f.provider) { CLAIMED_MS } else { USED_MS };
                pending.push((
                    cast.name(&f.provider).to_string(),
                    TxPayload::CommitResult { lease: *lease, commitment: commitment(root, 20, claim) },
                ));
            }
            Event::OutputsDelivered { lease, .. } => {
                // Nobody here serves an output blob other than the one committed: requesters
                // decrypt what they were sent and confirm it.
                let Some(f) = leases.get(lease) else { continue };
                pending
                    .push((cast.name(&f.requester).to_string(), TxPayload::ConfirmOutputs { lease: *lease }));
            }
            Event::AuditDrawn { lease, probability_ppm, .. }
                if leases.get(lease).is_some_and(|f| f.cheated) =>
            {
                r.stated_ppm_sum += u64::from(*probability_ppm);
            }
            Event::AuditAssigned {
                audit,
                target: crate::audits::AuditTarget::Lease(lease),
                auditors,
                ..
            } => {
                let Some(f) = leases.get(lease) else { continue };
                // Nobody here withholds output blobs: every availability check passes.
                let probe = c
                    .state
                    .audit(*audit)
                    .is_some_and(|x| x.subject == crate::audits::AuditSubject::Availability);
                for a in auditors {
                    let passed = if probe {
                        true
                    } else if cast.adversary(a) {
                        cast.cheaters.contains(&f.provider)
                    } else if *a == cast.lazy {
                        true
                    } else {
                        !f.cheated
                    };
                    // Honest auditors report what recomputing the sample took them; the
                    // adversary's and the lazy one, what the provider's claim implies.
                    let mut report = super::report(&c.state, *audit, passed);
                    if let TxPayload::ReportAudit { evidence, .. } = &mut report
                        && !cast.adversary(a)
                        && *a != cast.lazy
                    {
                        let sampled = c.state.audit(*audit).map_or(0, |x| x.items.len() as u64);
                        evidence.measured_ms = USED_MS * sampled / 20;
                    }
                    pending.push((cast.name(a).to_string(), report));
                }
            }
            Event::LeaseSettled { lease, .. } => {
                if let Some(f) = leases.get(lease).filter(|f| f.cheated) {
                    // Paid as if honest, without the compute it saved.
                    r.cheater_gain += (f.value * c.state.params().cheat_saving_bps / 10_000) as i128;
                }
                let over =
                    leases.get(lease).is_some_and(|f| s.overclaim && cast.cheaters.contains(&f.provider));
                if let Some(l) = c.state.lease(*lease).filter(|_| over) {
                    let paid = l.units_paid().unwrap_or(0);
                    let honest = USED_MS / 1000;
                    r.overclaim_gain += (i128::from(paid) - i128::from(honest)) * l.seller_price.0 as i128;
                    if paid < l.units_used() {
                        r.overclaims_cut += 1;
                    } else {
                        r.overclaims_paid += 1;
                    }
                }
            }
            Event::MeteringCapped { fine, .. } => r.overclaim_gain -= fine.0 as i128,
            Event::LeaseFailed { lease, reason, penalty, .. } => {
                let Some(f) = leases.get(lease) else { continue };
                if f.requester == cast.withholder {
                    r.withheld_penalties += penalty.0;
                }
                if f.cheated {
                    r.caught += u64::from(*reason == LeaseFailure::Fraud);
                    // Lost the payment an honest run would have earned, net of its cost.
                    r.cheater_gain -=
                        (f.value * (10_000 - c.state.params().cheat_saving_bps) / 10_000) as i128;
                }
            }
            Event::ProviderSlashed { provider, amount, .. } => {
                if cast.honest.contains(provider) || *provider == cast.lazy {
                    r.honest_slashed += 1;
                }
                if cast.cheaters.contains(provider) {
                    r.cheater_gain -= amount.0 as i128;
                }
            }
            Event::AuditorSlashed { auditor, .. } => {
                if *auditor == cast.lazy {
                    r.lazy_slashed += 1;
                }
                if cast.adversary(auditor) {
                    r.sybil_auditor_slashed += 1;
                }
            }
            _ => {}
        }
    }
}

/// Runs `scenario` over `seeds` seeds (0, 1, …) and sums the reports.
pub fn run(s: &Scenario, seeds: u32) -> Report {
    let mut total = Report::empty();
    for seed in 0..seeds {
        total.absorb(&run_seed(s, u64::from(seed)));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_run_conserves_supply_and_never_pays_withheld_penalties() {
        let r = run(
            &Scenario {
                sybil_bps: 1_000,
                cheat_bps: 10_000,
                rounds: 8,
                withholding: false,
                overclaim: false,
            },
            1,
        );
        assert!(r.supply_conserved);
        assert!(r.leases > 0 && r.cheated > 0, "{r:?}");
        assert_eq!(r.withheld_penalties, 0);
        assert!(r.withholder_gain <= 0, "{r:?}");
    }
}

#[cfg(test)]
mod adversary_proposer_tests {
    use super::*;

    #[test]
    fn a_withholding_proposer_re_rolls_some_audits_but_cheating_still_loses() {
        let s =
            Scenario { sybil_bps: 1_000, cheat_bps: 5_000, rounds: 20, withholding: true, overclaim: true };
        let r = run(&s, 2);
        assert!(r.supply_conserved);
        assert!(r.withheld_blocks > 0, "the colluder had audits of cheated leases to re-roll: {r:?}");
        assert_eq!(r.honest_slashed, 0, "{r:?}");
        assert!(r.cheater_gain < 0, "garbage outputs lose money in expectation: {r:?}");
        assert!(r.overclaims_cut > 0, "honest auditors' measurements cut over-claims: {r:?}");
        assert!(r.overclaim_gain <= 0, "over-claiming device time never gains: {r:?}");
    }
}
