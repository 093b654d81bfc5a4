//! `agora run JOB.toml --local`: run a job on this machine without the network, to test a
//! job file or measure a model (the `[market]` table, if any, is ignored).

use super::Global;
use super::output::print;
use crate::requester::prepare::provisioner;
use agora_core::JobKind;
use agora_runtime::executor::Executor;
use agora_runtime::local::{LocalJob, run_local};
use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;

/// `agora run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file.
    pub file: PathBuf,
    /// Run on this machine (required: network jobs go through `agora job submit`).
    #[arg(long)]
    pub local: bool,
    /// Where to write the outputs.
    #[arg(short, long, default_value = "agora-run")]
    pub out: PathBuf,
}

/// Runs `agora run`.
pub async fn run(g: &Global, a: RunArgs) -> anyhow::Result<()> {
    if !a.local {
        bail!(
            "`agora run` only runs jobs locally: add --local (to use the network: agora job submit {})",
            a.file.display()
        );
    }
    let text =
        std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", a.file.display()))?;
    table.remove("market");
    let base = a.file.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let job = LocalJob::parse(&toml::to_string(&table)?, &base)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let (dir, out) = (g.data_dir.clone(), a.out.clone());
    let summary = tokio::task::spawn_blocking(move || -> anyhow::Result<serde_json::Value> {
        let model = job.resolve_model(&provisioner(&dir))?;
        let executor: Box<dyn Executor> = match job.kind() {
            JobKind::Wasm => Box::new(agora_wasm::WasmExecutor::new(&std::fs::read(&model.path)?)?),
            JobKind::Train => Box::new(agora_ml::TrainExecutor::default()),
            JobKind::Embed => Box::new(agora_ml::EmbedExecutor::load(&model.path)?),
            JobKind::Generate => Box::new(agora_ml::GenerateExecutor::load(&model.path)?),
        };
        let outcome = run_local(&job, &model, executor.as_ref())?;
        outcome.write(&out)?;
        Ok(outcome.summary())
    })
    .await??;
    print(g.json, &summary, |s| {
        format!("{}\noutputs in {}", serde_json::to_string_pretty(s).unwrap_or_default(), a.out.display())
    });
    Ok(())
}
