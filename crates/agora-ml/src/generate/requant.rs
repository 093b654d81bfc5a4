//! Requantizing a GGUF to Q8_0 at provisioning time.
//!
//! candle 0.11 has SIMD `vec_dot` kernels for Q4_0, Q8_0 and the K-quants but not for
//! Q4_1, the format SmolLM2 ships in, so the shipped file decodes about 4× slower than the
//! same model in Q8_0. Converting once (dequantize, quantize to Q8_0) fixes that. The output
//! is deterministic — metadata sorted by key, tensors in their original file order, pure
//! scalar conversion code — so every provider derives the same bytes and the model keeps a
//! single content hash (pinned in the runtime's catalog).

use agora_runtime::provision::Derivation;
use agora_runtime::provision::catalog::REQUANTIZE_Q8_0;
use candle_core::Device;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use std::path::Path;

/// Rewrites every Q4_0/Q4_1/Q5_x tensor of a GGUF as Q8_0; float and Q8_0 tensors are kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requantize;

fn needs_requant(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

/// Requantizes `input` into `output`.
pub fn requantize_file(input: &Path, output: &Path) -> candle_core::Result<()> {
    let mut reader = std::fs::File::open(input)?;
    let content = gguf_file::Content::read(&mut reader)?;
    let mut names: Vec<(&String, u64)> = content.tensor_infos.iter().map(|(n, i)| (n, i.offset)).collect();
    names.sort_by_key(|&(n, offset)| (offset, n.clone()));
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    for (name, _) in names {
        let q = content.tensor(&mut reader, name, &Device::Cpu)?;
        let q = if needs_requant(q.dtype()) {
            QTensor::quantize(&q.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
        } else {
            q
        };
        tensors.push((name.clone(), q));
    }
    let mut metadata: Vec<(&str, &gguf_file::Value)> =
        content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    metadata.sort_by_key(|&(k, _)| k);
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(output)?);
    gguf_file::write(&mut out, &metadata, &tensor_refs)?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}

impl Derivation for Requantize {
    fn id(&self) -> &str {
        REQUANTIZE_Q8_0
    }

    fn derive(&self, input: &Path, output: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(requantize_file(input, output)?)
    }
}
