//! Re-checking a served completion against its receipt, with the session's model.
//!
//! Anyone holding a completion's request, its [`ChatDone`] (tokens, text, fingerprints,
//! receipt) and the model can check that the provider computed it: [`recheck_chat`] replays
//! the request teacher-forced along the receipted tokens and accepts only if
//! - the fingerprints are the ones the receipt names, taken at every step they must be, and
//!   each listed logit is within [`FINGERPRINT_TOLERANCE`] of the replay's logit for that
//!   token, with no other token above the listed ones by more than the tolerance;
//! - every token is the one the model chooses (the argmax, or the seeded draw the request
//!   names), up to the near ties `agora_runtime::compare::generate` forgives;
//! - the replay stops where the completion stopped, with the same text.
//!
//! A provider that answers from a cheaper model fails the token checks; one that makes up
//! fingerprints to go with them fails the fingerprint checks; one that runs the session's
//! model over a cheaper model's tokens (to get genuine fingerprints) still fails the token
//! checks. The replay is one teacher-forced forward pass over the prompt and the completion
//! (`agora_ml::generate::model`), which costs a prefill, not a generation; its logits at every
//! step are the same bits the provider's decoding saw (`agora_ml::generate::llama`), so an
//! honest completion replays exactly.

use crate::book::Record;
use crate::engine::{ChatParams, Model};
use crate::fingerprint::{FINGERPRINT_EVERY, FINGERPRINT_TOP, Fingerprint};
use crate::wire::{ChatDone, ServeBody, ServeRequest, chat_output_hash, embed_output_hash, stop_name};
use agora_core::codec::Reader;
use agora_core::merkle::MerkleProof;
use agora_core::session::{WindowCommitment, client_message};
use agora_core::{PublicKey, codec_struct};
use agora_ml::generate::Llm;
use agora_ml::generate::model::Step;
use agora_ml::generate::sampler::Sampler;
use agora_runtime::ExecError;
use agora_runtime::compare::Verdict;
use agora_runtime::compare::generate::{GREEDY_MAX_LOGIT_MARGIN, compare_replay};
use agora_runtime::items::generation::{Decoding, Generation, GenerationCheck};
use agora_runtime::items::vector::{decode_vector, encode_vector};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

/// Largest difference between a fingerprint's logit and the replay's. Provider and auditor
/// run the same kernels (the class names the ISA family), where the logits were measured
/// bit-identical; the allowance is the greedy near-tie margin.
pub const FINGERPRINT_TOLERANCE: f32 = GREEDY_MAX_LOGIT_MARGIN;

/// Checks a claimed fingerprint against the replay's `logits` at its step.
pub fn check_fingerprint(claimed: &Fingerprint, logits: &[f32]) -> Result<(), String> {
    let step = claimed.step;
    if claimed.top.len() != FINGERPRINT_TOP.min(logits.len()) {
        return Err(format!("step {step}: {} logits listed, not {FINGERPRINT_TOP}", claimed.top.len()));
    }
    let mut lowest = f32::INFINITY;
    for (token, value) in claimed.top.iter().map(|(t, _)| *t).zip(claimed.values()) {
        let Some(&actual) = logits.get(token as usize) else {
            return Err(format!("step {step}: token {token} is outside the vocabulary"));
        };
        let gap = (actual - value).abs();
        if gap.is_nan() || gap > FINGERPRINT_TOLERANCE {
            return Err(format!(
                "step {step}: token {token} has logit {actual}, the fingerprint says {value}"
            ));
        }
        lowest = lowest.min(value);
    }
    let listed: Vec<u32> = claimed.top.iter().map(|(t, _)| *t).collect();
    if let Some((token, l)) = logits
        .iter()
        .enumerate()
        .find(|(t, l)| !listed.contains(&(*t as u32)) && **l > lowest + FINGERPRINT_TOLERANCE)
    {
        return Err(format!("step {step}: token {token} (logit {l}) is above the listed ones"));
    }
    Ok(())
}

