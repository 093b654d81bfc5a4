//! Serving sessions on a provider: the node side of `agora-serve`.
//!
//! * [`SessionDirectory`] tells the serving endpoints which sessions this provider serves (from
//!   the chain, cached and kept fresh by the agent's events) and keeps their models warm: a
//!   model is fetched and loaded when the provider is matched, once per model.
//! * [`Windows`] commits the receipts served to the chain in windows, and answers receipt
//!   challenges with inclusion proofs from the book.

use super::runtimes::Runtimes;
use crate::client::NodeClient;
use crate::sender::TxSender;
use agora_core::session::{MAX_WINDOW_RECEIPTS, RequestProof, ServeKind, SessionId};
use agora_core::tx::TxPayload;
use agora_core::{AccountId, Hash, JobKind, PublicKey};
use agora_ml::embed::Embedder;
use agora_ml::generate::Llm;
use agora_serve::book::Books;
use agora_serve::engine::Model;
use agora_serve::server::{Directory, Serving};
use agora_store::Pin;
use agora_store::http::auth::now_ms;
use anyhow::Context;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// Most receipts one window commits (a provider that served more commits several).
pub const WINDOW_RECEIPTS: u32 = 4096;
const _: () = assert!(WINDOW_RECEIPTS <= MAX_WINDOW_RECEIPTS);
/// How often the provider looks for windows that are due ([`WindowPolicy`]).
pub const COMMIT_EVERY: Duration = Duration::from_secs(2);

/// When a session's served receipts are committed as a window.
///
/// An audited window is sampled, not replayed whole, once it holds more answers than a full
/// sample (90 at the default detection target), so the auditors' share of the serving compute
/// falls as windows grow: a window is cut when `receipts` answers wait. `max_age` bounds how
/// long an answer waits for its window (and so its payment) when few are served, and a
/// session that has ended commits what is left at once. Both must leave the window inside the
/// session's commit grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPolicy {
    /// Receipts that make a window due (at most [`WINDOW_RECEIPTS`] are committed in one).
    pub receipts: u32,
    /// Longest an answer waits before its window is due, in ms.
    pub max_age_ms: u64,
}

/// A provider's window policy unless its config says otherwise: a full window (90 of 4,096
/// answers, about 2 %, are replayed when it is audited), or whatever an answer 30 s old
/// waits with.
pub const DEFAULT_WINDOW: WindowPolicy = WindowPolicy { receipts: WINDOW_RECEIPTS, max_age_ms: 30_000 };

impl WindowPolicy {
    /// Whether `pending` receipts, the oldest answered at `oldest_ms`, are due for a window at
    /// `now_ms`, in a session that serves until `until_ms`.
    pub fn due(&self, pending: u64, oldest_ms: u64, now_ms: u64, until_ms: u64) -> bool {
        pending > 0
            && (pending >= u64::from(self.receipts)
                || now_ms >= oldest_ms.saturating_add(self.max_age_ms)
                || now_ms >= until_ms)
    }
}
/// Longest a window commitment or a challenge answer may take to finalize.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// What the provider knows of a session it serves.
#[derive(Clone)]
struct Known {
    client: PublicKey,
    rates: agora_core::session::ServeRates,
    /// This provider's cap in the session (zero when it does not serve it).
    cap: agora_core::Amount,
    until_ms: u64,
    kind: ServeKind,
    model: Hash,
    sources: Vec<String>,
    member: bool,
}

/// The sessions this provider serves, and their warm models.
pub struct SessionDirectory {
    me: AccountId,
    chain_id: tokio::sync::OnceCell<String>,
    chain: NodeClient,
    runtimes: Arc<Runtimes>,
    known: Mutex<HashMap<SessionId, Known>>,
    /// Loaded models; the async lock makes concurrent first requests wait for one load.
    models: tokio::sync::Mutex<HashMap<(ServeKind, Hash), Model>>,
}

impl SessionDirectory {
    /// A directory for provider `me`, loading models through `runtimes`.
    pub fn new(me: AccountId, chain: NodeClient, runtimes: Arc<Runtimes>) -> Self {
        Self {
            me,
            chain_id: Default::default(),
            chain,
            runtimes,
            known: Mutex::default(),
            models: Default::default(),
        }
    }

