//! Generation output items, and the record an auditor's replay produces.
//!
//! A [`Generation`] is the committed output for one prompt: the completion text, the token
//! ids that produced it, and why decoding stopped. Token ids are the evidence an audit
//! compares; the text must be their decoding.
//!
//! Encoding (canonical): `u8` version (1) · text (`u32` length + UTF-8) · `u32` count + `u32`
//! token ids · `u8` stop reason.
//!
//! A [`GenerationCheck`] is what an auditor's replay of a claimed generation yields: the
//! replayed generation plus every step at which the auditor's model would have chosen another
//! token, with the margin by which it would have done so (see `compare::generate`).

use super::ItemError;
use agora_core::codec::{Decode, DecodeError, Encode, Reader, encode_len};

/// Most tokens a generation item may carry (the manifest allows at most 4096 new tokens).
pub const MAX_TOKENS: usize = 4096;
/// Longest completion text, in bytes.
pub const MAX_TEXT: usize = 1 << 20;
const VERSION: u8 = 1;

/// Why decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced its end-of-sequence token (kept as the last token id).
    Eos,
    /// The text reached one of the manifest's stop strings (the text is cut before it).
    StopString,
    /// `max_new_tokens` tokens were generated.
    MaxTokens,
}

impl StopReason {
    fn tag(self) -> u8 {
        match self {
            StopReason::Eos => 0,
            StopReason::StopString => 1,
            StopReason::MaxTokens => 2,
        }
    }

    fn from_tag(t: u8) -> Result<Self, DecodeError> {
        match t {
            0 => Ok(StopReason::Eos),
            1 => Ok(StopReason::StopString),
            2 => Ok(StopReason::MaxTokens),
            _ => Err(DecodeError::invalid("StopReason", "unknown stop reason")),
        }
    }
}

/// One prompt's committed completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The completion, decoded from `tokens` (cut before a stop string, without EOS).
    pub text: String,
    /// Every generated token id, in order (including a final EOS).
    pub tokens: Vec<u32>,
    /// Why generation ended.
    pub stop: StopReason,
}

impl Encode for Generation {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        self.text.encode_to(out);
        encode_len(self.tokens.len(), out);
        for t in &self.tokens {
            t.encode_to(out);
        }
        out.push(self.stop.tag());
    }
}

impl Decode for Generation {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.tag("Generation.version")? != VERSION {
            return Err(DecodeError::invalid("Generation", "unknown version"));
        }
        let text = r.string(MAX_TEXT, "Generation.text")?;
        let tokens = r.vec(MAX_TOKENS, "Generation.tokens")?;
        let stop = StopReason::from_tag(r.tag("Generation.stop")?)?;
        Ok(Generation { text, tokens, stop })
    }
}

impl Generation {
    /// Decodes a generation item.
    pub fn from_item(bytes: &[u8]) -> Result<Self, ItemError> {
        Ok(Self::decode(bytes)?)
    }
}

/// How tokens were chosen, which decides what a divergence margin measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    /// Argmax of the logits; margins are logit differences.
    Greedy,
    /// Seeded sampling; margins are distances in cumulative probability.
    Sampled,
}

/// A step at which the auditor's model would not have chosen the claimed token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Divergence {
    /// Position in the generated sequence (0 = first new token).
    pub step: u32,
    /// The token the provider claimed.
    pub claimed: u32,
    /// The token the auditor's model chose.
    pub recomputed: u32,
    /// How far the claimed token was from being chosen: for greedy decoding the logit of the
    /// auditor's argmax minus the claimed token's logit; for sampling, the distance from the
    /// seeded uniform draw to the claimed token's cumulative-probability interval.
    pub margin: f32,
}

/// The result of replaying a claimed generation: the replayed generation and its divergences.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationCheck {
    /// How the job decodes.
    pub decoding: Decoding,
    /// The replay: it follows the claimed tokens while they last, then continues on its own,
    /// and stops by the job's rules. An honest claim is replayed exactly.
    pub replay: Generation,
    /// Steps where the auditor's model preferred another token than the claimed one.
    pub divergences: Vec<Divergence>,
}

impl Encode for GenerationCheck {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.push(match self.decoding {
            Decoding::Greedy => 0,
            Decoding::Sampled => 1,
        });
        self.replay.encode_to(out);
        encode_len(self.divergences.len(), out);
        for d in &self.divergences {
            d.step.encode_to(out);
            d.claimed.encode_to(out);
            d.recomputed.encode_to(out);
            out.extend_from_slice(&d.margin.to_le_bytes());
        }
    }
}

impl Decode for GenerationCheck {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.tag("GenerationCheck.version")? != VERSION {
            return Err(DecodeError::invalid("GenerationCheck", "unknown version"));
        }
        let decoding = match r.tag("GenerationCheck.decoding")? {
            0 => Decoding::Greedy,
            1 => Decoding::Sampled,
            _ => return Err(DecodeError::invalid("GenerationCheck", "unknown decoding")),
        };
        let replay = Generation::decode_from(r)?;
        let n = r.length(MAX_TOKENS + 1, 16, "GenerationCheck.divergences")?;
        let mut divergences = Vec::with_capacity(n);
        for _ in 0..n {
            divergences.push(Divergence {
                step: u32::decode_from(r)?,
                claimed: u32::decode_from(r)?,
                recomputed: u32::decode_from(r)?,
                margin: f32::from_le_bytes(r.array("Divergence.margin")?),
            });
        }
        Ok(GenerationCheck { decoding, replay, divergences })
    }
}

impl GenerationCheck {
    /// Decodes a replay record.
    pub fn from_item(bytes: &[u8]) -> Result<Self, ItemError> {
        Ok(Self::decode(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let g = Generation { text: "hi there".into(), tokens: vec![5, 6, 2], stop: StopReason::Eos };
        assert_eq!(Generation::from_item(&g.encode()).unwrap(), g);
        let c = GenerationCheck {
            decoding: Decoding::Greedy,
            replay: g.clone(),
            divergences: vec![Divergence { step: 1, claimed: 6, recomputed: 7, margin: 1e-4 }],
        };
        assert_eq!(GenerationCheck::from_item(&c.encode()).unwrap(), c);
        let mut bad = g.encode();
        *bad.last_mut().unwrap() = 9;
        assert!(Generation::from_item(&bad).is_err());
        assert!(Generation::from_item(&[1, 255, 255, 255, 255]).is_err());
    }
}
