//! `agora gateway key ...`: API keys of a node's OpenAI-compatible gateway. A key maps to an
//! account the node signs jobs for, with a budget; the node reads its keys on every request,
//! so keys added here work on a running node at once.

use super::Global;
use super::output::print;
use crate::config::{NodeConfig, load_key};
use crate::gateway::keys::KeyStore;
use agora_core::Amount;
use clap::Subcommand;
use std::path::PathBuf;

/// `agora gateway ...`
#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

/// `agora gateway key ...`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key (printed once) paying from a new or given account.
    Add {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// Key name (letters, digits, - and _).
        #[arg(long)]
        name: String,
        /// Most the key may spend in total, base units.
        #[arg(long)]
        budget: Amount,
        /// Pay from this account key file instead of a new account (it is copied into the
        /// node's gateway directory).
        #[arg(long)]
        account_key: Option<PathBuf>,
    },
    /// List the node's API keys with their accounts, budgets and spending.
    Ls {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Runs a gateway command.
pub async fn run(g: &Global, cmd: GatewayCommand) -> anyhow::Result<()> {
    let GatewayCommand::Key(cmd) = cmd;
    match cmd {
        KeyCommand::Add { config, name, budget, account_key } => {
            let store = KeyStore::new(&NodeConfig::load(&config)?.data_dir);
            let account = account_key.map(|p| load_key(&p)).transpose()?;
            let (api_key, account) = store.add(&name, budget, account)?;
            let out =
                serde_json::json!({"name": name, "api_key": api_key, "account": account, "budget": budget});
            print(g.json, &out, |_| {
                format!(
                    "API key {name}: {api_key}\n(shown once: keep it). It pays from account {account}, up to {budget}; \
                     fund that account with `agora wallet transfer {account} <AMOUNT>`."
                )
            });
        }
        KeyCommand::Ls { config } => {
            let store = KeyStore::new(&NodeConfig::load(&config)?.data_dir);
            let mut out = vec![];
            for k in store.list()? {
                let account = store.account(&k)?.public();
                out.push(serde_json::json!({
                    "name": k.name, "account": account, "budget": k.budget, "spent": store.spent(&k.name)?,
                }));
            }
            print(g.json, &out, |l| {
                if l.is_empty() {
                    return "no API keys; create one with `agora gateway key add`".into();
                }
                l.iter()
                    .map(|k| {
                        format!(
                            "{} account {} spent {} of {}",
                            k["name"], k["account"], k["spent"], k["budget"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}
