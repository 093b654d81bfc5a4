//! The on-disk store: round trips, ranged reads, corruption, pins and garbage collection.

mod common;

use agora_core::Hash;
use agora_store::{Pin, Store, StoreError};
use common::{G, SIZES, bytes, entries, flip_byte};
use std::fs::File;
use std::io::{self, Read};
use std::time::{Duration, SystemTime};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn round_trips_at_chunk_group_boundaries() {
    let (_dir, store) = open();
    for (i, len) in SIZES.into_iter().enumerate() {
        let data = bytes(len, i as u8);
        let info = store.put(&data, false).unwrap();
        assert_eq!(info.hash, Hash::of(&data), "len {len}");
        assert_eq!(info.size, len as u64);
        assert!(store.has(&info.hash));
        assert_eq!(store.info(&info.hash).unwrap(), info);
        assert_eq!(store.get(&info.hash).unwrap(), data, "len {len}");
        store.verify(&info.hash).unwrap();

        // The same bytes through a reader and through a writer fed in odd pieces.
        assert_eq!(store.put_reader(&data[..], false).unwrap(), info);
        let mut writer = store.writer().unwrap();
        for piece in data.chunks(7919) {
            writer.append(piece).unwrap();
        }
        assert_eq!(writer.len(), len as u64);
        assert_eq!(writer.finish(false).unwrap(), info);

        let l = len as u64;
        for range in [
            0..0,
            0..l.min(1),
            0..l,
            l / 2..l,
            l.saturating_sub(1)..l,
            (G as u64 - 1).min(l)..(G as u64 + 1).min(l),
        ] {
            let got = store.get_range(&info.hash, range.clone()).unwrap();
            assert_eq!(got, &data[range.start as usize..range.end as usize], "len {len} range {range:?}");
        }
    }
    assert_eq!(store.list().unwrap().len(), SIZES.len());
}

#[test]
fn missing_blobs_and_bad_ranges_are_clear_errors() {
    let (_dir, store) = open();
    let missing = Hash::of(b"never stored");
    for err in [
        store.get(&missing).unwrap_err(),
        store.info(&missing).unwrap_err(),
        store.get_range(&missing, 0..1).unwrap_err(),
        store.pin(&missing).unwrap_err(),
        store.unpin(&missing).unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotFound(h) if h == missing), "{err}");
        assert!(err.to_string().contains(&missing.to_string()));
    }
    assert!(!store.has(&missing));
    let info = store.put(b"hello", false).unwrap();
    let err = store.get_range(&info.hash, 3..9).unwrap_err();
    assert!(matches!(err, StoreError::RangeOutOfBounds { start: 3, end: 9, size: 5, .. }), "{err}");
    assert!(err.to_string().contains("0..5"));
    let reversed = std::ops::Range { start: 4, end: 2 };
    assert!(matches!(store.get_range(&info.hash, reversed), Err(StoreError::RangeOutOfBounds { .. })));
}

#[test]
fn a_blob_corrupted_on_disk_is_refused_from_the_bad_group_on() {
    let (dir, store) = open();
    let data = bytes(6 * G + 100, 1);
    let info = store.put(&data, false).unwrap();
    let path = dir.path().join("data").join(info.hash.to_string());
    flip_byte(&path, 2 * G as u64 + 100);

    let err = store.get(&info.hash).unwrap_err();
    assert!(matches!(err, StoreError::Corrupted { offset, .. } if offset == 2 * G as u64), "{err}");
    assert!(err.to_string().contains("will not be served"));
    assert!(store.verify(&info.hash).is_err());
    // Verification is local to chunk groups: other groups still read, the bad one never does.
    assert_eq!(store.get_range(&info.hash, 0..2 * G as u64).unwrap(), &data[..2 * G]);
    assert_eq!(store.get_range(&info.hash, 3 * G as u64..4 * G as u64).unwrap(), &data[3 * G..4 * G]);
    assert!(matches!(
        store.get_range(&info.hash, 2 * G as u64 + 5..2 * G as u64 + 6),
        Err(StoreError::Corrupted { .. })
    ));

    // Reading the blob through a writer stops before the bad group.
    let blob = store.open_blob(&info.hash).unwrap();
    let mut out = Vec::new();
    assert!(blob.read_range_to(0..blob.size(), &mut out).is_err());
    assert_eq!(out, &data[..2 * G]);
}

