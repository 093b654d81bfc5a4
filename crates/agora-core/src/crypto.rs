//! Ed25519 keys and signatures. An account is identified by its public key.

use crate::hash::{Hash, ParseHexError};
use crate::hex_newtype;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// An Ed25519 public key; also the account identifier on the ledger.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);
hex_newtype!(PublicKey, 32, "public key");

/// Account identifiers are public keys: whoever can sign for the key owns the account.
pub type AccountId = PublicKey;

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);
hex_newtype!(Signature, 64, "signature");

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key bytes are not a valid curve point.
    #[error("public key {0} is not a valid Ed25519 key")]
    BadKey(PublicKey),
    /// The signature does not verify for this key and message.
    #[error("signature does not match the signer and message")]
    Mismatch,
}

impl PublicKey {
    /// Verifies `sig` over `message` with strict (non-malleable) Ed25519 rules.
    pub fn verify(&self, message: &[u8], sig: &Signature) -> Result<(), SignatureError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| SignatureError::BadKey(*self))?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        key.verify_strict(message, &sig).map_err(|_| SignatureError::Mismatch)
    }

    /// A short hex prefix for logs and tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

/// An Ed25519 signing key. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// Derives a key from a 32-byte seed (deterministic; used for devnets and tests).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// Derives a key deterministically from a label (devnet and test keys only).
    pub fn from_label(label: &str) -> Self {
        Self::from_seed(Hash::tagged("agora/test-key", &[label.as_bytes()]).0)
    }

    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS random number generator is available");
        Self::from_seed(seed)
    }

    /// The 32-byte seed, for writing key files.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Parses a hex seed, as written in key files.
    pub fn from_hex(s: &str) -> Result<Self, ParseHexError> {
        crate::hash::parse_hex::<32>(s).map(Self::from_seed)
    }

    /// The seed as hex, as written in key files.
    pub fn to_hex(&self) -> String {
        hex::encode(self.seed())
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }

    /// The X25519 secret scalar for this key (for sealing data to an account).
    pub fn to_x25519_scalar_bytes(&self) -> [u8; 32] {
        self.0.to_scalar_bytes()
    }
}

impl PublicKey {
    /// The X25519 (Montgomery) form of this key, so data can be sealed to an account
    /// without a second key pair.
    pub fn to_x25519(&self) -> Option<[u8; 32]> {
        VerifyingKey::from_bytes(&self.0).ok().map(|k| k.to_montgomery().to_bytes())
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public={})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let k = SecretKey::from_label("alice");
        let sig = k.sign(b"hello");
        assert!(k.public().verify(b"hello", &sig).is_ok());
        assert_eq!(k.public().verify(b"hellp", &sig), Err(SignatureError::Mismatch));
        let other = SecretKey::from_label("bob").public();
        assert_eq!(other.verify(b"hello", &sig), Err(SignatureError::Mismatch));
    }

    #[test]
    fn seeds_round_trip() {
        let k = SecretKey::generate();
        let back = SecretKey::from_hex(&k.to_hex()).unwrap();
        assert_eq!(back.public(), k.public());
        assert!(!format!("{k:?}").contains(&k.to_hex()));
    }

    #[test]
    fn invalid_point_is_a_clear_error() {
        // y = 2 is not on the curve for any sign bit.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        let pk = PublicKey(bytes);
        let sig = Signature([0; 64]);
        assert!(matches!(
            pk.verify(b"x", &sig),
            Err(SignatureError::BadKey(_)) | Err(SignatureError::Mismatch)
        ));
    }
}
