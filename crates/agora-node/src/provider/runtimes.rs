//! The executors a node can run, loaded on demand: models are fetched by content hash from the
//! job's sources (verified chunk by chunk), kept in the local store, unpacked once, and the
//! loaded executor is cached by (kind, model).

use agora_core::{Hash, JobKind};
use agora_runtime::executor::Executor;
use agora_store::Store;
use anyhow::{Context, bail};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Loaded executors and where models are unpacked.
pub struct Runtimes {
    store: Store,
    dir: PathBuf,
    loaded: Mutex<HashMap<(JobKind, Hash), Arc<dyn Executor>>>,
}

impl Runtimes {
    /// Runtimes backed by `store`, unpacking models under `dir`.
    pub fn new(store: Store, dir: PathBuf) -> Self {
        Self { store, dir, loaded: Mutex::default() }
    }

    /// The kinds this build can run.
    pub fn kinds() -> Vec<JobKind> {
        JobKind::ALL.to_vec()
    }

    /// Makes sure blob `hash` is in the local store, downloading it (verified) from the first
    /// source that has it.
    pub async fn fetch(&self, hash: &Hash, sources: &[String]) -> anyhow::Result<()> {
        if self.store.has(hash) {
            return Ok(());
        }
        let mut errors = vec![];
        for src in sources {
            let client = match agora_store::http::Client::new(src) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("{src}: {e}"));
                    continue;
                }
            };
            let tmp = self.dir.join(format!("{hash}.download"));
            std::fs::create_dir_all(&self.dir)?;
            match client.download_to_file(hash, &tmp, None, |_, _| {}).await {
                Ok(_) => {
                    let file = std::fs::File::open(&tmp)?;
                    let info = self.store.put_reader(file, true)?;
                    let _ = std::fs::remove_file(&tmp);
                    if info.hash != *hash {
                        bail!("source {src} served {} for {hash}", info.hash);
                    }
                    return Ok(());
                }
                Err(e) => errors.push(format!("{src}: {e}")),
            }
        }
        bail!("blob {hash} is not available from any source ({})", errors.join("; "))
    }

    /// The executor for `kind` running model `model` (fetched from `sources` if needed). A model
    /// over [`max_model_bytes`] is refused before it is read into memory.
    pub async fn executor(
        &self,
        kind: JobKind,
        model: &Hash,
        sources: &[String],
    ) -> anyhow::Result<Arc<dyn Executor>> {
        if let Some(e) = self.loaded.lock().expect("not poisoned").get(&(kind, *model)) {
            return Ok(e.clone());
        }
        self.fetch(model, sources).await?;
        let size = self.store.info(model).with_context(|| format!("reading model {model}"))?.size;
        let cap = max_model_bytes(kind);
        if size > cap {
            bail!("model {model} is {size} bytes, more than the {cap}-byte limit for {kind} jobs");
        }
        let bytes = self.store.get(model).with_context(|| format!("reading model {model}"))?;
        let dir = self.dir.join(model.to_string());
        let model_hash = *model;
        let executor: Arc<dyn Executor> =
            tokio::task::spawn_blocking(move || -> anyhow::Result<Arc<dyn Executor>> {
                Ok(match kind {
                    JobKind::Wasm => {
                        Arc::new(agora_wasm::WasmExecutor::new(&bytes).context("loading the wasm module")?)
                    }
                    JobKind::Train => Arc::new(agora_ml::TrainExecutor::default()),
                    JobKind::Embed | JobKind::Generate => {
                        if !dir.join(".unpacked").exists() {
                            let bundle = dir.with_extension("bundle");
                            std::fs::create_dir_all(&dir)?;
                            std::fs::write(&bundle, &bytes)?;
                            agora_runtime::provision::bundle::unpack_bundle(&bundle, &model_hash, &dir)
                                .context("unpacking the model bundle")?;
                            let _ = std::fs::remove_file(&bundle);
                            std::fs::write(dir.join(".unpacked"), b"")?;
                        }
                        if kind == JobKind::Embed {
                            Arc::new(
                                agora_ml::EmbedExecutor::load(&dir).context("loading the embedding model")?,
                            )
                        } else {
                            Arc::new(
                                agora_ml::GenerateExecutor::load(&dir.join("model.gguf"))
                                    .context("loading the language model")?,
                            )
                        }
                    }
                })
            })
            .await??;
        self.loaded.lock().expect("not poisoned").insert((kind, *model), executor.clone());
        Ok(executor)
    }
}

/// Largest model a provider loads for a job of `kind`: requester-chosen blobs are read whole
/// into memory (and models unpacked to disk), so their size is bounded. 64 MiB for a wasm
/// module (a real program's is far smaller), 8 GiB for a model bundle.
pub fn max_model_bytes(kind: JobKind) -> u64 {
    match kind {
        JobKind::Wasm => 64 << 20,
        JobKind::Train | JobKind::Embed | JobKind::Generate => 8 << 30,
    }
}
