//! Sharing a blob key with one account: a "sealed box" to the account's own key.
//!
//! The sender makes an ephemeral X25519 key pair, agrees a secret with the recipient's Ed25519
//! key in its X25519 form, derives a one-time key from it with BLAKE3, and encrypts the blob key
//! with XChaCha20-Poly1305. Only the holder of the recipient's secret key can open it, and any
//! change to the sealed bytes makes opening fail. Layout (81 bytes, within
//! `agora_core::tx::MAX_SEALED_KEY`): `version ‖ ephemeral public key ‖ encrypted key ‖ tag`
//! ([`agora_core::disclosure::sealed`]). Its recipient can prove to anyone what it opens to
//! ([`disclose`], [`open_disclosed`]) without giving up its secret key.

use crate::encrypt::BlobKey;
use agora_core::disclosure::{KeyDisclosure, sealed};
use agora_core::{PublicKey, SecretKey};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Key, KeyInit, Tag, XChaCha20Poly1305, XNonce};
use x25519_dalek::{X25519_BASEPOINT_BYTES, x25519};

/// Format version of a sealed key.
const VERSION: u8 = sealed::VERSION;

/// Length of a sealed key.
pub const SEALED_KEY_LEN: usize = sealed::LEN;

/// BLAKE3 key-derivation context for the one-time sealing key.
const KDF_CONTEXT: &str = "agora-store 2026 sealed blob key v1";

/// Why a key could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The recipient's public key is not a valid Ed25519 point.
    #[error(
        "{0} is not a valid Ed25519 public key, so nothing can be sealed to it; check the provider's key"
    )]
    InvalidRecipient(PublicKey),
    /// The key agreement produced no shared secret (a low-order point was involved).
    #[error("the key agreement produced an all-zero secret (a degenerate public key was used)")]
    WeakKey,
    /// The sealed key has the wrong length.
    #[error("a sealed key is {SEALED_KEY_LEN} bytes, got {0}")]
    Length(usize),
    /// A format version this code does not know.
    #[error("sealed key format version {0} is not supported (expected {VERSION}); upgrade the node")]
    Version(u8),
    /// Authentication failed.
    #[error("the sealed key does not open with this secret key: it was sealed to another account or altered")]
    WrongKey,
    /// The sender's ephemeral key is not a point on the curve.
    #[error("the sealed key's ephemeral key is not on the curve (the chain refuses such keys)")]
    OffCurve,
    /// A disclosure that does not prove the opening secret.
    #[error("the key disclosure does not prove the secret of this sealed key for this recipient and context")]
    Disclosure,
}

/// Derives the one-time key that seals or opens a blob key.
fn sealing_cipher(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
) -> Result<XChaCha20Poly1305, SealError> {
    if shared == &[0u8; 32] {
        return Err(SealError::WeakKey);
    }
    let mut material = [0u8; 96];
    material[..32].copy_from_slice(shared);
    material[32..64].copy_from_slice(ephemeral);
    material[64..].copy_from_slice(recipient);
    Ok(XChaCha20Poly1305::new(&Key::from(blake3::derive_key(KDF_CONTEXT, &material))))
}

/// The sealing key is used exactly once, so a fixed nonce is safe.
fn zero_nonce() -> XNonce {
    XNonce::from([0u8; 24])
}

/// Seals `key` so that only `recipient` can open it.
pub fn seal_key(key: &BlobKey, recipient: &PublicKey) -> Result<Vec<u8>, SealError> {
    let recipient_x = recipient.to_x25519().ok_or(SealError::InvalidRecipient(*recipient))?;
    let mut ephemeral_secret = [0u8; 32];
    getrandom::fill(&mut ephemeral_secret).expect("the OS random number generator is available");
    let ephemeral = x25519(ephemeral_secret, X25519_BASEPOINT_BYTES);
    let shared = x25519(ephemeral_secret, recipient_x);
    let cipher = sealing_cipher(&shared, &ephemeral, &recipient_x)?;
    let mut sealed = Vec::with_capacity(SEALED_KEY_LEN);
    sealed.push(VERSION);
    sealed.extend_from_slice(&ephemeral);
    sealed.extend_from_slice(key.as_bytes());
    let tag = cipher
        .encrypt_inout_detached(&zero_nonce(), &[VERSION], (&mut sealed[33..]).into())
        .expect("32 bytes always encrypt");
    sealed.extend_from_slice(&tag);
    Ok(sealed)
}

