//! Signature checks for submitted transactions, on a bounded pool of low-priority threads that
//! serves clients fairly, before anything queues for the executor.
//!
//! An Ed25519 check costs tens of microseconds; a 1,000-transaction batch of junk signatures
//! costs tens of milliseconds. Done on the executor, that time would come out of consensus;
//! done on the runtime's worker threads, out of the tasks consensus runs on. Here:
//! - checks run on `threads` dedicated threads at nice 10 (level with the API), so the
//!   scheduler gives consensus the CPU first (lower still starves honest transactions while
//!   a provider computes: see BENCHMARKS.md);
//! - clients are served round-robin, [`CHUNK`] signatures at a time, so one transfer waits for
//!   at most a chunk per other waiting client, never for a flooder's whole backlog;
//! - each client may have [`PER_CLIENT`] requests waiting and the node [`QUEUE`]; beyond
//!   that a request is refused with 503, and each client address also has a budget of checks
//!   per second (`[api.limits] per_client_signatures`, charged by the handlers);
//! - a request stops being checked at its first invalid signature: an honest client signs
//!   what it sends, so the rest of a forged batch is refused unchecked
//!   ([`MempoolError::AfterForgery`]) and a batch of junk costs one check, not a thousand.
//!
//! A flood of junk costs the flooder, not the chain or the other clients.

use super::error::ApiError;
use agora_chain::mempool::{MempoolError, VerifiedTx};
use agora_core::SignedTx;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};

/// Requests that may wait for verification, node-wide.
pub const QUEUE: usize = 256;
/// Requests one client may have waiting.
pub const PER_CLIENT: usize = 4;
/// Signatures checked for one client before the next client's turn.
pub const CHUNK: usize = 64;
/// The verification threads' nice value (higher is lower priority).
const NICE: i32 = 10;

type Results = Vec<Result<VerifiedTx, MempoolError>>;

struct Job {
    chain_id: Arc<str>,
    txs: std::vec::IntoIter<SignedTx>,
    results: Results,
    /// The index of the request's first invalid signature, once found.
    forged: Option<usize>,
    done: tokio::sync::oneshot::Sender<Results>,
}

impl Job {
    /// Checks up to [`CHUNK`] more signatures; after a forged one, refuses the rest unchecked.
    fn check_chunk(&mut self) {
        for tx in self.txs.by_ref().take(CHUNK) {
            let result = match self.forged {
                Some(first) => Err(MempoolError::AfterForgery(first)),
                None => VerifiedTx::check(tx, &self.chain_id),
            };
            if result.is_err() && self.forged.is_none() {
                self.forged = Some(self.results.len());
            }
            self.results.push(result);
        }
        if let Some(first) = self.forged {
            let rest = self.txs.len();
            self.txs.by_ref().for_each(drop);
            self.results.extend((0..rest).map(|_| Err(MempoolError::AfterForgery(first))));
        }
    }
}

#[derive(Default)]
struct Queue {
    /// Clients with waiting jobs and not in service, in turn order.
    turn: VecDeque<IpAddr>,
    jobs: HashMap<IpAddr, VecDeque<Job>>,
    /// Unfinished requests per client, the one in service included.
    unfinished: HashMap<IpAddr, usize>,
    waiting: usize,
    closed: bool,
}

struct Pool {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Pool {
    /// Serves turns until the pool closes.
    fn work(&self) {
        loop {
            let (client, mut job) = {
                let mut q = self.queue.lock().expect("not poisoned");
                loop {
                    if q.closed {
                        return;
                    }
                    if let Some(c) = q.turn.pop_front() {
                        let job = q.jobs.get_mut(&c).and_then(VecDeque::pop_front).expect("a turn has a job");
                        break (c, job);
                    }
                    q = self.ready.wait(q).expect("not poisoned");
                }
            };
            job.check_chunk();
            let mut q = self.queue.lock().expect("not poisoned");
            let finished = job.txs.len() == 0;
            let queue = q.jobs.entry(client).or_default();
            if finished {
                let _ = job.done.send(std::mem::take(&mut job.results));
                q.waiting -= 1;
                if let Some(n) = q.unfinished.get_mut(&client) {
                    *n -= 1;
                    if *n == 0 {
                        q.unfinished.remove(&client);
                    }
                }
            } else {
                queue.push_front(job);
            }
            if q.jobs.get(&client).is_some_and(|j| !j.is_empty()) {
                q.turn.push_back(client);
                self.ready.notify_one();
            } else {
                q.jobs.remove(&client);
            }
        }
    }
}

/// The pool's handle. Cheap to clone; its threads stop when the last clone is dropped.
#[derive(Clone)]
pub struct SignaturePool {
    pool: Arc<Pool>,
    _close: Arc<Close>,
}

struct Close(Arc<Pool>);

impl Drop for Close {
    fn drop(&mut self) {
        self.0.queue.lock().expect("not poisoned").closed = true;
        self.0.ready.notify_all();
    }
}

impl SignaturePool {
    /// A pool of `threads` verification threads (at least one).
    pub fn new(threads: usize) -> Self {
        let pool = Arc::new(Pool { queue: Mutex::default(), ready: Condvar::new() });
        for i in 0..threads.max(1) {
            let pool = pool.clone();
            std::thread::Builder::new()
                .name(format!("agora-sigcheck-{i}"))
                .spawn(move || {
                    // On Linux a PRIO_PROCESS priority for the caller applies to this thread only.
                    let _ = rustix::process::setpriority_process(None, NICE);
                    pool.work();
                })
                .expect("spawn a signature-verification thread");
        }
        Self { _close: Arc::new(Close(pool.clone())), pool }
    }

