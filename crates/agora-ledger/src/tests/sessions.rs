//! Serving sessions: matching with collateral, windows paid only after their audit window,
//! and receipts as fraud proofs against a provider that leaves them out or alters them.

use super::harness::*;
use crate::audits::{AuditSubject, AuditTarget};
use crate::events::{AuditOutcome, Event};
use crate::params::Params;
use crate::sessions::{SessionStatus, WindowStatus};
use agora_core::merkle::MerkleTree;
use agora_core::session::{ServeKind, ServeRates, ServeReceipt, SessionTerms, Usage, WindowCommitment};
use agora_core::tx::{ProviderProfile, TxPayload};
use agora_core::{AccountId, Amount, Hash};
use proptest::prelude::*;
use std::collections::BTreeMap;

const GRACE_MS: u64 = 5_000;
const CHALLENGE_BLOCKS: u64 = 5;

fn params() -> Params {
    Params {
        audit_window_blocks: 3,
        session_min_ms: 1_000,
        session_commit_grace_ms: u128::from(GRACE_MS),
        challenge_blocks: u128::from(CHALLENGE_BLOCKS),
        ..Params::default()
    }
}

fn floor() -> ServeRates {
    ServeRates { prompt_per_1k: Amount(10), completion_per_1k: Amount(20), per_item: Amount::ZERO }
}

fn serving(floor: Option<ServeRates>) -> ProviderProfile {
    ProviderProfile { serve: floor, ..profile("local", 100) }
}

/// A chain whose providers p0–p3 serve at [`floor`] with 1,000,000 collateral each.
fn chain() -> TestChain {
    chain_with(params())
}

/// [`chain`] with `params`.
fn chain_with(params: Params) -> TestChain {
    let mut c = TestChain::with_params(params);
    for p in ["p0", "p1", "p2", "p3"] {
        c.ok(
            p,
            TxPayload::RegisterProvider { profile: serving(Some(floor())), collateral: Amount(1_000_000) },
        );
    }
    c
}

/// Chat terms at twice the floor, with `escrow` over `providers` providers for a minute.
fn terms(escrow: u128, providers: u8) -> SessionTerms {
    SessionTerms {
        model: Hash::of(b"smollm2-135m"),
        kind: ServeKind::Chat,
        class: "cpu.x86_64".parse().unwrap(),
        rates: ServeRates {
            prompt_per_1k: Amount(20),
            completion_per_1k: Amount(40),
            per_item: Amount::ZERO,
        },
        escrow: Amount(escrow),
        duration_ms: 60_000,
        providers,
        ttft_ms: 100,
        client: key("u0").public(),
        sources: vec![],
    }
}

/// Opens a session of u0 and returns its id.
fn open(c: &mut TestChain, terms: SessionTerms) -> u64 {
    let out = c.ok("u0", TxPayload::OpenSession { terms });
    all_events(out)
        .iter()
        .find_map(|e| match e {
            Event::SessionOpened { session, .. } => Some(*session),
            _ => None,
        })
        .expect("opened")
}

fn members(c: &TestChain, session: u64) -> Vec<AccountId> {
    c.state.session(session).unwrap().serving().map(|m| m.provider).collect()
}

/// The name of a provider among p0–p3.
fn name(who: &AccountId) -> &'static str {
    ["p0", "p1", "p2", "p3"].into_iter().find(|n| id(n) == *who).expect("a provider")
}

/// `n` receipts continuing after `before` (the receipt before them, if any): 1,000 prompt and
/// 500 completion tokens each.
fn receipts(session: u64, before: Option<&ServeReceipt>, n: u64) -> Vec<ServeReceipt> {
    let (mut seq, mut total) = before.map_or((0, Usage::default()), |r| (r.seq + 1, r.total));
    (0..n)
        .map(|_| {
            let usage = Usage { prompt_tokens: 1_000, completion_tokens: 500, items: 0 };
            total = total.checked_add(&usage).unwrap();
            let r = ServeReceipt {
                session,
                seq,
                request: Hash::tagged("request", &[&seq.to_le_bytes()]),
                output: Hash::tagged("output", &[&seq.to_le_bytes()]),
                usage,
                total,
                fingerprints: Hash::tagged("fingerprints", &[&seq.to_le_bytes()]),
                first_token_ms: 1,
                last_token_ms: 2,
            };
            seq += 1;
            r
        })
        .collect()
}

fn tree(receipts: &[ServeReceipt]) -> MerkleTree {
    MerkleTree::new(receipts.iter().map(ServeReceipt::leaf).collect())
}

/// The honest window over `receipts`.
fn window(receipts: &[ServeReceipt]) -> WindowCommitment {
    WindowCommitment {
        session: receipts[0].session,
        first_seq: receipts[0].seq,
        receipts: receipts.len() as u32,
        root: tree(receipts).root(),
        total: receipts.last().unwrap().total,
    }
}

fn challenge(r: &ServeReceipt, provider: &str) -> TxPayload {
    TxPayload::ChallengeReceipt { receipt: r.clone().sign(CHAIN, &key(provider)) }
}

/// Blocks until block time passes `ms`.
fn advance_past(c: &mut TestChain, ms: u64) {
    while c.now_ms() <= ms {
        c.advance(1);
    }
}

/// Blocks until `session` takes no more windows.
fn advance_past_grace(c: &mut TestChain, session: u64) {
    let deadline = c.state.session(session).unwrap().commit_deadline_ms(c.state.params());
    advance_past(c, deadline);
}

/// The audit the draw opened on `provider`'s window from `first_seq`, if any.
fn window_audit(c: &TestChain, session: u64, provider: &str, first_seq: u64) -> Option<u64> {
    c.state.window(&(session, id(provider), first_seq)).and_then(|w| w.audit)
}

