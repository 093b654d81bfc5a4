//! The provider registry: who sells compute, on what hardware, where, at what carbon
//! intensity, backed by how much collateral — and whether it is still alive.

use crate::error::TxError;
use crate::events::{Event, LeaseFailure};
use crate::params::Params;
use crate::staking::{MAX_UNLOCKS, Unlock};
use crate::state::{Bucket, Ctx, State, Timer};
use agora_core::tx::{LeaseId, ProviderProfile};
use agora_core::{AccountId, Amount, Coord, codec_struct};
use serde::{Deserialize, Serialize};

/// Most leases a provider may run at once (bounds the stored list).
pub const MAX_RUNNING_LEASES: usize = 256;

/// A provider's audit record, which sets how often it is audited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trust {
    /// Consecutive clean audits of full strength (BOINC's CV counter); reset by any failure.
    /// An audit counts in proportion to its sample against a full one ([`Trust::passed`]).
    pub clean_streak: u64,
    /// Part of the next streak step earned by smaller clean audits, ppm of a full audit.
    pub clean_credit_ppm: u64,
    /// Leases settled and paid.
    pub leases_settled: u64,
    /// Leases failed (deadline, vanished, fraud).
    pub leases_failed: u64,
    /// Audits passed.
    pub audits_passed: u64,
    /// Audits inconclusive.
    pub audits_inconclusive: u64,
    /// Confirmed frauds.
    pub frauds: u64,
    /// Upcoming leases that will be audited with certainty.
    pub forced_audits: u64,
}
codec_struct!(Trust {
    clean_streak,
    clean_credit_ppm,
    leases_settled,
    leases_failed,
    audits_passed,
    audits_inconclusive,
    frauds,
    forced_audits
});

impl Trust {
    /// Notes a clean audit that sampled `sampled` items (or receipts) where a full audit samples
    /// `full`: it adds `sampled / full` of a step to the streak (at most one). A streak step is
    /// then worth what a full audit's detection is worth: ten clean one-receipt windows do not
    /// buy the reduced audit rate that ten clean 90-item samples do, so a provider that alters
    /// a few answers cannot earn trust on many tiny windows.
    pub fn passed(&mut self, sampled: u64, full: u64) {
        const STEP: u64 = 1_000_000;
        let credit = sampled.saturating_mul(STEP).div_ceil(full.max(1)).min(STEP);
        self.clean_credit_ppm += credit;
        self.clean_streak += self.clean_credit_ppm / STEP;
        self.clean_credit_ppm %= STEP;
        self.audits_passed += 1;
    }

    /// Ends the clean streak (a failure, or an audit without a verdict).
    pub fn reset_streak(&mut self) {
        (self.clean_streak, self.clean_credit_ppm) = (0, 0);
    }
}

/// A registered provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    /// Self-description.
    pub profile: ProviderProfile,
    /// Collateral backing its leases (slashable).
    pub collateral: Amount,
    /// Collateral being withdrawn.
    pub unlocking: Vec<Unlock>,
    /// Audit record.
    pub trust: Trust,
    /// Barred from the market until this height (after fraud).
    pub ejected_until: u64,
    /// Height of the last heartbeat or commitment.
    pub last_seen: u64,
    /// Whether it is live (heartbeats arriving).
    pub active: bool,
    /// Leases it is running now.
    pub running: Vec<LeaseId>,
    /// Total paid to it.
    pub earned: Amount,
    /// Collateral reserved by its unsettled leases (running, committed or audited):
    /// `slash_multiple` × each lease's value. It cannot be withdrawn, and a lease is matched
    /// only to a provider whose unreserved collateral covers the new lease's reservation.
    pub reserved: Amount,
}
codec_struct!(Provider {
    profile,
    collateral,
    unlocking: vec(MAX_UNLOCKS),
    trust,
    ejected_until,
    last_seen,
    active,
    running: vec(MAX_RUNNING_LEASES),
    earned,
    reserved
});

impl Provider {
    /// Collateral not reserved by unsettled leases: what a new lease may reserve.
    pub fn free_collateral(&self) -> Amount {
        self.collateral.saturating_sub(self.reserved)
    }

