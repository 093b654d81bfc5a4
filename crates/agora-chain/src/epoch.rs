//! Committee reconfiguration: one simplex engine per epoch.
//!
//! The ledger elects the next epoch's committee after the last block of an epoch, and that
//! block carries it (`ChainBlock::next_committee`, checked by every validator). The
//! [`Orchestrator`] follows finalized blocks from marshal. When the last block of the running
//! epoch arrives it registers the next committee's scheme (so marshal can verify the new
//! epoch's finalizations), tells p2p the epoch's peer set, starts a simplex engine for the new
//! epoch on top of that block, stops the old engine, and only then acknowledges the block — so a
//! node whose marshal has processed the boundary has always entered the next epoch, and a
//! restart resumes in the epoch after marshal's processed height.
//!
//! Nodes outside a committee run its engine too, as observers with a verify-only scheme: they
//! see the committee's votes and certificates and so learn of finalized blocks; marshal's
//! backfill alone would never tell them the tip moved. Consensus messages travel on per-epoch
//! subchannels; a message from a later epoch than ours means a peer is ahead, and marshal is
//! asked to fetch our epoch's last block from it.

use crate::application::App;
use crate::block::ChainBlock;
use crate::evidence::{EvidencePool, EvidenceReporter, OnlyFaults};
use crate::validator::{Marshal, NAMESPACE, Timing};
use commonware_consensus::marshal::Update;
use commonware_consensus::marshal::standard::Deferred;
use commonware_consensus::simplex::config::{Floor, ForwardPolicy, SkipPolicy};
use commonware_consensus::simplex::scheme::{ed25519::Scheme, reporter::AttributableReporter};
use commonware_consensus::simplex::{self};
use commonware_consensus::types::{Epocher, FixedEpocher, Height, ViewDelta};
use commonware_consensus::{Heightable as _, Reporters};
use commonware_cryptography::certificate::{Provider as CertificateProvider, Scoped};
use commonware_cryptography::{Digestible, ed25519, sha256};
use commonware_macros::select;
use commonware_p2p::utils::mux::{Builder as _, MuxHandle, Muxer};
use commonware_p2p::{Blocker, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_utils::acknowledgement::Exact;
use commonware_utils::{Acknowledgement as _, NZUsize, ordered::Set, vec::NonEmptyVec};
use futures::StreamExt;
use futures::channel::mpsc;
use rand_core::CryptoRng;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{error, info, warn};

pub use commonware_consensus::types::Epoch;

/// The consensus application every epoch's engine drives.
pub type ChainApp<E> = Deferred<E, Scheme, App, ChainBlock, FixedEpocher>;

/// The signing scheme of every epoch this node has entered, so marshal can verify
/// finalizations (and notarizations) of any epoch whose blocks it syncs.
#[derive(Clone, Default)]
pub struct Committees {
    schemes: Arc<Mutex<BTreeMap<Epoch, Arc<Scheme>>>>,
}

impl Committees {
    /// Records `epoch`'s scheme (signing if this node is a member, verify-only otherwise).
    pub fn register(&self, epoch: Epoch, scheme: Scheme) {
        self.schemes.lock().expect("not poisoned").insert(epoch, Arc::new(scheme));
    }
}

impl CertificateProvider for Committees {
    type Scope = Epoch;
    type Scheme = Scheme;

    fn scoped(&self, epoch: Epoch) -> Option<Scoped<Scheme>> {
        // Marshal asks for `scheme()` even to verify, so hand out the full scope; a
        // verify-only ed25519 scheme simply has no key to sign with.
        self.schemes.lock().expect("not poisoned").get(&epoch).cloned().map(Scoped::scheme)
    }
}

/// Tells the p2p layer about an epoch's peers when the node enters it. Production nodes map
/// keys to addresses (the lookup network dials only peers it has an address for); simulations
/// register keys with the simulated network.
pub trait EpochPeers: Send + 'static {
    /// The node is entering `epoch`, whose committee is `committee`.
    fn track(&mut self, epoch: Epoch, committee: &Set<ed25519::PublicKey>);
}

