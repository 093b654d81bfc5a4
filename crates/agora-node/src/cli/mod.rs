//! The `agora` command line: argument definitions and dispatch. Each command group has its own
//! module; every command accepts `--json` for machine-readable output.

pub mod bench;
pub mod chain;
pub mod demo;
pub mod devnet;
pub mod gateway;
pub mod gov;
pub mod job;
pub mod models;
pub mod output;
pub mod provider;
pub mod run_local;
pub mod session;
pub mod store;
pub mod wallet;

use crate::client::NodeClient;
use agora_core::SecretKey;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Agora: a permissionless cloud for AI compute that pays only for verified work.
///
/// Start with `agora demo`: a local network runs verified jobs and shows the receipts. Then run
/// your own network with `agora devnet`, submit jobs with `agora job submit job.toml --wait`,
/// sell compute with `agora provider join`, point OpenAI clients at a node's `/v1`, and watch
/// it all on the dashboard a node serves at `/`.
#[derive(Debug, Parser)]
#[command(
    name = "agora",
    version,
    about,
    long_about,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Options every command accepts.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Node API to talk to.
    #[arg(long, global = true, env = "AGORA_NODE", default_value = "http://127.0.0.1:7700")]
    pub node: String,
    /// Directory for the wallet key and client settings.
    #[arg(long, global = true, env = "AGORA_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Sign with this key file instead of the wallet in the data directory (e.g. a devnet's faucet.key).
    #[arg(long, global = true, env = "AGORA_KEY")]
    pub key: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format of long-running commands.
    #[arg(long, global = true, value_parser = ["text", "json"], default_value = "text")]
    pub log_format: String,
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".agora")
}

impl Global {
    /// A client for `--node`.
    pub fn client(&self) -> NodeClient {
        NodeClient::new(&self.node)
    }

    /// Path of the wallet key.
    pub fn wallet_path(&self) -> PathBuf {
        self.key.clone().unwrap_or_else(|| self.data_dir.join("wallet.key"))
    }

    /// The signing key (`--key`, else the wallet).
    pub fn signer(&self) -> anyhow::Result<SecretKey> {
        crate::config::load_key(&self.wallet_path())
            .context("no signing key: run `agora init`, or pass --key FILE")
    }
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a wallet key in the data directory.
    Init,
    /// Run a node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// See it all work: a local network runs embedding, WebAssembly, generation and training jobs,
    /// verified and settled (`--cheaters 1` to watch a cheater get caught).
    Demo(demo::DemoArgs),
    /// Start a local network of real node processes on 127.0.0.1.
    Devnet(devnet::DevnetArgs),
    /// Keys, balances and transfers.
    #[command(subcommand)]
    Wallet(wallet::WalletCommand),
    /// Inspect the chain: status, blocks, transactions.
    #[command(subcommand)]
    Chain(chain::ChainCommand),
    /// Governance: parameter proposals and votes.
    #[command(subcommand)]
    Gov(gov::GovCommand),
    /// The content store: put, get, list, pin.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Jobs: submit, quote, follow, results, receipts.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Sell compute: join as a provider, check your record.
    #[command(subcommand)]
    Provider(provider::ProviderCommand),
    /// The OpenAI-compatible gateway: API keys.
    #[command(subcommand)]
    Gateway(gateway::GatewayCommand),
    /// Serving sessions: show, close, verify a receipt.
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// Provision models and data sets into the data directory.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Run a job file on this machine only (`--local`).
    Run(run_local::RunArgs),
    /// Benchmarks (build with --release for meaningful numbers).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Internal: the child process a validator runs an audit in (request on stdin, answer on
    /// stdout).
    #[command(subcommand, hide = true)]
    Sandbox(SandboxCommand),
}

/// Work a node hands to a child process of its own binary.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Load a model and recompute an audit's sample, within limits set before reading.
    Audit {
        /// Address space this process may use, bytes.
        #[arg(long)]
        memory_bytes: u64,
        /// CPU time this process may use, seconds.
        #[arg(long)]
        cpu_seconds: u64,
    },
}

/// `agora node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run a node from its config file until Ctrl-C.
    Run {
        /// The node's config (e.g. written by `agora devnet`).
        #[arg(long)]
        config: PathBuf,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Node(NodeCommand::Run { config }) => {
            crate::run::run(crate::config::NodeConfig::load(&config)?)
        }
        Command::Init => wallet::init(&g),
        Command::Sandbox(SandboxCommand::Audit { memory_bytes, cpu_seconds }) => {
            crate::provider::isolate::limit_this_process(memory_bytes, cpu_seconds)?;
            crate::provider::isolate::serve(&mut std::io::stdin().lock(), &mut std::io::stdout().lock())
        }
        other => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async move {
                match other {
                    Command::Demo(a) => demo::run(&g, a).await,
                    Command::Devnet(a) => devnet::run(&g, a).await,
                    Command::Wallet(c) => wallet::run(&g, c).await,
                    Command::Chain(c) => chain::run(&g, c).await,
                    Command::Gov(c) => gov::run(&g, c).await,
                    Command::Store(c) => store::run(&g, c).await,
                    Command::Bench(bench::BenchCommand::Chain(a)) => bench::chain(&g, a).await,
                    Command::Bench(bench::BenchCommand::Market(a)) => bench::market::market(&g, a).await,
                    Command::Bench(bench::BenchCommand::Flood(a)) => bench::flood::flood(&g, a).await,
                    Command::Bench(bench::BenchCommand::Serve(a)) => bench::serve::serve(&g, a).await,
                    Command::Bench(bench::BenchCommand::ServeAudits(a)) => {
                        bench::serve_audits::serve_audits(&g, a).await
                    }
                    Command::Bench(bench::BenchCommand::Adversary(a)) => {
                        bench::adversary::adversary(&g, a).await
                    }
                    Command::Bench(bench::BenchCommand::Detection(a)) => {
                        bench::detection::detection(&g, a).await
                    }
                    Command::Job(c) => job::run(&g, c).await,
                    Command::Provider(c) => provider::run(&g, c).await,
                    Command::Models(c) => models::run(&g, c).await,
                    Command::Gateway(c) => gateway::run(&g, c).await,
                    Command::Session(c) => session::run(&g, c).await,
                    Command::Run(a) => run_local::run(&g, a).await,
                    Command::Node(_) | Command::Init | Command::Sandbox(_) => unreachable!("handled above"),
                }
            })
        }
    }
}
