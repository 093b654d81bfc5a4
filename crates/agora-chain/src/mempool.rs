//! The mempool: signed transactions waiting for a block.
//!
//! It admits a transaction only if it could be included soon — a valid signature (checked
//! before it gets here, see [`VerifiedTx`]), a canonical encoding, a nonce
//! within a window above the sender's next nonce, a fee at least the minimum, a sender able to
//! pay it — de-duplicates by id, keeps one transaction per (sender, nonce) (a higher fee
//! replaces a lower one), and stays within fixed bounds, evicting the lowest-fee transaction
//! when a better one arrives and refusing with a clear reason otherwise. Block proposals take
//! transactions by fee, then arrival, while keeping each sender's nonces consecutive.

use agora_core::{AccountId, Amount, Encode, Hash, SignedTx};
use agora_ledger::{State, TxRejection, accounts};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Capacity limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most transactions held.
    pub max_txs: usize,
    /// Most encoded bytes held.
    pub max_bytes: usize,
    /// How far above the sender's next nonce a transaction may be.
    pub nonce_window: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_txs: 50_000, max_bytes: 64 << 20, nonce_window: 64 }
    }
}

/// Why the mempool refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// The ledger would refuse it (signature, fee, funds).
    #[error("{0}")]
    Rejected(TxRejection),
    /// Its nonce was already used.
    #[error("nonce {got} is already used (account's next nonce is {next})")]
    NonceUsed {
        /// The transaction's nonce.
        got: u64,
        /// The account's next nonce.
        next: u64,
    },
    /// Its nonce is too far ahead.
    #[error(
        "nonce {got} is too far ahead of the account's next nonce {next} (window {window}); send the missing ones first"
    )]
    NonceGap {
        /// The transaction's nonce.
        got: u64,
        /// The account's next nonce.
        next: u64,
        /// Allowed distance.
        window: u64,
    },
    /// Already pending.
    #[error("transaction {0} is already pending")]
    Duplicate(Hash),
    /// Not checked: an earlier transaction of the same request had an invalid signature.
    #[error(
        "not checked: transaction {0} of this request has an invalid signature, and nothing after it is checked; resend this one without it"
    )]
    AfterForgery(usize),
    /// Another transaction with this nonce pays at least as much.
    #[error(
        "a pending transaction with the same nonce pays a fee of {existing}; raise the fee to replace it"
    )]
    Underpriced {
        /// Fee of the pending one.
        existing: Amount,
    },
    /// Full, and this transaction does not outbid the cheapest pending one.
    #[error(
        "mempool is full ({txs} transactions, {bytes} bytes); retry later or raise the fee above {floor}"
    )]
    Full {
        /// Transactions held.
        txs: usize,
        /// Bytes held.
        bytes: usize,
        /// Fee to beat.
        floor: Amount,
    },
}

/// A transaction whose signature was checked for this chain. Signatures are checked where
/// transactions arrive (the API's bounded verification pool, the gossip task), so the
/// executor, which consensus waits on, never spends time on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTx(SignedTx);

impl VerifiedTx {
    /// Checks `tx`'s signature for `chain_id`.
    pub fn check(tx: SignedTx, chain_id: &str) -> Result<Self, MempoolError> {
        tx.verify(chain_id).map_err(|e| MempoolError::Rejected(TxRejection::Signature(e.to_string())))?;
        Ok(Self(tx))
    }

    /// The transaction.
    pub fn signed(&self) -> &SignedTx {
        &self.0
    }
}

#[derive(Debug, Clone)]
struct Entry {
    tx: SignedTx,
    size: usize,
    seq: u64,
}

/// Pending transactions, bounded in count and bytes.
#[derive(Debug, Default)]
pub struct Mempool {
    limits: Limits,
    by_id: HashMap<Hash, Entry>,
    /// Per sender: nonce → id.
    by_sender: BTreeMap<AccountId, BTreeMap<u64, Hash>>,
    /// Eviction order: lowest fee first, then newest first.
    by_fee: BTreeSet<(Amount, Reverse<u64>, Hash)>,
    bytes: usize,
    seq: u64,
}

impl Mempool {
    /// An empty pool with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Encoded bytes pending.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Transactions admitted so far, replacements included: it changes exactly when the pool
    /// gained a transaction, which is what can turn an empty block into a full one.
    pub fn admitted(&self) -> u64 {
        self.seq
    }

