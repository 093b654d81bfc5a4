//! Signed store requests: writes (uploads, pins) and listings name the account making them.
//!
//! A client signs `agora/store/v1 ‖ METHOD ‖ 0 ‖ PATH?QUERY ‖ 0 ‖ expiry (u64 LE)` with its
//! account key and sends the account, the expiry (unix ms) and the signature as headers. The
//! node checks the signature, that the expiry is in the future and at most
//! [`MAX_VALIDITY_MS`] away (so a captured header is soon useless), and then asks its
//! [`WritePolicy`] whether that account may store that many bytes.

use agora_core::{PublicKey, SecretKey, Signature};
use axum::http::HeaderMap;
use std::sync::Arc;

/// Header: the account (hex public key) signing the request.
pub const ACCOUNT_HEADER: &str = "agora-account";
/// Header: when the signature stops being valid, unix ms.
pub const EXPIRES_HEADER: &str = "agora-expires";
/// Header: the signature (hex).
pub const SIGNATURE_HEADER: &str = "agora-signature";
/// Longest a signed request stays valid.
pub const MAX_VALIDITY_MS: u64 = 5 * 60_000;

const DOMAIN: &[u8] = b"agora/store/v1";

fn message(method: &str, path_and_query: &str, expires_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + method.len() + path_and_query.len() + 10);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(method.as_bytes());
    m.push(0);
    m.extend_from_slice(path_and_query.as_bytes());
    m.push(0);
    m.extend_from_slice(&expires_ms.to_le_bytes());
    m
}

/// The headers that sign `method path_and_query` as `key`'s account, valid for a minute.
pub fn sign(key: &SecretKey, method: &str, path_and_query: &str, now_ms: u64) -> [(&'static str, String); 3] {
    let expires = now_ms + 60_000;
    let signature = key.sign(&message(method, path_and_query, expires));
    [
        (ACCOUNT_HEADER, key.public().to_string()),
        (EXPIRES_HEADER, expires.to_string()),
        (SIGNATURE_HEADER, signature.to_string()),
    ]
}

/// Why a request is not accepted as signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No signature headers.
    #[error(
        "this request must be signed: send {ACCOUNT_HEADER} (your account), {EXPIRES_HEADER} (unix ms, within 5 minutes) and {SIGNATURE_HEADER} (your signature of agora/store/v1 METHOD 0 PATH 0 EXPIRES); `agora store put` and the requester sign for you"
    )]
    Unsigned,
    /// Headers present but unusable.
    #[error("the request's signature headers are malformed: {0}")]
    Malformed(&'static str),
    /// Expired, or valid for too long.
    #[error("the signature has expired or is valid for more than 5 minutes; sign again with a fresh expiry")]
    Expiry,
    /// The signature does not verify.
    #[error("the signature does not match the account and request")]
    BadSignature,
}

/// Checks the signature headers of `method path_and_query` at `now_ms`; returns the account.
pub fn verify(
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
    now_ms: u64,
) -> Result<PublicKey, AuthError> {
    let get =
        |name: &str| headers.get(name).map(|v| v.to_str().map_err(|_| AuthError::Malformed("not ASCII")));
    let (Some(account), Some(expires), Some(signature)) =
        (get(ACCOUNT_HEADER), get(EXPIRES_HEADER), get(SIGNATURE_HEADER))
    else {
        return Err(AuthError::Unsigned);
    };
    let account: PublicKey =
        account?.parse().map_err(|_| AuthError::Malformed("account is not a public key"))?;
    let expires: u64 = expires?.parse().map_err(|_| AuthError::Malformed("expiry is not a number"))?;
    let signature: Signature =
        signature?.parse().map_err(|_| AuthError::Malformed("signature is not hex"))?;
    if expires <= now_ms || expires - now_ms > MAX_VALIDITY_MS {
        return Err(AuthError::Expiry);
    }
    account
        .verify(&message(method, path_and_query, expires), &signature)
        .map_err(|_| AuthError::BadSignature)?;
    Ok(account)
}

/// Who may write to a store, and how much: the node decides from chain state (a funded account,
/// a registered provider) and keeps per-account quotas.
pub trait WritePolicy: Send + Sync + 'static {
    /// Whether `account` may now store `bytes` more (0 for a pin); `Err` says why not and
    /// what to do. Admitted bytes count against the account's quota.
    fn admit(&self, account: &PublicKey, bytes: u64) -> Result<(), String>;

    /// Whether `account` may list the store (every blob it holds).
    fn may_list(&self, account: &PublicKey) -> bool;
}

/// Who may write to a store served over HTTP.
#[derive(Clone)]
pub enum Writers {
    /// Anyone, unsigned: only for a store on a private network, tools and tests.
    Anyone,
    /// Signed requests from accounts the policy admits.
    Signed(Arc<dyn WritePolicy>),
}

impl std::fmt::Debug for Writers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Writers::Anyone => "Anyone",
            Writers::Signed(_) => "Signed",
        })
    }
}

/// Any validly signed account, without quotas (the default policy: nothing anonymous).
pub struct AnyAccount;

impl WritePolicy for AnyAccount {
    fn admit(&self, _: &PublicKey, _: u64) -> Result<(), String> {
        Ok(())
    }

    fn may_list(&self, _: &PublicKey) -> bool {
        false
    }
}

/// The current unix time, ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn signatures_bind_account_method_path_and_time() {
        let key = SecretKey::from_label("uploader");
        let now = 1_000_000;
        let h = headers(&sign(&key, "PUT", "/blobs?pin=true", now));
        assert_eq!(verify(&h, "PUT", "/blobs?pin=true", now), Ok(key.public()));
        assert_eq!(verify(&h, "PUT", "/blobs?pin=false", now), Err(AuthError::BadSignature));
        assert_eq!(verify(&h, "POST", "/blobs?pin=true", now), Err(AuthError::BadSignature));
        assert_eq!(verify(&h, "PUT", "/blobs?pin=true", now + 61_000), Err(AuthError::Expiry));
        assert_eq!(verify(&HeaderMap::new(), "PUT", "/blobs", now), Err(AuthError::Unsigned));
        let mut forged = sign(&key, "PUT", "/blobs", now);
        forged[0].1 = SecretKey::from_label("someone else").public().to_string();
        assert_eq!(verify(&headers(&forged), "PUT", "/blobs", now), Err(AuthError::BadSignature));
        let far = headers(&sign(&key, "PUT", "/blobs", now + MAX_VALIDITY_MS));
        assert_eq!(verify(&far, "PUT", "/blobs", now), Err(AuthError::Expiry), "valid for too long");
    }
}
