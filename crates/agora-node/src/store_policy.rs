//! Who may store blobs on this node, and how much.
//!
//! A node's content store holds what jobs need: requesters' inputs and models, providers'
//! outputs. Anyone who can reach the API could otherwise fill its disk (a validator's too, where
//! chain data lives). So every write is signed ([`agora_store::http::auth`]) and admitted only
//! for an account with a reason to store here:
//! - the node's own operator (its key), always;
//! - on a node that runs the chain: a registered provider, or an account funded with at least
//!   `min_balance` (a requester preparing a job pays for it from there);
//!
//! each within a quota of bytes per day. Listing the store and unpinning are the operator's.

use agora_chain::ChainHandle;
use agora_core::{Amount, PublicKey};
use agora_store::http::auth::WritePolicy;
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a quota window lasts, ms.
const WINDOW_MS: u64 = 24 * 3_600_000;

/// The node's write policy.
pub struct NodeWritePolicy {
    operator: PublicKey,
    chain: Option<ChainHandle>,
    min_balance: Amount,
    quota_bytes: u64,
    /// Per account: (window start, bytes admitted in it).
    used: Mutex<HashMap<PublicKey, (u64, u64)>>,
}

impl NodeWritePolicy {
    /// A policy for the node whose key is `operator`, reading accounts from `chain` if it runs
    /// one; each other account may store `quota_bytes` a day if it has at least `min_balance`
    /// or is a registered provider.
    pub fn new(
        operator: PublicKey,
        chain: Option<ChainHandle>,
        min_balance: Amount,
        quota_bytes: u64,
    ) -> Self {
        Self { operator, chain, min_balance, quota_bytes, used: Mutex::default() }
    }

    fn has_reason(&self, account: &PublicKey) -> Result<(), String> {
        let Some(chain) = &self.chain else {
            return Err(format!(
                "this node stores only its operator's blobs (account {account} is not it); upload to a node that runs the chain"
            ));
        };
        let snapshot = chain.snapshot();
        let state = &snapshot.state;
        if state.provider(account).is_some() || state.balance(account) >= self.min_balance {
            return Ok(());
        }
        Err(format!(
            "account {account} has no reason to store here: fund it with at least {} (requesters pay for their jobs from it) or register it as a provider",
            self.min_balance
        ))
    }

    fn charge(&self, account: &PublicKey, bytes: u64, now_ms: u64) -> Result<(), String> {
        let mut used = self.used.lock().expect("not poisoned");
        if used.len() > 100_000 {
            used.retain(|_, (start, _)| now_ms.saturating_sub(*start) < WINDOW_MS);
        }
        let entry = used.entry(*account).or_insert((now_ms, 0));
        if now_ms.saturating_sub(entry.0) >= WINDOW_MS {
            *entry = (now_ms, 0);
        }
        let total = entry.1.saturating_add(bytes);
        if total > self.quota_bytes {
            return Err(format!(
                "account {account} has used its quota of {} MiB a day on this node; wait, or store fewer bytes",
                self.quota_bytes >> 20
            ));
        }
        entry.1 = total;
        Ok(())
    }
}

impl WritePolicy for NodeWritePolicy {
    fn admit(&self, account: &PublicKey, bytes: u64) -> Result<(), String> {
        if *account == self.operator {
            return Ok(());
        }
        self.has_reason(account)?;
        self.charge(account, bytes, agora_store::http::auth::now_ms())
    }

    fn may_list(&self, account: &PublicKey) -> bool {
        *account == self.operator
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::SecretKey;

    #[test]
    fn quotas_are_per_account_and_per_day() {
        let operator = SecretKey::from_label("op").public();
        let p = NodeWritePolicy::new(operator, None, Amount(1), 100);
        let a = SecretKey::from_label("a").public();
        p.charge(&a, 60, 0).unwrap();
        assert!(p.charge(&a, 60, 1).unwrap_err().contains("quota"));
        p.charge(&SecretKey::from_label("b").public(), 60, 1).expect("another account's quota");
        p.charge(&a, 60, WINDOW_MS).expect("a new day");
        assert!(p.admit(&a, 1).unwrap_err().contains("only its operator"), "no chain: operator only");
        p.admit(&operator, u64::MAX).expect("the operator is not limited");
        assert!(p.may_list(&operator) && !p.may_list(&a));
    }
}
