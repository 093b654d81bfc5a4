//! Embedding output items: the vector's f32 values, little-endian, nothing else.
//!
//! The dimension is implied by the model, so the item carries no header: a 384-d MiniLM
//! embedding is exactly 1,536 bytes, which is what the OpenAI-compatible gateway streams.

use super::{ItemError, put_f32s};

/// Encodes a vector as little-endian f32 bytes.
pub fn encode_vector(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    put_f32s(values, &mut out);
    out
}

/// Decodes a non-empty little-endian f32 vector whose values are all finite.
pub fn decode_vector(bytes: &[u8]) -> Result<Vec<f32>, ItemError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return Err(ItemError::Invalid(format!(
            "a vector item must be a non-empty multiple of 4 bytes, got {}",
            bytes.len()
        )));
    }
    let values: Vec<f32> =
        bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(ItemError::Invalid(format!("vector value {i} is not finite")));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let v = vec![0.5f32, -1.25, 3.0];
        assert_eq!(decode_vector(&encode_vector(&v)).unwrap(), v);
        assert!(decode_vector(&[1, 2, 3]).is_err());
        assert!(decode_vector(&[]).is_err());
        assert!(decode_vector(&encode_vector(&[f32::NAN])).is_err());
    }
}
