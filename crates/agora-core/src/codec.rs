//! Canonical, bounded binary encoding for everything that is signed or hashed.
//!
//! The format is deliberately plain: fixed-width little-endian integers, `u32` length
//! prefixes, one-byte tags for enums and options, strict booleans. Every value has exactly
//! one encoding, so hashes and signatures over encodings are well defined.
//!
//! Decoding is bounded by construction: a length prefix is checked against the bytes that
//! remain *before* anything is allocated, so the memory a decoder uses is at most a small
//! multiple of its input, never a function of an attacker-chosen length. Callers bound the
//! input itself (maximum transaction and block sizes). Every malformed input yields a
//! [`DecodeError`] that says what was wrong and where.

use std::fmt;

/// Why a byte string is not a valid encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// What was being decoded when the error occurred (a type or field name).
    pub context: &'static str,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

/// The specific defect found in an encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The input ended early.
    UnexpectedEnd {
        /// Bytes the decoder needed.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// An enum or option tag that no variant uses.
    UnknownTag(u8),
    /// A boolean byte other than 0 or 1.
    InvalidBool(u8),
    /// A length prefix larger than allowed, or than the remaining input could hold.
    TooLong {
        /// The declared length.
        len: u64,
        /// The largest length accepted here.
        max: u64,
    },
    /// A string that is not valid UTF-8.
    InvalidUtf8,
    /// Bytes left over after a complete value (encodings must be exact).
    TrailingBytes(usize),
    /// The bytes decode but do not form a valid value (reason given).
    Invalid(&'static str),
}

impl DecodeError {
    /// Builds an error of `kind` raised while decoding `context`.
    pub fn new(context: &'static str, kind: DecodeErrorKind) -> Self {
        Self { context, kind }
    }

    /// An error for a value that decodes but violates a rule of its type.
    pub fn invalid(context: &'static str, reason: &'static str) -> Self {
        Self::new(context, DecodeErrorKind::Invalid(reason))
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed {}: ", self.context)?;
        match &self.kind {
            DecodeErrorKind::UnexpectedEnd { needed, remaining } => {
                write!(f, "input ends early (needed {needed} more bytes, {remaining} left)")
            }
            DecodeErrorKind::UnknownTag(t) => write!(f, "unknown variant tag {t}"),
            DecodeErrorKind::InvalidBool(b) => write!(f, "boolean byte must be 0 or 1, got {b}"),
            DecodeErrorKind::TooLong { len, max } => {
                write!(f, "length {len} exceeds the limit of {max}")
            }
            DecodeErrorKind::InvalidUtf8 => write!(f, "text is not valid UTF-8"),
            DecodeErrorKind::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the value"),
            DecodeErrorKind::Invalid(reason) => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A cursor over an input buffer that never reads past its end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, context: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::new(
                context,
                DecodeErrorKind::UnexpectedEnd { needed: n, remaining: self.remaining() },
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, context: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, context)?);
        Ok(out)
    }

    /// Reads a length prefix and checks it against `max` and against what could possibly
    /// remain when each element occupies at least `min_elem_size` bytes.
    pub fn length(
        &mut self,
        max: usize,
        min_elem_size: usize,
        context: &'static str,
    ) -> Result<usize, DecodeError> {
        let len = u32::decode_from(self).map_err(|e| DecodeError { context, ..e })? as usize;
        let possible = self.remaining() / min_elem_size.max(1);
        let limit = max.min(possible);
        if len > limit {
            return Err(DecodeError::new(
                context,
                DecodeErrorKind::TooLong { len: len as u64, max: limit as u64 },
            ));
        }
        Ok(len)
    }

    /// Reads a length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize, context: &'static str) -> Result<Vec<u8>, DecodeError> {
        let len = self.length(max, 1, context)?;
        Ok(self.take(len, context)?.to_vec())
    }

    /// Reads a length-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, max: usize, context: &'static str) -> Result<String, DecodeError> {
        let len = self.length(max, 1, context)?;
        let raw = self.take(len, context)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::new(context, DecodeErrorKind::InvalidUtf8))
    }

    /// Reads a length-prefixed sequence of at most `max` elements.
    pub fn vec<T: Decode>(&mut self, max: usize, context: &'static str) -> Result<Vec<T>, DecodeError> {
        let len = self.length(max, T::MIN_ENCODED_SIZE, context)?;
        // The length was checked against the remaining input, so this allocation is bounded
        // by the input size, not by an attacker's choice.
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            // A plain string element has no name of its own: report it under the sequence's.
            out.push(T::decode_from(self).map_err(|e| match e.context {
                STRING_CONTEXT => DecodeError { context, ..e },
                _ => e,
            })?);
        }
        Ok(out)
    }

    /// Reads a one-byte tag.
    pub fn tag(&mut self, context: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, context)?[0])
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self, context: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::new(context, DecodeErrorKind::TrailingBytes(n))),
        }
    }
}

/// Appends the canonical encoding of a value to a buffer.
pub trait Encode {
    /// Writes `self` to the end of `out`.
    fn encode_to(&self, out: &mut Vec<u8>);

