//! The OpenAI-compatible gateway every node serves at `/v1`: `GET /v1/models`,
//! `POST /v1/embeddings` and `POST /v1/chat/completions` (also streamed), paid from the
//! account an API key maps to. With `[gateway.session]` configured, a request is answered from
//! a warm serving session ([`sessions`]): tokens are streamed as they are generated, and each
//! answer is checked against the provider's signed receipt, which is kept so that an omission
//! or alteration can be proven later. Otherwise, or when a request asks for it, the request
//! becomes a job ([`jobs`]) and is answered only once its results are verified and settled;
//! streaming then replays the verified completion as chunks. The response's `agora` field says
//! which mode answered.

pub mod config;
pub mod jobs;
pub mod keys;
pub mod openai;
pub mod sessions;

use crate::config::GatewaySection;
use agora_client::client::NodeClient;
use agora_client::sender::TxSender;
use agora_core::session::ServeKind;
use agora_core::{Amount, JobKind};
use agora_runtime::items::generation::{Generation, StopReason};
use agora_runtime::items::vector::decode_vector;
use agora_serve::wire::ServeBody;
use agora_store::http::auth::now_ms;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use futures::StreamExt as _;
use jobs::{Reservation, Verified};
use keys::{KeyEntry, KeyStore};
use openai::{
    AgoraInfo, AgoraOptions, ChatMessage, ChatRequest, EmbeddingRequest, OpenAiError, Usage, now_secs,
    parse_body,
};
use serde_json::json;
use sessions::{Open, Sessions};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Most inputs in one embeddings request (OpenAI's limit).
pub const MAX_EMBED_INPUTS: usize = 2048;

/// The gateway of one node.
pub struct Gateway {
    /// The chain API jobs are submitted to (this node's, or its upstream's).
    pub client: NodeClient,
    /// The node's data directory (models, job records, `gateway/`).
    pub data_dir: PathBuf,
    /// API keys.
    pub keys: KeyStore,
    /// The `[market]` terms of every job (class, max price, deadline, policy).
    pub market: toml::Table,
    /// How long a request may wait for its verified result.
    pub timeout: Duration,
    /// Session mode, when `[gateway.session]` is configured.
    pub sessions: Option<Sessions>,
    senders: tokio::sync::Mutex<HashMap<String, Arc<TxSender>>>,
    reserved: Arc<std::sync::Mutex<BTreeMap<String, Amount>>>,
}

impl Gateway {
    /// A gateway submitting to `chain_url`, keeping its state in `data_dir`.
    pub fn new(chain_url: &str, data_dir: PathBuf, section: &GatewaySection) -> anyhow::Result<Self> {
        Ok(Self {
            client: NodeClient::new(chain_url),
            keys: KeyStore::new(&data_dir),
            data_dir,
            market: section.market_table(),
            timeout: Duration::from_millis(agora_requester::jobfile::parse_duration(&section.timeout)?),
            sessions: section.session.as_ref().map(Sessions::new).transpose()?,
            senders: Default::default(),
            reserved: Default::default(),
        })
    }

    /// The routes under `/v1`; also starts reconciling open jobs every
    /// [`jobs::RECONCILE_EVERY`] (call within a Tokio runtime).
    pub fn routes(self) -> Router {
        let gw = Arc::new(self);
        let reconciler = gw.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = jobs::reconcile(&reconciler).await {
                    tracing::warn!(error = %format!("{e:#}"), "reconciling the gateway's open jobs");
                }
                tokio::time::sleep(jobs::RECONCILE_EVERY).await;
            }
        });
        if gw.sessions.is_some() {
            let watcher = gw.clone();
            tokio::spawn(async move {
                let sessions = watcher.sessions.as_ref().expect("checked");
                let mut watched = sessions::Watched::default();
                loop {
                    if let Err(e) = sessions.watch(&watcher, &mut watched).await {
                        tracing::warn!(error = %format!("{e:#}"), "checking the kept receipts");
                    }
                    tokio::time::sleep(sessions::WATCH_EVERY).await;
                }
            });
        }
        Router::new()
            .route("/v1/models", get(models))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/chat/completions", post(chat))
            .with_state(gw)
    }

    /// The key entry of the request's `Authorization: Bearer` header.
    fn authorize(&self, headers: &HeaderMap) -> Result<KeyEntry, OpenAiError> {
        let value = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
            OpenAiError::unauthorized(
                "missing API key: send `Authorization: Bearer <key>` (create a key with `agora gateway key add`)",
            )
        })?;
        let key = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        self.keys.lookup(key).map_err(|e| OpenAiError::internal(format!("{e:#}")))?.ok_or_else(|| {
            OpenAiError::unauthorized("incorrect API key provided: this node does not know it")
        })
    }

    /// Holds `max_cost` of `entry`'s budget for a request; returns the account's sender.
    async fn reserve(
        &self,
        entry: &KeyEntry,
        max_cost: Amount,
    ) -> Result<(Arc<TxSender>, Reservation), OpenAiError> {
        // Under the key's lock: no open_job or settle_job can change the spend between this
        // read and the hold.
        self.keys.with_lock(&entry.name, || self.hold(entry, max_cost))?;
        let reservation =
            Reservation { gw_reserved: self.reserved.clone(), name: entry.name.clone(), amount: max_cost };
        Ok((self.sender(entry).await?, reservation))
    }

    /// The transaction sender of `entry`'s account (one per account, so nonces never collide).
    async fn sender(&self, entry: &KeyEntry) -> Result<Arc<TxSender>, OpenAiError> {
        let mut senders = self.senders.lock().await;
        if let Some(s) = senders.get(&entry.name) {
            return Ok(s.clone());
        }
        let key = self.keys.account(entry).map_err(|e| OpenAiError::internal(format!("{e:#}")))?;
        let s = Arc::new(TxSender::new(key, self.client.clone()));
        senders.insert(entry.name.clone(), s.clone());
        Ok(s)
    }

    /// Adds `max_cost` to `entry`'s in-memory hold if its spend, holds and `max_cost` fit its
    /// budget.
    fn hold(&self, entry: &KeyEntry, max_cost: Amount) -> Result<(), OpenAiError> {
        let spent = self.keys.spent(&entry.name).map_err(|e| OpenAiError::internal(format!("{e:#}")))?;
        {
            let mut held = self.reserved.lock().expect("not poisoned");
            let h = held.entry(entry.name.clone()).or_default();
            let committed = spent.checked_add(*h).and_then(|x| x.checked_add(max_cost));
            if committed.is_none_or(|c| c > entry.budget) {
                return Err(OpenAiError::quota(format!(
                    "this request may cost up to {max_cost} and key {:?} has {} of its budget {} left ({spent} spent, {h} held by requests in flight); raise its budget in the node's gateway/keys.toml",
                    entry.name,
                    entry
                        .budget
                        .checked_sub(spent.checked_add(*h).unwrap_or(entry.budget))
                        .unwrap_or(Amount::ZERO),
                    entry.budget,
                )));
            }
            *h = h.checked_add(max_cost).expect("checked above");
        }
        Ok(())
    }
}

