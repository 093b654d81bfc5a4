//! Data sets as CSV: one example per row, numeric features, the class label last.
//!
//! This is the layout of scikit-learn's bundled data (`digits.csv.gz`: 1,797 rows of 64
//! pixel values 0–16 and a label). Feature values are used as given; the training executor
//! normalises them.

use crate::items::training::Example;
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// Most rows read from one file.
pub const MAX_ROWS: usize = 1 << 20;

/// Reads `path` (`.csv` or `.csv.gz`) into examples.
pub fn read_csv_examples(path: &Path) -> Result<Vec<Example>, String> {
    let raw = std::fs::read(path).map_err(|e| e.to_string())?;
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        GzDecoder::new(raw.as_slice())
            .read_to_string(&mut s)
            .map_err(|e| format!("not gzip-compressed text: {e}"))?;
        s
    } else {
        String::from_utf8(raw).map_err(|_| "not UTF-8 text".to_string())?
    };
    parse_csv_examples(&text)
}

/// Parses CSV rows (`f1,…,fn,label`) into examples; every row must have the same width.
pub fn parse_csv_examples(text: &str) -> Result<Vec<Example>, String> {
    let mut out = Vec::new();
    let mut width = None;
    for (line_no, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        if out.len() >= MAX_ROWS {
            return Err(format!("more than {MAX_ROWS} rows"));
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() < 2 || width.is_some_and(|w| w != cells.len()) {
            return Err(format!(
                "line {}: expected {} comma-separated values",
                line_no + 1,
                width.unwrap_or(2)
            ));
        }
        width = Some(cells.len());
        let (label, features) = cells.split_last().expect("at least two cells");
        let label: u32 = label
            .parse()
            .map_err(|_| format!("line {}: label {label:?} is not a class index", line_no + 1))?;
        let features = features
            .iter()
            .map(|c| c.parse::<f32>().ok().filter(|v| v.is_finite()))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| format!("line {}: a feature is not a finite number", line_no + 1))?;
        out.push(Example { label, features });
    }
    if out.is_empty() {
        return Err("no rows".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_and_rejects_ragged() {
        let ex = parse_csv_examples("0,1,2,3\n4,5,6,1\n").unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[1], Example { label: 1, features: vec![4.0, 5.0, 6.0] });
        assert!(parse_csv_examples("0,1\n1,2,3\n").is_err());
        assert!(parse_csv_examples("0,x,1\n").is_err());
        assert!(parse_csv_examples("").is_err());
    }
}
