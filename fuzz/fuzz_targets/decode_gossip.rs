//! Feeds arbitrary bytes to the gossip batch decoder (what any peer may send on the gossip
//! channel): it must never panic, and every transaction it keeps must be canonical.
#![no_main]

use agora_core::Encode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = agora_chain::gossip::decode_batch(data) {
        for tx in &batch.txs {
            assert!(tx.check_canonical().is_ok(), "a kept gossip entry is canonical");
            let _ = tx.encode();
        }
    }
});
