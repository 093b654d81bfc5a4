//! Moving blobs over HTTP: the node's `/blobs` routes ([`server::router`]) and a [`Client`]
//! whose downloads verify every chunk group against the requested hash.

pub mod auth;
pub(crate) mod body;
pub mod client;
pub mod outbound;
pub mod range;
pub mod server;
pub(crate) mod sink;
pub mod verified;

pub use client::{Client, ClientError};
pub use server::{RunningServer, ServerConfig, router};
