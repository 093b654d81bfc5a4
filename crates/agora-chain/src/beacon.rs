//! The chain's randomness: a commit-reveal beacon the proposer of a block cannot steer.
//!
//! Audit draws (whether a lease is audited, which items, who audits) and clearing tie-breaks
//! read a block's `seed`. If the seed hashed anything the proposer picks — its timestamp, its
//! transaction order, the parent digest those determine — a proposer could try many blocks
//! and publish the one whose draw suits it or a provider it colludes with. So the seed hashes
//! only the previous block's seed, the height, and a value the proposer committed to in its
//! previous block, before it could know anything about this one:
//!
//! ```text
//! seed(h) = H(seed(h-1), h, reveal)      reveal: H(reveal) = the proposer's last commitment
//! ```
//!
//! Each block reveals its proposer's last secret and commits to the next one (secrets are
//! derived from the validator's key and the committing height, so a restart loses nothing).
//! A proposer's only remaining choice is to propose or not: withholding re-rolls the draw once,
//! at the price of its slot (and missed slots get a validator jailed, `miss_jail_streak`).
//! A proposer's first block reveals nothing (the seed is then fixed by the chain alone).
//! Validators that propose consecutive blocks and collude can still combine their withholding
//! choices; a threshold-VRF beacon would remove even that.

use agora_core::{AccountId, Hash};
use agora_ledger::State;

/// What a block carries for the beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BeaconShare {
    /// The secret the proposer committed to in its last block (zero for its first block).
    pub reveal: Hash,
    /// Its commitment to the secret it reveals in its next block.
    pub commit: Hash,
}

/// The beacon key of a validator whose consensus key is `key`: secret like it, and fixed, so a
/// restarted validator derives the secrets it committed to.
pub fn key_of(key: &commonware_cryptography::ed25519::PrivateKey) -> [u8; 32] {
    Hash::tagged("agora/beacon-key", &[&commonware_codec::Encode::encode(key)]).0
}

/// The commitment to `secret`.
pub fn commitment(secret: &Hash) -> Hash {
    Hash::tagged("agora/beacon-commit", &[&secret.0])
}

/// The secret a validator with beacon key `key` commits to in its block at `height`.
pub fn secret(key: &[u8; 32], height: u64) -> Hash {
    Hash::tagged("agora/beacon-secret", &[key, &height.to_le_bytes()])
}

/// The seed of the block at `height` whose proposer revealed `reveal`, on a parent whose seed
/// was `parent_seed`.
pub fn seed(parent_seed: &Hash, height: u64, reveal: &Hash) -> Hash {
    Hash::tagged("agora/beacon-seed", &[&parent_seed.0, &height.to_le_bytes(), &reveal.0])
}

/// The share `proposer` (holding beacon key `key`) puts in its block at `height` on top of
/// `parent`: the secret of its last commitment, and a commitment to this height's secret.
pub fn share(parent: &State, proposer: &AccountId, key: &[u8; 32], height: u64) -> BeaconShare {
    let reveal = match parent.validator(proposer) {
        Some(v) if v.beacon_commit != Hash::ZERO => secret(key, v.beacon_height),
        _ => Hash::ZERO,
    };
    BeaconShare { reveal, commit: commitment(&secret(key, height)) }
}

