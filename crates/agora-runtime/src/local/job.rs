//! The local job file: a TOML description of one job for `agora run JOB.toml --local`.
//!
//! ```toml
//! kind = "embed"                  # embed | generate | train | wasm
//! model = "all-minilm-l6-v2"      # a known model name, or a path (file or directory)
//! inputs = ["sentences.txt"]      # input files, relative to this job file
//! input_format = "lines"          # optional: lines | files | items | dataset
//!
//! [params]                        # the manifest's JobParams for the kind; omitted
//! batch_size = 32                 # fields take the defaults in `default_params`
//! ```
//!
//! Input formats: `lines` — every non-blank line of every file is one item (default for
//! `embed` and `generate`); `files` — every file is one item (default for `wasm`); `items` —
//! every file is a framed item list (`u32` count, then `u32` length + bytes per item, the
//! content-store framing); `dataset` — CSV rows (`f1,…,fn,label`, optionally gzipped) become
//! training examples, read from the input files or, when there are none, from the model
//! directory (default for `train`, whose `model` names a data set such as `digits`).
//!
//! A `model` path to a file is hashed as it is (a wasm module's address is its BLAKE3); a
//! directory is hashed as the bundle of all its files (see `provision::bundle`).

use super::dataset::read_csv_examples;
use super::error::LocalError;
use crate::items::training::Example;
use crate::provision::{Provisioner, bundle};
use agora_core::{Encode, Hash, JobKind, JobParams};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// How input files become items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// One item per non-blank line.
    Lines,
    /// One item per file.
    Files,
    /// Each file is a framed item list.
    Items,
    /// CSV rows as training examples.
    Dataset,
}

impl InputFormat {
    /// The format used when the job file names none.
    pub fn default_for(kind: JobKind) -> Self {
        match kind {
            JobKind::Embed | JobKind::Generate => InputFormat::Lines,
            JobKind::Wasm => InputFormat::Files,
            JobKind::Train => InputFormat::Dataset,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    kind: JobKind,
    model: String,
    #[serde(default)]
    inputs: Vec<PathBuf>,
    input_format: Option<InputFormat>,
    #[serde(default)]
    params: toml::Table,
}

/// A parsed local job file.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalJob {
    /// The model: a known name or a path (already resolved against the job file's folder).
    pub model: String,
    /// Input files (resolved against the job file's folder).
    pub inputs: Vec<PathBuf>,
    /// How they become items.
    pub input_format: InputFormat,
    /// Parameters, defaults filled in.
    pub params: JobParams,
}

/// The defaults for omitted `[params]` fields.
pub fn default_params(kind: JobKind) -> JobParams {
    match kind {
        JobKind::Embed => JobParams::Embed { batch_size: 32 },
        JobKind::Generate => {
            JobParams::Generate { max_new_tokens: 64, temperature_milli: 0, seed: 0, stop: vec![] }
        }
        JobKind::Train => JobParams::Train {
            steps: 300,
            checkpoint_every: 100,
            batch_size: 64,
            hidden: 128,
            learning_rate_micros: 10_000,
            seed: 42,
        },
        JobKind::Wasm => JobParams::Wasm { fuel_per_item: 10_000_000_000, memory_mib: 64, args: vec![] },
    }
}

/// A model ready for an executor: its content hash and where its files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// Content hash (bundle hash, or the file's BLAKE3 for a single file).
    pub hash: Hash,
    /// The model directory or file.
    pub path: PathBuf,
}

fn params_from(kind: JobKind, user: toml::Table) -> Result<JobParams, String> {
    let defaults = toml::Value::try_from(default_params(kind)).map_err(|e| e.to_string())?;
    let toml::Value::Table(mut table) = defaults else { unreachable!("params serialize to a table") };
    for (key, value) in user {
        if key == "kind" || !table.contains_key(&key) {
            let known: Vec<&str> = table.keys().map(String::as_str).filter(|k| *k != "kind").collect();
            return Err(format!("unknown parameter {key:?} for a {kind} job; known: {}", known.join(", ")));
        }
        table.insert(key, value);
    }
    toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| format!("[params]: {}", e.message()))
}

