//! Consensus-fault evidence: simplex reports conflicting votes; we keep the verified evidence,
//! proposers put it into blocks as [`Misbehavior`] entries, every validator re-verifies it, and
//! the ledger slashes the offender once per fault.

use agora_core::block::{FaultKind, Misbehavior};
use commonware_actor::Feedback;
use commonware_codec::{DecodeExt as _, Encode};
use commonware_consensus::Reporter;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::types::{
    Activity, Attributable, ConflictingFinalize, ConflictingNotarize, NullifyFinalize,
};
use commonware_consensus::{Epochable, Viewable};
use commonware_cryptography::{ed25519, sha256};
use commonware_parallel::Sequential;
use commonware_utils::ordered::{Quorum as _, Set};
use rand_core::CryptoRng;
use std::sync::{Arc, Mutex};
use tracing::warn;

/// Consensus activity as simplex reports it.
pub type ConsensusActivity = Activity<Scheme, sha256::Digest>;

/// Evidence seen but not yet included in a finalized block.
#[derive(Clone, Default)]
pub struct EvidencePool(Arc<Mutex<Vec<Misbehavior>>>);

impl EvidencePool {
    /// Evidence to include in a new block (at most `max`).
    pub fn take(&self, max: usize) -> Vec<Misbehavior> {
        self.0.lock().expect("not poisoned").iter().take(max).cloned().collect()
    }

    /// Forgets evidence that a finalized block included.
    pub fn remove_included(&self, included: &[Misbehavior]) {
        self.0.lock().expect("not poisoned").retain(|m| !included.contains(m));
    }

    /// Number of pending reports.
    pub fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    /// Whether no evidence is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, m: Misbehavior) {
        let mut pool = self.0.lock().expect("not poisoned");
        if !pool.iter().any(|x| x.offender == m.offender && x.epoch == m.epoch && x.view == m.view) {
            pool.push(m);
        }
    }
}

/// Receives (already signature-verified) simplex activity and records slashing evidence.
#[derive(Clone)]
pub struct EvidenceReporter {
    participants: Set<ed25519::PublicKey>,
    pool: EvidencePool,
}

impl EvidenceReporter {
    /// Records evidence about `participants` into `pool`.
    pub fn new(participants: Set<ed25519::PublicKey>, pool: EvidencePool) -> Self {
        Self { participants, pool }
    }
}

fn record<E: Attributable + Viewable + Epochable + Encode>(
    participants: &Set<ed25519::PublicKey>,
    kind: FaultKind,
    e: &E,
) -> Option<Misbehavior> {
    let offender = participants.key(e.signer())?;
    Some(Misbehavior {
        offender: crate::block::to_account(offender),
        kind,
        epoch: e.epoch().get(),
        view: e.view().get(),
        proof: e.encode().to_vec(),
    })
}

impl Reporter for EvidenceReporter {
    type Activity = ConsensusActivity;

    fn report(&mut self, activity: ConsensusActivity) -> Feedback {
        let m = match &activity {
            Activity::ConflictingNotarize(e) => record(&self.participants, FaultKind::ConflictingNotarize, e),
            Activity::ConflictingFinalize(e) => record(&self.participants, FaultKind::ConflictingFinalize, e),
            Activity::NullifyFinalize(e) => record(&self.participants, FaultKind::NullifyFinalize, e),
            _ => None,
        };
        if let Some(m) = m {
            warn!(offender = %m.offender, kind = ?m.kind, view = m.view, "consensus fault detected");
            self.pool.push(m);
        }
        Feedback::Ok
    }
}

/// Forwards only faults to the inner reporter. `AttributableReporter` re-verifies the signature
/// of everything it is given; votes are far too many to verify twice.
#[derive(Clone)]
pub struct OnlyFaults<R>(pub R);

impl<R: Reporter<Activity = ConsensusActivity>> Reporter for OnlyFaults<R> {
    type Activity = ConsensusActivity;

    fn report(&mut self, activity: ConsensusActivity) -> Feedback {
        match activity {
            Activity::ConflictingNotarize(_)
            | Activity::ConflictingFinalize(_)
            | Activity::NullifyFinalize(_) => self.0.report(activity),
            _ => Feedback::Ok,
        }
    }
}

/// Checks a misbehaviour report from a block: the proof decodes as the claimed kind of fault,
/// both signatures verify under `scheme`, and the signer, epoch and view match the report.
pub fn verify<R: CryptoRng>(
    m: &Misbehavior,
    scheme: &Scheme,
    participants: &Set<ed25519::PublicKey>,
    rng: &mut R,
) -> bool {
    fn check<E: Attributable + Viewable + Epochable>(
        e: &E,
        m: &Misbehavior,
        participants: &Set<ed25519::PublicKey>,
        valid: bool,
    ) -> bool {
        valid
            && participants.key(e.signer()).map(crate::block::to_account) == Some(m.offender)
            && e.epoch().get() == m.epoch
            && e.view().get() == m.view
    }
    let bytes = || bytes::Bytes::copy_from_slice(&m.proof);
    match m.kind {
        FaultKind::ConflictingNotarize => ConflictingNotarize::<Scheme, sha256::Digest>::decode(bytes())
            .is_ok_and(|e| check(&e, m, participants, e.verify(rng, scheme, &Sequential))),
        FaultKind::ConflictingFinalize => ConflictingFinalize::<Scheme, sha256::Digest>::decode(bytes())
            .is_ok_and(|e| check(&e, m, participants, e.verify(rng, scheme, &Sequential))),
        FaultKind::NullifyFinalize => NullifyFinalize::<Scheme, sha256::Digest>::decode(bytes())
            .is_ok_and(|e| check(&e, m, participants, e.verify(rng, scheme, &Sequential))),
    }
}
