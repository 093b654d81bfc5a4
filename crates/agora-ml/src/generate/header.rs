//! Checks a GGUF file's header against the bounds the runtime needs, before anything is
//! allocated from it.
//!
//! Models are requester-chosen blobs, and the loader sizes buffers from header values: the
//! rotary tables from `llama.rope.dimension_count` (`4096 × d/2` floats), the KV cache from
//! the head counts, each tensor from its declared shape. One crafted value (a 2³² rope
//! dimension) made an allocation fail, which aborts the whole process — a provider, or a
//! validator auditing in-process. After [`check`], every size the loader derives from the
//! header is bounded by the constants here or by the file's own length.

use agora_runtime::ExecError;
use candle_core::quantized::gguf_file::Content;
use std::io::{Read, Seek, SeekFrom};

/// Most attention heads.
pub const MAX_HEADS: u32 = 256;
/// Widest attention head (embedding length / heads).
pub const MAX_HEAD_DIM: u32 = 512;
/// Widest embedding.
pub const MAX_EMBEDDING: u32 = 32_768;
/// Most transformer blocks.
pub const MAX_BLOCKS: u32 = 512;
/// Most mixture-of-experts experts.
pub const MAX_EXPERTS: u32 = 256;
/// Most elements in one tensor (dequantized tensors are 4 bytes an element).
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 30;

fn bad(reason: String) -> ExecError {
    ExecError::model(format!("the model's GGUF header is out of bounds: {reason}"))
}

fn u32_of(ct: &Content, key: &str, required: bool) -> Result<Option<u32>, ExecError> {
    match ct.metadata.get(key) {
        None if required => Err(bad(format!("{key} is missing"))),
        None => Ok(None),
        Some(v) => v.to_u32().map(Some).map_err(|_| bad(format!("{key} is not a u32"))),
    }
}

fn within(key: &str, v: u32, lo: u32, hi: u32) -> Result<u32, ExecError> {
    if (lo..=hi).contains(&v) { Ok(v) } else { Err(bad(format!("{key} = {v}, allowed {lo}..={hi}"))) }
}

/// Reads a GGUF header from `reader` (positioned at the file's start) and [`check`]s it
/// against the file's length.
///
/// A malformed header is an error, never a panic: candle's reader divides by the declared
/// `general.alignment` (so `0` panics), and any such panic is turned into a model error.
pub fn read<R: Read + Seek>(reader: &mut R) -> Result<Content, ExecError> {
    let io = |e: std::io::Error| ExecError::model(format!("reading the GGUF file: {e}"));
    let len = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let content = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(reader)))
        .map_err(|_| bad("the GGUF reader could not parse it".into()))?
        .map_err(|e| ExecError::model(format!("reading the GGUF header: {e}")))?;
    check(&content, len)?;
    Ok(content)
}

/// Checks the llama hyper-parameters the loader reads and every tensor's declared size against
/// `file_len`, the length of the file the header came from.
pub fn check(ct: &Content, file_len: u64) -> Result<(), ExecError> {
    let req = |k: &str| u32_of(ct, k, true).map(|v| v.expect("required"));
    let heads = within("llama.attention.head_count", req("llama.attention.head_count")?, 1, MAX_HEADS)?;
    let kv = within("llama.attention.head_count_kv", req("llama.attention.head_count_kv")?, 1, heads)?;
    if heads % kv != 0 {
        return Err(bad(format!("head_count {heads} is not a multiple of head_count_kv {kv}")));
    }
    within("llama.block_count", req("llama.block_count")?, 1, MAX_BLOCKS)?;
    let embd = within("llama.embedding_length", req("llama.embedding_length")?, 1, MAX_EMBEDDING)?;
    if embd % heads != 0 || embd / heads > MAX_HEAD_DIM {
        return Err(bad(format!(
            "embedding_length {embd} over {heads} heads is not a head width ≤ {MAX_HEAD_DIM}"
        )));
    }
    within("llama.rope.dimension_count", req("llama.rope.dimension_count")?, 1, embd / heads)?;
    let experts = u32_of(ct, "llama.expert_count", false)?.unwrap_or(0);
    within("llama.expert_count", experts, 0, MAX_EXPERTS)?;
    within(
        "llama.expert_used_count",
        u32_of(ct, "llama.expert_used_count", false)?.unwrap_or(0),
        0,
        experts,
    )?;
    for (name, info) in &ct.tensor_infos {
        let elements = info
            .shape
            .dims()
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
            .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
            .ok_or_else(|| bad(format!("tensor {name} has more than {MAX_TENSOR_ELEMENTS} elements")))?;
        let block = info.ggml_dtype.block_size() as u64;
        let bytes = (elements / block).saturating_mul(info.ggml_dtype.type_size() as u64);
        let end = ct.tensor_data_offset.saturating_add(info.offset).saturating_add(bytes);
        if elements % block != 0 || end > file_len {
            return Err(bad(format!("tensor {name} does not fit in the {file_len}-byte file")));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::{self, Value};

    /// A GGUF with no tensors and the given llama hyper-parameters, plus a two-token tokenizer
    /// (enough for the loader to reach the hyper-parameters).
    pub(crate) fn header_only(rope_dim: u32) -> Vec<u8> {
        let text = |s: &str| Value::String(s.into());
        let metadata = vec![
            ("general.architecture", text("llama")),
            ("tokenizer.ggml.model", text("gpt2")),
            ("tokenizer.ggml.tokens", Value::Array(vec![text("<|endoftext|>"), text("a")])),
            ("tokenizer.ggml.merges", Value::Array(vec![])),
            ("llama.attention.head_count", Value::U32(1)),
            ("llama.attention.head_count_kv", Value::U32(1)),
            ("llama.block_count", Value::U32(1)),
            ("llama.embedding_length", Value::U32(1)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
            ("llama.rope.dimension_count", Value::U32(rope_dim)),
        ];
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let mut out = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut out, &metadata, &[]).expect("writes");
        out.into_inner()
    }

    #[test]
    fn a_zero_alignment_is_an_error_not_a_panic() {
        let metadata = [("general.alignment", Value::U32(0))];
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let mut bytes = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut bytes, &metadata, &[]).expect("writes");
        bytes.set_position(0);
        let err = read(&mut bytes).expect_err("refused").to_string();
        assert!(err.contains("could not parse"), "{err}");
    }

    fn content(bytes: &[u8]) -> Content {
        Content::read(&mut std::io::Cursor::new(bytes)).expect("a well-formed GGUF")
    }

    #[test]
    fn a_huge_rope_dimension_is_refused_before_allocation() {
        let bytes = header_only(u32::MAX);
        let err = check(&content(&bytes), bytes.len() as u64).unwrap_err().to_string();
        assert!(err.contains("llama.rope.dimension_count = 4294967295"), "{err}");
        let ok = header_only(1);
        check(&content(&ok), ok.len() as u64).expect("a head-sized rope dimension is fine");
    }

    #[test]
    fn a_crafted_model_fails_to_load_instead_of_aborting_the_process() {
        // Without the check, the loader builds a 2³¹-element rotary table and then a
        // 4096 × 2³¹ matmul: the allocation fails and the process (a validator auditing
        // in-process) aborts.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, header_only(u32::MAX)).unwrap();
        let err = super::super::Llm::load(&path, &candle_core::Device::Cpu).err().expect("refused");
        assert!(err.to_string().contains("rope.dimension_count"), "{err}");
    }
}
