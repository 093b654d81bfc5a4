//! Client-side blob encryption: XChaCha20-Poly1305 in a chunked STREAM construction.
//!
//! Each blob gets a fresh random 32-byte [`BlobKey`]. The plaintext is cut into 64 KiB
//! segments, each sealed separately, so blobs of any size encrypt and decrypt as streams. Segment
//! `i`'s nonce is `prefix ‖ i (u32 big-endian) ‖ last`, where the 19-byte prefix is random per
//! blob and `last` is 1 only for the final segment. Reordering segments breaks their counters;
//! dropping trailing segments leaves a final segment sealed as "not last"; either way
//! decryption fails instead of returning altered plaintext.
//!
//! Layout: `MAGIC ‖ prefix`, then the segments, each `ciphertext ‖ 16-byte tag`. Every segment
//! but the last holds exactly 64 KiB of plaintext; the last holds 0..=64 KiB.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Key, KeyInit, Tag, XChaCha20Poly1305, XNonce};

/// Marks an encrypted Agora blob (format version 1).
pub const MAGIC: [u8; 4] = *b"AGE\x01";

/// Random per-blob part of every segment nonce.
const PREFIX_LEN: usize = 19;

/// Bytes before the first segment.
pub const HEADER_LEN: usize = MAGIC.len() + PREFIX_LEN;

/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;

/// Authentication tag bytes per segment.
pub const TAG_LEN: usize = 16;

/// A blob's symmetric key. Its `Debug` output never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct BlobKey([u8; 32]);

impl BlobKey {
    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random number generator is available");
        Self(key)
    }

    /// Wraps raw key bytes (as opened from a sealed key).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.0))
    }
}

impl std::fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobKey(..)")
    }
}

/// Why encrypted data could not be decrypted (or plaintext encrypted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The data does not start with the encrypted-blob header.
    #[error(
        "this is not an Agora encrypted blob (its header is missing); if it is a public blob, read it without a key"
    )]
    NotEncrypted,
    /// The data ends inside the header or a segment.
    #[error("the encrypted blob is cut short inside {0}; fetch it again")]
    Truncated(&'static str),
    /// A segment failed authentication.
    #[error(
        "segment {segment} of the encrypted blob failed authentication: the key is wrong, or the data was \
         modified, reordered or truncated"
    )]
    Tampered {
        /// Index of the first segment that failed.
        segment: u32,
    },
    /// The plaintext has more segments than the nonce counter can number.
    #[error("the blob is too large to encrypt: at most {} segments of {SEGMENT} bytes", u32::MAX)]
    TooLarge,
}

/// The size of the encryption of `plain_len` bytes.
pub fn encrypted_len(plain_len: u64) -> u64 {
    let segments = plain_len.div_ceil(SEGMENT as u64).max(1);
    HEADER_LEN as u64 + plain_len + segments * TAG_LEN as u64
}

fn nonce(prefix: &[u8; PREFIX_LEN], counter: u32, last: bool) -> XNonce {
    let mut nonce = [0u8; 24];
    nonce[..PREFIX_LEN].copy_from_slice(prefix);
    nonce[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&counter.to_be_bytes());
    nonce[23] = u8::from(last);
    XNonce::from(nonce)
}

/// Encrypts a blob incrementally: feed plaintext with [`update`](Self::update), end with
/// [`finish`](Self::finish); ciphertext is appended to the caller's buffer as segments fill.
pub struct Encryptor {
    cipher: XChaCha20Poly1305,
    prefix: [u8; PREFIX_LEN],
    counter: u32,
    pending: Vec<u8>,
    header_written: bool,
}

impl Encryptor {
    /// Starts encrypting a blob under `key` with a fresh random nonce prefix.
    pub fn new(key: &BlobKey) -> Self {
        let mut prefix = [0u8; PREFIX_LEN];
        getrandom::fill(&mut prefix).expect("the OS random number generator is available");
        Self {
            cipher: key.cipher(),
            prefix,
            counter: 0,
            pending: Vec::with_capacity(SEGMENT),
            header_written: false,
        }
    }