/// Replays the completion `done` of the request `params` on `llm` and says whether the
/// provider computed it (see the module documentation). A malformed claim fails; only a model
/// error is an `Err`.
pub fn recheck_chat(llm: &Llm, params: &ChatParams, done: &ChatDone) -> Result<Verdict, ExecError> {
    if done.receipt.receipt.fingerprints != crate::fingerprint::hash(&done.fingerprints) {
        return Ok(Verdict::fail("the fingerprints are not the ones the receipt names"));
    }
    let Some(claimed) = done.generation() else {
        return Ok(Verdict::fail(format!("unknown stop reason {:?}", done.stop)));
    };
    let steps = claimed.tokens.len().div_ceil(FINGERPRINT_EVERY);
    if done.fingerprints.len() != steps
        || done.fingerprints.iter().enumerate().any(|(i, f)| f.step as usize != i * FINGERPRINT_EVERY)
    {
        return Ok(Verdict::fail(format!(
            "{} fingerprints listed; {} tokens need one every {FINGERPRINT_EVERY} steps from step 0",
            done.fingerprints.len(),
            claimed.tokens.len()
        )));
    }
    let req = params.request(Some(&claimed.tokens));
    // The first fingerprint that does not match; the replay goes on, so that a token the model
    // would not have chosen (which moves every later fingerprint) is named as the cause.
    let mut mismatch = None;
    let replayed = llm.generate_observed(
        &req,
        Some(&mut |s: Step<'_>| {
            if mismatch.is_none()
                && s.index.is_multiple_of(FINGERPRINT_EVERY)
                && let Some(f) = done.fingerprints.get(s.index / FINGERPRINT_EVERY)
            {
                mismatch = check_fingerprint(f, s.logits).err();
            }
            ControlFlow::Continue(())
        }),
    );
    let outcome = match replayed {
        // What the claim or its request cannot be replayed for is the provider's fault.
        Err(e @ (ExecError::BadAudit(_) | ExecError::BadParams(_))) => {
            return Ok(Verdict::fail(e.to_string()));
        }
        other => other?.expect("the observer never stops the replay"),
    };
    let decoding = if req.sampler == Sampler::Greedy { Decoding::Greedy } else { Decoding::Sampled };
    let check = GenerationCheck { decoding, replay: outcome.generation, divergences: outcome.divergences };
    let verdict = compare_replay(&claimed, &check);
    Ok(match mismatch {
        _ if !verdict.matches => verdict,
        Some(e) => Verdict::fail(e),
        None => Verdict::pass(format!(
            "{}; {steps} fingerprints within {FINGERPRINT_TOLERANCE:.0e}",
            verdict.detail
        )),
    })
}

/// A sampled receipt's record as its provider hands it to an auditor, with the proof that the
/// receipt is a leaf of the committed window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenRecord {
    /// Everything the provider kept about the response.
    pub record: Record,
    /// The receipt's path to the window's root.
    pub proof: MerkleProof,
}
codec_struct!(ProvenRecord { record, proof });

/// A served answer to replay: the request's body and what the provider answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    /// The request.
    pub body: ServeBody,
    /// The answer.
    pub answer: Answered,
}

/// What a provider answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answered {
    /// A completion, with its receipt.
    Chat(Box<ChatDone>),
    /// One vector per input.
    Embed(Vec<Vec<f32>>),
}

/// What a sampled receipt must be, from the chain: the session's chain, provider and client
/// key, its window's commitment, and its `seq`.
pub struct Sampled<'a> {
    /// The chain's id.
    pub chain_id: &'a str,
    /// The audited provider.
    pub provider: &'a PublicKey,
    /// The session's client key (it signs every request).
    pub client: &'a PublicKey,
    /// The committed window.
    pub window: &'a WindowCommitment,
    /// The sampled receipt's `seq`.
    pub seq: u64,
}

/// Checks everything about a record but the computation, and returns the claim to replay: the
/// receipt is the provider's, the sampled one, and a leaf of the committed window; the request
/// is the one it receipts, signed by the session's client, for this session; the output is the
/// one it receipts. An `Err` says which check failed: the provider's fault.
pub fn claim_of(p: &ProvenRecord, want: &Sampled<'_>) -> Result<Claim, String> {
    let (r, signed) = (&p.record, &p.record.receipt);
    let receipt = &signed.receipt;
    if signed.provider != *want.provider || signed.verify(want.chain_id).is_err() {
        return Err(format!("receipt {} is not signed by the provider", want.seq));
    }
    let index = want.seq.checked_sub(want.window.first_seq);
    if receipt.seq != want.seq
        || receipt.session != want.window.session
        || index != Some(p.proof.index)
        || !p.proof.verify(&want.window.root, receipt.leaf())
    {
        return Err(format!("receipt {} is not in the committed window", want.seq));
    }
    let request = crate::wire::request_hash(want.chain_id, &r.request);
    if request != receipt.request
        || want.client.verify(&client_message(&request), &r.client_signature).is_err()
    {
        return Err(format!("receipt {}: the request is not the one its client signed", want.seq));
    }
    let req: ServeRequest = serde_json::from_slice(&r.request)
        .map_err(|e| format!("receipt {}: the request does not parse: {e}", want.seq))?;
    if req.session != want.window.session {
        return Err(format!("receipt {}: the request is for another session", want.seq));
    }
    let answer = match &req.body {
        ServeBody::Chat { .. } => {
            let g = Generation::from_item(&r.output)
                .map_err(|e| format!("receipt {}: the completion does not parse: {e}", want.seq))?;
            if chat_output_hash(&g) != receipt.output {
                return Err(format!("receipt {}: the completion is not the one receipted", want.seq));
            }
            let fingerprints = r
                .fingerprints()
                .map_err(|e| format!("receipt {}: the fingerprints do not parse: {e}", want.seq))?;
            Answered::Chat(Box::new(ChatDone {
                text: g.text,
                tokens: g.tokens,
                stop: stop_name(g.stop).to_string(),
                fingerprints,
                receipt: signed.clone(),
            }))
        }
        ServeBody::Embed { .. } => {
            let vectors = decode_vectors(&r.output)
                .map_err(|e| format!("receipt {}: the embeddings do not parse: {e}", want.seq))?;
            if embed_output_hash(&vectors) != receipt.output {
                return Err(format!("receipt {}: the embeddings are not the ones receipted", want.seq));
            }
            Answered::Embed(vectors)
        }
    };
    Ok(Claim { body: req.body, answer })
}