impl LocalJob {
    /// Parses job file text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let raw: RawJob = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let params = params_from(raw.kind, raw.params)?;
        let is_known = crate::provision::catalog::find(&raw.model).is_some();
        let model = if is_known { raw.model } else { base.join(&raw.model).to_string_lossy().into_owned() };
        Ok(LocalJob {
            model,
            inputs: raw.inputs.iter().map(|p| base.join(p)).collect(),
            input_format: raw.input_format.unwrap_or(InputFormat::default_for(raw.kind)),
            params,
        })
    }

    /// Reads and parses a job file.
    pub fn load(path: &Path) -> Result<Self, LocalError> {
        let err = |reason: String| LocalError::JobFile { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text, path.parent().unwrap_or(Path::new("."))).map_err(err)
    }

    /// The job kind.
    pub fn kind(&self) -> JobKind {
        self.params.kind()
    }

    /// Resolves the model: a known name is provisioned (pulled on first use), a path is
    /// hashed in place.
    pub fn resolve_model(&self, provisioner: &Provisioner) -> Result<ResolvedModel, LocalError> {
        if provisioner.catalog().iter().any(|m| m.name == self.model) {
            let p = provisioner.ensure(&self.model)?;
            return Ok(ResolvedModel { hash: p.hash(), path: p.dir });
        }
        let path = PathBuf::from(&self.model);
        let err = |reason: String| LocalError::Input { path: path.clone(), reason };
        let meta = std::fs::metadata(&path).map_err(|e| {
            let known: Vec<&str> = provisioner.catalog().iter().map(|m| m.name.as_str()).collect();
            err(format!("model is neither a known name ({}) nor a readable path: {e}", known.join(", ")))
        })?;
        let hash = if meta.is_dir() {
            bundle::bundle_hash(&path, &list_files(&path).map_err(err)?)?
        } else {
            Hash::of(&std::fs::read(&path).map_err(|e| err(e.to_string()))?)
        };
        Ok(ResolvedModel { hash, path })
    }

    /// Reads the inputs into items.
    pub fn read_inputs(&self, model: &ResolvedModel) -> Result<Vec<Vec<u8>>, LocalError> {
        let mut items = Vec::new();
        if self.input_format == InputFormat::Dataset {
            let files = if self.inputs.is_empty() { csv_files(&model.path)? } else { self.inputs.clone() };
            for path in files {
                let examples =
                    read_csv_examples(&path).map_err(|reason| LocalError::Input { path, reason })?;
                items.extend(examples.iter().map(Example::encode));
            }
            return Ok(items);
        }
        for path in &self.inputs {
            let err = |reason: String| LocalError::Input { path: path.clone(), reason };
            let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            match self.input_format {
                InputFormat::Files => items.push(bytes),
                InputFormat::Lines => {
                    let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))?;
                    items.extend(
                        text.lines()
                            .map(str::trim_end)
                            .filter(|l| !l.trim().is_empty())
                            .map(|l| l.as_bytes().to_vec()),
                    );
                }
                InputFormat::Items => items.extend(parse_framed(&bytes).map_err(err)?),
                InputFormat::Dataset => unreachable!("handled above"),
            }
        }
        if items.is_empty() {
            return Err(LocalError::NoInputs);
        }
        Ok(items)
    }
}

fn parse_framed(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut r = agora_core::codec::Reader::new(bytes);
    let n = r
        .length(agora_core::manifest::MAX_ITEMS_PER_SHARD as usize, 4, "item list")
        .map_err(|e| e.to_string())?;
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        items.push(r.bytes(usize::MAX, "item").map_err(|e| e.to_string())?);
    }
    r.finish("item list").map_err(|e| e.to_string())?;
    Ok(items)
}

/// Every file under `dir`, as sorted relative paths with `/` separators.
fn list_files(dir: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir");
                out.push(
                    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"),
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

fn csv_files(model: &Path) -> Result<Vec<PathBuf>, LocalError> {
    let err = |reason: String| LocalError::Input { path: model.to_path_buf(), reason };
    if model.is_file() {
        return Ok(vec![model.to_path_buf()]);
    }
    let files: Vec<PathBuf> = list_files(model)
        .map_err(err)?
        .into_iter()
        .filter(|f| f.ends_with(".csv") || f.ends_with(".csv.gz"))
        .map(|f| model.join(f))
        .collect();
    if files.is_empty() {
        return Err(err("the data set directory holds no .csv or .csv.gz file".into()));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_overrides_and_unknown_keys() {
        let job = LocalJob::parse(
            "kind = \"generate\"\nmodel = \"smollm2-135m-instruct\"\ninputs = [\"p.txt\"]\n[params]\nmax_new_tokens = 8\nstop = [\"\\n\"]\n",
            Path::new("/jobs"),
        )
        .unwrap();
        assert_eq!(job.model, "smollm2-135m-instruct");
        assert_eq!(job.inputs, vec![PathBuf::from("/jobs/p.txt")]);
        assert_eq!(job.input_format, InputFormat::Lines);
        assert_eq!(
            job.params,
            JobParams::Generate { max_new_tokens: 8, temperature_milli: 0, seed: 0, stop: vec!["\n".into()] }
        );
        let e = LocalJob::parse("kind = \"embed\"\nmodel = \"m\"\n[params]\nbatch = 3\n", Path::new("."))
            .unwrap_err();
        assert!(e.contains("unknown parameter \"batch\"") && e.contains("batch_size"), "{e}");
        let e = LocalJob::parse(
            "kind = \"embed\"\nmodel = \"m\"\n[params]\nbatch_size = \"x\"\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.contains("[params]"), "{e}");
        assert!(LocalJob::parse("kind = \"dance\"\nmodel = \"m\"\n", Path::new(".")).is_err());
        let wasm = LocalJob::parse("kind = \"wasm\"\nmodel = \"a.wasm\"\n", Path::new("/x")).unwrap();
        assert_eq!((wasm.model.as_str(), wasm.input_format), ("/x/a.wasm", InputFormat::Files));
    }

    #[test]
    fn framed_inputs_round_trip() {
        let items = vec![b"a".to_vec(), vec![], b"ccc".to_vec()];
        let mut framed = Vec::new();
        agora_core::codec::encode_seq(items.iter(), &mut framed);
        assert_eq!(parse_framed(&framed).unwrap(), items);
        assert!(parse_framed(&framed[..framed.len() - 1]).is_err());
    }
}
