//! Money: non-negative integer base units. Never floats, never silent overflow.

use crate::codec::{Decode, DecodeError, Encode, Reader};
use std::fmt;
use std::str::FromStr;

/// An amount of the native token in base units.
///
/// Arithmetic is checked: operations that would overflow or go below zero return `None`,
/// so a ledger transition can reject them instead of wrapping.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(pub u128);

impl Amount {
    /// Zero base units.
    pub const ZERO: Amount = Amount(0);

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` if `other` is larger.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// `self × n`, or `None` on overflow (price × quantity).
    pub fn checked_mul(self, n: u128) -> Option<Amount> {
        self.0.checked_mul(n).map(Amount)
    }

    /// `self × bps / 10_000`, rounded down: a fraction given in basis points.
    pub fn bps(self, bps: u64) -> Amount {
        // Split to avoid overflow: (a / 10_000) * bps + (a % 10_000) * bps / 10_000.
        let bps = u128::from(bps);
        Amount((self.0 / 10_000) * bps + (self.0 % 10_000) * bps / 10_000)
    }

    /// `self × num / den`, rounded down; `None` when `den` is zero or the result overflows.
    pub fn mul_div(self, num: u128, den: u128) -> Option<Amount> {
        if den == 0 {
            return None;
        }
        let q = self.0 / den;
        let r = self.0 % den;
        let whole = q.checked_mul(num)?;
        // r < den, so r * num may still overflow for huge num; fall back to checked.
        let frac = r.checked_mul(num)? / den;
        whole.checked_add(frac).map(Amount)
    }

    /// The smaller of two amounts.
    pub fn min(self, other: Amount) -> Amount {
        if self <= other { self } else { other }
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self - other`, clamped at zero.
    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

/// Why text could not be read as an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid amount {0:?}: expected a non-negative whole number of base units (digits and optional '_' separators)"
)]
pub struct ParseAmountError(pub String);

impl FromStr for Amount {
    type Err = ParseAmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let clean: String = s.trim().chars().filter(|c| *c != '_').collect();
        if clean.is_empty() || !clean.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseAmountError(s.to_string()));
        }
        clean.parse::<u128>().map(Amount).map_err(|_| ParseAmountError(s.to_string()))
    }
}

impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // As a string: JSON numbers lose precision above 2^53.
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer amount (number or string)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount(u128::from(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Amount, E> {
                u128::try_from(v)
                    .map(Amount)
                    .map_err(|_| E::custom(format!("amount must not be negative, got {v}")))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Amount, E> {
                Ok(Amount(v))
            }
            fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Amount, E> {
                u128::try_from(v)
                    .map(Amount)
                    .map_err(|_| E::custom(format!("amount must not be negative, got {v}")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Amount, E> {
                Err(E::custom(format!("amounts are whole base units, got {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Amount, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Encode for Amount {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.0.encode_to(out);
    }
}

impl Decode for Amount {
    const MIN_ENCODED_SIZE: usize = 16;
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        u128::decode_from(r).map(Amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn checked_arithmetic() {
        assert_eq!(Amount(u128::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(1).checked_sub(Amount(2)), None);
        assert_eq!(Amount(u128::MAX).checked_mul(2), None);
        assert_eq!(Amount(10_000).bps(2_500), Amount(2_500));
    }

    #[test]
    fn parsing() {
        assert_eq!("1_000".parse::<Amount>().unwrap(), Amount(1000));
        assert!("-5".parse::<Amount>().unwrap_err().to_string().contains("non-negative"));
        assert!("1.5".parse::<Amount>().is_err());
        assert!("".parse::<Amount>().is_err());
        assert!("340282366920938463463374607431768211456".parse::<Amount>().is_err());
        assert_eq!(serde_json::from_str::<Amount>("\"12\"").unwrap(), Amount(12));
        assert_eq!(serde_json::from_str::<Amount>("12").unwrap(), Amount(12));
        assert!(serde_json::from_str::<Amount>("-1").is_err());
    }

    proptest! {
        #[test]
        fn bps_never_exceeds_whole(a in any::<u128>(), bps in 0u64..=10_000) {
            let part = Amount(a).bps(bps);
            prop_assert!(part <= Amount(a));
            // Exact when no overflow is possible.
            if a < u128::MAX / 10_000 {
                prop_assert_eq!(part.0, a * u128::from(bps) / 10_000);
            }
        }

        #[test]
        fn mul_div_matches_wide_math(a in any::<u64>(), n in 0u64..1_000_000, d in 1u64..1_000_000) {
            let exact = u128::from(a) * u128::from(n) / u128::from(d);
            prop_assert_eq!(Amount(u128::from(a)).mul_div(u128::from(n), u128::from(d)), Some(Amount(exact)));
        }
    }
}
