//! Per-client limits on the HTTP API, as a tower layer (axum middleware) in front of every
//! route: requests in flight and a token-bucket request rate per client address, a cap on
//! requests in flight for the whole node, and a deadline for producing a response.
//!
//! Anyone who can reach a node's API can send it requests; these bounds make a flood cost the
//! flooder. A client over its rate or concurrency gets 429 with a message that says which
//! limit and how to raise it; a node at capacity answers 503. Streaming bodies (event streams)
//! count while their handler runs, not while they stream; event replays are capped separately
//! ([`ApiLimits::max_replays`]).

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The API's limits (`[api.limits]` in the node config; every field has a default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiLimits {
    /// Requests one client address may have in flight.
    pub per_client_in_flight: usize,
    /// Sustained requests per second from one client address.
    pub per_client_rate: u32,
    /// Requests one client address may send in a burst above its rate.
    pub per_client_burst: u32,
    /// Requests in flight for the whole node.
    pub max_in_flight: usize,
    /// Deadline for a handler to produce its response, ms.
    pub request_timeout_ms: u64,
    /// Sustained transaction signatures per second one client address may have checked (a
    /// batch of n transactions costs n).
    pub per_client_signatures: u32,
    /// Event streams replaying history (`/api/v1/events?from=`) at once.
    pub max_replays: usize,
    /// Client addresses tracked at once; idle ones are forgotten first.
    pub max_clients: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            per_client_in_flight: 64,
            per_client_rate: 1_000,
            per_client_burst: 2_000,
            max_in_flight: 1_024,
            request_timeout_ms: 30_000,
            per_client_signatures: 5_000,
            max_replays: 16,
            max_clients: 16_384,
        }
    }
}

struct Bucket {
    tokens: f64,
    signatures: f64,
    refilled: Instant,
    in_flight: usize,
}

/// The address a request came from, as the limiter saw it (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// The limiter's state, shared by every request.
pub struct Limiter {
    cfg: ApiLimits,
    clients: Mutex<HashMap<IpAddr, Bucket>>,
    node: Arc<Semaphore>,
    /// Replays allowed at once.
    pub replays: Arc<Semaphore>,
}

/// Why a request was refused before it reached a handler.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client is over its rate.
    Rate,
    /// The client has too many requests in flight.
    Concurrency,
}

impl Limiter {
    /// A limiter enforcing `cfg`.
    pub fn new(cfg: ApiLimits) -> Arc<Self> {
        Arc::new(Self {
            node: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            replays: Arc::new(Semaphore::new(cfg.max_replays.max(1))),
            clients: Mutex::default(),
            cfg,
        })
    }

    /// Takes one request's worth of `client`'s budget at `now`, or says which limit it is over.
    pub fn admit(&self, client: IpAddr, now: Instant) -> Result<(), Refusal> {
        let mut clients = self.clients.lock().expect("not poisoned");
        if clients.len() >= self.cfg.max_clients && !clients.contains_key(&client) {
            clients.retain(|_, b| b.in_flight > 0);
        }
        let b = self.refilled(&mut clients, client, now);
        if b.in_flight >= self.cfg.per_client_in_flight {
            return Err(Refusal::Concurrency);
        }
        if b.tokens < 1.0 {
            return Err(Refusal::Rate);
        }
        b.tokens -= 1.0;
        b.in_flight += 1;
        Ok(())
    }

    fn refilled<'a>(
        &self,
        clients: &'a mut HashMap<IpAddr, Bucket>,
        client: IpAddr,
        now: Instant,
    ) -> &'a mut Bucket {
        let burst = f64::from(self.cfg.per_client_burst.max(1));
        let signatures = f64::from(self.cfg.per_client_signatures.max(1));
        let b = clients.entry(client).or_insert(Bucket {
            tokens: burst,
            signatures,
            refilled: now,
            in_flight: 0,
        });
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * f64::from(self.cfg.per_client_rate)).min(burst);
        b.signatures = (b.signatures + elapsed * signatures).min(signatures);
        b.refilled = now;
        b
    }

    /// Takes `n` signature checks from `client`'s budget (one second's worth at most), or says
    /// how long until it could afford them.
    pub fn charge_signatures(&self, client: IpAddr, n: usize, now: Instant) -> Result<(), String> {
        let mut clients = self.clients.lock().expect("not poisoned");
        let b = self.refilled(&mut clients, client, now);
        let n = n as f64;
        if b.signatures < n {
            return Err(format!(
                "signature budget: at most {} transaction signatures per second from one client; send fewer or smaller batches, or raise [api.limits] per_client_signatures",
                self.cfg.per_client_signatures
            ));
        }
        b.signatures -= n;
        Ok(())
    }

    /// Ends one of `client`'s requests.
    pub fn release(&self, client: IpAddr) {
        if let Some(b) = self.clients.lock().expect("not poisoned").get_mut(&client) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }
}

