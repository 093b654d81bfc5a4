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
//! checks. The replay costs what generating cost: candle's quantized llama returns the logits
//! of the last position only, so the teacher-forced pass advances one token at a time rather
//! than prefilling the completion in one pass (the cheaper prefill check needs a forward pass
//! that returns every position's logits).

use crate::engine::ChatParams;
use crate::fingerprint::{FINGERPRINT_EVERY, FINGERPRINT_TOP, Fingerprint};
use crate::wire::ChatDone;
use agora_ml::generate::Llm;
use agora_ml::generate::model::{Request, Step};
use agora_ml::generate::sampler::Sampler;
use agora_runtime::ExecError;
use agora_runtime::compare::Verdict;
use agora_runtime::compare::generate::{GREEDY_MAX_LOGIT_MARGIN, compare_replay};
use agora_runtime::items::generation::{Decoding, GenerationCheck};
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
    let sampler = Sampler::from_milli(params.temperature_milli);
    let req = Request {
        prompt: &params.prompt,
        max_new_tokens: params.max_tokens as usize,
        stop: &params.stop,
        sampler,
        seed: params.seed,
        follow: Some(&claimed.tokens),
    };
    // The first fingerprint that does not match; the replay goes on, so that a token the model
    // would not have chosen (which moves every later fingerprint) is named as the cause.
    let mut mismatch = None;
    let outcome = llm.generate_observed(
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
    )?;
    let outcome = outcome.expect("the observer never stops the replay");
    let decoding = if sampler == Sampler::Greedy { Decoding::Greedy } else { Decoding::Sampled };
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