    fn write_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_written {
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(&self.prefix);
            self.header_written = true;
        }
    }

    /// Encrypts the next plaintext bytes. A full segment is sealed only once more data follows,
    /// because the final segment is sealed differently.
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.write_header(out);
        while !input.is_empty() {
            if self.pending.len() == SEGMENT {
                self.seal(false, out)?;
            }
            let take = (SEGMENT - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
        Ok(())
    }

    /// Seals the final segment.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.write_header(out);
        self.seal(true, out)
    }

    fn seal(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let start = out.len();
        out.extend_from_slice(&self.pending);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce(&self.prefix, self.counter, last), &[], (&mut out[start..]).into())
            .map_err(|_| CryptoError::TooLarge)?;
        out.extend_from_slice(&tag);
        self.pending.clear();
        self.counter = self.counter.checked_add(1).ok_or(CryptoError::TooLarge)?;
        Ok(())
    }
}

/// Decrypts a blob incrementally; plaintext is released only after its segment authenticates.
pub struct Decryptor {
    cipher: XChaCha20Poly1305,
    header: Vec<u8>,
    prefix: Option<[u8; PREFIX_LEN]>,
    counter: u32,
    pending: Vec<u8>,
}

impl Decryptor {
    /// Starts decrypting a blob encrypted under `key`.
    pub fn new(key: &BlobKey) -> Self {
        Self {
            cipher: key.cipher(),
            header: Vec::with_capacity(HEADER_LEN),
            prefix: None,
            counter: 0,
            pending: Vec::with_capacity(SEGMENT + TAG_LEN),
        }
    }

    /// Decrypts the next ciphertext bytes, appending authenticated plaintext to `out`.
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.prefix.is_none() {
            let take = (HEADER_LEN - self.header.len()).min(input.len());
            self.header.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.header.len() < HEADER_LEN {
                return Ok(());
            }
            if self.header[..MAGIC.len()] != MAGIC {
                return Err(CryptoError::NotEncrypted);
            }
            self.prefix = Some(self.header[MAGIC.len()..].try_into().expect("header length checked"));
        }
        while !input.is_empty() {
            if self.pending.len() == SEGMENT + TAG_LEN {
                self.open(false, out)?;
            }
            let take = (SEGMENT + TAG_LEN - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
        Ok(())
    }

    /// Authenticates and decrypts the final segment.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.prefix.is_none() {
            return Err(if self.header.len() >= MAGIC.len() && self.header[..MAGIC.len()] != MAGIC {
                CryptoError::NotEncrypted
            } else {
                CryptoError::Truncated("the header")
            });
        }
        self.open(true, out)
    }

    fn open(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let prefix = self.prefix.expect("the header is read before any segment");
        let Some(body_len) = self.pending.len().checked_sub(TAG_LEN) else {
            return Err(CryptoError::Truncated("a segment"));
        };
        let tag = Tag::try_from(&self.pending[body_len..]).expect("tag length checked");
        let start = out.len();
        out.extend_from_slice(&self.pending[..body_len]);
        let nonce = nonce(&prefix, self.counter, last);
        if self.cipher.decrypt_inout_detached(&nonce, &[], (&mut out[start..]).into(), &tag).is_err() {
            out.truncate(start);
            return Err(CryptoError::Tampered { segment: self.counter });
        }
        self.pending.clear();
        self.counter = self.counter.checked_add(1).ok_or(CryptoError::TooLarge)?;
        Ok(())
    }
}

/// Encrypts a whole blob held in memory.
pub fn encrypt(key: &BlobKey, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(usize::try_from(encrypted_len(plaintext.len() as u64)).unwrap_or(0));
    let mut enc = Encryptor::new(key);
    enc.update(plaintext, &mut out)?;
    enc.finish(&mut out)?;
    Ok(out)
}

