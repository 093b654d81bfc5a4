//! The parameter table: every number the protocol uses, in one place, changeable only by
//! governance and only within stated bounds.
//!
//! Fractions are integers: `_bps` is basis points (1/10,000), `_ppm` parts per million.
//! Defaults follow `shared/research/mechanisms.md` §F.0.

use agora_core::codec::{Decode, DecodeError, Encode, Reader};
use serde::{Deserialize, Serialize};

macro_rules! params {
    ($( $(#[doc = $doc:expr])* $name:ident : $default:expr, $min:expr, $max:expr; )*) => {
        /// Every governance-tunable protocol parameter.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Params {
            $( $(#[doc = $doc])* pub $name: u128, )*
        }

        impl Default for Params {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }

        /// Name, allowed range and description of each parameter, in wire order.
        pub const PARAM_TABLE: &[ParamInfo] = &[
            $( ParamInfo { name: stringify!($name), min: $min, max: $max, doc: concat!($($doc),*) }, )*
        ];

        impl Params {
            /// The value of the parameter called `name`.
            pub fn get(&self, name: &str) -> Option<u128> {
                match name {
                    $( stringify!($name) => Some(self.$name), )*
                    _ => None,
                }
            }

            fn set_unchecked(&mut self, name: &str, value: u128) -> bool {
                match name {
                    $( stringify!($name) => { self.$name = value; true } )*
                    _ => false,
                }
            }

            /// All values in wire order.
            pub fn values(&self) -> Vec<u128> {
                vec![$( self.$name, )*]
            }
        }
    };
}

/// Metadata about one parameter.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ParamInfo {
    /// The name used in proposals.
    pub name: &'static str,
    /// Smallest allowed value.
    pub min: u128,
    /// Largest allowed value.
    pub max: u128,
    /// What it controls.
    pub doc: &'static str,
}

const BIG: u128 = 1 << 100;

/// The largest committee `committee_size` allows (consensus sizes messages and blocks for it).
pub const MAX_COMMITTEE_SIZE: u128 = 100;

/// Parameters whose change can weaken what the protocol guarantees (deterrence, audits,
/// consensus safety, governance itself): a proposal touching any of them needs
/// `gov_critical_bps` of all bonded stake voting yes, not a majority of a quorum.
pub const CRITICAL_PARAMS: &[&str] = &[
    "committee_size",
    "min_validator_stake",
    "unbonding_blocks",
    "equivocation_slash_bps",
    "min_provider_collateral",
    "audit_window_blocks",
    "delivery_window_ms",
    "audit_floor_ppm",
    "audit_second_opinion_ppm",
    "lambda_bps",
    "collusion_alpha_bps",
    "cheat_saving_bps",
    "trust_threshold",
    "detect_fraction_bps",
    "detect_target_ppm",
    "slash_multiple",
    "slash_pool_share_bps",
    "accuser_reward_bps",
    "auditor_slash_bps",
    "ejection_blocks",
    "gov_voting_ms",
    "gov_quorum_bps",
    "gov_critical_bps",
    "allow_private_endpoints",
    "miss_jail_streak",
    "metering_slack_pct",
    "challenge_blocks",
];

/// Parameters only a genesis file sets; governance proposals to change them are refused.
pub const FIXED_AT_GENESIS: &[&str] = &["epoch_length"];
const DAY_MS: u128 = 86_400_000;

params! {
    /// Lowest fee a transaction may pay (base units). Fees are burned.
    min_fee: 10, 0, BIG;
    /// Extra fee per encoded byte of the transaction.
    fee_per_byte: 0, 0, BIG;
    /// Number of validators in the consensus committee (top-N by stake).
    committee_size: 4, 1, MAX_COMMITTEE_SIZE;
    /// Blocks per epoch; the committee is recomputed at each epoch boundary. Fixed at genesis:
    /// consensus switches committees at multiples of it.
    epoch_length: 1_000, 2, 1 << 40;
    /// Least stake for committee membership.
    min_validator_stake: 1_000, 0, BIG;
    /// Blocks before unbonded stake or withdrawn collateral becomes spendable.
    unbonding_blocks: 100, 0, 1 << 32;
    /// Blocks an equivocating validator, or one that keeps missing its proposal slots, is
    /// excluded from the committee.
    jail_blocks: 10_000, 0, 1 << 40;
    /// Share of stake slashed (burned) for consensus equivocation, bps.
    equivocation_slash_bps: 500, 0, 10_000;
    /// Least collateral to register as a provider.
    min_provider_collateral: 1_000, 0, BIG;
    /// A provider silent (no heartbeat or commitment) for this many blocks is inactive: its
    /// asks close and its running leases fail and are re-matched.
    liveness_blocks: 60, 1, 1 << 32;
    /// Most units one account may buy in one class per block, bps of the class's offered
    /// volume (an account's first fill in a block is always allowed).
    account_cap_bps: 2_000, 1, 10_000;
    /// Longest time an ask or bid may stay open, ms.
    max_order_lifetime_ms: 7 * DAY_MS, 1, 365 * DAY_MS;
    /// Lease deadline = start + quantity seconds × this / 100 + grace (capped by the job
    /// deadline).
    lease_slack_pct: 300, 100, 100_000;
    /// Fixed allowance added to every lease deadline, ms.
    lease_grace_ms: 120_000, 0, DAY_MS;
    /// Penalty for missing a lease deadline, bps of the lease payment, burned from collateral
    /// (never paid to the requester; waived when it withheld an encrypted job's input key).
    non_delivery_bps: 1_000, 0, 10_000;
    /// Compensation a provider receives when the requester cancels a running lease, bps of
    /// the lease payment.
    cancel_fee_bps: 1_000, 0, 10_000;
    /// Blocks after a commitment (not audited) before payment is released.
    audit_window_blocks: 3, 1, 1 << 32;
    /// How long, after the network's checks pass, an encrypted job's requester may confirm or
    /// dispute a lease's outputs (only it holds their key) before the provider is paid, ms;
    /// 0 pays encrypted leases on the network's checks alone.
    delivery_window_ms: 600_000, 0, DAY_MS;
    /// Blocks an assigned auditor has to report.
    audit_report_blocks: 60, 1, 1 << 32;
    /// Times a silent auditor is replaced before an audit closes without it.
    audit_max_reassign: 2, 0, 16;
    /// Least audit probability for any lease, ppm.
    audit_floor_ppm: 10_000, 0, 1_000_000;
    /// Safety factor λ in the deterrence inequality, bps (15,000 = 1.5).
    lambda_bps: 15_000, 10_000, 1_000_000;
    /// Upper bound α on colluding auditor share, bps.
    collusion_alpha_bps: 3_333, 0, 9_999;
    /// Cost a cheater saves, as a share of the lease payment (ΔĈ / R), bps.
    cheat_saving_bps: 8_000, 0, 10_000;
    /// Clean audits in a row before a provider earns a reduced audit rate (1 / streak).
    trust_threshold: 10, 1, 1 << 32;
    /// Leases audited with certainty after an inconclusive audit.
    forced_audits_after_inconclusive: 10, 0, 1 << 16;
    /// Chance that a standard audit gets two independent stage-one auditors instead of one,
    /// ppm: their disagreement escalates, so a lazy pass risks a slash.
    audit_second_opinion_ppm: 250_000, 0, 1_000_000;
    /// Fewest items sampled per audit.
    audit_sample_min: 8, 1, 1 << 20;
    /// Cheating fraction the sample is sized to catch, bps (500 = 5% of items).
    detect_fraction_bps: 500, 1, 10_000;
    /// Per-audit probability of catching that fraction, ppm.
    detect_target_ppm: 990_000, 0, 999_999;
    /// Checkpoint segments replayed per audited training lease.
    train_replay_segments: 3, 1, 1 << 16;
    /// Fee per audit report, bps of the lease payment, paid from the provider's payment.
    audit_fee_bps: 100, 0, 5_000;
    /// Slash for confirmed fraud: at least this many times the lease payment.
    slash_multiple: 10, 0, 10_000;
    /// Share of a fraud slash paid into the insurance pool, bps; the rest is burned. Accusers
    /// are paid from the pool, not from the slash they caused.
    slash_pool_share_bps: 5_000, 0, 10_000;
    /// Reward to each auditor whose failure report was confirmed as fraud, bps of the lease
    /// value, paid from the insurance pool while it lasts.
    accuser_reward_bps: 5_000, 0, 100_000;
    /// Slash of an auditor whose verdict loses the escalation (a pass on confirmed fraud, or a
    /// failure the recount rejected), bps of the lease value, from its collateral or stake,
    /// burned.
    auditor_slash_bps: 10_000, 0, 1_000_000;
    /// Blocks a provider confirmed as fraudulent is barred from the market.
    ejection_blocks: 1_000_000, 0, 1 << 48;
    /// How long a governance proposal stays open for votes, ms of block time (wall time, so
    /// faster blocks never shorten the time stakers have to react).
    gov_voting_ms: 3 * DAY_MS, 1_000, 90 * DAY_MS;
    /// Share of bonded stake (at the proposal's opening) that must vote for a proposal to
    /// count, bps.
    gov_quorum_bps: 3_334, 0, 10_000;
    /// Share of bonded stake (at the proposal's opening) that must vote *yes* for a proposal
    /// that changes a security parameter ([`CRITICAL_PARAMS`]), bps.
    gov_critical_bps: 6_667, 5_001, 10_000;
    /// Whether providers may register loopback, private or link-local endpoints (1 on devnets,
    /// where every node is on 127.0.0.1; 0 elsewhere, so no endpoint turns the nodes that dial
    /// it into probes of their own networks).
    allow_private_endpoints: 0, 0, 1;
    /// Lowest `max_unit_price` a job may bid, base units per device-second. Unpaid work has
    /// no place in the paid auction (it runs locally with `agora run`); a floor also makes
    /// every open bid lock real escrow.
    min_bid_price: 1, 0, BIG;
    /// A committee validator that misses this many of its proposal slots in a row (views
    /// nullified while it led: it was down, or proposed a block its peers could not accept) is
    /// jailed for `jail_blocks` and left out of the next committee. 0 turns it off.
    miss_jail_streak: 32, 0, 1 << 20;
    /// An audited lease whose metered device time exceeds this percent of the time its
    /// auditors measured (their sample scaled to the whole shard and by the two machines'
    /// registered benchmark scores), plus `metering_grace_ms`, is paid for the measurement
    /// only, and fined for the excess at the deterrence rate. Within it a claim
    /// stands: room for honest differences, and what an over-claim can take unnoticed.
    metering_slack_pct: 300, 100, 100_000;
    /// Fixed device time added to the metering bound (model loading, input decoding), ms.
    metering_grace_ms: 2_000, 0, DAY_MS;
    /// The most power one device may be metered at, W: a commitment whose energy exceeds its
    /// device time at this draw is refused (energy and the emissions derived from it are
    /// otherwise the provider's own estimate).
    max_device_watts: 2_000, 1, 100_000;
    /// Shortest serving session, ms.
    session_min_ms: 60_000, 1, 365 * DAY_MS;
    /// Longest serving session, ms.
    session_max_ms: 7 * DAY_MS, 1, 365 * DAY_MS;
    /// How long after a session ends its providers may still commit their last windows, ms.
    /// After it, a signed receipt beyond a provider's committed windows proves an omission.
    session_commit_grace_ms: 60_000, 0, DAY_MS;
    /// Blocks a serving provider has to answer a receipt challenge with the receipt's
    /// inclusion proof; silence proves the omission.
    challenge_blocks: 20, 1, 1 << 32;
}

/// Why a parameter change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// No parameter has this name.
    #[error("unknown parameter {0:?}; `agora gov params` lists them")]
    Unknown(String),
    /// Governance cannot change this parameter.
    #[error("parameter {0} is fixed at genesis: every node's consensus depends on it")]
    FixedAtGenesis(String),
    /// The value is outside the allowed range.
    #[error("parameter {name} must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// Parameter.
        name: String,
        /// Requested value.
        value: u128,
        /// Lower bound.
        min: u128,
        /// Upper bound.
        max: u128,
    },
}

