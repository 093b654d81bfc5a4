//! `agora session ...`: inspect and close serving sessions, verify a receipt offline, and
//! recheck the completions a session served on its model.

use super::Global;
use super::output::print;
use crate::gateway::sessions::kept_records;
use crate::sender::TxSender;
use agora_core::JobKind;
use agora_core::session::SignedReceipt;
use agora_core::tx::TxPayload;
use agora_core::{AccountId, Hash};
use agora_runtime::provision::Provisioned;
use agora_serve::audit::{Claim, recheck};
use anyhow::{Context, bail};
use clap::Subcommand;
use indicatif::ProgressBar;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `agora session ...`
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// A serving session: terms, providers, escrow, committed windows and challenges.
    Show {
        /// Session id.
        id: u64,
    },
    /// Stop serving a session of yours now; unspent escrow returns after the commit grace.
    Close {
        /// Session id.
        id: u64,
    },
    /// End one provider's serving in a session: as its requester, dismiss a provider that
    /// stopped answering; as a provider, leave a session you serve. It commits what it served
    /// within the commit grace; then its unspent share goes to a replacement, and its
    /// collateral is released once its receipts can no longer be challenged.
    Leave {
        /// Session id.
        id: u64,
        /// The provider that leaves (default: your own account).
        #[arg(long)]
        provider: Option<AccountId>,
    },
    /// Check a receipt: that its provider signed it for this chain, and (with a node to ask)
    /// whether a window on chain commits it. Reads a receipt, or a gateway response or its
    /// `agora` object, as JSON.
    Verify {
        /// The JSON file (`-` for stdin).
        file: PathBuf,
        /// The chain's id, to verify without asking a node (offline).
        #[arg(long)]
        chain_id: Option<String>,
    },
    /// Recheck the chat completions this node's gateway was served in a session: replay each
    /// on the session's model, teacher-forced along its tokens, and check that every token is
    /// the model's own choice and every fingerprint its receipt names matches. Exits non-zero
    /// if any fails.
    Recheck {
        /// Session id.
        id: u64,
        /// The catalog model to replay with (default: the provisioned model whose hash the
        /// session names).
        #[arg(long)]
        model: Option<String>,
    },
}

/// One completion's recheck.
#[derive(Debug, Serialize)]
pub struct Rechecked {
    /// The provider that served it.
    pub provider: AccountId,
    /// Its receipt's position among the provider's receipts.
    pub seq: u64,
    /// Whether the replay reproduced it.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

/// The provisioned model `name` (or, without one, the one whose hash is `expected`), which
/// must be the session's model.
fn session_model(data_dir: &Path, name: Option<&str>, expected: Hash) -> anyhow::Result<Provisioned> {
    let p = crate::requester::prepare::provisioner(data_dir);
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            p.list()?.models.into_iter().find(|(_, e)| e.bundle == expected).map(|(n, _)| n).with_context(
                || format!("no provisioned model has the session's hash {expected}: name it with --model"),
            )?
        }
    };
    let model = p
        .get(&name)?
        .with_context(|| format!("model {name} is not provisioned: run `agora models pull {name}`"))?;
    if model.hash() != expected {
        bail!("model {name} ({}) is not the session's model ({expected})", model.hash());
    }
    Ok(model)
}

/// Replays `kept` completions on the generation model in `dir` as an auditor does, counting
/// each on `pb`.
fn recheck_all(
    dir: &Path,
    kept: &[(AccountId, u64, Claim)],
    pb: &ProgressBar,
) -> anyhow::Result<Vec<Rechecked>> {
    let model = crate::provider::sessions::open_model(JobKind::Generate, dir)?;
    kept.iter()
        .map(|(provider, seq, claim)| {
            let v = recheck(&model, claim)?;
            pb.inc(1);
            Ok(Rechecked { provider: *provider, seq: *seq, passed: v.matches, detail: v.detail })
        })
        .collect()
}

/// What `agora session verify` found.
#[derive(Debug, Serialize)]
pub struct Verdict {
    /// Whether the provider's signature over the receipt verifies for the chain.
    pub valid: bool,
    /// The chain id it was checked for.
    pub chain_id: String,
    /// The receipt.
    pub receipt: SignedReceipt,
    /// Whether a window on chain covers its `seq` (`None` when no node was asked).
    pub committed: Option<bool>,
}

/// Finds the receipt in a receipt, a gateway response, or its `agora` object.
pub fn find_receipt(v: &serde_json::Value) -> anyhow::Result<SignedReceipt> {
    let candidate = [&v["agora"]["receipt"], &v["receipt"], v]
        .into_iter()
        .find(|c| c.get("signature").is_some() && c.get("receipt").is_some())
        .context("no receipt in the JSON: give a receipt, a gateway response, or its `agora` object")?;
    serde_json::from_value(candidate.clone()).context("the receipt does not parse")
}