/// Checks a block's share against its proposer's last commitment in `parent`, and returns the
/// seed the block must carry; `None` if the reveal does not open the commitment (or reveals
/// something where there was nothing to open), or the new commitment is missing.
pub fn check(parent: &State, proposer: &AccountId, height: u64, share: &BeaconShare) -> Option<Hash> {
    let committed = parent.validator(proposer).map_or(Hash::ZERO, |v| v.beacon_commit);
    let opens = if committed == Hash::ZERO {
        share.reveal == Hash::ZERO
    } else {
        commitment(&share.reveal) == committed
    };
    (opens && share.commit != Hash::ZERO).then(|| seed(&parent.meta().seed, height, &share.reveal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_ledger::ConsensusFacts;
    use agora_ledger::sim::{TestChain, id};
    use agora_ledger::state::draw;

    const KEY: [u8; 32] = [7; 32];

    /// Applies the next block as `proposer` with the share it would make, returning the share.
    fn propose(c: &mut TestChain, proposer: &str) -> BeaconShare {
        let height = c.height() + 1;
        let s = share(&c.state, &id(proposer), &KEY, height);
        let mut b = c.block_for(vec![]);
        b.header.proposer = id(proposer);
        b.header.seed = check(&c.state, &id(proposer), height, &s).expect("an honest share");
        c.apply_with(&b, ConsensusFacts { missed: vec![], beacon_commit: Some(s.commit) }).unwrap();
        s
    }

    #[test]
    fn a_reveal_must_open_the_last_commitment_and_nothing_else_passes() {
        let mut c = TestChain::new();
        let first = propose(&mut c, "v1");
        assert_eq!(first.reveal, Hash::ZERO, "a first block has nothing to reveal");
        let height = c.height() + 1;
        let honest = share(&c.state, &id("v1"), &KEY, height);
        assert_eq!(commitment(&honest.reveal), first.commit, "it reveals what it committed to");
        assert!(check(&c.state, &id("v1"), height, &honest).is_some());
        // Any other reveal (the grinding a proposer would try), none, or no new commitment:
        // the block is invalid.
        for bad in [
            BeaconShare { reveal: Hash::of(b"another"), ..honest },
            BeaconShare { reveal: Hash::ZERO, ..honest },
            BeaconShare { commit: Hash::ZERO, ..honest },
        ] {
            assert_eq!(check(&c.state, &id("v1"), height, &bad), None, "{bad:?}");
        }
        // A validator that never committed cannot claim a reveal either.
        assert_eq!(
            check(
                &c.state,
                &id("v2"),
                height,
                &BeaconShare { reveal: Hash::of(b"x"), commit: Hash::of(b"y") }
            ),
            None
        );
    }

    #[test]
    fn the_proposer_cannot_steer_the_draw_by_timestamp_or_transaction_order() {
        // Two versions of the block that holds a commitment, differing in what its proposer
        // chooses freely (timestamp, transactions): before the beacon, the next block's seed
        // hashed the parent's digest, so each version drew differently.
        let (mut a, mut b) = (TestChain::new(), TestChain::new());
        propose(&mut a, "v2");
        propose(&mut b, "v2");
        let parent_a =
            a.block_for(vec![a.tx(
                "u0",
                agora_core::tx::TxPayload::Transfer { to: id("u1"), amount: agora_core::Amount(5) },
            )]);
        let mut parent_b = b.block_for(vec![]);
        parent_b.header.timestamp_ms += 400;
        assert_ne!(parent_a.header, parent_b.header);
        a.apply_with(&parent_a, ConsensusFacts::default()).unwrap();
        b.apply_with(&parent_b, ConsensusFacts::default()).unwrap();
        // The next block's proposer reveals its earlier commitment: the seed, and every
        // draw from it (is the lease audited? which items? who audits?), is the same.
        let height = a.height() + 1;
        let (sa, sb) = (share(&a.state, &id("v2"), &KEY, height), share(&b.state, &id("v2"), &KEY, height));
        let (seed_a, seed_b) = (
            check(&a.state, &id("v2"), height, &sa).unwrap(),
            check(&b.state, &id("v2"), height, &sb).unwrap(),
        );
        assert_eq!(seed_a, seed_b);
        for lease in 0..64 {
            assert_eq!(draw(&seed_a, "audit", lease), draw(&seed_b, "audit", lease));
        }
        // What differs from height to height is the revealed secret, fixed one block earlier.
        assert_ne!(seed(&seed_a, height, &sa.reveal), seed(&seed_a, height, &Hash::ZERO));
    }
}
