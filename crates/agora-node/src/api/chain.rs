//! Chain routes: status, transactions, ledger objects, blocks, proofs.

use super::error::{ApiError, ApiResult};
use super::limits::ClientAddr;
use super::types::*;
use super::{ApiState, chain_of};
use agora_chain::mempool::VerifiedTx;
use agora_chain::{BlockRecord, StateProof, TxStatus};
use agora_core::{AccountId, Decode, Hash, SignedTx};
use agora_ledger::ObjectKey;
use agora_ledger::audits::Audit;
use agora_ledger::governance::Proposal;
use agora_ledger::jobs::Job;
use agora_ledger::leases::Lease;
use agora_ledger::market::Order;
use agora_ledger::params::{PARAM_TABLE, Params};
use agora_ledger::registry::Provider;
use agora_ledger::sessions::Session;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

fn parse_account(s: &str) -> ApiResult<AccountId> {
    s.parse().map_err(|e| ApiError::bad_request(format!("invalid account id {s:?}: {e}")))
}

fn parse_hash(s: &str) -> ApiResult<Hash> {
    s.parse().map_err(|e| ApiError::bad_request(format!("invalid hash {s:?}: {e}")))
}

fn parse_id(what: &str, s: &str) -> ApiResult<u64> {
    s.parse().map_err(|_| ApiError::bad_request(format!("{what} ids are non-negative integers, got {s:?}")))
}

/// Paging and filters shared by list routes.
#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    /// Only objects involving this account (requester, provider, auditor, proposer).
    pub account: Option<String>,
    /// Only objects of this job.
    pub job: Option<u64>,
    /// Only objects of this class.
    pub class: Option<String>,
    /// Most results (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Newest first (default) or oldest first.
    pub order: Option<String>,
}

impl ListQuery {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(100).min(1000)
    }

    fn account(&self) -> ApiResult<Option<AccountId>> {
        self.account.as_deref().map(parse_account).transpose()
    }

    fn newest_first(&self) -> ApiResult<bool> {
        match self.order.as_deref() {
            None | Some("desc") => Ok(true),
            Some("asc") => Ok(false),
            Some(o) => Err(ApiError::bad_request(format!("order must be asc or desc, got {o:?}"))),
        }
    }
}

fn page<'a, K: Clone + 'a, V: Clone + 'a>(
    items: impl DoubleEndedIterator<Item = (&'a K, &'a V)>,
    q: &ListQuery,
    keep: impl Fn(&V) -> bool,
) -> ApiResult<Vec<Entry<K, V>>> {
    let filtered = |it: &mut dyn Iterator<Item = (&'a K, &'a V)>| {
        it.filter(|(_, v)| keep(v))
            .take(q.limit())
            .map(|(k, v)| Entry { id: k.clone(), value: v.clone() })
            .collect()
    };
    Ok(if q.newest_first()? { filtered(&mut items.rev()) } else { filtered(&mut { items }) })
}

/// `GET /api/v1/status`
pub async fn status(State(s): State<Arc<ApiState>>) -> ApiResult<Json<Status>> {
    let chain = chain_of(&s)?;
    let snap = chain.snapshot();
    let (mempool_txs, _) = chain.mempool_size();
    let meta = snap.state.meta();
    Ok(Json(Status {
        chain_id: meta.chain_id.clone(),
        node: s.info.name.clone(),
        roles: s.info.roles.clone(),
        height: snap.height,
        digest: snap.digest,
        timestamp_ms: snap.timestamp_ms,
        state_root: snap.root,
        epoch: meta.epoch,
        committee: meta.committee.clone(),
        mempool_txs,
        supply: meta.supply.clone(),
    }))
}

/// Takes `n` signature checks from the requesting client's budget; returns the client.
fn charge_signatures(
    s: &ApiState,
    client: Option<Extension<ClientAddr>>,
    n: usize,
) -> ApiResult<std::net::IpAddr> {
    let client = client.map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.0);
    s.limiter
        .charge_signatures(client, n, std::time::Instant::now())
        .map_err(|e| ApiError { status: StatusCode::TOO_MANY_REQUESTS, message: e })?;
    Ok(client)
}

