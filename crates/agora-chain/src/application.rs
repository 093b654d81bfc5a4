//! The consensus-facing application: Commonware's `Deferred` wrapper calls `propose` and
//! `verify`; we gather the unfinalized ancestry and hand the work to the executor. Marshal
//! delivers finalized blocks to [`FinalizedReporter`], which forwards them to the executor.

use crate::block::{ChainBlock, Ctx};
use crate::executor::Shared;
use crate::mailbox::{Consensus, ExecutorMailbox, Proposed};
use commonware_actor::Feedback;
use commonware_consensus::marshal::Update;
use commonware_consensus::marshal::ancestry::Ancestry;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::{Application, Heightable, Reporter};
use commonware_cryptography::Digested;
use commonware_parallel::Sequential;
use commonware_runtime::Clock;
use futures::StreamExt;
use std::time::{Duration, UNIX_EPOCH};

/// How far ahead of our clock a block's timestamp may be. A block further ahead is not invalid
/// forever, so verification waits until it is within range instead of rejecting it.
pub const MAX_DRIFT_MS: u64 = 500;
/// How far behind our clock a proposal's timestamp may be. Honest proposers stamp their clock
/// (or the parent's time, if later), and a proposal is verified within a view's timeouts, so
/// an older stamp is a proposer moving the chain's clock back (delaying deadlines): refused.
pub const MAX_LAG_MS: u64 = 10_000;

/// Whether a proposal stamped `ts` is recent enough to vote for at `now` (both unix ms). With
/// [`MAX_DRIFT_MS`], a proposer picks its block's time within about 10.5 s of real time.
pub fn recent_enough(ts: u64, now: u64) -> bool {
    ts.saturating_add(MAX_LAG_MS) >= now
}

fn now_ms(clock: &impl Clock) -> u64 {
    clock.current().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// The application `Deferred` drives.
#[derive(Clone)]
pub struct App {
    executor: ExecutorMailbox,
    shared: Shared,
}

impl App {
    /// An application backed by the executor behind `executor`.
    pub fn new(executor: ExecutorMailbox, shared: Shared) -> Self {
        Self { executor, shared }
    }

    /// Collects blocks from `ancestry` while they are above the finalized height.
    async fn unfinalized(&self, ancestry: &mut impl Ancestry<ChainBlock>) -> Vec<Digested<ChainBlock>> {
        let finalized = self.shared.finalized_height();
        let mut out = Vec::new();
        while let Some(b) = ancestry.next().await {
            let done = b.height().get() <= finalized;
            out.push(b);
            if done {
                break;
            }
        }
        out
    }
}

impl<E: Clock> Application<E> for App {
    type SigningScheme = Scheme;
    type Context = Ctx;
    type Block = ChainBlock;
    type Input = ();

    async fn propose(
        &mut self,
        (runtime, context): (E, Ctx),
        mut ancestry: impl Ancestry<ChainBlock>,
        _input: (),
    ) -> Option<Digested<ChainBlock>> {
        let ancestry = self.unfinalized(&mut ancestry).await;
        // An empty block waits out the chain's interval after its parent, unless a
        // transaction arrives first: an idle chain grows slowly, a busy one at full speed.
        loop {
            let mut arrival = std::pin::pin!(self.shared.arrival());
            arrival.as_mut().enable();
            let now_ms = now_ms(&runtime);
            let (context, ancestry) = (context.clone(), ancestry.clone());
            let proposed = self
                .executor
                .ask_consensus(|response| Consensus::Propose { context, ancestry, now_ms, response })
                .await?;
            match proposed {
                Proposed::Block(block) => return Some(Digested::compute(*block, &Sequential).await),
                Proposed::Skip => return None,
                Proposed::Idle { due_ms } => {
                    let wait = runtime.sleep(Duration::from_millis(due_ms.saturating_sub(now_ms)));
                    futures::future::select(std::pin::pin!(wait), arrival).await;
                }
            }
        }
    }

    async fn verify(
        &mut self,
        (runtime, context): (E, Ctx),
        mut ancestry: impl Ancestry<ChainBlock>,
    ) -> bool {
        let ancestry = self.unfinalized(&mut ancestry).await;
        let Some(block) = ancestry.first() else { return false };
        // Too far in the future is not permanently invalid: wait until it is within range.
        let ts = block.inner().block.header.timestamp_ms;
        let now = now_ms(&runtime);
        if !recent_enough(ts, now) {
            return false;
        }
        if ts > now + MAX_DRIFT_MS {
            runtime.sleep(Duration::from_millis(ts - now - MAX_DRIFT_MS)).await;
        }
        self.executor
            .ask_consensus(|response| Consensus::Verify { context, ancestry, response })
            .await
            .unwrap_or(false)
    }
}

/// Receives finalized blocks from marshal (in height order, at least once) and forwards them to
/// the executor, which acknowledges each once it is durable. `report` must not block.
#[derive(Clone)]
pub struct FinalizedReporter {
    executor: ExecutorMailbox,
}

impl FinalizedReporter {
    /// A reporter feeding `executor`.
    pub fn new(executor: ExecutorMailbox) -> Self {
        Self { executor }
    }
}

impl Reporter for FinalizedReporter {
    type Activity = Update<ChainBlock>;

    fn report(&mut self, update: Update<ChainBlock>) -> Feedback {
        if self.executor.consensus(Consensus::Finalized(update)) { Feedback::Ok } else { Feedback::Closed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposal_stamped_far_in_the_past_is_refused() {
        let now = 1_700_000_000_000;
        assert!(recent_enough(now, now));
        assert!(recent_enough(now - MAX_LAG_MS, now), "a slow view is still fine");
        assert!(!recent_enough(now - MAX_LAG_MS - 1, now), "older: the proposer set the clock back");
        assert!(!recent_enough(0, now));
        assert!(recent_enough(now + 60_000, now), "the future is waited for, not refused");
        assert!(recent_enough(u64::MAX, now), "no overflow");
    }
}