/// Opens a key sealed to the account of `secret`.
pub fn open_key(sealed: &[u8], secret: &SecretKey) -> Result<BlobKey, SealError> {
    let ephemeral = layout(sealed)?;
    open_with(sealed, &x25519(secret.to_x25519_scalar_bytes(), ephemeral), &secret.public())
}

/// The ephemeral key of a sealed key of the right length and version.
fn layout(sealed: &[u8]) -> Result<[u8; 32], SealError> {
    if sealed.len() != SEALED_KEY_LEN {
        return Err(SealError::Length(sealed.len()));
    }
    if sealed[0] != VERSION {
        return Err(SealError::Version(sealed[0]));
    }
    Ok(sealed[1..33].try_into().expect("length checked"))
}

/// Opens a sealed key with the X25519 secret its ephemeral key shares with `recipient`.
fn open_with(sealed: &[u8], shared: &[u8; 32], recipient: &PublicKey) -> Result<BlobKey, SealError> {
    let ephemeral = layout(sealed)?;
    let recipient_x = recipient.to_x25519().ok_or(SealError::InvalidRecipient(*recipient))?;
    let cipher = sealing_cipher(shared, &ephemeral, &recipient_x)?;
    let mut key: [u8; 32] = sealed[33..65].try_into().expect("length checked");
    let tag = Tag::try_from(&sealed[65..]).expect("length checked");
    cipher
        .decrypt_inout_detached(&zero_nonce(), &[VERSION], (&mut key[..]).into(), &tag)
        .map_err(|_| SealError::WrongKey)?;
    Ok(BlobKey::from_bytes(key))
}

/// The recipient's proof, for `context`, of the secret that opens `sealed`
/// ([`KeyDisclosure`]): whoever holds it can open this one sealed key with [`open_disclosed`].
pub fn disclose(sealed: &[u8], secret: &SecretKey, context: &[u8]) -> Result<KeyDisclosure, SealError> {
    KeyDisclosure::prove(secret, &disclosable(sealed)?, context).ok_or(SealError::OffCurve)
}

/// The ephemeral key of a well-formed sealed key whose opening can be disclosed: on the curve
/// ([`sealed::ephemeral`]; the chain refuses others when they are shared).
fn disclosable(sealed: &[u8]) -> Result<[u8; 32], SealError> {
    layout(sealed)?;
    sealed::ephemeral(sealed).ok_or(SealError::OffCurve)
}

/// Opens a key sealed to `recipient` with the recipient's `disclosure` for `context`: the key
/// the recipient itself opens, or an error ([`SealError::Disclosure`] if the disclosure does
/// not prove the secret for this recipient, sealed key and context).
pub fn open_disclosed(
    sealed: &[u8],
    recipient: &PublicKey,
    disclosure: &KeyDisclosure,
    context: &[u8],
) -> Result<BlobKey, SealError> {
    let shared = disclosure.verify(recipient, &disclosable(sealed)?, context).ok_or(SealError::Disclosure)?;
    open_with(sealed, &shared, recipient)
}

/// BLAKE3 key-derivation context for keys agreed between two accounts.
const AGREE_CONTEXT: &str = "agora-store 2026 agreed blob key v1";

