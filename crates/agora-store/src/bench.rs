//! The transfer benchmark: a verified upload and download of one blob over loopback HTTP,
//! beside a plain copy of the same bytes through the same server, measured in the same run.
//!
//! The verified path is the product path: [`Client::upload_file`] (the client hashes what it
//! sends and checks the node's answer; the node hashes, builds the outboard, fsyncs, renames)
//! and [`Client::download_to_file`] (the node checks every chunk group before sending it, the
//! client checks it again on arrival). The plain path moves the same file with the same
//! machinery — body streaming, the blocking file writers, fsync — but hashes and checks nothing.

use crate::error::{IoContext, StoreError};
use crate::http::body::blocking_body;
use crate::http::client::{Client, ClientError, file_chunks, no_progress};
use crate::http::server::{RunningServer, ServerConfig, router};
use crate::http::sink::{FileSink, Sink};
use crate::store::Store;
use crate::task::run_blocking;
use agora_core::Hash;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::put;
use bytes::Bytes;
use futures_util::StreamExt;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Timings of a benchmark run: the fastest round of each phase.
#[derive(Debug, Clone)]
pub struct TransferReport {
    /// Blob size in bytes.
    pub bytes: u64,
    /// `PUT /blobs` of the file, hashed on both ends.
    pub verified_upload: Duration,
    /// `GET /blobs/{hash}/verified` to a file, checked on both ends.
    pub verified_download: Duration,
    /// Plain upload of the same file.
    pub plain_upload: Duration,
    /// Plain download of the same bytes.
    pub plain_download: Duration,
}

/// Megabytes (10^6 bytes) per second.
fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64().max(1e-9)
}

impl TransferReport {
    /// Verified upload plus download, in MB/s of blob moved (each direction counts once).
    pub fn verified_mb_s(&self) -> f64 {
        mb_per_s(2 * self.bytes, self.verified_upload + self.verified_download)
    }

    /// Plain upload plus download, in MB/s.
    pub fn plain_mb_s(&self) -> f64 {
        mb_per_s(2 * self.bytes, self.plain_upload + self.plain_download)
    }

    /// Verified throughput as a fraction of plain throughput (the target is at least 0.5).
    pub fn ratio(&self) -> f64 {
        self.verified_mb_s() / self.plain_mb_s()
    }
}

impl fmt::Display for TransferReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, name: &str, time: Duration| {
            writeln!(
                f,
                "  {name:<18} {:>8.3} s  {:>9.1} MB/s",
                time.as_secs_f64(),
                mb_per_s(self.bytes, time)
            )
        };
        writeln!(
            f,
            "blob: {} bytes ({:.1} MiB) over loopback HTTP",
            self.bytes,
            self.bytes as f64 / (1 << 20) as f64
        )?;
        row(f, "verified upload", self.verified_upload)?;
        row(f, "verified download", self.verified_download)?;
        row(f, "plain upload", self.plain_upload)?;
        row(f, "plain download", self.plain_download)?;
        writeln!(f, "  verified round trip {:>9.1} MB/s", self.verified_mb_s())?;
        writeln!(f, "  plain round trip    {:>9.1} MB/s", self.plain_mb_s())?;
        write!(f, "  ratio verified/plain {:.2}x (target >= 0.5x)", self.ratio())
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A local file or socket operation failed.
    #[error("benchmark I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The verified transfer failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The plain transfer failed.
    #[error("plain transfer failed: {0}")]
    Plain(#[from] reqwest::Error),
    /// A copy came back different.
    #[error("the {0} copy does not match the source")]
    Mismatch(&'static str),
}

/// Rounds [`transfer`] runs; each phase reports its fastest round, which filters out noise
/// from other work on the machine (disk writeback, other processes).
pub const DEFAULT_ROUNDS: u32 = 3;

/// Runs the benchmark for a blob of `size` bytes, [`DEFAULT_ROUNDS`] times, in a temporary
/// directory (it needs about three times `size` of free disk).
pub async fn transfer(size: u64) -> Result<TransferReport, BenchError> {
    transfer_rounds(size, DEFAULT_ROUNDS).await
}

/// Runs the benchmark `rounds` times (at least once) and keeps each phase's fastest round.
pub async fn transfer_rounds(size: u64, rounds: u32) -> Result<TransferReport, BenchError> {
    let work = tempfile::tempdir()?;
    let source = work.path().join("source.bin");
    let source_hash = {
        let source = source.clone();
        run_blocking(move || write_random(&source, size)).await?
    };
    let store = Store::open(work.path().join("store")).map_err(io::Error::other)?;
    let plain_file = Arc::new(work.path().join("plain.bin"));
    let app = router(store.clone(), ServerConfig { max_upload_bytes: u64::MAX, ..ServerConfig::open() })
        .merge(axum::Router::new().route("/plain", put(plain_put).get(plain_get)).with_state(plain_file));
    let server = RunningServer::start(app, ([127, 0, 0, 1], 0).into()).await?;
    let client = Client::new(&server.url())?;
    let http = reqwest::Client::new();
    let plain_url = format!("{}/plain", server.url());
    let plain_copy = work.path().join("plain-copy.bin");
    let verified_copy = work.path().join("verified-copy.bin");

    let mut best = TransferReport {
        bytes: size,
        verified_upload: Duration::MAX,
        verified_download: Duration::MAX,
        plain_upload: Duration::MAX,
        plain_download: Duration::MAX,
    };
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let file = tokio::fs::File::open(&source).await?;
        http.put(&plain_url)
            .body(reqwest::Body::wrap_stream(file_chunks(file)))
            .send()
            .await?
            .error_for_status()?;
        best.plain_upload = best.plain_upload.min(started.elapsed());

        let started = Instant::now();
        let info = client.upload_file(&source, false, None, no_progress).await?;
        best.verified_upload = best.verified_upload.min(started.elapsed());
        if info.hash != source_hash {
            return Err(BenchError::Mismatch("stored"));
        }

        let started = Instant::now();
        plain_download(&http, &plain_url, &plain_copy).await?;
        best.plain_download = best.plain_download.min(started.elapsed());

        let started = Instant::now();
        client.download_to_file(&info.hash, &verified_copy, None, no_progress).await?;
        best.verified_download = best.verified_download.min(started.elapsed());

        for (path, name) in [(plain_copy.clone(), "plain"), (verified_copy.clone(), "verified")] {
            if run_blocking(move || hash_file(&path)).await? != source_hash {
                return Err(BenchError::Mismatch(name));
            }
        }
        // The next round's upload must store the blob again, not find it already there.
        let store = store.clone();
        run_blocking(move || store.remove(&info.hash)).await.map_err(io::Error::other)?;
    }
    server.shutdown().await?;
    Ok(best)
}

