//! A provider's serving endpoints over real HTTP on 127.0.0.1, with tiny generated models:
//! streamed completions with checked receipts, embeddings, and every refusal.

use agora_core::SecretKey;
use agora_core::session::SessionId;
use agora_core::session::WindowCommitment;
use agora_core::{Decode, Encode};
use agora_ml::embed::Embedder;
use agora_ml::fixtures::{GgmlDType, write_tiny_bert, write_tiny_llama};
use agora_ml::generate::Llm;
use agora_serve::audit::{ProvenRecord, Sampled, claim_of, recheck, recheck_chat};
use agora_serve::book::Books;
use agora_serve::client::{ClientError, Expect, ServeClient, check_chat, check_embed};
use agora_serve::engine::{ChatParams, Engine, Model};
use agora_serve::fingerprint::{FINGERPRINT_EVERY, Fingerprint};
use agora_serve::server::{Directory, Server, Serving, alters, router};
use agora_serve::wire::{ChatDone, ChatEvent, ServeBody, ServeRequest, SignedRequest};
use futures::StreamExt;
use std::sync::Arc;

const CHAIN: &str = "serve-test";

struct Fixed {
    client: agora_core::PublicKey,
    cap: agora_core::Amount,
    chat: Model,
    embed: Model,
}

impl Directory for Fixed {
    async fn serving(&self, session: SessionId) -> Result<Option<Serving>, String> {
        let far = u64::MAX;
        Ok(match session {
            7 => Some(Serving {
                rates: rates(),
                cap: self.cap,
                chain_id: CHAIN.into(),
                client: self.client,
                until_ms: far,
                model: self.chat.clone(),
            }),
            8 => Some(Serving {
                rates: rates(),
                cap: self.cap,
                chain_id: CHAIN.into(),
                client: self.client,
                until_ms: far,
                model: self.embed.clone(),
            }),
            9 => Some(Serving {
                rates: rates(),
                cap: self.cap,
                chain_id: CHAIN.into(),
                client: self.client,
                until_ms: 1,
                model: self.chat.clone(),
            }),
            _ => None,
        })
    }
}

struct Provider {
    base: String,
    key: SecretKey,
    books: Arc<Books>,
    _dir: tempfile::TempDir,
}

/// Prices of the fixed sessions: 1,000 per 1,000 tokens of either kind, 1 per item.
fn rates() -> agora_core::session::ServeRates {
    agora_core::session::ServeRates {
        prompt_per_1k: agora_core::Amount(1_000),
        completion_per_1k: agora_core::Amount(1_000),
        per_item: agora_core::Amount(1),
    }
}

async fn provider(client: &SecretKey) -> Provider {
    provider_capped(client, agora_core::Amount(1_000_000)).await
}

/// A provider whose windows may charge at most `cap` in each session.
async fn provider_capped(client: &SecretKey, cap: agora_core::Amount) -> Provider {
    provider_with(client, cap, 1).await
}

/// A provider serving the tiny llama made from `model_seed` (1 is the session's model).
async fn provider_with(client: &SecretKey, cap: agora_core::Amount, model_seed: u64) -> Provider {
    provider_altering(client, cap, model_seed, 0).await
}

/// A provider that alters `alter_bps` / 10,000 of its chat answers ([`Server::altering`]).
async fn provider_altering(
    client: &SecretKey,
    cap: agora_core::Amount,
    model_seed: u64,
    alter_bps: u32,
) -> Provider {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_llama(&dir.path().join("model.gguf"), model_seed, GgmlDType::Q8_0).unwrap();
    write_tiny_bert(&dir.path().join("bert"), 1).unwrap();
    let device = agora_ml::device();
    let llm = Arc::new(Llm::load(&dir.path().join("model.gguf"), &device).unwrap());
    let embedder = Arc::new(Embedder::load(&dir.path().join("bert"), &device).unwrap());
    let key = SecretKey::from_seed([9; 32]);
    let books = Arc::new(Books::new(&dir.path().join("books")).unwrap());
    let directory =
        Fixed { client: client.public(), cap, chat: Model::Chat(llm), embed: Model::Embed(embedder) };
    let server = Server::new(key.clone(), directory, books.clone(), Engine::new(2, 16)).altering(alter_bps);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(server))).await.unwrap() });
    Provider { base, key, books, _dir: dir }
}

