//! The provider's serving endpoints:
//!
//! * `POST /serve/v1/sessions/{id}/chat`: a streamed completion (server-sent events
//!   `token`…, then `done` with the receipt, or `error`);
//! * `POST /serve/v1/sessions/{id}/embeddings`: vectors with their receipt;
//! * `GET /serve/v1/sessions/{id}/receipts?from=&count=`: the receipts of a range, so a
//!   client can check a committed window against the ones it holds.
//!
//! Who may send a request: only the holder of the session's client key (the signature over
//! the exact body is checked against the chain's session), only to a provider serving that
//! session, only until it ends, and each request once. Bodies are bounded before they are
//! read, prompts before any compute.

use crate::book::{Books, Served};
use crate::engine::{ChatParams, Engine, Model};
use crate::wire::{
    self, ChatDone, ChatEvent, EmbedResponse, SIGNATURE_HEADER, ServeBody, ServeRequest, SignedRequest,
};
use agora_core::session::{ServeReceipt, SessionId, Usage};
use agora_core::{PublicKey, SecretKey, Signature};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;

/// Most receipts one `receipts` call returns.
pub const MAX_RECEIPTS_PAGE: u64 = 4096;

/// What this provider serves in a session.
pub struct Serving {
    /// The session's prices.
    pub rates: agora_core::session::ServeRates,
    /// The most this provider's windows may charge in it (its cap on chain): requests that
    /// could take its receipts beyond are refused, so it never serves what it cannot commit.
    pub cap: agora_core::Amount,
    /// The chain's id (bound into request signatures and receipts).
    pub chain_id: String,
    /// The key that signs the session's requests.
    pub client: PublicKey,
    /// When serving ends, unix ms.
    pub until_ms: u64,
    /// The warm model.
    pub model: Model,
}

/// Where the server learns which sessions it serves (the node: from the chain).
pub trait Directory: Send + Sync + 'static {
    /// What this provider serves in `session`: `Ok(None)` when it does not serve it (unknown,
    /// not a member); `Err` when that cannot be known now.
    fn serving(&self, session: SessionId) -> impl Future<Output = Result<Option<Serving>, String>> + Send;
}

/// A provider's serving endpoints.
pub struct Server<D> {
    key: SecretKey,
    directory: D,
    books: Arc<Books>,
    engine: Engine,
    /// Per session, the most the requests in flight may still use.
    in_flight: InFlight,
    /// Test hook: the share of chat answers altered, bps (see [`Server::altering`]).
    alter_bps: u32,
}

type InFlight = Arc<std::sync::Mutex<std::collections::HashMap<SessionId, Usage>>>;

impl<D> Server<D> {
    /// Endpoints of the provider holding `key`, serving what `directory` says, receipting into
    /// `books`, running on `engine`.
    pub fn new(key: SecretKey, directory: D, books: Arc<Books>, engine: Engine) -> Self {
        Self { key, directory, books, engine, in_flight: InFlight::default(), alter_bps: 0 }
    }

    /// Test hook for demos and benchmarks of audits: alter the chat answers of the requests
    /// [`alters`] picks at `bps` / 10,000 (see [`ChatParams::altered`]), receipting them as
    /// if they were honest. Never set this on a real provider: the window audits that replay
    /// an altered answer convict and slash it.
    pub fn altering(self, bps: u32) -> Self {
        Self { alter_bps: bps.min(10_000), ..self }
    }
}

/// Whether a provider altering `bps` / 10,000 of its answers alters the one to `request`: a
/// fixed rule on the request's hash, so a benchmark can count the altered answers in a window
/// from its receipts.
pub fn alters(request: &agora_core::Hash, bps: u32) -> bool {
    let b = request.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) % 10_000 < bps
}

/// Usage held for a request in flight against its session's cap; released when dropped.
pub struct Held {
    in_flight: InFlight,
    session: SessionId,
    bound: Usage,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock().expect("not poisoned");
        if let Some(u) = map.get_mut(&self.session) {
            *u = u.since(&self.bound).unwrap_or_default();
        }
    }
}

/// The serving routes.
pub fn router<D: Directory>(server: Arc<Server<D>>) -> Router {
    Router::new()
        .route("/serve/v1/sessions/{id}/chat", post(chat::<D>))
        .route("/serve/v1/sessions/{id}/embeddings", post(embeddings::<D>))
        .route("/serve/v1/sessions/{id}/receipts", get(receipts::<D>))
        .layer(DefaultBodyLimit::max(wire::MAX_REQUEST_BYTES))
        .with_state(server)
}