/// A blob key both `me` and `peer` can compute without sending anything: X25519 between the
/// two accounts' keys, bound to `context` (e.g. a lease id) and to both public keys. A provider
/// encrypts a lease's outputs with it; only the requester (and the provider) can decrypt them.
pub fn agreed_key(me: &SecretKey, peer: &PublicKey, context: &[u8]) -> Result<BlobKey, SealError> {
    let peer_x = peer.to_x25519().ok_or(SealError::InvalidRecipient(*peer))?;
    let my_x = me.public().to_x25519().ok_or(SealError::InvalidRecipient(me.public()))?;
    agreed_from(&x25519(me.to_x25519_scalar_bytes(), peer_x), my_x, peer_x, context)
}

/// `me`'s proof, for `disclosure_context`, of the secret its key shares with `peer`'s: whoever
/// holds it computes every [`agreed_key`] of the two ([`agreed_key_disclosed`]).
pub fn disclose_agreed(
    me: &SecretKey,
    peer: &PublicKey,
    disclosure_context: &[u8],
) -> Result<KeyDisclosure, SealError> {
    let peer_x = peer.to_x25519().ok_or(SealError::InvalidRecipient(*peer))?;
    KeyDisclosure::prove(me, &peer_x, disclosure_context).ok_or(SealError::InvalidRecipient(*peer))
}

/// The [`agreed_key`] of `discloser` and `peer` for `context`, from `discloser`'s disclosure
/// for `disclosure_context` ([`disclose_agreed`]); [`SealError::Disclosure`] if it proves
/// nothing for these two keys and that context.
pub fn agreed_key_disclosed(
    discloser: &PublicKey,
    peer: &PublicKey,
    disclosure: &KeyDisclosure,
    disclosure_context: &[u8],
    context: &[u8],
) -> Result<BlobKey, SealError> {
    let peer_x = peer.to_x25519().ok_or(SealError::InvalidRecipient(*peer))?;
    let my_x = discloser.to_x25519().ok_or(SealError::InvalidRecipient(*discloser))?;
    let shared = disclosure.verify(discloser, &peer_x, disclosure_context).ok_or(SealError::Disclosure)?;
    agreed_from(&shared, my_x, peer_x, context)
}

