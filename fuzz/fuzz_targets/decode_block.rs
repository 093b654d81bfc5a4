//! Feeds arbitrary bytes to the block decoder: it must never panic, and whatever it accepts
//! must re-encode to exactly the same bytes (the encoding is canonical).
#![no_main]

use agora_core::{Block, Encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = Block::decode_untrusted(data) {
        assert_eq!(block.encode(), data, "decoded block must re-encode to its input");
        let _ = block.body_matches_header();
    }
});
