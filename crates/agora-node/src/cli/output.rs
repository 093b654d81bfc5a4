//! Printing results: JSON with `--json`, plain text otherwise.

use serde::Serialize;

/// Prints `value` as pretty JSON when `json` is set, else the text `human` makes of it.
pub fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).expect("API types serialize"));
    } else {
        println!("{}", human(value));
    }
}
