//! `agora devnet`: start (or resume) a local network and keep it running until Ctrl-C.

use super::Global;
use super::output::print;
use crate::devnet::{Devnet, DevnetOptions};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// `agora devnet` options.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Number of validator nodes.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Directory for keys, configs, logs and chain data (re-use it to resume the chain).
    #[arg(long, default_value = "devnet")]
    pub dir: PathBuf,
    /// First port: node i serves its API on port-base+i and p2p on port-base+100+i.
    #[arg(long, default_value_t = 7700)]
    pub port_base: u16,
}

/// Runs `agora devnet`.
pub async fn run(g: &Global, a: DevnetArgs) -> anyhow::Result<()> {
    let opts = DevnetOptions { dir: a.dir.clone(), validators: a.validators, port_base: a.port_base };
    let mut net = Devnet::start(&opts).await?;
    let urls = net.urls();
    if !g.json {
        eprintln!("starting {} nodes in {} ...", urls.len(), a.dir.display());
    }
    let height = match net.wait_ready(Duration::from_secs(120)).await {
        Ok(h) => h,
        Err(e) => {
            net.stop().await;
            return Err(e);
        }
    };
    let faucet = a.dir.join("faucet.key");
    print(
        g.json,
        &serde_json::json!({"nodes": urls, "height": height, "faucet_key": faucet, "dir": a.dir}),
        |_| {
            let mut s = String::from("devnet running (Ctrl-C to stop)\n");
            for (i, u) in urls.iter().enumerate() {
                s += &format!("  node{i}  {u}   (log: {})\n", a.dir.join(format!("node{i}.log")).display());
            }
            s += &format!(
                "faucet key: {}\ntry: agora --node {} wallet transfer <ACCOUNT> 1000 --key {}",
                faucet.display(),
                urls[0],
                faucet.display()
            );
            s
        },
    );
    crate::run::shutdown_signal().await;
    if !g.json {
        eprintln!("stopping ...");
    }
    net.stop().await;
    Ok(())
}
