//! A client for a node's `/blobs` routes: uploads that check the hash the node reports, and
//! downloads that verify every chunk group against the requested hash before writing it.
//!
//! Long transfers report progress through a callback `FnMut(bytes_done, bytes_total)`, called
//! after each piece, so a CLI can drive a progress bar.

use crate::encrypt::{BlobKey, CryptoError, Encryptor, encrypted_len};
use crate::http::outbound::Reach;
use crate::http::server::{BlobList, ErrorBody, PINNED_HEADER};
use crate::http::sink::{Decrypting, FileSink, Sink, Writer};
use crate::http::verified::receive;
use crate::store::BlobInfo;
use agora_core::Hash;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::CONTENT_LENGTH;
use reqwest::{Response, StatusCode};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read from a file per upload chunk.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// Longest error body read from a node.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What went wrong talking to a node's content store.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL is unusable.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The base URL names an address this client may not reach.
    #[error(transparent)]
    Reach(#[from] super::outbound::ReachError),
    /// The node could not be reached, or the exchange failed.
    #[error("could not talk to the store at {url}: {source}")]
    Http {
        /// The request URL.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The node's answer could not be used (too large, or not the JSON expected).
    #[error("unusable answer from the store at {url}: {reason}")]
    Response {
        /// The request URL.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The node answered with an error.
    #[error("the store at {url} answered {status}: {message}")]
    Status {
        /// The request URL.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// The node's explanation.
        message: String,
    },
    /// The node sent bytes that do not match the hash.
    #[error(
        "blob {hash} failed verification at byte {offset}: the node sent data that does not match the hash. \
         Nothing from that point on was written; fetch the blob from another node"
    )]
    Verification {
        /// The requested blob.
        hash: Hash,
        /// Offset of the first chunk group (or tree node) that did not match.
        offset: u64,
    },
    /// The response stopped before all requested data arrived.
    #[error("the node's response for blob {hash} ended early, after {received} verified bytes; try again")]
    Truncated {
        /// The requested blob.
        hash: Hash,
        /// Verified bytes received.
        received: u64,
    },
    /// The connection failed in the middle of a response.
    #[error("the transfer of blob {hash} broke off after {received} verified bytes: {source}; try again")]
    Interrupted {
        /// The requested blob.
        hash: Hash,
        /// Verified bytes received.
        received: u64,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The node sent more than the requested ranges.
    #[error(
        "the node sent {extra} bytes beyond the requested part of blob {hash}; the extra bytes were ignored and the download failed"
    )]
    TrailingData {
        /// The requested blob.
        hash: Hash,
        /// Unexpected bytes.
        extra: usize,
    },
    /// The blob is larger than this client downloads ([`Client::with_max_blob`]).
    #[error("blob {hash} is {size} bytes, more than the {limit} bytes this download accepts")]
    TooLarge {
        /// The requested blob.
        hash: Hash,
        /// Its size as the node announced it.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The requested range lies outside the blob.
    #[error("byte range {start}..{end} is outside blob {hash} of {size} bytes")]
    BadRange {
        /// The requested blob.
        hash: Hash,
        /// Requested start.
        start: u64,
        /// Requested end.
        end: u64,
        /// The blob's size as the node claimed it.
        size: u64,
    },
    /// The node reported a different blob than the bytes sent.
    #[error(
        "the node says it stored {stored} ({stored_size} bytes), but the bytes sent were {sent} ({sent_size} bytes); \
         do not rely on this node"
    )]
    UploadMismatch {
        /// What the node reported.
        stored: Hash,
        /// Size the node reported.
        stored_size: u64,
        /// The hash of the bytes sent.
        sent: Hash,
        /// Bytes sent.
        sent_size: u64,
    },
    /// A local file operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What the client was doing.
        action: &'static str,
        /// The local file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Writing downloaded bytes failed.
    #[error("could not write the downloaded bytes: {0}")]
    Output(#[source] io::Error),
    /// Decryption failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// A progress callback that ignores progress.
pub fn no_progress(_done: u64, _total: u64) {}

/// Largest JSON answer read from a store (a blob listing, an upload receipt).
pub const MAX_JSON_RESPONSE: usize = 16 << 20;

/// A connection to one node's content store.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The account that signs writes and listings, if any.
    signer: Option<Arc<agora_core::SecretKey>>,
    /// Largest blob this client downloads, if bounded ([`Client::with_max_blob`]).
    max_blob: Option<u64>,
}

