//! How anything outside a node talks to it: the typed HTTP [`client`], the [`sender`] that
//! signs and submits transactions with the right nonces, the API's request and response
//! bodies ([`types`]), owner-only key and secret files ([`keyfile`]), and the off-chain
//! conventions between requesters, providers and auditors ([`protocol`]). The requester, the
//! gateway, the provider agent and the node's own API all build on these.

pub mod client;
pub mod keyfile;
pub mod protocol;
pub mod sender;
pub mod types;
