//! Delivery on both sides, checked before money moves, on real processes:
//! * a requester whose inputs are not what its manifest declares: the provider states it on
//!   chain, auditors fetch the inputs from the job's sources and find the same, and the
//!   provider is compensated instead of penalized; the shard is given up, not re-matched.
//!   Before, the provider could not commit, missed its deadline and paid the non-delivery
//!   penalty for the requester's fault.
//! * the same for an encrypted job, whose inputs auditors can open only with the key the
//!   provider discloses (with proof) in its statement: a sealed key that does not open, and a
//!   key that opens inputs that do not match their root. Before, an encrypted job's inputs
//!   could not be disputed at all.
//! * an encrypted job whose provider commits its true outputs but stores a blob nobody can
//!   open: auditors, who see ciphertext, pass it; the key agent of the requester (which
//!   submitted and left) checks the delivered outputs with the job's output key and disputes
//!   them, an auditor decrypts the blob with the disclosed key and confirms, and the lease is a
//!   non-delivery instead of being paid. Before, it was paid on its hash.
//! * a lease the audit draw passes over: an auditor fetches its committed output blob and
//!   checks it before it is paid. Before, it was paid on the provider's word when its window
//!   closed.

mod common;

use agora_node::client::NodeClient;
use agora_store::encrypt::BlobKey;
use common::*;
use std::time::{Duration, Instant};

const MONTECARLO: &[u8] = include_bytes!("../../../examples/wasm/montecarlo.wasm");

/// One shard's input items, the items root its manifest declares (the items' own if `None`),
/// and the key it is encrypted with (if any).
type Shard<'a> = (&'a [Vec<u8>], Option<agora_core::Hash>, Option<&'a BlobKey>);

/// A requester on a devnet: its chain client, transaction sender and signed store client.
struct Requester {
    chain: NodeClient,
    sender: agora_node::sender::TxSender,
    store: agora_store::http::Client,
    source: String,
    _wallet: tempfile::TempDir,
}

impl Requester {
    fn new(net: &Net) -> Self {
        let v = net.validators[0].clone();
        let chain = NodeClient::new(&v);
        let wallet = tempfile::tempdir().unwrap();
        let w = wallet.path().join("wallet");
        net.funded_wallet(&w, 1_000_000_000);
        let key = agora_node::config::load_key(&w.join("wallet.key")).unwrap();
        let sender = agora_node::sender::TxSender::new(key.clone(), chain.clone());
        let store = agora_store::http::Client::new(&v).unwrap().with_signer(key);
        Requester { chain, sender, store, source: v, _wallet: wallet }
    }

    /// Uploads the montecarlo model and `items` as one unencrypted shard; returns a manifest
    /// for it whose items root is `root` (the inputs' own root if `None`).
    fn manifest(
        &self,
        rt: &tokio::runtime::Runtime,
        items: &[Vec<u8>],
        root: Option<agora_core::Hash>,
    ) -> agora_core::JobManifest {
        self.manifest_of(rt, &[(items, root, None)])
    }

