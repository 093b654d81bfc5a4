//! BLAKE3 content hashes: the addresses of blobs, items, transactions and blocks.

use crate::codec::Encode;

/// Why a hex string could not be parsed as a fixed-size value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseHexError {
    /// Wrong number of hex digits.
    #[error("expected {expected} hex characters, got {got}")]
    Length {
        /// Digits required.
        expected: usize,
        /// Digits supplied.
        got: usize,
    },
    /// A character outside `0-9a-fA-F`.
    #[error("not a hex string: {0}")]
    Digit(String),
}

/// Parses exactly `N` bytes of hex.
pub fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], ParseHexError> {
    let s = s.trim();
    if s.len() != 2 * N {
        return Err(ParseHexError::Length { expected: 2 * N, got: s.len() });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|e| ParseHexError::Digit(e.to_string()))?;
    Ok(out)
}

/// Implements hex `Display`/`Debug`/`FromStr`, serde as a hex string, and the canonical codec
/// for a newtype over `[u8; N]`.
#[macro_export]
macro_rules! hex_newtype {
    ($name:ident, $len:expr, $label:expr) => {
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(&self.0[..6]))
            }
        }
        impl std::str::FromStr for $name {
            type Err = $crate::hash::ParseHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::hash::parse_hex::<$len>(s).map(Self)
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(|e| serde::de::Error::custom(format!("invalid {}: {e}", $label)))
            }
        }
        impl $crate::codec::Encode for $name {
            fn encode_to(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.0);
            }
        }
        impl $crate::codec::Decode for $name {
            const MIN_ENCODED_SIZE: usize = $len;
            fn decode_from(r: &mut $crate::codec::Reader<'_>) -> Result<Self, $crate::codec::DecodeError> {
                Ok(Self(r.array(stringify!($name))?))
            }
        }
    };
}

/// A 32-byte BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);
hex_newtype!(Hash, 32, "hash");

impl Hash {
    /// The all-zero hash, used as "no parent" and for empty roots where a protocol says so.
    pub const ZERO: Hash = Hash([0; 32]);

    /// Hashes raw bytes (the address of a blob or item).
    pub fn of(data: &[u8]) -> Self {
        Hash(*blake3::hash(data).as_bytes())
    }

    /// Hashes `parts` under a domain tag, so values of different kinds can never collide:
    /// each part is length-prefixed and the tag selects a distinct BLAKE3 key.
    pub fn tagged(domain: &str, parts: &[&[u8]]) -> Self {
        let mut h = blake3::Hasher::new_derive_key(domain);
        for part in parts {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Hash(*h.finalize().as_bytes())
    }

    /// Hashes the canonical encoding of a value under a domain tag.
    pub fn of_encoded<T: Encode + ?Sized>(domain: &str, value: &T) -> Self {
        Self::tagged(domain, &[&value.encode()])
    }

    /// The first 8 bytes as an integer: a uniform draw when the hash is a random seed.
    pub fn to_u64(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes"))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash::of(b"agora");
        assert_eq!(h.to_string().parse::<Hash>().unwrap(), h);
        assert_eq!("abcd".parse::<Hash>().unwrap_err(), ParseHexError::Length { expected: 64, got: 4 });
        assert!(matches!("zz".repeat(32).parse::<Hash>(), Err(ParseHexError::Digit(_))));
    }

    #[test]
    fn domains_separate() {
        assert_ne!(Hash::tagged("a", &[b"x"]), Hash::tagged("b", &[b"x"]));
        // Length prefixes keep part boundaries significant.
        assert_ne!(Hash::tagged("a", &[b"ab", b"c"]), Hash::tagged("a", &[b"a", b"bc"]));
    }

    #[test]
    fn serde_uses_hex() {
        let h = Hash::of(b"x");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{h}\""));
        assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), h);
        assert!(serde_json::from_str::<Hash>("\"12\"").unwrap_err().to_string().contains("invalid hash"));
    }
}
