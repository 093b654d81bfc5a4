//! The Agora node: composes the chain, the HTTP API, the content store and the provider agent;
//! and the `agora` command-line tool that drives a node.

pub mod address_book;
pub mod api;
pub mod cli;
pub mod config;
pub mod devnet;
pub mod logging;
pub mod provider;
pub mod run;
pub mod store_keeper;
pub mod store_policy;

pub use agora_client::{client, protocol, sender};
pub use agora_gateway as gateway;
pub use agora_requester::{self as requester, key_agent};
