//! Who keeps a blob from garbage collection, and until when.
//!
//! A pin is held by an owner: the node's operator (until unpinned), a job or a lease (until the
//! node releases it when that job or lease settles or fails), or an uploading account (until a
//! lapse time, so a requester's blobs survive while its job is prepared but an account cannot
//! hold disk forever). A blob is pinned while any pin on it is held; garbage collection may take
//! it once none is.
//!
//! On disk a blob's pins are its marker file, one `owner until_ms` line per pin (`-` for no
//! lapse time). An empty marker, as stores before owned pins wrote, is the operator's pin.

use serde::{Deserialize, Serialize};

/// The owner of the operator's pins.
pub const OPERATOR: &str = "operator";

/// One owner's hold on a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// Who holds it: [`OPERATOR`], `job:<id>`, `lease:<id>`, `upload:<account>`, …
    /// (ASCII letters, digits and `:_-.`, at most [`MAX_OWNER_LEN`] bytes).
    pub owner: String,
    /// Unix ms at which the pin lapses by itself; `None` holds until released.
    pub until_ms: Option<u64>,
}

/// Longest owner name.
pub const MAX_OWNER_LEN: usize = 128;

impl Pin {
    /// The operator's pin, held until the operator unpins.
    pub fn operator() -> Self {
        Pin { owner: OPERATOR.into(), until_ms: None }
    }

    /// A pin `owner` holds until it is released.
    pub fn held_by(owner: impl Into<String>) -> Self {
        Pin { owner: owner.into(), until_ms: None }
    }

    /// A pin `owner` holds until `until_ms` (unix ms), or until released before.
    pub fn until(owner: impl Into<String>, until_ms: u64) -> Self {
        Pin { owner: owner.into(), until_ms: Some(until_ms) }
    }

    /// Whether the owner name is one a marker line can hold.
    pub fn owner_is_valid(owner: &str) -> bool {
        !owner.is_empty()
            && owner.len() <= MAX_OWNER_LEN
            && owner.bytes().all(|b| b.is_ascii_alphanumeric() || b":_-.".contains(&b))
    }

    /// Whether the pin still holds at `now_ms`.
    pub fn holds_at(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }
}

/// Reads a marker file's pins. A line that does not parse is kept as the operator's pin, so a
/// damaged marker keeps its blob rather than losing it.
pub(crate) fn parse(text: &str) -> Vec<Pin> {
    let mut pins: Vec<Pin> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(owner), Some("-"), None) if Pin::owner_is_valid(owner) => Pin::held_by(owner),
                (Some(owner), Some(until), None) if Pin::owner_is_valid(owner) => match until.parse() {
                    Ok(until) => Pin::until(owner, until),
                    Err(_) => Pin::operator(),
                },
                _ => Pin::operator(),
            }
        })
        .collect();
    if pins.is_empty() {
        pins.push(Pin::operator());
    }
    dedup(pins)
}

/// Writes pins as a marker file's text.
pub(crate) fn render(pins: &[Pin]) -> String {
    pins.iter()
        .map(|p| match p.until_ms {
            Some(until) => format!("{} {until}\n", p.owner),
            None => format!("{} -\n", p.owner),
        })
        .collect()
}

/// `pins` with `pin` added, replacing an earlier pin of the same owner.
pub(crate) fn with(mut pins: Vec<Pin>, pin: Pin) -> Vec<Pin> {
    pins.retain(|p| p.owner != pin.owner);
    pins.push(pin);
    pins
}

/// One pin per owner (the last one read wins).
fn dedup(pins: Vec<Pin>) -> Vec<Pin> {
    pins.into_iter().fold(Vec::new(), with)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn markers_round_trip_and_damage_keeps_the_blob() {
        let pins = vec![Pin::operator(), Pin::held_by("job:7"), Pin::until("upload:ab12", 1_000)];
        assert_eq!(parse(&render(&pins)), pins);
        assert_eq!(parse(""), vec![Pin::operator()], "a marker from before owners");
        assert_eq!(parse("job:7 soon\n"), vec![Pin::operator()]);
        assert_eq!(parse("bad owner -\n"), vec![Pin::operator()]);
        assert_eq!(parse("job:7 -\njob:7 5\n"), vec![Pin::until("job:7", 5)], "one pin per owner");
        assert!(Pin::until("x", 10).holds_at(9) && !Pin::until("x", 10).holds_at(10));
        assert!(Pin::held_by("x").holds_at(u64::MAX));
    }

    proptest! {
        #[test]
        fn any_valid_pins_round_trip(
            owners in proptest::collection::btree_set("[a-z0-9:_.-]{1,40}", 1..6),
            untils in proptest::collection::vec(proptest::option::of(any::<u64>()), 6),
        ) {
            let pins: Vec<Pin> = owners
                .into_iter()
                .zip(untils)
                .map(|(owner, until_ms)| Pin { owner, until_ms })
                .collect();
            prop_assert_eq!(parse(&render(&pins)), pins);
        }
    }
}
