//! Feeds arbitrary bytes to the Merkle proof decoder and verifier (audit responses carry
//! these for every sampled input and output): no panic, and a proof verifies only against the
//! root its own path computes.
#![no_main]

use agora_core::merkle::{MerkleProof, leaf_hash};
use agora_core::{Decode, Encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = MerkleProof::decode(data) {
        assert_eq!(proof.encode(), data, "an accepted proof is canonical");
        let leaf = leaf_hash(b"item");
        if let Some(root) = proof.root_for(leaf) {
            assert!(proof.index < proof.count);
            assert!(proof.verify(&root, leaf));
        }
    }
});
