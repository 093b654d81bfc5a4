//! The node's `/blobs` routes.
//!
//! | route | does |
//! |---|---|
//! | `PUT /blobs[?pin=true]` | streams the body into the store; answers 201 `{hash,size,pinned}` (signed) |
//! | `GET /blobs` | lists blobs: `{"blobs":[{hash,size,pinned}]}` (signed by the operator) |
//! | `GET /blobs/{hash}` | raw bytes; honours `Range: bytes=…` (206 / 416) |
//! | `HEAD /blobs/{hash}` | size (`Content-Length`) and pin state (`agora-pinned`) |
//! | `GET /blobs/{hash}/verified[?start=A&end=B]` | verified stream, see [`super::verified`] |
//! | `POST /blobs/{hash}/pin`, `DELETE /blobs/{hash}/pin` | pin (signed) / unpin (the operator) |
//!
//! A pin placed by the operator (or on an open store) holds until unpinned; one placed by any
//! other account is that account's and lapses after [`ACCOUNT_PIN_MS`] (the node pins what its
//! jobs and leases need under their own names, see [`crate::pins`]).
//!
//! Writes and listings must be signed ([`super::auth`]) unless the store is configured open
//! ([`ServerConfig::open`]): anonymous ones get 401 with a message that says how to sign, and
//! accounts the [`WritePolicy`](super::auth::WritePolicy) refuses get 403.
//!
//! Errors are JSON `{"error": "..."}` with 400 for malformed input, 404 for unknown blobs, 413
//! for oversized uploads, 401 for unsigned writes, 403 for refused ones, 411 for a signed upload
//! without a length, 416 for ranges past the end, and 500 when the node's own copy is bad.
//! Every byte served has been checked against the blob's hash on the way out.

use crate::error::StoreError;
use crate::http::auth::{self, AnyAccount, Writers};
use crate::http::body::blocking_body;
use crate::http::range::{RangeError, parse_range};
use crate::http::verified::VERIFIED_MEDIA_TYPE;
use crate::pins::Pin;
use crate::reader::Blob;
use crate::store::{BlobInfo, Store};
use crate::task::run_blocking;
use crate::tree::proof_ranges;
use agora_core::Hash;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Response header carrying a blob's pin state on `HEAD`.
pub const PINNED_HEADER: &str = "agora-pinned";

/// Limits of the blob routes.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
    /// Who may upload, pin, unpin and list.
    pub writers: Writers,
}

impl Default for ServerConfig {
    /// 8 GiB uploads (room for model weights and checkpoints of small and mid-sized models),
    /// from signed requests only.
    fn default() -> Self {
        Self { max_upload_bytes: 8 << 30, writers: Writers::Signed(Arc::new(AnyAccount)) }
    }
}

impl ServerConfig {
    /// Unsigned writes and listings from anyone: only for a store on a private network, tools
    /// and tests.
    pub fn open() -> Self {
        Self { writers: Writers::Anyone, ..Self::default() }
    }
}

/// Checks that a write or listing is allowed: signed by an account the policy admits for
/// `bytes`, or listing-allowed when `list`.
fn authorize(
    config: &ServerConfig,
    headers: &HeaderMap,
    method: &str,
    uri: &Uri,
    bytes: u64,
    list: bool,
) -> Result<Caller, ApiError> {
    let Writers::Signed(policy) = &config.writers else { return Ok(Caller::Trusted) };
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let account = auth::verify(headers, method, path, auth::now_ms())
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let operator = policy.may_list(&account);
    if list {
        return if operator {
            Ok(Caller::Trusted)
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "only this node's operator may list its blobs"))
        };
    }
    policy.admit(&account, bytes).map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e))?;
    Ok(if operator { Caller::Trusted } else { Caller::Account(account) })
}

/// Who a write came from.
enum Caller {
    /// The operator, or anyone on a store that takes unsigned writes.
    Trusted,
    /// Another admitted account.
    Account(agora_core::PublicKey),
}

