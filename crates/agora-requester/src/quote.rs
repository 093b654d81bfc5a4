//! `agora job quote`: before any money moves, whether a job can be placed now (and if not,
//! why), what it would cost at recent prices, and how likely cheating would be caught.

use agora_client::client::NodeClient;
use agora_client::types::{MarketClass, OrderList, ProviderList};
use agora_core::manifest::JobManifest;
use agora_core::{AccountId, Amount};
use agora_ledger::audits::{detection_ppm, probability_for, sample_size};
use agora_ledger::market::Order;
use agora_ledger::params::Params;
use serde::Serialize;

/// The answer to a quote.
#[derive(Debug, Clone, Serialize)]
pub struct Quote {
    /// Whether every shard could be matched now.
    pub placeable: bool,
    /// Why not, when not.
    pub reasons: Vec<String>,
    /// Providers that satisfy the job's constraints.
    pub eligible_providers: Vec<AccountId>,
    /// Device-seconds the job reserves.
    pub quantity: u64,
    /// Expected price per device-second (recent clearing price, else the best eligible ask).
    pub expected_unit_price: Option<Amount>,
    /// Expected total at that price.
    pub expected_cost: Option<Amount>,
    /// Most escrow the job locks.
    pub max_cost: Amount,
    /// Audit probability for an eligible provider (the most likely one), as a fraction.
    pub audit_probability: f64,
    /// Items sampled per audited shard (for the largest shard).
    pub sample: u32,
    /// Probability of catching cheating on 5% of a shard's items.
    pub detection_probability: f64,
}

/// Quotes `m` for `requester` against the chain behind `client`.
pub async fn quote(client: &NodeClient, m: &JobManifest, requester: &AccountId) -> anyhow::Result<Quote> {
    let params: Params = client.params().await?;
    let mut reasons = vec![];
    if let Err(e) = m.validate() {
        reasons.push(e.to_string());
    }
    let providers: ProviderList = client.get("/api/v1/providers").await?;
    let orders: OrderList = client.get(&format!("/api/v1/orders?class={}&limit=1000", m.class)).await?;
    let market: Vec<MarketClass> = client.get("/api/v1/market").await?;
    let height = client.status().await?.height;
    let c = &m.constraints;
    let kind = m.kind();
    let eligible: Vec<_> = providers
        .iter()
        .filter(|p| {
            let prof = &p.value.profile;
            p.id != *requester
                && p.value.active
                && p.value.ejected_until <= height
                && prof.classes.contains(&m.class)
                && prof.kinds.contains(&kind)
                && c.region.as_ref().is_none_or(|r| *r == prof.region)
                && c.max_carbon_g_per_kwh.is_none_or(|max| prof.carbon_g_per_kwh <= max)
                && c.max_latency
                    .as_ref()
                    .is_none_or(|l| prof.coord.predicted_rtt_us(&l.from) <= u64::from(l.max_rtt_ms) * 1000)
        })
        .collect();
    if eligible.is_empty() {
        reasons.push(format!(
            "no active provider sells {} for {kind} jobs{}{}",
            m.class,
            c.region.as_ref().map(|r| format!(" in region {r}")).unwrap_or_default(),
            c.max_carbon_g_per_kwh.map(|x| format!(" at ≤ {x} gCO2e/kWh")).unwrap_or_default()
        ));
    }
    let asks: Vec<(Amount, u64)> = orders
        .iter()
        .filter_map(|o| match &o.value {
            Order::Ask(a) if eligible.iter().any(|p| p.id == a.provider) => {
                Some((a.min_unit_price, a.quantity))
            }
            _ => None,
        })
        .collect();
    let biggest = m.shards.iter().map(|s| s.quantity).max().unwrap_or(0);
    if !eligible.is_empty() && !asks.iter().any(|(_, q)| *q >= biggest) {
        reasons.push(format!(
            "no eligible provider has an open ask with room for a {biggest} device-second shard right now"
        ));
    }
    let best_ask = asks.iter().map(|(p, _)| *p).min();
    if let Some(best) = best_ask
        && best > m.max_unit_price
    {
        reasons.push(format!(
            "the cheapest eligible ask is {best} per device-second, above the maximum price {}",
            m.max_unit_price
        ));
    }
    if let (Some(n), Some(cluster)) = (Some(eligible.len()), c.cluster)
        && n < usize::from(cluster.size)
    {
        reasons.push(format!("a cluster of {} needs that many eligible providers, {n} exist", cluster.size));
    }
    let quantity = m.total_quantity().unwrap_or(u64::MAX);
    let last = market.iter().find(|x| x.class == m.class.to_string()).and_then(|x| x.stats.last_price());
    let expected = last.or(best_ask).map(|p| p.min(m.max_unit_price));
    let likely = eligible.iter().min_by_key(|p| p.value.trust.clean_streak);
    let value =
        expected.unwrap_or(m.max_unit_price).checked_mul(u128::from(biggest)).unwrap_or(Amount(u128::MAX));
    let p = likely
        .map_or(1_000_000, |p| probability_for(&params, &p.value.trust, p.value.collateral, value, m.policy));
    let largest_items = m.shards.iter().map(|s| m.output_items(s)).max().unwrap_or(0);
    let k = sample_size(&params, kind, m.policy, largest_items);
    let detect =
        u64::from(p) * u64::from(detection_ppm(Params::u64(params.detect_fraction_bps), k)) / 1_000_000;
    Ok(Quote {
        placeable: reasons.is_empty(),
        reasons,
        eligible_providers: eligible.iter().map(|p| p.id).collect(),
        quantity,
        expected_unit_price: expected,
        expected_cost: expected.and_then(|p| p.checked_mul(u128::from(quantity))),
        max_cost: m.max_cost().unwrap_or(Amount(u128::MAX)),
        audit_probability: f64::from(p) / 1e6,
        sample: k,
        detection_probability: detect as f64 / 1e6,
    })
}
