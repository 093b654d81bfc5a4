//! Attacks on governance (issue 13, part 7): flash stake, short votes, and a bare majority
//! weakening the protocol. Each succeeded before.

use super::harness::*;
use crate::events::Event;
use crate::params::Params;
use agora_core::Amount;
use agora_core::tx::{ParamChange, TxPayload};

fn propose(c: &mut TestChain, who: &str, name: &str, value: u128) -> u64 {
    c.ok(
        who,
        TxPayload::Propose {
            changes: vec![ParamChange { name: name.into(), value }],
            description: "x".into(),
        },
    );
    *c.state.proposals().next_back().unwrap().0
}

fn closed(c: &TestChain) -> Option<bool> {
    c.history().iter().find_map(|e| match e {
        Event::ProposalClosed { passed, .. } => Some(*passed),
        _ => None,
    })
}

#[test]
fn stake_bonded_after_a_proposal_opened_cannot_vote_on_it() {
    // Before, ballots were weighed by the stake at the close: a whale could bond just before
    // the deadline, outvote everyone, and unbond.
    let mut c = TestChain::with_params(Params { gov_voting_ms: 10_000, ..Params::default() });
    let pid = propose(&mut c, "v0", "min_fee", 20);
    c.ok("u0", TxPayload::Bond { amount: Amount(5_000_000) });
    let err = c.fails("u0", TxPayload::Vote { proposal: pid, approve: true });
    assert!(err.contains("bonded when the proposal opened"), "{err}");
    // Stake unbonded after the opening no longer counts either: v1's yes weighs nothing.
    c.ok("v1", TxPayload::Vote { proposal: pid, approve: true });
    c.ok("v1", TxPayload::Unbond { amount: Amount(100_000) });
    c.ok("v2", TxPayload::Vote { proposal: pid, approve: false });
    c.advance(12);
    assert_eq!(closed(&c), Some(false), "no beats an unbonded yes");
    assert_eq!(c.state.params().min_fee, 10);
}

#[test]
fn voting_lasts_wall_time_not_blocks() {
    // Thirty blocks were the whole voting period: well under a minute on a fast chain.
    let mut c = TestChain::new();
    let pid = propose(&mut c, "v0", "min_fee", 20);
    let end = c.state.proposal(pid).unwrap().end_ms;
    assert_eq!(end - c.now_ms(), 3 * 86_400_000, "three days of block time by default");
    c.advance(31);
    assert_eq!(closed(&c), None, "still open after 31 blocks");
}

#[test]
fn weakening_a_security_parameter_needs_two_thirds_of_all_stake() {
    let mut c = TestChain::with_params(Params { gov_voting_ms: 5_000, ..Params::default() });
    // Two of four equal validators: a quorum and a majority of the votes, but only half the
    // stake. Enough for the cancellation fee, not for the slash.
    let fee = propose(&mut c, "v0", "cancel_fee_bps", 2_000);
    let slash = propose(&mut c, "v0", "slash_multiple", 0);
    for (who, p) in [("v0", fee), ("v1", fee), ("v0", slash), ("v1", slash)] {
        c.ok(who, TxPayload::Vote { proposal: p, approve: true });
    }
    c.advance(6);
    assert_eq!(c.state.params().cancel_fee_bps, 2_000);
    assert_eq!(c.state.params().slash_multiple, 10, "half the stake cannot remove the slash");
    let slash = propose(&mut c, "v0", "slash_multiple", 0);
    for who in ["v0", "v1", "v2"] {
        c.ok(who, TxPayload::Vote { proposal: slash, approve: true });
    }
    c.advance(6);
    assert_eq!(c.state.params().slash_multiple, 0, "three quarters of the stake can");
}
