//! Validator stake: bonding, unbonding with a delay, the per-epoch committee, and penalties
//! for consensus faults.
//!
//! Consensus quorums are equal-weight (Commonware simplex counts votes, not stake), so stake
//! decides *membership*: the committee of an epoch is the top `committee_size` accounts by
//! stake at the epoch boundary.

use crate::error::TxError;
use crate::events::Event;
use crate::params::Params;
use crate::state::{Bucket, Ctx, Present, State, Timer};
use agora_core::block::Misbehavior;
use agora_core::{AccountId, Amount, Hash, codec_struct};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Most concurrent unlocks per account (bounds the stored list).
pub const MAX_UNLOCKS: usize = 32;

/// Funds on their way back to a balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlock {
    /// Amount.
    pub amount: Amount,
    /// Height at which it becomes spendable.
    pub release_height: u64,
}
codec_struct!(Unlock { amount, release_height });

/// An account's validator stake.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    /// Bonded stake (counts for committee membership and votes).
    pub stake: Amount,
    /// Stake unbonding.
    pub unlocking: Vec<Unlock>,
    /// Excluded from committees until this height (after a consensus fault).
    pub jailed_until: u64,
    /// Its proposal slots missed in a row (see `miss_jail_streak`).
    pub missed_streak: u32,
    /// Its commitment to the randomness it reveals in its next block (zero before its first):
    /// the chain layer checks each reveal against it (see `agora_chain::beacon`).
    pub beacon_commit: Hash,
    /// The height of the block that made that commitment.
    pub beacon_height: u64,
}
codec_struct!(Validator {
    stake,
    unlocking: vec(MAX_UNLOCKS),
    jailed_until,
    missed_streak,
    beacon_commit,
    beacon_height
});

impl Validator {
    /// Bonded plus unbonding stake (all of it counts toward supply).
    pub fn total(&self) -> Amount {
        self.unlocking.iter().fold(self.stake, |a, u| a.checked_add(u.amount).expect("bounded"))
    }
}

/// Bonds `amount` from the sender's balance.
pub(crate) fn bond(state: &mut State, cx: &mut Ctx, who: AccountId, amount: Amount) -> Result<(), TxError> {
    if amount.is_zero() {
        return Err(TxError::Invalid("bond amount must be positive".into()));
    }
    state.lock(&who, Bucket::Staked, amount)?;
    let mut v = state.validators.get(&who).cloned().unwrap_or_default();
    v.stake = v.stake.checked_add(amount).expect("bounded");
    state.validators.insert(who, v);
    cx.emit(Event::Bonded { validator: who, amount });
    Ok(())
}

/// Starts unbonding `amount`; it returns to the balance after `unbonding_blocks`.
pub(crate) fn unbond(state: &mut State, cx: &mut Ctx, who: AccountId, amount: Amount) -> Result<(), TxError> {
    let release_height = cx.height + Params::u64(state.params().unbonding_blocks);
    let v = state.validators.get(&who).ok_or_else(|| TxError::not_found("validator", who))?;
    if amount.is_zero() || amount > v.stake {
        return Err(TxError::Invalid(format!("can unbond 1..={} , asked for {amount}", v.stake)));
    }
    if v.unlocking.len() >= MAX_UNLOCKS {
        return Err(TxError::InvalidState(format!("at most {MAX_UNLOCKS} unbondings may be pending")));
    }
    let v = state.validators.get_mut(&who).expect("checked");
    v.stake = v.stake.checked_sub(amount).expect("checked");
    v.unlocking.push(Unlock { amount, release_height });
    state.schedule(release_height, Timer::Release(who));
    cx.emit(Event::Unlocking { owner: who, amount, release_height });
    Ok(())
}

/// Returns matured unbondings of `who` (validator stake and provider collateral) to its
/// balance. Runs from the `Release` timer.
pub(crate) fn release(state: &mut State, cx: &mut Ctx, who: AccountId) {
    let mut total_stake = Amount::ZERO;
    if let Some(v) = state.validators.get_mut(&who) {
        let (due, keep): (Vec<Unlock>, Vec<Unlock>) =
            std::mem::take(&mut v.unlocking).into_iter().partition(|u| u.release_height <= cx.height);
        v.unlocking = keep;
        total_stake = due.iter().fold(Amount::ZERO, |a, u| a.checked_add(u.amount).expect("bounded"));
        if v.stake.is_zero() && v.unlocking.is_empty() {
            state.validators.remove(&who);
        }
    }
    let mut total_collateral = Amount::ZERO;
    if let Some(p) = state.providers.get_mut(&who) {
        let (due, keep): (Vec<Unlock>, Vec<Unlock>) =
            std::mem::take(&mut p.unlocking).into_iter().partition(|u| u.release_height <= cx.height);
        p.unlocking = keep;
        total_collateral = due.iter().fold(Amount::ZERO, |a, u| a.checked_add(u.amount).expect("bounded"));
    }
    state.pay_out(Bucket::Staked, &who, total_stake);
    state.pay_out(Bucket::Collateral, &who, total_collateral);
    let amount = total_stake.checked_add(total_collateral).expect("bounded");
    if !amount.is_zero() {
        cx.emit(Event::Released { owner: who, amount });
    }
}