/// `POST /api/v1/txs`
pub async fn submit(
    State(s): State<Arc<ApiState>>,
    client: Option<Extension<ClientAddr>>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Submitted>)> {
    let chain = chain_of(&s)?;
    let req: SubmitTx = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body must be {{\"tx\": <signed transaction>}} or {{\"tx_hex\": \"...\"}}: {e}"
        ))
    })?;
    let tx = match req {
        SubmitTx::Json { tx } => *tx,
        SubmitTx::Hex { tx_hex } => {
            let bytes = hex::decode(tx_hex.trim())
                .map_err(|e| ApiError::bad_request(format!("tx_hex is not hex: {e}")))?;
            SignedTx::decode_untrusted(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
    };
    let client = charge_signatures(&s, client, 1)?;
    let tx = s.signatures.check_one(client, &chain.chain_id(), tx).await?;
    let id = chain.submit(tx).await?;
    Ok((StatusCode::ACCEPTED, Json(Submitted { id })))
}

/// Most transactions in one batch submission.
pub const MAX_BATCH: usize = 1_000;

/// `POST /api/v1/txs/batch`
pub async fn submit_batch(
    State(s): State<Arc<ApiState>>,
    client: Option<Extension<ClientAddr>>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Vec<BatchResult>>> {
    let chain = chain_of(&s)?;
    let req: SubmitBatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body must be {{\"txs_hex\": [\"...\", ...]}}: {e}")))?;
    if req.txs_hex.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BATCH} transactions per batch, got {}",
            req.txs_hex.len()
        )));
    }
    let mut txs = Vec::with_capacity(req.txs_hex.len());
    for (i, h) in req.txs_hex.iter().enumerate() {
        let bytes = hex::decode(h.trim())
            .map_err(|e| ApiError::bad_request(format!("transaction {i} is not hex: {e}")))?;
        txs.push(
            SignedTx::decode_untrusted(&bytes)
                .map_err(|e| ApiError::bad_request(format!("transaction {i}: {e}")))?,
        );
    }
    // Signatures are checked off the executor, within the client's budget; only the good ones
    // are queued for it.
    let client = charge_signatures(&s, client, txs.len())?;
    let checked = s.signatures.check(client, &chain.chain_id(), txs).await?;
    let verified: Vec<VerifiedTx> = checked.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
    let mut admitted = chain.submit_batch(verified).await?.into_iter();
    Ok(Json(
        checked
            .into_iter()
            .map(|r| match r.and_then(|_| admitted.next().expect("one result per verified transaction")) {
                Ok(id) => BatchResult { id: Some(id), error: None },
                Err(e) => BatchResult { id: None, error: Some(e.to_string()) },
            })
            .collect(),
    ))
}

