//! The content store: blobs on disk, addressed by their BLAKE3 hash.
//!
//! Guarantees a caller may rely on:
//! - a blob is visible only once it is complete and durable (written to a staging file,
//!   fsynced, then renamed into place);
//! - every byte read back has been verified against the blob's hash, chunk group by chunk
//!   group, before it is returned — a blob corrupted on disk yields
//!   [`StoreError::Corrupted`], never bad bytes;
//! - pins are persisted and garbage collection never removes a blob while a pin on it holds
//!   (see [`crate::pins`]: pins have owners, and some lapse by themselves).
//!
//! One process should own a store directory: opening it clears the staging area.

use crate::error::{IoContext, Result, StoreError};
use crate::gc::{self, Candidate, GcReport};
use crate::http::auth::now_ms;
use crate::layout::{Layout, hash_from_name, publish, remove_if_present, sync_dir, sync_file};
use crate::pins::{self, Pin};
use crate::reader::Blob;
use crate::task::run_blocking;
use crate::tree::bao_tree;
use crate::writer::BlobWriter;
use agora_core::Hash;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use tempfile::NamedTempFile;
use tokio::sync::mpsc;

/// What the store knows about one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    /// The blob's address: the BLAKE3 hash of its bytes.
    pub hash: Hash,
    /// Its size in bytes.
    pub size: u64,
    /// Whether garbage collection must keep it.
    pub pinned: bool,
}

/// A content store rooted at a directory. Cheap to clone; clones share the store.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    layout: Layout,
    /// Serializes the steps that decide whether a blob exists or is pinned (install, pin,
    /// unpin, remove, gc), so a collection never deletes a blob that an upload just confirmed.
    meta: Mutex<()>,
}

/// Bytes read per step when storing from a reader.
const READ_BUFFER: usize = 256 * 1024;

/// Upload chunks buffered between the network and the disk writer.
const STAGING_QUEUE: usize = 8;

impl Store {
    /// Opens (creating if needed) the store in `dir`, discarding anything a crash left half done:
    /// staging files, and outboards or pins whose blob is absent.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let layout = Layout::create(dir.as_ref())?;
        for entry in fs::read_dir(&layout.tmp).ctx("list", &layout.tmp)? {
            let path = entry.ctx("list", &layout.tmp)?.path();
            remove_if_present(&path)?;
        }
        let store = Self { inner: Arc::new(Inner { layout, meta: Mutex::new(()) }) };
        let layout = store.layout();
        for dir in [&layout.outboards, &layout.pins] {
            let mut removed = false;
            for hash in list_hashes(dir)? {
                if !layout.data(&hash).exists() {
                    removed |= remove_if_present(&dir.join(hash.to_string()))?;
                }
            }
            if removed {
                sync_dir(dir)?;
            }
        }
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.layout().root
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data, so a panic elsewhere cannot have left anything inconsistent.
        self.inner.meta.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts writing a blob incrementally.
    pub fn writer(&self) -> Result<BlobWriter> {
        BlobWriter::new(self.clone())
    }

    /// Stores `bytes`; `pin` protects the blob from garbage collection (the operator's pin).
    pub fn put(&self, bytes: &[u8], pin: bool) -> Result<BlobInfo> {
        let mut writer = self.writer()?;
        writer.append(bytes)?;
        writer.finish(pin)
    }

    /// Stores everything `reader` yields, with the operator's pin if `pin`. If the reader fails,
    /// nothing is stored.
    pub fn put_reader(&self, reader: impl Read, pin: bool) -> Result<BlobInfo> {
        self.put_reader_pinned(reader, pin.then(Pin::operator))
    }