    /// Whether `id` is pending.
    pub fn contains(&self, id: &Hash) -> bool {
        self.by_id.contains_key(id)
    }

    /// Admits `tx` against the latest `state`. Returns its id.
    pub fn insert(&mut self, tx: VerifiedTx, state: &State) -> Result<Hash, MempoolError> {
        let VerifiedTx(tx) = tx;
        let id = tx.id();
        if self.by_id.contains_key(&id) {
            return Err(MempoolError::Duplicate(id));
        }
        let size = tx.encode().len();
        let sender = tx.tx.sender;
        let next = state.nonce(&sender);
        let got = tx.tx.nonce;
        if got < next {
            return Err(MempoolError::NonceUsed { got, next });
        }
        if got >= next + self.limits.nonce_window {
            return Err(MempoolError::NonceGap { got, next, window: self.limits.nonce_window });
        }
        accounts::check_except_nonce_signed(state, &tx).map_err(MempoolError::Rejected)?;
        // Replace-by-fee for the same (sender, nonce).
        if let Some(old) = self.by_sender.get(&sender).and_then(|m| m.get(&got)).copied() {
            let existing = self.by_id[&old].tx.tx.fee;
            if tx.tx.fee <= existing {
                return Err(MempoolError::Underpriced { existing });
            }
            self.remove(&old);
        }
        // Room: evict cheaper transactions, or refuse.
        while self.by_id.len() >= self.limits.max_txs || self.bytes + size > self.limits.max_bytes {
            let Some(&(floor, _, cheapest)) = self.by_fee.iter().next() else { break };
            if floor >= tx.tx.fee {
                return Err(MempoolError::Full { txs: self.by_id.len(), bytes: self.bytes, floor });
            }
            self.remove(&cheapest);
        }
        self.seq += 1;
        let seq = self.seq;
        self.by_fee.insert((tx.tx.fee, Reverse(seq), id));
        self.by_sender.entry(sender).or_default().insert(got, id);
        self.bytes += size;
        self.by_id.insert(id, Entry { tx, size, seq });
        Ok(id)
    }

    /// Removes a transaction (included, or found invalid).
    pub fn remove(&mut self, id: &Hash) -> Option<SignedTx> {
        let e = self.by_id.remove(id)?;
        self.by_fee.remove(&(e.tx.tx.fee, Reverse(e.seq), *id));
        if let Some(m) = self.by_sender.get_mut(&e.tx.tx.sender) {
            m.remove(&e.tx.tx.nonce);
            if m.is_empty() {
                self.by_sender.remove(&e.tx.tx.sender);
            }
        }
        self.bytes -= e.size;
        Some(e.tx)
    }

    /// Drops everything whose nonce `state` has already consumed (after a block is final).
    pub fn prune(&mut self, state: &State) {
        let stale: Vec<Hash> = self
            .by_sender
            .iter()
            .flat_map(|(sender, m)| {
                let next = state.nonce(sender);
                m.range(..next).map(|(_, id)| *id).collect::<Vec<_>>()
            })
            .collect();
        for id in stale {
            self.remove(&id);
        }
    }

