//! Key and secret files: written for their owner alone (0600), atomically where they may be
//! replaced, and never overwriting an existing key.

use agora_core::SecretKey;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// Reads a key file (hex seed).
pub fn load_key(path: &Path) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("cannot read key file {}; create one with `agora init` or `agora wallet new`", path.display())
    })?;
    SecretKey::from_hex(text.trim())
        .with_context(|| format!("key file {} is not a 64-hex-digit seed", path.display()))
}

/// Writes `bytes` to `path` readable and writable only by its owner (0600), atomically: a
/// temporary file beside it is written, synced and renamed over it, so a crash leaves the old
/// contents or the new, never a mix. For anything secret or confidential: keys, job records
/// holding input keys, a provider's state and plaintext items.
pub fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    // A pre-existing temporary file keeps its mode; make sure it is the owner's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Writes a key file readable only by its owner. Refuses to overwrite an existing key.
pub fn write_key(path: &Path, key: &SecretKey) -> anyhow::Result<()> {
    use std::io::Write;
    if path.exists() {
        bail!("{} already exists; refusing to overwrite a key", path.display());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{}", key.to_hex())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn secrets_are_written_for_the_owner_only_even_over_a_readable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs").join("1.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret(&path, b"input keys").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"input keys");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn keys_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let k = SecretKey::generate();
        write_key(&path, &k).unwrap();
        assert_eq!(load_key(&path).unwrap().public(), k.public());
        assert!(write_key(&path, &SecretKey::generate()).unwrap_err().to_string().contains("refusing"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("bad.key"), "xyz").unwrap();
        assert!(load_key(&dir.path().join("bad.key")).is_err());
    }
}