    /// Locked plus withdrawing collateral.
    pub fn total_collateral(&self) -> Amount {
        self.unlocking.iter().fold(self.collateral, |a, u| a.checked_add(u.amount).expect("bounded"))
    }

    /// Takes up to `due` from its collateral, locked first and then what is still unlocking
    /// (newest first), so a withdrawal started after the work cannot carry a penalty away.
    /// Returns what was taken; the caller moves it out of the collateral bucket.
    pub(crate) fn take_collateral(&mut self, due: Amount) -> Amount {
        let due = due.min(self.total_collateral());
        let from_locked = due.min(self.collateral);
        self.collateral = self.collateral.checked_sub(from_locked).expect("min");
        let mut left = due.checked_sub(from_locked).expect("min");
        for u in self.unlocking.iter_mut().rev() {
            let take = left.min(u.amount);
            u.amount = u.amount.checked_sub(take).expect("min");
            left = left.checked_sub(take).expect("min");
        }
        due
    }

    /// Whether it may take new leases and audits at `height`.
    pub fn can_work(&self, height: u64) -> bool {
        self.active && self.ejected_until <= height
    }
}

fn check_profile(p: &ProviderProfile, params: &Params) -> Result<(), TxError> {
    if p.classes.is_empty() {
        return Err(TxError::Invalid("a provider must offer at least one resource class".into()));
    }
    if p.kinds.is_empty() {
        return Err(TxError::Invalid("a provider must support at least one job kind".into()));
    }
    crate::endpoint::check(&p.endpoint, params.allow_private_endpoints != 0).map_err(TxError::Invalid)
}

fn watch_liveness(state: &mut State, cx: &Ctx, who: AccountId) {
    let at = cx.height + Params::u64(state.params().liveness_blocks);
    state.schedule(at, Timer::Liveness(who));
}

/// Registers the sender as a provider, locking `collateral`.
pub(crate) fn register(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    profile: ProviderProfile,
    collateral: Amount,
) -> Result<(), TxError> {
    check_profile(&profile, state.params())?;
    if state.providers.contains(&who) {
        return Err(TxError::InvalidState("already registered; use update_provider".into()));
    }
    let min = Amount(state.params().min_provider_collateral);
    if collateral < min {
        return Err(TxError::Invalid(format!("collateral {collateral} is below the minimum {min}")));
    }
    state.lock(&who, Bucket::Collateral, collateral)?;
    state.providers.insert(
        who,
        Provider {
            profile,
            collateral,
            unlocking: vec![],
            trust: Trust::default(),
            ejected_until: 0,
            last_seen: cx.height,
            active: true,
            running: vec![],
            earned: Amount::ZERO,
            reserved: Amount::ZERO,
        },
    );
    watch_liveness(state, cx, who);
    cx.emit(Event::ProviderRegistered { provider: who });
    Ok(())
}

/// Replaces the sender's profile.
pub(crate) fn update(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    profile: ProviderProfile,
) -> Result<(), TxError> {
    check_profile(&profile, state.params())?;
    let p = state.providers.get_mut(&who).ok_or_else(|| TxError::not_found("provider", who))?;
    p.profile = profile;
    cx.emit(Event::ProviderRegistered { provider: who });
    Ok(())
}

/// Adds collateral from the sender's balance.
pub(crate) fn add_collateral(state: &mut State, who: AccountId, amount: Amount) -> Result<(), TxError> {
    if !state.providers.contains(&who) {
        return Err(TxError::not_found("provider", who));
    }
    state.lock(&who, Bucket::Collateral, amount)?;
    let p = state.providers.get_mut(&who).expect("checked");
    p.collateral = p.collateral.checked_add(amount).expect("bounded");
    Ok(())
}

