//! The provider's book of receipts: one append-only file per session holding, for every
//! response served, the signed receipt with the request, the client's signature, the output and
//! the fingerprints (what an auditor or a challenge asks for).
//!
//! A receipt is numbered, totalled and signed under the book's lock and written (and synced)
//! before it leaves the provider, so a crash never loses a receipt a client holds: the
//! provider could otherwise be convicted of omitting it. A record torn by a crash (short, or
//! failing its checksum) was never sent, and is cut off when the book is reopened.

use crate::fingerprint::Fingerprint;
use agora_core::codec::{Decode, Encode};
use agora_core::merkle::{MerkleProof, MerkleTree};
use agora_core::session::{ServeReceipt, SessionId, SignedReceipt, Usage, WindowCommitment};
use agora_core::{Hash, SecretKey, Signature, codec_struct};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Largest output a record holds (2,048 embeddings of 4,096 floats fit).
const MAX_OUTPUT: usize = 64 << 20;
/// Largest encoded fingerprint list a record holds.
const MAX_FINGERPRINTS: usize = 1 << 20;

/// Everything kept about one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The receipt sent with it.
    pub receipt: SignedReceipt,
    /// The request's exact bytes.
    pub request: Vec<u8>,
    /// The client key's signature over them.
    pub client_signature: Signature,
    /// The output's item encoding (a generation, or the vectors' list).
    pub output: Vec<u8>,
    /// The fingerprints, as JSON.
    pub fingerprints: Vec<u8>,
}
codec_struct!(Record {
    receipt,
    request: bytes(crate::wire::MAX_REQUEST_BYTES),
    client_signature,
    output: bytes(MAX_OUTPUT),
    fingerprints: bytes(MAX_FINGERPRINTS)
});

impl Record {
    /// The fingerprints.
    pub fn fingerprints(&self) -> serde_json::Result<Vec<Fingerprint>> {
        serde_json::from_slice(&self.fingerprints)
    }
}

/// A response about to be receipted.
pub struct Served<'a> {
    /// The request's bytes, its hash and the client's signature.
    pub request: &'a crate::wire::SignedRequest,
    /// The output's item encoding and its hash.
    pub output: (Vec<u8>, Hash),
    /// What it used.
    pub usage: Usage,
    /// The fingerprints.
    pub fingerprints: &'a [Fingerprint],
    /// Unix ms of the first and last output token.
    pub times: (u64, u64),
}

/// One session's receipts.
pub struct Book {
    session: SessionId,
    file: File,
    receipts: Vec<ServeReceipt>,
    offsets: Vec<u64>,
    seen: HashSet<Hash>,
    total: Usage,
    end: u64,
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let h = Hash::tagged("agora/serve-book", &[payload]);
    h.0[..8].try_into().expect("8 bytes")
}

impl Book {
    /// Opens (or creates) the book of `session` at `path`, replaying its records.
    pub fn open(path: &Path, session: SessionId) -> io::Result<Self> {
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
        let mut bytes = vec![];
        file.read_to_end(&mut bytes)?;
        let mut book = Book {
            session,
            file,
            receipts: vec![],
            offsets: vec![],
            seen: HashSet::new(),
            total: Usage::default(),
            end: 0,
        };
        let mut at = 0usize;
        while let Some(record) = Self::parse(&bytes[at..]) {
            let (record, len) = record;
            book.remember(&record.receipt.receipt, at as u64);
            at += len;
        }
        if at < bytes.len() {
            tracing::warn!(session, cut = bytes.len() - at, "cutting a torn record off the receipt book");
            book.file.set_len(at as u64)?;
            book.file.sync_all()?;
        }
        book.end = at as u64;
        Ok(book)
    }

    /// The record at the start of `bytes` and its length, if whole and intact.
    fn parse(bytes: &[u8]) -> Option<(Record, usize)> {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let payload = bytes.get(4..4 + len)?;
        let sum = bytes.get(4 + len..12 + len)?;
        (sum == checksum(payload)).then_some(())?;
        Some((Record::decode(payload).ok()?, 12 + len))
    }