    /// Returns the canonical encoding of `self`.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// Reads a value from its canonical encoding, rejecting anything else.
pub trait Decode: Sized {
    /// The fewest bytes any value of this type encodes to; bounds sequence lengths.
    const MIN_ENCODED_SIZE: usize = 1;

    /// Reads one value from the cursor.
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes a complete value: the input must contain exactly one encoding.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let value = Self::decode_from(&mut r)?;
        r.finish(std::any::type_name::<Self>().rsplit("::").next().unwrap_or("value"))?;
        Ok(value)
    }
}

macro_rules! int_codec {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode_to(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
        impl Decode for $t {
            const MIN_ENCODED_SIZE: usize = std::mem::size_of::<$t>();
            fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(<$t>::from_le_bytes(r.array(stringify!($t))?))
            }
        }
    )*};
}
int_codec!(u8, u16, u32, u64, u128, i32, i64);

impl Encode for bool {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Decode for bool {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.tag("bool")? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::new("bool", DecodeErrorKind::InvalidBool(b))),
        }
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode_to(out);
            }
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.tag("option")? {
            0 => Ok(None),
            1 => Ok(Some(T::decode_from(r)?)),
            t => Err(DecodeError::new("option", DecodeErrorKind::UnknownTag(t))),
        }
    }
}

impl Encode for str {
    fn encode_to(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        out.extend_from_slice(self.as_bytes());
    }
}

/// Longest string accepted where a field does not name its own limit.
pub const MAX_SHORT_STRING: usize = 256;

const STRING_CONTEXT: &str = "string";

impl Decode for String {
    const MIN_ENCODED_SIZE: usize = 4;
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.string(MAX_SHORT_STRING, STRING_CONTEXT)
    }
}

impl Encode for String {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.as_str().encode_to(out);
    }
}

impl Encode for [u8] {
    fn encode_to(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        out.extend_from_slice(self);
    }
}

impl Encode for Vec<u8> {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.as_slice().encode_to(out);
    }
}

/// Checks that `value`, however it was built (from JSON, a job file, a request), is exactly what
/// the canonical bounded decoder accepts: its encoding decodes back to the same value. Returns
/// the encoded size. The bounds stay in the decoders alone; this is how a builder asks them.
pub fn check_canonical<T: Encode + Decode + PartialEq>(value: &T) -> Result<usize, DecodeError> {
    let bytes = value.encode();
    if T::decode(&bytes)? != *value {
        return Err(DecodeError::invalid(
            std::any::type_name::<T>().rsplit("::").next().unwrap_or("value"),
            "value does not survive its canonical encoding",
        ));
    }
    Ok(bytes.len())
}

/// Writes a `u32` length prefix. Lengths above `u32::MAX` cannot occur for bounded values.
pub fn encode_len(len: usize, out: &mut Vec<u8>) {
    let len = u32::try_from(len).expect("encoded lengths are bounded far below u32::MAX");
    len.encode_to(out);
}

/// Encodes a sequence of values with a length prefix.
pub fn encode_seq<'a, T: Encode + 'a>(items: impl ExactSizeIterator<Item = &'a T>, out: &mut Vec<u8>) {
    encode_len(items.len(), out);
    for item in items {
        item.encode_to(out);
    }
}

impl<const N: usize> Encode for [u8; N] {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl<const N: usize> Decode for [u8; N] {
    const MIN_ENCODED_SIZE: usize = N;
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array("byte array")
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.0.encode_to(out);
        self.1.encode_to(out);
    }
}

impl<A: Decode, B: Decode> Decode for (A, B) {
    const MIN_ENCODED_SIZE: usize = A::MIN_ENCODED_SIZE + B::MIN_ENCODED_SIZE;
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok((A::decode_from(r)?, B::decode_from(r)?))
    }
}

impl<A: Encode, B: Encode, C: Encode> Encode for (A, B, C) {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.0.encode_to(out);
        self.1.encode_to(out);
        self.2.encode_to(out);
    }
}

impl<A: Decode, B: Decode, C: Decode> Decode for (A, B, C) {
    const MIN_ENCODED_SIZE: usize = A::MIN_ENCODED_SIZE + B::MIN_ENCODED_SIZE + C::MIN_ENCODED_SIZE;
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok((A::decode_from(r)?, B::decode_from(r)?, C::decode_from(r)?))
    }
}

