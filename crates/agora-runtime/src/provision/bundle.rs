//! The model bundle: one blob per model, so a model has one content hash.
//!
//! Providers fetch a model from any content store by that hash (verifying every chunk) and
//! unpack it; the bundle is also what a job manifest's `model` field names.
//!
//! Format (canonical: the same files always give the same bytes):
//!
//! ```text
//! magic    8 bytes  "AGMODEL1"
//! count    u32 LE   number of files, 1..=64
//! entries  count ×  name (u32 LE length + UTF-8, sorted, unique), size (u64 LE),
//!                   BLAKE3 of the contents (32 bytes)
//! contents          the files' bytes, concatenated in entry order
//! ```
//!
//! Names are relative paths whose `/`-separated segments use only `A-Z a-z 0-9 . _ -` and
//! are not `.` or `..`, so unpacking can never write outside its directory.

use super::error::{IoContext, ProvisionError};
use agora_core::Hash;
use std::io::{BufReader, Read, Write};
use std::path::Path;

/// The first bytes of every bundle.
pub const MAGIC: &[u8; 8] = b"AGMODEL1";
/// Most files one bundle may hold.
pub const MAX_FILES: usize = 64;
/// Longest file name.
pub const MAX_NAME: usize = 255;

/// One file in a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEntry {
    /// Relative path.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the contents.
    pub blake3: Hash,
}

/// Whether `name` is a safe, canonical bundle path.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        })
}

fn header(entries: &[BundleEntry]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&(e.name.len() as u32).to_le_bytes());
        out.extend_from_slice(e.name.as_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&e.blake3.0);
    }
    out
}

fn bad(path: &Path, reason: impl Into<String>) -> ProvisionError {
    ProvisionError::Archive { kind: "model bundle", path: path.to_path_buf(), reason: reason.into() }
}

/// Writes the bundle of `names` (files under `dir`) to `out` and returns its BLAKE3 hash and
/// entries. The names are sorted and checked first.
pub fn write_bundle(
    dir: &Path,
    names: &[String],
    out: &mut dyn Write,
) -> Result<(Hash, Vec<BundleEntry>), ProvisionError> {
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    if names.is_empty() || names.len() > MAX_FILES {
        return Err(bad(dir, format!("a bundle holds 1..={MAX_FILES} files, got {}", names.len())));
    }
    let mut entries = Vec::with_capacity(names.len());
    for name in &names {
        if !valid_name(name) {
            return Err(bad(dir, format!("file name {name:?} is not a safe relative path")));
        }
        let d = super::digest::digest_file(&dir.join(name))?;
        entries.push(BundleEntry { name: name.clone(), size: d.size, blake3: d.blake3 });
    }
    let mut hasher = blake3::Hasher::new();
    let head = header(&entries);
    hasher.update(&head);
    out.write_all(&head).ctx("writing bundle for", dir)?;
    let mut buf = vec![0u8; 1 << 20];
    for e in &entries {
        let path = dir.join(&e.name);
        let mut file = std::fs::File::open(&path).ctx("opening", &path)?;
        let mut copied = 0u64;
        loop {
            let n = file.read(&mut buf).ctx("reading", &path)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).ctx("writing bundle for", dir)?;
            copied += n as u64;
        }
        if copied != e.size {
            return Err(bad(&path, "the file changed while it was being bundled"));
        }
    }
    Ok((Hash(*hasher.finalize().as_bytes()), entries))
}

/// The bundle hash of `names` under `dir`, without writing the bundle anywhere.
pub fn bundle_hash(dir: &Path, names: &[String]) -> Result<Hash, ProvisionError> {
    Ok(write_bundle(dir, names, &mut std::io::sink())?.0)
}

fn read_exact(r: &mut impl Read, n: usize, path: &Path) -> Result<Vec<u8>, ProvisionError> {
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).map_err(|e| bad(path, format!("truncated header: {e}")))?;
    Ok(buf)
}

fn read_u32(r: &mut impl Read, path: &Path) -> Result<u32, ProvisionError> {
    Ok(u32::from_le_bytes(read_exact(r, 4, path)?.try_into().expect("4 bytes")))
}

