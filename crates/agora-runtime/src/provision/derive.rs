//! The seam for conversions that need heavy code (candle) after a pull.
//!
//! Provisioning itself has no ML dependencies. A catalog entry may name a derivation id
//! (e.g. requantizing SmolLM2 from Q4_1 to Q8_0, because candle has no SIMD kernel for Q4_1);
//! the crate that can perform it (`agora-ml`) implements [`Derivation`] and the node or CLI
//! registers it with the [`super::Provisioner`]. The output is pinned by SHA-256 in the
//! catalog, so every provider derives the same bytes and the bundle keeps one hash.

use std::path::Path;

/// A deterministic file conversion.
pub trait Derivation: Send + Sync {
    /// The id catalog entries refer to.
    fn id(&self) -> &str;

    /// Reads `input` and writes the converted file to `output`.
    fn derive(&self, input: &Path, output: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}
