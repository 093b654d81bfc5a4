//! Serving sessions: the terms a requester opens a session on, the receipt a provider signs
//! for every response it serves, and the window commitment it posts on chain.
//!
//! A receipt is the client's proof of what the provider answered. Receipts of one provider in
//! one session are numbered (`seq` 0, 1, 2, …) and carry the running total of usage, so the
//! provider's own signature binds both the order of its responses and what it may charge for
//! them. A window commitment covers a contiguous run of receipts with a Merkle root over their
//! leaves ([`ServeReceipt::leaf`]) and the running total at its last receipt. A client that
//! holds a signed receipt the provider left out of its windows, or committed differently, can
//! prove it on chain.

use crate::amount::Amount;
use crate::class::ResourceClass;
use crate::codec::Encode;
use crate::crypto::{PublicKey, SecretKey, Signature, SignatureError};
use crate::hash::Hash;
use crate::{codec_struct, codec_unit_enum};
use serde::{Deserialize, Serialize};

/// Identifier of a serving session, assigned sequentially by the ledger.
pub type SessionId = u64;
/// Identifier of a committed serving window, assigned sequentially by the ledger.
pub type WindowId = u64;

/// Most providers one session may span.
pub const MAX_SESSION_PROVIDERS: u8 = 8;
/// Most receipts one window may cover.
pub const MAX_WINDOW_RECEIPTS: u32 = 1 << 20;

/// What a session serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServeKind {
    /// Chat completions, priced per prompt and completion token.
    Chat,
    /// Embeddings, priced per input item.
    Embed,
}
codec_unit_enum!(ServeKind { Chat, Embed });

/// Prices of serving. A requester's session states what it pays; a provider's profile states
/// the least it accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeRates {
    /// Per 1,000 prompt tokens.
    pub prompt_per_1k: Amount,
    /// Per 1,000 completion tokens.
    pub completion_per_1k: Amount,
    /// Per embedded item.
    pub per_item: Amount,
}
codec_struct!(ServeRates { prompt_per_1k, completion_per_1k, per_item });

impl ServeRates {
    /// Whether every price is at least the corresponding price of `floor`.
    pub fn covers(&self, floor: &ServeRates) -> bool {
        self.prompt_per_1k >= floor.prompt_per_1k
            && self.completion_per_1k >= floor.completion_per_1k
            && self.per_item >= floor.per_item
    }

    /// What `usage` costs at these rates: tokens are charged per 1,000, rounded down over the
    /// whole amount (never per request); `None` on overflow.
    pub fn charge(&self, usage: &Usage) -> Option<Amount> {
        let tokens = |rate: Amount, n: u64| rate.mul_div(u128::from(n), 1000);
        tokens(self.prompt_per_1k, usage.prompt_tokens)?
            .checked_add(tokens(self.completion_per_1k, usage.completion_tokens)?)?
            .checked_add(self.per_item.checked_mul(u128::from(usage.items))?)
    }
}

/// Work served, as the model's tokenizer counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens read.
    pub prompt_tokens: u64,
    /// Completion tokens generated.
    pub completion_tokens: u64,
    /// Items embedded.
    pub items: u64,
}
codec_struct!(Usage { prompt_tokens, completion_tokens, items });

impl Usage {
    /// The sum of two usages; `None` on overflow.
    pub fn checked_add(&self, other: &Usage) -> Option<Usage> {
        Some(Usage {
            prompt_tokens: self.prompt_tokens.checked_add(other.prompt_tokens)?,
            completion_tokens: self.completion_tokens.checked_add(other.completion_tokens)?,
            items: self.items.checked_add(other.items)?,
        })
    }

    /// What `self` adds to an earlier running total `before`; `None` if any count went down.
    pub fn since(&self, before: &Usage) -> Option<Usage> {
        Some(Usage {
            prompt_tokens: self.prompt_tokens.checked_sub(before.prompt_tokens)?,
            completion_tokens: self.completion_tokens.checked_sub(before.completion_tokens)?,
            items: self.items.checked_sub(before.items)?,
        })
    }
}

