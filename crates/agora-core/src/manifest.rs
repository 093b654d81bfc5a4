//! Job manifests: what a requester asks the network to compute, and under which terms.
//!
//! A manifest travels on chain inside the `SubmitJob` transaction, so providers, auditors and
//! light clients all see the same terms. Bulky data (models, inputs, outputs) is referenced by
//! BLAKE3 hash and lives in content stores.

use crate::amount::Amount;
use crate::class::{Coord, Region, ResourceClass};
use crate::codec::{Decode, DecodeError, DecodeErrorKind, Encode, Reader};
use crate::codec_struct;
use crate::hash::Hash;
use serde::{Deserialize, Serialize};

/// Most shards (leases) one job may be split into.
pub const MAX_SHARDS: usize = 256;
/// Most items one shard may contain.
pub const MAX_ITEMS_PER_SHARD: u32 = 1 << 20;
/// Most device-seconds one order may trade (a shard's quantity, an ask's capacity): about
/// 34,000 device-years, so sums over any number of orders a block can carry stay far inside
/// `u64` and clearing arithmetic never overflows.
pub const MAX_ORDER_QUANTITY: u64 = 1 << 40;
/// Most stop sequences for generation.
pub const MAX_STOP: usize = 8;
/// Most arguments to a wasm module.
pub const MAX_WASM_ARGS: usize = 16;
/// Largest cluster a job may request.
pub const MAX_CLUSTER: u8 = 64;
/// Most source URLs a manifest may list.
pub const MAX_SOURCES: usize = 8;

/// The kind of computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Sentence embeddings: text lines in, f32 vectors out.
    Embed,
    /// Causal LM text generation: prompts in, completions out.
    Generate,
    /// Small-model training: a data set in, checkpoints out.
    Train,
    /// Deterministic WebAssembly: one stdin item in, one stdout item out.
    Wasm,
}

impl JobKind {
    /// All kinds, in tag order.
    pub const ALL: [JobKind; 4] = [JobKind::Embed, JobKind::Generate, JobKind::Train, JobKind::Wasm];

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Embed => "embed",
            JobKind::Generate => "generate",
            JobKind::Train => "train",
            JobKind::Wasm => "wasm",
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Encode for JobKind {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
}

impl Decode for JobKind {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let t = r.tag("JobKind")?;
        JobKind::ALL
            .get(usize::from(t))
            .copied()
            .ok_or(DecodeError::new("JobKind", DecodeErrorKind::UnknownTag(t)))
    }
}

/// How the network checks the result before paying for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode")]
pub enum VerificationPolicy {
    /// Sampled audits at the probability the ledger derives from the deterrence inequality.
    Standard,
    /// Every item is re-computed by `replicas - 1` other nodes (costly, strongest).
    Redundant {
        /// Total independent executions, including the provider's (2..=5).
        replicas: u8,
    },
    /// No checking at all; allowed only for free jobs (max price 0), for testing.
    None,
}

impl Encode for VerificationPolicy {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            VerificationPolicy::Standard => out.push(0),
            VerificationPolicy::Redundant { replicas } => {
                out.push(1);
                out.push(*replicas);
            }
            VerificationPolicy::None => out.push(2),
        }
    }
}

impl Decode for VerificationPolicy {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.tag("VerificationPolicy")? {
            0 => Ok(VerificationPolicy::Standard),
            1 => Ok(VerificationPolicy::Redundant { replicas: u8::decode_from(r)? }),
            2 => Ok(VerificationPolicy::None),
            t => Err(DecodeError::new("VerificationPolicy", DecodeErrorKind::UnknownTag(t))),
        }
    }
}

/// A bound on predicted latency from a point (the requester's own coordinate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBound {
    /// Largest acceptable predicted round-trip time, in milliseconds.
    pub max_rtt_ms: u32,
    /// The point latency is measured from.
    pub from: Coord,
}
codec_struct!(LatencyBound { max_rtt_ms, from });

