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