impl Client {
    /// A client for the node at `base_url` (such as `http://127.0.0.1:7070`; plain HTTP only).
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Self::reaching(base_url, Reach::Any)
    }

    /// A client for a store a stranger named (a provider's endpoint, a manifest's source):
    /// it connects only to addresses within `reach`, by IP literal or by what the name
    /// resolves to when it connects.
    pub fn reaching(base_url: &str, reach: Reach) -> Result<Self, ClientError> {
        let base = base_url.trim().trim_end_matches('/');
        let invalid = |reason| ClientError::InvalidUrl { url: base_url.to_owned(), reason };
        let Some(host) = base.strip_prefix("http://") else {
            return Err(invalid("it must start with http:// (TLS is not supported here)"));
        };
        if host.is_empty() || host.contains('/') {
            return Err(invalid("it must be http://HOST[:PORT] with no path"));
        }
        reach.check_url(base)?;
        Ok(Self {
            http: super::outbound::client_reaching(reach, None),
            base: base.to_owned(),
            signer: None,
            max_blob: None,
        })
    }

    /// This client, signing uploads, pins and listings as `key`'s account (nodes refuse them
    /// unsigned).
    pub fn with_signer(mut self, key: agora_core::SecretKey) -> Self {
        self.signer = Some(Arc::new(key));
        self
    }

    /// This client, refusing to download any blob larger than `limit` bytes: the size a node
    /// announces is checked before the first byte of content is read, and the content streamed
    /// is bounded by it (a node that understates the size fails verification instead), so a
    /// stranger's store cannot make this client write more than `limit` bytes
    /// ([`ClientError::TooLarge`]).
    pub fn with_max_blob(mut self, limit: u64) -> Self {
        self.max_blob = Some(limit);
        self
    }

    /// The node's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `request` (to `url`, under the base URL), signed if this client has a signer.
    fn signed(&self, request: reqwest::RequestBuilder, method: &str, url: &str) -> reqwest::RequestBuilder {
        let Some(key) = &self.signer else { return request };
        let path = url.strip_prefix(&self.base).unwrap_or(url);
        super::auth::sign(key, method, path, super::auth::now_ms())
            .into_iter()
            .fold(request, |r, (name, value)| r.header(name, value))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Result<Response, ClientError> {
        let response =
            request.send().await.map_err(|source| ClientError::Http { url: url.to_owned(), source })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(status_error(response, url).await)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: Response,
        url: &str,
    ) -> Result<T, ClientError> {
        super::outbound::json_capped(response, MAX_JSON_RESPONSE)
            .await
            .map_err(|e| ClientError::Response { url: url.to_owned(), reason: e.to_string() })
    }

    /// Uploads a stream of `len` bytes (if known) and checks that the node stored exactly those
    /// bytes. `progress` sees bytes sent.
    pub async fn upload_stream<S, P>(
        &self,
        stream: S,
        len: Option<u64>,
        pin: bool,
        mut progress: P,
    ) -> Result<BlobInfo, ClientError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
        P: FnMut(u64, u64) + Send + 'static,
    {
        let digest = Arc::new(Mutex::new((blake3::Hasher::new(), 0u64)));
        let seen = digest.clone();
        let total = len.unwrap_or(0);
        let body = stream.map(move |chunk| {
            let chunk = chunk?;
            let mut d = seen.lock().unwrap_or_else(|p| p.into_inner());
            d.0.update(&chunk);
            d.1 += chunk.len() as u64;
            progress(d.1, total.max(d.1));
            Ok::<_, io::Error>(chunk)
        });
        let url = self.url(&format!("/blobs?pin={pin}"));
        let mut request =
            self.signed(self.http.put(&url), "PUT", &url).body(reqwest::Body::wrap_stream(body));
        if let Some(len) = len {
            request = request.header(CONTENT_LENGTH, len);
        }
        let response = self.send(request, &url).await?;
        let info: BlobInfo = self.json(response, &url).await?;
        let (hasher, sent_size) = &*digest.lock().unwrap_or_else(|p| p.into_inner());
        let sent = Hash(*hasher.finalize().as_bytes());
        if info.hash != sent || info.size != *sent_size {
            return Err(ClientError::UploadMismatch {
                stored: info.hash,
                stored_size: info.size,
                sent,
                sent_size: *sent_size,
            });
        }
        Ok(info)
    }

    /// Uploads bytes held in memory.
    pub async fn upload_bytes(&self, bytes: impl Into<Bytes>, pin: bool) -> Result<BlobInfo, ClientError> {
        let bytes = bytes.into();
        let len = bytes.len() as u64;
        self.upload_stream(futures_util::stream::iter([Ok(bytes)]), Some(len), pin, no_progress).await
    }

    /// Uploads a file, encrypting it on the way with `key` if given (the stored blob is then the
    /// ciphertext; keep the key to read it back). `progress` sees bytes sent of the total.
    pub async fn upload_file<P>(
        &self,
        path: &Path,
        pin: bool,
        key: Option<&BlobKey>,
        progress: P,
    ) -> Result<BlobInfo, ClientError>
    where
        P: FnMut(u64, u64) + Send + 'static,
    {
        let io_err = |action| move |source| ClientError::Io { action, path: path.to_owned(), source };
        let file = tokio::fs::File::open(path).await.map_err(io_err("open"))?;
        let plain_len = file.metadata().await.map_err(io_err("read the size of"))?.len();
        let chunks = file_chunks(file);
        match key {
            None => self.upload_stream(chunks, Some(plain_len), pin, progress).await,
            Some(key) => {
                let encrypted = encrypting(chunks, Encryptor::new(key));
                self.upload_stream(encrypted, Some(encrypted_len(plain_len)), pin, progress).await
            }
        }
    }

    /// Downloads bytes `range` (the whole blob if `None`) of blob `hash` into `out`, verifying
    /// every chunk group before writing it. On a verification failure nothing from the bad group
    /// on is written. Returns the number of bytes written.
    pub async fn download<W, P>(
        &self,
        hash: &Hash,
        range: Option<Range<u64>>,
        out: &mut W,
        mut progress: P,
    ) -> Result<u64, ClientError>
    where
        W: AsyncWrite + Unpin,
        P: FnMut(u64, u64),
    {
        let mut response = self.request_verified(hash, range.clone()).await?;
        let written =
            receive(&mut response, *hash, range, self.max_blob, &mut Writer(out), &mut progress).await?;
        out.flush().await.map_err(ClientError::Output)?;
        Ok(written)
    }

    /// Downloads blob `hash` to the file `path`, verified and, if `key` is given, decrypted. The
    /// file appears only when complete: data goes to `path` + `.part` first, which is removed on
    /// failure. Returns the number of bytes written.
    pub async fn download_to_file<P>(
        &self,
        hash: &Hash,
        path: &Path,
        key: Option<&BlobKey>,
        mut progress: P,
    ) -> Result<u64, ClientError>
    where
        P: FnMut(u64, u64),
    {
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let mut file = FileSink::create(part.clone());
        let outcome = match self.receive_into(hash, key, &mut file, &mut progress).await {
            Ok(written) => file.finish().await.map(|()| written),
            Err(e) => {
                file.abort().await;
                Err(e)
            }
        };
        let outcome = match outcome {
            Ok(written) => tokio::fs::rename(&part, path)
                .await
                .map(|()| written)
                .map_err(|source| ClientError::Io { action: "rename", path: part.clone(), source }),
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        outcome
    }

    /// Receives blob `hash` into `sink`, decrypting with `key` if given.
    async fn receive_into(
        &self,
        hash: &Hash,
        key: Option<&BlobKey>,
        sink: &mut impl Sink,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<u64, ClientError> {
        let mut response = self.request_verified(hash, None).await?;
        match key {
            None => receive(&mut response, *hash, None, self.max_blob, sink, progress).await,
            Some(key) => {
                let mut decrypting = Decrypting::new(sink, key);
                receive(&mut response, *hash, None, self.max_blob, &mut decrypting, progress).await?;
                decrypting.finish().await
            }
        }
    }

    async fn request_verified(
        &self,
        hash: &Hash,
        range: Option<Range<u64>>,
    ) -> Result<Response, ClientError> {
        let query = match range {
            None => String::new(),
            Some(r) => format!("?start={}&end={}", r.start, r.end),
        };
        let url = self.url(&format!("/blobs/{hash}/verified{query}"));
        self.send(self.http.get(&url), &url).await
    }

    /// Size and pin state of blob `hash`, or `None` if the node does not have it.
    pub async fn stat(&self, hash: &Hash) -> Result<Option<BlobInfo>, ClientError> {
        let url = self.url(&format!("/blobs/{hash}"));
        let response = self
            .http
            .head(&url)
            .send()
            .await
            .map_err(|source| ClientError::Http { url: url.clone(), source })?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(status_error(response, &url).await);
        }
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok());
        let size = header(CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok());
        let pinned = header(PINNED_HEADER).map(|v| v == "true");
        match (size, pinned) {
            (Some(size), Some(pinned)) => Ok(Some(BlobInfo { hash: *hash, size, pinned })),
            _ => Err(ClientError::Status {
                url,
                status: response.status(),
                message: "the answer lacks the Content-Length or agora-pinned header".into(),
            }),
        }
    }

    /// Every blob the node holds.
    pub async fn list(&self) -> Result<Vec<BlobInfo>, ClientError> {
        let url = self.url("/blobs");
        let response = self.send(self.signed(self.http.get(&url), "GET", &url), &url).await?;
        Ok(self.json::<BlobList>(response, &url).await?.blobs)
    }

    /// Pins blob `hash` on the node.
    pub async fn pin(&self, hash: &Hash) -> Result<BlobInfo, ClientError> {
        let url = self.url(&format!("/blobs/{hash}/pin"));
        let response = self.send(self.signed(self.http.post(&url), "POST", &url), &url).await?;
        self.json(response, &url).await
    }

    /// Unpins blob `hash` on the node.
    pub async fn unpin(&self, hash: &Hash) -> Result<BlobInfo, ClientError> {
        let url = self.url(&format!("/blobs/{hash}/pin"));
        let response = self.send(self.signed(self.http.delete(&url), "DELETE", &url), &url).await?;
        self.json(response, &url).await
    }
}