#[test]
fn truncated_files_and_bad_outboards_are_refused() {
    let (dir, store) = open();
    let data = bytes(3 * G, 2);
    let info = store.put(&data, false).unwrap();
    let path = dir.path().join("data").join(info.hash.to_string());
    let outboard = dir.path().join("outboard").join(info.hash.to_string());

    flip_byte(&outboard, 10);
    assert!(matches!(store.get(&info.hash), Err(StoreError::Corrupted { .. })));
    flip_byte(&outboard, 10);
    assert_eq!(store.get(&info.hash).unwrap(), data);

    File::options().write(true).open(&path).unwrap().set_len(G as u64 + 7).unwrap();
    assert!(matches!(store.get(&info.hash), Err(StoreError::Corrupted { .. })));
    File::options().write(true).open(&path).unwrap().set_len(0).unwrap();
    assert!(matches!(store.get(&info.hash), Err(StoreError::Corrupted { .. })));

    let small = store.put(b"a single chunk group", false).unwrap();
    flip_byte(&dir.path().join("data").join(small.hash.to_string()), 3);
    assert!(matches!(store.get(&small.hash), Err(StoreError::Corrupted { offset: 0, .. })));

    std::fs::remove_file(&outboard).unwrap();
    assert!(matches!(store.open_blob(&info.hash), Err(StoreError::Corrupted { .. })));
}

fn age(dir: &std::path::Path, hash: &Hash, secs_ago: u64) {
    let file = File::options().write(true).open(dir.join("data").join(hash.to_string())).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(secs_ago)).unwrap();
}

#[test]
fn gc_removes_oldest_unpinned_blobs_down_to_the_budget_and_pins_persist() {
    let (dir, store) = open();
    let a = store.put(&bytes(1000, 1), false).unwrap(); // oldest
    let b = store.put(&bytes(1000, 2), true).unwrap(); // pinned, older than c
    let c = store.put(&bytes(1000, 3), false).unwrap();
    let d = store.put(&bytes(1000, 4), false).unwrap(); // newest
    for (blob, secs) in [(&a, 400), (&b, 300), (&c, 200), (&d, 100)] {
        age(dir.path(), &blob.hash, secs);
    }
    assert!(b.pinned);

    let report = store.gc(4000).unwrap();
    assert!(report.removed.is_empty());
    let report = store.gc(2500).unwrap();
    assert_eq!(report.removed, vec![a.hash, c.hash]);
    assert_eq!((report.freed_bytes, report.kept_bytes), (2000, 2000));
    assert!(!report.over_budget());
    assert!(!store.has(&a.hash) && !store.has(&c.hash));

    // Pins are persisted: a reopened store still protects b.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(store.info(&b.hash).unwrap().pinned);
    let report = store.gc(0).unwrap();
    assert_eq!(report.removed, vec![d.hash]);
    assert!(report.over_budget());
    assert_eq!(store.list().unwrap(), vec![store.info(&b.hash).unwrap()]);

    // Unpinned, it goes too.
    assert!(!store.unpin(&b.hash).unwrap().pinned);
    assert_eq!(store.gc(0).unwrap().removed, vec![b.hash]);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(entries(&dir.path().join("pins")), 0);
}

