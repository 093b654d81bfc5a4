//! Agora's content store: blobs addressed by their BLAKE3 hash, stored so that no half blob is
//! ever visible, read back only after every chunk group is checked against the hash, and moved
//! over HTTP by verified streaming, so a lying peer is caught at the first bad chunk group.
//!
//! Modules, bottom up:
//! - [`tree`]: the chunk-group geometry and one-pass hashing into root and outboard;
//! - [`store`]: the on-disk store ([`Store`]): put, get, ranged and verified reads, pins, GC,
//!   with [`writer`] staging uploads, [`reader`] verifying reads, [`pins`] saying who holds a
//!   blob and until when, and [`gc`] choosing victims;
//! - [`items`]: framing a job's items into one blob and committing to them with a Merkle root;
//! - [`encrypt`] and [`seal`]: client-side blob encryption and sharing its key with a provider;
//! - [`http`]: the node's `/blobs` routes and the client that uploads and verifies downloads;
//! - [`mod@bench`]: the verified-versus-plain transfer benchmark.

pub mod bench;
pub mod encrypt;
pub mod error;
pub mod gc;
pub mod http;
pub mod items;
mod layout;
pub mod pins;
pub mod reader;
pub mod seal;
pub mod store;
mod task;
pub mod tree;
pub mod writer;

pub use error::StoreError;
pub use gc::GcReport;
pub use pins::Pin;
pub use reader::Blob;
pub use store::{BlobInfo, Store};
pub use writer::BlobWriter;
