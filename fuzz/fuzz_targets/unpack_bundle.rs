//! Feeds arbitrary bytes, as a model bundle whose hash matches, to the bundle unpacker (the
//! header a provider or auditor reads from a requester-chosen blob): it must never panic, and
//! must never write outside its destination directory.
#![no_main]

use agora_core::Hash;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bundle = dir.path().join("model.bundle");
    std::fs::write(&bundle, data).expect("write the bundle");
    let dest = dir.path().join("unpacked");
    if let Ok(entries) = agora_runtime::provision::bundle::unpack_bundle(&bundle, &Hash::of(data), &dest) {
        for e in entries {
            assert!(dest.join(&e.name).starts_with(&dest), "an entry escaped the destination");
        }
    }
    let outside: Vec<_> = std::fs::read_dir(dir.path()).expect("list").flatten().map(|e| e.file_name()).collect();
    assert!(outside.len() <= 2, "the unpacker wrote beside its destination: {outside:?}");
});
