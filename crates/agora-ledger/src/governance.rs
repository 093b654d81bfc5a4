//! Governance: bonded validators propose parameter changes and vote with their stake; a
//! proposal passes at its deadline if enough stake voted (quorum) and yes outweighs no.
//!
//! Capture is made hard three ways (review F20):
//! * **Snapshot.** The electorate and each member's weight are fixed when the proposal opens;
//!   a vote weighs `min(stake then, stake at close)`, so stake bonded (or borrowed) after a
//!   proposal appears cannot vote on it, and stake unbonded since counts no more.
//! * **Time.** Voting lasts `gov_voting_ms` of block time (three days by default), not a
//!   number of blocks that fast blocks would make short.
//! * **Critical parameters.** A proposal that changes any of [`CRITICAL_PARAMS`] passes only
//!   with `gov_critical_bps` (two thirds by default) of the electorate's stake voting yes.

use crate::error::TxError;
use crate::events::Event;
use crate::params::{CRITICAL_PARAMS, Params};
use crate::state::{Ctx, State, Timer};
use agora_core::tx::{MAX_PARAM_CHANGES, ParamChange, ProposalId};
use agora_core::{AccountId, Amount, codec_struct, codec_unit_enum};
use serde::{Deserialize, Serialize};

/// Most votes stored on one proposal (committee members and other stakers).
pub const MAX_VOTES: usize = 1024;

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Accepting votes.
    Open,
    /// Applied.
    Passed,
    /// Not applied.
    Rejected,
}

codec_unit_enum!(ProposalStatus { Open, Passed, Rejected });

/// One elector of a proposal: its bonded stake when the proposal opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Elector {
    /// The staker.
    pub account: AccountId,
    /// Its bonded stake at the proposal's opening.
    pub stake: Amount,
}
codec_struct!(Elector { account, stake });

/// A vote; its weight is the voter's stake at the proposal's opening, or its bonded stake at
/// the close if that is less.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ballot {
    /// Voter.
    pub voter: AccountId,
    /// Yes or no.
    pub approve: bool,
}
codec_struct!(Ballot { voter, approve });

/// A parameter-change proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Proposer.
    pub proposer: AccountId,
    /// Changes applied together if it passes.
    pub changes: Vec<ParamChange>,
    /// Reason given.
    pub description: String,
    /// Voting closes at this block time, unix ms.
    pub end_ms: u64,
    /// Who may vote, with their stake when the proposal opened (the largest stakers, at most
    /// [`MAX_VOTES`]).
    pub electorate: Vec<Elector>,
    /// Votes cast (latest per voter).
    pub ballots: Vec<Ballot>,
    /// Status.
    pub status: ProposalStatus,
    /// Stake for, at close.
    pub yes: Amount,
    /// Stake against, at close.
    pub no: Amount,
}
codec_struct!(Proposal {
    proposer,
    changes: vec(MAX_PARAM_CHANGES),
    description: string(1024),
    end_ms,
    electorate: vec(MAX_VOTES),
    ballots: vec(MAX_VOTES),
    status,
    yes,
    no
});

fn bonded(state: &State, who: &AccountId) -> Amount {
    state.validators.get(who).map_or(Amount::ZERO, |v| v.stake)
}

/// Opens a proposal. Only accounts with bonded stake may propose; every change is checked
/// against the parameter table now (parameters fixed at genesis are refused), so a passed
/// proposal always applies cleanly.
pub(crate) fn propose(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    changes: Vec<ParamChange>,
    description: String,
) -> Result<ProposalId, TxError> {
    if bonded(state, &who).is_zero() {
        return Err(TxError::Unauthorized("only accounts with bonded stake may propose".into()));
    }
    if changes.is_empty() {
        return Err(TxError::Invalid("a proposal needs at least one change".into()));
    }
    for c in &changes {
        Params::check_change(&c.name, c.value).map_err(|e| TxError::Invalid(e.to_string()))?;
    }
    let end_ms = cx.time_ms.saturating_add(Params::u64(state.params().gov_voting_ms));
    let mut electorate: Vec<Elector> = state
        .validators
        .iter()
        .filter(|(_, v)| !v.stake.is_zero())
        .map(|(a, v)| Elector { account: *a, stake: v.stake })
        .collect();
    electorate.sort_by(|a, b| b.stake.cmp(&a.stake).then(a.account.cmp(&b.account)));
    electorate.truncate(MAX_VOTES);
    let id = state.next_id();
    state.proposals.insert(
        id,
        Proposal {
            proposer: who,
            changes,
            description,
            end_ms,
            electorate,
            ballots: vec![],
            status: ProposalStatus::Open,
            yes: Amount::ZERO,
            no: Amount::ZERO,
        },
    );
    state.schedule(end_ms, Timer::CloseProposal(id));
    cx.emit(Event::ProposalCreated { proposal: id, proposer: who, end_ms });
    Ok(id)
}