/// Implements [`Encode`] and [`Decode`] for a fieldless enum as one tag byte, its
/// discriminant. The variants must be listed in declaration order with default
/// discriminants (checked at compile time), and that order is the wire order.
#[macro_export]
macro_rules! codec_unit_enum {
    ($name:ident { $($variant:ident),+ $(,)? }) => {
        impl $name {
            const CODEC_VARIANTS: &'static [$name] = &[$($name::$variant),+];
        }
        const _: () = {
            let mut i = 0;
            while i < $name::CODEC_VARIANTS.len() {
                assert!($name::CODEC_VARIANTS[i] as usize == i, "variants out of declaration order");
                i += 1;
            }
        };
        impl $crate::codec::Encode for $name {
            fn encode_to(&self, out: &mut Vec<u8>) {
                out.push(*self as u8);
            }
        }
        impl $crate::codec::Decode for $name {
            fn decode_from(r: &mut $crate::codec::Reader<'_>) -> Result<Self, $crate::codec::DecodeError> {
                let t = r.tag(stringify!($name))?;
                $name::CODEC_VARIANTS.get(usize::from(t)).copied().ok_or_else(|| {
                    $crate::codec::DecodeError::new(stringify!($name), $crate::codec::DecodeErrorKind::UnknownTag(t))
                })
            }
        }
    };
}

/// Implements [`Encode`] and [`Decode`] for a struct by encoding its fields in order.
///
/// Fields listed as `name: vec(MAX)` are sequences of at most `MAX` elements, `name:
/// bytes(MAX)` byte strings and `name: string(MAX)` UTF-8 strings; plain fields use their own
/// codec. Field order is the wire order, so it must never change for a deployed type.
#[macro_export]
macro_rules! codec_struct {
    ($name:ident { $($field:ident $(: $kind:ident($max:expr))?),* $(,)? }) => {
        impl $crate::codec::Encode for $name {
            fn encode_to(&self, out: &mut Vec<u8>) {
                $( $crate::codec_struct!(@enc self.$field, out $(, $kind)?); )*
            }
        }
        impl $crate::codec::Decode for $name {
            fn decode_from(r: &mut $crate::codec::Reader<'_>) -> Result<Self, $crate::codec::DecodeError> {
                Ok(Self {
                    $( $field: $crate::codec_struct!(@dec r, concat!(stringify!($name), ".", stringify!($field)) $(, $kind($max))?), )*
                })
            }
        }
    };
    (@enc $value:expr, $out:ident) => { $crate::codec::Encode::encode_to(&$value, $out) };
    (@enc $value:expr, $out:ident, vec) => { $crate::codec::encode_seq($value.iter(), $out) };
    (@enc $value:expr, $out:ident, bytes) => { $crate::codec::Encode::encode_to($value.as_slice(), $out) };
    (@enc $value:expr, $out:ident, string) => { $crate::codec::Encode::encode_to($value.as_str(), $out) };
    (@dec $r:ident, $ctx:expr) => { $crate::codec::Decode::decode_from($r)? };
    (@dec $r:ident, $ctx:expr, vec($max:expr)) => { $r.vec($max, $ctx)? };
    (@dec $r:ident, $ctx:expr, bytes($max:expr)) => { $r.bytes($max, $ctx)? };
    (@dec $r:ident, $ctx:expr, string($max:expr)) => { $r.string($max, $ctx)? };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Clone)]
    struct Sample {
        a: u64,
        flag: bool,
        name: String,
        items: Vec<u32>,
        blob: Vec<u8>,
        maybe: Option<u128>,
    }
    codec_struct!(Sample { a, flag, name: string(16), items: vec(8), blob: bytes(32), maybe });

    fn sample() -> impl Strategy<Value = Sample> {
        (
            any::<u64>(),
            any::<bool>(),
            "[a-z]{0,16}",
            prop::collection::vec(any::<u32>(), 0..8),
            prop::collection::vec(any::<u8>(), 0..32),
            any::<Option<u128>>(),
        )
            .prop_map(|(a, flag, name, items, blob, maybe)| Sample {
                a,
                flag,
                name,
                items,
                blob,
                maybe,
            })
    }

    proptest! {
        #[test]
        fn round_trips(s in sample()) {
            prop_assert_eq!(Sample::decode(&s.encode()).unwrap(), s);
        }

        #[test]
        fn truncations_are_rejected(s in sample(), cut in any::<prop::sample::Index>()) {
            let bytes = s.encode();
            let cut = cut.index(bytes.len());
            prop_assert!(Sample::decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = Sample::decode(&bytes);
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = 7u32.encode();
        bytes.push(0);
        let err = u32::decode(&bytes).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TrailingBytes(1));
    }

    #[test]
    fn huge_length_prefix_allocates_nothing() {
        // A sequence claiming 4 billion elements in a 4-byte input must fail before allocating.
        let bytes = u32::MAX.encode();
        let err = Reader::new(&bytes).vec::<u64>(usize::MAX, "test").unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::TooLong { len, max: 0 } if len == u32::MAX as u64));
    }

    #[test]
    fn limits_are_enforced_and_named() {
        let s = Sample { a: 1, flag: true, name: "x".repeat(17), items: vec![], blob: vec![], maybe: None };
        let err = Sample::decode(&s.encode()).unwrap_err();
        assert_eq!(err.context, "Sample.name");
        assert_eq!(err.to_string(), "malformed Sample.name: length 17 exceeds the limit of 16");
    }

    #[test]
    fn non_canonical_bool_is_rejected() {
        assert_eq!(bool::decode(&[2]).unwrap_err().kind, DecodeErrorKind::InvalidBool(2));
    }
}
