//! The provider's audit-item endpoint: `GET /agent/audit/{id}` returns the sampled input and
//! output items of one of our leases, with Merkle proofs, to an auditor the chain assigned —
//! and to nobody else (the request is signed and checked against the chain).

use super::state::StateDir;
use crate::api::error::{ApiError, ApiResult};
use crate::client::NodeClient;
use crate::protocol::{self, AUDITOR_HEADER, AuditItems, ProvenItem, SIGNATURE_HEADER};
use agora_core::merkle::MerkleTree;
use agora_core::{AccountId, Signature};
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
}

/// The agent's routes.
pub fn router(server: Arc<AuditServer>) -> Router {
    Router::new().route("/agent/audit/{id}", get(audit_items)).with_state(server)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> ApiResult<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request(format!("missing header {name}")))
}

async fn audit_items(
    State(s): State<Arc<AuditServer>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<AuditItems>> {
    let id: u64 = id.parse().map_err(|_| ApiError::bad_request("audit ids are integers"))?;
    let auditor: AccountId = header(&headers, AUDITOR_HEADER)?
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad {AUDITOR_HEADER}: {e}")))?;
    let sig: Signature = header(&headers, SIGNATURE_HEADER)?
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad {SIGNATURE_HEADER}: {e}")))?;
    auditor.verify(&protocol::audit_request_message(id), &sig).map_err(|_| ApiError {
        status: axum::http::StatusCode::UNAUTHORIZED,
        message: "signature does not verify".into(),
    })?;
    let unavailable =
        |e: crate::client::ClientError| ApiError::unavailable(format!("cannot reach the chain: {e}"));
    let audit = s.chain.audit(id).await.map_err(unavailable)?;
    if !audit.is_assigned(&auditor) {
        return Err(ApiError {
            status: axum::http::StatusCode::FORBIDDEN,
            message: format!("{auditor} is not assigned to audit {id}"),
        });
    }
    let lease = s.chain.lease(audit.lease).await.map_err(unavailable)?;
    if lease.provider != s.me {
        return Err(ApiError::not_found(format!("lease {} is not ours", audit.lease)));
    }
    let job = s.chain.job(lease.job).await.map_err(unavailable)?;
    let shard = job.manifest.shards.get(lease.shard as usize).ok_or_else(|| ApiError::not_found("shard"))?;
    let inputs =
        s.state.load_items(audit.lease, "inputs").map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
    let outputs =
        s.state.load_items(audit.lease, "outputs").map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
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
