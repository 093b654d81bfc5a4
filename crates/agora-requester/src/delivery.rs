//! Checking an encrypted job's delivered outputs before its provider is paid.
//!
//! Auditors see an encrypted output blob as ciphertext and check its hash alone; only the
//! requester holds the key that binds it to the committed items. So while a lease is
//! `Delivered` (see `agora_ledger::delivery`), the requester's follow loop (or, for a
//! requester that is offline, its node's key agent, which holds the job's output key) fetches
//! its blob, decrypts it with the key agreed with the provider and checks it against the
//! committed root and count. It then confirms (`ConfirmOutputs`: the provider is paid at once) or disputes
//! (`DisputeOutputs`), disclosing with proof the secret the key derives from, so auditors can
//! decrypt and check the blob too. A download that fails is retried on the next poll: this
//! node's network is not evidence against the provider, and a requester that stays silent
//! lets the provider be paid when the window closes.

use super::results::{download_outputs, open_outputs};
use agora_client::client::NodeClient;
use agora_client::protocol;
use agora_client::sender::TxSender;
use agora_core::SecretKey;
use agora_core::tx::{LeaseId, TxPayload};
use agora_ledger::jobs::Job;
use agora_ledger::leases::{Lease, LeaseStatus};
use std::collections::BTreeSet;
use tracing::{info, warn};

/// What the requester concluded about a delivered lease's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// They decrypt to the committed items: confirmed.
    Confirmed,
    /// They do not (why): disputed.
    Disputed(String),
}

/// Checks the outputs of `job`'s lease `id` once it is delivered, opening them with `output`
/// (the job's output key), and confirms or disputes them through `sender` (the requester, or
/// its key agent); does nothing for a lease in another state, one already answered
/// (`answered`), or when `output` is not the job's output key (a machine without the job's
/// record cannot open its outputs, which is no evidence against the provider). Returns the
/// verdict sent, if any.
pub async fn check_delivered(
    client: &NodeClient,
    sender: &TxSender,
    (job, output): (&Job, &SecretKey),
    id: LeaseId,
    lease: &Lease,
    answered: &mut BTreeSet<LeaseId>,
) -> anyhow::Result<Option<Verdict>> {
    let holds_key = output.public() == job.manifest.output_recipient(&job.requester);
    if lease.status != LeaseStatus::Delivered || answered.contains(&id) || !holds_key {
        return Ok(None);
    }
    let blob = match download_outputs(client, lease).await {
        Ok(blob) => blob,
        Err(e) => {
            warn!(lease = id, "cannot fetch the delivered outputs yet (retrying): {e:#}");
            return Ok(None);
        }
    };
    let (payload, verdict) = match open_outputs(output, true, id, lease, &blob) {
        Ok(_) => (TxPayload::ConfirmOutputs { lease: id }, Verdict::Confirmed),
        Err(e) => {
            let disclosure = protocol::disclose_output_key(output, &lease.provider, id)?;
            (TxPayload::DisputeOutputs { lease: id, disclosure }, Verdict::Disputed(e.to_string()))
        }
    };
    sender.submit(payload).await?;
    answered.insert(id);
    info!(lease = id, ?verdict, "answered the delivered outputs");
    Ok(Some(verdict))
}