    /// Candidate transactions for a block on top of `state`, best first: each step takes the
    /// highest-fee (then earliest) transaction whose nonce is its sender's next. At most
    /// `max_txs` transactions and `max_bytes` bytes.
    pub fn select(&self, state: &State, max_txs: usize, max_bytes: usize) -> Vec<SignedTx> {
        // Ready heads per sender, ordered by (fee desc, seq asc).
        let mut next_nonce: BTreeMap<AccountId, u64> = BTreeMap::new();
        let mut heads: BTreeSet<(Reverse<Amount>, u64, Hash)> = BTreeSet::new();
        let head_of = |sender: &AccountId, nonce: u64| -> Option<&Entry> {
            self.by_sender.get(sender).and_then(|m| m.get(&nonce)).map(|id| &self.by_id[id])
        };
        for sender in self.by_sender.keys() {
            let n = state.nonce(sender);
            next_nonce.insert(*sender, n);
            if let Some(e) = head_of(sender, n) {
                heads.insert((Reverse(e.tx.tx.fee), e.seq, e.tx.id()));
            }
        }
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        while let Some(best) = heads.pop_first() {
            if out.len() >= max_txs {
                break;
            }
            let e = &self.by_id[&best.2];
            if bytes + e.size > max_bytes {
                continue;
            }
            bytes += e.size;
            out.push(e.tx.clone());
            let sender = e.tx.tx.sender;
            let n = next_nonce.get_mut(&sender).expect("tracked");
            *n += 1;
            if let Some(next) = head_of(&sender, *n) {
                heads.insert((Reverse(next.tx.tx.fee), next.seq, next.tx.id()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::tx::{Transaction, TxPayload};
    use agora_core::{Amount, SecretKey};
    use agora_ledger::{Genesis, GenesisAccount, GenesisValidator};

    fn state() -> State {
        let accounts = (0..4)
            .map(|i| GenesisAccount {
                account: SecretKey::from_label(&format!("a{i}")).public(),
                balance: Amount(1_000_000),
            })
            .collect();
        Genesis {
            chain_id: "mp".into(),
            genesis_time_ms: 0,
            accounts,
            validators: vec![GenesisValidator {
                account: SecretKey::from_label("v").public(),
                stake: Amount(10_000),
            }],
            params: Default::default(),
        }
        .build()
        .unwrap()
    }

    impl Mempool {
        /// Checks the signature as the node does before queueing, then inserts.
        fn insert_signed(&mut self, tx: SignedTx, state: &State) -> Result<Hash, MempoolError> {
            self.insert(VerifiedTx::check(tx, &state.meta().chain_id)?, state)
        }
    }

    fn tx(who: u8, nonce: u64, fee: u128) -> SignedTx {
        let k = SecretKey::from_label(&format!("a{who}"));
        Transaction {
            sender: k.public(),
            nonce,
            fee: Amount(fee),
            payload: TxPayload::Transfer { to: SecretKey::from_label("x").public(), amount: Amount(1) },
        }
        .sign("mp", &k)
    }

    #[test]
    fn only_an_admitted_transaction_counts_as_an_arrival() {
        let s = state();
        let mut m = Mempool::new(Limits { nonce_window: 4, ..Limits::default() });
        // A nonce ahead of its sender's next is admitted (and counts) but cannot be included.
        m.insert_signed(tx(0, 2, 10), &s).unwrap();
        assert_eq!(m.admitted(), 1);
        assert!(m.select(&s, 100, 1 << 20).is_empty());
        // Refusals, removals and pruning are not arrivals.
        assert!(m.insert_signed(tx(0, 2, 10), &s).is_err());
        assert!(m.insert_signed(tx(0, 9, 10), &s).is_err());
        m.prune(&s);
        assert_eq!(m.admitted(), 1);
        // A replacement is: it may be the one that fits.
        let id = m.insert_signed(tx(0, 2, 20), &s).unwrap();
        assert_eq!(m.admitted(), 2);
        m.remove(&id);
        assert_eq!((m.admitted(), m.len()), (2, 0));
        m.insert_signed(tx(0, 0, 10), &s).unwrap();
        assert_eq!(m.admitted(), 3);
    }

    #[test]
    fn admission_checks() {
        let s = state();
        let mut m = Mempool::new(Limits { nonce_window: 4, ..Limits::default() });
        assert!(m.insert_signed(tx(0, 0, 10), &s).is_ok());
        assert!(matches!(m.insert_signed(tx(0, 0, 10), &s), Err(MempoolError::Duplicate(_))));
        assert!(matches!(m.insert_signed(tx(0, 9, 10), &s), Err(MempoolError::NonceGap { .. })));
        assert!(matches!(
            m.insert_signed(tx(1, 0, 1), &s),
            Err(MempoolError::Rejected(TxRejection::FeeTooLow { .. }))
        ));
        let mut forged = tx(2, 0, 10);
        forged.tx.fee = Amount(11);
        assert!(matches!(
            m.insert_signed(forged, &s),
            Err(MempoolError::Rejected(TxRejection::Signature(_)))
        ));
        let poor = Transaction {
            sender: SecretKey::from_label("nobody").public(),
            nonce: 0,
            fee: Amount(10),
            payload: TxPayload::Bond { amount: Amount(1) },
        }
        .sign("mp", &SecretKey::from_label("nobody"));
        assert!(matches!(
            m.insert_signed(poor, &s),
            Err(MempoolError::Rejected(TxRejection::CannotPayFee { .. }))
        ));
    }

    #[test]
    fn a_transaction_peers_cannot_decode_never_enters_the_pool() {
        // A proposal with an endpoint longer than the decoder's bound encodes fine; admitted,
        // it would make every block this node proposes undecodable for its peers.
        let s = state();
        let mut m = Mempool::new(Limits::default());
        let k = SecretKey::from_label("a3");
        let poison = Transaction {
            sender: k.public(),
            nonce: 0,
            fee: Amount(10),
            payload: TxPayload::Propose { changes: vec![], description: "d".repeat(2_000) },
        }
        .sign("mp", &k);
        assert!(matches!(
            m.insert_signed(poison, &s),
            Err(MempoolError::Rejected(TxRejection::Malformed(_)))
        ));
        assert!(m.is_empty());
        m.insert_signed(tx(3, 0, 10), &s).expect("an honest transaction from the same sender");
        let block = agora_core::Block {
            header: agora_core::BlockHeader {
                height: 1,
                parent: Hash::ZERO,
                timestamp_ms: 1,
                proposer: k.public(),
                seed: Hash::ZERO,
                tx_root: Hash::ZERO,
                evidence_root: Hash::ZERO,
                state_root: Hash::ZERO,
            },
            txs: m.select(&s, 100, 1 << 20),
            evidence: vec![],
        };
        assert_eq!(agora_core::Block::decode_untrusted(&block.encode()).unwrap(), block);
    }

    #[test]
    fn replace_by_fee() {
        let s = state();
        let mut m = Mempool::new(Limits::default());
        m.insert_signed(tx(0, 0, 10), &s).unwrap();
        assert!(matches!(m.insert_signed(tx(0, 0, 10), &s), Err(MempoolError::Duplicate(_))));
        let cheaper = {
            let mut t = tx(0, 0, 10);
            t.tx.payload = TxPayload::Bond { amount: Amount(5) };
            t.tx.sign("mp", &SecretKey::from_label("a0"))
        };
        assert!(matches!(m.insert_signed(cheaper, &s), Err(MempoolError::Underpriced { .. })));
        m.insert_signed(tx(0, 0, 20), &s).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m.select(&s, 10, usize::MAX)[0].tx.fee, Amount(20));
    }

    #[test]
    fn full_pool_evicts_cheapest_or_refuses() {
        let s = state();
        let mut m = Mempool::new(Limits { max_txs: 2, ..Limits::default() });
        m.insert_signed(tx(0, 0, 10), &s).unwrap();
        m.insert_signed(tx(1, 0, 30), &s).unwrap();
        let err = m.insert_signed(tx(2, 0, 10), &s).unwrap_err();
        assert!(err.to_string().contains("raise the fee above 10"), "{err}");
        m.insert_signed(tx(2, 0, 20), &s).unwrap();
        assert_eq!(m.len(), 2);
        assert!(m.select(&s, 10, usize::MAX).iter().all(|t| t.tx.fee >= Amount(20)));
    }

    #[test]
    fn selection_orders_by_fee_and_keeps_nonces_consecutive() {
        let s = state();
        let mut m = Mempool::new(Limits::default());
        m.insert_signed(tx(0, 1, 100), &s).unwrap(); // not ready until nonce 0 is in
        m.insert_signed(tx(0, 0, 10), &s).unwrap();
        m.insert_signed(tx(1, 0, 50), &s).unwrap();
        let picked: Vec<(u8, u64)> = m
            .select(&s, 10, usize::MAX)
            .iter()
            .map(|t| {
                (
                    (0..4).find(|i| SecretKey::from_label(&format!("a{i}")).public() == t.tx.sender).unwrap(),
                    t.tx.nonce,
                )
            })
            .collect();
        assert_eq!(picked, vec![(1, 0), (0, 0), (0, 1)]);
        assert_eq!(m.select(&s, 1, usize::MAX).len(), 1);
    }

    #[test]
    fn prune_drops_consumed_nonces() {
        let s = state();
        let mut m = Mempool::new(Limits::default());
        let t = tx(0, 0, 10);
        m.insert_signed(t.clone(), &s).unwrap();
        m.insert_signed(tx(0, 1, 10), &s).unwrap();
        // Apply t in a block.
        let mut b = agora_ledger::BlockBuilder::new(
            &s,
            agora_ledger::BlockInfo {
                height: 1,
                timestamp_ms: 1,
                proposer: t.tx.sender,
                seed: Hash::ZERO,
                missed: vec![],
                beacon_commit: None,
            },
        )
        .unwrap();
        b.push(&t).unwrap();
        let (s2, _) = b.finish(&[]).unwrap();
        m.prune(&s2);
        assert_eq!(m.len(), 1);
        assert_eq!(m.bytes(), tx(0, 1, 10).encode().len());
    }
}
