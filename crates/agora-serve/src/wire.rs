//! What travels between a session's client and its provider.
//!
//! A request is a JSON [`ServeRequest`]; the session's client key signs the hash of its exact
//! bytes ([`request_hash`], [`client_message`]), so a provider can show on chain that a
//! receipted request was the client's. The signature travels in the [`SIGNATURE_HEADER`]. The provider
//! serves only requests that verify, each at most once, and answers with a receipt over the
//! request's hash ([`request_hash`]) and the output's ([`chat_output_hash`],
//! [`embed_output_hash`]): the client checks both before it trusts the answer.

use crate::fingerprint::Fingerprint;
use agora_core::codec::Encode;
use agora_core::session::{SessionId, SignedReceipt, Usage, client_message};
use agora_core::{Hash, SecretKey, Signature};
use agora_runtime::items::generation::{Generation, StopReason};
use agora_runtime::items::vector::encode_vector;
use serde::{Deserialize, Serialize};

/// Header carrying the client key's signature over the request body.
pub const SIGNATURE_HEADER: &str = "x-agora-signature";
/// Largest request body a provider reads.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Most tokens one chat request may ask for.
pub const MAX_COMPLETION_TOKENS: u32 = 2048;
/// Most stop strings, and the longest one (bytes).
pub const MAX_STOPS: usize = 4;
const MAX_STOP_LEN: usize = 64;
/// Most texts in one embeddings request (OpenAI's limit).
pub const MAX_EMBED_TEXTS: usize = 2048;

/// One request of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServeRequest {
    /// The session it is paid from.
    pub session: SessionId,
    /// Makes otherwise identical requests distinct: a provider serves each request once.
    pub nonce: u64,
    /// What is asked.
    pub body: ServeBody,
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServeBody {
    /// A completion of `prompt` (the user turn; the model's chat template is applied).
    Chat {
        /// The prompt.
        prompt: String,
        /// Most new tokens.
        max_tokens: u32,
        /// Sampling temperature × 1000 (0: greedy).
        temperature_milli: u32,
        /// Sampling seed (the receipt names it, so a sampled answer can be replayed).
        seed: u64,
        /// Stop strings.
        #[serde(default)]
        stop: Vec<String>,
    },
    /// Embeddings of `inputs`.
    Embed {
        /// The texts.
        inputs: Vec<String>,
    },
}

impl ServeBody {
    /// Checks the bounds every provider enforces, naming the one broken.
    pub fn check(&self) -> Result<(), String> {
        match self {
            ServeBody::Chat { prompt, max_tokens, temperature_milli, stop, .. } => {
                if prompt.trim().is_empty() {
                    return Err("the prompt is empty".into());
                }
                if !(1..=MAX_COMPLETION_TOKENS).contains(max_tokens) {
                    return Err(format!("max_tokens must be 1..={MAX_COMPLETION_TOKENS}, got {max_tokens}"));
                }
                if *temperature_milli > 2_000 {
                    return Err(format!(
                        "temperature must be 0..=2, got {}",
                        *temperature_milli as f64 / 1000.0
                    ));
                }
                if stop.len() > MAX_STOPS || stop.iter().any(|s| s.is_empty() || s.len() > MAX_STOP_LEN) {
                    return Err(format!("at most {MAX_STOPS} stop strings of 1..={MAX_STOP_LEN} bytes"));
                }
                Ok(())
            }
            ServeBody::Embed { inputs } => {
                if inputs.is_empty() || inputs.len() > MAX_EMBED_TEXTS {
                    return Err(format!(
                        "inputs must hold 1..={MAX_EMBED_TEXTS} texts, got {}",
                        inputs.len()
                    ));
                }
                match inputs.iter().position(|t| t.trim().is_empty()) {
                    Some(i) => Err(format!("input {i} is empty")),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The hash a receipt names for a request body `bytes` on `chain_id`.
pub fn request_hash(chain_id: &str, bytes: &[u8]) -> Hash {
    Hash::tagged("agora/serve-request", &[chain_id.as_bytes(), bytes])
}

/// A request as sent: its exact bytes and the client key's signature over them.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// The JSON body.
    pub bytes: Vec<u8>,
    /// The client key's signature over [`client_message`] of the hash.
    pub signature: Signature,
    /// [`request_hash`] of the body.
    pub hash: Hash,
}

impl SignedRequest {
    /// Encodes and signs `request` with the session's client `key`.
    pub fn new(chain_id: &str, request: &ServeRequest, key: &SecretKey) -> Self {
        let bytes = serde_json::to_vec(request).expect("requests serialize");
        let hash = request_hash(chain_id, &bytes);
        Self { signature: key.sign(&client_message(&hash)), hash, bytes }
    }
}

/// The hash a receipt names for a chat completion: over the whole generation (text, token
/// ids, why it stopped), so the tokens an auditor replays are the ones the client got.
pub fn chat_output_hash(g: &Generation) -> Hash {
    Hash::tagged("agora/serve-output/chat", &[&g.encode()])
}

/// The hash a receipt names for embeddings: over each vector's item encoding, in order.
pub fn embed_output_hash(vectors: &[Vec<f32>]) -> Hash {
    let items: Vec<Vec<u8>> = vectors.iter().map(|v| encode_vector(v)).collect();
    let mut bytes = vec![];
    agora_core::codec::encode_seq(items.iter(), &mut bytes);
    Hash::tagged("agora/serve-output/embed", &[&bytes])
}

/// Why a completion stopped, as the wire names it.
pub fn stop_name(s: StopReason) -> &'static str {
    match s {
        StopReason::Eos => "eos",
        StopReason::StopString => "stop",
        StopReason::MaxTokens => "length",
    }
}

/// The [`StopReason`] a wire name stands for.
pub fn parse_stop(s: &str) -> Option<StopReason> {
    match s {
        "eos" => Some(StopReason::Eos),
        "stop" => Some(StopReason::StopString),
        "length" => Some(StopReason::MaxTokens),
        _ => None,
    }
}

/// An event of a streamed chat completion (SSE `event:` name and JSON `data:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ChatEvent {
    /// More text, as it is generated.
    Token {
        /// The new text.
        text: String,
    },
    /// The completion, with its receipt: the last event.
    Done(Box<ChatDone>),
    /// The provider failed; nothing is charged for this request.
    Error {
        /// Why.
        message: String,
    },
}

/// The end of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatDone {
    /// The whole text (the streamed pieces concatenated).
    pub text: String,
    /// The token ids generated.
    pub tokens: Vec<u32>,
    /// Why it stopped ([`stop_name`]).
    pub stop: String,
    /// The computation's fingerprints (their hash is in the receipt).
    pub fingerprints: Vec<Fingerprint>,
    /// The provider's receipt.
    pub receipt: SignedReceipt,
}

impl ChatDone {
    /// The generation it reports, if its stop reason is known.
    pub fn generation(&self) -> Option<Generation> {
        Some(Generation {
            text: self.text.clone(),
            tokens: self.tokens.clone(),
            stop: parse_stop(&self.stop)?,
        })
    }

