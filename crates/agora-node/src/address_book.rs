//! Where a validator finds its peers. Each epoch's p2p peer set is built from the address book
//! in `[validator].peers` (the lookup network dials and accepts only keys it has an address
//! for): the epoch's committee members are primary peers (dialed, sent blocks and votes), every
//! other known validator is secondary (accepted and sent consensus traffic), so a node outside
//! the committee keeps following it as an observer. Addresses are not on chain yet: a validator
//! elected into a committee must be in the other nodes' address books to be reached.

use agora_chain::epoch::{Epoch, EpochPeers};
use commonware_cryptography::ed25519;
use commonware_p2p::{Address, AddressableManager as _, AddressableTrackedPeers, authenticated::lookup};
use commonware_utils::ordered::{Map, Set};
use tracing::warn;

/// The configured addresses of every known validator, installed as each epoch's peer set.
pub struct AddressBook {
    oracle: lookup::Oracle<ed25519::PublicKey>,
    book: Map<ed25519::PublicKey, Address>,
}

impl AddressBook {
    /// A book over `oracle` with these addresses.
    pub fn new(oracle: lookup::Oracle<ed25519::PublicKey>, book: Map<ed25519::PublicKey, Address>) -> Self {
        Self { oracle, book }
    }
}

impl EpochPeers for AddressBook {
    fn track(&mut self, epoch: Epoch, committee: &Set<ed25519::PublicKey>) {
        for member in committee.iter() {
            if self.book.get_value(member).is_none() {
                warn!(
                    %epoch,
                    %member,
                    "a committee member has no address in [validator].peers; add it so this node can reach it"
                );
            }
        }
        let (primary, secondary): (Vec<_>, Vec<_>) = self
            .book
            .iter_pairs()
            .map(|(k, a)| (k.clone(), a.clone()))
            .partition(|(k, _)| committee.position(k).is_some());
        let map = |v: Vec<(ed25519::PublicKey, Address)>| Map::try_from(v).expect("keys come from one map");
        let _ = self.oracle.track(epoch.get(), AddressableTrackedPeers::new(map(primary), map(secondary)));
    }
}