    /// Reads session `id` from the chain again (after it changed: matched, ended, convicted).
    pub async fn refresh(&self, id: SessionId) -> Result<Option<()>, String> {
        let detail = match self.chain.session(id).await {
            Ok(d) => d,
            Err(crate::client::ClientError::Api { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let s = &detail.session;
        let me = s.member(&self.me).filter(|m| m.serves());
        let known = Known {
            client: s.terms.client,
            rates: s.terms.rates,
            cap: me.map_or(agora_core::Amount::ZERO, |m| m.cap),
            until_ms: s.until_ms,
            kind: s.terms.kind,
            model: s.terms.model,
            sources: s.terms.sources.clone(),
            member: me.is_some(),
        };
        self.known.lock().expect("not poisoned").insert(id, known);
        Ok(Some(()))
    }

    async fn lookup(&self, id: SessionId) -> Result<Option<Known>, String> {
        if let Some(k) = self.known.lock().expect("not poisoned").get(&id) {
            return Ok(Some(k.clone()));
        }
        if self.refresh(id).await?.is_none() {
            return Ok(None);
        }
        Ok(self.known.lock().expect("not poisoned").get(&id).cloned())
    }

    /// The warm model of session `id`, loading it (once per model) if needed.
    pub async fn warm(&self, id: SessionId) -> anyhow::Result<Model> {
        let k = self
            .lookup(id)
            .await
            .map_err(anyhow::Error::msg)?
            .with_context(|| format!("session {id} does not exist"))?;
        let mut models = self.models.lock().await;
        if let Some(m) = models.get(&(k.kind, k.model)) {
            return Ok(m.clone());
        }
        let kind = agora_ledger::sessions::runtime_of(k.kind);
        let reach = self.chain.reach().await?;
        let pin = Pin::until(format!("session:{id}"), k.until_ms);
        let dir = self.runtimes.unpacked_model(kind, &k.model, &k.sources, reach, &pin).await?;
        let model = tokio::task::spawn_blocking(move || open_model(kind, &dir)).await??;
        info!(session = id, model = %k.model, "model warm");
        models.insert((k.kind, k.model), model.clone());
        Ok(model)
    }
}

/// Loads the serving model of runtime `kind` (generation or embeddings) from its unpacked
/// directory `dir`.
pub fn open_model(kind: JobKind, dir: &std::path::Path) -> anyhow::Result<Model> {
    let device = agora_ml::device();
    Ok(match kind {
        JobKind::Generate => Model::Chat(Arc::new(Llm::load(&dir.join("model.gguf"), &device)?)),
        JobKind::Embed => Model::Embed(Arc::new(Embedder::load(dir, &device)?)),
        other => anyhow::bail!("no session serves {other:?} models"),
    })
}

impl Directory for SessionDirectory {
    async fn serving(&self, session: SessionId) -> Result<Option<Serving>, String> {
        let Some(k) = self.lookup(session).await? else { return Ok(None) };
        if !k.member {
            return Ok(None);
        }
        let model = self.warm(session).await.map_err(|e| format!("{e:#}"))?;
        let chain_id = self
            .chain_id
            .get_or_try_init(|| async { self.chain.status().await.map(|s| s.chain_id) })
            .await
            .map_err(|e| e.to_string())?
            .clone();
        Ok(Some(Serving {
            rates: k.rates,
            cap: k.cap,
            chain_id,
            client: k.client,
            until_ms: k.until_ms,
            model,
        }))
    }
}

/// Commits served receipts in windows and answers challenges.
pub struct Windows {
    me: AccountId,
    /// Test hook: never commit (see `ProviderSection::omit_receipts`).
    omit: bool,
    chain: NodeClient,
    sender: Arc<TxSender>,
    books: Arc<Books>,
    policy: WindowPolicy,
    /// Per session, receipts known to be committed (or that can no longer be), and the end of
    /// its serving (unix ms).
    committed: Mutex<HashMap<SessionId, (u64, u64)>>,
}

impl Windows {
    /// Commits `me`'s receipts from `books` through `sender` as `policy` says (never, when
    /// `omit`: a cheater for demos and tests).
    pub fn new(
        me: AccountId,
        chain: NodeClient,
        sender: Arc<TxSender>,
        books: Arc<Books>,
        policy: WindowPolicy,
        omit: bool,
    ) -> Self {
        Self { me, omit, chain, sender, books, policy, committed: Mutex::default() }
    }

    /// Whether session `id`'s receipts after the first `committed` of `served` are due.
    fn due(&self, id: SessionId, committed: u64, until_ms: u64) -> anyhow::Result<bool> {
        let book = self.books.get(id)?;
        let book = book.lock().expect("not poisoned");
        let receipts = book.receipts();
        let Some(oldest) = usize::try_from(committed).ok().and_then(|c| receipts.get(c)) else {
            return Ok(false);
        };
        let pending = receipts.len() as u64 - committed;
        Ok(self.policy.due(pending, oldest.last_token_ms, now_ms(), until_ms))
    }

    /// Commits every session's receipts that are due for a window.
    pub async fn commit_pending(&self) -> anyhow::Result<()> {
        if self.omit {
            return Ok(());
        }
        for id in self.books.sessions()? {
            let served = self.books.get(id)?.lock().expect("not poisoned").receipts().len() as u64;
            let known = self.committed.lock().expect("not poisoned").get(&id).copied();
            if let Some((committed, until_ms)) = known
                && (committed >= served || !self.due(id, committed, until_ms)?)
            {
                continue;
            }
            if let Err(e) = self.commit(id, served).await {
                warn!(session = id, error = %format!("{e:#}"), "cannot commit a serving window");
            }
        }
        Ok(())
    }

    async fn commit(&self, id: SessionId, served: u64) -> anyhow::Result<()> {
        let detail = self.chain.session(id).await?;
        let params = self.chain.params().await?;
        let now = now_ms();
        let s = &detail.session;
        let Some(m) = s.member(&self.me).filter(|m| !m.removed) else {
            self.committed.lock().expect("not poisoned").insert(id, (u64::MAX, s.until_ms));
            return Ok(());
        };
        // A provider that left (or was dismissed) commits what it served at once.
        let until = s.member_until_ms(m);
        if now > s.member_commit_deadline_ms(m, &params) {
            warn!(
                session = id,
                unsent = served.saturating_sub(m.next_seq),
                "the session takes no more windows"
            );
            self.committed.lock().expect("not poisoned").insert(id, (u64::MAX, until));
            return Ok(());
        }
        if !self.due(id, m.next_seq, until)? {
            self.committed.lock().expect("not poisoned").insert(id, (m.next_seq, until));
            return Ok(());
        }
        let window = self.books.get(id)?.lock().expect("not poisoned").window(m.next_seq, WINDOW_RECEIPTS);
        let Some(window) = window else {
            self.committed.lock().expect("not poisoned").insert(id, (m.next_seq, until));
            return Ok(());
        };
        let end = window.first_seq + u64::from(window.receipts);
        self.sender.send(TxPayload::CommitWindow { window }, SEND_TIMEOUT).await?;
        self.committed.lock().expect("not poisoned").insert(id, (end, until));
        info!(session = id, receipts = end - m.next_seq, "committed a serving window");
        Ok(())
    }

    /// Answers the challenge of receipt `seq` in session `id` with its inclusion proof.
    pub async fn answer(&self, id: SessionId, seq: u64) -> anyhow::Result<()> {
        let detail = self.chain.session(id).await?;
        let w = detail
            .windows
            .iter()
            .find(|w| w.provider == self.me && w.window.covers(seq))
            .with_context(|| format!("no window of ours holds receipt {seq} of session {id}"))?;
        let book = self.books.get(id)?;
        let (proof, request) = {
            let mut book = book.lock().expect("not poisoned");
            let proof = book
                .proof(w.first_seq, w.window.commitment.receipts, seq)
                .with_context(|| format!("our book does not hold receipt {seq} of session {id}"))?;
            // A request challenge (no leaf named) is answered with the receipt and the client's
            // signature over its request.
            let asks_request = w.window.challenges.iter().any(|c| c.seq == seq && c.leaf.is_none());
            let request = if asks_request {
                let record = book.record_at(seq)?;
                Some(RequestProof {
                    receipt: record.receipt.receipt,
                    client_signature: record.client_signature,
                })
            } else {
                None
            };
            (proof, request)
        };
        self.sender
            .send(TxPayload::AnswerChallenge { session: id, seq, proof, request }, SEND_TIMEOUT)
            .await?;
        info!(session = id, seq, "answered a receipt challenge");
        Ok(())
    }

    /// Commits the windows that are due, every [`COMMIT_EVERY`], until the process stops.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.commit_pending().await {
                warn!(error = %format!("{e:#}"), "cannot commit serving windows");
            }
            tokio::time::sleep(COMMIT_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_due_when_full_when_its_oldest_answer_waited_long_enough_or_when_the_session_ended() {
        let p = WindowPolicy { receipts: 300, max_age_ms: 20_000 };
        let (oldest, until) = (1_000_000, 5_000_000);
        assert!(!p.due(0, oldest, until + 1, until), "nothing to commit");
        assert!(!p.due(299, oldest, oldest + 19_999, until), "neither full nor old");
        assert!(p.due(300, oldest, oldest, until), "full");
        assert!(p.due(1, oldest, oldest + 20_000, until), "old enough");
        assert!(p.due(1, oldest, until, until), "the session ended");
        assert!(p.due(1, u64::MAX, until, until), "a clock far off saturates");
    }
}