/// The storage partition of `epoch`'s consensus journal (votes and certificates it saw).
pub fn journal_partition(prefix: &str, epoch: Epoch) -> String {
    format!("{prefix}-simplex-e{}", epoch.get())
}

/// Deletes the consensus journals of `epoch` and of the epoch before it, whose engines no
/// longer run: a restart resumes after the last processed boundary and never replays them.
/// (Owns its context so no borrow of the orchestrator is held across the await.)
async fn forget<E: Storage>(context: E, prefix: &str, epoch: Epoch) {
    for e in [Some(epoch), epoch.previous()].into_iter().flatten() {
        // Missing (already deleted, or never written) is fine.
        let _ = context.remove(&journal_partition(prefix, e), None).await;
    }
}

/// Reports marshal's finalized blocks to the orchestrator; never blocks, never drops.
#[derive(Clone)]
pub struct OrchestratorMailbox {
    sender: mpsc::UnboundedSender<(commonware_cryptography::Digested<ChainBlock>, Exact)>,
}

impl commonware_consensus::Reporter for OrchestratorMailbox {
    type Activity = Update<ChainBlock>;

    fn report(&mut self, update: Update<ChainBlock>) -> commonware_actor::Feedback {
        let Update::Block(block, ack) = update else { return commonware_actor::Feedback::Ok };
        match self.sender.unbounded_send((block, ack)) {
            Ok(()) => commonware_actor::Feedback::Ok,
            Err(_) => commonware_actor::Feedback::Closed,
        }
    }
}

/// Everything that stays the same across epochs' engines.
pub struct OrchestratorConfig<B, T> {
    /// This node's consensus key.
    pub key: ed25519::PrivateKey,
    /// Blocks per epoch (the ledger's `epoch_length`, fixed at genesis).
    pub epocher: FixedEpocher,
    /// Digest of the genesis block (the floor of epoch 0).
    pub genesis_digest: sha256::Digest,
    /// The committee of epoch 0.
    pub genesis_committee: Set<ed25519::PublicKey>,
    /// Marshal's processed height when the node started (`None`: nothing yet).
    pub processed: Option<u64>,
    /// Schemes by epoch, shared with marshal.
    pub committees: Committees,
    /// Block delivery and lookups.
    pub marshal: Marshal,
    /// Verified fault evidence goes here.
    pub evidence: EvidencePool,
    /// Blocks misbehaving peers.
    pub blocker: B,
    /// p2p peer sets.
    pub peers: T,
    /// Consensus timeouts.
    pub timing: Timing,
    /// Storage prefix (each epoch's engine journals under its own partition).
    pub prefix: String,
    /// Page cache for the engines' journals.
    pub page_cache: CacheRef,
    /// Engine mailbox size.
    pub mailbox_size: NonZeroUsize,
}

/// The running epoch.
struct Active {
    epoch: Epoch,
    engine: Handle<()>,
}

/// Per-epoch subchannels of the three consensus channels.
struct Channels<S: Sender> {
    votes: MuxHandle<S>,
    certs: MuxHandle<S>,
    resolver: MuxHandle<S>,
}

/// Runs consensus epoch after epoch (see the module docs).
pub struct Orchestrator<E: Clock, B, T> {
    context: E,
    cfg: OrchestratorConfig<B, T>,
    app: ChainApp<E>,
    finalized: mpsc::UnboundedReceiver<(commonware_cryptography::Digested<ChainBlock>, Exact)>,
}