/// Turns an error response into [`ClientError::Status`], reading at most [`MAX_ERROR_BODY`].
async fn status_error(mut response: Response, url: &str) -> ClientError {
    let status = response.status();
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    let message = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(&body).into_owned(),
    };
    ClientError::Status { url: url.to_owned(), status, message }
}

/// A file as a stream of chunks.
pub(crate) fn file_chunks(file: tokio::fs::File) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = Vec::with_capacity(UPLOAD_CHUNK);
        match (&mut file).take(UPLOAD_CHUNK as u64).read_to_end(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(Bytes::from(buf)), Some(file))),
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Encrypts a stream of plaintext chunks into ciphertext chunks.
fn encrypting<S>(plain: S, encryptor: Encryptor) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let plain: Pin<Box<S>> = Box::pin(plain);
    futures_util::stream::unfold((plain, Some(encryptor)), |(mut plain, mut encryptor)| async move {
        encryptor.as_ref()?; // `None` once the final segment is out.
        loop {
            let mut out = Vec::new();
            let step = match plain.next().await {
                Some(Ok(chunk)) => {
                    encryptor.as_mut().expect("checked above").update(&chunk, &mut out).map(|()| false)
                }
                Some(Err(e)) => return Some((Err(e), (plain, None))),
                None => encryptor.take().expect("checked above").finish(&mut out).map(|()| true),
            };
            match step {
                Err(e) => return Some((Err(io::Error::other(e)), (plain, None))),
                Ok(true) => return Some((Ok(Bytes::from(out)), (plain, None))),
                Ok(false) if out.is_empty() => continue,
                Ok(false) => return Some((Ok(Bytes::from(out)), (plain, encryptor))),
            }
        }
    })
}