/// The committee that `state` elects now: top `committee_size` unjailed validators with at
/// least `min_validator_stake`, by stake descending then key ascending.
pub fn elect_committee(state: &State, height: u64) -> Vec<AccountId> {
    let p = state.params();
    let mut candidates: Vec<(Amount, AccountId)> = state
        .validators
        .iter()
        .filter(|(_, v)| v.jailed_until <= height && v.stake.0 >= p.min_validator_stake && !v.stake.is_zero())
        .map(|(k, v)| (v.stake, *k))
        .collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    candidates.truncate(Params::u64(p.committee_size) as usize);
    candidates.into_iter().map(|(_, k)| k).collect()
}

/// After the last block of an epoch, installs the next epoch's committee: the first block of
/// an epoch is produced by that epoch's committee, so it must be settled by the block before.
pub(crate) fn maybe_rotate_committee(state: &mut State, cx: &mut Ctx) {
    let len = state.params().blocks_per_epoch();
    let next = cx.height + 1;
    if !next.is_multiple_of(len) {
        return;
    }
    let members = elect_committee(state, next);
    let epoch = next / len;
    let m = state.meta_mut();
    m.epoch = epoch;
    // Keep the old committee if nobody qualifies: a chain without validators cannot continue.
    if !members.is_empty() && m.committee != members {
        m.committee = members.clone();
        cx.emit(Event::CommitteeChanged { epoch, members });
    }
}

/// Records who kept its proposal slots: `missed` are the leaders of the views consensus
/// nullified since the parent block (reported by the chain layer from the block's consensus
/// context; each counted once), and the block's proposer made its slot. A validator whose
/// misses in a row reach `miss_jail_streak` is jailed for `jail_blocks`, so the next committee
/// is elected without it: a proposer whose blocks its peers cannot accept costs the chain its
/// slots for at most the rest of an epoch, and costs itself its seat (and the committee's
/// audit fees). Nothing is burned: an honest validator that was down misses slots too.
pub(crate) fn record_proposals(state: &mut State, cx: &mut Ctx, missed: &[AccountId]) {
    let limit = Params::u64(state.params().miss_jail_streak);
    let jail = Params::u64(state.params().jail_blocks);
    let missed: BTreeSet<AccountId> = missed.iter().copied().filter(|m| *m != cx.proposer).collect();
    for who in missed {
        let Some(v) = state.validators.get_mut(&who) else { continue };
        v.missed_streak = v.missed_streak.saturating_add(1);
        if limit > 0 && u64::from(v.missed_streak) >= limit {
            v.missed_streak = 0;
            v.jailed_until = v.jailed_until.max(cx.height.saturating_add(jail));
            let (missed, jailed_until) = (limit, v.jailed_until);
            cx.emit(Event::ValidatorJailed { validator: who, missed, jailed_until });
        }
    }
    if let Some(v) = state.validators.get_mut(&cx.proposer)
        && v.missed_streak != 0
    {
        v.missed_streak = 0;
    }
}

/// Records the proposer's commitment to the randomness it reveals in its next block.
pub(crate) fn record_beacon_commit(state: &mut State, cx: &Ctx, commit: Hash) {
    if let Some(v) = state.validators.get_mut(&cx.proposer) {
        v.beacon_commit = commit;
        v.beacon_height = cx.height;
    }
}

/// Applies a consensus-fault penalty: burns a share of the offender's bonded stake and jails
/// it. A fault is punished once per (offender, epoch, view).
pub(crate) fn punish_equivocation(state: &mut State, cx: &mut Ctx, m: &Misbehavior) {
    let key = (m.offender, (m.epoch, m.view));
    if state.evidence.contains(&key) {
        return;
    }
    state.evidence.insert(key, Present);
    let bps = Params::u64(state.params().equivocation_slash_bps);
    let jailed_until = cx.height + Params::u64(state.params().jail_blocks);
    let Some(v) = state.validators.get_mut(&m.offender) else { return };
    let amount = v.stake.bps(bps);
    v.stake = v.stake.checked_sub(amount).expect("a share of it");
    v.jailed_until = v.jailed_until.max(jailed_until);
    state.burn(Bucket::Staked, amount);
    cx.emit(Event::ValidatorSlashed { validator: m.offender, amount, jailed_until });
}