/// An error answer: a status and a message naming the fix.
#[derive(Debug)]
pub struct Refusal(pub StatusCode, pub String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

fn bad(m: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, m.into())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A checked request: signed by the session's client key, for a session this provider
/// serves, not ended, not served before.
struct Admitted {
    session: SessionId,
    rates: agora_core::session::ServeRates,
    cap: agora_core::Amount,
    chain_id: String,
    request: SignedRequest,
    body: ServeBody,
    model: Model,
}

impl<D: Directory> Server<D> {
    async fn admit(&self, id: &str, headers: &HeaderMap, bytes: Bytes) -> Result<Admitted, Refusal> {
        let id: SessionId = id.parse().map_err(|_| bad("session ids are integers"))?;
        let signature: Signature = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                bad(format!("missing {SIGNATURE_HEADER}: sign the body with the session's client key"))
            })?
            .parse()
            .map_err(|e| bad(format!("bad {SIGNATURE_HEADER}: {e}")))?;
        let req: ServeRequest =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("bad request body: {e}")))?;
        if req.session != id {
            return Err(bad(format!("the body is for session {}, the path for {id}", req.session)));
        }
        req.body.check().map_err(bad)?;
        let serving = self
            .directory
            .serving(id)
            .await
            .map_err(|e| Refusal(StatusCode::SERVICE_UNAVAILABLE, format!("cannot read session {id}: {e}")))?
            .ok_or_else(|| {
                Refusal(StatusCode::NOT_FOUND, format!("this provider does not serve session {id}"))
            })?;
        serving
            .client
            .verify(
                &agora_core::session::client_message(&wire::request_hash(&serving.chain_id, &bytes)),
                &signature,
            )
            .map_err(|_| {
                Refusal(StatusCode::UNAUTHORIZED, "the signature is not the session's client key's".into())
            })?;
        if now_ms() >= serving.until_ms {
            return Err(Refusal(StatusCode::GONE, format!("session {id} has ended")));
        }
        let request = SignedRequest {
            hash: wire::request_hash(&serving.chain_id, &bytes),
            bytes: bytes.to_vec(),
            signature,
        };
        let book =
            self.books.get(id).map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if book.lock().expect("not poisoned").has(&request.hash) {
            return Err(Refusal(
                StatusCode::CONFLICT,
                "this request was already served: send a new nonce".into(),
            ));
        }
        Ok(Admitted {
            session: id,
            rates: serving.rates,
            cap: serving.cap,
            chain_id: serving.chain_id,
            request,
            body: req.body,
            model: serving.model,
        })
    }

    /// Holds `bound` (the most a request may use) against the provider's cap in its session:
    /// refused (402) when its receipts, the requests in flight and this one could cost more
    /// than the cap at the session's rates.
    fn hold(&self, a: &Admitted, bound: Usage) -> Result<Held, Refusal> {
        let book = self
            .books
            .get(a.session)
            .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let total = book.lock().expect("not poisoned").total();
        let mut map = self.in_flight.lock().expect("not poisoned");
        let flying = map.entry(a.session).or_default();
        let worst = total.checked_add(flying).and_then(|u| u.checked_add(&bound));
        if worst.and_then(|u| a.rates.charge(&u)).is_none_or(|c| c > a.cap) {
            return Err(Refusal(
                StatusCode::PAYMENT_REQUIRED,
                format!("this provider's share of session {} is spent: open a new session", a.session),
            ));
        }
        *flying = flying.checked_add(&bound).expect("checked above");
        Ok(Held { in_flight: self.in_flight.clone(), session: a.session, bound })
    }

    /// Writes the receipt of a finished run (durably, off the async threads).
    async fn receipt(
        self: &Arc<Self>,
        (session, chain_id, request): (SessionId, String, SignedRequest),
        output: (Vec<u8>, agora_core::Hash),
        usage: Usage,
        fingerprints: Vec<crate::fingerprint::Fingerprint>,
        times: (u64, u64),
    ) -> Result<agora_core::session::SignedReceipt, String> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let book = me.books.get(session).map_err(|e| e.to_string())?;
            let served = Served { request: &request, output, usage, fingerprints: &fingerprints, times };
            let signed = book.lock().expect("not poisoned").record(&chain_id, &me.key, served);
            signed.map_err(|e| format!("cannot record the receipt: {e}"))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