    /// Uploads the montecarlo model and one shard per `(items, root, key)`, encrypted with
    /// `key` if given; returns a manifest for them whose items roots are `root` (the inputs'
    /// own root if `None`).
    fn manifest_of(&self, rt: &tokio::runtime::Runtime, shards: &[Shard<'_>]) -> agora_core::JobManifest {
        let params = agora_core::JobParams::Wasm { fuel_per_item: 10_000_000, memory_mib: 16, args: vec![] };
        self.job_of(rt, MONTECARLO.to_vec(), params, shards)
    }

    /// Uploads `model` and one shard per `(items, root, key)`, as [`Self::manifest_of`] does,
    /// for a job with `params`.
    fn job_of(
        &self,
        rt: &tokio::runtime::Runtime,
        model: Vec<u8>,
        params: agora_core::JobParams,
        shards: &[Shard<'_>],
    ) -> agora_core::JobManifest {
        let model = rt.block_on(self.store.upload_bytes(model, true)).unwrap().hash;
        let encrypted = shards.iter().any(|(_, _, key)| key.is_some());
        let shards = shards
            .iter()
            .map(|(items, root, key)| {
                let inputs = agora_node::protocol::encode_shard(items, *key).unwrap();
                rt.block_on(self.store.upload_bytes(inputs.blob.clone(), true)).unwrap();
                agora_core::manifest::ShardSpec {
                    input: inputs.hash,
                    items_root: root.unwrap_or(inputs.items_root),
                    item_count: items.len() as u32,
                    quantity: 10,
                }
            })
            .collect();
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        agora_core::JobManifest {
            model,
            params,
            class: "cpu.x86_64".parse().unwrap(),
            shards,
            max_unit_price: agora_core::Amount(1_000),
            deadline_ms: now_ms + 1_200_000,
            policy: agora_core::manifest::VerificationPolicy::Standard,
            constraints: Default::default(),
            encrypted,
            sources: vec![self.source.clone()],
            key_agent: None,
            output_key: None,
        }
    }

    /// Submits `m` and waits up to 180 s for the job to end.
    fn run(
        &self,
        rt: &tokio::runtime::Runtime,
        net: &Net,
        m: &agora_core::JobManifest,
    ) -> agora_ledger::jobs::Job {
        self.run_with(rt, net, m, |_| {})
    }

    /// [`Self::run`], calling `each_poll` with the job every half second until it ends.
    fn run_with(
        &self,
        rt: &tokio::runtime::Runtime,
        net: &Net,
        m: &agora_core::JobManifest,
        mut each_poll: impl FnMut(&agora_ledger::jobs::Job),
    ) -> agora_ledger::jobs::Job {
        let job = rt.block_on(agora_node::requester::submit_manifest(&self.chain, &self.sender, m)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let j = rt.block_on(self.chain.job(job)).unwrap();
            if j.finished {
                return j;
            }
            each_poll(&j);
            if Instant::now() > deadline {
                let leases: Vec<_> = j.shards[0]
                    .history
                    .iter()
                    .map(|l| rt.block_on(self.chain.lease(*l)).unwrap().status)
                    .collect();
                panic!(
                    "job {job} did not end: {:?}, leases {leases:?}; logs: {}",
                    j.shards[0],
                    net.logs_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn montecarlo_items(n: u32) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("samples={}", 1_000 + i).into_bytes()).collect()
}

#[test]
fn inputs_that_do_not_match_their_manifest_cost_the_provider_nothing() {
    let net = Net::start(4, 2, &[]);
    let v = net.validators[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let requester = Requester::new(&net);
    let chain = &requester.chain;
    // Real inputs, uploaded; a manifest that declares another root for them.
    let root = agora_core::Hash::of(b"not the root of these inputs");
    let mismatched = requester.manifest(&rt, &montecarlo_items(4), Some(root));
    let providers: Vec<String> = (0..2).map(|i| net.provider_account(i)).collect();
    let provider_state = |who: &str| agora(&v, &["provider", "status", who])["provider"].clone();
    let before: Vec<_> = providers.iter().map(|p| provider_state(p)["collateral"].clone()).collect();

    let j = requester.run(&rt, &net, &mismatched);
    assert!(matches!(j.shards[0].status, agora_ledger::jobs::ShardStatus::Abandoned), "{:?}", j.shards[0]);
    assert_eq!(j.shards[0].history.len(), 1, "not re-matched: {:?}", j.shards[0]);
    let lease = rt.block_on(chain.lease(j.shards[0].history[0])).unwrap();
    assert_eq!(
        lease.status,
        agora_ledger::leases::LeaseStatus::Failed(agora_ledger::events::LeaseFailure::InvalidInput)
    );
    let check = rt.block_on(chain.audit(lease.audit.expect("the statement was checked"))).unwrap();
    assert_eq!(check.subject, agora_ledger::audits::AuditSubject::Inputs);
    assert_eq!(check.outcome, Some(agora_ledger::events::AuditOutcome::Clean), "{check:?}");
    assert!(check.assignments.iter().all(|a| a.auditor != lease.provider && a.verdict != Some(false)));
    let after: Vec<_> = providers.iter().map(|p| provider_state(p)["collateral"].clone()).collect();
    assert_eq!(before, after, "no provider paid a penalty for the requester's inputs");
    let p = provider_state(&lease.provider.to_string());
    assert_eq!(p["trust"]["leases_failed"], 0, "{p}");
    let supply = agora(&v, &["chain", "status"])["supply"].clone();
    let n = |k: &str| supply[k].as_str().unwrap().parse::<u128>().unwrap();
    assert_eq!(n("escrow"), 0, "the compensation paid, the rest refunded: {supply}");
}

#[test]
fn a_prompt_longer_than_the_model_accepts_is_the_requesters_fault() {
    // Before: a well-formed prompt beyond the model's limit failed the provider's run; the
    // lease missed its deadline and the provider paid the non-delivery penalty. Now the
    // provider names the item, and auditors (validators, in their child processes) check it
    // with the same function on the same model.
    let net = Net::start(4, 1, &[]);
    let v = net.validators[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let requester = Requester::new(&net);
    let work = tempfile::tempdir().unwrap();
    agora_ml::fixtures::write_tiny_llama(
        &work.path().join("model.gguf"),
        1,
        agora_ml::fixtures::GgmlDType::Q8_0,
    )
    .unwrap();
    let mut bundle = Vec::new();
    agora_runtime::provision::bundle::write_bundle(work.path(), &["model.gguf".to_string()], &mut bundle)
        .unwrap();
    let long = "the sea ".repeat(agora_ml::generate::model::MAX_PROMPT_TOKENS).into_bytes();
    let items = vec![b"hello there".to_vec(), long];
    let params =
        agora_core::JobParams::Generate { max_new_tokens: 4, temperature_milli: 0, seed: 1, stop: vec![] };
    let m = requester.job_of(&rt, bundle, params, &[(&items, None, None)]);
    let provider = net.provider_account(0);
    let collateral = || agora(&v, &["provider", "status", &provider])["provider"]["collateral"].clone();
    let before = collateral();
    let j = requester.run(&rt, &net, &m);
    assert!(matches!(j.shards[0].status, agora_ledger::jobs::ShardStatus::Abandoned), "{:?}", j.shards[0]);
    let lease = rt.block_on(requester.chain.lease(j.shards[0].history[0])).unwrap();
    assert_eq!(
        lease.status,
        agora_ledger::leases::LeaseStatus::Failed(agora_ledger::events::LeaseFailure::InvalidInput)
    );
    assert_eq!(lease.disputed_item, Some(1), "the provider named the item");
    let check = rt.block_on(requester.chain.audit(lease.audit.unwrap())).unwrap();
    assert_eq!(check.outcome, Some(agora_ledger::events::AuditOutcome::Clean), "{check:?}");
    assert_eq!(collateral(), before, "no penalty for the requester's prompt");
}

#[test]
fn encrypted_inputs_are_disputed_with_a_disclosed_key_and_cost_the_provider_nothing() {
    let net = Net::start(4, 2, &[]);
    let v = net.validators[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let requester = Requester::new(&net);
    let chain = &requester.chain;
    let items = montecarlo_items(4);
    let keys = [BlobKey::generate(), BlobKey::generate()];
    // Shard 0: good inputs, but the key sealed to its provider is altered and does not open.
    // Shard 1: the key opens, but the inputs do not match the root the manifest declares.
    let wrong_root = agora_core::Hash::of(b"not the root of these inputs");
    let m = requester
        .manifest_of(&rt, &[(&items, None, Some(&keys[0])), (&items, Some(wrong_root), Some(&keys[1]))]);
    let providers: Vec<String> = (0..2).map(|i| net.provider_account(i)).collect();
    let provider_state = |who: &str| agora(&v, &["provider", "status", who])["provider"].clone();
    let before: Vec<_> = providers.iter().map(|p| provider_state(p)["collateral"].clone()).collect();
    let mut shared = std::collections::BTreeSet::new();
    let j = requester.run_with(&rt, &net, &m, |j| {
        for (i, (shard, key)) in j.shards.iter().zip(&keys).enumerate() {
            let Some(&id) = shard.history.last() else { continue };
            let lease = rt.block_on(chain.lease(id)).unwrap();
            if !lease.is_running() || !shared.insert(id) {
                continue;
            }
            let mut sealed = agora_node::protocol::seal_input_key(key, &lease.provider).unwrap();
            if i == 0 {
                sealed[40] ^= 1; // Still a sealed key in form; it no longer opens.
            }
            let tx = agora_core::TxPayload::ShareKey { lease: id, to: lease.provider, sealed_key: sealed };
            rt.block_on(requester.sender.submit(tx)).unwrap();
        }
    });
    for shard in &j.shards {
        assert!(matches!(shard.status, agora_ledger::jobs::ShardStatus::Abandoned), "{shard:?}");
        assert_eq!(shard.history.len(), 1, "not re-matched: {shard:?}");
        let lease = rt.block_on(chain.lease(shard.history[0])).unwrap();
        assert_eq!(
            lease.status,
            agora_ledger::leases::LeaseStatus::Failed(agora_ledger::events::LeaseFailure::InvalidInput)
        );
        assert!(lease.input_disclosure.is_some(), "the provider disclosed its key: {lease:?}");
        let check = rt.block_on(chain.audit(lease.audit.expect("the statement was checked"))).unwrap();
        assert_eq!(check.subject, agora_ledger::audits::AuditSubject::Inputs);
        assert_eq!(check.outcome, Some(agora_ledger::events::AuditOutcome::Clean), "{check:?}");
    }
    let after: Vec<_> = providers.iter().map(|p| provider_state(p)["collateral"].clone()).collect();
    assert_eq!(before, after, "no provider paid a penalty for the requester's key or inputs");
}

#[test]
fn an_encrypted_blob_nobody_can_open_is_disputed_by_the_key_agent_and_never_paid() {
    // The requester submits without waiting and is gone; its node's key agent holds the job's
    // output key, finds the delivered blob does not open, and disputes it.
    let net = Net::start(4, 1, &["--cheaters", "1", "--cheat-blob"]);
    let v = net.validators[0].clone();
    let chain = NodeClient::new(&v);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let work = tempfile::tempdir().unwrap();
    let w = work.path().join("wallet");
    net.funded_wallet(&w, 1_000_000_000);
    std::fs::write(work.path().join("montecarlo.wasm"), MONTECARLO).unwrap();
    std::fs::write(work.path().join("in.txt"), "samples=1000\nsamples=1001\nsamples=1002\n").unwrap();
    let file = work.path().join("job.toml");
    std::fs::write(
        &file,
        "kind = \"wasm\"\nmodel = \"montecarlo.wasm\"\ninputs = [\"in.txt\"]\ninput_format = \"lines\"\n\n[market]\nmax_price = 1000\n",
    )
    .unwrap();
    let args = ["--data-dir", w.to_str().unwrap(), "job", "submit", file.to_str().unwrap()];
    let job = agora(&v, &args)["job"].as_u64().unwrap();
    let garbler = net.provider_account(0);
    let collateral = || agora(&v, &["provider", "status", &garbler])["provider"]["collateral"].clone();
    let before = collateral();
    let mut lease = None;
    wait_for("the first lease to end", Duration::from_secs(240), || {
        let j = rt.block_on(chain.job(job)).unwrap();
        let Some(&id) = j.shards[0].history.first() else { return false };
        let l = rt.block_on(chain.lease(id)).unwrap();
        let ended = matches!(
            l.status,
            agora_ledger::leases::LeaseStatus::Failed(_) | agora_ledger::leases::LeaseStatus::Settled
        );
        lease = Some(l);
        ended
    });
    let lease = lease.unwrap();
    assert_eq!(
        lease.status,
        agora_ledger::leases::LeaseStatus::Failed(agora_ledger::events::LeaseFailure::OutputUnavailable),
        "{lease:?}; logs: {}",
        net.logs_tail()
    );
    let dispute = lease.delivery.as_ref().and_then(|d| d.dispute.as_ref()).expect("disputed");
    let agent = rt.block_on(chain.job(job)).unwrap().manifest.key_agent.expect("the node's key agent");
    assert_eq!(dispute.by, agent, "the key agent answered for the offline requester");
    let check = rt.block_on(chain.audit(lease.audit.unwrap())).unwrap();
    assert_eq!(check.subject, agora_ledger::audits::AuditSubject::Availability);
    assert_eq!(check.outcome, Some(agora_ledger::events::AuditOutcome::Fraud), "{check:?}");
    assert_ne!(collateral(), before, "the non-delivery penalty was taken");
}

#[test]
fn a_lease_the_draw_passes_over_is_paid_only_once_its_outputs_are_fetched() {
    // Audits sample one item, which is then a full audit's worth (trust counts the samples a
    // provider passed, not its audits), one clean audit is trust enough and there is no audit
    // floor, so from the third lease on the draw starts passing leases over (1/2, then 1/3, ...).
    let params = ["trust_threshold=1", "audit_floor_ppm=0", "detect_target_ppm=0", "audit_sample_min=1"];
    let args: Vec<&str> = params.iter().flat_map(|p| ["--param", p]).collect();
    let net = Net::start(4, 1, &args);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let requester = Requester::new(&net);
    let chain = &requester.chain;
    for round in 0..12 {
        let j = requester.run(&rt, &net, &requester.manifest(&rt, &montecarlo_items(3 + round), None));
        let lease = rt.block_on(chain.lease(j.shards[0].history[0])).unwrap();
        assert_eq!(lease.status, agora_ledger::leases::LeaseStatus::Settled, "{lease:?}");
        let check = rt.block_on(chain.audit(lease.audit.expect("every lease is checked"))).unwrap();
        if lease.verification.audited {
            assert_eq!(check.subject, agora_ledger::audits::AuditSubject::Outputs);
            continue;
        }
        assert_eq!(check.subject, agora_ledger::audits::AuditSubject::Availability);
        assert_eq!(check.outcome, Some(agora_ledger::events::AuditOutcome::Clean), "{check:?}");
        assert!(check.assignments.iter().any(|a| a.verdict == Some(true) && a.auditor != lease.provider));
        return;
    }
    panic!("no lease was passed over by the draw in 12 rounds");
}
