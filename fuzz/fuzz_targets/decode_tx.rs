//! Feeds arbitrary bytes to the transaction decoder: it must never panic, whatever it accepts
//! must re-encode to exactly the same bytes (the encoding is canonical), and it must pass the
//! admission shape check (`check_canonical`): admission and decoding agree.
#![no_main]

use agora_core::{Encode, SignedTx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = SignedTx::decode_untrusted(data) {
        assert_eq!(tx.encode(), data, "decoded transaction must re-encode to its input");
        assert_eq!(tx.check_canonical(), Ok(data.len()), "a decodable transaction is admissible in shape");
        // Verification must not panic either, whatever the bytes claim.
        let _ = tx.verify("fuzz");
    }
});
