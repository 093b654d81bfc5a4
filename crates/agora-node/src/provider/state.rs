//! The agent's durable memory: how far it has followed the chain, what it is doing for each
//! lease, and the plaintext items it must keep to serve auditors. Written atomically (temp
//! file, fsync, rename), so a crash leaves either the old or the new state.

use agora_core::Hash;
use agora_core::tx::{AuditId, LeaseId, Metering};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where a lease is in this provider's hands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Matched; computing (or about to).
    Queued,
    /// Outputs computed and stored; the commitment may not be on chain yet. Re-committing
    /// after a restart reuses exactly these outputs, so one lease never gets two commitments.
    Computed {
        /// Merkle root of the output items.
        root: Hash,
        /// Stored output blob.
        output: Hash,
        /// Number of output items.
        items: u32,
        /// Resources used.
        metering: Metering,
    },
    /// The commitment is on chain.
    Committed,
    /// Settled, failed or given up: nothing more to do.
    Closed,
}

/// One lease this provider holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Job.
    pub job: u64,
    /// Shard.
    pub shard: u32,
    /// Progress.
    pub phase: Phase,
}

/// Everything the agent persists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentState {
    /// Next block height to read events from.
    pub next_height: u64,
    /// Leases by id.
    pub leases: BTreeMap<LeaseId, LeaseRecord>,
    /// Audits already reported.
    pub audits_done: BTreeSet<AuditId>,
}

/// The state file and the item files beside it.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Uses (and creates) `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("items"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    fn file(&self) -> PathBuf {
        self.dir.join("agent.json")
    }

    /// Loads the state (empty on first start).
    pub fn load(&self) -> anyhow::Result<AgentState> {
        match std::fs::read(self.file()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is corrupt", self.file().display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.file().display())),
        }
    }

    /// Saves the state atomically, readable only by the owner (it holds input keys).
    pub fn save(&self, state: &AgentState) -> anyhow::Result<()> {
        crate::config::write_secret(&self.file(), &serde_json::to_vec_pretty(state)?)
    }

    /// Path of a lease's saved plaintext items (`inputs` or `outputs`).
    pub fn items_path(&self, lease: LeaseId, which: &str) -> PathBuf {
        self.dir.join("items").join(format!("{lease}.{which}"))
    }

    /// Where a lease's output blob waits, unpublished, until its commitment is final.
    pub fn pending_output_path(&self, lease: LeaseId) -> PathBuf {
        self.dir.join("pending").join(format!("{lease}.blob"))
    }

    /// Saves a lease's plaintext items, readable only by the owner.
    pub fn save_items(&self, lease: LeaseId, which: &str, items: &[Vec<u8>]) -> anyhow::Result<()> {
        let framed = agora_store::items::frame(items)?;
        crate::config::write_secret(&self.items_path(lease, which), &framed)
    }

    /// Deletes a lease's plaintext items (inputs and outputs) and any output blob still held,
    /// once nothing can ask for them: the lease settled or failed, so no audit will. Missing
    /// files are fine.
    pub fn remove_items(&self, lease: LeaseId) -> anyhow::Result<()> {
        let held = self.pending_output_path(lease);
        for path in [self.items_path(lease, "inputs"), self.items_path(lease, "outputs"), held] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot delete {}", path.display())),
            }
        }
        Ok(())
    }

    /// Loads a lease's plaintext items.
    pub fn load_items(&self, lease: LeaseId, which: &str) -> anyhow::Result<Vec<Vec<u8>>> {
        let path = self.items_path(lease, which);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(agora_store::items::Items::parse(&bytes)?.iter().map(<[u8]>::to_vec).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_items_persist() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path()).unwrap();
        assert_eq!(sd.load().unwrap().next_height, 0);
        let mut st = AgentState { next_height: 9, ..Default::default() };
        st.leases.insert(4, LeaseRecord { job: 1, shard: 0, phase: Phase::Committed });
        sd.save(&st).unwrap();
        let back = sd.load().unwrap();
        assert_eq!(back.next_height, 9);
        assert_eq!(back.leases[&4].phase, Phase::Committed);
        sd.save_items(4, "outputs", &[vec![1], vec![2, 3]]).unwrap();
        sd.save_items(4, "inputs", &[vec![9]]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(sd.items_path(4, "inputs")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "plaintext items are the owner's alone");
        }
        assert_eq!(sd.load_items(4, "outputs").unwrap(), vec![vec![1], vec![2, 3]]);
        sd.remove_items(4).unwrap();
        assert!(!sd.items_path(4, "inputs").exists() && !sd.items_path(4, "outputs").exists());
        sd.remove_items(4).expect("removing twice is fine");
    }
}