fn conserved(c: &TestChain) {
    let s = c.state.meta().supply.clone();
    assert!(s.is_conserved());
    assert_eq!(c.state.recount_supply(), s);
}

#[test]
fn a_session_is_matched_with_collateral_and_its_windows_are_paid_only_after_the_audit_window() {
    let mut c = chain();
    let session = open(&mut c, terms(100_000, 2));
    let joined = members(&c, session);
    assert_eq!(joined.len(), 2, "matched in the block that opened it");
    let reserve = Amount(50_000 * 10);
    for p in &joined {
        assert_eq!(c.state.provider(p).unwrap().reserved, reserve, "slash_multiple × its share");
    }
    let p = name(&joined[0]);
    let rs = receipts(session, None, 4);
    let before = c.state.balance(&id(p));
    c.ok(p, TxPayload::CommitWindow { window: window(&rs) });
    // 4,000 prompt tokens at 20 per 1k, 2,000 completion tokens at 40 per 1k.
    let charge = Amount(80 + 80);
    assert_eq!(c.state.session(session).unwrap().committed, charge);
    // A provider with no clean audits yet has every window audited, and is paid only once
    // the audit has passed and the audit window has closed.
    c.advance(1);
    let audit = window_audit(&c, session, p, 0).expect("a new provider's window is audited");
    assert_eq!(c.state.audit(audit).unwrap().items, vec![0, 1, 2, 3], "all of a small window");
    let drawn = c.state.window(&(session, id(p), 0)).unwrap().audit_ppm;
    assert_eq!(drawn, 1_000_000, "the window records the chance the draw gave it");
    c.advance(1);
    assert_eq!(c.state.balance(&id(p)), before.checked_sub(Amount(10)).unwrap(), "not paid yet (fee only)");
    settle_audit(&mut c, audit, true);
    c.advance(1);
    assert!(c.history().iter().any(|e| matches!(e, Event::WindowPaid { amount, .. } if *amount == charge)));
    assert_eq!(c.state.balance(&id(p)), before.checked_sub(Amount(10)).unwrap().checked_add(charge).unwrap());
    // Four sampled receipts earn 4/90 of a streak step: tiny windows do not buy trust fast.
    let t = &c.state.provider(&id(p)).unwrap().trust;
    assert_eq!(
        (t.audits_passed, t.clean_streak, t.clean_credit_ppm),
        (1, 0, (4 * 1_000_000u64).div_ceil(90))
    );
    conserved(&c);

    // The next window continues the running total; at the end the rest returns to u0.
    let more = receipts(session, rs.last(), 2);
    c.ok(p, TxPayload::CommitWindow { window: window(&more) });
    c.advance(1);
    let audit = window_audit(&c, session, p, 4).unwrap();
    settle_audit(&mut c, audit, true);
    let u0 = c.state.balance(&id("u0"));
    advance_past_grace(&mut c, session);
    let s = c.state.session(session).unwrap();
    assert_eq!(s.status, SessionStatus::Closed);
    assert!(s.escrow.is_zero() && s.committed.is_zero());
    assert_eq!(s.paid, Amount(160 + 80), "what the session cost");
    assert_eq!(c.state.balance(&id("u0")), u0.checked_add(Amount(100_000 - 160 - 80)).unwrap());
    // Collateral backs the receipts as long as they can be challenged, then it is free.
    assert_eq!(c.state.provider(&id(p)).unwrap().reserved, reserve);
    let end = s.challenge_deadline_ms(c.state.params());
    advance_past(&mut c, end);
    let r = rs[0].clone();
    assert_eq!(c.state.session(session).unwrap().status, SessionStatus::Final);
    for p in &joined {
        assert!(c.state.provider(p).unwrap().reserved.is_zero(), "released after the challenge period");
    }
    assert!(c.fails("u0", challenge(&r, p)).contains("challenge period is over"));
    conserved(&c);
}

#[test]
fn only_providers_that_accept_the_rates_and_can_back_them_are_matched() {
    let mut c = TestChain::with_params(params());
    let dear = ServeRates { completion_per_1k: Amount(1_000), ..floor() };
    c.ok("p0", TxPayload::RegisterProvider { profile: serving(None), collateral: Amount(1_000_000) });
    c.ok("p1", TxPayload::RegisterProvider { profile: serving(Some(dear)), collateral: Amount(1_000_000) });
    c.ok("p2", TxPayload::RegisterProvider { profile: serving(Some(floor())), collateral: Amount(1_000) });
    c.ok(
        "p3",
        TxPayload::RegisterProvider { profile: serving(Some(floor())), collateral: Amount(1_000_000) },
    );
    let session = open(&mut c, terms(100_000, 3));
    assert_eq!(
        members(&c, session),
        vec![id("p3")],
        "p0 serves nothing, p1 is dearer, p2 cannot back 333,330"
    );
    // The empty places are looked for again, backing off, never twice for the same provider.
    c.ok("p2", TxPayload::AddCollateral { amount: Amount(1_000_000) });
    c.advance(4);
    assert_eq!(members(&c, session), vec![id("p3"), id("p2")]);
    assert!(
        c.fails("p1", TxPayload::CommitWindow { window: window(&receipts(session, None, 1)) })
            .contains("does not serve")
    );
}

