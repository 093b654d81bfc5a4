//! Proving what a sealed key opens to, without giving up the account's secret key.
//!
//! A blob key sealed to an account (a [`SealedKey`](sealed) layout: `version ‖ ephemeral X25519
//! key E ‖ encrypted key ‖ tag`) opens with the X25519 secret that E shares with the account's
//! key `A = a·B`. A [`KeyDisclosure`] publishes that shared point `S` with a Chaum–Pedersen
//! proof that one scalar makes both: `log_{8B}(A) = log_{8E}(S)`. Anyone can then open that one
//! sealed key, and nothing else: the account's secret stays secret, and the proof is bound to a
//! context (the lease) so it cannot be replayed for another statement.
//!
//! What a caller may rely on: [`KeyDisclosure::verify`] returns the X25519 shared secret that
//! the account's own `open` of this sealed key computes, or nothing. So a provider cannot
//! disclose a wrong secret to disown a good key it was sent, and nobody but the account can
//! disclose for it. Working with the cofactor-cleared points `8B` and `8E` makes the statement
//! hold for every ephemeral on the curve (X25519 clamps its scalar to a multiple of 8), so a
//! requester cannot pick an ephemeral the provider could not disclose for; ephemerals off the
//! curve (on its twist) are refused when the key is shared ([`sealed::ephemeral`]).

use crate::crypto::{PublicKey, SecretKey};
use crate::hex_newtype;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;

/// The byte layout of a blob key sealed to one account (built and opened by `agora-store`).
pub mod sealed {
    /// Format version of a sealed key.
    pub const VERSION: u8 = 1;
    /// Authentication tag bytes.
    pub const TAG_LEN: usize = 16;
    /// Length of a sealed key: `version ‖ ephemeral public key ‖ encrypted key ‖ tag`.
    pub const LEN: usize = 1 + 32 + 32 + TAG_LEN;
    const _: () = assert!(LEN <= crate::tx::MAX_SEALED_KEY);

    /// The sender's ephemeral X25519 public key in a sealed key, if the bytes have the sealed
    /// key's length and version and the key is a point on the curve (not on its twist), so
    /// that its recipient can always disclose what it opens to.
    pub fn ephemeral(sealed: &[u8]) -> Option<[u8; 32]> {
        if sealed.len() != LEN || sealed[0] != VERSION {
            return None;
        }
        let e: [u8; 32] = sealed[1..33].try_into().expect("length checked");
        super::MontgomeryPoint(e).to_edwards(0).map(|_| e)
    }
}

/// The context a provider's disclosure of a lease's input key is proven for, so it cannot be
/// replayed for another lease.
pub fn input_key_context(lease: u64) -> Vec<u8> {
    let mut context = b"agora/lease-input-key".to_vec();
    context.extend_from_slice(&lease.to_le_bytes());
    context
}

/// The context a requester's disclosure of a lease's output-key secret is proven for.
pub fn output_key_context(lease: u64) -> Vec<u8> {
    let mut context = b"agora/lease-output-key".to_vec();
    context.extend_from_slice(&lease.to_le_bytes());
    context
}

/// A proven disclosure of the X25519 secret one account shares with one sealed key's
/// ephemeral key: `shared point ‖ challenge ‖ response`, 96 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyDisclosure(pub [u8; 96]);
hex_newtype!(KeyDisclosure, 96, "key disclosure");

/// BLAKE3 key-derivation context of the proof's challenge and nonce.
const CHALLENGE_CONTEXT: &str = "agora-core 2026 key disclosure challenge v1";
const NONCE_CONTEXT: &str = "agora-core 2026 key disclosure nonce v1";

