//! Resource classes, regions and network coordinates: what is traded and where it runs.

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::codec_struct;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest class name accepted.
pub const MAX_CLASS_LEN: usize = 64;
/// Longest region name accepted.
pub const MAX_REGION_LEN: usize = 32;

/// The kind of device a class sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// General-purpose CPU cores.
    Cpu,
    /// Accelerators (GPUs).
    Gpu,
}

/// A tradeable, interchangeable unit of hardware; the unit of quantity is one device-second.
///
/// Written `kind.model[-<N>g]`, e.g. `cpu.x86_64` or `gpu.nvidia.h100-80g`: the device kind,
/// a model name (lowercase letters, digits, `.`, `_`), and an optional memory tier in GiB.
/// Every provider of a class offers interchangeable units, so the market can clear each class
/// at one price. Region and carbon intensity are provider attributes that orders may
/// constrain, not part of the class, so classes stay thick.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceClass {
    /// CPU or GPU.
    pub kind: DeviceKind,
    /// Model name, e.g. `x86_64` or `nvidia.h100`.
    pub model: String,
    /// Device memory tier in GiB, for accelerators.
    pub memory_gib: Option<u32>,
}

/// Why a class or region name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct ParseNameError {
    /// "resource class" or "region".
    pub what: &'static str,
    /// The rejected text.
    pub input: String,
    /// What is wrong with it and the expected form.
    pub reason: &'static str,
}

impl FromStr for ResourceClass {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseNameError { what: "resource class", input: s.to_string(), reason };
        if s.is_empty() || s.len() > MAX_CLASS_LEN {
            return Err(err("must be 1-64 characters, e.g. cpu.x86_64 or gpu.nvidia.h100-80g"));
        }
        let (kind, rest) = s.split_once('.').ok_or_else(|| err("expected kind.model, e.g. cpu.x86_64"))?;
        let kind = match kind {
            "cpu" => DeviceKind::Cpu,
            "gpu" => DeviceKind::Gpu,
            _ => return Err(err("kind must be cpu or gpu")),
        };
        let (model, memory_gib) = match rest.rsplit_once('-') {
            Some((model, tier)) if tier.ends_with('g') => {
                let n: u32 = tier[..tier.len() - 1]
                    .parse()
                    .map_err(|_| err("memory tier must look like -80g (GiB)"))?;
                if n == 0 {
                    return Err(err("memory tier must be at least 1 GiB"));
                }
                (model, Some(n))
            }
            _ => (rest, None),
        };
        let valid = !model.is_empty()
            && !model.starts_with('.')
            && !model.ends_with('.')
            && model.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
        if !valid {
            return Err(err("model must be lowercase letters, digits, '.' and '_'"));
        }
        Ok(Self { kind, model: model.to_string(), memory_gib })
    }
}

impl fmt::Display for ResourceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Gpu => "gpu",
        };
        write!(f, "{kind}.{}", self.model)?;
        if let Some(m) = self.memory_gib {
            write!(f, "-{m}g")?;
        }
        Ok(())
    }
}

/// Implements serde (as a string) and the canonical codec (as a bounded string that must
/// parse) for a type with `FromStr` + `Display`.
macro_rules! string_codec {
    ($t:ty, $max:expr, $ctx:expr) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Encode for $t {
            fn encode_to(&self, out: &mut Vec<u8>) {
                self.to_string().encode_to(out);
            }
        }
        impl Decode for $t {
            fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                let s = r.string($max, $ctx)?;
                let v: $t = s.parse().map_err(|_| DecodeError::invalid($ctx, "not a valid name"))?;
                // Canonical: the text must be exactly how the value prints.
                if v.to_string() != s {
                    return Err(DecodeError::invalid($ctx, "non-canonical spelling"));
                }
                Ok(v)
            }
        }
    };
}
string_codec!(ResourceClass, MAX_CLASS_LEN, "ResourceClass");

/// A region name such as `eu-west` or `local`: lowercase letters, digits and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(String);

