//! The node's HTTP API (axum): chain routes under `/api/v1`, blob routes under `/blobs`, the
//! event stream, the OpenAPI document at `/api/v1/openapi.json`, the web dashboard at `/` and
//! Prometheus metrics at `/metrics`.

pub mod chain;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod limits;
pub mod metrics;
pub mod signatures;
pub use agora_client::types;

use agora_chain::ChainHandle;
use agora_store::Store;
use axum::Router;
use axum::routing::{get, post};
use error::{ApiError, ApiResult};
use std::sync::Arc;

/// Facts about this node shown by `/status` and the dashboard.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Roles it runs (`validator`, `provider`).
    pub roles: Vec<String>,
    /// The chain API it follows, when it does not run the chain itself.
    pub upstream: Option<String>,
}

/// What every handler can reach.
pub struct ApiState {
    /// The chain, when this node runs it.
    pub chain: Option<ChainHandle>,
    /// The content store.
    pub store: Store,
    /// Node facts.
    pub info: NodeInfo,
    /// Where submitted transactions' signatures are checked.
    pub signatures: signatures::SignaturePool,
    /// Request limits (also applied to every route by [`serve`]).
    pub limiter: Arc<limits::Limiter>,
}

impl ApiState {
    /// The API's state under `limits`, checking signatures on at most `threads` threads at once.
    pub fn new(
        chain: Option<ChainHandle>,
        store: Store,
        info: NodeInfo,
        limits: limits::ApiLimits,
        threads: usize,
    ) -> Self {
        let (signatures, limiter) = (signatures::SignaturePool::new(threads), limits::Limiter::new(limits));
        Self { chain, store, info, signatures, limiter }
    }
}

/// Serves `router` on `listener` behind `state`'s per-client limits, telling clients apart by
/// their address, until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    state: &ApiState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router.layer(axum::middleware::from_fn_with_state(state.limiter.clone(), limits::limit));
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(stop)
        .await
}

/// The chain, or a 503 that says where the chain is.
pub fn chain_of(s: &ApiState) -> ApiResult<&ChainHandle> {
    s.chain.as_ref().ok_or_else(|| {
        ApiError::unavailable(match &s.info.upstream {
            Some(u) => format!("this node does not run the chain; query its upstream {u}"),
            None => "this node does not run the chain".to_string(),
        })
    })
}

/// One documented route.
pub struct RouteDoc {
    /// HTTP method.
    pub method: &'static str,
    /// Path with `{param}` placeholders.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
}

/// Every route the API serves (the OpenAPI document is generated from this table, and a test
/// checks each entry is served).
pub const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "get",
        path: "/api/v1/status",
        summary: "Chain id, finalized height, state root, committee, mempool size",
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/txs",
        summary: "Submit a signed transaction ({\"tx\": ...} or {\"tx_hex\": ...}); 202 with its id, 400 if malformed, 422 if refused",
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/txs/{id}",
        summary: "Where a transaction is: pending, finalized (with receipt) or unknown",
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/accounts/{id}",
        summary: "Balance, nonce, stake and provider registration of an account",
    },
    RouteDoc { method: "get", path: "/api/v1/validators", summary: "Validators and their stake" },
    RouteDoc {
        method: "get",
        path: "/api/v1/providers",
        summary: "Registered providers: hardware, classes, region, carbon, prices, trust record",
    },
    RouteDoc { method: "get", path: "/api/v1/providers/{id}", summary: "One provider" },
    RouteDoc {
        method: "get",
        path: "/api/v1/orders",
        summary: "Open asks and bids (?class=&account=&limit=&order=)",
    },
    RouteDoc { method: "get", path: "/api/v1/jobs", summary: "Jobs (?account=&limit=&order=)" },
    RouteDoc { method: "get", path: "/api/v1/jobs/{id}", summary: "One job with per-shard status" },
    RouteDoc { method: "get", path: "/api/v1/leases", summary: "Leases (?account=&job=&limit=&order=)" },
    RouteDoc {
        method: "get",
        path: "/api/v1/leases/{id}",
        summary: "One lease: prices, commitment, verification, settlement",
    },
    RouteDoc { method: "get", path: "/api/v1/audits", summary: "Audits (?account=&limit=&order=)" },
    RouteDoc {
        method: "get",
        path: "/api/v1/audits/{id}",
        summary: "One audit: sampled items, auditors, verdicts, outcome",
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/sessions",
        summary: "Serving sessions (?account= as requester or provider, &limit=&order=)",
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/sessions/{id}",
        summary: "One serving session: terms, providers, escrow, committed windows and challenges",
    },
    RouteDoc { method: "get", path: "/api/v1/proposals", summary: "Governance proposals" },
    RouteDoc { method: "get", path: "/api/v1/params", summary: "Protocol parameters with their bounds" },
    RouteDoc {
        method: "get",
        path: "/api/v1/market",
        summary: "Per-class order book depth and clearing price history",
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/blocks/{height}",
        summary: "A finalized block (or `latest`) with receipts and events",
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/blocks/{height}/finalization",
        summary: "The block's finalization certificate and its consensus encoding (hex)",
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/proofs/{kind}/{id}",
        summary: "State proof of a ledger object (account, validator, provider, order, job, lease, audit, proposal, session)",
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/events",
        summary: "Server-sent events: one `block` event per finalized block (?from=height)",
    },
    RouteDoc { method: "get", path: "/api/v1/openapi.json", summary: "This document" },
    RouteDoc {
        method: "get",
        path: "/api/v1/node",
        summary: "This node's name, roles, version and upstream (served with or without the chain)",
    },
    RouteDoc { method: "get", path: "/", summary: "The web dashboard (live network view and explorer)" },
    RouteDoc { method: "get", path: "/ui/{file}", summary: "A dashboard asset (embedded in the binary)" },
    RouteDoc { method: "get", path: "/metrics", summary: "Prometheus metrics (text exposition format)" },
    RouteDoc {
        method: "get",
        path: "/v1/models",
        summary: "OpenAI-compatible: models the gateway serves (Authorization: Bearer <API key>)",
    },
    RouteDoc {
        method: "post",
        path: "/v1/embeddings",
        summary: "OpenAI-compatible: embeddings, computed by a verified job paid from the key's account",
    },
    RouteDoc {
        method: "post",
        path: "/v1/chat/completions",
        summary: "OpenAI-compatible: chat completion (stream: true for SSE chunks), from a verified job",
    },
    RouteDoc {
        method: "put",
        path: "/blobs",
        summary: "Upload a blob (streaming); returns its BLAKE3 hash (?pin=true)",
    },
    RouteDoc { method: "get", path: "/blobs", summary: "List stored blobs" },
    RouteDoc { method: "get", path: "/blobs/{hash}", summary: "Download a blob (Range supported)" },
    RouteDoc { method: "head", path: "/blobs/{hash}", summary: "Blob size and pin state" },
    RouteDoc {
        method: "get",
        path: "/blobs/{hash}/verified",
        summary: "Verified (bao-encoded) download of a blob or range (?start=&end=)",
    },
    RouteDoc {
        method: "post",
        path: "/blobs/{hash}/pin",
        summary: "Pin a blob (exempt from garbage collection)",
    },
    RouteDoc { method: "delete", path: "/blobs/{hash}/pin", summary: "Unpin a blob" },
];