#[test]
fn a_window_cannot_charge_beyond_the_providers_share_or_break_its_receipt_chain() {
    let mut c = chain();
    let session = open(&mut c, terms(1_000, 2));
    let p = name(&members(&c, session)[0]);
    let rs = receipts(session, None, 5);
    // 5 × (20 + 20) = 200 ≤ 500 (its share of 1,000); 20 windows' worth would not be.
    let e = c.fails(p, TxPayload::CommitWindow { window: window(&receipts(session, None, 20)) });
    assert!(e.contains("exceeds"), "{e}");
    let mut gap = window(&rs[1..]);
    gap.first_seq = 1;
    assert!(c.fails(p, TxPayload::CommitWindow { window: gap }).contains("starts at receipt 0"));
    c.ok(p, TxPayload::CommitWindow { window: window(&rs[..3]) });
    let mut down = window(&rs[3..]);
    down.total = Usage::default();
    assert!(c.fails(p, TxPayload::CommitWindow { window: down }).contains("went down"));
    let outsider =
        ["p0", "p1", "p2", "p3"].into_iter().find(|o| !members(&c, session).contains(&id(o))).unwrap();
    assert!(
        c.fails(outsider, TxPayload::CommitWindow { window: window(&rs[3..]) }).contains("does not serve")
    );
    conserved(&c);
}

#[test]
fn a_receipt_left_out_of_every_window_convicts_its_provider_once_no_window_can_hold_it() {
    let mut c = chain();
    let session = open(&mut c, terms(100_000, 1));
    let p = name(&members(&c, session)[0]);
    let rs = receipts(session, None, 5);
    // The provider commits receipts 0–2 and leaves out 3 and 4 (say, a cheap answer it does
    // not want sampled).
    c.ok(p, TxPayload::CommitWindow { window: window(&rs[..3]) });
    let e = c.fails("u0", challenge(&rs[4], p));
    assert!(e.contains("may still be committed"), "{e}");
    // A receipt signed by a provider outside the session proves nothing.
    let outsider = ["p0", "p1", "p2", "p3"].into_iter().find(|o| *o != p).unwrap();
    assert!(c.fails("u0", challenge(&rs[4], outsider)).contains("never served"));
    c.advance(3);
    let collateral = c.state.provider(&id(p)).unwrap().collateral;
    advance_past_grace(&mut c, session);
    c.ok("u0", challenge(&rs[4], p));
    let fraud = c.last_events().into_iter().find_map(|e| match e {
        Event::ServingFraud { slashed, seq, .. } => Some((slashed, seq)),
        _ => None,
    });
    assert_eq!(fraud, Some((Amount(1_000_000), 4)), "slash_multiple × 100,000 takes all its collateral");
    let prov = c.state.provider(&id(p)).unwrap();
    assert!(prov.collateral < collateral && prov.ejected_until > c.height());
    assert!(c.state.session(session).unwrap().member(&id(p)).unwrap().removed);
    conserved(&c);
}

#[test]
fn an_altered_receipt_convicts_when_unanswered_and_an_included_one_is_refuted() {
    let mut c = chain();
    let session = open(&mut c, terms(100_000, 1));
    let p = name(&members(&c, session)[0]);
    let rs = receipts(session, None, 4);
    // The provider commits a tree in which receipt 1 says something else than what it signed.
    let mut committed = rs.clone();
    committed[1].output = Hash::of(b"what it would rather have answered");
    c.ok(p, TxPayload::CommitWindow { window: window(&committed) });

    // Challenging an honestly committed receipt costs a deposit the provider earns by
    // showing it.
    c.ok("u0", challenge(&rs[0], p));
    let proof = tree(&committed).proof(0).unwrap();
    let p_balance = c.state.balance(&id(p));
    c.ok(p, TxPayload::AnswerChallenge { session, seq: 0, proof, request: None });
    assert!(c.last_events().iter().any(|e| matches!(e, Event::ChallengeRefuted { seq: 0, .. })));
    assert!(
        c.state.balance(&id(p)) > p_balance.checked_sub(Amount(10)).unwrap(),
        "the deposit is the provider's"
    );

    // The altered receipt: no proof shows its leaf, so the window waits and then convicts.
    c.ok("u0", challenge(&rs[1], p));
    let wrong = tree(&committed).proof(1).unwrap();
    assert!(
        c.fails(p, TxPayload::AnswerChallenge { session, seq: 1, proof: wrong, request: None })
            .contains("does not show")
    );
    let key = (session, id(p), 0);
    c.advance(3);
    assert_eq!(c.state.window(&key).unwrap().status, WindowStatus::Held, "a challenged window is not paid");
    c.advance(CHALLENGE_BLOCKS);
    assert!(c.history().iter().any(|e| matches!(e, Event::ServingFraud { seq: 1, .. })));
    assert_eq!(c.state.window(&key).unwrap().status, WindowStatus::Refunded);
    assert!(c.state.session(session).unwrap().committed.is_zero());
    // Its place is matched again.
    c.advance(1);
    let now = members(&c, session);
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], id(p));
    conserved(&c);
}

#[test]
fn a_window_total_its_own_last_receipt_contradicts_is_fraud_at_once() {
    let mut c = chain();
    let session = open(&mut c, terms(100_000, 1));
    let p = name(&members(&c, session)[0]);
    let rs = receipts(session, None, 3);
    let mut inflated = window(&rs);
    inflated.total.completion_tokens += 50_000;
    c.ok(p, TxPayload::CommitWindow { window: inflated });
    c.ok("u0", challenge(&rs[2], p));
    assert!(c.last_events().iter().any(|e| matches!(e, Event::ServingFraud { seq: 2, .. })));
    conserved(&c);
}