/// Releases a client's in-flight slot however the request ends (including a dropped future).
struct Slot<'a> {
    limiter: &'a Limiter,
    client: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.limiter.release(self.client);
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// The middleware: apply with `axum::middleware::from_fn_with_state(limiter, limit)`, and serve
/// with `into_make_service_with_connect_info::<SocketAddr>()` so clients are told apart (without
/// it every request counts as one client).
pub async fn limit(State(limiter): State<Arc<Limiter>>, mut request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let cfg = &limiter.cfg;
    match limiter.admit(client, Instant::now()) {
        Ok(()) => {}
        Err(Refusal::Rate) => {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "rate limit: at most {} requests per second from one client (burst {}); slow down, or raise [api.limits] per_client_rate on this node",
                    cfg.per_client_rate, cfg.per_client_burst
                ),
            );
        }
        Err(Refusal::Concurrency) => {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "at most {} requests in flight from one client; wait for answers, or raise [api.limits] per_client_in_flight",
                    cfg.per_client_in_flight
                ),
            );
        }
    }
    let _slot = Slot { limiter: &limiter, client };
    request.extensions_mut().insert(ClientAddr(client));
    let Ok(_permit) = limiter.node.try_acquire() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the node is at capacity; retry shortly".into());
    };
    match tokio::time::timeout(Duration::from_millis(cfg.request_timeout_ms), next.run(request)).await {
        Ok(response) => response,
        Err(_) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no response within {} ms; retry", cfg.request_timeout_ms),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_over_its_rate_or_concurrency_is_refused_and_others_are_not() {
        let l = Limiter::new(ApiLimits {
            per_client_in_flight: 3,
            per_client_rate: 10,
            per_client_burst: 5,
            ..ApiLimits::default()
        });
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t = Instant::now();
        for _ in 0..3 {
            l.admit(a, t).unwrap();
        }
        assert_eq!(l.admit(a, t), Err(Refusal::Concurrency));
        l.admit(b, t).expect("another client is unaffected");
        for _ in 0..3 {
            l.release(a);
        }
        l.admit(a, t).unwrap();
        l.admit(a, t).unwrap();
        l.release(a);
        l.release(a);
        assert_eq!(l.admit(a, t), Err(Refusal::Rate), "the burst of 5 is spent");
        l.admit(a, t + Duration::from_millis(150)).expect("refilled at 10 per second");
    }

    #[test]
    fn signature_checks_are_budgeted_per_client() {
        let l = Limiter::new(ApiLimits { per_client_signatures: 1_000, ..ApiLimits::default() });
        let (flooder, honest) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t = Instant::now();
        l.charge_signatures(flooder, 1_000, t).unwrap();
        let err = l.charge_signatures(flooder, 1_000, t).unwrap_err();
        assert!(err.contains("per_client_signatures"), "{err}");
        l.charge_signatures(honest, 1, t).expect("another client keeps its budget");
        l.charge_signatures(flooder, 500, t + Duration::from_millis(500)).expect("refills over time");
    }

    #[test]
    fn the_client_table_is_bounded() {
        let l = Limiter::new(ApiLimits { max_clients: 4, ..ApiLimits::default() });
        let t = Instant::now();
        for i in 0..100u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, i));
            l.admit(ip, t).unwrap();
            l.release(ip);
        }
        assert!(l.clients.lock().unwrap().len() <= 5);
    }
}
