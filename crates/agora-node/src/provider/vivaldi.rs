//! Vivaldi network coordinates (Dabek et al., SIGCOMM 2004) with height vectors, as run in
//! Serf/Consul: each node keeps a position, a height (access-link delay) and an error
//! estimate, and nudges them after every RTT sample to a peer. Predicted RTT between two
//! nodes is the Euclidean distance plus both heights.
//!
//! Providers register the result on chain as an integer [`Coord`] so the ledger can check
//! latency constraints and cluster diameters deterministically.

use agora_core::Coord;
use agora_core::class::COORD_DIMS;

/// Error-weight constant `c_e`.
const CE: f64 = 0.25;
/// Movement constant `c_c`.
const CC: f64 = 0.25;
/// Largest believable error.
const MAX_ERROR: f64 = 1.5;
/// Smallest height, ms.
const MIN_HEIGHT_MS: f64 = 0.01;
/// Pull toward the origin that keeps coordinates from drifting, ms.
const GRAVITY_RHO_MS: f64 = 150.0;

/// A node's coordinate state.
#[derive(Debug, Clone, PartialEq)]
pub struct Vivaldi {
    /// Position, ms.
    pub vec: [f64; COORD_DIMS],
    /// Height, ms.
    pub height: f64,
    /// Relative error estimate (0 = perfect, 1.5 = know nothing).
    pub error: f64,
    /// Samples taken.
    pub samples: u64,
}

impl Default for Vivaldi {
    fn default() -> Self {
        Self { vec: [0.0; COORD_DIMS], height: MIN_HEIGHT_MS, error: MAX_ERROR, samples: 0 }
    }
}

/// What a peer reports about itself alongside an RTT sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Remote {
    /// Its position, ms.
    pub vec: [f64; COORD_DIMS],
    /// Its height, ms.
    pub height: f64,
    /// Its error estimate.
    pub error: f64,
}

fn norm(v: &[f64; COORD_DIMS]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

impl Vivaldi {
    /// Predicted RTT to `other`, ms.
    pub fn predict_ms(&self, other: &Remote) -> f64 {
        let diff: Vec<f64> = self.vec.iter().zip(other.vec.iter()).map(|(a, b)| a - b).collect();
        diff.iter().map(|d| d * d).sum::<f64>().sqrt() + self.height + other.height
    }

    /// What this node reports to peers.
    pub fn remote(&self) -> Remote {
        Remote { vec: self.vec, height: self.height, error: self.error }
    }

    /// Updates after measuring `rtt_ms` to `peer`. `tiebreak` picks a direction when both
    /// nodes sit at the same point (e.g. the peer's id), so updates stay deterministic.
    pub fn observe(&mut self, peer: &Remote, rtt_ms: f64, tiebreak: u64) {
        if !(rtt_ms.is_finite() && rtt_ms > 0.0) {
            return;
        }
        let dist = self.predict_ms(peer);
        let total_error = (self.error + peer.error).max(f64::EPSILON);
        let weight = self.error / total_error;
        let sample_error = (dist - rtt_ms).abs() / rtt_ms;
        self.error = (sample_error * CE * weight + self.error * (1.0 - CE * weight)).min(MAX_ERROR);
        let force = CC * weight * (rtt_ms - dist);
        let mut dir = [0.0; COORD_DIMS];
        for (i, d) in dir.iter_mut().enumerate() {
            *d = self.vec[i] - peer.vec[i];
        }
        let len = norm(&dir);
        if len < 1e-9 {
            // Coincident: push apart along a direction derived from the tiebreak.
            dir = [0.0; COORD_DIMS];
            dir[(tiebreak % COORD_DIMS as u64) as usize] = if tiebreak & 1 == 0 { 1.0 } else { -1.0 };
        } else {
            dir.iter_mut().for_each(|d| *d /= len);
        }
        for (x, d) in self.vec.iter_mut().zip(dir) {
            *x += force * d;
        }
        if dist > 0.0 {
            self.height = (self.height + force * (self.height + peer.height) / dist).max(MIN_HEIGHT_MS);
        }
        // Gravity toward the origin.
        let r = norm(&self.vec);
        if r > 0.0 {
            let pull = (r / GRAVITY_RHO_MS).powi(2);
            let scale = (r - pull).max(0.0) / r;
            self.vec.iter_mut().for_each(|x| *x *= scale);
        }
        self.samples += 1;
    }

    /// The on-chain form: integer units of 10 µs.
    pub fn to_coord(&self) -> Coord {
        let units = |ms: f64| (ms * Coord::UNITS_PER_MS as f64).round();
        let mut vec = [0i32; COORD_DIMS];
        for (v, x) in vec.iter_mut().zip(self.vec) {
            *v = units(x).clamp(i32::MIN as f64, i32::MAX as f64) as i32;
        }
        Coord { vec, height: units(self.height).clamp(0.0, u32::MAX as f64) as u32 }
    }

    /// The state a peer's on-chain coordinate implies (error unknown, so maximal).
    pub fn remote_from_coord(c: &Coord) -> Remote {
        let ms = |u: f64| u / Coord::UNITS_PER_MS as f64;
        let mut vec = [0.0; COORD_DIMS];
        for (v, x) in vec.iter_mut().zip(c.vec) {
            *v = ms(f64::from(x));
        }
        Remote { vec, height: ms(f64::from(c.height)), error: MAX_ERROR }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic network: nodes on a plane plus access delays; true RTT is distance plus
    /// both delays. Vivaldi should predict it within Serf-like accuracy.
    #[test]
    fn converges_on_a_synthetic_network() {
        let n = 24;
        // Deterministic pseudo-random positions in a 100 ms square.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 10_000) as f64 / 100.0
        };
        let truth: Vec<([f64; 2], f64)> = (0..n).map(|_| ([rnd(), rnd()], rnd() / 20.0)).collect();
        let rtt = |a: usize, b: usize| {
            let (pa, ha) = truth[a];
            let (pb, hb) = truth[b];
            ((pa[0] - pb[0]).powi(2) + (pa[1] - pb[1]).powi(2)).sqrt() + ha + hb
        };
        let mut nodes = vec![Vivaldi::default(); n];
        for round in 0..200 {
            for i in 0..n {
                let j = (i + 1 + (round * 7 + i * 3) % (n - 1)) % n;
                let peer = nodes[j].remote();
                nodes[i].observe(&peer, rtt(i, j), j as u64);
            }
        }
        let mut errors: Vec<f64> = vec![];
        for i in 0..n {
            for j in (i + 1)..n {
                let predicted = nodes[i].predict_ms(&nodes[j].remote());
                errors.push((predicted - rtt(i, j)).abs() / rtt(i, j));
            }
        }
        errors.sort_by(f64::total_cmp);
        let median = errors[errors.len() / 2];
        assert!(median < 0.15, "median relative error {median}");
        // The integer on-chain form predicts the same RTT to within rounding.
        let (a, b) = (nodes[0].to_coord(), nodes[1].to_coord());
        let on_chain_ms = a.predicted_rtt_us(&b) as f64 / 1000.0;
        let float_ms = nodes[0].predict_ms(&nodes[1].remote());
        assert!((on_chain_ms - float_ms).abs() < 0.1, "{on_chain_ms} vs {float_ms}");
    }

    #[test]
    fn ignores_nonsense_samples() {
        let mut v = Vivaldi::default();
        let before = v.clone();
        v.observe(&Vivaldi::default().remote(), f64::NAN, 1);
        v.observe(&Vivaldi::default().remote(), -3.0, 1);
        assert_eq!(v, before);
    }
}