/// How long an account's pin lasts: long enough to prepare and submit a job, after which the
/// node's own pins (held by the job, released when it finishes) take over.
pub const ACCOUNT_PIN_MS: u64 = 24 * 3_600_000;

impl Caller {
    /// The pin this caller's `pin=true` or pin request places: the operator's, or one that
    /// lapses after [`ACCOUNT_PIN_MS`], so no account holds disk forever.
    fn pin(&self) -> Pin {
        match self {
            Caller::Trusted => Pin::operator(),
            Caller::Account(account) => {
                Pin::until(format!("upload:{account}"), auth::now_ms().saturating_add(ACCOUNT_PIN_MS))
            }
        }
    }
}

#[derive(Clone)]
struct AppState {
    store: Store,
    config: ServerConfig,
}

/// The blob routes over `store`, ready to be served or merged into the node's router.
pub fn router(store: Store, config: ServerConfig) -> Router {
    Router::new()
        .route("/blobs", put(upload).get(list))
        .route("/blobs/{hash}", get(download).head(head))
        .route("/blobs/{hash}/verified", get(download_verified))
        .route("/blobs/{hash}/pin", post(pin).delete(unpin))
        .with_state(AppState { store, config })
}

/// The body of `GET /blobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobList {
    /// Every blob, ordered by hash.
    pub blobs: Vec<BlobInfo>,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and what to do about it.
    pub error: String,
}

/// An error response.
struct ApiError {
    status: StatusCode,
    message: String,
    /// For 416: the blob's size, sent as `Content-Range: bytes */SIZE`.
    unsatisfied_size: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), unsatisfied_size: None }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn unsatisfiable(message: impl Into<String>, size: u64) -> Self {
        Self { unsatisfied_size: Some(size), ..Self::new(StatusCode::RANGE_NOT_SATISFIABLE, message) }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::InvalidPin(_) => StatusCode::BAD_REQUEST,
            StoreError::RangeOutOfBounds { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            StoreError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            StoreError::Interrupted { .. } => StatusCode::BAD_REQUEST,
            StoreError::Corrupted { .. } | StoreError::Output(_) | StoreError::Io { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: self.message })).into_response();
        if let Some(size) = self.unsatisfied_size {
            response.headers_mut().insert(header::CONTENT_RANGE, header_value(format!("bytes */{size}")));
        }
        response
    }
}

fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("generated header values are ASCII")
}

fn parse_hash(path: Result<Path<String>, PathRejection>) -> Result<Hash, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    raw.parse().map_err(|e| {
        ApiError::bad_request(format!("invalid blob hash {raw:?}: {e}; a blob hash is 64 hex characters"))
    })
}

fn query<T>(query: Result<Query<T>, QueryRejection>, usage: &str) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::bad_request(format!("{}; {usage}", e.body_text())))
}

async fn open_blob(store: &Store, hash: Hash) -> Result<Blob, ApiError> {
    let store = store.clone();
    Ok(run_blocking(move || store.open_blob(&hash)).await?)
}

fn blob_headers(hash: &Hash, len: u64) -> [(header::HeaderName, HeaderValue); 4] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
        (header::CONTENT_LENGTH, header_value(len.to_string())),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        (header::ETAG, header_value(format!("\"{hash}\""))),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadParams {
    #[serde(default)]
    pin: bool,
}

async fn upload(
    State(state): State<AppState>,
    params: Result<Query<UploadParams>, QueryRejection>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<BlobInfo>), ApiError> {
    let params = query(params, "the only parameter is pin=true|false")?;
    let mut limit = state.config.max_upload_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(StoreError::TooLarge { limit }.into());
    }
    let caller = if let Writers::Signed(_) = state.config.writers {
        // A signed upload is charged what it declares, and may not send more.
        let Some(len) = declared else {
            return Err(ApiError::new(
                StatusCode::LENGTH_REQUIRED,
                "a signed upload must declare its Content-Length",
            ));
        };
        limit = len;
        authorize(&state.config, &headers, "PUT", &uri, len, false)?
    } else {
        Caller::Trusted
    };
    let pin = params.pin.then(|| caller.pin());
    let info = state.store.put_stream(body.into_data_stream(), limit, pin).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