/// Unpacks the bundle at `bundle` into `dest` (which must not exist yet), checking the
/// bundle's hash against `expected` and every file against its entry.
pub fn unpack_bundle(
    bundle: &Path,
    expected: &Hash,
    dest: &Path,
) -> Result<Vec<BundleEntry>, ProvisionError> {
    let file = std::fs::File::open(bundle).ctx("opening", bundle)?;
    let mut r = BufReader::new(file);
    let mut whole = blake3::Hasher::new();
    if read_exact(&mut r, 8, bundle)? != MAGIC {
        return Err(bad(bundle, "wrong magic bytes (not an AGMODEL1 bundle)"));
    }
    let count = read_u32(&mut r, bundle)? as usize;
    if count == 0 || count > MAX_FILES {
        return Err(bad(bundle, format!("declares {count} files; 1..={MAX_FILES} allowed")));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let len = read_u32(&mut r, bundle)? as usize;
        if len > MAX_NAME {
            return Err(bad(bundle, "file name too long"));
        }
        let name = String::from_utf8(read_exact(&mut r, len, bundle)?)
            .map_err(|_| bad(bundle, "file name is not UTF-8"))?;
        if !valid_name(&name) || entries.last().is_some_and(|p: &BundleEntry| p.name >= name) {
            return Err(bad(bundle, format!("file name {name:?} is unsafe or out of order")));
        }
        let size = u64::from_le_bytes(read_exact(&mut r, 8, bundle)?.try_into().expect("8 bytes"));
        let blake3 = Hash(read_exact(&mut r, 32, bundle)?.try_into().expect("32 bytes"));
        entries.push(BundleEntry { name, size, blake3 });
    }
    whole.update(&header(&entries));
    std::fs::create_dir_all(dest).ctx("creating", dest)?;
    let mut buf = vec![0u8; 1 << 20];
    for e in &entries {
        let path = dest.join(&e.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).ctx("creating", parent)?;
        }
        let mut out = std::fs::File::create(&path).ctx("creating", &path)?;
        let mut part = blake3::Hasher::new();
        let mut left = e.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = r.read(&mut buf[..want]).ctx("reading", bundle)?;
            if n == 0 {
                return Err(bad(bundle, format!("ends inside {}", e.name)));
            }
            part.update(&buf[..n]);
            whole.update(&buf[..n]);
            out.write_all(&buf[..n]).ctx("writing", &path)?;
            left -= n as u64;
        }
        if Hash(*part.finalize().as_bytes()) != e.blake3 {
            return Err(bad(bundle, format!("{} does not match its BLAKE3 entry", e.name)));
        }
    }
    if r.read(&mut buf[..1]).ctx("reading", bundle)? != 0 {
        return Err(bad(bundle, "trailing bytes after the last file"));
    }
    let actual = Hash(*whole.finalize().as_bytes());
    if actual != *expected {
        return Err(bad(bundle, format!("hash is {actual}, expected {expected}")));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_canonical_and_checked() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("b.txt"), b"bee").unwrap();
        std::fs::create_dir(src.path().join("sub")).unwrap();
        std::fs::write(src.path().join("sub/a.bin"), [0u8, 1, 2]).unwrap();
        let names = vec!["sub/a.bin".to_string(), "b.txt".to_string()];
        let mut bytes = Vec::new();
        let (hash, entries) = write_bundle(src.path(), &names, &mut bytes).unwrap();
        assert_eq!(entries[0].name, "b.txt");
        assert_eq!(Hash::of(&bytes), hash);
        assert_eq!(bundle_hash(src.path(), &[names[1].clone(), names[0].clone()]).unwrap(), hash);

        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("m.bundle");
        std::fs::write(&path, &bytes).unwrap();
        unpack_bundle(&path, &hash, &out.path().join("x")).unwrap();
        assert_eq!(std::fs::read(out.path().join("x/sub/a.bin")).unwrap(), [0, 1, 2]);

        let mut tampered = bytes.clone();
        *tampered.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &tampered).unwrap();
        assert!(unpack_bundle(&path, &hash, &out.path().join("y")).is_err());
        assert!(
            !valid_name("../etc")
                && !valid_name("a//b")
                && !valid_name("/abs")
                && valid_name("1_Pooling/config.json")
        );
    }
}
