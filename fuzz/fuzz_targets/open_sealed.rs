//! Feeds arbitrary bytes to the key-exchange and blob decryption (sealed shard keys come from
//! requesters' transactions, ciphertexts from the store): no panic, and nothing forged opens.
#![no_main]

use agora_core::SecretKey;
use agora_store::{encrypt, seal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let secret = SecretKey::from_seed([7; 32]);
    assert!(seal::open_key(data, &secret).is_err(), "a forged sealed key must not open");
    let key = encrypt::BlobKey::from_bytes([9; 32]);
    assert!(encrypt::decrypt(&key, data).is_err(), "a forged ciphertext must not decrypt");
});
