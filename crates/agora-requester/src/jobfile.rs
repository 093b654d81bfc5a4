//! The job file a requester submits: the local job description (`kind`, `model`, `inputs`,
//! `[params]`, as for `agora run --local`) plus a `[market]` table with the terms.
//!
//! ```toml
//! kind = "embed"
//! model = "all-minilm-l6-v2"       # a known model, or a file/directory path
//! inputs = ["corpus.txt"]          # one item per line for embed and generate
//!
//! [params]
//! batch_size = 32
//!
//! [market]
//! class = "cpu.x86_64"             # what hardware to buy
//! shards = 3                       # split the items over up to 3 providers
//! max_price = 20                   # highest price per device-second, base units
//! deadline = "15m"                 # s, m or h
//! policy = "standard"              # standard | redundant:<2..5> | none (free jobs only)
//! encrypted = true                 # inputs and outputs are encrypted (default)
//! seconds_per_item = 1.0           # optional: device-seconds reserved per item
//!
//! [market.constraints]             # all optional
//! region = "local"
//! max_carbon = 300                 # gCO2e/kWh
//! max_latency_ms = 50              # predicted RTT from the requester's coordinate
//! cluster_rtt_ms = 5               # all shards on distinct providers this close together
//! ```

use agora_core::manifest::{ClusterSpec, Constraints, LatencyBound, VerificationPolicy};
use agora_core::{Amount, Coord, JobKind, ResourceClass};
use agora_runtime::local::LocalJob;
use anyhow::{Context, bail};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMarket {
    class: Option<String>,
    shards: Option<u32>,
    max_price: Amount,
    deadline: Option<String>,
    policy: Option<String>,
    encrypted: Option<bool>,
    seconds_per_item: Option<f64>,
    #[serde(default)]
    constraints: RawConstraints,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConstraints {
    region: Option<String>,
    max_carbon: Option<u32>,
    max_latency_ms: Option<u32>,
    cluster_rtt_ms: Option<u32>,
}

/// A parsed job file.
#[derive(Debug, Clone)]
pub struct JobFile {
    /// What to compute (shared with local runs).
    pub local: LocalJob,
    /// Class to buy.
    pub class: ResourceClass,
    /// Number of shards.
    pub shards: u32,
    /// Highest price per device-second.
    pub max_price: Amount,
    /// Time allowed, ms.
    pub deadline_ms: u64,
    /// Verification.
    pub policy: VerificationPolicy,
    /// Encrypt inputs and outputs.
    pub encrypted: bool,
    /// Device-seconds reserved per item.
    pub seconds_per_item: f64,
    /// Placement constraints.
    pub constraints: Constraints,
}

/// Parses `15m`, `90s`, `2h`.
pub fn parse_duration(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("duration {s:?} must look like 90s, 15m or 2h"))?;
    let mult = match unit {
        "s" | "" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => bail!("duration {s:?} must look like 90s, 15m or 2h"),
    };
    n.checked_mul(mult).context("duration overflows")
}

fn parse_policy(s: &str) -> anyhow::Result<VerificationPolicy> {
    Ok(match s.split_once(':') {
        None if s == "standard" => VerificationPolicy::Standard,
        None if s == "none" => VerificationPolicy::None,
        Some(("redundant", n)) => VerificationPolicy::Redundant {
            replicas: n.parse().with_context(|| format!("redundant:<replicas> needs a number, got {n:?}"))?,
        },
        _ => bail!("policy must be standard, redundant:<2..5> or none, got {s:?}"),
    })
}

/// Default device-seconds reserved per item, by kind (generous: unused time is refunded).
fn default_seconds_per_item(kind: JobKind) -> f64 {
    match kind {
        JobKind::Embed => 0.5,
        JobKind::Generate => 8.0,
        JobKind::Train => 0.05,
        JobKind::Wasm => 2.0,
    }
}