/// Decodes an embeddings answer's output: its vectors' item encodings, as a sequence of at
/// most as many as one request may ask for.
fn decode_vectors(bytes: &[u8]) -> Result<Vec<Vec<f32>>, String> {
    let mut r = Reader::new(bytes);
    let n = r.length(crate::wire::MAX_EMBED_TEXTS, 4, "embeddings").map_err(|e| e.to_string())?;
    let vectors = (0..n)
        .map(|_| {
            let item = r.bytes(bytes.len(), "embedding").map_err(|e| e.to_string())?;
            decode_vector(&item).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    r.finish("embeddings").map_err(|e| e.to_string())?;
    Ok(vectors)
}

/// Replays `claim` on `model` (the session's): a completion as [`recheck_chat`] does, embeddings
/// by embedding the inputs again, in the provider's batches, and comparing each vector within
/// the tolerance lease audits use. A claim of the wrong kind for the model fails.
pub fn recheck(model: &Model, claim: &Claim) -> Result<Verdict, ExecError> {
    match (model, &claim.answer) {
        (Model::Chat(llm), Answered::Chat(done)) => match ChatParams::of(&claim.body) {
            Some(params) => recheck_chat(llm, &params, done),
            None => Ok(Verdict::fail("a completion answering an embeddings request")),
        },
        (Model::Embed(embedder), Answered::Embed(claimed)) => {
            let ServeBody::Embed { inputs } = &claim.body else {
                return Ok(Verdict::fail("embeddings answering a chat request"));
            };
            if claimed.len() != inputs.len() {
                return Ok(Verdict::fail(format!("{} inputs, {} vectors", inputs.len(), claimed.len())));
            }
            let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let replayed = embedder.embed(&texts, crate::engine::EMBED_BATCH)?;
            for (i, (a, b)) in claimed.iter().zip(&replayed).enumerate() {
                let v = agora_runtime::compare::embed::compare(&encode_vector(a), &encode_vector(b));
                if !v.matches {
                    return Ok(Verdict::fail(format!("vector {i}: {}", v.detail)));
                }
            }
            Ok(Verdict::pass(format!("{} vectors reproduced", claimed.len())))
        }
        _ => Ok(Verdict::fail("the answer is not of the session's kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(step: u32, top: &[(u32, f32)]) -> Fingerprint {
        Fingerprint { step, top: top.iter().map(|(t, v)| (*t, v.to_bits())).collect() }
    }

    #[test]
    fn a_fingerprint_matches_only_the_logits_it_was_taken_from() {
        let logits = [0.5, 3.0, -1.0, 2.5, 2.0, f32::NEG_INFINITY, 9.0];
        let honest = Fingerprint::at(0, &logits).unwrap();
        assert_eq!(check_fingerprint(&honest, &logits), Ok(()));
        let mut drifted = logits;
        drifted[6] += FINGERPRINT_TOLERANCE / 2.0;
        assert_eq!(check_fingerprint(&honest, &drifted), Ok(()), "kernel drift within the tolerance");
        let made_up = print(0, &[(6, 9.0), (1, 3.0), (3, 2.5), (0, 2.0)]);
        assert!(check_fingerprint(&made_up, &logits).unwrap_err().contains("token 0 has logit 0.5"));
        let missing = print(0, &[(6, 9.0), (1, 3.0), (3, 2.5), (0, 0.5)]);
        assert!(
            check_fingerprint(&missing, &logits).unwrap_err().contains("token 4"),
            "the true 4th is left out"
        );
        assert!(check_fingerprint(&print(0, &[(6, 9.0)]), &logits).unwrap_err().contains("1 logits listed"));
        let nan = print(0, &[(6, f32::NAN), (1, 3.0), (3, 2.5), (4, 2.0)]);
        assert!(check_fingerprint(&nan, &logits).is_err());
        let outside = print(0, &[(60, 9.0), (1, 3.0), (3, 2.5), (4, 2.0)]);
        assert!(check_fingerprint(&outside, &logits).unwrap_err().contains("outside the vocabulary"));
    }
}
