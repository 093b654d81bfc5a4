//! Feeds arbitrary bytes to the job manifest decoder: it must never panic, whatever it accepts
//! must re-encode to the same bytes, and validating and costing it must not panic either.
#![no_main]

use agora_core::{Decode, Encode, JobManifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > agora_core::tx::MAX_TX_BYTES {
        return;
    }
    if let Ok(m) = JobManifest::decode(data) {
        assert_eq!(m.encode(), data, "decoded manifest must re-encode to its input");
        let _ = m.validate();
        let _ = m.max_cost();
        for shard in &m.shards {
            let _ = m.output_items(shard);
        }
    }
});
