//! What a local run produced, and how it is written to disk.

use super::error::LocalError;
use crate::executor::{RunOutput, TaskContext};
use crate::items::generation::Generation;
use crate::items::training::Checkpoint;
use crate::items::vector::decode_vector;
use agora_core::manifest::JobManifest;
use agora_core::{Hash, JobKind};
use std::path::Path;

/// The result of [`super::run_local`].
#[derive(Debug, Clone)]
pub struct LocalOutcome {
    /// The manifest a network job with the same terms would carry.
    pub manifest: JobManifest,
    /// The context the executor ran with.
    pub ctx: TaskContext,
    /// Output items and metering.
    pub output: RunOutput,
    /// Merkle root over the output items: what a provider would commit.
    pub output_root: Hash,
}

/// A one-line, human-readable summary of an output item of `kind`.
pub fn describe_item(kind: JobKind, item: &[u8]) -> String {
    match kind {
        JobKind::Embed => match decode_vector(item) {
            Ok(v) => {
                format!("{}-d vector [{:.4}, {:.4}, …]", v.len(), v[0], v.get(1).copied().unwrap_or(0.0))
            }
            Err(e) => format!("invalid vector: {e}"),
        },
        JobKind::Generate => match Generation::from_item(item) {
            Ok(g) => format!("{:?} ({} tokens, stop: {:?})", g.text, g.tokens.len(), g.stop),
            Err(e) => format!("invalid generation: {e}"),
        },
        JobKind::Train => match Checkpoint::from_item(item) {
            Ok(c) => format!("checkpoint at step {} (epoch {}, mean loss {:.4})", c.step, c.epoch, c.loss),
            Err(e) => format!("invalid checkpoint: {e}"),
        },
        JobKind::Wasm => format!("{} bytes", item.len()),
    }
}

/// Writes output items of `kind` into `dir` for people and tools: `outputs.items` (the framed
/// item list, as the content store frames it), plus JSON lines of vectors (`embeddings.jsonl`,
/// embed), JSON lines of completions (`completions.jsonl`, generate), one file per item
/// (`item-<i>.bin`, wasm), or checkpoints and a loss curve (`checkpoint-<i>.bin`,
/// `training.json`, train). Local runs and network results share this layout.
pub fn write_items(dir: &Path, kind: JobKind, items: &[Vec<u8>]) -> Result<(), LocalError> {
    let write = |name: String, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| LocalError::Output { path, source })
    };
    let invalid = |i: usize, e: crate::items::ItemError| LocalError::Output {
        path: dir.join("outputs.items"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("item {i}: {e}")),
    };
    std::fs::create_dir_all(dir).map_err(|source| LocalError::Output { path: dir.to_path_buf(), source })?;
    let mut framed = Vec::new();
    agora_core::codec::encode_seq(items.iter(), &mut framed);
    write("outputs.items".into(), &framed)?;
    match kind {
        JobKind::Embed => {
            let mut lines = String::new();
            for (i, it) in items.iter().enumerate() {
                let v = decode_vector(it).map_err(|e| invalid(i, e))?;
                lines += &serde_json::to_string(&v).expect("floats serialize");
                lines.push('\n');
            }
            write("embeddings.jsonl".into(), lines.as_bytes())?;
        }
        JobKind::Generate => {
            let mut lines = String::new();
            for (i, it) in items.iter().enumerate() {
                let g = Generation::from_item(it).map_err(|e| invalid(i, e))?;
                lines += &serde_json::json!({"text": g.text, "tokens": g.tokens}).to_string();
                lines.push('\n');
            }
            write("completions.jsonl".into(), lines.as_bytes())?;
        }
        JobKind::Wasm => {
            for (i, it) in items.iter().enumerate() {
                write(format!("item-{i}.bin"), it)?;
            }
        }
        JobKind::Train => {
            let mut losses = vec![];
            for (i, it) in items.iter().enumerate() {
                let c = Checkpoint::from_item(it).map_err(|e| invalid(i, e))?;
                losses.push(
                    serde_json::json!({"checkpoint": i, "step": c.step, "epoch": c.epoch, "loss": c.loss}),
                );
                write(format!("checkpoint-{i}.bin"), it)?;
            }
            write("training.json".into(), &serde_json::to_vec_pretty(&losses).expect("json"))?;
        }
    }
    Ok(())
}

impl LocalOutcome {
    /// Writes the items with [`write_items`] and `summary.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), LocalError> {
        write_items(dir, self.ctx.kind(), &self.output.items)?;
        let path = dir.join("summary.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&self.summary()).expect("json"))
            .map_err(|source| LocalError::Output { path, source })
    }

    /// A JSON summary: the manifest, the output root, metering and one line per item.
    pub fn summary(&self) -> serde_json::Value {
        let kind = self.ctx.kind();
        serde_json::json!({
            "kind": kind,
            "job": self.ctx.job,
            "model": self.manifest.model,
            "manifest": self.manifest,
            "output_root": self.output_root,
            "output_blob": Hash::of(&{
                let mut framed = Vec::new();
                agora_core::codec::encode_seq(self.output.items.iter(), &mut framed);
                framed
            }),
            "metering": self.output.metering,
            "items": self.output.items.iter().enumerate().map(|(i, item)| serde_json::json!({
                "index": i,
                "blake3": Hash::of(item),
                "describe": describe_item(kind, item),
            })).collect::<Vec<_>>(),
        })
    }
}