/// Runs a session command.
pub async fn run(g: &Global, cmd: SessionCommand) -> anyhow::Result<()> {
    let client = g.client();
    match cmd {
        SessionCommand::Show { id } => {
            let detail = client.session(id).await?;
            print(g.json, &detail, |d| {
                let s = &d.session;
                let mut out = format!(
                    "session {}: {:?} {:?} of {} in {}, escrow {} (committed {}, paid {}), until {}\n",
                    d.id,
                    s.status,
                    s.terms.kind,
                    s.terms.model,
                    s.terms.class,
                    s.escrow,
                    s.committed,
                    s.paid,
                    s.until_ms
                );
                for m in &s.members {
                    let state = match (m.removed, m.left_ms) {
                        (true, _) => "convicted".to_string(),
                        (false, Some(t)) => format!("left at {t}"),
                        (false, None) => "serving".to_string(),
                    };
                    out += &format!(
                        "  provider {} ({state}): {} receipts committed, charged {}, {} windows unpaid\n",
                        m.provider, m.next_seq, m.charged, m.held
                    );
                }
                for w in &d.windows {
                    out += &format!(
                        "  window {}..{} of {}: {:?}, {} ({} challenges)\n",
                        w.first_seq,
                        w.first_seq + u64::from(w.window.commitment.receipts),
                        w.provider,
                        w.window.status,
                        w.window.charge,
                        w.window.challenges.len()
                    );
                }
                out.trim_end().to_string()
            });
        }
        SessionCommand::Close { id } => {
            let sender = TxSender::new(g.signer()?, client.clone());
            sender.send(TxPayload::CloseSession { session: id }, Duration::from_secs(60)).await?;
            print(g.json, &serde_json::json!({"closed": id}), |_| format!("session {id} stopped serving"));
        }
        SessionCommand::Leave { id, provider } => {
            let signer = g.signer()?;
            let provider = provider.unwrap_or_else(|| signer.public());
            let sender = TxSender::new(signer, client.clone());
            sender.send(TxPayload::LeaveSession { session: id, provider }, Duration::from_secs(60)).await?;
            print(g.json, &serde_json::json!({"session": id, "left": provider}), |_| {
                format!(
                    "provider {provider} no longer serves session {id}; it may commit what it served within the commit grace"
                )
            });
        }
        SessionCommand::Recheck { id, model } => {
            let chats: Vec<_> = kept_records(&g.data_dir, id)?
                .into_iter()
                .filter_map(|k| k.claim().map(|c| (k.provider, k.receipt.receipt.seq, c)))
                .collect();
            if chats.is_empty() {
                bail!(
                    "this node's gateway kept no chat completion of session {id}: run this where it was served"
                );
            }
            let expected = client.session(id).await?.session.terms.model;
            let dir = g.data_dir.clone();
            let model = tokio::task::spawn_blocking(move || session_model(&dir, model.as_deref(), expected))
                .await??;
            let pb = if g.json { ProgressBar::hidden() } else { ProgressBar::new(chats.len() as u64) };
            pb.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} eta {eta}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            pb.set_message(format!("rechecking on {}", model.name));
            let bar = pb.clone();
            let results =
                tokio::task::spawn_blocking(move || recheck_all(&model.dir, &chats, &bar)).await??;
            pb.finish_and_clear();
            let failed = results.iter().filter(|r| !r.passed).count();
            print(g.json, &results, |rs| {
                rs.iter()
                    .map(|r| {
                        let verdict = if r.passed { "ok" } else { "FAILED" };
                        format!("{verdict}: receipt {} of {}: {}", r.seq, r.provider, r.detail)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            if failed > 0 {
                bail!(
                    "{failed} of {} completions were not computed by the session's model: keep the receipts, \
                     they are signed evidence against their providers",
                    results.len()
                );
            }
        }
        SessionCommand::Verify { file, chain_id } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let receipt = find_receipt(&serde_json::from_str(&text).context("the file is not JSON")?)?;
            let (chain_id, committed) = match chain_id {
                Some(c) => (c, None),
                None => {
                    let chain_id = client.status().await?.chain_id;
                    let detail = client.session(receipt.receipt.session).await?;
                    let seq = receipt.receipt.seq;
                    let committed =
                        detail.windows.iter().any(|w| w.provider == receipt.provider && w.window.covers(seq));
                    (chain_id, Some(committed))
                }
            };
            let valid = receipt.verify(&chain_id).is_ok();
            let verdict = Verdict { valid, chain_id, receipt, committed };
            print(g.json, &verdict, |v| {
                let r = &v.receipt.receipt;
                format!(
                    "{}: receipt {} of session {} by {} ({} prompt + {} completion tokens, {} items){}",
                    if v.valid { "valid" } else { "INVALID" },
                    r.seq,
                    r.session,
                    v.receipt.provider,
                    r.usage.prompt_tokens,
                    r.usage.completion_tokens,
                    r.usage.items,
                    match v.committed {
                        Some(true) => ", committed on chain",
                        Some(false) => ", not (yet) committed on chain",
                        None => "",
                    }
                )
            });
            if !valid {
                anyhow::bail!("the receipt's signature does not verify for chain {:?}", verdict.chain_id);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::session::{ServeReceipt, Usage};
    use agora_core::{Hash, SecretKey};

    #[test]
    fn receipts_are_found_in_responses_and_checked_for_their_chain() {
        let r = ServeReceipt {
            session: 1,
            seq: 0,
            request: Hash::of(b"q"),
            output: Hash::of(b"a"),
            usage: Usage::default(),
            total: Usage::default(),
            fingerprints: Hash::ZERO,
            first_token_ms: 0,
            last_token_ms: 0,
        }
        .sign("c", &SecretKey::from_seed([1; 32]));
        let bare = serde_json::to_value(&r).unwrap();
        let response =
            serde_json::json!({"choices": [], "agora": {"mode": "session", "receipt": bare.clone()}});
        for v in [&bare, &response, &response["agora"]] {
            let found = find_receipt(v).unwrap();
            assert_eq!(found, r);
            assert!(found.verify("c").is_ok() && found.verify("d").is_err());
        }
        assert!(find_receipt(&serde_json::json!({"agora": {"mode": "job"}})).is_err());
    }
}