/// A request for `size` distinct providers whose pairwise predicted RTT stays under a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// Number of distinct providers (one shard each); must equal the number of shards.
    pub size: u8,
    /// Largest acceptable predicted RTT between any two members, in milliseconds.
    pub max_pairwise_rtt_ms: u32,
}
codec_struct!(ClusterSpec { size, max_pairwise_rtt_ms });

/// Where and how a job may run. Every field is optional; unset means unconstrained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraints {
    /// Only providers in this region.
    pub region: Option<Region>,
    /// Only providers whose declared grid carbon intensity is at most this (gCO2e/kWh).
    pub max_carbon_g_per_kwh: Option<u32>,
    /// Only providers predicted to be this close to a point.
    pub max_latency: Option<LatencyBound>,
    /// All shards on distinct providers that are close to each other.
    pub cluster: Option<ClusterSpec>,
}
codec_struct!(Constraints { region, max_carbon_g_per_kwh, max_latency, cluster });

/// Kind-specific parameters, fixed in the manifest so any auditor re-runs the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum JobParams {
    /// Sentence embeddings.
    Embed {
        /// Items per forward pass: part of the batching plan, which affects float rounding.
        batch_size: u32,
    },
    /// Text generation.
    Generate {
        /// Most tokens to generate per item.
        max_new_tokens: u32,
        /// Sampling temperature in thousandths; 0 means greedy decoding.
        temperature_milli: u32,
        /// Seed for sampling; each item's seed derives from it and the item index.
        seed: u64,
        /// Extra stop strings.
        stop: Vec<String>,
    },
    /// Training an MLP classifier.
    Train {
        /// Optimizer steps in total.
        steps: u32,
        /// Steps between committed checkpoints (each checkpoint is one output item).
        checkpoint_every: u32,
        /// Examples per step.
        batch_size: u32,
        /// Hidden layer width.
        hidden: u32,
        /// Learning rate in millionths.
        learning_rate_micros: u32,
        /// Seed for initialisation and data order.
        seed: u64,
    },
    /// Deterministic WebAssembly.
    Wasm {
        /// Fuel budget per item.
        fuel_per_item: u64,
        /// Linear memory cap in MiB.
        memory_mib: u32,
        /// Command-line arguments passed to the module.
        args: Vec<String>,
    },
}

impl JobParams {
    /// The job kind these parameters belong to.
    pub fn kind(&self) -> JobKind {
        match self {
            JobParams::Embed { .. } => JobKind::Embed,
            JobParams::Generate { .. } => JobKind::Generate,
            JobParams::Train { .. } => JobKind::Train,
            JobParams::Wasm { .. } => JobKind::Wasm,
        }
    }
}

impl Encode for JobParams {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.kind().encode_to(out);
        match self {
            JobParams::Embed { batch_size } => batch_size.encode_to(out),
            JobParams::Generate { max_new_tokens, temperature_milli, seed, stop } => {
                max_new_tokens.encode_to(out);
                temperature_milli.encode_to(out);
                seed.encode_to(out);
                crate::codec::encode_seq(stop.iter(), out);
            }
            JobParams::Train { steps, checkpoint_every, batch_size, hidden, learning_rate_micros, seed } => {
                for v in [steps, checkpoint_every, batch_size, hidden, learning_rate_micros] {
                    v.encode_to(out);
                }
                seed.encode_to(out);
            }
            JobParams::Wasm { fuel_per_item, memory_mib, args } => {
                fuel_per_item.encode_to(out);
                memory_mib.encode_to(out);
                crate::codec::encode_seq(args.iter(), out);
            }
        }
    }
}

