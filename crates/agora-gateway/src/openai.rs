//! The OpenAI wire format: the requests the gateway accepts, the responses and stream chunks it
//! returns, and errors in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`), so
//! the official SDKs work unchanged against a node.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// An error in OpenAI's shape, with the status code the SDKs map to their exception types.
#[derive(Debug)]
pub struct OpenAiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong and how to fix it.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, `authentication_error`, …).
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<&'static str>,
    /// A machine-readable code (`invalid_api_key`, `model_not_found`, …).
    pub code: Option<&'static str>,
}

impl OpenAiError {
    /// 400: the request is malformed; `param` names the field.
    pub fn invalid(param: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    /// 401: no API key, or one this node does not know.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// 404: the model is not one the gateway serves.
    pub fn model_not_found(model: &str, served: &[&str]) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "the model {model:?} does not exist here; this gateway serves {}",
                served.join(", ")
            ),
            kind: "invalid_request_error",
            param: Some("model"),
            code: Some("model_not_found"),
        }
    }

    /// 429: the key's budget cannot cover the request.
    pub fn quota(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: message.into(),
            kind: "insufficient_quota",
            param: None,
            code: Some("insufficient_quota"),
        }
    }

    /// 503: the network could not serve the request (refused, unplaceable, timed out).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// 500: a fault in the gateway itself.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {
            "message": self.message, "type": self.kind, "param": self.param, "code": self.code,
        }})
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// Parses a JSON body, turning serde's error into a 400 that names the problem.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OpenAiError> {
    serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() { "the body is not valid JSON" } else { "invalid request" };
        OpenAiError::invalid(None, format!("{what}: {e}"))
    })
}

/// One string, or a list of them (OpenAI accepts either in several fields).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single string.
    One(String),
    /// A list of strings.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, in order.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    /// Model name.
    pub model: String,
    /// Text(s) to embed (token-id arrays are refused: the gateway embeds text).
    pub input: serde_json::Value,
    /// `float` (default) or `base64` (little-endian f32, what the SDKs ask for by default).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Output dimensions: only the model's own is possible.
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// End-user id (accepted, unused).
    #[serde(default)]
    pub user: Option<String>,
    /// Agora's options.
    #[serde(default)]
    pub agora: Option<AgoraOptions>,
}

/// One message of a chat.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// Text, or a list of content parts of which the text parts are used.
    #[serde(default)]
    pub content: serde_json::Value,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// Model name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Most new tokens (older name).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Most new tokens (newer name; wins when both are given).
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// 0 (the default here) decodes greedily; above 0 samples with the seed.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Sampling seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop string(s).
    #[serde(default)]
    pub stop: Option<OneOrMany>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Number of choices: only 1.
    #[serde(default)]
    pub n: Option<u32>,
    /// End-user id (accepted, unused).
    #[serde(default)]
    pub user: Option<String>,
    /// Agora's options.
    #[serde(default)]
    pub agora: Option<AgoraOptions>,
}

/// Token counts, as OpenAI reports them.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// Tokens of the prompt (not counted by the gateway for embeddings: 0).
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// Sum.
    pub total_tokens: u64,
}

/// What Agora adds to each response (`agora`): which mode served it, and what backs it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum AgoraInfo {
    /// A job: answered once verified and settled.
    Job {
        /// The on-chain job.
        job: u64,
        /// What the key's account paid for the verified work, base units.
        paid: String,
        /// Chance that a provider cheating on 5% of items would have been caught.
        detection_probability: f64,
        /// Energy estimate, kWh.
        energy_kwh: f64,
    },
    /// A warm serving session: answered at once, with the provider's signed receipt (checked
    /// by the gateway, verifiable offline with `agora session verify`); the provider commits it
    /// on chain and is audited and paid after its window.
    Session {
        /// The on-chain session.
        session: u64,
        /// The provider that served it.
        provider: agora_core::AccountId,
        /// Its receipt.
        receipt: Box<agora_core::session::SignedReceipt>,
    },
}

/// Agora-specific request options (`"agora": {...}` in the body; the SDKs pass it as
/// `extra_body`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgoraOptions {
    /// `job` to run the request as a verified job even when sessions are configured;
    /// `session` (the default when configured) to serve it from a warm session.
    #[serde(default)]
    pub mode: Option<String>,
}

impl AgoraOptions {
    /// Whether the request asks for job mode; an unknown mode is a 400.
    pub fn wants_job(opts: &Option<Self>) -> Result<bool, OpenAiError> {
        match opts.as_ref().and_then(|o| o.mode.as_deref()) {
            None | Some("session") => Ok(false),
            Some("job") => Ok(true),
            Some(other) => Err(OpenAiError::invalid(
                Some("agora"),
                format!("agora.mode is job or session, not {other:?}"),
            )),
        }
    }
}

/// Seconds since the Unix epoch (OpenAI's `created`).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_openai_shape() {
        let e = OpenAiError::unauthorized("no key");
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let b = e.body();
        assert_eq!(b["error"]["message"], "no key");
        assert_eq!(b["error"]["code"], "invalid_api_key");
        assert!(b["error"]["param"].is_null());
        let m = OpenAiError::model_not_found("gpt-9", &["a", "b"]);
        assert_eq!(m.status, StatusCode::NOT_FOUND);
        assert!(m.message.contains("a, b"));
    }

    #[test]
    fn bodies_are_parsed_with_useful_errors() {
        let e = parse_body::<ChatRequest>(b"{not json").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse_body::<ChatRequest>(br#"{"model":"m"}"#).unwrap_err();
        assert!(e.message.contains("messages"), "{}", e.message);
        let r: ChatRequest =
            parse_body(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":"\n"}"#).unwrap();
        assert_eq!(r.stop.unwrap().into_vec(), vec!["\n"]);
    }
}
