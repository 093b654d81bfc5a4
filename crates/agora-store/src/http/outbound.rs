//! What every outbound HTTP request of an Agora node is bounded by.
//!
//! Nodes talk to parties they do not trust: providers' self-registered endpoints, requesters'
//! `sources`, other nodes. Each of them could be a tarpit that accepts and never answers, a
//! redirect to somewhere else, or an endless body. So every client here has a connect timeout
//! and a read timeout (the longest silence between bytes), never follows redirects, and reads
//! bodies only up to a cap the caller names.

use reqwest::Response;
use serde::de::DeserializeOwned;
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

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
}

/// A client with the connect and read timeouts and no redirects; for transfers of any length
/// (downloads, event streams) that must still not hang.
pub fn client() -> reqwest::Client {
    builder().build().expect("static client settings")
}

/// [`client`], and every request must also complete within `total`.
pub fn client_with_total(total: Duration) -> reqwest::Client {
    builder().timeout(total).build().expect("static client settings")
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
}