/// The catalog models of `kind` this gateway serves.
fn served(kind: JobKind) -> Vec<&'static str> {
    use agora_runtime::provision::catalog::{MINILM, SMOLLM2};
    [(MINILM, JobKind::Embed), (SMOLLM2, JobKind::Generate)]
        .iter()
        .filter(|(_, k)| *k == kind)
        .map(|(n, _)| *n)
        .collect()
}

/// Checks that `model` serves `kind` requests.
fn check_model(model: &str, kind: JobKind) -> Result<(), OpenAiError> {
    if served(kind).contains(&model) {
        return Ok(());
    }
    let other = if kind == JobKind::Embed { JobKind::Generate } else { JobKind::Embed };
    if served(other).contains(&model) {
        let endpoint = if other == JobKind::Embed { "/v1/embeddings" } else { "/v1/chat/completions" };
        return Err(OpenAiError::invalid(
            Some("model"),
            format!("{model:?} is a {other} model: use {endpoint}"),
        ));
    }
    Err(OpenAiError::model_not_found(model, &served(kind)))
}

/// `GET /v1/models`
async fn models(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Result<Response, OpenAiError> {
    gw.authorize(&headers)?;
    let data: Vec<_> = [JobKind::Embed, JobKind::Generate]
        .iter()
        .flat_map(|k| served(*k))
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "agora"}))
        .collect();
    Ok(axum::Json(json!({"object": "list", "data": data})).into_response())
}

