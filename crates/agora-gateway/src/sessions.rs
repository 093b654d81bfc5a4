//! The gateway's session mode: with `[gateway.session]` configured, `/v1` requests are served
//! by a warm serving session of the API key's account instead of a job per request.
//!
//! Per API key and kind of request the gateway keeps one session open (opening it on the first
//! request, renewing it before it ends or once its providers' shares are spent). A request
//! goes to the session's providers in turn; if one cannot be reached or breaks off, the next is
//! asked, and a stream already under way continues where it stopped (decoding is
//! deterministic, so the next provider's completion repeats what was sent). Every answer is
//! checked against its receipt before it is passed on, and the receipt is kept under
//! `gateway/receipts/<session>.jsonl` so an omission or alteration can be proven later.
//!
//! Money: opening a session locks its escrow from the key's account; the key's budget counts
//! the escrow until the session settles, then what it actually paid (see `jobs::reconcile`).

use super::Gateway;
use super::keys::KeyEntry;
use super::openai::OpenAiError;
use crate::config::GatewaySessionSection;
use agora_core::session::{ServeKind, ServeRates, SessionId, SessionTerms, SignedReceipt, Usage};
use agora_core::tx::TxPayload;
use agora_core::{AccountId, Amount, SecretKey};
use agora_ledger::Event;
use agora_serve::audit::{Answered, Claim};
use agora_serve::client::{ClientError, Expect, ServeClient, check_chat, check_embed};
use agora_serve::fingerprint::Fingerprint;
use agora_serve::wire::{ChatDone, ChatEvent, EmbedResponse, ServeBody, ServeRequest, SignedRequest};
use agora_store::http::auth::now_ms;
use anyhow::Context;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A session is renewed when less than this (or a quarter of its duration) is left of it.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// How long the providers read from the chain are used before they are read again (a
/// failure reads them again at once).
const MEMBERS_TTL: Duration = Duration::from_secs(5);
/// A provider is no longer asked once it has charged this share of what it may (bps).
const SHARE_SPENT_BPS: u64 = 9_000;
/// A provider that could not be reached (or broke the protocol) this many requests in a row is
/// dismissed from the session, so that its place is matched again.
pub const DISMISS_AFTER_FAILURES: u32 = 3;

/// The sessions the gateway keeps open.
pub struct Sessions {
    cfg: GatewaySessionSection,
    duration_ms: u64,
    match_timeout: Duration,
    serve: ServeClient,
    open: Mutex<HashMap<(String, ServeKind), Slot>>,
}

/// Where the open session of one API key and kind is kept; its lock makes concurrent first
/// requests wait for one session rather than open several.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Open>>>>;

/// An open session of one API key.
pub struct Open {
    /// Session id.
    pub id: SessionId,
    /// When it stops serving, unix ms.
    pub until_ms: u64,
    key: SecretKey,
    chain_id: String,
    terms: SessionTerms,
    nonce: AtomicU64,
    turn: AtomicUsize,
    /// Per provider, the running total of its last receipt.
    totals: Mutex<HashMap<AccountId, Usage>>,
    /// The providers last read from the chain, and when.
    members: Mutex<Option<(std::time::Instant, Vec<Member>)>>,
    /// Per provider, the requests in a row it failed to answer (see [`DISMISS_AFTER_FAILURES`]).
    failures: Mutex<HashMap<AccountId, u32>>,
}

/// A provider of a session, and where it serves.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its account.
    pub account: AccountId,
    /// The most its windows may charge in the session.
    pub cap: Amount,
    /// Its registered endpoint.
    pub endpoint: String,
}

/// A receipt as the gateway keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kept {
    /// The provider that signed it.
    pub provider: AccountId,
    /// The receipt.
    pub receipt: SignedReceipt,
    /// For a chat completion, what a recheck needs: the request and the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<KeptChat>,
}

/// A chat completion as the gateway keeps it, beside its receipt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptChat {
    /// The request's body (prompt and decoding parameters).
    pub body: ServeBody,
    /// The text.
    pub text: String,
    /// The token ids.
    pub tokens: Vec<u32>,
    /// Why it stopped.
    pub stop: String,
    /// The fingerprints the receipt names.
    pub fingerprints: Vec<Fingerprint>,
}

