//! `agora provider ...`: join the market (probe hardware, benchmark, register with
//! collateral, write a node config) and inspect a provider's record.

use super::Global;
use super::output::print;
use crate::config::{ApiSection, NodeConfig, ProviderSection};
use crate::provider::agent::build_profile;
use crate::sender::TxSender;
use agora_core::tx::TxPayload;
use agora_core::{AccountId, Amount, Coord};
use anyhow::Context;
use clap::Subcommand;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `agora provider ...`
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Probe this machine, run the standard benchmark, register as a provider with collateral,
    /// and write the config to serve with `agora node run --config ...`.
    Join {
        /// Collateral to lock (slashable if you cheat).
        #[arg(long)]
        stake: Amount,
        /// `fixed:<price per device-second>`, `auto` or `auto:<floor>`.
        #[arg(long, default_value = "auto")]
        price: String,
        /// Region.
        #[arg(long, default_value = "local")]
        region: String,
        /// Declared grid carbon intensity, gCO2e/kWh.
        #[arg(long, default_value_t = 400)]
        carbon: u32,
        /// Device-seconds to offer per ask.
        #[arg(long, default_value_t = 3600)]
        capacity: u64,
        /// Address this provider's node will serve on (its registered endpoint).
        #[arg(long, default_value = "127.0.0.1:7710")]
        listen: SocketAddr,
        /// Serve sessions, accepting at least these prices: per 1,000 prompt tokens, per 1,000
        /// completion tokens, per embedded item (e.g. `1,2,1`). Without it, no sessions.
        #[arg(long, value_name = "PROMPT,COMPLETION,ITEM")]
        serve_floor: Option<String>,
        /// Where to write the node config (default: <data-dir>/provider.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// A provider's registration, trust record, earnings and leases (default: your account).
    Status {
        /// Provider account.
        account: Option<AccountId>,
    },
}

/// Runs a provider command.
pub async fn run(g: &Global, cmd: ProviderCommand) -> anyhow::Result<()> {
    let client = g.client();
    match cmd {
        ProviderCommand::Join { stake, price, region, carbon, capacity, listen, serve_floor, config } => {
            let key = g.signer()?;
            let section = ProviderSection {
                upstream: Some(g.node.clone()),
                collateral: stake,
                price,
                region,
                carbon_g_per_kwh: carbon,
                capacity,
                cheat_bps: 0,
                cheat_every_lease: false,
                garble_outputs: false,
                omit_receipts: false,
                alter_answers_bps: 0,
                serve: serve_floor.as_deref().map(crate::config::ServeSection::parse_floor).transpose()?,
            };
            let endpoint = format!("http://{listen}");
            if !g.json {
                eprintln!("probing hardware and running the standard benchmark ...");
            }
            let profile = build_profile(&section, &endpoint, Coord::default()).await?;
            let summary = serde_json::json!({"account": key.public(), "hardware": profile.hardware, "classes": profile.classes, "endpoint": endpoint});
            let sender = TxSender::new(key.clone(), client.clone());
            if client.provider(&key.public()).await.is_err() {
                sender
                    .send(TxPayload::RegisterProvider { profile, collateral: stake }, Duration::from_secs(60))
                    .await
                    .context("registering")?;
            }
            let path = config.unwrap_or_else(|| g.data_dir.join("provider.toml"));
            let cfg = NodeConfig {
                name: format!("provider-{}", key.public().short()),
                data_dir: g.data_dir.join("provider"),
                key_file: g.wallet_path(),
                genesis_file: None,
                api: ApiSection::new(listen),
                validator: None,
                provider: Some(section),
                gateway: Default::default(),
                worker_threads: None,
            };
            cfg.save(&path)?;
            print(g.json, &summary, |s| {
                format!(
                    "registered provider {}\nhardware: {}\nclasses: {}\nnow serve: agora node run --config {}",
                    key.public(),
                    s["hardware"],
                    s["classes"],
                    path.display()
                )
            });
        }
        ProviderCommand::Status { account } => {
            let account = match account {
                Some(a) => a,
                None => g.signer()?.public(),
            };
            let p = client.provider(&account).await?;
            let leases: crate::api::types::LeaseList =
                client.get(&format!("/api/v1/leases?account={account}&limit=50")).await?;
            let view = serde_json::json!({"provider": p, "leases": leases});
            print(g.json, &view, |_| {
                let mut s = format!(
                    "provider {account} ({})\nregion {} · carbon {} g/kWh · price {:?}\ncollateral {} · earned {} · {}\ntrust: {} full clean audits in a row and {:.0}% of the next (an audit counts by its sample), {} leases settled, {} failed, {} frauds",
                    if p.active { "active" } else { "inactive" },
                    p.profile.region,
                    p.profile.carbon_g_per_kwh,
                    p.profile.price_policy,
                    p.collateral,
                    p.earned,
                    if p.ejected_until > 0 {
                        format!("ejected until height {}", p.ejected_until)
                    } else {
                        "in good standing".into()
                    },
                    p.trust.clean_streak,
                    p.trust.clean_credit_ppm as f64 / 1e4,
                    p.trust.leases_settled,
                    p.trust.leases_failed,
                    p.trust.frauds
                );
                for l in leases.iter().take(10) {
                    s += &format!(
                        "\n  lease {} job {} {:?} {} units @ {}",
                        l.id, l.value.job, l.value.status, l.value.quantity, l.value.seller_price
                    );
                }
                s
            });
        }
    }
    Ok(())
}