/// The texts of an embeddings request's `input`.
fn embedding_inputs(input: serde_json::Value) -> Result<Vec<String>, OpenAiError> {
    let bad = |m: &str| OpenAiError::invalid(Some("input"), m.to_string());
    let texts = match input {
        serde_json::Value::String(s) => vec![s],
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(bad(
                    "input must be a string or a list of strings (token-id arrays are not supported)",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("input must be a string or a list of strings")),
    };
    if texts.is_empty() || texts.len() > MAX_EMBED_INPUTS {
        return Err(bad(&format!("input must hold 1..={MAX_EMBED_INPUTS} texts, got {}", texts.len())));
    }
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(bad(&format!("input[{i}] is empty; every input must hold some text")));
    }
    Ok(texts)
}

/// Checks an embeddings request's model, `dimensions` and `encoding_format` (before any money
/// moves) and returns whether the vectors go out as base64.
fn embedding_format(req: &EmbeddingRequest) -> Result<bool, OpenAiError> {
    check_model(&req.model, JobKind::Embed)?;
    let own = agora_runtime::provision::catalog::find(&req.model).and_then(|m| m.dimensions);
    if let Some(d) = req.dimensions.filter(|d| Some(*d) != own) {
        let own = own.map_or_else(|| "a fixed number of".to_string(), |n| n.to_string());
        return Err(OpenAiError::invalid(
            Some("dimensions"),
            format!("{} returns {own} dimensions, not {d}; omit dimensions or ask for {own}", req.model),
        ));
    }
    match req.encoding_format.as_deref() {
        None | Some("float") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => Err(OpenAiError::invalid(
            Some("encoding_format"),
            format!("encoding_format must be float or base64, got {other:?}"),
        )),
    }
}

/// `POST /v1/embeddings`
async fn embeddings(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let entry = gw.authorize(&headers)?;
    let req: EmbeddingRequest = parse_body(&body)?;
    let base64 = embedding_format(&req)?;
    let texts = embedding_inputs(req.input)?;
    let (vectors, prompt_tokens, info) =
        match session_for(&gw, &entry, &req.agora, ServeKind::Embed, &req.model).await? {
            Some(open) => {
                let sessions = gw.sessions.as_ref().expect("a session implies session mode");
                let resp = sessions.embed(&gw, &open, &texts).await?;
                let r = resp.receipt.receipt.clone();
                let info = AgoraInfo::Session {
                    session: open.id,
                    provider: resp.receipt.provider,
                    receipt: Box::new(resp.receipt),
                };
                (resp.embeddings, r.usage.prompt_tokens, info)
            }
            None => {
                let items: Vec<Vec<u8>> = texts.into_iter().map(String::into_bytes).collect();
                let Verified { items, info } =
                    jobs::run(gw.clone(), &entry, JobKind::Embed, &req.model, &items, toml::Table::new())
                        .await?;
                let vectors = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        decode_vector(item).map_err(|e| OpenAiError::internal(format!("output {i}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (vectors, 0, info)
            }
        };
    let mut data = vec![];
    for (i, v) in vectors.iter().enumerate() {
        let embedding = if base64 {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            json!(v)
        };
        data.push(json!({"object": "embedding", "index": i, "embedding": embedding}));
    }
    let usage = Usage { prompt_tokens, completion_tokens: None, total_tokens: prompt_tokens };
    Ok(axum::Json(json!({"object": "list", "data": data, "model": req.model, "usage": usage, "agora": info}))
        .into_response())
}

/// The session to serve a request from, when the gateway runs sessions and the request does
/// not ask for job mode. `None` means job mode: asked for, not configured, or no session could
/// be opened now (the failure is logged and the job answers).
async fn session_for(
    gw: &Gateway,
    entry: &KeyEntry,
    opts: &Option<AgoraOptions>,
    kind: ServeKind,
    model: &str,
) -> Result<Option<Arc<Open>>, OpenAiError> {
    let Some(sessions) = &gw.sessions else { return Ok(None) };
    if AgoraOptions::wants_job(opts)? {
        return Ok(None);
    }
    match sessions.session(gw, entry, kind, model).await {
        Ok(open) => Ok(Some(open)),
        // The key's budget is the caller's to fix, in either mode.
        Err(e) if e.status == axum::http::StatusCode::TOO_MANY_REQUESTS => Err(e),
        Err(e) => {
            tracing::warn!(key = %entry.name, error = %e.message, "no serving session; answering in job mode");
            Ok(None)
        }
    }
}

/// The text of a message's `content` (a string, or the text parts of a list).
fn message_text(m: &ChatMessage, i: usize) -> Result<String, OpenAiError> {
    match &m.content {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Null => Ok(String::new()),
        serde_json::Value::Array(parts) => parts
            .iter()
            .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                (Some("text"), Some(t)) => Ok(t.to_string()),
                _ => Err(OpenAiError::invalid(
                    Some("messages"),
                    format!("messages[{i}].content: only text parts are supported"),
                )),
            })
            .collect(),
        _ => Err(OpenAiError::invalid(
            Some("messages"),
            format!("messages[{i}].content must be a string or a list of parts"),
        )),
    }
}

/// The one prompt a generate job runs for a conversation. The runtime wraps it in the model's
/// chat template as the user turn, so a lone user message passes through unchanged; system
/// instructions and earlier turns are folded into it as labelled text.
fn prompt_of(messages: &[ChatMessage]) -> Result<String, OpenAiError> {
    let bad = |m: String| OpenAiError::invalid(Some("messages"), m);
    let Some(last) = messages.last() else { return Err(bad("messages must not be empty".into())) };
    if last.role != "user" {
        return Err(bad(format!("the last message must be the user's, got role {:?}", last.role)));
    }
    let mut context = String::new();
    for (i, m) in messages[..messages.len() - 1].iter().enumerate() {
        let label = match m.role.as_str() {
            "system" | "developer" => "Instructions",
            "user" => "User",
            "assistant" => "Assistant",
            other => {
                return Err(bad(format!(
                    "messages[{i}].role {other:?} is not system, developer, user or assistant"
                )));
            }
        };
        context += &format!("{label}: {}\n\n", message_text(m, i)?);
    }
    let question = message_text(last, messages.len() - 1)?;
    if question.trim().is_empty() {
        return Err(bad("the last message has no text".into()));
    }
    Ok(if context.is_empty() { question } else { format!("{context}User: {question}") })
}

/// The generate parameters of a chat request.
fn chat_params(req: &ChatRequest) -> Result<toml::Table, OpenAiError> {
    let mut p = toml::Table::new();
    if let Some(n) = req.max_completion_tokens.or(req.max_tokens) {
        p.insert("max_new_tokens".into(), i64::from(n).into());
    }
    if let Some(t) = req.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(OpenAiError::invalid(
                Some("temperature"),
                format!("temperature must be 0..=2, got {t}"),
            ));
        }
        p.insert("temperature_milli".into(), ((t * 1000.0).round() as i64).into());
    }
    if let Some(s) = req.seed {
        let seed =
            i64::try_from(s).map_err(|_| OpenAiError::invalid(Some("seed"), "seed must be below 2^63"))?;
        p.insert("seed".into(), seed.into());
    }
    if let Some(stop) = req.stop.clone() {
        p.insert("stop".into(), toml::Value::Array(stop.into_vec().into_iter().map(Into::into).collect()));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(OpenAiError::invalid(Some("n"), "only n = 1 is supported"));
    }
    Ok(p)
}