/// The agreed key from the two parties' X25519 shared secret and public keys.
fn agreed_from(
    shared: &[u8; 32],
    my_x: [u8; 32],
    peer_x: [u8; 32],
    context: &[u8],
) -> Result<BlobKey, SealError> {
    if shared == &[0u8; 32] {
        return Err(SealError::WeakKey);
    }
    // Order the two public keys so both sides hash the same bytes.
    let (a, b) = if my_x <= peer_x { (my_x, peer_x) } else { (peer_x, my_x) };
    let mut h = blake3::Hasher::new_derive_key(AGREE_CONTEXT);
    h.update(shared);
    h.update(&a);
    h.update(&b);
    h.update(&(context.len() as u64).to_le_bytes());
    h.update(context);
    Ok(BlobKey::from_bytes(*h.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_nobody_else_does() {
        let provider = SecretKey::from_label("p");
        let requester = SecretKey::from_label("r");
        let k1 = agreed_key(&provider, &requester.public(), b"lease 7").unwrap();
        let k2 = agreed_key(&requester, &provider.public(), b"lease 7").unwrap();
        assert_eq!(k1, k2);
        assert_ne!(k1, agreed_key(&provider, &requester.public(), b"lease 8").unwrap());
        let eve = SecretKey::from_label("e");
        assert_ne!(k1, agreed_key(&eve, &requester.public(), b"lease 7").unwrap());
    }

    #[test]
    fn only_the_recipient_opens_the_key() {
        let provider = SecretKey::from_label("provider");
        let key = BlobKey::generate();
        let sealed = seal_key(&key, &provider.public()).unwrap();
        assert_eq!(sealed.len(), SEALED_KEY_LEN);
        assert!(sealed.len() <= agora_core::tx::MAX_SEALED_KEY);
        assert_eq!(open_key(&sealed, &provider).unwrap(), key);
        assert_ne!(seal_key(&key, &provider.public()).unwrap(), sealed, "ephemeral keys are fresh");
        let other = SecretKey::from_label("someone else");
        assert_eq!(open_key(&sealed, &other), Err(SealError::WrongKey));
    }

    #[test]
    fn any_change_to_a_sealed_key_is_rejected() {
        let provider = SecretKey::generate();
        let sealed = seal_key(&BlobKey::generate(), &provider.public()).unwrap();
        for i in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x20;
            assert!(open_key(&bad, &provider).is_err(), "byte {i}");
        }
        let mut bad = sealed.clone();
        bad[0] = 9;
        assert_eq!(open_key(&bad, &provider), Err(SealError::Version(9)));
        assert_eq!(open_key(&sealed[1..], &provider), Err(SealError::Length(SEALED_KEY_LEN - 1)));
    }

    #[test]
    fn degenerate_keys_are_refused() {
        let mut y2 = [0u8; 32];
        y2[0] = 2; // Not on the curve.
        let invalid = PublicKey(y2);
        assert_eq!(seal_key(&BlobKey::generate(), &invalid), Err(SealError::InvalidRecipient(invalid)));
        // The identity point (y = 1) maps to a low-order X25519 point: no shared secret.
        let mut y1 = [0u8; 32];
        y1[0] = 1;
        assert_eq!(seal_key(&BlobKey::generate(), &PublicKey(y1)), Err(SealError::WeakKey));
    }

    #[test]
    fn a_disclosure_opens_the_sealed_key_for_anyone_and_only_as_sent() {
        let provider = SecretKey::from_label("provider");
        let key = BlobKey::generate();
        let sealed = seal_key(&key, &provider.public()).unwrap();
        let d = disclose(&sealed, &provider, b"lease 3").unwrap();
        assert_eq!(open_disclosed(&sealed, &provider.public(), &d, b"lease 3").unwrap(), key);
        // Not for another context, recipient, or sealed key.
        assert_eq!(open_disclosed(&sealed, &provider.public(), &d, b"lease 4"), Err(SealError::Disclosure));
        let other = SecretKey::from_label("other");
        assert_eq!(open_disclosed(&sealed, &other.public(), &d, b"lease 3"), Err(SealError::Disclosure));
        let resealed = seal_key(&key, &provider.public()).unwrap();
        assert_eq!(open_disclosed(&resealed, &provider.public(), &d, b"lease 3"), Err(SealError::Disclosure));
        // A key sealed to someone else (or garbage under a valid ephemeral) fails to open even
        // with an honest disclosure: the proof shows what the recipient was sent, and that it
        // does not open.
        let mut garbage = sealed.clone();
        garbage[40] ^= 1;
        let d = disclose(&garbage, &provider, b"lease 3").unwrap();
        assert_eq!(open_disclosed(&garbage, &provider.public(), &d, b"lease 3"), Err(SealError::WrongKey));
    }

    #[test]
    fn a_disclosed_agreement_yields_the_agreed_key_and_nothing_else() {
        let (provider, requester) = (SecretKey::from_label("p"), SecretKey::from_label("r"));
        let key = agreed_key(&provider, &requester.public(), b"lease 7").unwrap();
        let d = disclose_agreed(&requester, &provider.public(), b"disclosed for 7").unwrap();
        let open = |who: &PublicKey, peer: &PublicKey, dc: &[u8]| {
            agreed_key_disclosed(who, peer, &d, dc, b"lease 7")
        };
        assert_eq!(open(&requester.public(), &provider.public(), b"disclosed for 7").unwrap(), key);
        let eve = SecretKey::from_label("e");
        assert_eq!(open(&eve.public(), &provider.public(), b"disclosed for 7"), Err(SealError::Disclosure));
        assert_eq!(open(&requester.public(), &eve.public(), b"disclosed for 7"), Err(SealError::Disclosure));
        assert_eq!(
            open(&requester.public(), &provider.public(), b"disclosed for 8"),
            Err(SealError::Disclosure)
        );
    }
}
