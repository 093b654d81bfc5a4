//! The client side of a session (a gateway, or any holder of the session's client key):
//! sends signed requests, reads the streamed answer, and checks every receipt before the
//! answer is trusted or passed on.
//!
//! Every call has a connect timeout and an idle timeout between events, and every response is
//! bounded: a provider cannot hold a client or fill its memory.

use crate::fingerprint;
use crate::wire::{self, ChatDone, ChatEvent, EmbedResponse, SIGNATURE_HEADER, SignedRequest};
use agora_core::session::{ServeReceipt, SessionId, SignedReceipt};
use agora_core::{Hash, PublicKey};
use futures::{Stream, StreamExt as _};
use std::time::Duration;

/// Longest wait to connect to a provider.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence between two events of a stream (the provider sends keep-alives).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest SSE line or JSON response accepted.
const MAX_LINE: usize = 16 << 20;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The provider could not be reached or the connection broke.
    #[error("cannot reach the provider: {0}")]
    Transport(String),
    /// The provider refused the request.
    #[error("the provider refused the request ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its reason.
        message: String,
    },
    /// The provider answered something other than the protocol.
    #[error("the provider broke the protocol: {0}")]
    Protocol(String),
    /// The answer does not match its receipt or the request.
    #[error("the answer does not check out: {0}")]
    Mismatch(String),
}

/// What the client expects of a receipt.
pub struct Expect<'a> {
    /// Chain id.
    pub chain_id: &'a str,
    /// The provider asked.
    pub provider: &'a PublicKey,
    /// The request sent.
    pub request: &'a SignedRequest,
    /// Its session.
    pub session: SessionId,
}

impl Expect<'_> {
    fn receipt(&self, r: &SignedReceipt, output: Hash) -> Result<(), ClientError> {
        let bad = |m: &str| Err(ClientError::Mismatch(m.into()));
        if r.provider != *self.provider || r.verify(self.chain_id).is_err() {
            return bad("the receipt is not signed by the provider asked");
        }
        if r.receipt.session != self.session || r.receipt.request != self.request.hash {
            return bad("the receipt is for another request");
        }
        if r.receipt.output != output {
            return bad("the receipt names another output than the one sent");
        }
        if r.receipt.total.checked_add(&agora_core::session::Usage::default()).is_none()
            || r.receipt.total.since(&r.receipt.usage).is_none()
        {
            return bad("the receipt's running total is below its own usage");
        }
        Ok(())
    }
}

/// Checks a streamed completion: the receipt is the provider's, for this request, over exactly
/// these tokens, text and fingerprints, counting the tokens sent; `streamed` is the text the
/// pieces added up to.
pub fn check_chat(done: &ChatDone, expect: &Expect<'_>, streamed: &str) -> Result<(), ClientError> {
    let g = done
        .generation()
        .ok_or_else(|| ClientError::Mismatch(format!("unknown stop reason {:?}", done.stop)))?;
    expect.receipt(&done.receipt, wire::chat_output_hash(&g))?;
    let r = &done.receipt.receipt;
    if r.fingerprints != fingerprint::hash(&done.fingerprints) {
        return Err(ClientError::Mismatch("the fingerprints are not the ones receipted".into()));
    }
    if r.usage.completion_tokens != g.tokens.len() as u64 || r.usage.items != 0 {
        return Err(ClientError::Mismatch("the receipt counts other tokens than were sent".into()));
    }
    if streamed != g.text {
        return Err(ClientError::Mismatch("the streamed pieces do not add up to the receipted text".into()));
    }
    Ok(())
}

/// Checks an embeddings answer: one vector per input, receipted by the provider for this
/// request over exactly these vectors.
pub fn check_embed(resp: &EmbedResponse, expect: &Expect<'_>, inputs: usize) -> Result<(), ClientError> {
    expect.receipt(&resp.receipt, wire::embed_output_hash(&resp.embeddings))?;
    if resp.embeddings.len() != inputs || resp.receipt.receipt.usage.items != inputs as u64 {
        return Err(ClientError::Mismatch(format!("{inputs} inputs, {} vectors", resp.embeddings.len())));
    }
    Ok(())
}

