//! Feeds arbitrary bytes to the BERT embedding-model loader: the input is split into
//! `config.json`, `model.safetensors` and `tokenizer.json`, as a requester's model bundle
//! supplies them. It must return an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (a, b) = match data {
        [a, b, rest @ ..] => ((*a as usize).min(rest.len()), (*b as usize).min(rest.len())),
        _ => return,
    };
    let rest = &data[2..];
    let (config, rest) = rest.split_at(a);
    let (weights, tokenizer) = rest.split_at(b.min(rest.len()));
    let _ = agora_ml::embed::model::Embedder::from_files(
        config,
        weights.to_vec(),
        tokenizer,
        &candle_core::Device::Cpu,
    );
});