impl JobFile {
    /// Reads a job file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read job file {}", path.display()))?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("job file {} is not valid", path.display()))
    }

    /// Parses job file text (relative paths against `base`).
    pub fn parse(text: &str, base: &Path) -> anyhow::Result<Self> {
        let mut table: toml::Table = toml::from_str(text)?;
        let market =
            table.remove("market").context("the job file needs a [market] table (max_price at least)")?;
        let local_text = toml::to_string(&table)?;
        let local = LocalJob::parse(&local_text, base).map_err(|e| anyhow::anyhow!(e))?;
        // Refused here, before anything is uploaded or paid, rather than by the chain later.
        agora_core::codec::check_canonical(&local.params)
            .map_err(|e| anyhow::anyhow!("[params] exceed the network's bounds: {e}"))?;
        let m: RawMarket = market.try_into().context("[market]")?;
        let class: ResourceClass = m
            .class
            .as_deref()
            .unwrap_or("cpu.x86_64")
            .parse()
            .map_err(|e| anyhow::anyhow!("[market] class: {e}"))?;
        let shards = m.shards.unwrap_or(1);
        if shards == 0 || shards as usize > agora_core::manifest::MAX_SHARDS {
            bail!("[market] shards must be 1..={}", agora_core::manifest::MAX_SHARDS);
        }
        let seconds_per_item = m.seconds_per_item.unwrap_or(default_seconds_per_item(local.kind()));
        if !(seconds_per_item.is_finite() && seconds_per_item > 0.0) {
            bail!("[market] seconds_per_item must be a positive number");
        }
        let c = m.constraints;
        let region = c
            .region
            .map(|r| r.parse())
            .transpose()
            .map_err(|e| anyhow::anyhow!("[market.constraints] region: {e}"))?;
        let cluster =
            c.cluster_rtt_ms.map(|rtt| ClusterSpec { size: shards as u8, max_pairwise_rtt_ms: rtt });
        Ok(Self {
            class,
            shards,
            max_price: m.max_price,
            deadline_ms: parse_duration(m.deadline.as_deref().unwrap_or("30m"))?,
            policy: parse_policy(m.policy.as_deref().unwrap_or("standard"))?,
            encrypted: m.encrypted.unwrap_or(true),
            seconds_per_item,
            constraints: Constraints {
                region,
                max_carbon_g_per_kwh: c.max_carbon,
                max_latency: c
                    .max_latency_ms
                    .map(|max_rtt_ms| LatencyBound { max_rtt_ms, from: Coord::default() }),
                cluster,
            },
            local,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"
kind = "embed"
model = "all-minilm-l6-v2"
inputs = ["corpus.txt"]
[params]
batch_size = 8
[market]
shards = 3
max_price = 20
deadline = "15m"
policy = "redundant:3"
[market.constraints]
region = "local"
max_carbon = 300
"#;

    #[test]
    fn parses_terms() {
        let j = JobFile::parse(JOB, Path::new("/tmp")).unwrap();
        assert_eq!(j.shards, 3);
        assert_eq!(j.deadline_ms, 900_000);
        assert_eq!(j.policy, VerificationPolicy::Redundant { replicas: 3 });
        assert_eq!(j.constraints.max_carbon_g_per_kwh, Some(300));
        assert_eq!(j.local.inputs[0], Path::new("/tmp/corpus.txt"));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let no_market = JOB.split("[market]").next().unwrap();
        assert!(JobFile::parse(no_market, Path::new(".")).unwrap_err().to_string().contains("[market]"));
        let neg = JOB.replace("max_price = 20", "max_price = -5");
        assert!(format!("{:#}", JobFile::parse(&neg, Path::new(".")).unwrap_err()).contains("negative"));
        let bad_policy = JOB.replace("redundant:3", "paranoid");
        assert!(JobFile::parse(&bad_policy, Path::new(".")).unwrap_err().to_string().contains("policy"));
        assert!(parse_duration("15x").is_err());
        assert_eq!(parse_duration("2h").unwrap(), 7_200_000);
        let bad_param = JOB.replace("batch_size = 8", "batchsize = 8");
        assert!(
            JobFile::parse(&bad_param, Path::new(".")).unwrap_err().to_string().contains("unknown parameter")
        );
    }

    #[test]
    fn parameters_beyond_the_network_bounds_are_refused_before_anything_moves() {
        // What the gateway builds from an OpenAI request with a 300-character `stop` string:
        // no peer could decode the job, so it must be refused here, not at the chain.
        let generate = |stop: &str| {
            format!(
                "kind = \"generate\"\nmodel = \"smollm2-135m-instruct\"\ninputs = [\"p.txt\"]\n\
                 [params]\nstop = [\"{stop}\"]\n[market]\nmax_price = 20\n"
            )
        };
        let err = JobFile::parse(&generate(&"x".repeat(300)), Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("JobParams.stop: length 300 exceeds the limit of 256"), "{err}");
        JobFile::parse(&generate(&"x".repeat(256)), Path::new(".")).expect("the limit itself is fine");
    }
}