async fn chat<D: Directory>(
    State(s): State<Arc<Server<D>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Refusal> {
    let a = s.admit(&id, &headers, bytes).await?;
    let (Model::Chat(llm), Some(params)) = (a.model.clone(), ChatParams::of(&a.body)) else {
        return Err(bad("this session does not serve chat: use its embeddings endpoint"));
    };
    // Refuse an over-long prompt before the stream starts (tokenizing is cheap), and a request
    // that could cost more than this provider may still charge.
    let prompt_tokens = llm.prompt_tokens(&params.prompt).map_err(|e| bad(e.to_string()))?.len() as u64;
    let completion_tokens = u64::from(params.max_tokens);
    let held = s.hold(&a, Usage { prompt_tokens, completion_tokens, items: 0 })?;
    let params = if alters(&a.request.hash, s.alter_bps) { params.altered() } else { params };
    let who = (a.session, a.chain_id, a.request);
    let (events, rx) = tokio::sync::mpsc::channel::<ChatEvent>(64);
    // Unbounded, so that a slow client never holds back the batch its run decodes in: a run
    // sends at most one piece a token, at most `MAX_COMPLETION_TOKENS` of them.
    let (pieces, mut piece_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let forward = events.clone();
    tokio::spawn(async move {
        while let Some(text) = piece_rx.recv().await {
            if forward.send(ChatEvent::Token { text }).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let _held = held; // until the receipt is written
        let last = match s.engine.chat(llm, params, pieces).await {
            Ok(None) => return, // the client left: nothing served, nothing receipted
            Ok(Some(run)) => {
                let g = run.generation;
                let usage = Usage {
                    prompt_tokens: run.prompt_tokens,
                    completion_tokens: g.tokens.len() as u64,
                    items: 0,
                };
                let output = (agora_core::Encode::encode(&g), wire::chat_output_hash(&g));
                match s.receipt(who, output, usage, run.fingerprints.clone(), run.times).await {
                    Ok(receipt) => ChatEvent::Done(Box::new(ChatDone {
                        text: g.text,
                        tokens: g.tokens,
                        stop: wire::stop_name(g.stop).into(),
                        fingerprints: run.fingerprints,
                        receipt,
                    })),
                    Err(message) => ChatEvent::Error { message },
                }
            }
            Err(e) => ChatEvent::Error { message: e.to_string() },
        };
        let _ = events.send(last).await;
    });
    let stream = tokio_stream(rx).map(|e| {
        let name = match &e {
            ChatEvent::Token { .. } => "token",
            ChatEvent::Done(_) => "done",
            ChatEvent::Error { .. } => "error",
        };
        Ok::<_, std::convert::Infallible>(
            Event::default().event(name).data(serde_json::to_string(&e).expect("serializes")),
        )
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))).into_response())
}

/// The receiver as a stream.
fn tokio_stream<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn embeddings<D: Directory>(
    State(s): State<Arc<Server<D>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Refusal> {
    let a = s.admit(&id, &headers, bytes).await?;
    let (Model::Embed(embedder), ServeBody::Embed { inputs }) = (a.model.clone(), a.body.clone()) else {
        return Err(bad("this session does not serve embeddings: use its chat endpoint"));
    };
    let items = inputs.len() as u64;
    // The encoder reads at most its truncation length of each text.
    let bound = Usage {
        prompt_tokens: items * agora_ml::embed::model::MAX_TOKENS as u64,
        completion_tokens: 0,
        items,
    };
    let _held = s.hold(&a, bound)?;
    let who = (a.session, a.chain_id, a.request);
    let start = now_ms();
    let run = s.engine.embed(embedder, inputs).await.map_err(|e| bad(e.to_string()))?;
    let usage = Usage { prompt_tokens: run.prompt_tokens, completion_tokens: 0, items };
    let encoded: Vec<Vec<u8>> =
        run.vectors.iter().map(|v| agora_runtime::items::vector::encode_vector(v)).collect();
    let mut output = vec![];
    agora_core::codec::encode_seq(encoded.iter(), &mut output);
    let hash = wire::embed_output_hash(&run.vectors);
    let receipt = s
        .receipt(who, (output, hash), usage, vec![], (start, now_ms()))
        .await
        .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(axum::Json(EmbedResponse { embeddings: run.vectors, receipt }).into_response())
}

/// Query of the receipts endpoint.
#[derive(serde::Deserialize)]
struct Range {
    from: u64,
    count: u64,
}

async fn receipts<D: Directory>(
    State(s): State<Arc<Server<D>>>,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<axum::Json<Vec<ServeReceipt>>, Refusal> {
    let id: SessionId = id.parse().map_err(|_| bad("session ids are integers"))?;
    if range.count > MAX_RECEIPTS_PAGE {
        return Err(bad(format!("at most {MAX_RECEIPTS_PAGE} receipts per call")));
    }
    if !s
        .books
        .sessions()
        .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .contains(&id)
    {
        return Err(Refusal(StatusCode::NOT_FOUND, format!("no receipts for session {id}")));
    }
    let book = s.books.get(id).map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let book = book.lock().expect("not poisoned");
    let all = book.receipts();
    let from = (range.from as usize).min(all.len());
    let to = (range.from.saturating_add(range.count) as usize).min(all.len());
    Ok(axum::Json(all[from..to].to_vec()))
}

impl<D: Directory> Directory for Arc<D> {
    fn serving(&self, session: SessionId) -> impl Future<Output = Result<Option<Serving>, String>> + Send {
        (**self).serving(session)
    }
}