fn finish_reason(s: StopReason) -> &'static str {
    match s {
        StopReason::Eos | StopReason::StopString => "stop",
        StopReason::MaxTokens => "length",
    }
}

/// Splits text into stream pieces, each starting at a word (leading whitespace kept).
fn pieces(text: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut start = 0;
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() && !prev_space && i > start {
            out.push(&text[start..i]);
            start = i;
        }
        prev_space = c.is_whitespace();
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Runs a chat request to one verified generation.
async fn complete(
    gw: Arc<Gateway>,
    entry: &KeyEntry,
    req: &ChatRequest,
    prompt: String,
    params: toml::Table,
) -> Result<(Generation, AgoraInfo), OpenAiError> {
    let Verified { items, info } =
        jobs::run(gw, entry, JobKind::Generate, &req.model, &[prompt.into_bytes()], params).await?;
    let item = items.first().ok_or_else(|| OpenAiError::internal("the job returned no completion"))?;
    let g = Generation::from_item(item).map_err(|e| OpenAiError::internal(format!("completion: {e}")))?;
    Ok((g, info))
}

/// `POST /v1/chat/completions`
async fn chat(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let entry = gw.authorize(&headers)?;
    let req: ChatRequest = parse_body(&body)?;
    check_model(&req.model, JobKind::Generate)?;
    let prompt = prompt_of(&req.messages)?;
    let params = chat_params(&req)?;
    let created = now_secs();
    if let Some(open) = session_for(&gw, &entry, &req.agora, ServeKind::Chat, &req.model).await? {
        let body = serve_body(&req, prompt)?;
        return session_chat(gw, open, body, req.model, req.stream, created).await;
    }
    if !req.stream {
        let (g, info) = complete(gw.clone(), &entry, &req, prompt, params).await?;
        let usage = Usage {
            prompt_tokens: 0,
            completion_tokens: Some(g.tokens.len() as u64),
            total_tokens: g.tokens.len() as u64,
        };
        return Ok(axum::Json(json!({
            "id": completion_id(&info),
            "object": "chat.completion",
            "created": created,
            "model": req.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text}, "finish_reason": finish_reason(g.stop)}],
            "usage": usage,
            "agora": info,
        }))
        .into_response());
    }
    // Streamed: the status line goes out now, keep-alive comments hold the connection while the
    // job is verified, then the verified completion follows as chunks.
    let model = req.model.clone();
    let events = futures::stream::once(async move {
        let chunk = |id: &str, delta: serde_json::Value, finish: Option<&str>| {
            Event::default().data(
                json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                .to_string(),
            )
        };
        match complete(gw.clone(), &entry, &req, prompt, params).await {
            Ok((g, info)) => {
                let id = completion_id(&info);
                let mut out = vec![chunk(&id, json!({"role": "assistant", "content": ""}), None)];
                out.extend(pieces(&g.text).into_iter().map(|p| chunk(&id, json!({"content": p}), None)));
                out.push(chunk(&id, json!({}), Some(finish_reason(g.stop))));
                out.push(Event::default().data("[DONE]"));
                out
            }
            Err(e) => vec![Event::default().data(e.body().to_string())],
        }
    })
    .flat_map(|events| futures::stream::iter(events.into_iter().map(Ok::<_, std::convert::Infallible>)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(5))).into_response())
}