async fn list(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<BlobList>, ApiError> {
    authorize(&state.config, &headers, "GET", &uri, 0, true)?;
    let store = state.store.clone();
    let blobs = run_blocking(move || store.list()).await?;
    Ok(Json(BlobList { blobs }))
}

async fn head(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let hash = parse_hash(path)?;
    let store = state.store.clone();
    let info = run_blocking(move || store.info(&hash)).await?;
    let mut response = (blob_headers(&hash, info.size), Body::empty()).into_response();
    response
        .headers_mut()
        .insert(PINNED_HEADER, HeaderValue::from_static(if info.pinned { "true" } else { "false" }));
    Ok(response)
}

async fn download(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let hash = parse_hash(path)?;
    let blob = open_blob(&state.store, hash).await?;
    let size = blob.size();
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| ApiError::bad_request("the Range header is not ASCII"))?;
            match parse_range(value, size) {
                Ok(range) => Some(range),
                Err(e @ RangeError::Unsatisfiable { .. }) => {
                    return Err(ApiError::unsatisfiable(e.to_string(), size));
                }
                Err(e) => return Err(ApiError::bad_request(e.to_string())),
            }
        }
    };
    let served = range.clone().unwrap_or(0..size);
    let len = served.end - served.start;
    let body = blocking_body(move |out| blob.read_range_to(served, out).map(drop)).await?;
    let mut response = (blob_headers(&hash, len), body).into_response();
    if let Some(range) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let value = format!("bytes {}-{}/{size}", range.start, range.end - 1);
        response.headers_mut().insert(header::CONTENT_RANGE, header_value(value));
    }
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifiedParams {
    start: Option<u64>,
    end: Option<u64>,
}

async fn download_verified(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<VerifiedParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let hash = parse_hash(path)?;
    let params = query(params, "parameters are start and end, byte offsets with start <= end")?;
    let blob = open_blob(&state.store, hash).await?;
    let size = blob.size();
    let start = params.start.unwrap_or(0);
    let end = params.end.unwrap_or(size).min(size);
    if start > size {
        return Err(ApiError::unsatisfiable(
            format!("start {start} is beyond the end of the {size}-byte blob"),
            size,
        ));
    }
    if start > end {
        return Err(ApiError::bad_request(format!("start {start} is after end {end}")));
    }
    let ranges = proof_ranges(start..end, size);
    let body = blocking_body(move |out| {
        out.write_all(&size.to_le_bytes()).map_err(StoreError::Output)?;
        blob.encode_verified(&ranges, out)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(VERIFIED_MEDIA_TYPE))], body).into_response())
}

async fn pin(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<BlobInfo>, ApiError> {
    let hash = parse_hash(path)?;
    let pin = authorize(&state.config, &headers, "POST", &uri, 0, false)?.pin();
    let store = state.store.clone();
    Ok(Json(run_blocking(move || store.pin_for(&hash, pin)).await?))
}

async fn unpin(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<BlobInfo>, ApiError> {
    let hash = parse_hash(path)?;
    // Unpinning lets garbage collection take a blob someone else may need: the operator's.
    authorize(&state.config, &headers, "DELETE", &uri, 0, true)?;
    let store = state.store.clone();
    Ok(Json(run_blocking(move || store.unpin(&hash)).await?))
}

/// A router served on a TCP port in the background, for tests, benchmarks and tools.
pub struct RunningServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Binds `addr` (port 0 picks a free port) and serves `router` until [`shutdown`](Self::shutdown).
    pub async fn start(router: Router, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(async move { serve.await });
        Ok(Self { addr, stop, task })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's base URL, e.g. `http://127.0.0.1:34567`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and waits for requests in flight to finish.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}