#[test]
fn owned_pins_hold_until_every_owner_releases_or_lapses() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let input = store.put_reader_pinned(&vec![1u8; 3000][..], Some(Pin::held_by("job:7"))).unwrap();
    assert!(input.pinned);
    store.pin_for(&input.hash, Pin::held_by("lease:9")).unwrap();
    let upload = store.put(&vec![2u8; 3000], false).unwrap();
    store.pin_for(&upload.hash, Pin::until("upload:acct", 1_000)).unwrap();
    assert!(!store.info(&upload.hash).unwrap().pinned, "a pin that lapsed (at 1970 + 1 s) holds nothing");
    assert!(matches!(store.pin_for(&upload.hash, Pin::held_by("two words")), Err(StoreError::InvalidPin(_))));

    // Pins and their owners survive a restart.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.pins(&input.hash).unwrap(), vec![Pin::held_by("job:7"), Pin::held_by("lease:9")]);

    // Garbage collection takes the lapsed upload only; the expiry sweep drops its marker.
    assert_eq!(store.gc(0).unwrap().removed, vec![upload.hash]);
    assert!(store.expire(u64::MAX).unwrap().is_empty(), "no lapsing pin is left");

    // The job settles: the lease still holds the input. Then the lease settles too.
    assert!(store.release("job:7").unwrap().is_empty());
    assert!(store.info(&input.hash).unwrap().pinned);
    assert!(store.gc(0).unwrap().removed.is_empty());
    assert_eq!(store.release("lease:9").unwrap(), vec![input.hash]);
    assert!(store.pins(&input.hash).unwrap().is_empty());
    assert_eq!(store.gc(0).unwrap().removed, vec![input.hash]);
}

#[test]
fn gc_counts_outboards_and_storing_again_refreshes_age() {
    let (dir, store) = open();
    let big = store.put(&bytes(4 * G, 1), false).unwrap();
    let small = store.put(&bytes(10, 2), false).unwrap();
    age(dir.path(), &big.hash, 100);
    age(dir.path(), &small.hash, 50);
    // Uploading the big blob again makes it the most recent.
    assert_eq!(store.put(&bytes(4 * G, 1), false).unwrap(), big);
    let report = store.gc(4 * G as u64 + 3 * 64).unwrap();
    assert_eq!(report.removed, vec![small.hash]);
    assert_eq!(report.kept_bytes, 4 * G as u64 + 3 * 64, "4 groups need 3 parent pairs");
}

#[test]
fn failed_puts_leave_nothing_behind() {
    let (dir, store) = open();
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk unplugged"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }
    let err = store.put_reader(Failing(3 * G), false).unwrap_err();
    assert!(matches!(err, StoreError::Interrupted { received, .. } if received == 3 * G as u64), "{err}");
    assert!(err.to_string().contains("disk unplugged"));

    let writer = {
        let mut w = store.writer().unwrap();
        w.append(&bytes(2 * G, 1)).unwrap();
        w
    };
    assert_eq!(entries(&dir.path().join("tmp")), 1);
    drop(writer);
    assert_eq!(entries(&dir.path().join("tmp")), 0);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(entries(&dir.path().join("data")), 0);
}

#[tokio::test]
async fn put_stream_enforces_its_limit_and_discards_failed_streams() {
    let (dir, store) = open();
    let chunks = |n: usize| {
        futures_util::stream::iter(
            (0..n).map(|i| Ok::<_, io::Error>(bytes::Bytes::from(bytes(1000, i as u8)))),
        )
    };
    let info = store.put_stream(chunks(5), 5000, Some(Pin::operator())).await.unwrap();
    assert_eq!(info.size, 5000);
    assert!(info.pinned);

    let err = store.put_stream(chunks(6), 5000, None).await.unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { limit: 5000 }), "{err}");

    let failing = futures_util::stream::iter([
        Ok(bytes::Bytes::from(vec![1u8; 100])),
        Err(io::Error::other("peer reset")),
    ]);
    let err = store.put_stream(failing, 5000, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Interrupted { received: 100, .. }), "{err}");

    assert_eq!(store.list().unwrap(), vec![info]);
    assert!(common::eventually(|| entries(&dir.path().join("tmp")) == 0).await);
}

#[test]
fn remove_deletes_blob_outboard_and_pin() {
    let (dir, store) = open();
    let info = store.put(&bytes(3 * G, 9), true).unwrap();
    let open = store.open_blob(&info.hash).unwrap();
    assert!(store.remove(&info.hash).unwrap());
    assert!(!store.remove(&info.hash).unwrap());
    assert!(!store.has(&info.hash));
    for sub in ["data", "outboard", "pins"] {
        assert_eq!(entries(&dir.path().join(sub)), 0, "{sub}");
    }
    // A reader that opened the blob before keeps a consistent, verified view.
    assert_eq!(open.read_all().unwrap(), bytes(3 * G, 9));
}
