//! The Agora node: composes the chain, the HTTP API, the content store, the provider agent and
//! the gateway; and the `agora` command-line tool that drives a node.

pub mod provider;
