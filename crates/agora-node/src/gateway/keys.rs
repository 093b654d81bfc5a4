//! API keys of the gateway: each maps to an Agora account (whose key the node holds, to sign
//! that account's jobs) and a budget. Kept in `<data dir>/gateway/keys.toml`, which stores only
//! the BLAKE3 hash of each API key, and re-read on every request so `agora gateway key add`
//! takes effect on a running node. What each key has spent is kept beside it, one file per
//! key, replaced atomically after every settled request.

use crate::config::{load_key, write_key};
use agora_core::{AccountId, Amount, Hash, SecretKey};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Prefix of every API key, so a leaked one is recognisable.
pub const KEY_PREFIX: &str = "sk-agora-";

/// One API key's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Name (unique): used in logs and for the spend file.
    pub name: String,
    /// BLAKE3 of the API key.
    pub hash: Hash,
    /// The paying account's key file, relative to the gateway directory.
    pub account_key: PathBuf,
    /// Most the key may spend in total, base units.
    pub budget: Amount,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeysFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

/// The gateway's key directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// The key store of a node data directory.
    pub fn new(data_dir: &Path) -> Self {
        Self { dir: data_dir.join("gateway") }
    }

    fn keys_path(&self) -> PathBuf {
        self.dir.join("keys.toml")
    }

    fn spent_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.spent"))
    }

    /// Every key entry (none when the file does not exist yet).
    pub fn list(&self) -> anyhow::Result<Vec<KeyEntry>> {
        let path = self.keys_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let f: KeysFile =
                    toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
                Ok(f.key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Creates a key named `name` with `budget`, paying from `account` (a new account key is
    /// generated when none is given). Returns the API key, which is shown only this once.
    pub fn add(
        &self,
        name: &str,
        budget: Amount,
        account: Option<SecretKey>,
    ) -> anyhow::Result<(String, AccountId)> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bail!("a key name uses letters, digits, - and _ only, got {name:?}");
        }
        let mut keys = self.list()?;
        if keys.iter().any(|k| k.name == name) {
            bail!("a gateway key named {name:?} exists already; pick another name");
        }
        let account = account.unwrap_or_else(SecretKey::generate);
        let account_key = PathBuf::from(format!("{name}.key"));
        write_key(&self.dir.join(&account_key), &account)?;
        let api_key =
            format!("{KEY_PREFIX}{}", hex::encode(agora_store::encrypt::BlobKey::generate().as_bytes()));
        keys.push(KeyEntry { name: name.into(), hash: Hash::of(api_key.as_bytes()), account_key, budget });
        let text = toml::to_string(&KeysFile { key: keys })?;
        atomic_write(&self.keys_path(), text.as_bytes())?;
        Ok((api_key, account.public()))
    }

    /// The entry of `api_key`, if it is one of this node's keys.
    pub fn lookup(&self, api_key: &str) -> anyhow::Result<Option<KeyEntry>> {
        let hash = Hash::of(api_key.as_bytes());
        Ok(self.list()?.into_iter().find(|k| k.hash == hash))
    }

    /// The paying account's secret key of `entry`.
    pub fn account(&self, entry: &KeyEntry) -> anyhow::Result<SecretKey> {
        load_key(&self.dir.join(&entry.account_key))
    }

    /// What `name` has spent so far.
    pub fn spent(&self, name: &str) -> anyhow::Result<Amount> {
        let path = self.spent_path(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let v: u128 =
                    text.trim().parse().with_context(|| format!("{} is not an amount", path.display()))?;
                Ok(Amount(v))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Amount::ZERO),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Adds `amount` to what `name` has spent (callers serialise per key).
    pub fn record_spend(&self, name: &str, amount: Amount) -> anyhow::Result<Amount> {
        let total = self.spent(name)?.checked_add(amount).context("spend overflows")?;
        atomic_write(&self.spent_path(name), total.0.to_string().as_bytes())?;
        Ok(total)
    }
}

/// Writes `bytes` to `path` via a synced temporary file and a rename, so a crash leaves either
/// the old or the new contents.
fn atomic_write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().context("path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_value_and_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let (api, account) = store.add("alice", Amount(1_000), None).unwrap();
        assert!(api.starts_with(KEY_PREFIX));
        let entry = store.lookup(&api).unwrap().expect("found");
        assert_eq!(entry.budget, Amount(1_000));
        assert_eq!(store.account(&entry).unwrap().public(), account);
        assert!(store.lookup("sk-agora-wrong").unwrap().is_none());
        let file = std::fs::read_to_string(dir.path().join("gateway/keys.toml")).unwrap();
        assert!(!file.contains(&api), "the API key itself must not be stored");
        assert!(store.add("alice", Amount(1), None).unwrap_err().to_string().contains("exists"));
        assert!(store.add("no/slash", Amount(1), None).is_err());
    }

    #[test]
    fn spending_accumulates_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        assert_eq!(store.spent("bob").unwrap(), Amount::ZERO);
        store.record_spend("bob", Amount(30)).unwrap();
        assert_eq!(store.record_spend("bob", Amount(12)).unwrap(), Amount(42));
        assert_eq!(KeyStore::new(dir.path()).spent("bob").unwrap(), Amount(42));
    }
}
