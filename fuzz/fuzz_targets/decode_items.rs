//! Feeds arbitrary bytes to the item-list parser (shard inputs and outputs, as stored and
//! served): it must never panic, and whatever it accepts must frame back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = agora_store::items::Items::parse(data) {
        let owned: Vec<Vec<u8>> = items.iter().map(<[u8]>::to_vec).collect();
        let framed = agora_store::items::frame(&owned).expect("parsed items frame again");
        assert_eq!(framed, data, "an accepted item list is canonical");
    }
});
