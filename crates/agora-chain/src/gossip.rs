//! Transaction gossip between validators over a dedicated p2p channel: transactions a client
//! submits here are sent to every peer; transactions from peers go into the local mempool (and
//! are not forwarded again: validators form a full mesh).

use crate::executor::{ExecutorMailbox, Message};
use agora_core::{Encode, SignedTx};
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{IoBuf, Spawner};
use futures::StreamExt;
use futures::channel::mpsc;
use tracing::debug;

/// Runs the gossip task until both the channel and the outbound queue close.
pub fn start<E, S, R>(
    context: E,
    executor: ExecutorMailbox,
    mut outbound: mpsc::UnboundedReceiver<SignedTx>,
    (mut sender, mut receiver): (S, R),
) where
    E: Spawner,
    S: Sender,
    R: Receiver<PublicKey = S::PublicKey>,
{
    context.spawn(move |_| async move {
        loop {
            select! {
                tx = outbound.next() => {
                    let Some(tx) = tx else { return };
                    // Best effort: a dropped message only delays inclusion (the tx is in our pool).
                    let _ = sender.send(Recipients::All, IoBuf::from(tx.encode()), false);
                },
                msg = receiver.recv() => {
                    let Ok((peer, bytes)) = msg else { return };
                    match SignedTx::decode_untrusted(bytes.as_ref()) {
                        Ok(tx) => {
                            executor.send(Message::Submit { tx, reply: None });
                        }
                        Err(e) => debug!(%peer, error = %e, "dropping malformed gossiped transaction"),
                    }
                },
            }
        }
    });
}
