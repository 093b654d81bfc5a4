//! Feeds arbitrary bytes to the transaction decoder: it must never panic, and whatever it
//! accepts must re-encode to exactly the same bytes (the encoding is canonical).
#![no_main]

use agora_core::{Encode, SignedTx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = SignedTx::decode_untrusted(data) {
        assert_eq!(tx.encode(), data, "decoded transaction must re-encode to its input");
        // Verification must not panic either, whatever the bytes claim.
        let _ = tx.verify("fuzz");
    }
});