impl Region {
    /// The region name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Region {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= MAX_REGION_LEN
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Region(s.to_string()))
        } else {
            Err(ParseNameError {
                what: "region",
                input: s.to_string(),
                reason: "must be 1-32 characters of a-z, 0-9 and '-', e.g. eu-west",
            })
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
string_codec!(Region, MAX_REGION_LEN, "Region");

/// Dimensions of a network coordinate (Serf uses 8).
pub const COORD_DIMS: usize = 4;

/// A Vivaldi network coordinate in integer units of 10 µs, so the ledger can compare
/// predicted latencies deterministically.
///
/// Predicted RTT between two nodes = Euclidean distance of `vec` + both `height`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Coord {
    /// Position in the Euclidean part of the space.
    pub vec: [i32; COORD_DIMS],
    /// Non-negative height: the access-link delay added to every path.
    pub height: u32,
}

impl Encode for Coord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        for v in self.vec {
            v.encode_to(out);
        }
        self.height.encode_to(out);
    }
}

impl Decode for Coord {
    const MIN_ENCODED_SIZE: usize = 4 * COORD_DIMS + 4;
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut vec = [0i32; COORD_DIMS];
        for v in &mut vec {
            *v = i32::decode_from(r)?;
        }
        Ok(Self { vec, height: u32::decode_from(r)? })
    }
}

impl Coord {
    /// Units per millisecond.
    pub const UNITS_PER_MS: u64 = 100;

    /// Predicted round-trip time to `other`, in microseconds.
    pub fn predicted_rtt_us(&self, other: &Coord) -> u64 {
        let sq: u128 = self
            .vec
            .iter()
            .zip(other.vec.iter())
            .map(|(a, b)| {
                let d = i128::from(*a) - i128::from(*b);
                (d * d) as u128
            })
            .sum();
        let units = isqrt(sq) as u64 + u64::from(self.height) + u64::from(other.height);
        units * 10
    }
}

/// Integer square root (floor), exact for every `u128`.
pub fn isqrt(n: u128) -> u128 {
    if n < 2 {
        return n;
    }
    // Newton's method from an upper bound; converges monotonically.
    let mut x = 1u128 << (n.ilog2() / 2 + 1);
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// Provider hardware as detected and benchmarked, registered on chain so claims can be checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Hardware {
    /// CPU model string.
    pub cpu_model: String,
    /// Logical cores.
    pub cores: u32,
    /// System memory in MiB.
    pub memory_mib: u64,
    /// Accelerators, e.g. `nvidia.h100-80g`; empty for CPU-only hosts.
    pub gpus: Vec<String>,
    /// Score of the standard benchmark (higher is faster; see the provider agent).
    pub benchmark_score: u64,
}
codec_struct!(Hardware { cpu_model: string(128), cores, memory_mib, gpus: vec(16), benchmark_score });

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classes_parse_and_print() {
        for s in ["cpu.x86_64", "gpu.nvidia.h100-80g", "cpu.aarch64", "gpu.amd.mi300x-192g"] {
            let c: ResourceClass = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
            assert_eq!(ResourceClass::decode(&c.encode()).unwrap(), c);
        }
        let c: ResourceClass = "gpu.nvidia.h100-80g".parse().unwrap();
        assert_eq!((c.kind, c.model.as_str(), c.memory_gib), (DeviceKind::Gpu, "nvidia.h100", Some(80)));
        for bad in ["", "tpu.v5", "cpu", "cpu.", "cpu.X86", "gpu.nvidia.h100-0g", "gpu.a-xg"] {
            assert!(bad.parse::<ResourceClass>().is_err(), "{bad}");
        }
    }

    #[test]
    fn regions() {
        assert!("eu-west".parse::<Region>().is_ok());
        let err = "EU West".parse::<Region>().unwrap_err();
        assert!(err.to_string().contains("a-z"));
    }

    #[test]
    fn rtt_is_symmetric_and_includes_heights() {
        let a = Coord { vec: [0, 0, 0, 0], height: 100 };
        let b = Coord { vec: [300, 400, 0, 0], height: 50 };
        assert_eq!(a.predicted_rtt_us(&b), (500 + 150) * 10);
        assert_eq!(a.predicted_rtt_us(&b), b.predicted_rtt_us(&a));
    }

    proptest! {
        #[test]
        fn isqrt_is_floor_sqrt(n in any::<u128>()) {
            let r = isqrt(n);
            prop_assert!(r * r <= n);
            prop_assert!((r + 1).checked_mul(r + 1).is_none_or(|s| s > n));
        }
    }
}
