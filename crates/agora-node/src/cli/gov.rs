//! `agora gov ...`: parameter proposals, votes, and the parameter table.

use super::Global;
use super::output::print;
use crate::api::types::ProposalList;
use agora_core::Amount;
use agora_core::tx::{ParamChange, TxPayload};
use anyhow::{Context, bail};
use clap::Subcommand;
use std::time::Duration;

/// `agora gov ...`
#[derive(Debug, Subcommand)]
pub enum GovCommand {
    /// Propose parameter changes (only accounts with bonded stake may propose).
    Propose {
        /// Changes as NAME=VALUE (repeatable); `agora gov params` lists the names.
        #[arg(long = "set", required = true)]
        changes: Vec<String>,
        /// Why.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Vote on a proposal with your bonded stake.
    Vote {
        /// Proposal id.
        proposal: u64,
        /// `yes` or `no`.
        #[arg(value_parser = ["yes", "no"])]
        choice: String,
    },
    /// List proposals.
    List,
    /// Show every protocol parameter with its bounds.
    Params,
}

fn parse_change(s: &str) -> anyhow::Result<ParamChange> {
    let (name, value) = s.split_once('=').with_context(|| format!("{s:?} is not NAME=VALUE"))?;
    let value: u128 = value
        .trim()
        .replace('_', "")
        .parse()
        .with_context(|| format!("value of {name} must be a whole number"))?;
    agora_ledger::Params::check(name.trim(), value)?;
    Ok(ParamChange { name: name.trim().to_string(), value })
}

/// Runs a governance command.
pub async fn run(g: &Global, cmd: GovCommand) -> anyhow::Result<()> {
    let client = g.client();
    match cmd {
        GovCommand::Propose { changes, description } => {
            let changes = changes.iter().map(|c| parse_change(c)).collect::<anyhow::Result<Vec<_>>>()?;
            let key = g.signer()?;
            let id = client.send(&key, Amount(10), TxPayload::Propose { changes, description }).await?;
            let status = client.wait_tx(&id, Duration::from_secs(60)).await?;
            if let agora_chain::TxStatus::Finalized { receipt, .. } = &status
                && let Some(e) = &receipt.error
            {
                bail!("the proposal was refused: {e}");
            }
            super::chain::print_tx(g.json, &id, &status);
        }
        GovCommand::Vote { proposal, choice } => {
            let key = g.signer()?;
            let id =
                client.send(&key, Amount(10), TxPayload::Vote { proposal, approve: choice == "yes" }).await?;
            let status = client.wait_tx(&id, Duration::from_secs(60)).await?;
            if let agora_chain::TxStatus::Finalized { receipt, .. } = &status
                && let Some(e) = &receipt.error
            {
                bail!("the vote was refused: {e}");
            }
            super::chain::print_tx(g.json, &id, &status);
        }
        GovCommand::List => {
            let list: ProposalList = client.get("/api/v1/proposals").await?;
            print(g.json, &list, |l| {
                if l.is_empty() {
                    return "no proposals".into();
                }
                l.iter()
                    .map(|p| {
                        let changes: Vec<String> =
                            p.value.changes.iter().map(|c| format!("{}={}", c.name, c.value)).collect();
                        format!(
                            "#{} {:?} ends at {} ms yes {} no {} [{}] {}",
                            p.id,
                            p.value.status,
                            p.value.end_ms,
                            p.value.yes,
                            p.value.no,
                            changes.join(", "),
                            p.value.description
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        GovCommand::Params => {
            let params: Vec<serde_json::Value> = client.get("/api/v1/params").await?;
            print(g.json, &params, |ps| {
                ps.iter()
                    .map(|p| {
                        format!(
                            "{:<34} {:>16}  [{} .. {}]  {}",
                            p["name"].as_str().unwrap_or(""),
                            p["value"].as_str().unwrap_or(""),
                            p["min"].as_str().unwrap_or(""),
                            p["max"].as_str().unwrap_or(""),
                            p["doc"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_checked_locally() {
        assert_eq!(parse_change("min_fee=1_000").unwrap().value, 1000);
        assert!(parse_change("min_fee").is_err());
        assert!(parse_change("nope=1").unwrap_err().to_string().contains("unknown parameter"));
        assert!(parse_change("audit_floor_ppm=2000000").is_err());
    }
}