#[test]
fn only_the_requester_closes_its_session_and_unspent_escrow_returns_after_the_grace() {
    let mut c = chain();
    let session = open(&mut c, terms(100_000, 1));
    assert!(c.fails("u1", TxPayload::CloseSession { session }).contains("only the session's requester"));
    let u0 = c.state.balance(&id("u0"));
    c.ok("u0", TxPayload::CloseSession { session });
    assert!(c.fails("u0", TxPayload::CloseSession { session }).contains("already stopped"));
    let p = name(&members(&c, session)[0]);
    // What was served before the close can still be committed within the grace.
    c.ok(p, TxPayload::CommitWindow { window: window(&receipts(session, None, 1)) });
    advance_past_grace(&mut c, session);
    let s = c.state.session(session).unwrap();
    assert_eq!(s.status, SessionStatus::Closed);
    assert_eq!(
        c.state.balance(&id("u0")),
        u0.checked_sub(Amount(20)).unwrap().checked_add(Amount(100_000 - 40)).unwrap()
    );
    let e = c.fails(p, TxPayload::CommitWindow { window: window(&receipts(session, None, 1)) });
    assert!(e.contains("no more windows") || e.contains("starts at"), "{e}");
    conserved(&c);
}

/// The first two providers of `session`, in the order they joined.
fn two(c: &TestChain, session: u64) -> (&'static str, &'static str) {
    let m = members(c, session);
    (name(&m[0]), name(&m[1]))
}

#[test]
fn a_provider_that_stops_answering_is_dismissed_and_its_share_backs_a_replacement() {
    // A grace long enough for the audits below (a block a second).
    let mut c = chain_with(Params { session_commit_grace_ms: 20_000, ..params() });
    let session = open(&mut c, terms(100_000, 2));
    let (gone, stays) = two(&c, session);
    let rs = receipts(session, None, 5);
    c.ok(gone, TxPayload::CommitWindow { window: window(&rs[..2]) });
    // Only the requester, or the provider itself, ends a provider's serving.
    let outsider = ["p0", "p1", "p2", "p3"].into_iter().find(|o| *o != gone && *o != stays).unwrap();
    for stranger in ["u1", stays, outsider] {
        let e = c.fails(stranger, TxPayload::LeaveSession { session, provider: id(gone) });
        assert!(e.contains("only the provider itself or the session's requester"), "{stranger}: {e}");
    }
    c.ok("u0", TxPayload::LeaveSession { session, provider: id(gone) });
    assert!(c.last_events().iter().any(|e| matches!(e, Event::SessionLeft { dismissed: true, .. })));
    assert_eq!(members(&c, session), vec![id(stays)]);
    let e = c.fails("u0", TxPayload::LeaveSession { session, provider: id(gone) });
    assert!(e.contains("does not serve"), "{e}");
    // Its share still backs what it served: no replacement until its commit grace is over.
    c.advance(2);
    assert_eq!(members(&c, session), vec![id(stays)]);
    c.ok(gone, TxPayload::CommitWindow { window: window(&rs[2..4]) });
    let e = c.fails("u0", challenge(&rs[4], gone));
    assert!(e.contains("may still be committed"), "{e}");
    let m = c.state.session(session).unwrap().member(&id(gone)).unwrap().clone();
    assert_eq!(m.charged, Amount(4 * 40));
    // Its windows pass their audits and are paid.
    c.advance(1);
    for first in [0, 2] {
        if let Some(audit) = window_audit(&c, session, gone, first) {
            settle_audit(&mut c, audit, true);
        }
    }

    // Past its own commit deadline (well before the session's), its cap shrinks to what it
    // charged and the rest goes to a replacement at once.
    let deadline = c.state.session(session).unwrap().member_commit_deadline_ms(&m, c.state.params());
    assert!(deadline < c.state.session(session).unwrap().commit_deadline_ms(c.state.params()));
    advance_past(&mut c, deadline);
    let s = c.state.session(session).unwrap();
    assert_eq!(s.member(&id(gone)).unwrap().cap, Amount(4 * 40));
    let joined: Vec<_> = members(&c, session).into_iter().filter(|p| *p != id(stays)).collect();
    assert_eq!(joined.len(), 1, "a replacement joined: {:?}", members(&c, session));
    assert_ne!(joined[0], id(gone), "a provider that left never rejoins the session");
    assert_eq!(s.member(&joined[0]).unwrap().cap, Amount(50_000 - 4 * 40), "the rest of the gone share");
    let e = c.fails(gone, TxPayload::CommitWindow { window: window(&rs[4..]) });
    assert!(e.contains("takes no more windows"), "{e}");

    // Its collateral backs its receipts until they can no longer be challenged (and its
    // windows are settled).
    let m = c.state.session(session).unwrap().member(&id(gone)).unwrap().clone();
    assert_eq!(m.held, 0, "both windows paid");
    assert!(!c.state.provider(&id(gone)).unwrap().reserved.is_zero(), "receipts may still be challenged");
    let release = c.state.session(session).unwrap().member_challenge_deadline_ms(&m, c.state.params());
    advance_past(&mut c, release);
    assert!(c.state.provider(&id(gone)).unwrap().reserved.is_zero(), "released before the session ends");
    assert_eq!(c.state.session(session).unwrap().status, SessionStatus::Open);
    conserved(&c);
}

