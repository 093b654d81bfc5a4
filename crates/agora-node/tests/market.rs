//! The marketplace end to end on real processes: `agora devnet` with 4 validators and 3
//! provider nodes, one of which returns wrong outputs for 10% of items. A requester drives the
//! CLI: refusals before any escrow is locked, a sharded WebAssembly job that is matched,
//! computed, audited and settled (the cheater caught, slashed and its shard re-done by an
//! honest provider), results identical to a local run, a receipt whose proofs check against
//! finalized headers, and a provider killed mid-job whose shard is re-matched.

mod common;

use agora_node::client::NodeClient;
use common::*;
use std::path::Path;
use std::time::Duration;

const MONTECARLO: &[u8] = include_bytes!("../../../examples/wasm/montecarlo.wasm");

/// Writes a montecarlo job over `items` input lines into `dir`; `market` is the [market] body.
fn job_file(dir: &Path, name: &str, items: usize, market: &str) -> String {
    job_file_sized(dir, name, items, 2_000, market)
}

/// [`job_file`] with item `i` drawing `samples + 10·i` samples (20 million take about 1.5 s).
fn job_file_sized(dir: &Path, name: &str, items: usize, samples: usize, market: &str) -> String {
    std::fs::write(dir.join("montecarlo.wasm"), MONTECARLO).unwrap();
    let lines: String = (0..items).map(|i| format!("samples={}\n", samples + i * 10)).collect();
    std::fs::write(dir.join(format!("{name}.txt")), lines).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "kind = \"wasm\"\nmodel = \"montecarlo.wasm\"\ninputs = [\"{name}.txt\"]\ninput_format = \"lines\"\n\n[market]\n{market}\n"
        ),
    )
    .unwrap();
    path.to_string_lossy().to_string()
}

fn balance(node: &str, acct: &str) -> u128 {
    agora(node, &["wallet", "balance", acct])["state"]["balance"].as_str().unwrap().parse().unwrap()
}

