//! The gateway's settings: `[gateway]` and `[gateway.session]` of a node's config file.

use agora_core::Amount;
use serde::{Deserialize, Serialize};

/// Settings of the OpenAI-compatible gateway (every node serves it; these are the terms of the
/// jobs it submits). Omitted fields take the job file's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySection {
    /// Resource class to buy.
    #[serde(default)]
    pub class: Option<String>,
    /// Highest price per device-second, base units.
    #[serde(default = "default_gateway_price")]
    pub max_price: Amount,
    /// Verification policy (`standard`, `redundant:<n>`).
    #[serde(default)]
    pub policy: Option<String>,
    /// Region constraint.
    #[serde(default)]
    pub region: Option<String>,
    /// Carbon cap, gCO2e/kWh.
    #[serde(default)]
    pub max_carbon: Option<u32>,
    /// Job deadline (`10m`).
    #[serde(default = "default_gateway_deadline")]
    pub deadline: String,
    /// How long a request may wait for its verified answer (`15m`).
    #[serde(default = "default_gateway_timeout")]
    pub timeout: String,
    /// Serve requests from warm serving sessions on these terms (absent: every request is a
    /// job). A request can still ask for job mode (`"agora": {"mode": "job"}` in its body).
    #[serde(default)]
    pub session: Option<GatewaySessionSection>,
}

/// `[gateway.session]`: the terms of the serving sessions the gateway opens, one per API key
/// and kind of request, renewed before they end or run out of escrow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySessionSection {
    /// Escrow locked per session (the key's budget is charged it until the session settles).
    pub escrow: Amount,
    /// How long a session serves (`1h`).
    #[serde(default = "default_session_duration")]
    pub duration: String,
    /// Providers per session (capacity and failover).
    #[serde(default = "default_session_providers")]
    pub providers: u8,
    /// Offered per 1,000 prompt tokens.
    pub prompt_per_1k: Amount,
    /// Offered per 1,000 completion tokens.
    pub completion_per_1k: Amount,
    /// Offered per embedded item.
    pub per_item: Amount,
    /// Target time to first token, ms (0: none).
    #[serde(default)]
    pub ttft_ms: u32,
    /// How long to wait for a new session's first provider before answering in job mode
    /// (`30s`).
    #[serde(default = "default_session_match_timeout")]
    pub match_timeout: String,
}

fn default_session_duration() -> String {
    "1h".into()
}
fn default_session_providers() -> u8 {
    2
}
fn default_session_match_timeout() -> String {
    "30s".into()
}

fn default_gateway_price() -> Amount {
    Amount(100)
}
fn default_gateway_deadline() -> String {
    "10m".into()
}
fn default_gateway_timeout() -> String {
    "15m".into()
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            class: None,
            max_price: default_gateway_price(),
            policy: None,
            region: None,
            max_carbon: None,
            deadline: default_gateway_deadline(),
            timeout: default_gateway_timeout(),
            session: None,
        }
    }
}

impl GatewaySection {
    /// The `[market]` table of a job file with these terms.
    pub fn market_table(&self) -> toml::Table {
        let mut m = toml::Table::new();
        m.insert("max_price".into(), toml::Value::String(self.max_price.to_string()));
        m.insert("deadline".into(), self.deadline.clone().into());
        if let Some(c) = &self.class {
            m.insert("class".into(), c.clone().into());
        }
        if let Some(p) = &self.policy {
            m.insert("policy".into(), p.clone().into());
        }
        let mut constraints = toml::Table::new();
        if let Some(r) = &self.region {
            constraints.insert("region".into(), r.clone().into());
        }
        if let Some(c) = self.max_carbon {
            constraints.insert("max_carbon".into(), i64::from(c).into());
        }
        if !constraints.is_empty() {
            m.insert("constraints".into(), constraints.into());
        }
        m
    }
}