#[test]
fn a_provider_that_leaves_cannot_dodge_an_omission_proof() {
    let mut c = chain();
    let session = open(&mut c, terms(100_000, 2));
    let (p, _) = two(&c, session);
    let rs = receipts(session, None, 3);
    c.ok(p, TxPayload::CommitWindow { window: window(&rs[..2]) });
    // It leaves on its own, keeping receipt 2 (a cheap answer) out of every window.
    c.ok(p, TxPayload::LeaveSession { session, provider: id(p) });
    assert!(c.last_events().iter().any(|e| matches!(e, Event::SessionLeft { dismissed: false, .. })));
    let m = c.state.session(session).unwrap().member(&id(p)).unwrap().clone();
    let deadline = c.state.session(session).unwrap().member_commit_deadline_ms(&m, c.state.params());
    advance_past(&mut c, deadline);
    // Proven at once, long before the session itself stops taking windows.
    c.ok("u0", challenge(&rs[2], p));
    let slashed = c.last_events().into_iter().find_map(|e| match e {
        Event::ServingFraud { seq: 2, slashed, .. } => Some(slashed),
        _ => None,
    });
    // Slashed for the share it served under (slash_multiple × 50,000), not for the 80 its
    // shrunken cap holds: leaving first does not cheapen the omission.
    assert_eq!(slashed, Some(Amount(500_000)));
    assert!(c.state.session(session).unwrap().member(&id(p)).unwrap().removed);
    assert!(c.state.provider(&id(p)).unwrap().reserved.is_zero());
    // Ending a stopped session's serving is refused.
    advance_past_grace(&mut c, session);
    let any = members(&c, session)[0];
    assert!(c.fails("u0", TxPayload::LeaveSession { session, provider: any }).contains("already stopped"));
    conserved(&c);
}

#[test]
fn session_terms_are_bounded() {
    let mut c = chain();
    let e =
        c.fails("u0", TxPayload::OpenSession { terms: SessionTerms { duration_ms: 10, ..terms(1_000, 1) } });
    assert!(e.contains("lasts"), "{e}");
    let e = c.fails("u0", TxPayload::OpenSession { terms: terms(u128::from(u64::MAX), 1) });
    assert!(e.contains("insufficient funds"), "{e}");
    assert!(c.fails("u0", TxPayload::OpenSession { terms: terms(1_000, 9) }).contains("1 to 8"));
}

/// What the simulated serving providers and client know off chain.
#[derive(Default)]
struct Model {
    /// Receipts each provider signed, per session.
    served: BTreeMap<(u64, AccountId), Vec<ServeReceipt>>,
    /// The leaves each committed window was built over, by window key.
    trees: BTreeMap<(u64, AccountId, u64), Vec<ServeReceipt>>,
}

#[derive(Debug, Clone)]
enum Op {
    /// The requester claims a committed receipt answers no request of its client.
    ChallengeRequest {
        pick: usize,
        at: usize,
    },
    Open {
        who: u8,
        escrow: u128,
        providers: u8,
    },
    Serve {
        pick: usize,
        n: u64,
    },
    /// Commit what was served, leaving out the last `omit` and altering receipt `alter`.
    Commit {
        pick: usize,
        omit: usize,
        alter: Option<usize>,
        inflate: u64,
    },
    Challenge {
        pick: usize,
        receipt: usize,
    },
    Close {
        pick: usize,
    },
    /// A serving provider leaves, or its requester dismisses it.
    Leave {
        pick: usize,
        by_requester: bool,
    },
    Quiet(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..4, 1_000u128..200_000, 1u8..4).prop_map(|(who, escrow, providers)| Op::Open { who, escrow, providers }),
        4 => (any::<usize>(), 1u64..6).prop_map(|(pick, n)| Op::Serve { pick, n }),
        4 => (any::<usize>(), prop_oneof![4 => Just(0usize), 1 => 1usize..3], prop::option::weighted(0.2, 0usize..8),
              prop_oneof![4 => Just(0u64), 1 => 1u64..5_000])
            .prop_map(|(pick, omit, alter, inflate)| Op::Commit { pick, omit, alter, inflate }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(pick, receipt)| Op::Challenge { pick, receipt }),
        1 => any::<usize>().prop_map(|pick| Op::Close { pick }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, by_requester)| Op::Leave { pick, by_requester }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(pick, at)| Op::ChallengeRequest { pick, at }),
        2 => (1u64..8).prop_map(Op::Quiet),
    ]
}

/// The (session, provider) pairs serving now, in a stable order.
fn pairs(c: &TestChain) -> Vec<(u64, AccountId)> {
    c.state.sessions().flat_map(|(id, s)| s.serving().map(move |m| (*id, m.provider))).collect()
}

/// The name (u0–u3) of `session`'s requester.
fn requester(c: &TestChain, session: u64) -> Option<String> {
    let requester = c.state.session(session)?.requester;
    (0..4).map(|u| format!("u{u}")).find(|u| id(u) == requester)
}

/// The provider whose answers are wrong: its receipts and windows are in order, but auditors
/// replaying its answers find them wrong.
const MISCOMPUTES: &str = "p3";

/// The name of a provider or validator.
fn party(who: &AccountId) -> String {
    ["p0", "p1", "p2", "p3", "v0", "v1", "v2", "v3"]
        .into_iter()
        .find(|n| id(n) == *who)
        .expect("a provider or validator")
        .to_string()
}

/// Honest providers answer every challenge they can prove, and honest auditors report on every
/// window audit assigned to them (failing [`MISCOMPUTES`]'s windows), in the same block as
/// their other transactions would go.
fn answers(c: &TestChain, model: &Model) -> Vec<agora_core::SignedTx> {
    let mut txs = vec![];
    let mut pending: BTreeMap<AccountId, u64> = BTreeMap::new();
    for (audit, a) in c.state.audits() {
        if a.outcome.is_some() || a.target.lease().is_some() {
            continue;
        }
        for auditor in awaiting(&c.state, *audit) {
            let n = pending.entry(auditor).or_default();
            let passed = a.provider != id(MISCOMPUTES);
            txs.push(c.tx_n(&party(&auditor), report(&c.state, *audit, passed), *n));
            *n += 1;
        }
    }
    for (key, leaves) in &model.trees {
        let Some(w) = c.state.window(key) else { continue };
        for ch in &w.challenges {
            let i = (ch.seq - key.2) as usize;
            let Some(leaf) = leaves.get(i) else { continue };
            // Every request in this model is the client's (u0's key signs the sessions'
            // requests): an honest provider can always show the signature.
            let request = ch.leaf.is_none().then(|| agora_core::session::RequestProof {
                receipt: leaf.clone(),
                client_signature: super::harness::key("u0")
                    .sign(&agora_core::session::client_message(&leaf.request)),
            });
            if ch.leaf.is_none() || ch.leaf == Some(leaf.leaf()) {
                let proof = tree(leaves).proof(i).unwrap();
                let n = pending.entry(key.1).or_default();
                txs.push(c.tx_n(
                    &party(&key.1),
                    TxPayload::AnswerChallenge { session: key.0, seq: ch.seq, proof, request },
                    *n,
                ));
                *n += 1;
            }
        }
    }
    txs
}