    /// Stores everything `reader` yields, held by `pin` (if any) from the moment it becomes
    /// visible. If the reader fails, nothing is stored.
    pub fn put_reader_pinned(&self, mut reader: impl Read, pin: Option<Pin>) -> Result<BlobInfo> {
        let mut writer = self.writer()?;
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return writer.finish_pinned(pin),
                Ok(n) => writer.append(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(StoreError::Interrupted { received: writer.len(), reason: e.to_string() });
                }
            }
        }
    }

    /// Stores an async stream of chunks (such as an HTTP request body) of at most `limit` bytes.
    ///
    /// Disk writes and hashing run on the blocking pool while the stream is read, so receiving
    /// and storing overlap. If the stream yields an error (an HTTP body cut off mid-way does) or
    /// grows past `limit`, or the caller drops the future, nothing is stored and the staging file
    /// is removed. Needs a Tokio runtime.
    pub async fn put_stream<S, E>(&self, stream: S, limit: u64, pin: Option<Pin>) -> Result<BlobInfo>
    where
        S: Stream<Item = std::result::Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        enum Step {
            Data(Bytes),
            Commit,
        }
        let (tx, mut rx) = mpsc::channel::<Step>(STAGING_QUEUE);
        let store = self.clone();
        let staging = tokio::task::spawn_blocking(move || {
            let mut writer = store.writer()?;
            while let Some(step) = rx.blocking_recv() {
                match step {
                    Step::Data(bytes) => writer.append(&bytes)?,
                    Step::Commit => return writer.finish_pinned(pin).map(Some),
                }
            }
            Ok(None)
        });
        let mut stream = std::pin::pin!(stream);
        let mut received = 0u64;
        let outcome = loop {
            match stream.next().await {
                None => break tx.send(Step::Commit).await.map_err(|_| None),
                Some(Ok(bytes)) => {
                    received += bytes.len() as u64;
                    if received > limit {
                        break Err(Some(StoreError::TooLarge { limit }));
                    }
                    if tx.send(Step::Data(bytes)).await.is_err() {
                        break Err(None); // The writer failed; its error is reported below.
                    }
                }
                Some(Err(e)) => break Err(Some(StoreError::Interrupted { received, reason: e.to_string() })),
            }
        };
        drop(tx);
        let staged = match staging.await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        match (outcome, staged) {
            (Err(Some(e)), _) => Err(e),
            (_, Err(e)) => Err(e),
            (_, Ok(Some(info))) => Ok(info),
            (_, Ok(None)) => {
                Err(StoreError::Interrupted { received, reason: "the stream stopped before its end".into() })
            }
        }
    }

    /// Moves a finished staging file (and its outboard) into place.
    pub(crate) fn install(
        &self,
        hash: Hash,
        size: u64,
        data: NamedTempFile,
        outboard: Option<NamedTempFile>,
        pin: Option<Pin>,
    ) -> Result<BlobInfo> {
        let layout = self.layout();
        let dest = layout.data(&hash);
        let sync = || {
            sync_file(&data)?;
            outboard.as_ref().map_or(Ok(()), sync_file)
        };
        // Sync outside the lock (it can take a while), unless the blob is already stored.
        let synced = !dest.exists() && {
            sync()?;
            true
        };
        let _guard = self.lock();
        if dest.exists() {
            // Already stored: keep the old copy, but count this upload as a fresh use.
            File::options()
                .write(true)
                .open(&dest)
                .and_then(|f| f.set_modified(SystemTime::now()))
                .ctx("refresh the timestamp of", &dest)?;
        } else {
            if !synced {
                sync()?; // Collected since the check above.
            }
            if let Some(outboard) = outboard {
                publish(outboard, &layout.outboard(&hash))?;
            }
            publish(data, &dest)?;
        }
        let pinned = match pin {
            Some(pin) => {
                self.add_pin_locked(&hash, pin)?;
                true
            }
            None => self.pinned_now(&hash)?,
        };
        Ok(BlobInfo { hash, size, pinned })
    }

    /// Whether the store holds blob `hash`.
    pub fn has(&self, hash: &Hash) -> bool {
        self.layout().data(hash).exists()
    }

    /// Size and pin state of blob `hash`.
    pub fn info(&self, hash: &Hash) -> Result<BlobInfo> {
        let path = self.layout().data(hash);
        let size = match fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound(*hash)),
            Err(e) => return Err(e).ctx("read the size of", path),
        };
        Ok(BlobInfo { hash: *hash, size, pinned: self.pinned_now(hash)? })
    }

    /// Whether a pin on `hash` holds now.
    fn pinned_now(&self, hash: &Hash) -> Result<bool> {
        let now = now_ms();
        Ok(self.pins(hash)?.iter().any(|p| p.holds_at(now)))
    }

    /// The file holding blob `hash`'s bytes, for a process that cannot share this store (it was
    /// verified when stored; readers here verify again, that process does not). Absent once
    /// the blob is collected: hold a pin while it is used.
    pub fn blob_path(&self, hash: &Hash) -> std::path::PathBuf {
        self.layout().data(hash)
    }

    /// Opens blob `hash` for verified reading.
    pub fn open_blob(&self, hash: &Hash) -> Result<Blob> {
        Blob::open(self.layout(), *hash)
    }

    /// The whole blob, verified, in memory. Use [`Blob::read_range_to`] for large blobs.
    pub fn get(&self, hash: &Hash) -> Result<Vec<u8>> {
        self.open_blob(hash)?.read_all()
    }

    /// Bytes `range` of blob `hash`, verified: only the chunk groups covering the range are read.
    pub fn get_range(&self, hash: &Hash, range: Range<u64>) -> Result<Vec<u8>> {
        let blob = self.open_blob(hash)?;
        blob.check_range(&range)?;
        let mut out = Vec::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
        blob.read_range_to(range, &mut out)?;
        Ok(out)
    }

    /// Reads all of blob `hash` and checks it against its hash.
    pub fn verify(&self, hash: &Hash) -> Result<()> {
        let blob = self.open_blob(hash)?;
        blob.read_range_to(0..blob.size(), &mut io::sink()).map(drop)
    }

    /// Every blob in the store, ordered by hash.
    pub fn list(&self) -> Result<Vec<BlobInfo>> {
        let pins = self.pinned()?;
        let mut blobs = Vec::new();
        for hash in list_hashes(&self.layout().data)? {
            match self.info(&hash) {
                Ok(info) => blobs.push(BlobInfo { pinned: pins.contains(&hash), ..info }),
                Err(StoreError::NotFound(_)) => {} // Collected while listing.
                Err(e) => return Err(e),
            }
        }
        blobs.sort_by_key(|b| b.hash);
        Ok(blobs)
    }

    /// The blobs a pin holds now.
    fn pinned(&self) -> Result<HashSet<Hash>> {
        let now = now_ms();
        let mut held = HashSet::new();
        for hash in list_hashes(&self.layout().pins)? {
            if self.pins(&hash)?.iter().any(|p| p.holds_at(now)) {
                held.insert(hash);
            }
        }
        Ok(held)
    }

    /// The pins on blob `hash` (none if it is not pinned), lapsed ones included.
    pub fn pins(&self, hash: &Hash) -> Result<Vec<Pin>> {
        let marker = self.layout().pin(hash);
        match fs::read_to_string(&marker) {
            Ok(text) => Ok(pins::parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).ctx("read the pins of", &marker),
        }
    }

    /// Protects blob `hash` from garbage collection with the operator's pin, until the operator
    /// unpins it; the pin survives restarts.
    pub fn pin(&self, hash: &Hash) -> Result<BlobInfo> {
        self.pin_for(hash, Pin::operator())
    }

    /// Adds `pin` to blob `hash` (replacing an earlier pin of the same owner); the pin survives
    /// restarts. Fails if the store does not hold the blob, or the owner name is invalid.
    pub fn pin_for(&self, hash: &Hash, pin: Pin) -> Result<BlobInfo> {
        let _guard = self.lock();
        let info = self.info(hash)?;
        self.add_pin_locked(hash, pin)?;
        Ok(BlobInfo { pinned: true, ..info })
    }

    /// Lets garbage collection remove blob `hash` again: drops every pin on it, whoever holds
    /// it (the operator's override).
    pub fn unpin(&self, hash: &Hash) -> Result<BlobInfo> {
        let _guard = self.lock();
        let info = self.info(hash)?;
        self.write_pins_locked(hash, &[])?;
        Ok(BlobInfo { pinned: false, ..info })
    }

    /// Drops every pin `owner` holds (a job or lease that settled); returns the blobs no pin
    /// holds any more.
    pub fn release(&self, owner: &str) -> Result<Vec<Hash>> {
        self.retain_pins(|p| p.owner != owner)
    }

    /// Drops every pin that has lapsed at `now_ms`; returns the blobs no pin holds any more.
    pub fn expire(&self, now_ms: u64) -> Result<Vec<Hash>> {
        self.retain_pins(|p| p.holds_at(now_ms))
    }

    /// Keeps only the pins `keep` accepts, on every blob; returns the blobs left unpinned.
    fn retain_pins(&self, keep: impl Fn(&Pin) -> bool) -> Result<Vec<Hash>> {
        let _guard = self.lock();
        let mut freed = Vec::new();
        for hash in list_hashes(&self.layout().pins)? {
            let pins = self.pins(&hash)?;
            let kept: Vec<Pin> = pins.iter().filter(|p| keep(p)).cloned().collect();
            if kept.len() != pins.len() {
                self.write_pins_locked(&hash, &kept)?;
                if kept.is_empty() {
                    freed.push(hash);
                }
            }
        }
        Ok(freed)
    }

    fn add_pin_locked(&self, hash: &Hash, pin: Pin) -> Result<()> {
        if !Pin::owner_is_valid(&pin.owner) {
            return Err(StoreError::InvalidPin(pin.owner));
        }
        let pins = pins::with(self.pins(hash)?, pin);
        self.write_pins_locked(hash, &pins)
    }

    /// Replaces blob `hash`'s marker with `pins` (removing it when there are none), atomically.
    fn write_pins_locked(&self, hash: &Hash, pins: &[Pin]) -> Result<()> {
        let layout = self.layout();
        let marker = layout.pin(hash);
        if pins.is_empty() {
            if remove_if_present(&marker)? {
                sync_dir(&layout.pins)?;
            }
            return Ok(());
        }
        let mut staged = layout.staging_file()?;
        io::Write::write_all(&mut staged, pins::render(pins).as_bytes()).ctx("write the pins of", &marker)?;
        sync_file(&staged)?;
        publish(staged, &marker)
    }

    /// Deletes blob `hash` and its pin; returns whether it was present. Readers that already
    /// opened it keep a working view.
    pub fn remove(&self, hash: &Hash) -> Result<bool> {
        let _guard = self.lock();
        let removed = self.remove_locked(hash)?;
        self.sync_all_dirs()?;
        Ok(removed)
    }

    fn remove_locked(&self, hash: &Hash) -> Result<bool> {
        let layout = self.layout();
        // The data file goes first: once it is gone the blob is absent, whatever happens next.
        let removed = remove_if_present(&layout.data(hash))?;
        remove_if_present(&layout.outboard(hash))?;
        remove_if_present(&layout.pin(hash))?;
        Ok(removed)
    }

    fn sync_all_dirs(&self) -> Result<()> {
        let layout = self.layout();
        [&layout.data, &layout.outboards, &layout.pins].into_iter().try_for_each(|d| sync_dir(d))
    }

    /// Removes unpinned blobs, least recently stored first, until the store's disk use (data
    /// and outboards) is at most `budget_bytes` or only pinned blobs remain.
    pub fn gc(&self, budget_bytes: u64) -> Result<GcReport> {
        let _guard = self.lock();
        let pins = self.pinned()?;
        let mut candidates = Vec::new();
        for hash in list_hashes(&self.layout().data)? {
            let path = self.layout().data(&hash);
            let meta = fs::metadata(&path).ctx("inspect", &path)?;
            candidates.push(Candidate {
                hash,
                disk_bytes: meta.len() + bao_tree(meta.len()).outboard_size(),
                stored_at: meta.modified().ctx("read the timestamp of", &path)?,
                pinned: pins.contains(&hash),
            });
        }
        let total: u64 = candidates.iter().map(|c| c.disk_bytes).sum();
        let victims = gc::victims(candidates, budget_bytes);
        let mut report = GcReport { removed: Vec::new(), freed_bytes: 0, kept_bytes: total, budget_bytes };
        for victim in victims {
            self.remove_locked(&victim.hash)?;
            report.removed.push(victim.hash);
            report.freed_bytes += victim.disk_bytes;
            report.kept_bytes -= victim.disk_bytes;
        }
        if !report.removed.is_empty() {
            self.sync_all_dirs()?;
        }
        Ok(report)
    }

    /// Runs [`Store::gc`] on the blocking pool.
    pub async fn gc_async(&self, budget_bytes: u64) -> Result<GcReport> {
        let store = self.clone();
        run_blocking(move || store.gc(budget_bytes)).await
    }
}