impl Kept {
    /// The chat request and completion this receipt answers, as an auditor replays them
    /// ([`agora_serve::audit::recheck`]).
    pub fn claim(&self) -> Option<Claim> {
        let c = self.chat.as_ref()?;
        let done = ChatDone {
            text: c.text.clone(),
            tokens: c.tokens.clone(),
            stop: c.stop.clone(),
            fingerprints: c.fingerprints.clone(),
            receipt: self.receipt.clone(),
        };
        Some(Claim { body: c.body.clone(), answer: Answered::Chat(Box::new(done)) })
    }
}

/// Where the gateway under `data_dir` keeps receipts: `<session>.jsonl`, one [`Kept`] a line.
fn receipts_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("gateway").join("receipts")
}

/// Every receipt the gateway under `data_dir` keeps for `session`, in the order kept (a torn
/// last line, from a crash while appending, is skipped).
pub fn kept_records(data_dir: &std::path::Path, session: SessionId) -> anyhow::Result<Vec<Kept>> {
    let path = receipts_dir(data_dir).join(format!("{session}.jsonl"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// A served chat completion.
pub struct ChatServed {
    /// The completion and its receipt.
    pub done: ChatDone,
    /// Its session.
    pub session: SessionId,
}

fn internal(e: impl std::fmt::Display) -> OpenAiError {
    OpenAiError::internal(e.to_string())
}

impl Open {
    /// The next request of this session, signed with its client key (a fresh nonce each).
    fn request(&self, body: &ServeBody) -> SignedRequest {
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
        SignedRequest::new(
            &self.chain_id,
            &ServeRequest { session: self.id, nonce, body: body.clone() },
            &self.key,
        )
    }

    /// Notes how provider `m` answered a request: a provider that could not be reached or
    /// broke the protocol [`DISMISS_AFTER_FAILURES`] times in a row is returned, to be
    /// dismissed (once); any answer resets its count.
    fn note(&self, m: &Member, outcome: Result<(), &ClientError>) -> Option<AccountId> {
        let mut failures = self.failures.lock().expect("not poisoned");
        let n = failures.entry(m.account).or_default();
        match outcome {
            Err(ClientError::Transport(e)) if e == CALLER_LEFT => None,
            Err(ClientError::Transport(_) | ClientError::Protocol(_)) => {
                *n = n.saturating_add(1);
                (*n == DISMISS_AFTER_FAILURES).then_some(m.account)
            }
            Err(_) => None,
            Ok(()) => {
                *n = 0;
                None
            }
        }
    }

    /// Whether provider `m` is about to be dismissed (it is no longer asked).
    fn dismissed(&self, m: &Member) -> bool {
        self.failures
            .lock()
            .expect("not poisoned")
            .get(&m.account)
            .is_some_and(|&n| n >= DISMISS_AFTER_FAILURES)
    }

    /// Whether provider `m` may still charge for more.
    fn has_share(&self, m: &Member) -> bool {
        let total = self.totals.lock().expect("not poisoned").get(&m.account).copied().unwrap_or_default();
        let charged = self.terms.rates.charge(&total).unwrap_or(Amount(u128::MAX));
        charged < m.cap.bps(SHARE_SPENT_BPS)
    }
}

impl Sessions {
    /// The session mode on `cfg`'s terms.
    pub fn new(cfg: &GatewaySessionSection) -> anyhow::Result<Self> {
        let duration_ms =
            agora_requester::jobfile::parse_duration(&cfg.duration).context("[gateway.session] duration")?;
        let match_timeout = agora_requester::jobfile::parse_duration(&cfg.match_timeout)
            .context("[gateway.session] match_timeout")?;
        Ok(Self {
            cfg: cfg.clone(),
            duration_ms,
            match_timeout: Duration::from_millis(match_timeout),
            serve: ServeClient::new(),
            open: Mutex::default(),
        })
    }

    /// The open session of `entry` for `kind` requests on catalog model `model`: the one kept,
    /// unless it ends within [`RENEW_BEFORE`] or its providers' shares are spent; then a new
    /// one, opened and matched within the configured wait.
    pub async fn session(
        &self,
        gw: &Gateway,
        entry: &KeyEntry,
        kind: ServeKind,
        model: &str,
    ) -> Result<Arc<Open>, OpenAiError> {
        let slot =
            self.open.lock().expect("not poisoned").entry((entry.name.clone(), kind)).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(open) = slot.as_ref() {
            let margin = (RENEW_BEFORE.as_millis() as u64).min(self.duration_ms / 4);
            let fresh = open.until_ms > now_ms() + margin;
            if fresh && !self.members(gw, open).await?.is_empty() {
                return Ok(open.clone());
            }
        }
        let open = Arc::new(self.open_session(gw, entry, kind, model).await?);
        *slot = Some(open.clone());
        Ok(open)
    }

    async fn open_session(
        &self,
        gw: &Gateway,
        entry: &KeyEntry,
        kind: ServeKind,
        model: &str,
    ) -> Result<Open, OpenAiError> {
        let key = gw.keys.account(entry).map_err(internal)?;
        let (data_dir, name) = (gw.data_dir.clone(), model.to_string());
        let provisioned =
            tokio::task::spawn_blocking(move || agora_requester::prepare::provisioner(&data_dir).get(&name))
                .await
                .map_err(internal)?
                .map_err(internal)?
                .ok_or_else(|| {
                    OpenAiError::unavailable(format!(
                        "model {model} is not provisioned on this node: run `agora models pull {model}`"
                    ))
                })?;
        let store =
            agora_store::http::Client::new(gw.client.url()).map_err(internal)?.with_signer(key.clone());
        agora_requester::prepare::upload_model(&store, &provisioned.bundle_path, provisioned.hash())
            .await
            .map_err(|e| OpenAiError::unavailable(format!("{e:#}")))?;
        let class = gw.market.get("class").and_then(|c| c.as_str()).unwrap_or("cpu.x86_64");
        let terms = SessionTerms {
            model: provisioned.hash(),
            kind,
            class: class.parse().map_err(|e| OpenAiError::internal(format!("[gateway] class: {e}")))?,
            rates: ServeRates {
                prompt_per_1k: self.cfg.prompt_per_1k,
                completion_per_1k: self.cfg.completion_per_1k,
                per_item: self.cfg.per_item,
            },
            escrow: self.cfg.escrow,
            duration_ms: self.duration_ms,
            providers: self.cfg.providers,
            ttft_ms: self.cfg.ttft_ms,
            client: key.public(),
            sources: vec![gw.client.url().to_string()],
        };
        terms.validate().map_err(|e| OpenAiError::internal(format!("[gateway.session]: {e}")))?;
        let (sender, reservation) = gw.reserve(entry, terms.escrow).await?;
        let id = open_on_chain(gw, &sender, &terms).await?;
        // Durable before the in-memory hold goes: the escrow is never uncounted.
        gw.keys.open_job(&entry.name, id, terms.escrow).map_err(internal)?;
        drop(reservation);
        let chain_id =
            gw.client.status().await.map_err(|e| OpenAiError::unavailable(e.to_string()))?.chain_id;
        let open = Open {
            id,
            until_ms: now_ms() + terms.duration_ms,
            key,
            chain_id,
            terms,
            nonce: AtomicU64::new(0),
            turn: AtomicUsize::new(0),
            totals: Mutex::default(),
            members: Mutex::default(),
            failures: Mutex::default(),
        };
        let start = std::time::Instant::now();
        while self.members(gw, &open).await?.is_empty() {
            if start.elapsed() > self.match_timeout {
                return Err(OpenAiError::unavailable(format!(
                    "session {id} found no provider within {:?}; its escrow returns when it ends",
                    self.match_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        tracing::info!(session = id, key = %entry.name, "opened a serving session");
        Ok(open)
    }

    /// The providers of `open` serving now with share left and a reachable endpoint, as read
    /// from the chain at most [`MEMBERS_TTL`] ago.
    pub async fn members(&self, gw: &Gateway, open: &Open) -> Result<Vec<Member>, OpenAiError> {
        let cached = open.members.lock().expect("not poisoned").clone();
        let members = match cached {
            Some((at, m)) if at.elapsed() < MEMBERS_TTL => m,
            _ => {
                let m = self.read_members(gw, open).await?;
                *open.members.lock().expect("not poisoned") = Some((std::time::Instant::now(), m.clone()));
                m
            }
        };
        Ok(members.into_iter().filter(|m| open.has_share(m) && !open.dismissed(m)).collect())
    }

    /// [`Sessions::members`] starting with the next in turn, for one request.
    async fn in_turn(&self, gw: &Gateway, open: &Open) -> Result<Vec<Member>, OpenAiError> {
        let mut out = self.members(gw, open).await?;
        if !out.is_empty() {
            let k = open.turn.fetch_add(1, Ordering::Relaxed) % out.len();
            out.rotate_left(k);
        }
        Ok(out)
    }

    async fn read_members(&self, gw: &Gateway, open: &Open) -> Result<Vec<Member>, OpenAiError> {
        let unavailable = |e: agora_client::client::ClientError| OpenAiError::unavailable(e.to_string());
        let detail = gw.client.session(open.id).await.map_err(unavailable)?;
        let reach = gw.client.reach().await.map_err(unavailable)?;
        let mut out = vec![];
        for m in detail.session.serving() {
            let endpoint = gw.client.provider(&m.provider).await.map_err(unavailable)?.profile.endpoint;
            if reach.check_url(&endpoint).is_ok() {
                out.push(Member { account: m.provider, cap: m.cap, endpoint });
            }
        }
        Ok(out)
    }

    /// Forgets the providers read from the chain (after a failure).
    fn reread(&self, open: &Open) {
        *open.members.lock().expect("not poisoned") = None;
    }

    /// Notes how `m` answered (see [`Open::note`]) and dismisses it from the session once it
    /// has failed too often: the ledger gives its unspent share to a replacement after the
    /// commit grace. The dismissal is submitted, not waited for; if it is lost, the provider
    /// simply stays out of this gateway's turns.
    async fn noted(&self, gw: &Gateway, open: &Open, m: &Member, outcome: Result<(), &ClientError>) {
        let Some(provider) = open.note(m, outcome) else { return };
        self.reread(open);
        let payload = TxPayload::LeaveSession { session: open.id, provider };
        let sent = async {
            let entry = self.requester_entry(gw, &open.key.public())?;
            let sender = gw.sender(&entry).await.map_err(|e| anyhow::anyhow!(e.message))?;
            sender.submit(payload).await
        };
        match sent.await {
            Ok(_) => {
                tracing::warn!(session = open.id, provider = %provider, "dismissed a provider that stopped answering")
            }
            Err(e) => {
                tracing::warn!(session = open.id, provider = %provider, error = %format!("{e:#}"), "cannot dismiss a provider")
            }
        }
    }

    /// Keeps a checked receipt (durably) and notes its provider's running total.
    fn keep(
        &self,
        gw: &Gateway,
        open: &Open,
        provider: AccountId,
        receipt: &SignedReceipt,
        chat: Option<KeptChat>,
    ) -> Result<(), OpenAiError> {
        open.totals.lock().expect("not poisoned").insert(provider, receipt.receipt.total);
        let dir = receipts_dir(&gw.data_dir);
        std::fs::create_dir_all(&dir).map_err(internal)?;
        let line =
            serde_json::to_string(&Kept { provider, receipt: receipt.clone(), chat }).map_err(internal)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.jsonl", open.id)))
            .map_err(internal)?;
        writeln!(f, "{line}").and_then(|()| f.sync_data()).map_err(internal)
    }

    /// Runs a chat request on `open`, calling `piece` with each new piece of text as it
    /// arrives (it returns false once the caller has left: the run stops, and the provider,
    /// seeing the stream close, stops too). A provider that cannot be reached or breaks off is
    /// replaced by the next; the text already passed on is never repeated.
    pub async fn chat(
        &self,
        gw: &Gateway,
        open: &Open,
        body: &ServeBody,
        mut piece: impl FnMut(&str) -> bool,
    ) -> Result<ChatServed, OpenAiError> {
        let mut sent = String::new();
        let mut failures = vec![];
        let mut left = false;
        let mut pass = |p: &str| {
            left = left || !piece(p);
            !left
        };
        for m in self.in_turn(gw, open).await? {
            let req = open.request(body);
            let outcome = self.chat_on(&m, open, &req, &mut sent, &mut pass).await;
            self.noted(gw, open, &m, outcome.as_ref().map(drop)).await;
            match outcome {
                Ok(done) => {
                    let chat = KeptChat {
                        body: body.clone(),
                        text: done.text.clone(),
                        tokens: done.tokens.clone(),
                        stop: done.stop.clone(),
                        fingerprints: done.fingerprints.clone(),
                    };
                    self.keep(gw, open, m.account, &done.receipt, Some(chat))?;
                    return Ok(ChatServed { done, session: open.id });
                }
                Err(ClientError::Transport(e)) if e == CALLER_LEFT => {
                    return Err(OpenAiError::unavailable(e));
                }
                Err(e @ ClientError::Mismatch(_)) if !sent.is_empty() => {
                    return Err(OpenAiError::unavailable(format!("provider {}: {e}", m.account)));
                }
                Err(e) => failures.push(format!("provider {}: {e}", m.account)),
            }
        }
        self.reread(open);
        Err(no_provider(open.id, failures))
    }

    async fn chat_on(
        &self,
        m: &Member,
        open: &Open,
        req: &SignedRequest,
        sent: &mut String,
        piece: &mut impl FnMut(&str) -> bool,
    ) -> Result<ChatDone, ClientError> {
        let mut events = Box::pin(self.serve.chat(&m.endpoint, open.id, req).await?);
        let mut text = String::new();
        while let Some(event) = events.next().await {
            match event? {
                ChatEvent::Token { text: t } => {
                    text.push_str(&t);
                    if text.len() > sent.len() && text.starts_with(sent.as_str()) {
                        if !piece(&text[sent.len()..]) {
                            return Err(ClientError::Transport(CALLER_LEFT.into()));
                        }
                        sent.clone_from(&text);
                    } else if !sent.starts_with(text.as_str()) && !text.starts_with(sent.as_str()) {
                        return Err(ClientError::Mismatch(
                            "the next provider's completion differs from what was sent".into(),
                        ));
                    }
                }
                ChatEvent::Done(done) => {
                    let expect = Expect {
                        chain_id: &open.chain_id,
                        provider: &m.account,
                        request: req,
                        session: open.id,
                    };
                    check_chat(&done, &expect, &text)?;
                    if done.text.len() > sent.len() && done.text.starts_with(sent.as_str()) {
                        piece(&done.text[sent.len()..]);
                        sent.clone_from(&done.text);
                    }
                    return Ok(*done);
                }
                ChatEvent::Error { message } => return Err(ClientError::Refused { status: 500, message }),
            }
        }
        Err(ClientError::Transport("the stream ended without a completion".into()))
    }

    /// Runs an embeddings request on `open`, trying its providers in turn.
    pub async fn embed(
        &self,
        gw: &Gateway,
        open: &Open,
        inputs: &[String],
    ) -> Result<EmbedResponse, OpenAiError> {
        let body = ServeBody::Embed { inputs: inputs.to_vec() };
        let mut failures = vec![];
        for m in self.in_turn(gw, open).await? {
            let req = open.request(&body);
            let answer = self.serve.embed(&m.endpoint, open.id, &req).await.and_then(|resp| {
                let expect = Expect {
                    chain_id: &open.chain_id,
                    provider: &m.account,
                    request: &req,
                    session: open.id,
                };
                check_embed(&resp, &expect, inputs.len()).map(|()| resp)
            });
            self.noted(gw, open, &m, answer.as_ref().map(drop)).await;
            match answer {
                Ok(resp) => {
                    self.keep(gw, open, m.account, &resp.receipt, None)?;
                    return Ok(resp);
                }
                Err(e) => failures.push(format!("provider {}: {e}", m.account)),
            }
        }
        self.reread(open);
        Err(no_provider(open.id, failures))
    }
}

/// Why a run stopped when its caller went away.
const CALLER_LEFT: &str = "the caller left";

fn no_provider(session: SessionId, failures: Vec<String>) -> OpenAiError {
    if failures.is_empty() {
        OpenAiError::unavailable(format!("session {session} has no provider serving now"))
    } else {
        OpenAiError::unavailable(format!(
            "no provider of session {session} answered: {}",
            failures.join("; ")
        ))
    }
}

/// Submits `terms` from `sender`'s account and returns the new session's id.
async fn open_on_chain(
    gw: &Gateway,
    sender: &agora_client::sender::TxSender,
    terms: &SessionTerms,
) -> Result<SessionId, OpenAiError> {
    let refused = |e: String| {
        if e.contains("insufficient funds") { OpenAiError::quota(e) } else { OpenAiError::unavailable(e) }
    };
    let id = sender
        .submit(TxPayload::OpenSession { terms: terms.clone() })
        .await
        .map_err(|e| refused(format!("{e:#}")))?;
    let status = gw.client.wait_tx(&id, Duration::from_secs(60)).await.map_err(|e| refused(e.to_string()))?;
    let agora_chain::TxStatus::Finalized { receipt, .. } = status else {
        return Err(OpenAiError::unavailable("the session was not opened in time"));
    };
    if let Some(e) = receipt.error {
        return Err(refused(format!("the ledger refused the session: {e}")));
    }
    receipt
        .events
        .iter()
        .find_map(|e| match e {
            Event::SessionOpened { session, .. } => Some(*session),
            _ => None,
        })
        .ok_or_else(|| OpenAiError::internal("the receipt names no session"))
}

/// How often the kept receipts are checked against the chain.
pub const WATCH_EVERY: Duration = Duration::from_secs(5);
/// Blocks after a window's commitment before its receipts the gateway holds no answer for are
/// challenged as requests it never sent.
const REQUEST_CHECK_AFTER_BLOCKS: u64 = 5;

/// A challenge the watcher sends.
enum Challenge {
    /// A kept receipt the provider left out or altered.
    Receipt(Box<SignedReceipt>),
    /// A committed receipt the gateway holds no answer for.
    Request {
        /// The provider.
        provider: AccountId,
        /// The receipt's `seq`.
        seq: u64,
    },
}

/// What the watcher has done, so each receipt is challenged once.
#[derive(Default)]
pub struct Watched {
    challenged: std::collections::HashSet<(SessionId, AccountId, u64)>,
    finished: std::collections::HashSet<SessionId>,
}

/// The receipts kept for `session`, per provider, by `seq`.
fn kept(
    gw: &Gateway,
    session: SessionId,
) -> anyhow::Result<HashMap<AccountId, std::collections::BTreeMap<u64, SignedReceipt>>> {
    let mut out: HashMap<AccountId, std::collections::BTreeMap<u64, SignedReceipt>> = HashMap::new();
    for k in kept_records(&gw.data_dir, session)? {
        out.entry(k.provider).or_default().insert(k.receipt.receipt.seq, k.receipt);
    }
    Ok(out)
}

impl Sessions {
    /// Checks every session whose receipts the gateway keeps against the chain, and proves
    /// what a provider left out or altered; returns the challenges sent.
    ///
    /// * Once a session takes no more windows, a kept receipt beyond its provider's committed
    ///   windows proves an omission at once.
    /// * A committed window that the kept receipts do not reproduce (its root differs, or some
    ///   of its receipts are not kept) is compared with the provider's own receipts for the
    ///   range; a kept receipt that differs from them is challenged, and the provider, which
    ///   cannot show it in its tree, is convicted when its answer time runs out.
    /// * A committed receipt the gateway holds no answer for is challenged as a request it
    ///   never sent: the provider must show the client's signature over the request.
    pub async fn watch(&self, gw: &Gateway, watched: &mut Watched) -> anyhow::Result<usize> {
        let dir = receipts_dir(&gw.data_dir);
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(0) };
        let mut sent = 0;
        for entry in entries {
            let name = entry?.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")).and_then(|n| n.parse().ok())
            else {
                continue;
            };
            if watched.finished.contains(&id) {
                continue;
            }
            match self.watch_session(gw, id, watched).await {
                Ok(n) => sent += n,
                Err(e) => {
                    tracing::warn!(session = id, error = %format!("{e:#}"), "cannot check a session's receipts")
                }
            }
        }
        Ok(sent)
    }

    async fn watch_session(
        &self,
        gw: &Gateway,
        id: SessionId,
        watched: &mut Watched,
    ) -> anyhow::Result<usize> {
        let detail = gw.client.session(id).await?;
        let params = gw.client.params().await?;
        if now_ms() > detail.session.challenge_deadline_ms(&params) {
            watched.finished.insert(id);
            return Ok(0);
        }
        let height = gw.client.status().await?.height;
        let challenges = self.challenges(gw, &detail, &params, height).await?;
        let mut n = 0;
        for c in challenges {
            let (provider, seq, payload) = match c {
                Challenge::Receipt(r) => {
                    (r.provider, r.receipt.seq, TxPayload::ChallengeReceipt { receipt: *r })
                }
                Challenge::Request { provider, seq } => {
                    (provider, seq, TxPayload::ChallengeRequest { session: id, provider, seq })
                }
            };
            if !watched.challenged.insert((id, provider, seq)) {
                continue;
            }
            let entry = self.requester_entry(gw, &detail.session.requester)?;
            let sender = gw.sender(&entry).await.map_err(|e| anyhow::anyhow!(e.message))?;
            let kind = payload.name();
            match sender.send(payload, Duration::from_secs(60)).await {
                Ok(_) => {
                    tracing::warn!(session = id, provider = %provider, seq, kind, "challenged a receipt");
                    n += 1;
                }
                Err(e) => {
                    tracing::warn!(session = id, error = %format!("{e:#}"), "cannot challenge a receipt")
                }
            }
        }
        Ok(n)
    }

    /// What the kept receipts of a session prove against its providers now (see
    /// [`Sessions::watch`]).
    async fn challenges(
        &self,
        gw: &Gateway,
        detail: &agora_client::types::SessionDetail,
        params: &agora_ledger::Params,
        height: u64,
    ) -> anyhow::Result<Vec<Challenge>> {
        let (id, s) = (detail.id, &detail.session);
        let mut held_by = kept(gw, id)?;
        let mut out = vec![];
        for m in s.members.iter().filter(|m| !m.removed) {
            let provider = m.provider;
            let closed = now_ms() > s.member_commit_deadline_ms(m, params);
            let held = held_by.remove(&provider).unwrap_or_default();
            if closed && let Some((_, r)) = held.range(m.next_seq..).next() {
                out.push(Challenge::Receipt(Box::new(r.clone())));
                continue;
            }
            for w in detail.windows.iter().filter(|w| w.provider == provider) {
                let c = &w.window.commitment;
                let seqs = c.first_seq..c.first_seq + u64::from(c.receipts);
                // A receipt committed for a request the gateway never got an answer to: the
                // provider must show the client's signature (only in windows a few blocks old,
                // so an answer still on its way is not taken for one).
                let old = w.window.committed_height + REQUEST_CHECK_AFTER_BLOCKS <= height;
                if old && let Some(seq) = seqs.clone().find(|q| !held.contains_key(q)) {
                    out.push(Challenge::Request { provider, seq });
                }
                let range: Vec<&SignedReceipt> = held.range(seqs).map(|(_, r)| r).collect();
                if range.is_empty() {
                    continue;
                }
                let leaves: Vec<_> = range.iter().map(|r| r.receipt.leaf()).collect();
                if range.len() == c.receipts as usize
                    && agora_core::merkle::MerkleTree::new(leaves).root() == c.root
                {
                    continue;
                }
                if let Some(r) = self.differing(gw, id, &provider, c, &range).await {
                    out.push(Challenge::Receipt(Box::new(r)));
                }
            }
        }
        Ok(out)
    }

    /// A kept receipt of window `c` that the provider's own receipts for its range show
    /// differently (when those reproduce the window's root), or, when the provider does not
    /// publish receipts that do, the first kept one: it cannot show a receipt its tree lacks.
    async fn differing(
        &self,
        gw: &Gateway,
        session: SessionId,
        provider: &AccountId,
        c: &agora_core::session::WindowCommitment,
        range: &[&SignedReceipt],
    ) -> Option<SignedReceipt> {
        let endpoint = gw.client.provider(provider).await.ok()?.profile.endpoint;
        let theirs = self
            .serve
            .receipts(&endpoint, session, c.first_seq, u64::from(c.receipts))
            .await
            .unwrap_or_default();
        let tree = agora_core::merkle::MerkleTree::new(theirs.iter().map(|r| r.leaf()).collect());
        if theirs.len() == c.receipts as usize && tree.root() == c.root {
            range
                .iter()
                .find(|r| theirs.get((r.receipt.seq - c.first_seq) as usize) != Some(&r.receipt))
                .map(|r| (*r).clone())
        } else {
            range.first().map(|r| (*r).clone())
        }
    }

    /// The key entry whose account is `requester`.
    fn requester_entry(&self, gw: &Gateway, requester: &AccountId) -> anyhow::Result<KeyEntry> {
        for entry in gw.keys.list()? {
            if gw.keys.account(&entry).is_ok_and(|k| k.public() == *requester) {
                return Ok(entry);
            }
        }
        anyhow::bail!("no API key of this gateway pays from {requester}")
    }
}