/// The terms a requester opens a serving session on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTerms {
    /// Content hash of the model served.
    pub model: Hash,
    /// What is served.
    pub kind: ServeKind,
    /// Class of the providers.
    pub class: ResourceClass,
    /// What the requester pays.
    pub rates: ServeRates,
    /// Funds locked for the session; windows are paid from it.
    pub escrow: Amount,
    /// How long the session serves after it opens, ms.
    pub duration_ms: u64,
    /// Providers wanted (capacity and failover), 1 to [`MAX_SESSION_PROVIDERS`].
    pub providers: u8,
    /// Target time to first token, ms (0: none). Informational for providers and gateways.
    pub ttft_ms: u32,
    /// The key that signs the session's requests (the requester's own, or one it made for
    /// the session): providers serve requests it signed and nothing else.
    pub client: PublicKey,
    /// Content-store URLs that hold the model (hints, as a job manifest's).
    #[serde(default)]
    pub sources: Vec<String>,
}
codec_struct!(SessionTerms {
    model,
    kind,
    class,
    rates,
    escrow,
    duration_ms,
    providers,
    ttft_ms,
    client,
    sources: vec(crate::manifest::MAX_SOURCES)
});

impl SessionTerms {
    /// Checks what does not depend on chain state.
    pub fn validate(&self) -> Result<(), String> {
        if self.providers == 0 || self.providers > MAX_SESSION_PROVIDERS {
            return Err(format!(
                "a session spans 1 to {MAX_SESSION_PROVIDERS} providers, not {}",
                self.providers
            ));
        }
        if self.escrow.0 < u128::from(self.providers) {
            return Err("a session needs escrow to pay its providers: at least one unit each".into());
        }
        let priced = match self.kind {
            ServeKind::Chat => {
                !(self.rates.prompt_per_1k.is_zero() && self.rates.completion_per_1k.is_zero())
            }
            ServeKind::Embed => !self.rates.per_item.is_zero(),
        };
        if !priced {
            return Err(format!("a {:?} session must price what it serves", self.kind).to_lowercase());
        }
        if self.model == Hash::ZERO {
            return Err("a session names its model by content hash".into());
        }
        crate::manifest::check_sources(&self.sources)
    }

    /// The most one provider of the session can be paid: its share of the escrow, rounded
    /// down so the shares never add up to more than the escrow (the value its collateral must
    /// deter cheating on).
    pub fn value_per_provider(&self) -> Amount {
        Amount(self.escrow.0 / u128::from(self.providers.max(1)))
    }
}

const RECEIPT_DOMAIN: &str = "agora/serve-receipt/v1";

/// The bytes a session's client key signs for a request whose hash (as receipts name it) is
/// `request`: anyone holding the hash can check the signature, so a provider proves on chain
/// that a receipted request was its client's.
pub fn client_message(request: &Hash) -> Vec<u8> {
    [b"agora/serve-request/v1".as_slice(), &request.0].concat()
}

/// What a provider signs for one response it served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeReceipt {
    /// Session.
    pub session: SessionId,
    /// Position among this provider's receipts in the session (0, 1, 2, …).
    pub seq: u64,
    /// Hash of the request as the client sent it.
    pub request: Hash,
    /// Hash of the output (the completion tokens, or the embedding bytes).
    pub output: Hash,
    /// What this response used.
    pub usage: Usage,
    /// Running total of this provider's usage in the session, including this response.
    pub total: Usage,
    /// Hash of the computation's fingerprints (top-k of the last hidden state every N tokens).
    pub fingerprints: Hash,
    /// Unix ms of the first output token.
    pub first_token_ms: u64,
    /// Unix ms of the last output token.
    pub last_token_ms: u64,
}
codec_struct!(ServeReceipt {
    session,
    seq,
    request,
    output,
    usage,
    total,
    fingerprints,
    first_token_ms,
    last_token_ms
});

impl ServeReceipt {
    /// The exact bytes a provider signs: domain tag, chain id, then the encoding.
    pub fn signing_message(&self, chain_id: &str) -> Vec<u8> {
        let mut msg = RECEIPT_DOMAIN.as_bytes().to_vec();
        chain_id.encode_to(&mut msg);
        self.encode_to(&mut msg);
        msg
    }

    /// Signs for `chain_id` as `key`'s provider.
    pub fn sign(self, chain_id: &str, key: &SecretKey) -> SignedReceipt {
        let signature = key.sign(&self.signing_message(chain_id));
        SignedReceipt { receipt: self, provider: key.public(), signature }
    }

    /// The receipt's leaf in its window's Merkle tree.
    pub fn leaf(&self) -> Hash {
        crate::merkle::leaf_hash(&self.encode())
    }
}

/// A receipt with its provider's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: ServeReceipt,
    /// The provider that served it.
    pub provider: PublicKey,
    /// Its signature over [`ServeReceipt::signing_message`].
    pub signature: Signature,
}
codec_struct!(SignedReceipt { receipt, provider, signature });

impl SignedReceipt {
    /// Checks the provider's signature for `chain_id`.
    pub fn verify(&self, chain_id: &str) -> Result<(), SignatureError> {
        self.provider.verify(&self.receipt.signing_message(chain_id), &self.signature)
    }
}