    /// What the receipt says this request used.
    pub fn usage(&self) -> Usage {
        self.receipt.receipt.usage
    }
}

/// The answer to an embeddings request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedResponse {
    /// One vector per input, in order.
    pub embeddings: Vec<Vec<f32>>,
    /// The provider's receipt.
    pub receipt: SignedReceipt,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(max_tokens: u32) -> ServeBody {
        ServeBody::Chat { prompt: "hi".into(), max_tokens, temperature_milli: 0, seed: 0, stop: vec![] }
    }

    #[test]
    fn bodies_are_bounded() {
        assert!(chat(16).check().is_ok());
        assert!(chat(0).check().is_err() && chat(MAX_COMPLETION_TOKENS + 1).check().is_err());
        let stops = ServeBody::Chat {
            prompt: "hi".into(),
            max_tokens: 4,
            temperature_milli: 0,
            seed: 0,
            stop: vec!["x".repeat(65)],
        };
        assert!(stops.check().is_err());
        assert!(ServeBody::Embed { inputs: vec![] }.check().is_err());
        assert!(
            ServeBody::Embed { inputs: vec!["a".into(), " ".into()] }
                .check()
                .unwrap_err()
                .contains("input 1")
        );
    }

    #[test]
    fn a_signed_request_is_bound_to_its_bytes_and_chain() {
        let key = SecretKey::from_seed([4; 32]);
        let r = SignedRequest::new("c", &ServeRequest { session: 1, nonce: 2, body: chat(3) }, &key);
        assert!(key.public().verify(&client_message(&request_hash("c", &r.bytes)), &r.signature).is_ok());
        assert!(key.public().verify(&client_message(&request_hash("d", &r.bytes)), &r.signature).is_err());
        assert_eq!(r.hash, request_hash("c", &r.bytes));
        assert_ne!(r.hash, request_hash("d", &r.bytes));
        let back: ServeRequest = serde_json::from_slice(&r.bytes).unwrap();
        assert_eq!(back.nonce, 2);
    }

    #[test]
    fn output_hashes_cover_tokens_and_every_vector() {
        let g = Generation { text: "a".into(), tokens: vec![1], stop: StopReason::Eos };
        let other = Generation { tokens: vec![2], ..g.clone() };
        assert_ne!(chat_output_hash(&g), chat_output_hash(&other));
        assert_ne!(embed_output_hash(&[vec![1.0]]), embed_output_hash(&[vec![1.0], vec![1.0]]));
        for s in [StopReason::Eos, StopReason::StopString, StopReason::MaxTokens] {
            assert_eq!(parse_stop(stop_name(s)), Some(s));
        }
    }
}
