//! Where a validator finds its peers. The committee can change every epoch, and the lookup p2p
//! network dials (and accepts) only keys it has an address for, so every epoch's peer set is
//! the whole address book from `[validator].peers`: committee members and observers alike stay
//! connected, and a node that leaves the committee keeps following it.

use agora_chain::epoch::{Epoch, EpochPeers};
use commonware_cryptography::ed25519;
use commonware_p2p::{Address, AddressableManager as _, authenticated::lookup};
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
        let _ = self.oracle.track(epoch.get(), self.book.clone());
    }
}
