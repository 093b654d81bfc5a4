//! Where verified downloads go: a caller's async writer, a file written from a blocking thread,
//! or a decryptor in front of either. A sink only ever sees bytes that passed verification.

use crate::encrypt::{BlobKey, Decryptor};
use crate::http::client::ClientError;
use bytes::{Bytes, BytesMut};
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes handed to the file writer at a time.
const FILE_CHUNK: usize = 1024 * 1024;

/// Chunks queued between the network and the file writer.
const FILE_QUEUE: usize = 4;

/// Receives verified bytes, in blob order.
pub(crate) trait Sink {
    /// Takes the next verified bytes.
    async fn accept(&mut self, bytes: &[u8]) -> Result<(), ClientError>;
}

/// Passes bytes to a caller's writer as they are.
pub(crate) struct Writer<'a, W>(pub &'a mut W);

impl<W: AsyncWrite + Unpin> Sink for Writer<'_, W> {
    async fn accept(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.0.write_all(bytes).await.map_err(ClientError::Output)
    }
}

/// Decrypts bytes before passing them on; plaintext leaves only after its segment authenticates.
pub(crate) struct Decrypting<'a, S> {
    out: &'a mut S,
    decryptor: Decryptor,
    buf: Vec<u8>,
    written: u64,
}

impl<'a, S: Sink> Decrypting<'a, S> {
    /// Decrypts with `key` into `out`.
    pub fn new(out: &'a mut S, key: &BlobKey) -> Self {
        Self { out, decryptor: Decryptor::new(key), buf: Vec::new(), written: 0 }
    }

    async fn pass_on(&mut self) -> Result<(), ClientError> {
        self.out.accept(&self.buf).await?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Authenticates the final segment; returns the plaintext bytes passed on.
    pub async fn finish(self) -> Result<u64, ClientError> {
        let Self { out, decryptor, mut buf, written } = self;
        decryptor.finish(&mut buf)?;
        out.accept(&buf).await?;
        Ok(written + buf.len() as u64)
    }
}

impl<S: Sink> Sink for Decrypting<'_, S> {
    async fn accept(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.decryptor.update(bytes, &mut self.buf)?;
        self.pass_on().await
    }
}

/// What the file writer thread is told.
enum Step {
    Data(Bytes),
    /// Everything is sent: sync the file.
    Finish,
}

/// How the file writer thread ended: fine, or the step that failed and why.
type WriterResult = Result<(), (&'static str, io::Error)>;

/// A file written from a blocking thread through a short queue, so disk latency never stalls
/// the network loop (and the network loop never blocks on the disk).
pub(crate) struct FileSink {
    path: PathBuf,
    tx: mpsc::Sender<Step>,
    /// `None` once the writer has been waited for.
    writer: Option<JoinHandle<WriterResult>>,
    buf: BytesMut,
}

impl FileSink {
    /// Starts writing a new file at `path` (replacing any file there).
    pub fn create(path: PathBuf) -> Self {
        let (tx, mut rx) = mpsc::channel(FILE_QUEUE);
        let target = path.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut file = File::create(&target).map_err(|e| ("create", e))?;
            while let Some(step) = rx.blocking_recv() {
                match step {
                    Step::Data(chunk) => file.write_all(&chunk).map_err(|e| ("write", e))?,
                    Step::Finish => return file.sync_all().map_err(|e| ("sync", e)),
                }
            }
            Err(("finish", io::Error::other("the download stopped before its end")))
        });
        Self { path, tx, writer: Some(writer), buf: BytesMut::with_capacity(FILE_CHUNK) }
    }

    /// Waits for the writer thread and reports how it ended.
    async fn wait_writer(&mut self) -> Result<(), ClientError> {
        let result = match self.writer.take() {
            Some(writer) => writer.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
            None => Err(("write", io::Error::other("the file writer has already stopped"))),
        };
        result.map_err(|(action, source)| ClientError::Io { action, path: self.path.clone(), source })
    }

    async fn send(&mut self, step: Step) -> Result<(), ClientError> {
        if self.tx.send(step).await.is_err() {
            // The writer stopped early; how it ended says why.
            self.wait_writer().await?;
            let source = io::Error::other("the file writer stopped early");
            return Err(ClientError::Io { action: "write", path: self.path.clone(), source });
        }
        Ok(())
    }

    /// Writes what is buffered and syncs the file to disk.
    pub async fn finish(mut self) -> Result<(), ClientError> {
        let rest = self.buf.split().freeze();
        if !rest.is_empty() {
            self.send(Step::Data(rest)).await?;
        }
        self.send(Step::Finish).await?;
        self.wait_writer().await
    }

    /// Stops writing and waits until the writer has let go of the file, so it can be removed.
    pub async fn abort(self) {
        let Self { tx, writer, .. } = self;
        drop(tx);
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    }
}

impl Sink for FileSink {
    async fn accept(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= FILE_CHUNK {
            let chunk = std::mem::replace(&mut self.buf, BytesMut::with_capacity(FILE_CHUNK)).freeze();
            self.send(Step::Data(chunk)).await?;
        }
        Ok(())
    }
}
