//! `agora init` and `agora wallet ...`: keys, balances, transfers.

use super::Global;
use super::output::print;
use crate::config::write_key;
use agora_core::tx::TxPayload;
use agora_core::{AccountId, Amount, SecretKey};
use clap::Subcommand;
use std::path::PathBuf;
use std::time::Duration;

/// `agora wallet ...`
#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Create a new key file and print its account id.
    New {
        /// Where to write the key (default: the wallet in the data directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the account id of the signing key.
    Show,
    /// Print an account's balance and nonce (default: the signing key's account).
    Balance {
        /// Account id (hex).
        account: Option<AccountId>,
    },
    /// Send tokens and wait until the transfer is finalized.
    Transfer {
        /// Recipient account id (hex).
        to: AccountId,
        /// Amount in base units.
        amount: Amount,
        /// Fee in base units.
        #[arg(long, default_value = "10")]
        fee: Amount,
        /// Return as soon as the node accepts the transaction.
        #[arg(long)]
        no_wait: bool,
    },
}

/// `agora init`: creates the data directory and a wallet key.
pub fn init(g: &Global) -> anyhow::Result<()> {
    let path = g.data_dir.join("wallet.key");
    if path.exists() {
        let key = crate::config::load_key(&path)?;
        print(
            g.json,
            &serde_json::json!({"account": key.public(), "key_file": path, "created": false}),
            |_| format!("already initialised: account {} (key {})", key.public(), path.display()),
        );
        return Ok(());
    }
    let key = SecretKey::generate();
    write_key(&path, &key)?;
    print(g.json, &serde_json::json!({"account": key.public(), "key_file": path, "created": true}), |_| {
        format!(
            "created wallet {}\naccount {}\nfund it from a devnet faucet: agora wallet transfer {} 1000000 --key <devnet>/faucet.key",
            path.display(),
            key.public(),
            key.public()
        )
    });
    Ok(())
}

/// Runs a wallet command.
pub async fn run(g: &Global, cmd: WalletCommand) -> anyhow::Result<()> {
    match cmd {
        WalletCommand::New { out } => {
            let path = out.unwrap_or_else(|| g.wallet_path());
            let key = SecretKey::generate();
            write_key(&path, &key)?;
            print(g.json, &serde_json::json!({"account": key.public(), "key_file": path}), |_| {
                format!("account {}\nkey written to {}", key.public(), path.display())
            });
        }
        WalletCommand::Show => {
            let key = g.signer()?;
            print(g.json, &serde_json::json!({"account": key.public()}), |_| key.public().to_string());
        }
        WalletCommand::Balance { account } => {
            let account = match account {
                Some(a) => a,
                None => g.signer()?.public(),
            };
            let view = g.client().account(&account).await?;
            print(g.json, &view, |v| {
                let mut s = format!(
                    "account {}\nbalance {}\nnonce   {}\nheight  {}",
                    v.account, v.state.balance, v.state.nonce, v.height
                );
                if let Some(val) = &v.validator {
                    s += &format!("\nstake   {}", val.stake);
                }
                if let Some(p) = &v.provider {
                    s += &format!("\nprovider collateral {} (earned {})", p.collateral, p.earned);
                }
                s
            });
        }
        WalletCommand::Transfer { to, amount, fee, no_wait } => {
            let key = g.signer()?;
            let client = g.client();
            let id = client.send(&key, fee, TxPayload::Transfer { to, amount }).await?;
            if no_wait {
                print(g.json, &serde_json::json!({"id": id, "status": "pending"}), |_| {
                    format!("submitted {id}")
                });
                return Ok(());
            }
            let status = client.wait_tx(&id, Duration::from_secs(60)).await?;
            super::chain::print_tx(g.json, &id, &status);
        }
    }
    Ok(())
}
