//! Serving sessions off chain: a provider keeps a session's model warm and answers its
//! client's signed requests directly over HTTP, streaming tokens as they are generated; every
//! answer carries a receipt the provider signed, which the client checks at once and keeps.
//! The provider commits its receipts on chain in windows (`agora-ledger`'s `sessions`), so a
//! receipt it leaves out or alters is proof against it.
//!
//! Read in this order: [`wire`] (requests, events, hashes), [`book`] (the provider's durable
//! receipts and windows), [`engine`] (warm models, streaming runs), [`server`] (the provider's
//! endpoints), [`client`] (requests and receipt checks).

pub mod audit;
pub mod book;
pub mod client;
pub mod engine;
pub mod fingerprint;
pub mod server;
pub mod wire;
