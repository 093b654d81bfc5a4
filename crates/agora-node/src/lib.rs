//! The Agora node: composes the chain, the HTTP API, the content store and the provider agent;
//! and the `agora` command-line tool that drives a node.

pub mod address_book;
pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod devnet;
pub mod gateway;
pub mod key_agent;
pub mod logging;
pub mod protocol;
pub mod provider;
pub mod requester;
pub mod run;
pub mod sender;
pub mod store_keeper;
pub mod store_policy;
