//! Feeds arbitrary bytes to what `agora job receipt --verify` decodes from a node it does not
//! trust: a consensus block with its finalization certificate, and a QMDB state proof. Nothing
//! may panic, and nothing forged may verify (the committee's keys sign nothing here).
#![no_main]

use agora_core::{Hash, SecretKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else { return };
    let split = u16::from_le_bytes([*a, *b]) as usize;
    let (certificate, block) = rest.split_at(split.min(rest.len()));
    let committee: Vec<_> = (1..=4u8).map(|i| SecretKey::from_seed([i; 32]).public()).collect();
    assert!(
        agora_chain::light::finalized_header(certificate, block, 0, 0, &committee).is_err(),
        "no certificate in fuzz data can be signed by the committee"
    );
    let root = Hash::of(b"root");
    let proof = agora_chain::records::StateProof {
        height: 0,
        root,
        key: block.get(..8).unwrap_or_default().to_vec(),
        value: (*a % 2 == 0).then(|| certificate.to_vec()),
        proof: block.to_vec(),
    };
    let _ = proof.verify(&root);
});