fn chat_body(nonce: u64) -> ServeRequest {
    chat_at(nonce, 0)
}

/// A chat request at temperature `temperature_milli` / 1000 (0: greedy).
fn chat_at(nonce: u64, temperature_milli: u32) -> ServeRequest {
    ServeRequest {
        session: 7,
        nonce,
        body: ServeBody::Chat {
            prompt: "Tell me about the sea.".into(),
            max_tokens: 24,
            temperature_milli,
            seed: 1,
            stop: vec![],
        },
    }
}

/// Streams a completion and returns the pieces and the final event.
async fn stream(c: &ServeClient, base: &str, req: &SignedRequest) -> (Vec<String>, ChatEvent) {
    let mut events = Box::pin(c.chat(base, 7, req).await.unwrap());
    let mut pieces = vec![];
    while let Some(e) = events.next().await {
        match e.unwrap() {
            ChatEvent::Token { text } => pieces.push(text),
            last => return (pieces, last),
        }
    }
    panic!("the stream ended without a last event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_completion_carries_a_receipt_the_client_checks() {
    let client_key = SecretKey::from_seed([1; 32]);
    let p = provider(&client_key).await;
    let c = ServeClient::new();
    let mut totals = vec![];
    for nonce in 0..2 {
        let req = SignedRequest::new(CHAIN, &chat_body(nonce), &client_key);
        let (pieces, last) = stream(&c, &p.base, &req).await;
        let ChatEvent::Done(done) = last else { panic!("expected done, got {last:?}") };
        assert!(!pieces.is_empty(), "tokens arrive as pieces before the receipt");
        let expect = Expect { chain_id: CHAIN, provider: &p.key.public(), request: &req, session: 7 };
        check_chat(&done, &expect, &pieces.concat()).unwrap();
        let r = &done.receipt.receipt;
        assert_eq!(r.seq, nonce);
        assert!(r.usage.prompt_tokens > 5, "the templated prompt is counted");
        assert_eq!(r.usage.completion_tokens, done.tokens.len() as u64);
        assert!(!done.fingerprints.is_empty());
        totals.push(r.total);

        // Tampering with anything the receipt covers is caught.
        let mut forged = (*done).clone();
        forged.text.push('!');
        assert!(matches!(check_chat(&forged, &expect, &forged.text), Err(ClientError::Mismatch(_))));
        assert!(check_chat(&done, &expect, "something else").is_err());
        let other = SignedRequest::new(CHAIN, &chat_body(99), &client_key);
        let wrong = Expect { request: &other, ..expect };
        assert!(check_chat(&done, &wrong, &pieces.concat()).is_err());
    }
    assert!(totals[1].since(&totals[0]).unwrap().completion_tokens > 0, "running totals grow");

    // The receipts the provider serves are the ones the client holds, and its window commits
    // to them.
    let held = c.receipts(&p.base, 7, 0, 10).await.unwrap();
    assert_eq!(held.len(), 2);
    let book = p.books.get(7).unwrap();
    let w = book.lock().unwrap().window(0, 10).unwrap();
    assert_eq!((w.receipts, w.total), (2, totals[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_refused_unless_signed_fresh_and_for_a_live_session_served_here() {
    let client_key = SecretKey::from_seed([1; 32]);
    let p = provider(&client_key).await;
    let c = ServeClient::new();
    let status = |e: ClientError| match e {
        ClientError::Refused { status, .. } => status,
        other => panic!("expected a refusal, got {other}"),
    };
    let req = SignedRequest::new(CHAIN, &chat_body(0), &client_key);
    let (_, last) = stream(&c, &p.base, &req).await;
    assert!(matches!(last, ChatEvent::Done(_)));
    // The same request again: served once.
    assert_eq!(status(c.chat(&p.base, 7, &req).await.err().unwrap()), 409);
    // Someone else's key.
    let stranger = SignedRequest::new(CHAIN, &chat_body(1), &SecretKey::from_seed([5; 32]));
    assert_eq!(status(c.chat(&p.base, 7, &stranger).await.err().unwrap()), 401);
    // Signed for another chain.
    let elsewhere = SignedRequest::new("other-chain", &chat_body(2), &client_key);
    assert_eq!(status(c.chat(&p.base, 7, &elsewhere).await.err().unwrap()), 401);
    // A session this provider does not serve, and one that has ended.
    let mut unknown = chat_body(3);
    unknown.session = 5;
    let unknown = SignedRequest::new(CHAIN, &unknown, &client_key);
    assert_eq!(status(c.chat(&p.base, 5, &unknown).await.err().unwrap()), 404);
    let mut ended = chat_body(4);
    ended.session = 9;
    let ended = SignedRequest::new(CHAIN, &ended, &client_key);
    assert_eq!(status(c.chat(&p.base, 9, &ended).await.err().unwrap()), 410);
    // Out-of-bounds bodies never reach the model.
    let mut long = chat_body(5);
    long.body = ServeBody::Chat {
        prompt: "word ".repeat(5_000),
        max_tokens: 8,
        temperature_milli: 0,
        seed: 0,
        stop: vec![],
    };
    let long = SignedRequest::new(CHAIN, &long, &client_key);
    let e = c.chat(&p.base, 7, &long).await.err().unwrap();
    assert!(matches!(&e, ClientError::Refused { status: 400, message } if message.contains("prompt")), "{e}");
    let mut huge = chat_body(6);
    huge.body = ServeBody::Chat {
        prompt: "x".repeat(2 << 20),
        max_tokens: 8,
        temperature_milli: 0,
        seed: 0,
        stop: vec![],
    };
    let huge = SignedRequest::new(CHAIN, &huge, &client_key);
    assert_eq!(status(c.chat(&p.base, 7, &huge).await.err().unwrap()), 413);
    // An embeddings request to a chat session.
    let mut embed = chat_body(7);
    embed.body = ServeBody::Embed { inputs: vec!["x".into()] };
    let embed = SignedRequest::new(CHAIN, &embed, &client_key);
    assert_eq!(status(c.embed(&p.base, 7, &embed).await.err().unwrap()), 400);
    assert_eq!(p.books.get(7).unwrap().lock().unwrap().receipts().len(), 1, "only the one request served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_come_back_at_once_with_a_receipt() {
    let client_key = SecretKey::from_seed([1; 32]);
    let p = provider(&client_key).await;
    let c = ServeClient::new();
    let inputs = vec!["the sea".to_string(), "a much longer sentence about the sea".to_string()];
    let req = SignedRequest::new(
        CHAIN,
        &ServeRequest { session: 8, nonce: 0, body: ServeBody::Embed { inputs: inputs.clone() } },
        &client_key,
    );
    let resp = c.embed(&p.base, 8, &req).await.unwrap();
    let expect = Expect { chain_id: CHAIN, provider: &p.key.public(), request: &req, session: 8 };
    check_embed(&resp, &expect, inputs.len()).unwrap();
    assert_eq!(resp.receipt.receipt.usage.items, 2);
    assert!(resp.receipt.receipt.usage.prompt_tokens >= 6);
    let mut forged = resp.clone();
    forged.embeddings[1][0] += 0.5;
    assert!(check_embed(&forged, &expect, 2).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_never_serves_more_than_its_cap_lets_it_commit() {
    // Before: a provider served whatever it was sent, so once its share of the escrow was
    // spent it held receipts no window could take, and was convicted of leaving them out.
    let client_key = SecretKey::from_seed([1; 32]);
    // 60 units: at 1 per token, one request of ~20 prompt and 24 completion tokens fits, two
    // do not.
    let p = provider_capped(&client_key, agora_core::Amount(60)).await;
    let c = ServeClient::new();
    let first = SignedRequest::new(CHAIN, &chat_body(0), &client_key);
    let (_, last) = stream(&c, &p.base, &first).await;
    assert!(matches!(last, ChatEvent::Done(_)), "{last:?}");
    let second = SignedRequest::new(CHAIN, &chat_body(1), &client_key);
    match c.chat(&p.base, 7, &second).await.err().unwrap() {
        ClientError::Refused { status: 402, message } => assert!(message.contains("share"), "{message}"),
        other => panic!("expected 402, got {other}"),
    }
    assert_eq!(p.books.get(7).unwrap().lock().unwrap().receipts().len(), 1);
}

/// Streams `body` from `base` and returns its completion.
async fn completion(c: &ServeClient, base: &str, client: &SecretKey, body: &ServeRequest) -> ChatDone {
    let (_, last) = stream(c, base, &SignedRequest::new(CHAIN, body, client)).await;
    let ChatEvent::Done(done) = last else { panic!("expected done, got {last:?}") };
    *done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_rechecks_against_the_sessions_model_only_if_the_provider_computed_it() {
    let client_key = SecretKey::from_seed([1; 32]);
    let honest = provider(&client_key).await;
    let other_model = provider_with(&client_key, agora_core::Amount(1_000_000), 2).await;
    let llm = Llm::load(&honest._dir.path().join("model.gguf"), &agora_ml::device()).unwrap();
    let c = ServeClient::new();
    for temperature_milli in [0, 800] {
        let body = chat_at(temperature_milli.into(), temperature_milli);
        let params = ChatParams::of(&body.body).unwrap();
        let done = completion(&c, &honest.base, &client_key, &body).await;
        assert!(done.tokens.len() > FINGERPRINT_EVERY, "several fingerprints are checked");
        let v = recheck_chat(&llm, &params, &done).unwrap();
        assert!(v.matches, "an honest completion at temperature {temperature_milli}: {}", v.detail);

        // A token the model would not have chosen.
        let mut altered = done.clone();
        let (at, eos) = (5, llm.eos());
        altered.tokens[at] = (0..).find(|t| *t != done.tokens[at] && !eos.contains(t)).unwrap();
        let v = recheck_chat(&llm, &params, &altered).unwrap();
        assert!(!v.matches, "an altered token");

        // A token the model cannot even read fails the claim: it is not the auditor's failure
        // (an `Err`, which would leave the auditor "unable" and the cheat unconvicted).
        let mut unreadable = done.clone();
        unreadable.tokens[at] = u32::MAX;
        let v = recheck_chat(&llm, &params, &unreadable).expect("a verdict, not an auditor failure");
        assert!(!v.matches && v.detail.contains("outside the vocabulary"), "{}", v.detail);

        // Made-up fingerprints, even with a receipt naming them.
        let mut made_up = done.clone();
        made_up.fingerprints[1].top[0].1 = (f32::from_bits(made_up.fingerprints[1].top[0].1) + 1.0).to_bits();
        let v = recheck_chat(&llm, &params, &made_up).unwrap();
        assert!(v.detail.contains("not the ones the receipt names"), "{}", v.detail);
        made_up.receipt.receipt.fingerprints = agora_serve::fingerprint::hash(&made_up.fingerprints);
        let v = recheck_chat(&llm, &params, &made_up).unwrap();
        assert!(!v.matches && v.detail.contains(&format!("step {FINGERPRINT_EVERY}")), "{}", v.detail);
        made_up.fingerprints.pop();
        made_up.receipt.receipt.fingerprints = agora_serve::fingerprint::hash(&made_up.fingerprints);
        assert!(!recheck_chat(&llm, &params, &made_up).unwrap().matches, "a fingerprint left out");
    }

    // A provider answering from another model fails, and so does one that ran the session's
    // model over the other model's tokens to get genuine fingerprints for them.
    let body = chat_body(0);
    let params = ChatParams::of(&body.body).unwrap();
    let cheap = completion(&c, &other_model.base, &client_key, &body).await;
    let v = recheck_chat(&llm, &params, &cheap).unwrap();
    assert!(!v.matches, "another model's answer: {}", v.detail);
    let mut dressed = cheap.clone();
    dressed.fingerprints = fingerprints_along(&llm, &params, &cheap.tokens);
    dressed.receipt.receipt.fingerprints = agora_serve::fingerprint::hash(&dressed.fingerprints);
    let v = recheck_chat(&llm, &params, &dressed).unwrap();
    assert!(!v.matches && v.detail.contains("claimed token"), "{}", v.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_answer_carries_a_valid_receipt_and_only_a_replay_refutes_it() {
    let client_key = SecretKey::from_seed([1; 32]);
    let cheater = provider_altering(&client_key, agora_core::Amount(1_000_000), 1, 10_000).await;
    let llm = Llm::load(&cheater._dir.path().join("model.gguf"), &agora_ml::device()).unwrap();
    let c = ServeClient::new();
    for temperature_milli in [0, 800] {
        let body = chat_at(temperature_milli.into(), temperature_milli);
        let req = SignedRequest::new(CHAIN, &body, &client_key);
        let (pieces, last) = stream(&c, &cheater.base, &req).await;
        let ChatEvent::Done(done) = last else { panic!("expected done, got {last:?}") };
        // The client cannot tell: the receipt is signed, and covers what was streamed.
        let expect = Expect { chain_id: CHAIN, provider: &cheater.key.public(), request: &req, session: 7 };
        check_chat(&done, &expect, &pieces.concat()).unwrap();
        let v = recheck_chat(&llm, &ChatParams::of(&body.body).unwrap(), &done).unwrap();
        assert!(!v.matches && v.detail.contains("token"), "temperature {temperature_milli}: {}", v.detail);
    }
    // The rule picks the share of requests it is given.
    let picked = (0..10_000u32).filter(|i| alters(&agora_core::Hash::of(&i.to_le_bytes()), 500)).count();
    assert!((400..600).contains(&picked), "{picked} of 10,000 at 5%");
    assert!(!alters(&agora_core::Hash::of(b"x"), 0) && alters(&agora_core::Hash::of(b"x"), 10_000));
}

/// The session model's own fingerprints along `tokens` (what a provider gets by running the
/// model teacher-forced over tokens it did not compute with it).
fn fingerprints_along(llm: &Llm, params: &ChatParams, tokens: &[u32]) -> Vec<Fingerprint> {
    let req = agora_ml::generate::model::Request {
        prompt: &params.prompt,
        max_new_tokens: params.max_tokens as usize,
        stop: &params.stop,
        sampler: agora_ml::generate::sampler::Sampler::from_milli(params.temperature_milli),
        seed: params.seed,
        follow: Some(tokens),
    };
    let mut out = vec![];
    llm.generate_observed(
        &req,
        Some(&mut |s: agora_ml::generate::model::Step<'_>| {
            out.extend(Fingerprint::at(s.index, s.logits));
            std::ops::ControlFlow::Continue(())
        }),
    )
    .unwrap();
    out
}

/// The records of receipts `seqs` of `session` in `p`'s book, proven against the window over
/// all of its receipts, and that window.
fn proven(p: &Provider, session: u64, seqs: &[u64]) -> (WindowCommitment, Vec<ProvenRecord>) {
    let book = p.books.get(session).unwrap();
    let mut book = book.lock().unwrap();
    let w = book.window(0, 100).unwrap();
    let records = seqs
        .iter()
        .map(|s| ProvenRecord {
            record: book.record_at(*s).unwrap(),
            proof: book.proof(0, w.receipts, *s).unwrap(),
        })
        .collect();
    (w, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_replays_sampled_records_only_if_they_are_the_windows_and_the_clients() {
    let client_key = SecretKey::from_seed([1; 32]);
    let p = provider(&client_key).await;
    let c = ServeClient::new();
    for nonce in 0..3 {
        completion(&c, &p.base, &client_key, &chat_at(nonce, if nonce == 1 { 700 } else { 0 })).await;
    }
    let inputs = vec!["the sea".to_string(), "a much longer sentence about the sea".to_string()];
    let embed = ServeRequest { session: 8, nonce: 0, body: ServeBody::Embed { inputs } };
    c.embed(&p.base, 8, &SignedRequest::new(CHAIN, &embed, &client_key)).await.unwrap();
    let device = agora_ml::device();
    let chat = Model::Chat(Arc::new(Llm::load(&p._dir.path().join("model.gguf"), &device).unwrap()));
    let embedder = Model::Embed(Arc::new(Embedder::load(&p._dir.path().join("bert"), &device).unwrap()));
    let (provider, client) = (p.key.public(), client_key.public());

    let (w, records) = proven(&p, 7, &[0, 1, 2]);
    let want = |seq| Sampled { chain_id: CHAIN, provider: &provider, client: &client, window: &w, seq };
    for (seq, r) in records.iter().enumerate() {
        let r = ProvenRecord::decode(&r.encode()).unwrap();
        let claim = claim_of(&r, &want(seq as u64)).unwrap();
        let v = recheck(&chat, &claim).unwrap();
        assert!(v.matches, "receipt {seq}: {}", v.detail);
        assert!(!recheck(&embedder, &claim).unwrap().matches, "another kind of model");
    }
    let (ew, er) = proven(&p, 8, &[0]);
    let claim = claim_of(&er[0], &Sampled { window: &ew, ..want(0) }).unwrap();
    assert!(recheck(&embedder, &claim).unwrap().matches);

    // What the provider hands over must be the sampled, committed, client-signed, receipted one.
    assert!(claim_of(&records[0], &want(1)).unwrap_err().contains("not in the committed window"));
    let other = SecretKey::from_seed([5; 32]).public();
    let err = claim_of(&records[0], &Sampled { client: &other, ..want(0) }).unwrap_err();
    assert!(err.contains("its client signed"), "{err}");
    assert!(
        claim_of(&records[0], &Sampled { provider: &other, ..want(0) }).unwrap_err().contains("not signed")
    );
    let mut swapped = records[0].clone();
    swapped.record.output = records[1].record.output.clone(); // sampled: another answer
    let err = claim_of(&swapped, &want(0)).unwrap_err();
    assert!(err.contains("not the one receipted"), "{err}");
    let mut easier = records[0].clone();
    easier.record.request = records[2].record.request.clone();
    assert!(claim_of(&easier, &want(0)).unwrap_err().contains("the request is not"));
}

/// Chat runs that arrive together beyond the batch size all run,
/// batched, and each streams and returns exactly what the model generates for it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_chat_runs_are_batched_and_each_is_what_it_would_be_alone() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_llama(&dir.path().join("model.gguf"), 4, GgmlDType::Q8_0).unwrap();
    let llm = Arc::new(Llm::load(&dir.path().join("model.gguf"), &agora_ml::device()).unwrap());
    let engine = Engine::new(1, 3);
    let params = |i: u64| ChatParams {
        prompt: format!("request number {i}: write about the sea and the sky and the storm"),
        max_tokens: 6 + 3 * i as u32,
        temperature_milli: if i.is_multiple_of(2) { 0 } else { 800 },
        seed: i,
        stop: vec![],
    };
    let runs = (0..7u64).map(|i| {
        let (engine, llm) = (engine.clone(), llm.clone());
        async move {
            let (pieces, mut streamed) = tokio::sync::mpsc::unbounded_channel();
            let run = engine.chat(llm, params(i), pieces).await.unwrap().expect("the client stayed");
            let mut text = String::new();
            while let Ok(piece) = streamed.try_recv() {
                text.push_str(&piece);
            }
            (run, text)
        }
    });
    let done = futures::future::join_all(runs).await;
    for (i, (run, streamed)) in done.into_iter().enumerate() {
        let p = params(i as u64);
        let alone = llm.generate(&p.request(None)).unwrap().generation;
        assert_eq!(run.generation, alone, "run {i}");
        assert_eq!(streamed, alone.text, "run {i}: the pieces add up to the answer");
        assert_eq!(run.prompt_tokens, llm.prompt_tokens(&p.prompt).unwrap().len() as u64);
        assert_eq!(run.fingerprints.len(), alone.tokens.len().div_ceil(FINGERPRINT_EVERY));
    }
}
