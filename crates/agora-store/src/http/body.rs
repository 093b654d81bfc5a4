//! Streaming what blocking disk code writes into an HTTP response body.
//!
//! Reads run on the blocking pool and hand chunks to the response through a small bounded
//! queue, so a slow client slows the disk reads instead of filling memory, and a client that
//! goes away stops them.

use crate::error::StoreError;
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use std::io::{self, Write};
use tokio::sync::mpsc;

/// Bytes per response chunk.
const CHUNK: usize = 128 * 1024;

/// Chunks queued between the disk and the network.
const QUEUE: usize = 8;

/// A blocking writer whose output becomes a response body.
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, StoreError>>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, BytesMut::with_capacity(CHUNK)).freeze();
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client closed the connection"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() { Ok(()) } else { self.send() }
    }
}

/// Runs `produce` on the blocking pool and streams what it writes as a body.
///
/// The first chunk is awaited before the response starts, so a failure found early (a missing
/// outboard, corruption in the first chunk) becomes a proper error status; a failure found later
/// cuts the body off, which the client sees as an incomplete response.
pub(crate) async fn blocking_body<F>(produce: F) -> Result<Body, StoreError>
where
    F: FnOnce(&mut ChannelWriter) -> Result<(), StoreError> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel(QUEUE);
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter { tx, buf: BytesMut::with_capacity(CHUNK) };
        let result = produce(&mut writer).and_then(|()| writer.flush().map_err(StoreError::Output));
        if let Err(e) = result {
            // If the client is gone there is nobody left to tell.
            let _ = writer.tx.blocking_send(Err(e));
        }
    });
    let first = match rx.recv().await {
        None => return Ok(Body::empty()),
        Some(Err(e)) => return Err(e),
        Some(Ok(chunk)) => chunk,
    };
    let rest =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let first = futures_util::stream::once(async move { Ok(first) });
    Ok(Body::from_stream(futures_util::StreamExt::chain(first, rest)))
}
