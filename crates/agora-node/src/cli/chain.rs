//! `agora chain ...`: status, blocks, transactions.

use super::Global;
use super::output::print;
use agora_chain::TxStatus;
use agora_core::Hash;
use clap::Subcommand;

/// `agora chain ...`
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Height, state root and committee of the chain.
    Status,
    /// A finalized block with its receipts (`latest` for the newest).
    Block {
        /// Height, or `latest`.
        height: String,
    },
    /// Where a transaction is.
    Tx {
        /// Transaction id (hex).
        id: Hash,
    },
}

/// Prints a transaction status.
pub fn print_tx(json: bool, id: &Hash, status: &TxStatus) {
    print(json, &serde_json::json!({"id": id, "status": status}), |_| match status {
        TxStatus::Pending => format!("transaction {id}: pending in the node's mempool"),
        TxStatus::Unknown => format!("transaction {id}: unknown to this node"),
        TxStatus::Finalized { height, index, receipt } => {
            let outcome = match &receipt.error {
                None => "ok".to_string(),
                Some(e) => format!("failed: {e} (fee charged)"),
            };
            format!("transaction {id}: finalized in block {height} (position {index}): {outcome}")
        }
    });
}

/// Runs a chain command.
pub async fn run(g: &Global, cmd: ChainCommand) -> anyhow::Result<()> {
    let client = g.client();
    match cmd {
        ChainCommand::Status => {
            let s = client.status().await?;
            print(g.json, &s, |s| {
                format!(
                    "chain     {}\nnode      {} ({})\nheight    {}\nblock     {}\nstate     {}\nepoch     {}\ncommittee {} validators\nmempool   {} txs",
                    s.chain_id,
                    s.node,
                    s.roles.join(", "),
                    s.height,
                    s.digest,
                    s.state_root,
                    s.epoch,
                    s.committee.len(),
                    s.mempool_txs
                )
            });
        }
        ChainCommand::Block { height } => {
            let h = if height == "latest" {
                client.status().await?.height
            } else {
                height.parse().map_err(|_| anyhow::anyhow!("height must be a number or `latest`"))?
            };
            let b = client.block(h).await?;
            print(g.json, &b, |b| {
                let hd = &b.block.header;
                let mut s = format!(
                    "block {} {}\ntime {} ms  proposer {}\nstate root (parent's result) {}\n{} transactions, {} block events",
                    hd.height,
                    b.digest,
                    hd.timestamp_ms,
                    hd.proposer,
                    hd.state_root,
                    b.block.txs.len(),
                    b.events.len()
                );
                for (tx, r) in b.block.txs.iter().zip(&b.receipts) {
                    s += &format!(
                        "\n  {} {} {}",
                        r.tx,
                        tx.tx.payload.name(),
                        r.error.as_deref().unwrap_or("ok")
                    );
                }
                s
            });
        }
        ChainCommand::Tx { id } => {
            let status = client.tx(&id).await?;
            print_tx(g.json, &id, &status);
        }
    }
    Ok(())
}