/// The hashes named by the files in a store directory.
fn list_hashes(dir: &Path) -> Result<Vec<Hash>> {
    let mut hashes = Vec::new();
    for entry in fs::read_dir(dir).ctx("list", dir)? {
        if let Some(hash) = hash_from_name(&entry.ctx("list", dir)?.file_name()) {
            hashes.push(hash);
        }
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_a_crash_are_cleaned_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kept = store.put(&vec![7u8; 40_000], true).unwrap();
        let layout = store.layout();
        let ghost = Hash::of(b"ghost");
        fs::write(layout.tmp.join("half-written"), b"x").unwrap();
        fs::write(layout.outboard(&ghost), b"x").unwrap();
        fs::write(layout.pin(&ghost), b"").unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(&store.layout().tmp).unwrap().count(), 0);
        assert!(!store.layout().outboard(&ghost).exists());
        assert!(!store.layout().pin(&ghost).exists());
        assert_eq!(store.list().unwrap(), vec![kept]);
        assert_eq!(store.get(&kept.hash).unwrap(), vec![7u8; 40_000]);
    }

    #[test]
    fn layout_names_files_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let info = store.put(&vec![1u8; 20_000], false).unwrap();
        assert_eq!(info.hash, Hash::of(&vec![1u8; 20_000]));
        assert!(dir.path().join("data").join(info.hash.to_string()).exists());
        assert!(dir.path().join("outboard").join(info.hash.to_string()).exists());
        let small = store.put(b"tiny", false).unwrap();
        assert!(!store.layout().outboard(&small.hash).exists(), "one chunk group needs no outboard");
    }
}
