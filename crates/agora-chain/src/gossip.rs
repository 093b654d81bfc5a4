//! Transaction gossip between validators over a dedicated p2p channel: transactions a client
//! submits here are sent to every peer; transactions from peers go into the local mempool (and
//! are not forwarded again: validators form a full mesh). Received transactions have their
//! signatures checked here, in the gossip task, so the executor never spends consensus time
//! on a peer's junk; what does not decode or verify is dropped on its own.
//!
//! Under load, transactions that queue up while a message is being sent travel together: a
//! message carries a batch (count-prefixed, each transaction length-prefixed), up to
//! [`MAX_BATCH_BYTES`], so the per-message cost and the per-peer message quota do not cap
//! throughput.

use crate::mailbox::{Client, ExecutorMailbox};
use crate::mempool::VerifiedTx;
use agora_core::codec::Reader;
use agora_core::{Encode, SignedTx};
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{IoBuf, Spawner};
use tracing::debug;

/// Largest gossip message.
pub const MAX_BATCH_BYTES: usize = 512 * 1024;
/// Most transactions in one gossip message.
pub const MAX_BATCH_TXS: usize = 4096;

/// Encodes a batch of transactions.
pub fn encode_batch(txs: &[SignedTx]) -> Vec<u8> {
    let mut out = Vec::new();
    agora_core::codec::encode_len(txs.len(), &mut out);
    for tx in txs {
        tx.encode().encode_to(&mut out);
    }
    out
}

/// A received gossip message: the transactions that decoded, and how many entries did not.
#[derive(Debug, PartialEq)]
pub struct Batch {
    /// Entries that decoded as transactions.
    pub txs: Vec<SignedTx>,
    /// Entries that did not, dropped on their own.
    pub malformed: usize,
}

/// Decodes a batch, bounded in count and size. Each entry is its own length-prefixed
/// untrusted transaction: one that does not decode is dropped without its honest neighbours.
/// Only a message whose framing is broken is refused whole.
pub fn decode_batch(bytes: &[u8]) -> Result<Batch, agora_core::DecodeError> {
    if bytes.len() > MAX_BATCH_BYTES {
        return Err(agora_core::DecodeError::invalid("gossip batch", "larger than the batch limit"));
    }
    let mut r = Reader::new(bytes);
    let n = r.length(MAX_BATCH_TXS, 4, "gossip batch")?;
    let mut batch = Batch { txs: Vec::with_capacity(n), malformed: 0 };
    for _ in 0..n {
        let raw = r.bytes(agora_core::tx::MAX_TX_BYTES, "gossip batch entry")?;
        match SignedTx::decode_untrusted(&raw) {
            Ok(tx) => batch.txs.push(tx),
            Err(_) => batch.malformed += 1,
        }
    }
    r.finish("gossip batch")?;
    Ok(batch)
}

/// Transactions queued for gossip before more are dropped (they still wait in the local
/// mempool and reach peers in a block).
pub const OUTBOUND_CAPACITY: usize = 16_384;

/// Runs the gossip task until both the channel and the outbound queue close. `chain_id` is what
/// received transactions' signatures are checked for.
pub fn start<E, S, R>(
    context: E,
    executor: ExecutorMailbox,
    chain_id: String,
    mut outbound: tokio::sync::mpsc::Receiver<SignedTx>,
    (mut sender, mut receiver): (S, R),
) where
    E: Spawner,
    S: Sender,
    R: Receiver<PublicKey = S::PublicKey>,
{
    context.spawn(move |_| async move {
        loop {
            select! {
                tx = outbound.recv() => {
                    let Some(tx) = tx else { return };
                    let mut batch = vec![tx];
                    let mut size = batch[0].encode().len();
                    // Take whatever else is already queued, within the limits.
                    while size < MAX_BATCH_BYTES / 2 && batch.len() < MAX_BATCH_TXS {
                        match outbound.try_recv() {
                            Ok(tx) => {
                                size += tx.encode().len() + 4;
                                batch.push(tx);
                            }
                            _ => break,
                        }
                    }
                    // Best effort: a dropped message only delays inclusion (the txs are in our pool).
                    let _ = sender.send(Recipients::All, IoBuf::from(encode_batch(&batch)), false);
                },
                msg = receiver.recv() => {
                    let Ok((peer, bytes)) = msg else { return };
                    match decode_batch(bytes.as_ref()) {
                        Ok(batch) => {
                            if batch.malformed > 0 {
                                debug!(%peer, malformed = batch.malformed, "dropping malformed gossiped transactions");
                            }
                            let received = batch.txs.len();
                            let txs: Vec<VerifiedTx> =
                                batch.txs.into_iter().filter_map(|tx| VerifiedTx::check(tx, &chain_id).ok()).collect();
                            if txs.len() < received {
                                debug!(%peer, bad = received - txs.len(), "dropping gossiped transactions with bad signatures");
                            }
                            if !txs.is_empty()
                                && let Err(e) = executor.client(Client::Gossiped { txs })
                            {
                                debug!(%peer, error = %e, "dropping a gossip batch");
                            }
                        }
                        Err(e) => debug!(%peer, error = %e, "dropping malformed gossip"),
                    }
                },
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::arbitrary::signed_tx;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn batches_round_trip(txs in prop::collection::vec(signed_tx("gossip"), 0..8)) {
            prop_assert_eq!(decode_batch(&encode_batch(&txs)).unwrap(), Batch { txs, malformed: 0 });
        }

        #[test]
        fn one_bad_entry_drops_only_itself(txs in prop::collection::vec(signed_tx("gossip"), 2..6), at in any::<prop::sample::Index>()) {
            // Re-frame the batch with one entry replaced by bytes that are not a transaction.
            let bad = at.index(txs.len());
            let mut bytes = Vec::new();
            agora_core::codec::encode_len(txs.len(), &mut bytes);
            for (i, tx) in txs.iter().enumerate() {
                let entry = if i == bad { vec![0xff; 40] } else { tx.encode() };
                entry.encode_to(&mut bytes);
            }
            let mut honest = txs.clone();
            honest.remove(bad);
            prop_assert_eq!(decode_batch(&bytes).unwrap(), Batch { txs: honest, malformed: 1 });
        }

        #[test]
        fn garbage_is_rejected_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_batch(&bytes);
        }
    }

    #[test]
    fn a_huge_count_allocates_nothing() {
        let mut bytes = Vec::new();
        agora_core::codec::encode_len(u32::MAX as usize, &mut bytes);
        assert!(decode_batch(&bytes).is_err());
    }
}
