//! The provider's audit endpoints, answering only an auditor the chain assigned (the request is
//! signed and checked against the chain):
//! * `GET /agent/audit/{id}` returns the sampled input and output items of one of our leases,
//!   with Merkle proofs;
//! * `GET /agent/audit/{id}/records` returns the sampled records of one of our serving windows
//!   (request, client signature, output, fingerprints, receipt), each with the proof that its
//!   receipt is in the committed window, as an encoded list of
//!   [`agora_serve::audit::ProvenRecord`].

use super::state::StateDir;
use crate::api::error::{ApiError, ApiResult};
use crate::client::NodeClient;
use crate::protocol::{self, AUDITOR_HEADER, AuditItems, ProvenItem, SIGNATURE_HEADER};
use agora_core::merkle::MerkleTree;
use agora_core::tx::AuditId;
use agora_core::{AccountId, Signature};
use agora_ledger::audits::{Audit, AuditTarget};
use agora_serve::audit::ProvenRecord;
use agora_serve::book::Books;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// What the endpoint needs.
pub struct AuditServer {
    /// Our account (we serve only our own leases).
    pub me: AccountId,
    /// Chain API, to check assignments.
    pub chain: NodeClient,
    /// Where the plaintext items are kept.
    pub state: StateDir,
    /// Our serving receipts, if we serve sessions.
    pub books: Option<Arc<Books>>,
}

/// The agent's routes.
pub fn router(server: Arc<AuditServer>) -> Router {
    Router::new()
        .route("/agent/audit/{id}", get(audit_items))
        .route("/agent/audit/{id}/records", get(audit_records))
        .with_state(server)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> ApiResult<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request(format!("missing header {name}")))
}

fn unavailable(e: crate::client::ClientError) -> ApiError {
    ApiError::unavailable(format!("cannot reach the chain: {e}"))
}

/// Audit `id`, if the request comes signed from an auditor assigned to it.
async fn assigned_audit(s: &AuditServer, id: &str, headers: &HeaderMap) -> ApiResult<(AuditId, Audit)> {
    let id: u64 = id.parse().map_err(|_| ApiError::bad_request("audit ids are integers"))?;
    let auditor: AccountId = header(headers, AUDITOR_HEADER)?
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad {AUDITOR_HEADER}: {e}")))?;
    let sig: Signature = header(headers, SIGNATURE_HEADER)?
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad {SIGNATURE_HEADER}: {e}")))?;
    auditor.verify(&protocol::audit_request_message(id), &sig).map_err(|_| ApiError {
        status: axum::http::StatusCode::UNAUTHORIZED,
        message: "signature does not verify".into(),
    })?;
    let audit = s.chain.audit(id).await.map_err(unavailable)?;
    if !audit.is_assigned(&auditor) {
        return Err(ApiError {
            status: axum::http::StatusCode::FORBIDDEN,
            message: format!("{auditor} is not assigned to audit {id}"),
        });
    }
    if audit.provider != s.me {
        return Err(ApiError::not_found(format!("audit {id} is not of our work")));
    }
    Ok((id, audit))
}

async fn audit_items(
    State(s): State<Arc<AuditServer>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<AuditItems>> {
    let (id, audit) = assigned_audit(&s, &id, &headers).await?;
    let lease_id = audit
        .target
        .lease()
        .ok_or_else(|| ApiError::not_found(format!("audit {id} is of a serving window: see its /records")))?;
    let lease = s.chain.lease(lease_id).await.map_err(unavailable)?;
    let job = s.chain.job(lease.job).await.map_err(unavailable)?;
    let shard = job.manifest.shards.get(lease.shard as usize).ok_or_else(|| ApiError::not_found("shard"))?;
    let inputs =
        s.state.load_items(lease_id, "inputs").map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
    let outputs =
        s.state.load_items(lease_id, "outputs").map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
    let params = &job.manifest.params;
    let in_tree = MerkleTree::from_items(&inputs);
    let out_tree = MerkleTree::from_items(&outputs);
    let prove = |tree: &MerkleTree, items: &[Vec<u8>], idx: Vec<u32>| -> ApiResult<Vec<ProvenItem>> {
        idx.into_iter()
            .map(|i| {
                ProvenItem::new(tree, items, i)
                    .ok_or_else(|| ApiError::not_found(format!("item {i} does not exist")))
            })
            .collect()
    };
    Ok(Json(AuditItems {
        audit: id,
        inputs: prove(
            &in_tree,
            &inputs,
            agora_runtime::audit::inputs_needed(params, &audit.items, shard.item_count),
        )?,
        outputs: prove(&out_tree, &outputs, agora_runtime::audit::claims_needed(params, &audit.items))?,
    }))
}

async fn audit_records(
    State(s): State<Arc<AuditServer>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Vec<u8>> {
    let (id, audit) = assigned_audit(&s, &id, &headers).await?;
    let AuditTarget::Window((session, _, first_seq)) = audit.target else {
        return Err(ApiError::not_found(format!("audit {id} is of a lease: see /agent/audit/{id}")));
    };
    let books = s.books.clone().ok_or_else(|| ApiError::not_found("this node serves no sessions"))?;
    let detail = s.chain.session(session).await.map_err(unavailable)?;
    let window = detail
        .window(&s.me, first_seq)
        .ok_or_else(|| {
            ApiError::not_found(format!("no window of ours from receipt {first_seq} of session {session}"))
        })?
        .clone();
    let items = audit.items.clone();
    tokio::task::spawn_blocking(move || {
        let book = books.get(session).map_err(|e| ApiError::unavailable(e.to_string()))?;
        let mut book = book.lock().expect("not poisoned");
        let records = items
            .iter()
            .map(|i| {
                let seq = first_seq + u64::from(*i);
                let missing = || ApiError::not_found(format!("our book does not hold receipt {seq}"));
                let record = book.record_at(seq).map_err(|_| missing())?;
                let proof = book.proof(first_seq, window.receipts, seq).ok_or_else(missing)?;
                Ok(ProvenRecord { record, proof })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let mut body = vec![];
        agora_core::codec::encode_seq(records.iter(), &mut body);
        Ok(body)
    })
    .await
    .map_err(|e| ApiError::unavailable(e.to_string()))?
}