/// A provider's proof that a receipt it committed answers a request its session's client
/// signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestProof {
    /// The committed receipt.
    pub receipt: ServeReceipt,
    /// The client key's signature over [`client_message`] of its request.
    pub client_signature: Signature,
}
codec_struct!(RequestProof { receipt, client_signature });

/// A provider's commitment to a window of its receipts in a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCommitment {
    /// Session.
    pub session: SessionId,
    /// `seq` of the window's first receipt: the provider's windows cover its receipts in
    /// order, without gaps.
    pub first_seq: u64,
    /// Receipts covered.
    pub receipts: u32,
    /// Merkle root over the receipts' leaves, in `seq` order.
    pub root: Hash,
    /// The running usage total of the window's last receipt.
    pub total: Usage,
}
codec_struct!(WindowCommitment { session, first_seq, receipts, root, total });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Decode;
    use crate::merkle::MerkleTree;

    fn terms() -> SessionTerms {
        SessionTerms {
            model: Hash::of(b"model"),
            kind: ServeKind::Chat,
            class: "cpu.x86_64".parse().unwrap(),
            rates: ServeRates {
                prompt_per_1k: Amount(10),
                completion_per_1k: Amount(30),
                per_item: Amount::ZERO,
            },
            escrow: Amount(1_000),
            duration_ms: 60_000,
            providers: 2,
            ttft_ms: 100,
            client: SecretKey::from_seed([1; 32]).public(),
            sources: vec!["http://127.0.0.1:7700".into()],
        }
    }

    #[test]
    fn terms_are_checked() {
        assert!(terms().validate().is_ok());
        assert!(SessionTerms { providers: 0, ..terms() }.validate().is_err());
        assert!(SessionTerms { providers: MAX_SESSION_PROVIDERS + 1, ..terms() }.validate().is_err());
        assert!(SessionTerms { escrow: Amount::ZERO, ..terms() }.validate().is_err());
        assert!(SessionTerms { model: Hash::ZERO, ..terms() }.validate().is_err());
        assert!(SessionTerms { kind: ServeKind::Embed, ..terms() }.validate().unwrap_err().contains("price"));
        assert!(SessionTerms { sources: vec!["file:///etc".into()], ..terms() }.validate().is_err());
        assert_eq!(terms().value_per_provider(), Amount(500));
        assert_eq!(SessionTerms { escrow: Amount(1_001), ..terms() }.value_per_provider(), Amount(500));
        assert!(SessionTerms { escrow: Amount(1), ..terms() }.validate().is_err(), "less than a unit each");
    }

    #[test]
    fn charges_round_down_over_the_whole_usage_and_never_overflow() {
        let r = terms().rates;
        let u = Usage { prompt_tokens: 1_500, completion_tokens: 999, items: 0 };
        assert_eq!(r.charge(&u), Some(Amount(15 + 29)));
        let huge = ServeRates { per_item: Amount(u128::MAX), ..r };
        assert_eq!(huge.charge(&Usage { items: 2, ..Usage::default() }), None);
        assert!(r.covers(&ServeRates::default()) && !ServeRates::default().covers(&r));
        let later = Usage { prompt_tokens: 2_000, ..u };
        assert_eq!(later.since(&u), Some(Usage { prompt_tokens: 500, ..Usage::default() }));
        assert_eq!(u.since(&later), None);
    }

    #[test]
    fn receipts_are_signed_for_one_chain_and_commit_as_leaves() {
        let key = SecretKey::from_seed([3; 32]);
        let r = ServeReceipt {
            session: 7,
            seq: 0,
            request: Hash::of(b"q"),
            output: Hash::of(b"a"),
            usage: Usage { prompt_tokens: 5, completion_tokens: 9, items: 0 },
            total: Usage { prompt_tokens: 5, completion_tokens: 9, items: 0 },
            fingerprints: Hash::of(b"f"),
            first_token_ms: 1,
            last_token_ms: 2,
        };
        let signed = r.clone().sign("agora-test", &key);
        assert!(signed.verify("agora-test").is_ok());
        assert!(signed.verify("other-chain").is_err());
        let mut forged = signed.clone();
        forged.receipt.usage.completion_tokens = 90;
        assert!(forged.verify("agora-test").is_err());
        assert_eq!(SignedReceipt::decode(&signed.encode()).unwrap(), signed);
        let other = ServeReceipt { seq: 1, ..r.clone() };
        let tree = MerkleTree::new(vec![r.leaf(), other.leaf()]);
        assert!(tree.proof(1).unwrap().verify(&tree.root(), other.leaf()));
        assert!(!tree.proof(1).unwrap().verify(&tree.root(), r.leaf()));
    }
}
