//! What every outbound HTTP request of an Agora node is bounded by.
//!
//! Nodes talk to parties they do not trust: providers' self-registered endpoints, requesters'
//! `sources`, other nodes. Each of them could be a tarpit that accepts and never answers, a
//! redirect to somewhere else, or an endless body. So every client here has a connect timeout
//! and a read timeout (the longest silence between bytes), never follows redirects, and reads
//! bodies only up to a cap the caller names.
//!
//! A URL a stranger chose (a provider's registered endpoint, a manifest's source) is dialled
//! with [`Reach::Public`] unless the chain allows private endpoints (devnets): an IP-literal
//! host inside the dialler's own network is refused before anything is sent, and a DNS name
//! connects only to the public addresses it resolves to at that moment, so a name registered
//! while public and pointed at 169.254.169.254 later reaches nothing.

use agora_core::net::is_private_ip;
use reqwest::Response;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Longest wait for a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence while reading a response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a response body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the caller accepts.
    #[error("the response is larger than the {max}-byte limit")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The transfer failed or timed out.
    #[error("reading the response: {0}")]
    Http(#[from] reqwest::Error),
    /// The body is not the JSON expected.
    #[error("the response is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Which addresses a client may connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Any address: the operator's own node, or a chain that allows private endpoints.
    Any,
    /// Public addresses only ([`is_private_ip`] is false): for every URL a stranger chose.
    Public,
}

/// Why a URL is not dialled.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// The URL does not parse or has no host.
    #[error("{url:?} is not an http(s) URL with a host")]
    Invalid {
        /// The URL.
        url: String,
    },
    /// Its host is an address inside this node's own network.
    #[error("{url:?} points at a loopback, private or link-local address, which this chain does not allow")]
    Private {
        /// The URL.
        url: String,
    },
}

impl Reach {
    /// What a chain's `allow_private_endpoints` parameter allows.
    pub fn for_chain(allow_private_endpoints: bool) -> Self {
        if allow_private_endpoints { Reach::Any } else { Reach::Public }
    }

    /// Refuses `url` when its host is an IP literal this reach excludes. DNS names pass here
    /// and are checked by [`client_reaching`]'s resolver when it connects.
    pub fn check_url(self, url: &str) -> Result<(), ReachError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| ReachError::Invalid { url: url.to_owned() })?;
        let ip = match parsed.host() {
            None => return Err(ReachError::Invalid { url: url.to_owned() }),
            Some(url::Host::Domain(_)) => return Ok(()),
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        };
        match self {
            Reach::Public if is_private_ip(ip) => Err(ReachError::Private { url: url.to_owned() }),
            _ => Ok(()),
        }
    }
}

/// Resolves names with the system resolver and keeps only public addresses.
struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| !is_private_ip(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to loopback, private or link-local addresses, which this chain does not allow"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

fn builder(reach: Reach) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    match reach {
        Reach::Any => builder,
        Reach::Public => builder.dns_resolver(PublicResolver),
    }
}

/// A client with the connect and read timeouts and no redirects; for transfers of any length
/// (downloads, event streams) that must still not hang.
pub fn client() -> reqwest::Client {
    builder(Reach::Any).build().expect("static client settings")
}

/// [`client`], and every request must also complete within `total`.
pub fn client_with_total(total: Duration) -> reqwest::Client {
    client_reaching(Reach::Any, Some(total))
}

/// A client that connects only within `reach` (names resolve to the addresses it allows; check
/// IP-literal URLs with [`Reach::check_url`] first), with the connect and read timeouts, no
/// redirects and, when given, a `total` time for every request.
pub fn client_reaching(reach: Reach, total: Option<Duration>) -> reqwest::Client {
    let builder = builder(reach);
    match total {
        Some(total) => builder.timeout(total),
        None => builder,
    }
    .build()
    .expect("static client settings")
}

/// Reads the body of `response`, refusing one longer than `max` bytes (by its declared length
/// before reading anything, and by what arrives while reading).
pub async fn read_capped(mut response: Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge { max });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads and parses a JSON body of at most `max` bytes.
pub async fn json_capped<T: DeserializeOwned>(response: Response, max: usize) -> Result<T, BodyError> {
    Ok(serde_json::from_slice(&read_capped(response, max).await?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::time::Instant;

    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn bodies_are_capped_redirects_not_followed_and_tarpits_time_out() {
        let app = axum::Router::new()
            .route("/big", get(|| async { vec![7u8; 10_000] }))
            .route("/small", get(|| async { "[1,2,3]" }))
            .route(
                "/elsewhere",
                get(|| async { (axum::http::StatusCode::FOUND, [("location", "http://10.0.0.1/")], "") }),
            );
        let url = serve(app).await;
        let http = client();
        let big = http.get(format!("{url}/big")).send().await.unwrap();
        assert!(matches!(read_capped(big, 1_000).await, Err(BodyError::TooLarge { max: 1_000 })));
        let small = http.get(format!("{url}/small")).send().await.unwrap();
        assert_eq!(json_capped::<Vec<u8>>(small, 1_000).await.unwrap(), vec![1, 2, 3]);
        let moved = http.get(format!("{url}/elsewhere")).send().await.unwrap();
        assert_eq!(moved.status(), 302, "the redirect is returned, not followed");

        // A tarpit: accepts connections and never answers.
        let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tarpit.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = vec![];
            while let Ok((socket, _)) = tarpit.accept().await {
                held.push(socket);
            }
        });
        let t = Instant::now();
        let r = client_with_total(Duration::from_millis(300)).get(format!("http://{addr}/")).send().await;
        assert!(r.is_err() && t.elapsed() < Duration::from_secs(5), "timed out promptly");
    }

    #[tokio::test]
    async fn public_reach_never_connects_inside_the_network_whatever_the_name() {
        let url = serve(axum::Router::new().route("/health", get(|| async { "ok" }))).await;
        let port = url.rsplit(':').next().unwrap();
        // `localhost` is a DNS name the ledger's literal check cannot see through: it resolves
        // to 127.0.0.1 (and ::1) when dialled, as a name re-pointed at metadata would.
        let by_name = format!("http://localhost:{port}/health");
        let any = client_reaching(Reach::Any, Some(Duration::from_secs(5)));
        assert!(any.get(&by_name).send().await.unwrap().status().is_success(), "reachable at all");
        let public = client_reaching(Reach::Public, Some(Duration::from_secs(5)));
        let err = public.get(&by_name).send().await.expect_err("a private resolution is refused");
        assert!(format!("{err:?}").contains("private"), "{err:?}");

        for literal in [format!("{url}/health"), "http://169.254.169.254/".into(), "http://[::1]:80/".into()]
        {
            assert!(
                matches!(Reach::Public.check_url(&literal), Err(ReachError::Private { .. })),
                "{literal}"
            );
            assert!(Reach::Any.check_url(&literal).is_ok());
        }
        assert!(Reach::Public.check_url("http://203.0.113.7:7700").is_ok());
        assert!(
            Reach::Public.check_url("http://provider.example.com").is_ok(),
            "names are checked on connect"
        );
        assert!(matches!(Reach::Public.check_url("not a url"), Err(ReachError::Invalid { .. })));
        assert_eq!(Reach::for_chain(true), Reach::Any);
        assert_eq!(Reach::for_chain(false), Reach::Public);
    }
}
