//! Choosing the next token, and measuring how far another choice was from being made.
//!
//! Our own sampler rather than candle's `LogitsProcessor`, because an audit needs more than
//! the choice: the *margin* by which a claimed token lost (see
//! `agora_runtime::compare::generate`). Greedy decoding takes the first maximum logit.
//! Sampling at temperature T draws one uniform `u` per step from the item's seeded stream and
//! takes the first token whose cumulative probability (softmax of logits / T, in f64)
//! exceeds it.

use agora_runtime::rng::Rng;

/// How tokens are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// Argmax.
    Greedy,
    /// Seeded sampling at this temperature.
    Temperature(f64),
}

/// A choice and the margin of any other token.
pub struct Choice {
    /// The chosen token.
    pub token: u32,
    margins: Margins,
}

enum Margins {
    Greedy { logits: Vec<f32> },
    Sampled { u: f64, cumulative: Vec<f64> },
}

impl Choice {
    /// How far `token` was from being chosen: 0 for the chosen token; otherwise the logit
    /// gap (greedy) or the distance from the uniform draw to its probability interval.
    pub fn margin(&self, token: u32) -> Option<f32> {
        let t = token as usize;
        match &self.margins {
            Margins::Greedy { logits } => Some(logits[self.token as usize] - *logits.get(t)?),
            Margins::Sampled { u, cumulative } => {
                let hi = *cumulative.get(t)?;
                let lo = if t == 0 { 0.0 } else { cumulative[t - 1] };
                Some(if *u < lo {
                    lo - u
                } else if *u >= hi {
                    u - hi
                } else {
                    0.0
                } as f32)
            }
        }
    }
}

impl Sampler {
    /// The sampler for a manifest temperature in thousandths (0 = greedy).
    pub fn from_milli(temperature_milli: u32) -> Self {
        if temperature_milli == 0 {
            Sampler::Greedy
        } else {
            Sampler::Temperature(f64::from(temperature_milli) / 1000.0)
        }
    }

    /// Chooses among `logits`, drawing from `rng` when sampling.
    pub fn choose(&self, logits: Vec<f32>, rng: &mut Rng) -> Choice {
        match *self {
            Sampler::Greedy => {
                let mut best = 0;
                for (i, &l) in logits.iter().enumerate() {
                    if l > logits[best] {
                        best = i;
                    }
                }
                Choice { token: best as u32, margins: Margins::Greedy { logits } }
            }
            Sampler::Temperature(t) => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut acc = 0f64;
                let mut cumulative: Vec<f64> = logits
                    .iter()
                    .map(|&l| {
                        acc += ((f64::from(l) - f64::from(max)) / t).exp();
                        acc
                    })
                    .collect();
                for c in &mut cumulative {
                    *c /= acc;
                }
                let u = rng.next_f64();
                let token = cumulative.iter().position(|&c| c > u).unwrap_or(cumulative.len() - 1);
                Choice { token: token as u32, margins: Margins::Sampled { u, cumulative } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_sampled_margins() {
        let mut rng = Rng::new(1);
        let c = Sampler::Greedy.choose(vec![0.0, 2.0, 1.5], &mut rng);
        assert_eq!(c.token, 1);
        assert_eq!(c.margin(1), Some(0.0));
        assert_eq!(c.margin(2), Some(0.5));
        assert_eq!(c.margin(9), None);
        let c = Sampler::from_milli(1000).choose(vec![0.0, 0.0], &mut rng);
        assert_eq!(c.margin(c.token), Some(0.0));
        assert!(c.margin(1 - c.token).unwrap() >= 0.0);
    }
}