fn step(c: &mut TestChain, model: &mut Model, op: Op) {
    let pairs = pairs(c);
    let pick = |i: usize| (!pairs.is_empty()).then(|| pairs[i % pairs.len()]);
    let tx = match op {
        Op::Open { who, escrow, providers } => {
            Some(c.tx(&format!("u{who}"), TxPayload::OpenSession { terms: terms(escrow, providers) }))
        }
        Op::Serve { pick: i, n } => {
            // Honest providers serve only while the session does.
            let live = |k: &(u64, AccountId)| c.state.session(k.0).is_some_and(|s| c.now_ms() < s.until_ms);
            if let Some(k) = pick(i).filter(live) {
                let served = model.served.entry(k).or_default();
                let more = receipts(k.0, served.last(), n);
                served.extend(more);
            }
            None
        }
        Op::Commit { pick: i, omit, alter, inflate } => {
            // A provider with receipts it has not committed yet (one that left included).
            let pending: Vec<_> = c
                .state
                .sessions()
                .flat_map(|(id, s)| s.members.iter().filter(|m| !m.removed).map(move |m| (*id, m.provider)))
                .filter(|(session, p)| {
                    let next = c.state.session(*session).and_then(|s| s.member(p)).map_or(0, |m| m.next_seq);
                    model.served.get(&(*session, *p)).is_some_and(|r| r.len() as u64 > next)
                })
                .collect();
            (!pending.is_empty()).then(|| pending[i % pending.len()])
        }
        .and_then(|(session, p)| {
            let next = c.state.session(session)?.member(&p)?.next_seq as usize;
            let served = model.served.get(&(session, p))?;
            let end = served.len().saturating_sub(omit);
            (end > next).then(|| {
                let mut leaves = served[next..end].to_vec();
                if let Some(a) = alter.filter(|a| *a < leaves.len()) {
                    leaves[a].output = Hash::of(b"altered");
                }
                let mut w = window(&leaves);
                w.total.completion_tokens += inflate;
                model.trees.insert((session, p, next as u64), leaves);
                c.tx(name(&p), TxPayload::CommitWindow { window: w })
            })
        }),
        Op::Challenge { pick: i, receipt } => {
            let held: Vec<_> = model.served.keys().copied().collect();
            (!held.is_empty()).then(|| held[i % held.len()])
        }
        .and_then(|(session, p)| {
            let served = model.served.get(&(session, p))?;
            let r = served.get(receipt % served.len().max(1))?;
            let who = requester(c, session)?;
            Some(c.tx(&who, challenge(r, name(&p))))
        }),
        Op::ChallengeRequest { pick: i, at } => {
            let committed: Vec<_> =
                model.trees.keys().filter(|k| c.state.window(k).is_some()).copied().collect();
            (!committed.is_empty()).then(|| committed[i % committed.len()]).and_then(|(session, p, first)| {
                let w = c.state.window(&(session, p, first))?;
                let seq = first + (at as u64 % u64::from(w.commitment.receipts));
                let who = requester(c, session)?;
                Some(c.tx(&who, TxPayload::ChallengeRequest { session, provider: p, seq }))
            })
        }
        Op::Leave { pick: i, by_requester } => pick(i).and_then(|(session, p)| {
            let who = requester(c, session)?;
            let who = if by_requester { who } else { name(&p).to_string() };
            Some(c.tx(&who, TxPayload::LeaveSession { session, provider: p }))
        }),
        Op::Close { pick: i } => pick(i).and_then(|(session, _)| {
            let who = requester(c, session)?;
            Some(c.tx(&who, TxPayload::CloseSession { session }))
        }),
        Op::Quiet(n) => {
            for _ in 0..n {
                let txs = answers(c, model);
                c.block(txs);
                check(c);
            }
            None
        }
    };
    let mut txs = answers(c, model);
    // Answers come from providers; the op's transaction from its own sender, so nonces do not
    // collide unless the op is a provider's commit (then it goes in the next block).
    let (deferred, now): (Vec<_>, Vec<_>) =
        tx.into_iter().partition(|t| txs.iter().any(|a| a.tx.sender == t.tx.sender));
    txs.extend(now);
    c.block(txs);
    check(c);
    for t in deferred {
        let t = c.tx(name(&t.tx.sender), t.tx.payload);
        c.block(vec![t]);
        check(c);
    }
}