    fn remember(&mut self, r: &ServeReceipt, offset: u64) {
        self.seen.insert(r.request);
        self.total = r.total;
        self.receipts.push(r.clone());
        self.offsets.push(offset);
    }

    /// Whether request `hash` was already served in this session.
    pub fn has(&self, hash: &Hash) -> bool {
        self.seen.contains(hash)
    }

    /// Numbers, totals and signs the receipt of `served`, writes its record durably, and
    /// returns it. Refuses a request already served.
    pub fn record(
        &mut self,
        chain_id: &str,
        key: &SecretKey,
        served: Served<'_>,
    ) -> io::Result<SignedReceipt> {
        if self.has(&served.request.hash) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "this request was already served"));
        }
        let total = self
            .total
            .checked_add(&served.usage)
            .ok_or_else(|| io::Error::other("the session's usage total overflows"))?;
        let receipt = ServeReceipt {
            session: self.session,
            seq: self.receipts.len() as u64,
            request: served.request.hash,
            output: served.output.1,
            usage: served.usage,
            total,
            fingerprints: crate::fingerprint::hash(served.fingerprints),
            first_token_ms: served.times.0,
            last_token_ms: served.times.1,
        };
        let signed = receipt.clone().sign(chain_id, key);
        let record = Record {
            receipt: signed.clone(),
            request: served.request.bytes.clone(),
            client_signature: served.request.signature,
            output: served.output.0,
            fingerprints: serde_json::to_vec(served.fingerprints).map_err(io::Error::other)?,
        };
        let payload = record.encode();
        let mut frame = Vec::with_capacity(payload.len() + 12);
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&payload);
        frame.extend_from_slice(&checksum(&payload));
        self.file.write_all(&frame)?;
        self.file.sync_data()?;
        let offset = self.end;
        self.end += frame.len() as u64;
        self.remember(&receipt, offset);
        Ok(signed)
    }

    /// The running usage total of the last receipt.
    pub fn total(&self) -> Usage {
        self.total
    }

    /// Every receipt, in `seq` order.
    pub fn receipts(&self) -> &[ServeReceipt] {
        &self.receipts
    }

    /// The full record of receipt `seq`.
    pub fn record_at(&mut self, seq: u64) -> io::Result<Record> {
        let offset =
            *self.offsets.get(seq as usize).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let end = self.offsets.get(seq as usize + 1).copied().unwrap_or(self.end);
        let mut bytes = vec![0; (end - offset) as usize];
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read_exact(&mut bytes)?;
        Self::parse(&bytes).map(|(r, _)| r).ok_or_else(|| io::Error::other("a record no longer parses"))
    }

    /// The commitment to the receipts from `first_seq` on (at most `max`), if there are any.
    pub fn window(&self, first_seq: u64, max: u32) -> Option<WindowCommitment> {
        let rest = self.receipts.get(first_seq as usize..).filter(|r| !r.is_empty())?;
        let leaves = &rest[..rest.len().min(max as usize)];
        Some(WindowCommitment {
            session: self.session,
            first_seq,
            receipts: leaves.len() as u32,
            root: tree(leaves).root(),
            total: leaves.last().expect("non-empty").total,
        })
    }

    /// The inclusion proof of receipt `seq` in the window of `count` receipts from `first_seq`.
    pub fn proof(&self, first_seq: u64, count: u32, seq: u64) -> Option<MerkleProof> {
        let leaves = self.receipts.get(first_seq as usize..(first_seq + u64::from(count)) as usize)?;
        tree(leaves).proof(seq.checked_sub(first_seq)? as usize)
    }
}

fn tree(receipts: &[ServeReceipt]) -> MerkleTree {
    MerkleTree::new(receipts.iter().map(ServeReceipt::leaf).collect())
}

/// The books of every session a provider serves, under one directory.
pub struct Books {
    dir: PathBuf,
    open: Mutex<HashMap<SessionId, Arc<Mutex<Book>>>>,
}

