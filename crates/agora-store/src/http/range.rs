//! The HTTP `Range` header (RFC 9110 §14.1.2), restricted to one byte range per request.

use std::ops::Range;

/// Why a `Range` header could not be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not of the form `bytes=a-b`, `bytes=a-` or `bytes=-n`.
    #[error("malformed Range header {0:?}: use bytes=FIRST-LAST, bytes=FIRST- or bytes=-SUFFIX_LENGTH")]
    Malformed(String),
    /// More than one range.
    #[error("only one byte range per request is supported, got {0:?}; request ranges one at a time")]
    Multiple(String),
    /// The range starts past the end of the blob.
    #[error("the range starts beyond the end of the {size}-byte blob")]
    Unsatisfiable {
        /// The blob's size.
        size: u64,
    },
}

/// Parses a `Range` header for a blob of `size` bytes into the half-open range to serve.
pub fn parse_range(header: &str, size: u64) -> Result<Range<u64>, RangeError> {
    let malformed = || RangeError::Malformed(header.to_owned());
    let (unit, spec) = header.trim().split_once('=').ok_or_else(malformed)?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Err(malformed());
    }
    if spec.contains(',') {
        return Err(RangeError::Multiple(header.to_owned()));
    }
    let (first, last) = spec.trim().split_once('-').ok_or_else(malformed)?;
    let number = |s: &str| -> Result<u64, RangeError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        s.parse().map_err(|_| malformed())
    };
    let unsatisfiable = RangeError::Unsatisfiable { size };
    match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n = number(suffix)?;
            if n == 0 || size == 0 {
                return Err(unsatisfiable);
            }
            Ok(size - n.min(size)..size)
        }
        (first, last) => {
            let start = number(first)?;
            let end = if last.is_empty() {
                size
            } else {
                let last = number(last)?;
                if last < start {
                    return Err(malformed());
                }
                last.saturating_add(1).min(size)
            };
            if start >= size {
                return Err(unsatisfiable);
            }
            Ok(start..end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(parse_range("bytes=0-0", 10), Ok(0..1));
        assert_eq!(parse_range("bytes=2-5", 10), Ok(2..6));
        assert_eq!(parse_range("bytes=2-500", 10), Ok(2..10));
        assert_eq!(parse_range("bytes=7-", 10), Ok(7..10));
        assert_eq!(parse_range("bytes=-3", 10), Ok(7..10));
        assert_eq!(parse_range("bytes=-30", 10), Ok(0..10));
        assert_eq!(parse_range(" Bytes = 1 - 2 ", 10), Ok(1..3));
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(parse_range("bytes=10-", 10), Err(RangeError::Unsatisfiable { size: 10 }));
        assert_eq!(parse_range("bytes=-0", 10), Err(RangeError::Unsatisfiable { size: 10 }));
        assert_eq!(parse_range("bytes=-5", 0), Err(RangeError::Unsatisfiable { size: 0 }));
        assert_eq!(parse_range("bytes=0-", 0), Err(RangeError::Unsatisfiable { size: 0 }));
        for bad in [
            "bytes=5-2",
            "items=0-1",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "0-1",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
        ] {
            assert!(matches!(parse_range(bad, 10), Err(RangeError::Malformed(_))), "{bad}");
        }
        assert!(matches!(parse_range("bytes=0-1,3-4", 10), Err(RangeError::Multiple(_))));
        assert!(parse_range("bytes=0-1", 10).is_ok());
    }
}