/// Records (or changes) a vote.
pub(crate) fn vote(
    state: &mut State,
    cx: &mut Ctx,
    who: AccountId,
    id: ProposalId,
    approve: bool,
) -> Result<(), TxError> {
    if bonded(state, &who).is_zero() {
        return Err(TxError::Unauthorized("only accounts with bonded stake may vote".into()));
    }
    let p = state.proposals.get(&id).ok_or_else(|| TxError::not_found("proposal", id))?;
    if p.status != ProposalStatus::Open {
        return Err(TxError::InvalidState("voting has closed".into()));
    }
    if !p.electorate.iter().any(|e| e.account == who) {
        return Err(TxError::Unauthorized(
            "only stake bonded when the proposal opened may vote on it".into(),
        ));
    }
    let existing = p.ballots.iter().position(|b| b.voter == who);
    if existing.is_none() && p.ballots.len() >= MAX_VOTES {
        return Err(TxError::InvalidState("ballot box is full".into()));
    }
    let p = state.proposals.get_mut(&id).expect("checked");
    match existing {
        Some(i) => p.ballots[i].approve = approve,
        None => p.ballots.push(Ballot { voter: who, approve }),
    }
    cx.emit(Event::Voted { proposal: id, voter: who, approve });
    Ok(())
}

/// Runs from the `CloseProposal` timer: tallies each ballot at `min(stake at opening, stake
/// now)` and applies the changes if the quorum is met and yes outweighs no, or, for a
/// proposal touching a critical parameter, if yes reaches `gov_critical_bps` of the
/// electorate.
pub(crate) fn close(state: &mut State, cx: &mut Ctx, id: ProposalId) {
    let Some(p) = state.proposals.get(&id).cloned() else { return };
    if p.status != ProposalStatus::Open {
        return;
    }
    let (mut yes, mut no) = (Amount::ZERO, Amount::ZERO);
    for b in &p.ballots {
        let then = p.electorate.iter().find(|e| e.account == b.voter).map_or(Amount::ZERO, |e| e.stake);
        let w = then.min(bonded(state, &b.voter));
        let side = if b.approve { &mut yes } else { &mut no };
        *side = side.checked_add(w).expect("bounded");
    }
    let total = p.electorate.iter().fold(Amount::ZERO, |a, e| a.checked_add(e.stake).expect("bounded"));
    let voted = yes.checked_add(no).expect("bounded");
    let params = state.params();
    let critical = p.changes.iter().any(|c| CRITICAL_PARAMS.contains(&c.name.as_str()));
    let passed = !total.is_zero()
        && voted >= total.bps(Params::u64(params.gov_quorum_bps))
        && yes > no
        && (!critical || yes >= total.bps(Params::u64(params.gov_critical_bps)));
    if passed {
        let params = &mut state.meta_mut().params;
        for c in &p.changes {
            // Checked at proposal time against the same static table.
            params.set(&c.name, c.value).expect("validated when proposed");
        }
    }
    let pr = state.proposals.get_mut(&id).expect("exists");
    pr.status = if passed { ProposalStatus::Passed } else { ProposalStatus::Rejected };
    pr.yes = yes;
    pr.no = no;
    cx.emit(Event::ProposalClosed { proposal: id, passed, yes, no });
}