/// Writes `size` pseudo-random bytes to `path`; returns their hash.
fn write_random(path: &Path, size: u64) -> io::Result<Hash> {
    let mut out = BufWriter::new(File::create(path)?);
    let mut xof = blake3::Hasher::new().update(b"agora-store transfer benchmark").finalize_xof();
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.into_inner().map_err(io::IntoInnerError::into_error)?.sync_all()?;
    Ok(Hash(*hasher.finalize().as_bytes()))
}

fn hash_file(path: &Path) -> io::Result<Hash> {
    let mut hasher = blake3::Hasher::new();
    io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(Hash(*hasher.finalize().as_bytes()))
}

/// Plain upload: the body goes to a blocking writer and is fsynced, as the store does, but
/// nothing is hashed.
async fn plain_put(State(path): State<Arc<PathBuf>>, body: Body) -> Result<StatusCode, (StatusCode, String)> {
    let fail = |e: io::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let path = path.as_ref().clone();
    let writer = tokio::task::spawn_blocking(move || -> io::Result<()> {
        let mut out = BufWriter::with_capacity(256 * 1024, File::create(path)?);
        while let Some(chunk) = rx.blocking_recv() {
            out.write_all(&chunk)?;
        }
        out.into_inner().map_err(io::IntoInnerError::into_error)?.sync_all()
    });
    let mut body = body.into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        if tx.send(chunk).await.is_err() {
            break;
        }
    }
    drop(tx);
    writer.await.map_err(|e| fail(io::Error::other(e)))?.map_err(fail)?;
    Ok(StatusCode::CREATED)
}

/// Plain download: the file is streamed from the blocking pool, as blobs are, unchecked.
async fn plain_get(State(path): State<Arc<PathBuf>>) -> Result<Body, (StatusCode, String)> {
    let path = path.as_ref().clone();
    blocking_body(move |out| {
        let mut file = File::open(&path).ctx("open", &path)?;
        io::copy(&mut file, out).map(drop).map_err(StoreError::Output)
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Downloads `url` to `path` through the same file writer as verified downloads, checking
/// nothing, then fsyncs it.
async fn plain_download(http: &reqwest::Client, url: &str, path: &Path) -> Result<(), BenchError> {
    let mut response = http.get(url).send().await?.error_for_status()?;
    let mut file = FileSink::create(path.to_owned());
    while let Some(chunk) = response.chunk().await? {
        file.accept(&chunk).await?;
    }
    Ok(file.finish().await?)
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_reports_sane_numbers() {
        let report = super::transfer_rounds(300_000, 2).await.unwrap();
        assert_eq!(report.bytes, 300_000);
        assert!(report.verified_mb_s() > 0.0 && report.plain_mb_s() > 0.0 && report.ratio() > 0.0);
        assert!(report.to_string().contains("ratio verified/plain"));
    }
}
