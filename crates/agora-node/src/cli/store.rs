//! `agora store ...`: put, get, list, pin and unpin blobs on a node's content store, with a
//! progress bar on large transfers. Blobs are encrypted client-side unless `--public`; the key
//! stays in the data directory (`keys/<hash>.key`) and never leaves this machine unsealed.

use super::Global;
use super::output::print;
use agora_core::Hash;
use agora_store::encrypt::BlobKey;
use agora_store::http::Client;
use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// `agora store ...`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Upload a file; prints its content hash.
    Put {
        /// File to upload.
        file: PathBuf,
        /// Store it unencrypted (for public data such as model weights).
        #[arg(long)]
        public: bool,
        /// Exempt it from garbage collection on the node.
        #[arg(long)]
        pin: bool,
    },
    /// Download a blob, verifying every chunk against its hash (and decrypting it when this
    /// machine holds its key).
    Get {
        /// Content hash.
        hash: Hash,
        /// Output file.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// List the node's blobs.
    Ls,
    /// Pin a blob.
    Pin {
        /// Content hash.
        hash: Hash,
    },
    /// Unpin a blob.
    Unpin {
        /// Content hash.
        hash: Hash,
    },
}

fn bar(json: bool, what: &str) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn key_path(data_dir: &Path, hash: &Hash) -> PathBuf {
    data_dir.join("keys").join(format!("{hash}.key"))
}

/// Runs a store command.
pub async fn run(g: &Global, cmd: StoreCommand) -> anyhow::Result<()> {
    let client = Client::new(&g.node).context("invalid --node URL")?;
    // Writes and listings are signed with the wallet key when there is one (nodes refuse them
    // unsigned, with a message saying so).
    let client = match g.signer() {
        Ok(key) => client.with_signer(key),
        Err(_) => client,
    };
    match cmd {
        StoreCommand::Put { file, public, pin } => {
            let key = (!public).then(BlobKey::generate);
            let pb = bar(g.json, "upload");
            let p = pb.clone();
            let info = client
                .upload_file(&file, pin, key.as_ref(), move |done, total| {
                    p.set_length(total);
                    p.set_position(done);
                })
                .await
                .with_context(|| format!("cannot upload {}", file.display()))?;
            pb.finish_and_clear();
            if let Some(key) = &key {
                let path = key_path(&g.data_dir, &info.hash);
                crate::config::write_secret(&path, hex::encode(key.as_bytes()).as_bytes())
                    .with_context(|| format!("cannot save the key to {}", path.display()))?;
            }
            print(
                g.json,
                &serde_json::json!({"hash": info.hash, "size": info.size, "encrypted": key.is_some(), "pinned": info.pinned}),
                |_| {
                    if key.is_some() {
                        format!(
                            "{}\n(encrypted; key saved in {})",
                            info.hash,
                            key_path(&g.data_dir, &info.hash).display()
                        )
                    } else {
                        info.hash.to_string()
                    }
                },
            );
        }
        StoreCommand::Get { hash, out } => {
            let key = match std::fs::read_to_string(key_path(&g.data_dir, &hash)) {
                Ok(hexkey) => {
                    let bytes: [u8; 32] = hex::decode(hexkey.trim())
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .context("stored key file is corrupt")?;
                    Some(BlobKey::from_bytes(bytes))
                }
                Err(_) => None,
            };
            let pb = bar(g.json, "download");
            let p = pb.clone();
            let n = client
                .download_to_file(&hash, &out, key.as_ref(), move |done, total| {
                    p.set_length(total);
                    p.set_position(done);
                })
                .await
                .with_context(|| format!("cannot download {hash}"))?;
            pb.finish_and_clear();
            print(
                g.json,
                &serde_json::json!({"hash": hash, "bytes": n, "file": out, "decrypted": key.is_some()}),
                |_| {
                    format!(
                        "{n} bytes verified{} -> {}",
                        if key.is_some() { " and decrypted" } else { "" },
                        out.display()
                    )
                },
            );
        }
        StoreCommand::Ls => {
            let list = client.list().await?;
            print(g.json, &list, |l| {
                if l.is_empty() {
                    return "no blobs".into();
                }
                l.iter()
                    .map(|b| format!("{} {:>12} {}", b.hash, b.size, if b.pinned { "pinned" } else { "" }))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        StoreCommand::Pin { hash } => {
            let info = client.pin(&hash).await?;
            print(g.json, &info, |i| format!("pinned {}", i.hash));
        }
        StoreCommand::Unpin { hash } => {
            let info = client.unpin(&hash).await?;
            print(g.json, &info, |i| format!("unpinned {}", i.hash));
        }
    }
    Ok(())
}
