//! Admission equals decodability: however a transaction was built (JSON, a client library, the
//! gateway), the ledger admits it only if every peer's canonical bounded decoder accepts its
//! encoding as the very same value. A transaction that encodes but does not decode would make
//! every block that carries it undecodable for the proposer's peers (a consensus stall).

use super::harness::{CHAIN, TestChain, key, manifest};
use crate::accounts::check_except_nonce;
use crate::error::TxRejection;
use agora_core::arbitrary::stretched_payload;
use agora_core::tx::{
    AuditEvidence, Disputed, MAX_DISPUTED, MAX_ENDPOINT_LEN, ParamChange, SignedTx, Transaction, TxPayload,
};
use agora_core::{Amount, Encode, Hash, JobParams};
use proptest::prelude::*;

fn signed(who: &str, payload: TxPayload) -> SignedTx {
    let k = key(who);
    Transaction { sender: k.public(), nonce: 0, fee: Amount(10_000), payload }.sign(CHAIN, &k)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Passes admission ⇒ encodes ⇒ decodes to the same value; and, for a funded, signed
    /// transaction, the only shape refusals are ones the decoder would make too.
    #[test]
    fn admitted_transactions_decode_to_themselves(who in 0u8..8, payload in stretched_payload()) {
        let chain = TestChain::new();
        let tx = signed(&format!("u{who}"), payload);
        let decoded = SignedTx::decode_untrusted(&tx.encode());
        match check_except_nonce(&chain.state, &tx) {
            Ok(()) => prop_assert_eq!(decoded, Ok(tx)),
            Err(TxRejection::Malformed(_) | TxRejection::TooLarge { .. }) => {
                prop_assert_ne!(decoded, Ok(tx), "refused a transaction every peer could decode");
            }
            Err(other) => prop_assert!(false, "unexpected refusal: {other}"),
        }
    }
}

fn refusal(payload: TxPayload) -> Option<TxRejection> {
    check_except_nonce(&TestChain::new().state, &signed("u0", payload)).err()
}

#[test]
fn a_long_stop_string_is_refused_at_admission() {
    // The gateway attack: one OpenAI request with a 300-character `stop` string became a
    // SubmitJob no peer could decode, and stalled every block its validator proposed.
    let c = TestChain::new();
    let mut m = manifest(&c, 1, 4, 60, 5);
    m.params =
        JobParams::Generate { max_new_tokens: 8, temperature_milli: 0, seed: 0, stop: vec!["x".repeat(300)] };
    let err = refusal(TxPayload::SubmitJob { manifest: m.clone() }).expect("refused");
    assert!(matches!(err, TxRejection::Malformed(_)), "{err}");
    assert!(err.to_string().contains("length 300 exceeds the limit of 256"), "{err}");
    m.params =
        JobParams::Generate { max_new_tokens: 8, temperature_milli: 0, seed: 0, stop: vec!["x".repeat(256)] };
    assert_eq!(refusal(TxPayload::SubmitJob { manifest: m }), None, "the limit itself is admitted");
}

#[test]
fn every_bounded_field_is_refused_past_its_limit_and_admitted_at_it() {
    let c = TestChain::new();
    let mut m = manifest(&c, 1, 4, 60, 5);
    m.sources = vec![format!("http://{}", "a".repeat(300))];
    assert!(refusal(TxPayload::SubmitJob { manifest: m }).is_some(), "long source");

    let mut p = super::harness::profile("local", 100);
    p.endpoint = "e".repeat(MAX_ENDPOINT_LEN);
    assert_eq!(refusal(TxPayload::UpdateProvider { profile: p.clone() }), None);
    p.endpoint.push('e');
    assert!(refusal(TxPayload::UpdateProvider { profile: p.clone() }).is_some(), "long endpoint");
    p.endpoint = "http://provider.example:7700".into();
    p.classes = vec!["cpu.x86_64".parse().unwrap(); 17];
    assert!(refusal(TxPayload::UpdateProvider { profile: p.clone() }).is_some(), "17 classes");
    p.classes.truncate(1);
    p.hardware.cpu_model = "c".repeat(129);
    assert!(refusal(TxPayload::UpdateProvider { profile: p }).is_some(), "long cpu model");

    let description = "d".repeat(1024);
    assert_eq!(refusal(TxPayload::Propose { changes: vec![], description: description.clone() }), None);
    let long = TxPayload::Propose { changes: vec![], description: description + "d" };
    assert!(refusal(long).is_some(), "long description");
    let changes = vec![ParamChange { name: "min_fee".into(), value: 1 }; 17];
    assert!(refusal(TxPayload::Propose { changes, description: String::new() }).is_some(), "17 changes");

    let key_blob = TxPayload::ShareKey { lease: 1, to: key("p0").public(), sealed_key: vec![0; 257] };
    assert!(refusal(key_blob).is_some(), "long sealed key");

    let disputed = |n: u32| {
        let disputed = (0..n).map(|index| Disputed { index, recomputed: Hash::of(&index.to_le_bytes()) });
        let evidence = AuditEvidence {
            recomputed_root: Hash::of(b"root"),
            disputed: disputed.collect(),
            measured_ms: 1,
        };
        TxPayload::ReportAudit { audit: 1, passed: false, evidence }
    };
    assert_eq!(refusal(disputed(MAX_DISPUTED as u32)), None);
    assert!(refusal(disputed(MAX_DISPUTED as u32 + 1)).is_some(), "257 disputed items");
}