    /// Checks every transaction's signature for `chain_id`, in `client`'s turns; one result per
    /// transaction, in order.
    pub async fn check(
        &self,
        client: IpAddr,
        chain_id: &str,
        txs: Vec<SignedTx>,
    ) -> Result<Results, ApiError> {
        let (done, result) = tokio::sync::oneshot::channel();
        {
            let mut q = self.pool.queue.lock().expect("not poisoned");
            let mine = q.unfinished.get(&client).copied().unwrap_or(0);
            if q.waiting >= QUEUE || mine >= PER_CLIENT {
                return Err(ApiError::unavailable(
                    "signature verification is saturated on this node; wait for your earlier requests, then retry",
                ));
            }
            let job = Job {
                chain_id: chain_id.into(),
                results: Vec::with_capacity(txs.len()),
                txs: txs.into_iter(),
                forged: None,
                done,
            };
            q.jobs.entry(client).or_default().push_back(job);
            q.waiting += 1;
            *q.unfinished.entry(client).or_default() += 1;
            // A client with unfinished requests is in turn or in service already; a worker
            // gives it its next turn.
            if mine == 0 {
                q.turn.push_back(client);
                self.pool.ready.notify_one();
            }
        }
        result.await.map_err(|_| ApiError::unavailable("signature verification stopped"))
    }

    /// Checks one transaction; a bad signature is a 422.
    pub async fn check_one(
        &self,
        client: IpAddr,
        chain_id: &str,
        tx: SignedTx,
    ) -> Result<VerifiedTx, ApiError> {
        let mut results = self.check(client, chain_id, vec![tx]).await?;
        results.pop().expect("one result per transaction").map_err(|e| ApiError::rejected(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::tx::{Transaction, TxPayload};
    use agora_core::{Amount, SecretKey};

    fn tx(chain: &str, i: u64) -> SignedTx {
        let key = SecretKey::from_label("sig");
        Transaction {
            sender: key.public(),
            nonce: i,
            fee: Amount(10),
            payload: TxPayload::Bond { amount: Amount(1) },
        }
        .sign(chain, &key)
    }

    #[tokio::test]
    async fn results_come_back_in_order_and_checking_stops_at_the_first_forgery() {
        let pool = SignaturePool::new(2);
        let me: IpAddr = "10.0.0.1".parse().unwrap();
        let good: Vec<SignedTx> = (0..200).map(|i| tx("c", i)).collect();
        let results = pool.check(me, "c", good.clone()).await.unwrap();
        assert_eq!(results.len(), 200);
        for (r, t) in results.iter().zip(&good) {
            assert_eq!(r.as_ref().unwrap().signed(), t, "order is kept across chunks");
        }
        // A signature for another chain at index 130 (in the third chunk): the ones before it
        // are checked, it is refused as forged, and the rest are refused unchecked.
        let mut forged = good.clone();
        forged[130] = tx("other", 130);
        let results = pool.check(me, "c", forged).await.unwrap();
        assert_eq!(results.len(), 200);
        assert!(results[..130].iter().all(Result::is_ok));
        assert!(matches!(&results[130], Err(MempoolError::Rejected(_))));
        assert!(results[131..].iter().all(|r| matches!(r, Err(MempoolError::AfterForgery(130)))));
        assert!(format!("{}", results[199].as_ref().unwrap_err()).contains("resend"));
        assert!(pool.check_one(me, "c", tx("other", 0)).await.is_err());
    }

    #[test]
    fn a_junk_batch_costs_one_check() {
        let (done, _) = tokio::sync::oneshot::channel();
        let junk: Vec<SignedTx> = (0..1_000).map(|i| tx("other", i)).collect();
        let mut job =
            Job { chain_id: "c".into(), results: vec![], txs: junk.into_iter(), forged: None, done };
        job.check_chunk();
        assert_eq!(job.txs.len(), 0, "nothing is left to check after one turn");
        assert_eq!(job.results.len(), 1_000);
        assert!(matches!(job.results[0], Err(MempoolError::Rejected(_))), "the first is checked");
        assert!(job.results[1..].iter().all(|r| matches!(r, Err(MempoolError::AfterForgery(0)))));
    }

    #[tokio::test]
    async fn a_flooder_waits_for_its_own_backlog_and_others_are_served_between() {
        let pool = SignaturePool::new(1);
        let (flooder, honest): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        // Valid signatures (a flooder replaying signed transactions): each one is checked.
        let junk: Vec<SignedTx> = (0..2_000).map(|i| tx("c", i)).collect();
        let mut floods = vec![];
        for _ in 0..PER_CLIENT {
            let (pool, junk) = (pool.clone(), junk.clone());
            floods.push(tokio::spawn(async move { pool.check(flooder, "c", junk).await.map(|r| r.len()) }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let refused = pool.check(flooder, "c", junk.clone()).await.expect_err("over its own limit");
        assert_eq!(refused.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        // The honest transaction is checked while the flooder's 8,000 signatures still wait.
        pool.check_one(honest, "c", tx("c", 0)).await.expect("served between the flooder's chunks");
        assert!(floods.iter().any(|f| !f.is_finished()), "the flood was still being checked");
        for f in floods {
            assert_eq!(f.await.unwrap().unwrap(), 2_000);
        }
    }
}