impl Books {
    /// Books kept under `dir`.
    pub fn new(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self { dir: dir.to_path_buf(), open: Mutex::default() })
    }

    /// The book of `session`, opened once.
    pub fn get(&self, session: SessionId) -> io::Result<Arc<Mutex<Book>>> {
        let mut open = self.open.lock().expect("not poisoned");
        if let Some(b) = open.get(&session) {
            return Ok(b.clone());
        }
        let book = Arc::new(Mutex::new(Book::open(&self.dir.join(format!("{session}.receipts")), session)?));
        open.insert(session, book.clone());
        Ok(book)
    }

    /// The sessions with a book on disk.
    pub fn sessions(&self) -> io::Result<Vec<SessionId>> {
        let mut out = vec![];
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(id) =
                name.to_str().and_then(|n| n.strip_suffix(".receipts")).and_then(|n| n.parse().ok())
            {
                out.push(id);
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ServeBody, ServeRequest, SignedRequest};

    fn request(nonce: u64) -> SignedRequest {
        let body = ServeBody::Embed { inputs: vec!["x".into()] };
        SignedRequest::new("c", &ServeRequest { session: 3, nonce, body }, &SecretKey::from_seed([1; 32]))
    }

    fn serve(book: &mut Book, nonce: u64) -> io::Result<SignedReceipt> {
        let req = request(nonce);
        let usage = Usage { items: 1, prompt_tokens: 4, completion_tokens: 0 };
        let served = Served {
            request: &req,
            output: (vec![7; 10], Hash::of(b"out")),
            usage,
            fingerprints: &[],
            times: (1, 2),
        };
        book.record("c", &SecretKey::from_seed([2; 32]), served)
    }

    #[test]
    fn receipts_are_numbered_totalled_signed_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("3.receipts");
        let mut book = Book::open(&path, 3).unwrap();
        for n in 0..5 {
            let r = serve(&mut book, n).unwrap();
            assert_eq!(r.receipt.seq, n);
            assert_eq!(r.receipt.total.items, n + 1);
            assert!(r.verify("c").is_ok());
        }
        assert_eq!(serve(&mut book, 2).unwrap_err().kind(), io::ErrorKind::AlreadyExists, "served once");
        let w = book.window(1, 3).unwrap();
        assert_eq!((w.first_seq, w.receipts, w.total.items), (1, 3, 4));
        let proof = book.proof(1, 3, 2).unwrap();
        assert!(proof.verify(&w.root, book.receipts()[2].leaf()));
        assert!(book.window(5, 3).is_none());
        drop(book);

        let mut again = Book::open(&path, 3).unwrap();
        assert_eq!(again.receipts().len(), 5);
        assert!(again.has(&request(4).hash));
        assert_eq!(serve(&mut again, 9).unwrap().receipt.seq, 5, "numbering continues");
        let r = again.record_at(2).unwrap();
        assert_eq!(r.receipt.receipt.seq, 2);
        assert_eq!(r.request, request(2).bytes);
        assert_eq!(r.output, vec![7; 10]);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_numbering_resumes_after_the_last_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("3.receipts");
        let mut book = Book::open(&path, 3).unwrap();
        for n in 0..3 {
            serve(&mut book, n).unwrap();
        }
        drop(book);
        let len = std::fs::metadata(&path).unwrap().len();
        // A crash while writing the fourth record: half of it reached the disk.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let mut book = Book::open(&path, 3).unwrap();
        assert_eq!(book.receipts().len(), 3);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert_eq!(serve(&mut book, 3).unwrap().receipt.seq, 3);
        // A flipped byte inside a record fails its checksum: the book stops before it.
        drop(book);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 20;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(Book::open(&path, 3).unwrap().receipts().len(), 3);
    }

    #[test]
    fn books_are_found_again_by_session() {
        let dir = tempfile::tempdir().unwrap();
        let books = Books::new(dir.path()).unwrap();
        serve(&mut books.get(3).unwrap().lock().unwrap(), 0).unwrap();
        books.get(8).unwrap();
        assert_eq!(books.sessions().unwrap(), vec![3, 8]);
        assert!(Arc::ptr_eq(&books.get(3).unwrap(), &books.get(3).unwrap()));
    }
}