/// A scalar from 64 bytes of BLAKE3 output over `parts` (each length-prefixed).
fn hash_to_scalar(context: &str, parts: &[&[u8]]) -> Scalar {
    let mut h = blake3::Hasher::new_derive_key(context);
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let mut wide = [0u8; 64];
    h.finalize_xof().fill(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// The cofactor-cleared Edwards form of an X25519 public key on the curve.
fn cleared(ephemeral: &[u8; 32]) -> Option<EdwardsPoint> {
    MontgomeryPoint(*ephemeral).to_edwards(0).map(|p| p.mul_by_cofactor())
}

fn challenge(
    account: &EdwardsPoint,
    e8: &EdwardsPoint,
    s: &EdwardsPoint,
    t1: &EdwardsPoint,
    t2: &EdwardsPoint,
    context: &[u8],
) -> Scalar {
    let points = [account, e8, s, t1, t2].map(|p| p.compress().to_bytes());
    let [a, e, s, t1, t2] = points.each_ref().map(|b| b.as_slice());
    hash_to_scalar(CHALLENGE_CONTEXT, &[context, a, e, s, t1, t2])
}

impl KeyDisclosure {
    /// Discloses, for the holder of `secret`, the secret it shares with `ephemeral`, proven for
    /// `context`. `None` if the ephemeral key is not on the curve (such a key is refused on
    /// chain before it can be sent).
    pub fn prove(secret: &SecretKey, ephemeral: &[u8; 32], context: &[u8]) -> Option<Self> {
        let e8 = cleared(ephemeral)?;
        let clamped = curve25519_dalek::scalar::clamp_integer(secret.to_x25519_scalar_bytes());
        // X25519 multiplies by the clamped integer a = 8·k; A = k·8B and S = k·8E.
        let k = Scalar::from_bytes_mod_order(clamped) * Scalar::from(8u8).invert();
        let g1 = ED25519_BASEPOINT_POINT.mul_by_cofactor();
        let account = g1 * k;
        let s = e8 * k;
        // A deterministic nonce, as in Ed25519 signing: never reused for two statements.
        let r = hash_to_scalar(NONCE_CONTEXT, &[&clamped, ephemeral, context]);
        let (t1, t2) = (g1 * r, e8 * r);
        let c = challenge(&account, &e8, &s, &t1, &t2, context);
        let z = r + c * k;
        let mut out = [0u8; 96];
        out[..32].copy_from_slice(s.compress().as_bytes());
        out[32..64].copy_from_slice(c.as_bytes());
        out[64..].copy_from_slice(z.as_bytes());
        Some(Self(out))
    }

    /// The X25519 secret `account` shares with `ephemeral`, if this disclosure proves it for
    /// `context`; `None` for any other account, ephemeral, context or altered byte.
    pub fn verify(&self, account: &PublicKey, ephemeral: &[u8; 32], context: &[u8]) -> Option<[u8; 32]> {
        let a = CompressedEdwardsY(account.0).decompress()?;
        let e8 = cleared(ephemeral)?;
        let part = |i: usize| -> [u8; 32] { self.0[32 * i..32 * (i + 1)].try_into().expect("96 bytes") };
        let scalar = |i: usize| Option::<Scalar>::from(Scalar::from_canonical_bytes(part(i)));
        let (s, c, z) = (CompressedEdwardsY(part(0)).decompress()?, scalar(1)?, scalar(2)?);
        if !s.is_torsion_free() {
            return None;
        }
        let g1 = ED25519_BASEPOINT_POINT.mul_by_cofactor();
        let t1 = g1 * z - a * c;
        let t2 = e8 * z - s * c;
        (challenge(&a, &e8, &s, &t1, &t2, context) == c).then(|| s.to_montgomery().to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An X25519 ephemeral key pair, as a sender makes one.
    fn ephemeral(label: &str) -> ([u8; 32], [u8; 32]) {
        let secret = *blake3::hash(label.as_bytes()).as_bytes();
        (secret, MontgomeryPoint::mul_base_clamped(secret).to_bytes())
    }

    /// What the sender computes: X25519 of its ephemeral secret with the recipient's key.
    fn sender_shared(eph_secret: [u8; 32], to: &PublicKey) -> [u8; 32] {
        MontgomeryPoint(to.to_x25519().unwrap()).mul_clamped(eph_secret).to_bytes()
    }

    #[test]
    fn a_disclosure_yields_the_secret_both_ends_compute() {
        for i in 0..8 {
            let provider = SecretKey::from_label(&format!("provider {i}"));
            let (eph_secret, eph) = ephemeral(&format!("eph {i}"));
            let d = KeyDisclosure::prove(&provider, &eph, b"lease 7").unwrap();
            let shared = d.verify(&provider.public(), &eph, b"lease 7").unwrap();
            assert_eq!(shared, sender_shared(eph_secret, &provider.public()));
            // The recipient's own X25519 computes the same secret.
            let own = MontgomeryPoint(eph).mul_clamped(provider.to_x25519_scalar_bytes()).to_bytes();
            assert_eq!(shared, own);
        }
    }

    #[test]
    fn a_disclosure_proves_nothing_for_another_account_ephemeral_context_or_byte() {
        let provider = SecretKey::from_label("provider");
        let other = SecretKey::from_label("other");
        let (_, eph) = ephemeral("eph");
        let (_, eph2) = ephemeral("eph2");
        let d = KeyDisclosure::prove(&provider, &eph, b"lease 7").unwrap();
        assert!(d.verify(&other.public(), &eph, b"lease 7").is_none());
        assert!(d.verify(&provider.public(), &eph2, b"lease 7").is_none());
        assert!(d.verify(&provider.public(), &eph, b"lease 8").is_none());
        for byte in [0, 31, 32, 63, 64, 95] {
            let mut bad = d;
            bad.0[byte] ^= 1;
            assert!(bad.verify(&provider.public(), &eph, b"lease 7").is_none(), "byte {byte}");
        }
        // Someone else's proof for the provider's sealed key does not verify for the provider.
        let forged = KeyDisclosure::prove(&other, &eph, b"lease 7").unwrap();
        assert!(forged.verify(&provider.public(), &eph, b"lease 7").is_none());
    }

    #[test]
    fn ephemerals_with_small_order_parts_still_disclose_what_x25519_computes() {
        // A sender may add a small-order point to its ephemeral key; X25519's clamped scalar
        // (a multiple of 8) ignores it, and so does the disclosure.
        let provider = SecretKey::from_label("provider");
        let (_, eph) = ephemeral("eph");
        let torsion = curve25519_dalek::constants::EIGHT_TORSION[1];
        let mixed = (MontgomeryPoint(eph).to_edwards(0).unwrap() + torsion).to_montgomery().to_bytes();
        let d = KeyDisclosure::prove(&provider, &mixed, b"c").unwrap();
        let own = MontgomeryPoint(mixed).mul_clamped(provider.to_x25519_scalar_bytes()).to_bytes();
        assert_eq!(d.verify(&provider.public(), &mixed, b"c").unwrap(), own);
    }

    #[test]
    fn twist_points_are_not_sealed_key_ephemerals() {
        let mut sealed = vec![sealed::VERSION];
        // About half of all u-coordinates lie on the curve's twist; take the first one.
        let twist = (2u8..=255)
            .map(|u| {
                let mut b = [0u8; 32];
                b[0] = u;
                b
            })
            .find(|b| MontgomeryPoint(*b).to_edwards(0).is_none())
            .unwrap();
        sealed.extend_from_slice(&twist);
        sealed.extend_from_slice(&[0u8; 48]);
        assert_eq!(sealed.len(), sealed::LEN);
        assert!(sealed::ephemeral(&sealed).is_none());
        let (_, eph) = ephemeral("eph");
        sealed[1..33].copy_from_slice(&eph);
        assert_eq!(sealed::ephemeral(&sealed), Some(eph));
        sealed[0] = 2;
        assert!(sealed::ephemeral(&sealed).is_none());
        assert!(sealed::ephemeral(&sealed[..80]).is_none());
    }

    proptest::proptest! {
        /// Whatever bytes a transaction carries, checking them neither panics nor proves
        /// anything (the verifier decodes points and scalars itself, refusing non-canonical
        /// ones).
        #[test]
        fn arbitrary_disclosures_never_verify(
            s in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            c in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            z in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            eph in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            account in proptest::array::uniform32(proptest::prelude::any::<u8>()),
        ) {
            let mut bytes = [0u8; 96];
            bytes[..32].copy_from_slice(&s);
            bytes[32..64].copy_from_slice(&c);
            bytes[64..].copy_from_slice(&z);
            proptest::prop_assert!(KeyDisclosure(bytes).verify(&PublicKey(account), &eph, b"ctx").is_none());
            let provider = SecretKey::from_label("provider");
            proptest::prop_assert!(KeyDisclosure(bytes).verify(&provider.public(), &eph, b"ctx").is_none());
        }
    }
}