/// The OpenAPI 3 document of [`ROUTES`].
pub fn openapi() -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let params: Vec<serde_json::Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| serde_json::json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let op = serde_json::json!({
            "summary": r.summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK"},
                "4XX": {"description": "The request is wrong; the body's `error` says how",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| serde_json::json!({}));
        entry[r.method] = op;
    }
    serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": "Agora node API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Chain, market and content-store API of an Agora node."},
        "paths": paths,
        "components": {"schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}},
    })
}

/// The full router: chain routes, events, OpenAPI, and the content store.
pub fn router(state: Arc<ApiState>, store: agora_store::http::ServerConfig) -> Router {
    let api = Router::new()
        .route("/api/v1/status", get(chain::status))
        .route("/api/v1/txs", post(chain::submit))
        .route("/api/v1/txs/batch", post(chain::submit_batch))
        .route("/api/v1/txs/{id}", get(chain::tx))
        .route("/api/v1/accounts/{id}", get(chain::account))
        .route("/api/v1/validators", get(chain::validators))
        .route("/api/v1/providers", get(chain::providers))
        .route("/api/v1/providers/{id}", get(chain::provider))
        .route("/api/v1/orders", get(chain::orders))
        .route("/api/v1/jobs", get(chain::jobs))
        .route("/api/v1/jobs/{id}", get(chain::job))
        .route("/api/v1/leases", get(chain::leases))
        .route("/api/v1/leases/{id}", get(chain::lease))
        .route("/api/v1/audits", get(chain::audits))
        .route("/api/v1/audits/{id}", get(chain::audit))
        .route("/api/v1/sessions", get(chain::sessions))
        .route("/api/v1/sessions/{id}", get(chain::session))
        .route("/api/v1/proposals", get(chain::proposals))
        .route("/api/v1/params", get(chain::params))
        .route("/api/v1/market", get(chain::market))
        .route("/api/v1/blocks/{height}", get(chain::block))
        .route("/api/v1/blocks/{height}/finalization", get(chain::finalization))
        .route("/api/v1/proofs/{kind}/{id}", get(chain::proof))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/openapi.json", get(|| async { axum::Json(openapi()) }))
        .route("/health", get(|| async { "ok" }))
        .route("/api/v1/node", get(dashboard::node))
        .route("/", get(dashboard::index))
        .route("/ui/{file}", get(dashboard::asset))
        .route("/metrics", get(metrics::metrics))
        .with_state(state.clone());
    if let Some(chain) = &state.chain {
        // Finality latency is observed as blocks arrive, not at scrape time.
        tokio::spawn(metrics::observe_finality(chain.clone()));
    }
    api.merge(agora_store::http::router(state.store.clone(), store))
        .layer(axum::middleware::from_fn(dashboard::allow_cross_origin_reads))
}