/// Starts withdrawing collateral. What unsettled leases reserve stays locked (review F4: a
/// cheater that learns it is audited must not be able to walk away with the slash), and while
/// any lease is unsettled the minimum stays locked too.
pub(crate) fn withdraw_collateral(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    amount: Amount,
) -> Result<(), TxError> {
    let min = Amount(state.params().min_provider_collateral);
    let release_height = cx.height + Params::u64(state.params().unbonding_blocks);
    let p = state.providers.get(&who).ok_or_else(|| TxError::not_found("provider", who))?;
    let rest = p
        .collateral
        .checked_sub(amount)
        .ok_or(TxError::InsufficientFunds { need: amount, have: p.collateral })?;
    if amount.is_zero() {
        return Err(TxError::Invalid("withdrawal must be positive".into()));
    }
    let unsettled = !p.running.is_empty() || !p.reserved.is_zero();
    let floor = if unsettled { p.reserved.max(min) } else { Amount::ZERO };
    if rest < floor {
        return Err(TxError::InvalidState(format!(
            "unsettled leases reserve {} of your collateral (at least {min} stays locked while any is unsettled): withdraw at most {} now, or wait until they settle",
            p.reserved,
            p.collateral.saturating_sub(floor)
        )));
    }
    if p.unlocking.len() >= MAX_UNLOCKS {
        return Err(TxError::InvalidState(format!("at most {MAX_UNLOCKS} withdrawals may be pending")));
    }
    let p = state.providers.get_mut(&who).expect("checked");
    p.collateral = rest;
    p.unlocking.push(Unlock { amount, release_height });
    state.schedule(release_height, Timer::Release(who));
    cx.emit(Event::Unlocking { owner: who, amount, release_height });
    Ok(())
}

/// Records a heartbeat with the provider's current coordinate.
pub(crate) fn heartbeat(state: &mut State, who: AccountId, coord: Coord) -> Result<(), TxError> {
    let p = state.providers.get_mut(&who).ok_or_else(|| TxError::not_found("provider", who))?;
    p.profile.coord = coord;
    Ok(())
}

/// Records a sign of life: any transaction a provider signs counts. Reactivates a provider
/// that had been marked inactive.
pub(crate) fn saw(state: &mut State, cx: &Ctx, who: AccountId) {
    let Some(p) = state.providers.get(&who) else { return };
    if p.last_seen == cx.height && p.active {
        return;
    }
    let was_active = p.active;
    let p = state.providers.get_mut(&who).expect("checked");
    p.last_seen = cx.height;
    p.active = true;
    // While active, the pending liveness check re-arms itself; re-arm only after a lapse.
    if !was_active {
        watch_liveness(state, cx, who);
    }
}

/// Runs from the `Liveness` timer: a provider silent for `liveness_blocks` becomes inactive,
/// its asks close and its running leases fail (and are re-matched).
pub(crate) fn check_liveness(state: &mut State, cx: &mut Ctx, who: AccountId) {
    let window = Params::u64(state.params().liveness_blocks);
    let Some(p) = state.providers.get(&who) else { return };
    if !p.active {
        return;
    }
    if p.last_seen + window > cx.height {
        // Seen since this check was armed: check again when the window would lapse.
        let at = p.last_seen + window;
        state.schedule(at, Timer::Liveness(who));
        return;
    }
    let running = p.running.clone();
    state.providers.get_mut(&who).expect("exists").active = false;
    cx.emit(Event::ProviderInactive { provider: who });
    crate::market::close_asks_of(state, cx, who);
    for lease in running {
        crate::leases::fail(state, cx, lease, LeaseFailure::ProviderVanished);
    }
}

#[cfg(test)]
mod trust_tests {
    use super::Trust;

    #[test]
    fn a_streak_step_takes_a_full_audits_worth_of_clean_samples() {
        let mut t = Trust::default();
        for _ in 0..89 {
            t.passed(1, 90);
        }
        assert_eq!((t.clean_streak, t.audits_passed), (0, 89), "89 one-receipt windows");
        t.passed(1, 90);
        assert_eq!(t.clean_streak, 1, "the 90th completes a step");
        assert!(t.clean_credit_ppm < 1_000_000 / 90, "rounding leaves less than a receipt's share");
        t.passed(90, 90);
        t.passed(4_000, 90);
        assert_eq!(t.clean_streak, 3, "a full audit is one step, and a larger one no more");
        t.passed(45, 90);
        t.reset_streak();
        assert_eq!((t.clean_streak, t.clean_credit_ppm), (0, 0));
        t.passed(1, 0);
        assert_eq!(t.clean_streak, 1, "a kind without a sample size counts each audit whole");
    }
}