impl Decode for JobParams {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match JobKind::decode_from(r)? {
            JobKind::Embed => JobParams::Embed { batch_size: u32::decode_from(r)? },
            JobKind::Generate => JobParams::Generate {
                max_new_tokens: u32::decode_from(r)?,
                temperature_milli: u32::decode_from(r)?,
                seed: u64::decode_from(r)?,
                stop: r.vec(MAX_STOP, "JobParams.stop")?,
            },
            JobKind::Train => JobParams::Train {
                steps: u32::decode_from(r)?,
                checkpoint_every: u32::decode_from(r)?,
                batch_size: u32::decode_from(r)?,
                hidden: u32::decode_from(r)?,
                learning_rate_micros: u32::decode_from(r)?,
                seed: u64::decode_from(r)?,
            },
            JobKind::Wasm => JobParams::Wasm {
                fuel_per_item: u64::decode_from(r)?,
                memory_mib: u32::decode_from(r)?,
                args: r.vec(MAX_WASM_ARGS, "JobParams.args")?,
            },
        })
    }
}

/// One independently leased part of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    /// Content hash of the shard's input blob (ciphertext when the job is encrypted).
    pub input: Hash,
    /// Merkle root over the plaintext input items, so auditors can check single items.
    pub items_root: Hash,
    /// Number of input items.
    pub item_count: u32,
    /// Device-seconds reserved for the shard (the lease quantity).
    pub quantity: u64,
}
codec_struct!(ShardSpec { input, items_root, item_count, quantity });

/// Checks a list of content-store source URLs: at most [`MAX_SOURCES`], each http(s).
pub fn check_sources(sources: &[String]) -> Result<(), String> {
    if sources.len() > MAX_SOURCES {
        return Err(format!("at most {MAX_SOURCES} sources"));
    }
    match sources.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
        Some(bad) => Err(format!("source {bad:?} is not an http(s) URL")),
        None => Ok(()),
    }
}

/// Everything the network needs to place, run, check and pay for a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobManifest {
    /// Content hash of the model weights or wasm module.
    pub model: Hash,
    /// Kind and kind-specific parameters.
    pub params: JobParams,
    /// The hardware class to buy.
    pub class: ResourceClass,
    /// The work, split into shards (one lease each).
    pub shards: Vec<ShardSpec>,
    /// Highest price per device-second the requester accepts.
    pub max_unit_price: Amount,
    /// Unix time (ms) by which results must be committed; also when unmatched shards expire.
    pub deadline_ms: u64,
    /// How results are checked.
    pub policy: VerificationPolicy,
    /// Placement constraints.
    pub constraints: Constraints,
    /// Whether inputs are encrypted (the key is sealed to each assigned provider).
    pub encrypted: bool,
    /// Content-store URLs that hold the model and inputs (hints: every byte fetched is
    /// verified against its hash, so a wrong source can only waste time).
    #[serde(default)]
    pub sources: Vec<String>,
    /// An account that may share the input keys on the requester's behalf (the requester's
    /// node), so an encrypted job is served while the requester is offline. The requester
    /// seals the keys to it; it never sees more than a matched provider does.
    #[serde(default)]
    pub key_agent: Option<crate::AccountId>,
    /// The key an encrypted job's outputs are encrypted to, with each provider's key
    /// ([`JobManifest::output_recipient`]): a key the requester made for this job, whose secret
    /// it may hand to its key agent so the agent checks delivered outputs while the requester
    /// is offline. `None`: the requester's account key.
    #[serde(default)]
    pub output_key: Option<crate::PublicKey>,
}
codec_struct!(JobManifest {
    model,
    params,
    class,
    shards: vec(MAX_SHARDS),
    max_unit_price,
    deadline_ms,
    policy,
    constraints,
    encrypted,
    sources: vec(MAX_SOURCES),
    key_agent,
    output_key
});

/// Why a manifest was refused, before any money moves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid job manifest: {0}")]
pub struct ManifestError(pub String);

impl JobManifest {
    /// The job kind.
    pub fn kind(&self) -> JobKind {
        self.params.kind()
    }

    /// The key lease outputs are encrypted to, with the provider's, for a job of `requester`:
    /// the manifest's `output_key`, or the requester's account key.
    pub fn output_recipient(&self, requester: &crate::AccountId) -> crate::PublicKey {
        self.output_key.unwrap_or(*requester)
    }

    /// Total device-seconds over all shards; `None` on overflow.
    pub fn total_quantity(&self) -> Option<u64> {
        self.shards.iter().try_fold(0u64, |acc, s| acc.checked_add(s.quantity))
    }

