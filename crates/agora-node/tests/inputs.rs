//! A requester whose inputs are not what its manifest declares, on real processes: the
//! provider states it on chain, auditors fetch the inputs from the job's sources and find the
//! same, and the provider is compensated instead of penalized; the shard is given up, not
//! re-matched. Before, the provider could not commit, missed its deadline and paid the
//! non-delivery penalty for the requester's fault.

mod common;

use agora_node::client::NodeClient;
use common::*;
use std::time::{Duration, Instant};

const MONTECARLO: &[u8] = include_bytes!("../../../examples/wasm/montecarlo.wasm");

#[test]
fn inputs_that_do_not_match_their_manifest_cost_the_provider_nothing() {
    let net = Net::start(4, 2, &[]);
    let v = net.validators[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chain = NodeClient::new(&v);
    let work = tempfile::tempdir().unwrap();
    let w = work.path().join("wallet");
    net.funded_wallet(&w, 1_000_000_000);
    let key = agora_node::config::load_key(&w.join("wallet.key")).unwrap();
    let sender = agora_node::sender::TxSender::new(key.clone(), chain.clone());
    let store = agora_store::http::Client::new(&v).unwrap().with_signer(key);

    // Real inputs, uploaded; a manifest that declares another root for them.
    let model = rt.block_on(store.upload_bytes(MONTECARLO.to_vec(), true)).unwrap().hash;
    let items: Vec<Vec<u8>> = (0..4).map(|i| format!("samples={}", 1_000 + i).into_bytes()).collect();
    let inputs = agora_node::protocol::encode_shard(&items, None).unwrap();
    rt.block_on(store.upload_bytes(inputs.blob.clone(), true)).unwrap();
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let mismatched = agora_core::JobManifest {
        model,
        params: agora_core::JobParams::Wasm { fuel_per_item: 10_000_000, memory_mib: 16, args: vec![] },
        class: "cpu.x86_64".parse().unwrap(),
        shards: vec![agora_core::manifest::ShardSpec {
            input: inputs.hash,
            items_root: agora_core::Hash::of(b"not the root of these inputs"),
            item_count: 4,
            quantity: 10,
        }],
        max_unit_price: agora_core::Amount(1_000),
        deadline_ms: now_ms + 1_200_000,
        policy: agora_core::manifest::VerificationPolicy::Standard,
        constraints: Default::default(),
        encrypted: false,
        sources: vec![v.clone()],
        key_agent: None,
    };
    let providers: Vec<String> = (0..2).map(|i| net.provider_account(i)).collect();
    let provider_state = |who: &str| agora(&v, &["provider", "status", who])["provider"].clone();
    let before: Vec<_> = providers.iter().map(|p| provider_state(p)["collateral"].clone()).collect();

    let job = rt.block_on(agora_node::requester::submit_manifest(&chain, &sender, &mismatched)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !rt.block_on(chain.job(job)).unwrap().finished {
        if Instant::now() > deadline {
            let j = rt.block_on(chain.job(job)).unwrap();
            let leases: Vec<_> =
                j.shards[0].history.iter().map(|l| rt.block_on(chain.lease(*l)).unwrap().status).collect();
            panic!("the job did not end: {:?}, leases {leases:?}; logs: {}", j.shards[0], net.logs_tail());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let j = rt.block_on(chain.job(job)).unwrap();
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
