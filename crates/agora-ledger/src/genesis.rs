//! Genesis: the initial allocation, validator set and parameters of a chain.

use crate::params::{ParamError, Params};
use crate::staking::{self, Validator};
use crate::state::State;
use agora_core::{AccountId, Amount};
use serde::{Deserialize, Serialize};

/// An initial balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisAccount {
    /// Account.
    pub account: AccountId,
    /// Spendable balance.
    pub balance: Amount,
}

/// An initial validator with bonded stake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisValidator {
    /// Validator account (also its consensus key).
    pub account: AccountId,
    /// Bonded stake.
    pub stake: Amount,
}

/// Everything needed to create the first state. Written as TOML or JSON by `agora devnet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Chain id, bound into every signature.
    pub chain_id: String,
    /// Unix ms of the genesis block; the first block must not be earlier.
    pub genesis_time_ms: u64,
    /// Initial balances.
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
    /// Initial validators.
    pub validators: Vec<GenesisValidator>,
    /// Protocol parameters (defaults for any left out).
    #[serde(default)]
    pub params: Params,
}

/// Why a genesis description was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// A parameter is out of range.
    #[error("genesis parameters: {0}")]
    Params(#[from] ParamError),
    /// The same account appears twice.
    #[error("account {0} is listed twice")]
    Duplicate(AccountId),
    /// Nothing to run consensus with.
    #[error("genesis needs at least one validator with stake ≥ min_validator_stake")]
    NoValidators,
    /// Total supply does not fit.
    #[error("total genesis supply overflows")]
    Overflow,
    /// Bad chain id.
    #[error("chain id must be 1-64 characters of a-z, 0-9 and '-'")]
    ChainId,
}

impl Genesis {
    /// Builds the state at height 0. Every entry is marked changed, so the first
    /// [`State::take_writes`] returns the full genesis state for the store.
    pub fn build(&self) -> Result<State, GenesisError> {
        let id_ok = !self.chain_id.is_empty()
            && self.chain_id.len() <= 64
            && self.chain_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(GenesisError::ChainId);
        }
        self.params.validate()?;
        let mut state = State::empty(&self.chain_id, self.params.clone());
        let mut seen = std::collections::BTreeSet::new();
        let mut minted = Amount::ZERO;
        for a in &self.accounts {
            if !seen.insert(a.account) {
                return Err(GenesisError::Duplicate(a.account));
            }
            minted = minted.checked_add(a.balance).ok_or(GenesisError::Overflow)?;
            state.meta_mut().supply.minted = minted;
            state.credit(&a.account, a.balance);
        }
        let mut vseen = std::collections::BTreeSet::new();
        for v in &self.validators {
            if !vseen.insert(v.account) {
                return Err(GenesisError::Duplicate(v.account));
            }
            minted = minted.checked_add(v.stake).ok_or(GenesisError::Overflow)?;
            let supply = &mut state.meta_mut().supply;
            supply.minted = minted;
            supply.staked = supply.staked.checked_add(v.stake).ok_or(GenesisError::Overflow)?;
            state.validators.insert(v.account, Validator { stake: v.stake, ..Validator::default() });
        }
        let committee = staking::elect_committee(&state, 0);
        if committee.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        let m = state.meta_mut();
        m.committee = committee;
        m.timestamp_ms = self.genesis_time_ms;
        assert!(state.meta().supply.is_conserved(), "genesis conserves supply");
        Ok(state)
    }
}
