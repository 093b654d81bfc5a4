//! `agora`: run a node, a local devnet, and talk to a node from the command line.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = agora_node::cli::Cli::parse();
    agora_node::logging::init(&cli.global.log_format);
    match agora_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
