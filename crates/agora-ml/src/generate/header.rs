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
/// A malformed header is an error, never a panic. candle's reader divides by the declared
/// `general.alignment` once it has parsed everything, so a zero would panic; the alignment is
/// found and checked by [`declared_alignment`] before candle's reader runs.
pub fn read<R: Read + Seek>(reader: &mut R) -> Result<Content, ExecError> {
    let io = |e: std::io::Error| ExecError::model(format!("reading the GGUF file: {e}"));
    let len = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let alignment = declared_alignment(reader, len).map_err(io)?;
    if let Some(a) = alignment.filter(|a| !a.is_power_of_two()) {
        return Err(bad(format!("general.alignment = {a}, which is not a power of two")));
    }
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let content =
        Content::read(reader).map_err(|e| ExecError::model(format!("reading the GGUF header: {e}")))?;
    check(&content, len)?;
    Ok(content)
}

/// Deepest nesting of arrays candle's reader accepts.
const MAX_VALUE_DEPTH: usize = 64;

/// The `general.alignment` that candle's reader will use, if the header declares one it reads:
/// the last such entry, when it is an 8-, 16- or 32-bit integer that is not negative (candle
/// uses its default for anything else). Walks the metadata without keeping any of it; every
/// length is checked against `len`, the file's length. A header this walk cannot read is an
/// error (candle's reader would refuse it too).
fn declared_alignment<R: Read + Seek>(reader: &mut R, len: u64) -> std::io::Result<Option<u64>> {
    let mut walk = Walk { reader, len, pos: 0, wide: true };
    walk.fixed(4)?; // magic: candle's reader checks it
    walk.wide = walk.u32()? != 1; // version 1 has 32-bit lengths
    walk.length()?; // tensor count
    let entries = walk.length()?;
    let mut alignment = None;
    for _ in 0..entries {
        let is_alignment = walk.key_is(b"general.alignment")?;
        let kind = walk.u32()?;
        if !is_alignment {
            walk.skip_value(kind, 0)?;
            continue;
        }
        alignment = match (kind, fixed_width(kind)) {
            // u8, u16, u32
            (0 | 2 | 4, Some(width)) => Some(walk.int(width)?),
            // i8, i16, i32, when not negative
            (1 | 3 | 5, Some(width)) => Some(walk.int(width)?).filter(|v| v >> (8 * width - 1) == 0),
            _ => {
                walk.skip_value(kind, 0)?;
                None
            }
        };
    }
    Ok(alignment)
}

