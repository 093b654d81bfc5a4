//! The executors a node can run, loaded on demand: models are fetched by content hash from the
//! job's sources (verified chunk by chunk), kept in the local store, unpacked once, and the
//! loaded executor is cached by (kind, model).

use agora_core::{Hash, JobKind};
use agora_runtime::executor::Executor;
use agora_store::http::outbound::Reach;
use agora_store::{Pin, Store};
use anyhow::{Context, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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

    /// [`Runtimes::fetch`] of a shard's input blob (at most [`MAX_INPUT_BLOB`] bytes), then its
    /// bytes.
    pub async fn fetch_input(
        &self,
        hash: &Hash,
        sources: &[String],
        reach: Reach,
        pin: &Pin,
    ) -> anyhow::Result<Vec<u8>> {
        self.fetch(hash, MAX_INPUT_BLOB, sources, reach, pin).await?;
        Ok(self.store.get(hash)?)
    }

    /// Makes sure blob `hash` is in the local store, held by `pin`, downloading it (verified)
    /// from the first source that has it, connecting only within `reach` (sources are the
    /// requester's choice). A download larger than `limit` bytes is refused before its content
    /// is read, so a source cannot fill this node's disk.
    async fn fetch(
        &self,
        hash: &Hash,
        limit: u64,
        sources: &[String],
        reach: Reach,
        pin: &Pin,
    ) -> anyhow::Result<()> {
        match self.store.pin_for(hash, pin.clone()) {
            Ok(_) => return Ok(()),
            Err(agora_store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut errors = vec![];
        for src in sources {
            let client = match agora_store::http::Client::reaching(src, reach) {
                Ok(c) => c.with_max_blob(limit),
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
                    let info = self.store.put_reader_pinned(file, Some(pin.clone()))?;
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

    /// Where unpacked models live.
    pub fn models_dir(&self) -> &Path {
        &self.dir
    }

    /// Fetches model `model` for a `kind` job (from `sources` within `reach`, held by `pin`)
    /// without loading it, refusing one over [`max_model_bytes`] before anything reads it into
    /// memory, and returns the file holding its bytes (for a child process to load).
    pub async fn model_file(
        &self,
        kind: JobKind,
        model: &Hash,
        sources: &[String],
        reach: Reach,
        pin: &Pin,
    ) -> anyhow::Result<PathBuf> {
        let cap = max_model_bytes(kind);
        self.fetch(model, cap, sources, reach, pin).await?;
        // A model already in the local store was not downloaded under the cap.
        let size = self.store.info(model).with_context(|| format!("reading model {model}"))?.size;
        if size > cap {
            bail!("model {model} is {size} bytes, more than the {cap}-byte limit for {kind} jobs");
        }
        Ok(self.store.blob_path(model))
    }

    /// Model bundle `model` for `kind`, fetched as [`Runtimes::model_file`] does and unpacked
    /// (once): its directory.
    pub async fn unpacked_model(
        &self,
        kind: JobKind,
        model: &Hash,
        sources: &[String],
        reach: Reach,
        pin: &Pin,
    ) -> anyhow::Result<PathBuf> {
        self.model_file(kind, model, sources, reach, pin).await?;
        let bytes = self.store.get(model).with_context(|| format!("reading model {model}"))?;
        let (dir, model) = (self.dir.clone(), *model);
        tokio::task::spawn_blocking(move || unpack(&bytes, &dir, model)).await?
    }

    /// The executor for `kind` running model `model`, fetched as [`Runtimes::model_file`] does
    /// and loaded once (later calls reuse it).
    pub async fn executor(
        &self,
        kind: JobKind,
        model: &Hash,
        sources: &[String],
        reach: Reach,
        pin: &Pin,
    ) -> anyhow::Result<Arc<dyn Executor>> {
        if let Some(e) = self.loaded.lock().expect("not poisoned").get(&(kind, *model)) {
            return Ok(e.clone());
        }
        self.model_file(kind, model, sources, reach, pin).await?;
        let bytes = self.store.get(model).with_context(|| format!("reading model {model}"))?;
        let (dir, model_hash) = (self.dir.clone(), *model);
        let executor =
            tokio::task::spawn_blocking(move || load_executor(kind, bytes, &dir, model_hash)).await??;
        self.loaded.lock().expect("not poisoned").insert((kind, *model), executor.clone());
        Ok(executor)
    }
}

/// Loads model `model` (its blob's `bytes`) as the executor for `kind`, unpacking model bundles
/// under `models_dir` (once; later loads reuse the unpacked files). Blocking; requester-chosen
/// bytes: see [`super::isolate`] for running it where a failure cannot reach the node.
pub fn load_executor(
    kind: JobKind,
    bytes: Vec<u8>,
    models_dir: &Path,
    model: Hash,
) -> anyhow::Result<Arc<dyn Executor>> {
    Ok(match kind {
        JobKind::Wasm => Arc::new(agora_wasm::WasmExecutor::new(&bytes).context("loading the wasm module")?),
        JobKind::Train => Arc::new(agora_ml::TrainExecutor::default()),
        JobKind::Embed => Arc::new(
            agora_ml::EmbedExecutor::load(&unpack(&bytes, models_dir, model)?)
                .context("loading the embedding model")?,
        ),
        JobKind::Generate => Arc::new(
            agora_ml::GenerateExecutor::load(&unpack(&bytes, models_dir, model)?.join("model.gguf"))
                .context("loading the language model")?,
        ),
    })
}

/// Unpacks model bundle `model` (its blob's `bytes`) under `models_dir`, once (later calls
/// reuse the unpacked files), and returns its directory. Blocking.
pub fn unpack(bytes: &[u8], models_dir: &Path, model: Hash) -> anyhow::Result<PathBuf> {
    let dir = models_dir.join(model.to_string());
    if !dir.join(".unpacked").exists() {
        let bundle = dir.with_extension("bundle");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(&bundle, bytes)?;
        agora_runtime::provision::bundle::unpack_bundle(&bundle, &model, &dir)
            .context("unpacking the model bundle")?;
        let _ = std::fs::remove_file(&bundle);
        std::fs::write(dir.join(".unpacked"), b"")?;
    }
    Ok(dir)
}

/// Largest shard input blob a provider or auditor downloads (it is then read into memory).
pub const MAX_INPUT_BLOB: u64 = 1 << 30;

/// Largest model a provider loads for a job of `kind`: requester-chosen blobs are read whole
/// into memory (and models unpacked to disk), so their size is bounded. 64 MiB for a wasm
/// module (a real program's is far smaller), 8 GiB for a model bundle.
pub fn max_model_bytes(kind: JobKind) -> u64 {
    match kind {
        JobKind::Wasm => 64 << 20,
        JobKind::Train | JobKind::Embed | JobKind::Generate => 8 << 30,
    }
}