impl<E, B, T> Orchestrator<E, B, T>
where
    E: Spawner + Clock + Storage + Metrics + CryptoRng,
    B: Blocker<PublicKey = ed25519::PublicKey>,
    T: EpochPeers,
{
    /// An orchestrator driving `app`, and the reporter marshal must feed it through.
    pub fn new(context: E, cfg: OrchestratorConfig<B, T>, app: ChainApp<E>) -> (Self, OrchestratorMailbox) {
        let (sender, finalized) = mpsc::unbounded();
        (Self { context, cfg, app, finalized }, OrchestratorMailbox { sender })
    }

    /// Enters the epoch the node stopped in (or epoch 0) and follows boundaries from there.
    pub fn start<S, R>(self, votes: (S, R), certs: (S, R), resolver: (S, R)) -> Handle<()>
    where
        S: Sender<PublicKey = ed25519::PublicKey>,
        R: Receiver<PublicKey = ed25519::PublicKey>,
    {
        let context = self.context.child("orchestrator");
        context.spawn(move |_| self.run(votes, certs, resolver))
    }

    async fn run<S, R>(mut self, votes: (S, R), certs: (S, R), resolver: (S, R))
    where
        S: Sender<PublicKey = ed25519::PublicKey>,
        R: Receiver<PublicKey = ed25519::PublicKey>,
    {
        let (mux, votes, mut vote_backup) =
            Muxer::builder(self.context.child("vote_mux"), votes.0, votes.1).with_backup().build();
        mux.start();
        let (mux, certs, mut cert_backup) =
            Muxer::builder(self.context.child("cert_mux"), certs.0, certs.1).with_backup().build();
        mux.start();
        let (mux, resolver) = Muxer::new(self.context.child("resolver_mux"), resolver.0, resolver.1);
        mux.start();
        let mut channels = Channels { votes, certs, resolver };

        // Marshal acknowledges an epoch's last block only after the next epoch was entered, so
        // the epoch after the processed height is the one to run.
        let next_height = self.cfg.processed.map_or(0, |h| h + 1);
        let epoch =
            self.cfg.epocher.containing(Height::new(next_height)).expect("fixed epochs cover all").epoch();
        let (floor, committee) = if epoch.is_zero() {
            (self.cfg.genesis_digest, self.cfg.genesis_committee.clone())
        } else {
            let last = self.cfg.epocher.last(epoch.previous().expect("not zero")).expect("covered");
            let Some(boundary) = self.cfg.marshal.get_block(last).await else {
                warn!(%epoch, "the last block of the previous epoch is missing; cannot start consensus");
                return;
            };
            (boundary.digest(), Set::from_iter_dedup(boundary.inner().next_committee.clone()))
        };
        let Some(mut active) = self.enter(epoch, floor, committee, &mut channels).await else { return };
        // No engine of an earlier epoch runs after a restart.
        if let Some(previous) = epoch.previous() {
            forget(self.context.child("journal_gc"), &self.cfg.prefix, previous).await;
        }

        loop {
            select! {
                backup = vote_backup.recv() => {
                    let Some((their_epoch, (from, _))) = backup else { return };
                    self.hint_if_ahead(active.epoch, their_epoch, from);
                },
                backup = cert_backup.recv() => {
                    let Some((their_epoch, (from, _))) = backup else { return };
                    self.hint_if_ahead(active.epoch, their_epoch, from);
                },
                result = &mut active.engine => {
                    // An engine stops only by failing (the old one is aborted only after it
                    // is replaced): consensus is over for this node, so stop with it.
                    match result {
                        Ok(()) => warn!(epoch = %active.epoch, "consensus engine stopped"),
                        Err(e) => error!(epoch = %active.epoch, error = %e, "consensus engine failed"),
                    }
                    return;
                },
                update = self.finalized.next() => {
                    let Some((block, ack)) = update else { return };
                    let last = self.cfg.epocher.last(active.epoch).expect("covered");
                    if block.height() < last {
                        ack.acknowledge();
                        continue;
                    }
                    if block.height() > last {
                        // Marshal delivers in height order, so this cannot happen; keep going.
                        warn!(height = %block.height(), epoch = %active.epoch, "finalized block past the epoch's end");
                        ack.acknowledge();
                        continue;
                    }
                    let next = active.epoch.next();
                    let committee = Set::from_iter_dedup(block.inner().next_committee.clone());
                    let Some(entered) = self.enter(next, block.digest(), committee, &mut channels).await else {
                        return;
                    };
                    let old = std::mem::replace(&mut active, entered);
                    old.engine.abort();
                    ack.acknowledge();
                    // The engine aborted an epoch ago has surely stopped writing by now.
                    if let Some(stale) = old.epoch.previous() {
                        forget(self.context.child("journal_gc"), &self.cfg.prefix, stale).await;
                    }
                },
            }
        }
    }

    /// A peer sent consensus traffic of a later epoch: it is ahead of us, so ask marshal to
    /// fetch our epoch's last block (and its finalization) from it.
    fn hint_if_ahead(&self, ours: Epoch, theirs: u64, from: ed25519::PublicKey) {
        if Epoch::new(theirs) > ours {
            let last = self.cfg.epocher.last(ours).expect("covered");
            self.cfg.marshal.hint_finalized(last, NonEmptyVec::new(from));
        }
    }

    /// Starts `epoch`'s engine on top of the block with digest `floor`.
    async fn enter<S: Sender<PublicKey = ed25519::PublicKey>>(
        &mut self,
        epoch: Epoch,
        floor: sha256::Digest,
        committee: Set<ed25519::PublicKey>,
        channels: &mut Channels<S>,
    ) -> Option<Active> {
        if committee.is_empty() {
            warn!(%epoch, "the epoch has no committee; cannot run consensus");
            return None;
        }
        let member = Scheme::signer(NAMESPACE, committee.clone(), self.cfg.key.clone());
        let is_member = member.is_some();
        let scheme = member.unwrap_or_else(|| Scheme::verifier(NAMESPACE, committee.clone()));
        self.cfg.committees.register(epoch, scheme.clone());
        self.cfg.peers.track(epoch, &committee);
        let context = self.context.child("simplex").with_attribute("epoch", epoch);
        let attributable = AttributableReporter::new(
            context.child("attributable"),
            scheme.clone(),
            EvidenceReporter::new(committee.clone(), self.cfg.evidence.clone()),
            Sequential,
            true,
        );
        let timing = self.cfg.timing;
        let engine = simplex::Engine::new(
            context,
            simplex::Config {
                scheme,
                elector: crate::block::elector(),
                blocker: self.cfg.blocker.clone(),
                automaton: self.app.clone(),
                relay: self.app.clone(),
                reporter: Reporters::from((self.app.clone(), OnlyFaults(attributable))),
                strategy: Sequential,
                partition: journal_partition(&self.cfg.prefix, epoch),
                mailbox_size: self.cfg.mailbox_size,
                epoch,
                floor: Floor::Genesis(floor),
                replay_buffer: NZUsize!(1024 * 1024),
                write_buffer: NZUsize!(1024 * 1024),
                page_cache: self.cfg.page_cache.clone(),
                leader_timeout: timing.leader_timeout,
                certification_timeout: timing.certification_timeout,
                timeout_retry: timing.timeout_retry,
                view_retention: ViewDelta::new(256),
                skip: SkipPolicy::Enabled {
                    timeout: timing.skip_timeout,
                    budget: simplex::config::SkipBudget::Participants,
                },
                fetch_timeout: commonware_utils::NonZeroDuration::new(timing.fetch_timeout)
                    .expect("non-zero"),
                fetch_retry_delay: Duration::from_millis(250),
                forward: ForwardPolicy::SilentLeader,
                track_historical_votes: true,
            },
        );
        let sub = epoch.get();
        let (Ok(votes), Ok(certs), Ok(resolver)) = (
            channels.votes.register(sub).await,
            channels.certs.register(sub).await,
            channels.resolver.register(sub).await,
        ) else {
            warn!(%epoch, "consensus channels closed");
            return None;
        };
        let engine = engine.start(votes, certs, resolver);
        info!(%epoch, members = committee.len(), is_member, "entered epoch");
        Some(Active { epoch, engine })
    }
}