    /// The most escrow the job can need: max price × total quantity; `None` on overflow.
    pub fn max_cost(&self) -> Option<Amount> {
        self.max_unit_price.checked_mul(u128::from(self.total_quantity()?))
    }

    /// Checks every rule that does not depend on chain state.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let fail = |m: String| Err(ManifestError(m));
        if let Err(e) = crate::codec::check_canonical(self) {
            return fail(format!("the manifest exceeds the network's encoding bounds: {e}"));
        }
        if self.shards.is_empty() {
            return fail("a job needs at least one shard of input".into());
        }
        if self.shards.len() > MAX_SHARDS {
            return fail(format!("{} shards is more than the limit of {MAX_SHARDS}", self.shards.len()));
        }
        for (i, s) in self.shards.iter().enumerate() {
            if s.item_count == 0 || s.item_count > MAX_ITEMS_PER_SHARD {
                return fail(format!(
                    "shard {i}: item_count must be 1..={MAX_ITEMS_PER_SHARD}, got {}",
                    s.item_count
                ));
            }
            if s.quantity == 0 || s.quantity > MAX_ORDER_QUANTITY {
                return fail(format!(
                    "shard {i}: quantity must be 1..={MAX_ORDER_QUANTITY} device-seconds, got {}",
                    s.quantity
                ));
            }
        }
        if let Err(e) = check_sources(&self.sources) {
            return fail(e);
        }
        if self.max_cost().is_none() {
            return fail("max_unit_price × total quantity overflows".into());
        }
        match self.output_key {
            Some(_) if !self.encrypted => return fail("output_key is for encrypted jobs only".into()),
            Some(k) if k.to_x25519().is_none() => return fail(format!("output_key {k} is not a valid key")),
            _ => {}
        }
        match self.policy {
            VerificationPolicy::None if !self.max_unit_price.is_zero() => {
                return fail("verification policy 'none' is only for free jobs (max_unit_price = 0)".into());
            }
            VerificationPolicy::Redundant { replicas } if !(2..=5).contains(&replicas) => {
                return fail(format!("redundant verification needs 2..=5 replicas, got {replicas}"));
            }
            _ => {}
        }
        if let Some(c) = &self.constraints.cluster {
            if c.size < 2 || c.size > MAX_CLUSTER {
                return fail(format!("cluster size must be 2..={MAX_CLUSTER}, got {}", c.size));
            }
            if usize::from(c.size) != self.shards.len() {
                return fail(format!(
                    "a cluster of {} providers needs exactly {} shards, got {}",
                    c.size,
                    c.size,
                    self.shards.len()
                ));
            }
        }
        match &self.params {
            JobParams::Embed { batch_size } if *batch_size == 0 || *batch_size > 1024 => {
                fail(format!("embed batch_size must be 1..=1024, got {batch_size}"))
            }
            JobParams::Generate { max_new_tokens, stop, .. } if *max_new_tokens == 0 || *max_new_tokens > 4096 || stop.len() > MAX_STOP => {
                fail(format!("generate needs 1..=4096 max_new_tokens and at most {MAX_STOP} stop strings"))
            }
            JobParams::Train { steps, checkpoint_every, batch_size, hidden, .. }
                if *steps == 0 || *checkpoint_every == 0 || *checkpoint_every > *steps || *batch_size == 0 || *hidden == 0 || *hidden > 8192 =>
            {
                fail("train needs steps ≥ 1, 1 ≤ checkpoint_every ≤ steps, batch_size ≥ 1 and 1 ≤ hidden ≤ 8192".into())
            }
            JobParams::Wasm { fuel_per_item, memory_mib, args } if *fuel_per_item == 0 || *memory_mib == 0 || *memory_mib > 4096 || args.len() > MAX_WASM_ARGS => {
                fail(format!("wasm needs fuel_per_item ≥ 1, 1 ≤ memory_mib ≤ 4096 and at most {MAX_WASM_ARGS} args"))
            }
            _ => Ok(()),
        }
    }

    /// Number of output items a shard's result commitment must contain. Total on any manifest
    /// (a `checkpoint_every` of 0, which [`Self::validate`] refuses, counts as 1), so a caller
    /// holding an unvalidated manifest cannot panic here.
    pub fn output_items(&self, shard: &ShardSpec) -> u32 {
        match &self.params {
            JobParams::Train { steps, checkpoint_every, .. } => steps.div_ceil((*checkpoint_every).max(1)),
            _ => shard.item_count,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_manifest() -> JobManifest {
        JobManifest {
            model: Hash::of(b"model"),
            params: JobParams::Embed { batch_size: 32 },
            class: "cpu.x86_64".parse().unwrap(),
            shards: vec![ShardSpec {
                input: Hash::of(b"in"),
                items_root: Hash::of(b"r"),
                item_count: 10,
                quantity: 60,
            }],
            max_unit_price: Amount(5),
            deadline_ms: 1_000_000,
            policy: VerificationPolicy::Standard,
            constraints: Constraints::default(),
            encrypted: true,
            sources: vec!["http://127.0.0.1:7700".into()],
            key_agent: None,
            output_key: None,
        }
    }

    #[test]
    fn output_items_never_divides_by_zero() {
        // Found by the decode_manifest fuzz target: an unvalidated training manifest with
        // checkpoint_every = 0 made output_items panic.
        let mut m = sample_manifest();
        m.params = JobParams::Train {
            steps: 7,
            checkpoint_every: 0,
            batch_size: 1,
            hidden: 1,
            learning_rate_micros: 1,
            seed: 0,
        };
        assert!(m.validate().is_err());
        assert_eq!(m.output_items(&m.shards[0]), 7);
    }

    #[test]
    fn round_trip_all_kinds() {
        let mut m = sample_manifest();
        for params in [
            JobParams::Embed { batch_size: 32 },
            JobParams::Generate {
                max_new_tokens: 32,
                temperature_milli: 0,
                seed: 7,
                stop: vec!["\n".into()],
            },
            JobParams::Train {
                steps: 300,
                checkpoint_every: 100,
                batch_size: 64,
                hidden: 128,
                learning_rate_micros: 10_000,
                seed: 42,
            },
            JobParams::Wasm {
                fuel_per_item: 1_000_000,
                memory_mib: 64,
                args: vec!["--frames".into(), "3".into()],
            },
        ] {
            m.params = params;
            m.constraints.cluster = None;
            assert_eq!(JobManifest::decode(&m.encode()).unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<JobManifest>(&json).unwrap(), m);
        }
    }

    #[test]
    fn validation_explains() {
        let mut m = sample_manifest();
        assert!(m.validate().is_ok());
        m.policy = VerificationPolicy::None;
        assert!(m.validate().unwrap_err().to_string().contains("only for free jobs"));
        m = sample_manifest();
        m.shards[0].quantity = u64::MAX;
        assert!(m.validate().unwrap_err().to_string().contains("quantity must be 1..="));
        m.shards[0].quantity = MAX_ORDER_QUANTITY;
        m.max_unit_price = Amount(u128::MAX);
        assert!(m.validate().unwrap_err().to_string().contains("overflows"));
        m = sample_manifest();
        m.shards.clear();
        assert!(m.validate().unwrap_err().to_string().contains("at least one shard"));
        m = sample_manifest();
        m.constraints.cluster = Some(ClusterSpec { size: 3, max_pairwise_rtt_ms: 10 });
        assert!(m.validate().unwrap_err().to_string().contains("exactly 3 shards"));
    }

    #[test]
    fn training_output_items_are_checkpoints() {
        let mut m = sample_manifest();
        m.params = JobParams::Train {
            steps: 250,
            checkpoint_every: 100,
            batch_size: 8,
            hidden: 16,
            learning_rate_micros: 1,
            seed: 1,
        };
        assert_eq!(m.output_items(&m.shards[0]), 3);
    }
}
