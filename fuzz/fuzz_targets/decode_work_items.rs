//! Feeds arbitrary bytes to the decoders of the items runtimes exchange with auditors:
//! training examples and checkpoints, generations and replay records. None may panic, and
//! whatever one accepts must re-encode to the same bytes.
#![no_main]

use agora_core::Encode;
use agora_runtime::items::generation::{Generation, GenerationCheck};
use agora_runtime::items::training::{Checkpoint, Example};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Example::from_item(data) {
        assert_eq!(e.encode(), data);
    }
    if let Ok(c) = Checkpoint::from_item(data) {
        assert_eq!(c.encode(), data);
    }
    if let Ok(g) = Generation::from_item(data) {
        assert_eq!(g.encode(), data);
    }
    if let Ok(g) = GenerationCheck::from_item(data) {
        assert_eq!(g.encode(), data);
    }
});
