//! Byte formats of input and output items, per job kind.
//!
//! Items are what a result commitment hashes and what an auditor fetches one at a time, so
//! each format here is canonical (one encoding per value) and every decoder is bounded by the
//! bytes it is given. The formats use `agora_core::codec` conventions: little-endian
//! fixed-width integers and `u32` length prefixes.
//!
//! | kind | input item | output item |
//! |---|---|---|
//! | `embed` | UTF-8 text ([`text`]) | f32 vector, little-endian ([`vector`]) |
//! | `generate` | UTF-8 prompt ([`text`]) | [`generation::Generation`]: completion + token ids |
//! | `train` | [`training::Example`]: label + features | [`training::Checkpoint`] every K steps |
//! | `wasm` | raw stdin bytes | raw stdout bytes |

pub mod generation;
pub mod text;
pub mod training;
pub mod vector;

use agora_core::codec::DecodeError;

/// Why an item's bytes are not a valid item of the expected format.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ItemError {
    /// The canonical decoder rejected the bytes.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The bytes decode but break a rule of the format.
    #[error("{0}")]
    Invalid(String),
}

/// Writes an f32 slice as little-endian bytes.
pub(crate) fn put_f32s(values: &[f32], out: &mut Vec<u8>) {
    out.reserve(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads `n` little-endian f32 values.
pub(crate) fn take_f32s(
    r: &mut agora_core::codec::Reader<'_>,
    n: usize,
    context: &'static str,
) -> Result<Vec<f32>, DecodeError> {
    let bytes = r.take(n.checked_mul(4).ok_or(DecodeError::invalid(context, "too many values"))?, context)?;
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
}

/// Why `bytes` is not a valid input item of `kind` by its format alone, or `None` if it is.
/// It needs no model, so a provider that reports an input item malformed and the auditors who
/// check that statement decide it by this one function, identically. (Problems only a model
/// finds, such as a prompt longer than its context, are not format errors.)
pub fn malformed_input(kind: agora_core::JobKind, bytes: &[u8]) -> Option<String> {
    use agora_core::JobKind;
    match kind {
        JobKind::Embed | JobKind::Generate => text::decode_text(bytes).err().map(|e| e.to_string()),
        JobKind::Train => training::Example::from_item(bytes).err().map(|e| e.to_string()),
        JobKind::Wasm => None,
    }
}

#[cfg(test)]
mod input_tests {
    use super::*;
    use agora_core::JobKind;

    #[test]
    fn malformed_inputs_are_named_by_format_alone() {
        assert_eq!(malformed_input(JobKind::Embed, "a sentence".as_bytes()), None);
        assert!(malformed_input(JobKind::Embed, &[0xff, 0xfe]).is_some());
        assert!(malformed_input(JobKind::Generate, &[0xc3]).is_some());
        assert!(malformed_input(JobKind::Train, b"not an example").is_some());
        let example = training::Example { label: 1, features: vec![0.5, 1.0] };
        assert_eq!(malformed_input(JobKind::Train, &agora_core::codec::Encode::encode(&example)), None);
        assert_eq!(malformed_input(JobKind::Wasm, &[0xff]), None, "a guest reads any bytes");
    }
}