/// The id of a completion: the job's, or the session's and the receipt's.
fn completion_id(info: &AgoraInfo) -> String {
    match info {
        AgoraInfo::Job { job, .. } => format!("chatcmpl-agora-{job}"),
        AgoraInfo::Session { session, receipt, .. } => {
            format!("chatcmpl-agora-s{session}-{}", receipt.receipt.seq)
        }
    }
}

/// A chat request as a session request. Without `max_tokens` a completion may take the job
/// default of 64 tokens.
fn serve_body(req: &ChatRequest, prompt: String) -> Result<ServeBody, OpenAiError> {
    let temperature_milli = req.temperature.map_or(0, |t| (t * 1000.0).round() as u32);
    let body = ServeBody::Chat {
        prompt,
        max_tokens: req.max_completion_tokens.or(req.max_tokens).unwrap_or(64),
        temperature_milli,
        seed: req.seed.unwrap_or(0),
        stop: req.stop.clone().map(|s| s.into_vec()).unwrap_or_default(),
    };
    body.check().map_err(|e| OpenAiError::invalid(None, e))?;
    Ok(body)
}

/// Serves a chat request from session `open`: streamed, each piece is sent as the provider
/// generates it; the last chunk carries the usage and the receipt.
async fn session_chat(
    gw: Arc<Gateway>,
    open: Arc<Open>,
    body: ServeBody,
    model: String,
    stream: bool,
    created: u64,
) -> Result<Response, OpenAiError> {
    let sessions = gw.sessions.as_ref().expect("a session implies session mode");
    let finish = |stop: &str| agora_serve::wire::parse_stop(stop).map_or("stop", finish_reason);
    let usage_of = |u: agora_core::session::Usage| Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: Some(u.completion_tokens),
        total_tokens: u.prompt_tokens + u.completion_tokens,
    };
    let info_of = |served: &sessions::ChatServed| AgoraInfo::Session {
        session: served.session,
        provider: served.done.receipt.provider,
        receipt: Box::new(served.done.receipt.clone()),
    };
    if !stream {
        let served = sessions.chat(&gw, &open, &body, |_| true).await?;
        let info = info_of(&served);
        return Ok(axum::Json(json!({
            "id": completion_id(&info),
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": served.done.text}, "finish_reason": finish(&served.done.stop)}],
            "usage": usage_of(served.done.usage()),
            "agora": info,
        }))
        .into_response());
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let id = format!("chatcmpl-agora-s{}-{}", open.id, now_ms());
    tokio::spawn(async move {
        let sessions = gw.sessions.as_ref().expect("a session implies session mode");
        let chunk = |delta: serde_json::Value, finish: Option<&str>, extra: serde_json::Value| {
            let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
                c.extend(extra.clone());
            }
            Event::default().data(c.to_string())
        };
        let _ = tx.send(chunk(json!({"role": "assistant", "content": ""}), None, json!({})));
        let served = sessions
            .chat(&gw, &open, &body, |p| tx.send(chunk(json!({"content": p}), None, json!({}))).is_ok())
            .await;
        match served {
            Ok(served) => {
                let extra = json!({"usage": usage_of(served.done.usage()), "agora": info_of(&served)});
                let _ = tx.send(chunk(json!({}), Some(finish(&served.done.stop)), extra));
                let _ = tx.send(Event::default().data("[DONE]"));
            }
            Err(e) => {
                let _ = tx.send(Event::default().data(e.body().to_string()));
            }
        }
    });
    let events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(5))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: serde_json::Value) -> ChatMessage {
        ChatMessage { role: role.into(), content }
    }

    #[test]
    fn a_lone_user_message_is_the_prompt() {
        assert_eq!(prompt_of(&[msg("user", json!("hi there"))]).unwrap(), "hi there");
        let parts = json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]);
        assert_eq!(prompt_of(&[msg("user", parts)]).unwrap(), "ab");
    }

    #[test]
    fn conversations_fold_into_one_prompt() {
        let p = prompt_of(&[msg("system", json!("Be brief.")), msg("user", json!("Why?"))]).unwrap();
        assert_eq!(p, "Instructions: Be brief.\n\nUser: Why?");
        assert!(prompt_of(&[]).is_err());
        assert!(prompt_of(&[msg("assistant", json!("x"))]).unwrap_err().message.contains("last message"));
        assert!(prompt_of(&[msg("tool", json!("x")), msg("user", json!("y"))]).is_err());
        let image = json!([{"type": "image_url", "image_url": {"url": "x"}}]);
        assert!(prompt_of(&[msg("user", image)]).unwrap_err().message.contains("text parts"));
    }

    #[test]
    fn inputs_and_models_are_checked() {
        assert_eq!(embedding_inputs(json!("one")).unwrap(), vec!["one"]);
        assert_eq!(embedding_inputs(json!(["a", "b"])).unwrap().len(), 2);
        assert!(embedding_inputs(json!([1, 2, 3])).unwrap_err().message.contains("token-id"));
        assert!(embedding_inputs(json!([])).is_err());
        assert!(embedding_inputs(json!(["ok", " "])).unwrap_err().message.contains("input[1]"));
        assert!(check_model("all-minilm-l6-v2", JobKind::Embed).is_ok());
        assert!(
            check_model("all-minilm-l6-v2", JobKind::Generate)
                .unwrap_err()
                .message
                .contains("/v1/embeddings")
        );
        assert_eq!(check_model("gpt-4o", JobKind::Generate).unwrap_err().status, 404);
    }

    #[test]
    fn embedding_dimensions_and_format_are_checked_before_any_job() {
        let req = |extra: &str| -> EmbeddingRequest {
            parse_body(format!(r#"{{"model":"all-minilm-l6-v2","input":"x"{extra}}}"#).as_bytes()).unwrap()
        };
        assert!(!embedding_format(&req("")).unwrap());
        assert!(embedding_format(&req(r#","dimensions":384,"encoding_format":"base64""#)).unwrap());
        let wrong = embedding_format(&req(r#","dimensions":100"#)).unwrap_err();
        assert_eq!(wrong.status, 400, "{}", wrong.message);
        assert_eq!(wrong.param, Some("dimensions"));
        assert!(wrong.message.contains("384"), "{}", wrong.message);
        assert!(embedding_format(&req(r#","encoding_format":"int8""#)).is_err());
    }

    #[test]
    fn stream_pieces_rebuild_the_text() {
        for text in ["Hello world, yes", "  lead", "trail  ", "", "one\n\ntwo"] {
            assert_eq!(pieces(text).concat(), text);
        }
        assert_eq!(pieces("Hello big world"), vec!["Hello", " big", " world"]);
    }

    #[test]
    fn chat_parameters_map_to_generate_params() {
        let req: ChatRequest = parse_body(
            br#"{"model":"m","messages":[],"max_tokens":5,"temperature":0.7,"seed":3,"stop":["\n"]}"#,
        )
        .unwrap();
        let p = chat_params(&req).unwrap();
        assert_eq!(p["max_new_tokens"].as_integer(), Some(5));
        assert_eq!(p["temperature_milli"].as_integer(), Some(700));
        let bad: ChatRequest = parse_body(br#"{"model":"m","messages":[],"temperature":9}"#).unwrap();
        assert!(chat_params(&bad).is_err());
    }
}