/// Invariants after every block.
fn check(c: &TestChain) {
    conserved(c);
    let params = c.state.params().clone();
    // Every provider's reservation is exactly what its leases and sessions hold.
    for (who, p) in c.state.providers() {
        let leases =
            c.state.leases().filter(|(_, l)| l.provider == *who).map(|(_, l)| l.reserved.0).sum::<u128>();
        let sessions =
            c.state.sessions().filter_map(|(_, s)| s.member(who)).map(|m| m.reserved.0).sum::<u128>();
        assert_eq!(p.reserved.0, leases + sessions, "reservation of {who}");
    }
    for (_, s) in c.state.sessions() {
        assert!(s.committed <= s.escrow);
        if s.status != SessionStatus::Open {
            assert_eq!(s.escrow, s.committed, "a closed session holds only unpaid windows");
        }
        for m in &s.members {
            assert!(
                m.charged <= m.cap && m.cap <= s.terms.value_per_provider(),
                "no provider charges beyond its cap"
            );
            if m.left_ms.is_some() && !m.removed {
                let now = c.now_ms();
                if now > s.member_commit_deadline_ms(m, &params) {
                    assert_eq!(m.cap, m.charged, "a provider that left backs only what it charged");
                }
                if now > s.member_challenge_deadline_ms(m, &params) && m.held == 0 {
                    assert!(m.reserved.is_zero(), "its collateral is free once nothing of it is open");
                }
            }
        }
        let caps = s.members.iter().map(|m| m.cap.0).sum::<u128>();
        assert!(caps <= s.terms.escrow.0, "the caps of a session never exceed its escrow");
    }
    // No window is paid before its audit window closes.
    for e in c.last_events() {
        if let Event::WindowPaid { session, provider, first_seq, .. } = e {
            let w = c.state.window(&(session, provider, first_seq)).unwrap();
            assert!(c.height() >= w.committed_height + Params::u64(params.audit_window_blocks));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random sessions, honest and cheating windows, challenges and closes: supply is
    /// conserved, reservations match, no provider charges beyond its share, no window is paid
    /// early, and an honest provider (one that commits exactly what it signed) is never
    /// convicted.
    #[test]
    fn sessions_keep_money_and_collateral_exact(ops in prop::collection::vec(op(), 1..60)) {
        let mut c = chain();
        let mut model = Model::default();
        for op in ops {
            step(&mut c, &mut model, op);
        }
        // Drain: every session closes and every window settles.
        for _ in 0..200 {
            let txs = answers(&c, &model);
            c.block(txs);
            check(&c);
        }
        for (id, s) in c.state.sessions() {
            prop_assert_eq!(s.status, SessionStatus::Final, "session {} final", id);
            prop_assert!(s.escrow.is_zero());
            let paid: u128 = c.history().iter().filter_map(|e| match e {
                Event::WindowPaid { session, amount, .. } if session == id => Some(amount.0),
                _ => None,
            }).sum();
            prop_assert_eq!(s.paid.0, paid, "a session's cost is what its windows were paid");
        }
        for (_, p) in c.state.providers() {
            prop_assert!(p.reserved.is_zero());
        }
        // Convictions only ever follow a commitment that differs from what was signed, or
        // answers the auditors found wrong; every audit of those answers convicts.
        for e in c.history() {
            if let Event::AuditResolved { target: crate::audits::AuditTarget::Window(key), outcome, .. } = e {
                let wrong = key.1 == id(MISCOMPUTES);
                prop_assert_eq!(outcome == crate::events::AuditOutcome::Fraud, wrong, "audit of {:?}", key);
            }
            if let Event::ServingFraud { session, provider, seq, .. } = e {
                if provider == id(MISCOMPUTES) {
                    continue;
                }
                let signed = &model.served[&(session, provider)];
                let honest = model
                    .trees
                    .iter()
                    .filter(|(k, _)| k.0 == session && k.1 == provider)
                    .filter_map(|(k, leaves)| Some((k, leaves, c.state.window(k)?)))
                    .all(|(k, leaves, w)| {
                        leaves.iter().zip(&signed[k.2 as usize..]).all(|(a, b)| a == b)
                            && w.commitment.total == leaves.last().unwrap().total
                            && w.commitment.root == tree(leaves).root()
                    });
                let committed_all = c.state.session(session).unwrap().member(&provider).unwrap().next_seq as usize >= signed.len();
                prop_assert!(!(honest && committed_all), "honest provider convicted for receipt {}", seq);
            }
        }
    }
}

#[test]
fn a_window_audit_that_finds_wrong_answers_convicts_and_refunds_the_window() {
    let mut c = chain();
    let session = open(&mut c, terms(100_000, 1));
    let p = name(&members(&c, session)[0]);
    let rs = receipts(session, None, 3);
    c.ok(p, TxPayload::CommitWindow { window: window(&rs) });
    c.advance(1);
    let audit = window_audit(&c, session, p, 0).expect("a new provider's window is audited");
    let a = c.state.audit(audit).unwrap();
    assert_eq!(a.subject, AuditSubject::Serving);
    assert_eq!(a.target, AuditTarget::Window((session, id(p), 0)));
    assert!(!a.is_assigned(&id(p)) && !a.is_assigned(&id("u0")), "never a party of the session");
    let collateral = c.state.provider(&id(p)).unwrap().collateral;
    // Stage one fails the window; the recount confirms it.
    settle_audit(&mut c, audit, false);
    assert_eq!(c.state.audit(audit).unwrap().outcome, Some(AuditOutcome::Fraud));
    let w = c.state.window(&(session, id(p), 0)).unwrap();
    assert_eq!(w.status, WindowStatus::Refunded, "the window is not paid");
    let s = c.state.session(session).unwrap();
    assert!(s.member(&id(p)).unwrap().removed && s.committed.is_zero(), "{s:?}");
    assert!(c.state.provider(&id(p)).unwrap().collateral < collateral, "slashed");
    assert!(
        c.history().iter().any(|e| matches!(e, Event::ServingFraud { provider, .. } if *provider == id(p)))
    );
    c.advance(2);
    assert_eq!(members(&c, session).len(), 1, "its place is matched again");
    assert_ne!(members(&c, session)[0], id(p));
    conserved(&c);
}

#[test]
fn a_window_audit_nobody_reports_on_does_not_withhold_pay() {
    let mut c = chain();
    let session = open(&mut c, terms(100_000, 1));
    let p = name(&members(&c, session)[0]);
    let rs = receipts(session, None, 2);
    let before = c.state.balance(&id(p));
    c.ok(p, TxPayload::CommitWindow { window: window(&rs) });
    c.advance(1);
    let audit = window_audit(&c, session, p, 0).unwrap();
    c.advance(10);
    assert_eq!(
        c.state.window(&(session, id(p), 0)).unwrap().status,
        WindowStatus::Held,
        "held while audited"
    );
    while c.state.audit(audit).unwrap().outcome.is_none() {
        c.advance(20);
    }
    assert_eq!(c.state.audit(audit).unwrap().outcome, Some(AuditOutcome::Unverified));
    assert_eq!(c.state.window(&(session, id(p), 0)).unwrap().status, WindowStatus::Paid);
    assert!(c.state.balance(&id(p)) > before);
    conserved(&c);
}

#[test]
fn small_windows_lose_nothing_to_rounding() {
    // Before: each window was priced on its own usage, rounded down, so windows of a few
    // tokens each charged nothing at all.
    let mut c = chain();
    let session = open(&mut c, terms(100_000, 1));
    let p = name(&members(&c, session)[0]);
    let mut last: Option<ServeReceipt> = None;
    for _ in 0..4 {
        let mut r = receipts(session, last.as_ref(), 1);
        // 30 prompt and 10 completion tokens: 0.6 and 0.4 at 20 and 40 per 1,000.
        r[0].usage = Usage { prompt_tokens: 30, completion_tokens: 10, items: 0 };
        r[0].total = last.as_ref().map_or(Usage::default(), |l| l.total).checked_add(&r[0].usage).unwrap();
        c.ok(p, TxPayload::CommitWindow { window: window(&r) });
        last = r.pop();
    }
    // 120 prompt and 40 completion tokens cost 2.4 + 1.6, rounded down once: 3.
    assert_eq!(c.state.session(session).unwrap().member(&id(p)).unwrap().charged, Amount(3));
}

/// `receipts`, with the client's signature over each request (as `agora-serve` signs them).
fn signed_requests(rs: &[ServeReceipt]) -> Vec<agora_core::Signature> {
    rs.iter().map(|r| key("u0").sign(&agora_core::session::client_message(&r.request))).collect()
}

#[test]
fn a_receipt_for_a_request_the_client_never_signed_convicts_its_provider() {
    // Before: a provider could commit receipts for requests it made up and be paid for them;
    // nothing on chain asked for the client's signature.
    let mut c = chain();
    let session = open(&mut c, terms(100_000, 1));
    let p = name(&members(&c, session)[0]);
    let rs = receipts(session, None, 3);
    let sigs = signed_requests(&rs);
    // Receipts 0 and 1 answer the client's requests; 2 was made up.
    c.ok(p, TxPayload::CommitWindow { window: window(&rs) });
    let tree = tree(&rs);
    // Only the requester knows which requests it sent.
    let e = c.fails("u1", TxPayload::ChallengeRequest { session, provider: id(p), seq: 1 });
    assert!(e.contains("only the session's requester"), "{e}");
    assert!(
        c.fails("u0", TxPayload::ChallengeRequest { session, provider: id(p), seq: 7 })
            .contains("does not exist")
    );

    // A real request: the provider shows the receipt and the client's signature.
    c.ok("u0", TxPayload::ChallengeRequest { session, provider: id(p), seq: 1 });
    let bare = TxPayload::AnswerChallenge { session, seq: 1, proof: tree.proof(1).unwrap(), request: None };
    assert!(c.fails(p, bare).contains("client's signature"));
    let forged =
        agora_core::session::RequestProof { receipt: rs[1].clone(), client_signature: key(p).sign(&[0]) };
    let e = c.fails(
        p,
        TxPayload::AnswerChallenge { session, seq: 1, proof: tree.proof(1).unwrap(), request: Some(forged) },
    );
    assert!(e.contains("not signed by the session's client key"), "{e}");
    let shown = agora_core::session::RequestProof { receipt: rs[1].clone(), client_signature: sigs[1] };
    c.ok(
        p,
        TxPayload::AnswerChallenge { session, seq: 1, proof: tree.proof(1).unwrap(), request: Some(shown) },
    );
    assert!(c.last_events().iter().any(|e| matches!(e, Event::ChallengeRefuted { seq: 1, .. })));

    // The made-up one: no signature to show, so the provider is convicted when time runs out.
    c.ok("u0", TxPayload::ChallengeRequest { session, provider: id(p), seq: 2 });
    let unsigned = agora_core::session::RequestProof {
        receipt: rs[2].clone(),
        client_signature: key(p).sign(&rs[2].request.0),
    };
    assert!(
        c.fails(
            p,
            TxPayload::AnswerChallenge {
                session,
                seq: 2,
                proof: tree.proof(2).unwrap(),
                request: Some(unsigned)
            }
        )
        .contains("not signed")
    );
    c.advance(CHALLENGE_BLOCKS + 1);
    // (The window was paid once its audit window closed; the conviction reaches the
    // provider's collateral all the same.)
    let slashed = c.history().iter().find_map(|e| match e {
        Event::ServingFraud { seq: 2, slashed, .. } => Some(*slashed),
        _ => None,
    });
    assert_eq!(slashed, Some(Amount(1_000_000)));
    assert!(c.state.session(session).unwrap().member(&id(p)).unwrap().removed);
    conserved(&c);
}