/// `GET /api/v1/txs/{id}`
pub async fn tx(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<Json<TxStatus>> {
    let chain = chain_of(&s)?;
    Ok(Json(chain.tx(parse_hash(&id)?).await?))
}

/// `GET /api/v1/accounts/{id}`
pub async fn account(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<Json<AccountView>> {
    let snap = chain_of(&s)?.snapshot();
    let account = parse_account(&id)?;
    let st = &snap.state;
    Ok(Json(AccountView {
        account,
        height: snap.height,
        state: st.account(&account).cloned().unwrap_or_default(),
        validator: st.validator(&account).cloned(),
        provider: st.provider(&account).cloned(),
    }))
}

/// `GET /api/v1/validators`
pub async fn validators(State(s): State<Arc<ApiState>>) -> ApiResult<Json<ValidatorList>> {
    let snap = chain_of(&s)?.snapshot();
    Ok(Json(snap.state.validators().map(|(k, v)| Entry { id: *k, value: v.clone() }).collect()))
}

/// `GET /api/v1/providers`
pub async fn providers(State(s): State<Arc<ApiState>>) -> ApiResult<Json<ProviderList>> {
    let snap = chain_of(&s)?.snapshot();
    Ok(Json(snap.state.providers().map(|(k, v)| Entry { id: *k, value: v.clone() }).collect()))
}

/// `GET /api/v1/providers/{id}`
pub async fn provider(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<Json<Provider>> {
    let snap = chain_of(&s)?.snapshot();
    let id = parse_account(&id)?;
    snap.state
        .provider(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("{id} is not a registered provider")))
}

/// `GET /api/v1/orders`
pub async fn orders(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<OrderList>> {
    let snap = chain_of(&s)?.snapshot();
    let account = q.account()?;
    let class = q.class.clone();
    Ok(Json(page(snap.state.orders(), &q, |o: &Order| {
        class.as_deref().is_none_or(|c| o.class().to_string() == c)
            && account.is_none_or(|a| match o {
                Order::Ask(x) => x.provider == a,
                Order::Bid(x) => x.requester == a,
            })
    })?))
}

/// `GET /api/v1/jobs`
pub async fn jobs(State(s): State<Arc<ApiState>>, Query(q): Query<ListQuery>) -> ApiResult<Json<JobList>> {
    let snap = chain_of(&s)?.snapshot();
    let account = q.account()?;
    Ok(Json(page(snap.state.jobs(), &q, |j: &Job| account.is_none_or(|a| j.requester == a))?))
}

/// `GET /api/v1/jobs/{id}`
pub async fn job(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<Json<Job>> {
    let snap = chain_of(&s)?.snapshot();
    let id = parse_id("job", &id)?;
    snap.state
        .job(id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("job {id} does not exist")))
}

/// `GET /api/v1/leases`
pub async fn leases(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<LeaseList>> {
    let snap = chain_of(&s)?.snapshot();
    let account = q.account()?;
    let job = q.job;
    Ok(Json(page(snap.state.leases(), &q, |l: &Lease| {
        account.is_none_or(|a| l.provider == a || l.requester == a) && job.is_none_or(|j| l.job == j)
    })?))
}

/// `GET /api/v1/leases/{id}`
pub async fn lease(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<Json<Lease>> {
    let snap = chain_of(&s)?.snapshot();
    let id = parse_id("lease", &id)?;
    snap.state
        .lease(id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("lease {id} does not exist")))
}

/// `GET /api/v1/sessions`
pub async fn sessions(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<SessionList>> {
    let snap = chain_of(&s)?.snapshot();
    let account = q.account()?;
    Ok(Json(page(snap.state.sessions(), &q, |x: &Session| {
        account.is_none_or(|a| x.requester == a || x.member(&a).is_some())
    })?))
}

/// `GET /api/v1/sessions/{id}`
pub async fn session(
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<SessionDetail>> {
    let snap = chain_of(&s)?.snapshot();
    let id = parse_id("session", &id)?;
    let session = snap
        .state
        .session(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("session {id} does not exist")))?;
    let mut windows = vec![];
    for m in &session.members {
        let newest: Vec<_> = snap.state.windows_of(id, m.provider).rev().take(MAX_SESSION_WINDOWS).collect();
        windows.extend(newest.into_iter().rev().map(|((_, provider, first_seq), w)| WindowEntry {
            provider: *provider,
            first_seq: *first_seq,
            window: w.clone(),
        }));
    }
    Ok(Json(SessionDetail { id, session, windows }))
}

/// `GET /api/v1/audits`
pub async fn audits(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<AuditList>> {
    let snap = chain_of(&s)?.snapshot();
    let account = q.account()?;
    Ok(Json(page(snap.state.audits(), &q, |a: &Audit| {
        account.is_none_or(|x| a.provider == x || a.assignments.iter().any(|s| s.auditor == x))
    })?))
}

/// `GET /api/v1/audits/{id}`
pub async fn audit(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<Json<Audit>> {
    let snap = chain_of(&s)?.snapshot();
    let id = parse_id("audit", &id)?;
    snap.state
        .audit(id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("audit {id} does not exist")))
}

/// `GET /api/v1/proposals`
pub async fn proposals(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ProposalList>> {
    let snap = chain_of(&s)?.snapshot();
    let account = q.account()?;
    Ok(Json(page(snap.state.proposals(), &q, |p: &Proposal| account.is_none_or(|a| p.proposer == a))?))
}

/// `GET /api/v1/params`: current values with their bounds and meaning.
pub async fn params(State(s): State<Arc<ApiState>>) -> ApiResult<Json<Vec<serde_json::Value>>> {
    let snap = chain_of(&s)?.snapshot();
    let p: &Params = snap.state.params();
    Ok(Json(
        PARAM_TABLE
            .iter()
            .map(|info| {
                serde_json::json!({
                    "name": info.name, "value": p.get(info.name).map(|v| v.to_string()),
                    "min": info.min.to_string(), "max": info.max.to_string(), "doc": info.doc,
                })
            })
            .collect(),
    ))
}

/// `GET /api/v1/market`
pub async fn market(State(s): State<Arc<ApiState>>) -> ApiResult<Json<Vec<MarketClass>>> {
    let snap = chain_of(&s)?.snapshot();
    let mut out: BTreeMap<String, MarketClass> = BTreeMap::new();
    let entry = |out: &mut BTreeMap<String, MarketClass>, class: String| {
        out.entry(class.clone()).or_insert_with(|| MarketClass {
            class,
            stats: Default::default(),
            offered: 0,
            wanted: 0,
            best_ask: None,
            best_bid: None,
        });
    };
    for (class, stats) in snap.state.all_class_stats() {
        entry(&mut out, class.to_string());
        out.get_mut(&class.to_string()).expect("inserted").stats = stats.clone();
    }
    for (_, o) in snap.state.orders() {
        let class = o.class().to_string();
        entry(&mut out, class.clone());
        let m = out.get_mut(&class).expect("inserted");
        match o {
            Order::Ask(a) => {
                m.offered += a.quantity;
                m.best_ask = Some(m.best_ask.map_or(a.min_unit_price, |b| b.min(a.min_unit_price)));
            }
            Order::Bid(b) => {
                m.wanted += b.quantity;
                m.best_bid = Some(m.best_bid.map_or(b.max_unit_price, |x| x.max(b.max_unit_price)));
            }
        }
    }
    Ok(Json(out.into_values().collect()))
}

/// `GET /api/v1/blocks/{height}` (or `latest`)
pub async fn block(State(s): State<Arc<ApiState>>, Path(h): Path<String>) -> ApiResult<Json<BlockRecord>> {
    let chain = chain_of(&s)?;
    let height = if h == "latest" { chain.snapshot().height } else { parse_id("block", &h)? };
    if height == 0 {
        return Err(ApiError::not_found("block 0 is genesis; its state is described by the genesis file"));
    }
    chain.block(height).await?.map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "block {height} is not finalized yet (latest is {})",
            chain.snapshot().height
        ))
    })
}

/// `GET /api/v1/blocks/{height}/finalization`: the finalization certificate and the consensus
/// block it finalizes (hex); an epoch's last block names the next committee.
pub async fn finalization(
    State(s): State<Arc<ApiState>>,
    Path(h): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let chain = chain_of(&s)?;
    let height = parse_id("block", &h)?;
    let cert = chain
        .finalization(height)
        .await
        .ok_or_else(|| ApiError::not_found(format!("no finalization for block {height}")))?;
    let block = chain
        .consensus_block(height)
        .await
        .ok_or_else(|| ApiError::not_found(format!("block {height} is not finalized yet")))?;
    Ok(Json(serde_json::json!({
        "height": height,
        "certificate": hex::encode(cert),
        "block": hex::encode(block),
    })))
}

/// `GET /api/v1/proofs/{kind}/{id}`: a state proof for a ledger object.
pub async fn proof(
    State(s): State<Arc<ApiState>>,
    Path((kind, id)): Path<(String, String)>,
) -> ApiResult<Json<StateProof>> {
    let chain = chain_of(&s)?;
    let key = ObjectKey::parse(&kind, &id).map_err(ApiError::bad_request)?;
    Ok(Json(chain.prove(key.store_key()).await?))
}

/// Decodes a proven value as the object it proves, for clients that want typed data.
pub fn decode_proven<T: Decode>(proof: &StateProof) -> Option<T> {
    proof.value.as_deref().and_then(|v| T::decode(v).ok())
}