/// Bytes of a value of GGUF type `kind` when they are fixed (numbers and booleans); `None`
/// for strings, arrays and unknown types.
fn fixed_width(kind: u32) -> Option<u64> {
    match kind {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// A forward-only walk over GGUF metadata that tracks its position against the file length.
struct Walk<'a, R> {
    reader: &'a mut R,
    len: u64,
    pos: u64,
    /// Lengths are 64-bit (GGUF v2 and v3) rather than 32-bit (v1).
    wide: bool,
}

impl<R: Read + Seek> Walk<'_, R> {
    fn past_end() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the GGUF metadata runs past the end of the file",
        )
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.reader.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// A little-endian unsigned integer of `bytes` (at most 8) bytes.
    fn int(&mut self, bytes: u64) -> std::io::Result<u64> {
        let mut buf = [0u8; 8];
        self.read(&mut buf[..bytes as usize])?;
        Ok(u64::from_le_bytes(buf))
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        Ok(self.int(4)? as u32)
    }

    fn length(&mut self) -> std::io::Result<u64> {
        self.int(if self.wide { 8 } else { 4 })
    }

    /// Skips `n` bytes that must lie within the file.
    fn fixed(&mut self, n: u64) -> std::io::Result<()> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.len).ok_or_else(Self::past_end)?;
        self.reader.seek_relative(n as i64)?;
        self.pos = end;
        Ok(())
    }

    /// Reads a metadata key and says whether it is `want` as candle's reader reads keys: with
    /// trailing NUL bytes dropped.
    fn key_is(&mut self, want: &[u8]) -> std::io::Result<bool> {
        let len = self.length()?;
        if len < want.len() as u64 || len > self.len.saturating_sub(self.pos) {
            self.fixed(len)?;
            return Ok(false);
        }
        let mut head = vec![0u8; want.len()];
        self.read(&mut head)?;
        let mut rest = len - want.len() as u64;
        if head != want {
            self.fixed(rest)?;
            return Ok(false);
        }
        let mut chunk = [0u8; 256];
        while rest > 0 {
            let n = rest.min(chunk.len() as u64) as usize;
            self.read(&mut chunk[..n])?;
            if chunk[..n].iter().any(|&b| b != 0) {
                self.fixed(rest - n as u64)?;
                return Ok(false);
            }
            rest -= n as u64;
        }
        Ok(true)
    }

    /// Skips one value of GGUF type `kind` (an array's elements included).
    fn skip_value(&mut self, kind: u32, depth: usize) -> std::io::Result<()> {
        let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        if depth > MAX_VALUE_DEPTH {
            return Err(invalid(format!("GGUF arrays nest deeper than {MAX_VALUE_DEPTH}")));
        }
        if let Some(width) = fixed_width(kind) {
            return self.fixed(width);
        }
        match kind {
            8 => {
                let n = self.length()?;
                self.fixed(n)
            }
            9 => {
                let element = self.u32()?;
                let count = self.length()?;
                if let Some(width) = fixed_width(element) {
                    return self.fixed(count.checked_mul(width).ok_or_else(Self::past_end)?);
                }
                // Each string or array element takes at least a length prefix, so a count the
                // file cannot hold is refused before the loop.
                if count > self.len.saturating_sub(self.pos) {
                    return Err(Self::past_end());
                }
                (0..count).try_for_each(|_| self.skip_value(element, depth + 1))
            }
            _ => Err(invalid(format!("unknown GGUF value type {kind}"))),
        }
    }
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
        assert!(err.contains("general.alignment = 0"), "{err}");
    }

    /// The input the fuzzer found: a 16-bit zero alignment in a GGUF v1 header. candle's
    /// reader panics on it, and no panic may be relied on to be caught (libFuzzer's panic hook
    /// aborts, as would `panic = "abort"`): it must never reach candle's reader.
    #[test]
    fn the_fuzzers_zero_alignment_never_reaches_candles_reader() {
        let bytes = b"FUGG\x01\0\0\0\0\0\0\0\x01\0\0\0\x14\0\0\0general.alignment\0\0\0\x02\0\0\0\0\0\0\0";
        let err = read(&mut std::io::Cursor::new(&bytes[..])).expect_err("refused").to_string();
        assert!(err.contains("general.alignment = 0"), "{err}");
    }

    #[test]
    fn the_alignment_candle_reads_is_the_one_checked() {
        let write = |metadata: &[(&str, Value)]| {
            let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
            let mut out = std::io::Cursor::new(Vec::new());
            gguf_file::write(&mut out, &metadata, &[]).expect("writes");
            out.into_inner()
        };
        let text = |s: &str| Value::String(s.into());
        let tokens = Value::Array(vec![text("a"), text("bb")]);
        let nested = Value::Array(vec![Value::Array(vec![Value::U8(1)]), Value::Array(vec![Value::U8(2)])]);
        for (value, expect) in [
            (Value::U32(64), Some(64)),
            (Value::U8(0), Some(0)),
            (Value::I16(-1), None),
            (Value::I32(48), Some(48)),
            (Value::U64(0), None),
            (text("0"), None),
        ] {
            let bytes = write(&[
                ("tokenizer.ggml.tokens", tokens.clone()),
                ("nested", nested.clone()),
                ("general.alignment", value.clone()),
                ("general.name", text("x")),
            ]);
            let mut cursor = std::io::Cursor::new(&bytes[..]);
            let found = declared_alignment(&mut cursor, bytes.len() as u64).expect("walks");
            assert_eq!(found, expect, "{value:?}");
            if let Some(a) = found.filter(|a| a.is_power_of_two()) {
                let ct = content(&bytes);
                assert_eq!(ct.tensor_data_offset % a, 0, "candle used the same alignment");
            }
        }
        // Truncated anywhere in the metadata, the walk is an error, never a read past the end.
        let bytes = write(&[
            ("tokenizer.ggml.tokens", tokens),
            ("nested", nested),
            ("general.alignment", Value::U32(32)),
        ]);
        let mut whole = std::io::Cursor::new(&bytes[..]);
        declared_alignment(&mut whole, bytes.len() as u64).expect("walks");
        for cut in 0..whole.position() as usize {
            let mut cursor = std::io::Cursor::new(&bytes[..cut]);
            assert!(declared_alignment(&mut cursor, cut as u64).is_err(), "cut at {cut}");
        }
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
