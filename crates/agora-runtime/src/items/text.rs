//! Text input items (embedding sentences, generation prompts): plain UTF-8 bytes.

use super::ItemError;

/// Longest text item accepted, in bytes; longer inputs are split by the requester.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Reads a text item, checking that it is UTF-8 and not too long.
pub fn decode_text(bytes: &[u8]) -> Result<&str, ItemError> {
    if bytes.len() > MAX_TEXT_BYTES {
        return Err(ItemError::Invalid(format!(
            "text item is {} bytes, more than the limit of {MAX_TEXT_BYTES}",
            bytes.len()
        )));
    }
    std::str::from_utf8(bytes).map_err(|e| ItemError::Invalid(format!("text item is not UTF-8: {e}")))
}
