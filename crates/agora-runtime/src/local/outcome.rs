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

impl LocalOutcome {
    /// Writes `outputs.items` (the framed item list, as the content store frames it),
    /// `item-<i>.bin` per item and `summary.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), LocalError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LocalError::Output { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut framed = Vec::new();
        agora_core::codec::encode_seq(self.output.items.iter(), &mut framed);
        let path = dir.join("outputs.items");
        std::fs::write(&path, &framed).map_err(io(&path))?;
        for (i, item) in self.output.items.iter().enumerate() {
            let path = dir.join(format!("item-{i}.bin"));
            std::fs::write(&path, item).map_err(io(&path))?;
        }
        let path = dir.join("summary.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&self.summary()).expect("json"))
            .map_err(io(&path))?;
        Ok(())
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
