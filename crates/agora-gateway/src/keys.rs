//! API keys of the gateway: each maps to an Agora account (whose key the node holds, to sign
//! that account's jobs) and a budget. Kept in `<data dir>/gateway/keys.toml`, which stores only
//! the BLAKE3 hash of each API key, and re-read on every request so `agora gateway key add`
//! takes effect on a running node. What each key has spent is kept beside it, one file per
//! key ([`Spend`]): a job is recorded at its maximum cost as soon as it is submitted, and
//! reconciled to what it actually cost once it settles, so spend is never lost with a
//! request that ends early. Every change is a read-modify-write of that file under the key's
//! lock, replaced atomically.

use agora_client::keyfile::{load_key, write_key, write_secret};
use agora_core::{AccountId, Amount, Hash, SecretKey};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// What one key has spent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    /// Settled jobs, at what they cost.
    pub settled: Amount,
    /// Jobs submitted and not yet reconciled, at their maximum cost.
    #[serde(default)]
    pub open: BTreeMap<u64, Amount>,
}

impl Spend {
    /// Settled plus open: what counts against the budget.
    pub fn total(&self) -> Option<Amount> {
        self.open.values().try_fold(self.settled, |t, a| t.checked_add(*a))
    }
}

/// The gateway's key directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
    locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl KeyStore {
    /// The key store of a node data directory.
    pub fn new(data_dir: &Path) -> Self {
        Self { dir: data_dir.join("gateway"), locks: Arc::default() }
    }

    /// Runs `f` holding `name`'s lock: every change to a key's spend is serialised.
    pub fn with_lock<T>(&self, name: &str, f: impl FnOnce() -> T) -> T {
        let lock = self.locks.lock().expect("not poisoned").entry(name.to_owned()).or_default().clone();
        let _held = lock.lock().expect("not poisoned");
        f()
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
        write_secret(&self.keys_path(), text.as_bytes())?;
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

    /// What `name` has spent: settled and open jobs. (A file holding a bare number, as older
    /// nodes wrote, is read as settled spend.)
    pub fn spend(&self, name: &str) -> anyhow::Result<Spend> {
        let path = self.spent_path(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u128>() {
                Ok(v) => Ok(Spend { settled: Amount(v), open: BTreeMap::new() }),
                Err(_) => serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a spend record", path.display())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Spend::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// What counts against `name`'s budget: settled spend plus open jobs at their maximum.
    pub fn spent(&self, name: &str) -> anyhow::Result<Amount> {
        self.spend(name)?.total().context("spend overflows")
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut Spend) -> anyhow::Result<()>) -> anyhow::Result<Spend> {
        self.with_lock(name, || {
            let mut spend = self.spend(name)?;
            f(&mut spend)?;
            spend.total().context("spend overflows")?;
            write_secret(&self.spent_path(name), serde_json::to_string(&spend)?.as_bytes())?;
            Ok(spend)
        })
    }

    /// Records that `name` submitted `job`, which may cost up to `max_cost` (durable before
    /// this returns).
    pub fn open_job(&self, name: &str, job: u64, max_cost: Amount) -> anyhow::Result<()> {
        self.update(name, |s| {
            s.open.insert(job, max_cost);
            Ok(())
        })
        .map(drop)
    }

    /// Reconciles `name`'s open `job` to what it `cost`; a job not open (settled already, or
    /// never recorded) is left alone, so this is safe to repeat. Returns the new total.
    pub fn settle_job(&self, name: &str, job: u64, cost: Amount) -> anyhow::Result<Amount> {
        let spend = self.update(name, |s| {
            if s.open.remove(&job).is_some() {
                s.settled = s.settled.checked_add(cost).context("spend overflows")?;
            }
            Ok(())
        })?;
        spend.total().context("spend overflows")
    }
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
        store.open_job("bob", 7, Amount(100)).unwrap();
        assert_eq!(store.spent("bob").unwrap(), Amount(100), "an open job counts at its maximum");
        assert_eq!(store.settle_job("bob", 7, Amount(30)).unwrap(), Amount(30));
        assert_eq!(store.settle_job("bob", 7, Amount(30)).unwrap(), Amount(30), "settling twice counts once");
        store.open_job("bob", 8, Amount(12)).unwrap();
        assert_eq!(store.settle_job("bob", 8, Amount(12)).unwrap(), Amount(42));
        assert_eq!(KeyStore::new(dir.path()).spent("bob").unwrap(), Amount(42), "durable");
        std::fs::write(dir.path().join("gateway").join("old.spent"), "17").unwrap();
        assert_eq!(store.spent("old").unwrap(), Amount(17), "older nodes' spend files still read");
    }
}