impl Params {
    /// Checks a change against the table without applying it.
    pub fn check(name: &str, value: u128) -> Result<(), ParamError> {
        let info = PARAM_TABLE
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ParamError::Unknown(name.to_string()))?;
        if value < info.min || value > info.max {
            return Err(ParamError::OutOfRange {
                name: name.to_string(),
                value,
                min: info.min,
                max: info.max,
            });
        }
        Ok(())
    }

    /// Checks a change governance proposes: as [`Self::check`], and refuses parameters that
    /// are fixed at genesis.
    pub fn check_change(name: &str, value: u128) -> Result<(), ParamError> {
        if FIXED_AT_GENESIS.contains(&name) {
            return Err(ParamError::FixedAtGenesis(name.to_string()));
        }
        Self::check(name, value)
    }

    /// Sets `name` to `value` if the table allows it.
    pub fn set(&mut self, name: &str, value: u128) -> Result<(), ParamError> {
        Self::check(name, value)?;
        let known = self.set_unchecked(name, value);
        debug_assert!(known, "checked names exist");
        Ok(())
    }

    /// Checks every value against the table (for genesis files).
    pub fn validate(&self) -> Result<(), ParamError> {
        PARAM_TABLE.iter().zip(self.values()).try_for_each(|(info, v)| Self::check(info.name, v))
    }

    /// Blocks per epoch, as the ledger and consensus both count them (`epoch_length`; its
    /// table bound keeps it at least 2, which consensus needs).
    pub fn blocks_per_epoch(&self) -> u64 {
        Self::u64(self.epoch_length).max(2)
    }

    /// A value that fits in `u64` (all count and time parameters do, by their bounds).
    pub fn u64(value: u128) -> u64 {
        u64::try_from(value).unwrap_or(u64::MAX)
    }
}

impl Encode for Params {
    fn encode_to(&self, out: &mut Vec<u8>) {
        for v in self.values() {
            v.encode_to(out);
        }
    }
}

impl Decode for Params {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = Params::default();
        for info in PARAM_TABLE {
            let v = u128::decode_from(r)?;
            p.set_unchecked(info.name, v);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_within_bounds() {
        Params::default().validate().unwrap();
    }

    #[test]
    fn set_checks_names_and_ranges() {
        let mut p = Params::default();
        p.set("audit_floor_ppm", 20_000).unwrap();
        assert_eq!(p.audit_floor_ppm, 20_000);
        assert!(matches!(p.set("nope", 1), Err(ParamError::Unknown(_))));
        assert!(matches!(Params::check_change("epoch_length", 500), Err(ParamError::FixedAtGenesis(_))));
        assert!(Params::check_change("committee_size", 5).is_ok());
        let err = p.set("audit_floor_ppm", 2_000_000).unwrap_err();
        assert!(err.to_string().contains("between 0 and 1000000"));
        assert_eq!(Params::decode(&p.encode()).unwrap(), p);
    }
}