#[test]
fn jobs_are_verified_settled_and_cheaters_and_dead_providers_handled() {
    let net = Net::start(4, 3, &["--cheaters", "1", "--cheat-bps", "1000", "--param", "liveness_blocks=300"]);
    let v = net.validators[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chain = NodeClient::new(&v);
    let work = tempfile::tempdir().unwrap();
    let w = work.path().join("wallet");
    let wallet = w.to_str().unwrap();
    let me = net.funded_wallet(&w, 1_000_000_000);
    let cheater = net.provider_account(2);
    let honest = [net.provider_account(0), net.provider_account(1)];

    // --- Refused before any escrow is locked. ---
    let start = balance(&v, &me);
    let mars = job_file(work.path(), "mars", 6, "max_price = 100\n[market.constraints]\nregion = \"mars\"");
    let quote = std::process::Command::new(BIN)
        .args(["--node", &v, "--data-dir", wallet, "job", "quote", &mars])
        .output()
        .unwrap();
    assert_eq!(quote.status.code(), Some(3), "an unplaceable quote exits with 3");
    assert!(String::from_utf8_lossy(&quote.stdout).contains("region mars"));
    let err = agora_fails(&v, &["--data-dir", wallet, "job", "submit", &mars]);
    assert!(err.contains("unplaceable") && err.contains("region mars"), "{err}");
    let fee = 10; // the devnet's min_fee; the refused submission paid only that
    assert_eq!(balance(&v, &me), start - fee);
    let start = start - fee;
    let unknown = work.path().join("unknown.toml");
    std::fs::write(
        &unknown,
        "kind = \"embed\"\nmodel = \"no-such-model\"\ninputs = [\"mars.txt\"]\n[market]\nmax_price = 5\n",
    )
    .unwrap();
    let err = agora_fails(&v, &["--data-dir", wallet, "job", "submit", unknown.to_str().unwrap()]);
    assert!(err.contains("no-such-model"), "{err}");
    let negative = job_file(work.path(), "neg", 3, "max_price = -1");
    assert!(agora_fails(&v, &["--data-dir", wallet, "job", "submit", &negative]).contains("negative"));
    let greedy = job_file(work.path(), "greedy", 3, "max_price = 9223372036854775807");
    assert!(
        agora_fails(&v, &["--data-dir", wallet, "job", "submit", &greedy]).contains("insufficient funds")
    );
    let huge = job_file(work.path(), "huge", 3, "max_price = 5\nshards = 100000");
    assert!(agora_fails(&v, &["--data-dir", wallet, "job", "submit", &huge]).contains("shards must be"));
    // A manifest naming data that no source holds is refused before it is sent.
    let key = agora_node::config::load_key(&w.join("wallet.key")).unwrap();
    let sender = agora_node::sender::TxSender::new(key, chain.clone());
    let missing = agora_core::JobManifest {
        model: agora_core::Hash::of(b"a model nobody uploaded"),
        params: agora_core::JobParams::Wasm { fuel_per_item: 1_000_000, memory_mib: 16, args: vec![] },
        class: "cpu.x86_64".parse().unwrap(),
        shards: vec![agora_core::manifest::ShardSpec {
            input: agora_core::Hash::of(b"missing input"),
            items_root: agora_core::Hash::ZERO,
            item_count: 1,
            quantity: 1,
        }],
        max_unit_price: agora_core::Amount(5),
        deadline_ms: u64::MAX / 2,
        policy: agora_core::manifest::VerificationPolicy::Standard,
        constraints: Default::default(),
        encrypted: false,
        sources: vec![v.clone()],
        key_agent: None,
        output_key: None,
    };
    let err = rt.block_on(agora_node::requester::submit_manifest(&chain, &sender, &missing)).unwrap_err();
    assert!(format!("{err:#}").contains("not available"), "{err:#}");
    assert_eq!(balance(&v, &me), start, "nothing was spent on refused jobs");

    // --- A sharded job with a cheater among the providers. ---
    let job = job_file(work.path(), "pi", 300, "max_price = 1000\nshards = 3\ndeadline = \"20m\"");
    let r = agora(&v, &["--data-dir", wallet, "job", "submit", &job, "--wait", "--timeout", "600"]);
    let id = r["job"].as_u64().unwrap().to_string();
    let shards = r["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    let mut rematched = 0;
    for s in shards {
        assert!(s["status"].as_str().unwrap().starts_with("Done"), "{s}");
        let provider = s["provider"].as_str().unwrap();
        assert!(honest.iter().any(|h| h == provider), "shard settled with the cheater: {s}");
        assert_eq!(s["audit_outcome"], "clean", "{s}");
        assert!(s["paid"].as_str().unwrap().parse::<u128>().unwrap() > 0);
        if s["leases"].as_array().unwrap().len() > 1 {
            rematched += 1;
        }
    }
    assert!(rematched >= 1, "the cheater's shard was re-done: {r}");
    // The cheater was caught by a confirmed audit, slashed and ejected; honest providers were not.
    let height = agora(&v, &["chain", "status"])["height"].as_u64().unwrap();
    let p = agora(&v, &["provider", "status", &cheater]);
    assert!(p["provider"]["ejected_until"].as_u64().unwrap() > height, "{p}");
    assert!(p["provider"]["trust"]["frauds"].as_u64().unwrap() >= 1, "{p}");
    let audits =
        rt.block_on(chain.get::<serde_json::Value>(&format!("/api/v1/audits?account={cheater}"))).unwrap();
    assert!(audits.to_string().contains("fraud"), "{audits}");
    for h in &honest {
        let audits =
            rt.block_on(chain.get::<serde_json::Value>(&format!("/api/v1/audits?account={h}"))).unwrap();
        for a in audits.as_array().unwrap().iter().filter(|a| a["provider"] == h.as_str()) {
            assert_ne!(a["outcome"], "fraud", "honest provider {h} convicted: {a}");
        }
        let p = agora(&v, &["provider", "status", h]);
        assert_eq!(p["provider"]["ejected_until"], 0, "{p}");
        assert_eq!(p["provider"]["trust"]["frauds"], 0, "{p}");
    }
    // The requester paid exactly the settled work plus fees; every unit of escrow came back.
    let paid: u128 = r["total_paid"].as_str().unwrap().parse().unwrap();
    // Every transaction but the refused submission (already counted in `start`) paid a fee.
    let txs = agora(&v, &["wallet", "balance", &me])["state"]["nonce"].as_u64().unwrap() as u128;
    let spent = start - balance(&v, &me);
    assert_eq!(spent, paid + fee * (txs - 1), "spent {spent}, paid {paid}, {txs} transactions");
    let supply = agora(&v, &["chain", "status"])["supply"].clone();
    let n = |k: &str| supply[k].as_str().unwrap().parse::<u128>().unwrap();
    assert_eq!(n("liquid") + n("staked") + n("collateral") + n("escrow"), n("minted") - n("burned"));

    // Results: fetched from the providers, decrypted, checked against the commitments, and
    // reassembled in order (item i answers input line i).
    let out = work.path().join("out");
    let got = agora(&v, &["--data-dir", wallet, "job", "result", &id, "--out", out.to_str().unwrap()]);
    assert_eq!(got["items"], 300);
    for i in [0usize, 99, 100, 217, 299] {
        let line = String::from_utf8(std::fs::read(out.join(format!("item-{i}.bin"))).unwrap()).unwrap();
        assert!(line.starts_with(&format!("samples={} ", 2_000 + i * 10)), "item {i}: {line}");
        let pi: f64 = line.trim().rsplit("pi=").next().unwrap().parse().unwrap();
        assert!((pi - std::f64::consts::PI).abs() < 0.25, "item {i}: {line}");
    }
    // The receipt's proofs check against finalization certificates, with committees followed
    // from the genesis committee through every epoch's last block. Wait until the chain is past
    // its first epoch so that following happens.
    let epoch_length = agora_node::devnet::devnet_params(1).epoch_length as u64;
    wait_for("the chain to leave its first epoch", Duration::from_secs(120), || {
        try_height(&v).is_some_and(|h| h > epoch_length + 2)
    });
    let genesis = net.dir.join("genesis.toml");
    let verified = agora(
        &v,
        &["--data-dir", wallet, "job", "receipt", &id, "--verify", "--genesis", genesis.to_str().unwrap()],
    );
    let proofs = verified["proofs"].as_array().unwrap();
    assert!(proofs.len() >= 4, "{verified}");
    assert!(proofs.iter().all(|p| p["certified_in_epoch"].is_u64()), "{verified}");
    assert!(proofs.iter().all(|p| p["height"].as_u64().unwrap() >= epoch_length), "{verified}");

    // --- A provider killed mid-job: its shard is re-matched and the job completes. The job is
    // submitted without --wait and nothing on the requester's side runs afterwards: the node's
    // key agent shares the input keys, with the first providers and again after the re-match.
    // Each shard computes for several seconds: a window in which to kill one provider.
    let job = job_file_sized(
        work.path(),
        "kill",
        40,
        6_000_000,
        "max_price = 1000\nshards = 2\ndeadline = \"20m\"",
    );
    let submitted = agora(&v, &["--data-dir", wallet, "job", "submit", &job]);
    let id = submitted["job"].as_u64().unwrap();
    // The requester's node holds the job's model and inputs under the job's name while it runs.
    wait_for("the node to pin the job's blobs", Duration::from_secs(60), || {
        net.pin_owners("node0").contains(&format!("job:{id}"))
    });
    let mut leases = vec![];
    wait_for("both shards to be leased", Duration::from_secs(60), || {
        let j = rt.block_on(chain.job(id)).unwrap();
        leases = j
            .shards
            .iter()
            .filter_map(|s| match s.status {
                agora_ledger::jobs::ShardStatus::Leased(l) => Some(l),
                _ => None,
            })
            .collect();
        leases.len() == 2
    });
    let victim = rt.block_on(chain.lease(leases[0])).unwrap().provider.to_string();
    let index = (0..2).find(|i| net.provider_account(*i) == victim).expect("an honest provider runs it");
    let pid = pid_of(&net.provider_config(index)).expect("provider process");
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    wait_for("the job to settle with no requester online", Duration::from_secs(600), || {
        rt.block_on(chain.job(id)).unwrap().finished
    });
    let r = agora(&v, &["--data-dir", wallet, "job", "wait", &id.to_string(), "--timeout", "10"]);
    for s in r["shards"].as_array().unwrap() {
        assert!(s["status"].as_str().unwrap().starts_with("Done"), "{r}");
        assert_ne!(s["provider"].as_str().unwrap(), victim, "{r}");
    }
    let failed = rt.block_on(chain.lease(leases[0])).unwrap();
    assert!(format!("{:?}", failed.status).contains("ProviderVanished"), "{:?}", failed.status);
    // Store pins end with what they hold: the job's on the requester's node, every lease's on
    // its providers; what stays is the settled leases' outputs, held for the requester for a
    // retention time, not forever.
    let settled: Vec<u64> =
        r["shards"].as_array().unwrap().iter().map(|s| s["lease"].as_u64().unwrap()).collect();
    // (The killed provider's store keeps its lease's pin until it runs again and sees the
    // lease fail.)
    let live: Vec<String> = ["node0", "node1", "node2", "node3"]
        .into_iter()
        .map(String::from)
        .chain((0..3).filter(|i| *i != index).map(|i| format!("provider{i}")))
        .collect();
    let held = |o: &String| o == &format!("job:{id}") || o.starts_with("lease:") || o.starts_with("audit:");
    let released_by = std::time::Instant::now() + Duration::from_secs(60);
    let owners = loop {
        let owners: Vec<String> = live.iter().flat_map(|n| net.pin_owners(n)).collect();
        if !owners.iter().any(held) {
            break owners;
        }
        assert!(std::time::Instant::now() < released_by, "pins still held after 60 s: {owners:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    for l in settled {
        assert!(
            owners.contains(&format!("output:{l}")),
            "lease {l}'s outputs are kept for the requester: {owners:?}"
        );
    }
    let providers: Vec<String> =
        live.iter().filter(|n| n.starts_with("provider")).flat_map(|n| net.pin_owners(n)).collect();
    assert!(!providers.iter().any(|o| o == "operator"), "a provider pins nothing forever: {providers:?}");
    let supply = agora(&v, &["chain", "status"])["supply"].clone();
    let n = |k: &str| supply[k].as_str().unwrap().parse::<u128>().unwrap();
    assert_eq!(n("liquid") + n("staked") + n("collateral") + n("escrow"), n("minted") - n("burned"));
    drop(net);
}
