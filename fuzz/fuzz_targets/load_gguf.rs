//! Feeds arbitrary bytes to the GGUF model loader (models are requester-chosen blobs, and
//! auditors load them in-process): it must return an error, never panic or allocate beyond
//! what the file's own length allows.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = agora_ml::generate::model::Llm::read(&mut std::io::Cursor::new(data), &candle_core::Device::Cpu);
});
