//! Attacks on clearing (issue 13, part 1): orders that must not freeze a class, and bounds
//! that hold across classes. Each failed on the unit-curve McAfee clearing it replaced.

use super::harness::*;
use crate::events::Event;
use agora_core::ResourceClass;
use agora_core::tx::TxPayload;
use agora_core::{Amount, Encode};

fn leases(events: &[Event]) -> Vec<(u64, Amount)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::LeaseCreated { job, unit_price, .. } => Some((*job, *unit_price)),
            _ => None,
        })
        .collect()
}

fn last_job(c: &TestChain) -> u64 {
    *c.state.jobs.iter().next_back().expect("a job").0
}

#[test]
fn a_dust_bid_does_not_freeze_a_paid_job() {
    // Trade reduction on units dropped the marginal unit whenever a bid did not cross and the
    // ask had spare capacity: the 60-unit paid shard then never fit in the 59 units traded.
    let mut c = TestChain::new();
    register(&mut c, "p0", "local", 100);
    c.ok("p0", ask(&c, 2, 3600));
    c.ok("u1", TxPayload::SubmitJob { manifest: manifest(&c, 1, 10, 60, 1) });
    assert!(leases(&c.last_events()).is_empty(), "the dust bid does not cross");
    c.ok("u0", TxPayload::SubmitJob { manifest: manifest(&c, 1, 10, 60, 10) });
    let job = last_job(&c);
    assert_eq!(leases(&c.last_events()), vec![(job, Amount(2))], "the paid shard trades at the ask");
}

#[test]
fn a_free_bid_is_refused_with_the_floor_named() {
    let mut c = TestChain::new();
    register(&mut c, "p0", "local", 100);
    c.ok("p0", ask(&c, 0, 3600));
    let err = c.fails("u1", TxPayload::SubmitJob { manifest: manifest(&c, 1, 10, 60, 0) });
    assert!(err.contains("min_bid_price"), "{err}");
    // A paid job still clears against the zero-price ask.
    c.ok("u0", TxPayload::SubmitJob { manifest: manifest(&c, 1, 10, 60, 5) });
    assert_eq!(leases(&c.last_events()).len(), 1);
}

#[test]
fn an_oversized_bid_does_not_block_the_bids_behind_it() {
    // A shard bigger than all supply at a high price set the unit price above every other bid.
    let mut c = TestChain::new();
    register(&mut c, "p0", "local", 100);
    c.ok("p0", ask(&c, 2, 100));
    c.ok("u1", TxPayload::SubmitJob { manifest: manifest(&c, 1, 10, 1000, 10) });
    assert!(leases(&c.last_events()).is_empty());
    c.ok("u0", TxPayload::SubmitJob { manifest: manifest(&c, 1, 10, 60, 9) });
    let job = last_job(&c);
    let got = leases(&c.last_events());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, job);
    assert!(got[0].1 >= Amount(2) && got[0].1 <= Amount(9), "individually rational: {got:?}");
}

#[test]
fn a_providers_room_for_leases_spans_all_its_classes() {
    // Each class was planned with the provider's whole room, so one block could give it a
    // lease in every class beyond the bound its record decodes under.
    let mut c = TestChain::new();
    let (a, b): (ResourceClass, ResourceClass) =
        ("cpu.x86_64".parse().unwrap(), "cpu.arm64".parse().unwrap());
    let mut prof = profile("local", 100);
    prof.classes = vec![a.clone(), b.clone()];
    c.ok("p0", TxPayload::RegisterProvider { profile: prof, collateral: Amount(1_000_000) });
    for class in [&a, &b] {
        c.ok(
            "p0",
            TxPayload::PostAsk {
                class: class.clone(),
                quantity: 1_000_000,
                min_unit_price: Amount(1),
                expiry_ms: c.now_ms() + 3_600_000,
            },
        );
    }
    let room = crate::registry::MAX_RUNNING_LEASES;
    c.ok("u0", TxPayload::SubmitJob { manifest: manifest(&c, room as u32 - 1, 1, 1, 5) });
    assert_eq!(c.state.provider(&id("p0")).unwrap().running.len(), room - 1);
    // One more shard in each class, in the same block: only one of them fits.
    let in_a = manifest(&c, 1, 1, 1, 5);
    let mut in_b = manifest(&c, 1, 1, 1, 5);
    in_b.class = b;
    let txs = vec![
        c.tx("u1", TxPayload::SubmitJob { manifest: in_a }),
        c.tx("u2", TxPayload::SubmitJob { manifest: in_b }),
    ];
    c.block(txs);
    let p = c.state.provider(&id("p0")).unwrap();
    assert_eq!(p.running.len(), room, "never above MAX_RUNNING_LEASES");
    let bytes = p.encode();
    assert!(
        <crate::registry::Provider as agora_core::Decode>::decode(&bytes).is_ok(),
        "the record still decodes"
    );
}

#[test]
fn order_quantities_are_bounded() {
    let mut c = TestChain::new();
    register(&mut c, "p0", "local", 100);
    let err = c.fails("p0", ask(&c, 2, agora_core::manifest::MAX_ORDER_QUANTITY + 1));
    assert!(err.contains("ask quantity"), "{err}");
    let err = c.fails(
        "u0",
        TxPayload::SubmitJob {
            manifest: manifest(&c, 1, 1, agora_core::manifest::MAX_ORDER_QUANTITY + 1, 1),
        },
    );
    assert!(err.contains("quantity must be"), "{err}");
}