/// Calls providers' serving endpoints.
#[derive(Clone)]
pub struct ServeClient {
    http: reqwest::Client,
}

impl Default for ServeClient {
    fn default() -> Self {
        Self::new()
    }
}

fn endpoint(base: &str, session: SessionId, what: &str) -> String {
    format!("{}/serve/v1/sessions/{session}/{what}", base.trim_end_matches('/'))
}

async fn refused(resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body[..body.len().min(64 << 10)])
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    ClientError::Refused { status, message }
}

impl ServeClient {
    /// A client with the timeouts above.
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(IDLE_TIMEOUT)
            .build()
            .expect("a client with timeouts builds");
        Self { http }
    }

    async fn post(&self, url: String, req: &SignedRequest) -> Result<reqwest::Response, ClientError> {
        let resp = self
            .http
            .post(url)
            .header(SIGNATURE_HEADER, req.signature.to_string())
            .header("content-type", "application/json")
            .body(req.bytes.clone())
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if resp.status().is_success() { Ok(resp) } else { Err(refused(resp).await) }
    }

    /// Sends a chat request to the provider at `base` and returns its events as they arrive
    /// (the stream ends after `done` or `error`).
    pub async fn chat(
        &self,
        base: &str,
        session: SessionId,
        req: &SignedRequest,
    ) -> Result<impl Stream<Item = Result<ChatEvent, ClientError>> + use<>, ClientError> {
        let resp = self.post(endpoint(base, session, "chat"), req).await?;
        Ok(sse_events(resp.bytes_stream()))
    }

    /// Sends an embeddings request to the provider at `base`.
    pub async fn embed(
        &self,
        base: &str,
        session: SessionId,
        req: &SignedRequest,
    ) -> Result<EmbedResponse, ClientError> {
        let resp = self.post(endpoint(base, session, "embeddings"), req).await?;
        let body = bounded_body(resp).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// The provider's receipts `from..from + count` of `session`.
    pub async fn receipts(
        &self,
        base: &str,
        session: SessionId,
        from: u64,
        count: u64,
    ) -> Result<Vec<ServeReceipt>, ClientError> {
        let url = format!("{}?from={from}&count={count}", endpoint(base, session, "receipts"));
        let resp = self.http.get(url).send().await.map_err(|e| ClientError::Transport(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(refused(resp).await);
        }
        let body = bounded_body(resp).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

async fn bounded_body(resp: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    let mut body = vec![];
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        body.extend_from_slice(&chunk.map_err(|e| ClientError::Transport(e.to_string()))?);
        if body.len() > MAX_LINE {
            return Err(ClientError::Protocol(format!("the response exceeds {MAX_LINE} bytes")));
        }
    }
    Ok(body)
}

/// Parses server-sent events from a byte stream into chat events (only `data:` lines matter;
/// comments and keep-alives are skipped).
fn sse_events(
    bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
) -> impl Stream<Item = Result<ChatEvent, ClientError>> {
    let state = (Box::pin(bytes), Vec::<u8>::new(), String::new(), false);
    futures::stream::unfold(state, |(mut bytes, mut buf, mut data, done)| async move {
        if done {
            return None;
        }
        loop {
            if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
                if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                } else if line.is_empty() && !data.is_empty() {
                    let parsed = serde_json::from_str::<ChatEvent>(&std::mem::take(&mut data))
                        .map_err(|e| ClientError::Protocol(format!("bad event: {e}")));
                    let last = !matches!(parsed, Ok(ChatEvent::Token { .. }));
                    return Some((parsed, (bytes, buf, data, last)));
                }
                continue;
            }
            if buf.len() + data.len() > MAX_LINE {
                let e = ClientError::Protocol(format!("an event exceeds {MAX_LINE} bytes"));
                return Some((Err(e), (bytes, buf, data, true)));
            }
            match bytes.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    return Some((Err(ClientError::Transport(e.to_string())), (bytes, buf, data, true)));
                }
                None => {
                    let e = ClientError::Transport("the stream ended before the completion".into());
                    return Some((Err(e), (bytes, buf, data, true)));
                }
            }
        }
    })
}
