//! `agora devnet`: start (or resume) a local network and keep it running until Ctrl-C.

use super::Global;
use crate::devnet::{Devnet, DevnetOptions};
use crate::provider::sessions::WindowPolicy;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// `agora devnet` options.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Number of validator nodes.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Number of provider-only nodes (each registers, stakes collateral and sells CPU time).
    #[arg(long, default_value_t = 0)]
    pub providers: usize,
    /// How many of the providers return wrong results, to watch audits catch and slash them.
    #[arg(long, default_value_t = 0)]
    pub cheaters: usize,
    /// Share of output items a cheater corrupts, basis points (10000 = every item).
    #[arg(long, default_value_t = crate::devnet::CHEATER_BPS, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub cheat_bps: u32,
    /// Cheaters commit their true outputs but store an encrypted job's output blob under a key
    /// the requester cannot derive, instead of corrupting items: only the requester's check of
    /// the delivered outputs can tell, and its dispute makes it a non-delivery.
    #[arg(long, requires = "cheaters")]
    pub cheat_blob: bool,
    /// Cheaters serve sessions but never commit their receipts (so nothing they served can be
    /// audited), instead of corrupting items: the gateway proves the omission once no window
    /// can hold them any more, and they are slashed.
    #[arg(long, requires = "cheaters", conflicts_with = "cheat_blob")]
    pub cheat_serving: bool,
    /// Cheaters alter --cheat-bps of the chat answers they serve in sessions (a draw at a high
    /// temperature, receipted as if honest), instead of corrupting items: the window audits
    /// that replay an altered answer convict them, and their unpaid windows are refunded.
    #[arg(long, requires = "cheaters", conflicts_with_all = ["cheat_blob", "cheat_serving"])]
    pub cheat_answers: bool,
    /// Answers that make a provider's serving window due (an audit replays about 90 of a
    /// window's answers; the larger the windows, the smaller that share).
    #[arg(long, default_value_t = crate::devnet::DEVNET_WINDOW.receipts,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::provider::sessions::WINDOW_RECEIPTS)))]
    pub window_receipts: u32,
    /// Longest a served answer waits for its window (and its payment), e.g. `2s` or `5m`.
    #[arg(long, default_value = "2s", value_parser = parse_window_age)]
    pub window_max_age: u64,
    /// Chat runs each provider decodes together (continuous batching; 1 runs them one at a
    /// time).
    #[arg(long, default_value_t = crate::config::DEFAULT_SERVE_BATCH,
          value_parser = serve_batch())]
    pub serve_batch: usize,
    /// Least time, ms, between an empty block and its parent: an idle chain grows by one block
    /// per interval, and a transaction ends the wait at once (0: as fast as rounds go).
    #[arg(long, default_value_t = crate::devnet::DEVNET_EMPTY_BLOCK_INTERVAL_MS,
          value_parser = empty_block_interval())]
    pub empty_block_interval_ms: u64,
    /// How long the serving sessions the devnet's gateways open last.
    #[arg(long, default_value = "30m")]
    pub session_duration: String,
    /// Set a chain parameter in the new devnet's genesis, e.g. `--param liveness_blocks=300`
    /// (repeatable; `agora gov params` lists them). Ignored when resuming a devnet.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, u128)>,
    /// Directory for keys, configs, logs and chain data (re-use it to resume the chain).
    #[arg(long, default_value = "devnet")]
    pub dir: PathBuf,
    /// First port: validator i serves its API on port-base+i and p2p on port-base+100+i;
    /// provider i serves its API on port-base+50+i.
    #[arg(long, default_value_t = 7700)]
    pub port_base: u16,
}

/// The parser of `--serve-batch` (and `bench serve --batch`): 1 to 1,024 chat runs.
pub(crate) fn serve_batch() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=1024)
}

/// The parser of `--empty-block-interval-ms`: below the leader timeout, as
/// [`crate::config::ValidatorSection::timing`] requires of a config.
pub(crate) fn empty_block_interval() -> clap::builder::RangedU64ValueParser<u64> {
    let leader_timeout = agora_chain::Timing::default().leader_timeout.as_millis() as u64;
    clap::builder::RangedU64ValueParser::new().range(0..leader_timeout)
}

/// Parses `--window-max-age` into ms.
pub(crate) fn parse_window_age(s: &str) -> Result<u64, String> {
    match crate::requester::jobfile::parse_duration(s) {
        Ok(0) => Err("a window's answers must be committed at some point: give at least 1s".into()),
        Ok(ms) => Ok(ms),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses `NAME=VALUE` for `--param`.
fn parse_param(s: &str) -> Result<(String, u128), String> {
    let (name, value) = s.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))?;
    let value = value.trim().parse().map_err(|_| format!("{name}: {value:?} is not a whole number"))?;
    agora_ledger::Params::check(name.trim(), value).map_err(|e| e.to_string())?;
    Ok((name.trim().to_string(), value))
}

/// Runs `agora devnet`.
pub async fn run(g: &Global, a: DevnetArgs) -> anyhow::Result<()> {
    let opts = DevnetOptions {
        dir: a.dir.clone(),
        validators: a.validators,
        providers: a.providers,
        cheaters: a.cheaters,
        cheat_bps: a.cheat_bps,
        cheat_every_lease: false,
        cheat_blob: a.cheat_blob,
        cheat_serving: a.cheat_serving,
        cheat_answers: a.cheat_answers,
        window: WindowPolicy { receipts: a.window_receipts, max_age_ms: a.window_max_age },
        serve_batch: a.serve_batch,
        empty_block_interval_ms: a.empty_block_interval_ms,
        session_duration: a.session_duration.clone(),
        params: a.params.clone(),
        port_base: a.port_base,
    };
    let mut net = Devnet::start(&opts).await?;
    let urls = net.urls();
    if !g.json {
        eprintln!("starting {} nodes in {} ...", urls.len(), a.dir.display());
    }
    let ready = async {
        let height = net.wait_ready(Duration::from_secs(120)).await?;
        net.wait_providers(Duration::from_secs(120)).await?;
        anyhow::Ok(height)
    };
    let height = match ready.await {
        Ok(h) => h,
        Err(e) => {
            net.stop().await;
            return Err(e);
        }
    };
    let names: Vec<String> = net.configs.iter().map(|c| c.name.clone()).collect();
    let faucet = a.dir.join("faucet.key");
    let api_key = crate::devnet::gateway_api_key_path(&a.dir);
    let ready = serde_json::json!({
        "nodes": urls, "height": height, "faucet_key": faucet, "dir": a.dir,
        "openai_base_url": format!("{}/v1", urls[0]), "openai_api_key_file": api_key,
    });
    if g.json {
        // One line, so scripts can wait for it.
        println!("{ready}");
    } else {
        let mut s = String::from("devnet running (Ctrl-C to stop)\n");
        for (name, u) in names.iter().zip(&urls) {
            s += &format!("  {name:<10} {u}   (log: {})\n", a.dir.join(format!("{name}.log")).display());
        }
        s += &format!(
            "faucet key: {}\ntry: agora --node {} wallet transfer <ACCOUNT> 1000 --key {}\n\
             OpenAI-compatible API: {}/v1 (API key in {})",
            faucet.display(),
            urls[0],
            faucet.display(),
            urls[0],
            api_key.display()
        );
        println!("{s}");
    }
    crate::run::shutdown_signal().await;
    if !g.json {
        eprintln!("stopping ...");
    }
    net.stop().await;
    Ok(())
}