/// Decrypts a whole blob held in memory.
pub fn decrypt(key: &BlobKey, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(ciphertext.len());
    let mut dec = Decryptor::new(key);
    dec.update(ciphertext, &mut out)?;
    dec.finish(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    const SIZES: [usize; 7] = [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 2 * SEGMENT + 17];

    #[test]
    fn round_trips_at_segment_boundaries_in_any_pieces() {
        let key = BlobKey::generate();
        for len in SIZES {
            let data = plain(len);
            let ct = encrypt(&key, &data).unwrap();
            assert_eq!(ct.len() as u64, encrypted_len(len as u64), "len {len}");
            assert_eq!(decrypt(&key, &ct).unwrap(), data, "len {len}");
            // Streaming in odd pieces gives a decryptable result too.
            let mut streamed = Vec::new();
            let mut enc = Encryptor::new(&key);
            for piece in data.chunks(7777) {
                enc.update(piece, &mut streamed).unwrap();
            }
            enc.finish(&mut streamed).unwrap();
            let mut out = Vec::new();
            let mut dec = Decryptor::new(&key);
            for piece in streamed.chunks(5000) {
                dec.update(piece, &mut out).unwrap();
            }
            dec.finish(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn ciphertext_hides_the_plaintext_and_needs_the_key() {
        let key = BlobKey::generate();
        let data = plain(1000);
        let ct = encrypt(&key, &data).unwrap();
        assert!(!ct.windows(32).any(|w| w == &data[..32]), "plaintext visible in the ciphertext");
        assert_ne!(encrypt(&key, &data).unwrap(), ct, "a fresh nonce prefix per blob");
        assert_eq!(decrypt(&BlobKey::generate(), &ct), Err(CryptoError::Tampered { segment: 0 }));
        assert_eq!(decrypt(&key, &data), Err(CryptoError::NotEncrypted));
        assert_eq!(format!("{key:?}"), "BlobKey(..)");
    }

    #[test]
    fn truncation_reordering_and_tampering_are_detected() {
        let key = BlobKey::generate();
        let data = plain(3 * SEGMENT + 100);
        let ct = encrypt(&key, &data).unwrap();
        let seg = SEGMENT + TAG_LEN;
        // Dropping whole trailing segments: the new final segment was not sealed as last.
        let cut = HEADER_LEN + 2 * seg;
        assert_eq!(decrypt(&key, &ct[..cut]), Err(CryptoError::Tampered { segment: 1 }));
        // Cutting inside a segment.
        assert!(decrypt(&key, &ct[..ct.len() - 1]).is_err());
        assert_eq!(decrypt(&key, &ct[..HEADER_LEN - 1]), Err(CryptoError::Truncated("the header")));
        assert_eq!(decrypt(&key, &ct[..HEADER_LEN + 3]), Err(CryptoError::Truncated("a segment")));
        // Swapping two segments.
        let mut swapped = ct.clone();
        let (a, b) = (HEADER_LEN, HEADER_LEN + seg);
        let first = ct[a..a + seg].to_vec();
        swapped.copy_within(b..b + seg, a);
        swapped[b..b + seg].copy_from_slice(&first);
        assert_eq!(decrypt(&key, &swapped), Err(CryptoError::Tampered { segment: 0 }));
        // Flipping one bit anywhere after the magic.
        for pos in [MAGIC.len(), HEADER_LEN, HEADER_LEN + seg + 5, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[pos] ^= 1;
            assert!(matches!(decrypt(&key, &bad), Err(CryptoError::Tampered { .. })), "pos {pos}");
        }
        // Appending data after the final segment.
        let mut longer = ct.clone();
        longer.extend_from_slice(&[0; TAG_LEN]);
        assert!(decrypt(&key, &longer).is_err());
    }
}
