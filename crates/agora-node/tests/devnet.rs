//! End to end on real processes: `agora devnet` starts 4 validator nodes on 127.0.0.1;
//! transfers go through the CLI and are finalized; a validator is killed with SIGKILL, the
//! others keep finalizing into a new epoch (a new consensus engine); it is restarted alone and
//! catches up to the same chain across the epoch boundary.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn devnet_finalizes_survives_a_killed_validator_and_catches_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::start(4, 0, &[]);
    let urls = net.validators.clone();
    let url = |i: usize| urls[i].clone();
    wait_for("the devnet to finalize blocks", Duration::from_secs(90), || {
        (0..4).all(|i| try_height(&url(i)).is_some_and(|h| h >= 2))
    });

    // A transfer through the CLI, from the faucet to a fresh wallet.
    let wallet = dir.path().join("wallet");
    let acct = agora(&url(0), &["--data-dir", wallet.to_str().unwrap(), "init"])["account"]
        .as_str()
        .unwrap()
        .to_string();
    let faucet = net.faucet();
    let sent = agora(&url(1), &["--key", faucet.to_str().unwrap(), "wallet", "transfer", &acct, "1234"]);
    assert_eq!(sent["status"]["status"], "finalized", "{sent}");
    assert_eq!(agora(&url(3), &["wallet", "balance", &acct])["state"]["balance"], "1234");

    // Malformed input gets a clear client error, not a crash.
    let bad = Command::new(BIN)
        .args(["--node", &url(0), "wallet", "transfer", "zz", "1", "--key"])
        .arg(&faucet)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("hex"), "{}", String::from_utf8_lossy(&bad.stderr));

    // The HTTP API answers malformed requests with 4xx and a message saying what is wrong.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let post = |body: &'static str| {
            http.post(format!("{}/api/v1/txs", url(0)))
                .body(body)
                .header("content-type", "application/json")
                .send()
        };
        let r = post("not json").await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("tx_hex"));
        let r = post(r#"{"tx_hex": "zz"}"#).await.unwrap();
        assert_eq!(r.status(), 400);
        let r = post(r#"{"tx_hex": "00"}"#).await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("malformed"));
        let c = agora_node::client::NodeClient::new(&url(0));
        for (path, status, needle) in [
            ("/api/v1/jobs/abc", 400, "integers"),
            ("/api/v1/leases/99999999", 404, "does not exist"),
            ("/api/v1/accounts/xyz", 400, "invalid account"),
            ("/api/v1/proofs/planet/1", 400, "unknown object kind"),
            ("/api/v1/blocks/99999999", 404, "not finalized"),
        ] {
            match c.get::<serde_json::Value>(path).await {
                Err(agora_node::client::ClientError::Api { status: s, message }) => {
                    assert_eq!(s, status, "{path}: {message}");
                    assert!(message.contains(needle), "{path}: {message}");
                }
                other => panic!("{path}: expected an error, got {other:?}"),
            }
        }
        // A correctly encoded transaction with a bad signature is refused (422), not crashed on.
        let key = agora_core::SecretKey::from_label("nobody");
        let mut tx = agora_core::Transaction {
            sender: key.public(),
            nonce: 0,
            fee: agora_core::Amount(10),
            payload: agora_core::TxPayload::Bond { amount: agora_core::Amount(1) },
        }
        .sign("agora-devnet", &key);
        tx.tx.nonce = 1;
        match c.submit(&tx).await {
            Err(agora_node::client::ClientError::Api { status: 422, message }) => {
                assert!(message.contains("signature") || message.contains("nonce"), "{message}")
            }
            other => panic!("expected 422, got {other:?}"),
        }
        // Every documented route exists.
        let doc: serde_json::Value = c.get("/api/v1/openapi.json").await.unwrap();
        assert!(doc["paths"]["/api/v1/txs"]["post"].is_object());
        // The event stream delivers finalized blocks.
        let resp = http.get(format!("{}/api/v1/events?from=1", url(0))).send().await.unwrap();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut resp = resp;
        let chunk =
            tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await.unwrap().unwrap().unwrap();
        let text = String::from_utf8_lossy(&chunk);
        assert!(text.contains("event: block") && text.contains("\"height\":1"), "{text}");
    });

    // Kill validator 2 without warning; the other three are a quorum and keep going.
    let config2 = net.validator_config(2);
    let pid = pid_of(&config2).expect("node2 is running");
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    let h0 = try_height(&url(0)).unwrap();
    let epoch0 = try_status(&url(0), "epoch").unwrap();
    // Long enough for node2 to miss an epoch boundary: it must then catch up across epochs.
    wait_for(
        "the chain to keep finalizing, into a new epoch, without node2",
        Duration::from_secs(90),
        || {
            try_height(&url(0)).is_some_and(|h| h >= h0 + 10)
                && try_status(&url(0), "epoch").is_some_and(|e| e > epoch0)
        },
    );
    let sent = agora(&url(0), &["--key", faucet.to_str().unwrap(), "wallet", "transfer", &acct, "1"]);
    assert_eq!(sent["status"]["status"], "finalized");

    // Restart it alone; it catches up and agrees on history.
    net.run_node(&config2);
    let target = try_height(&url(0)).unwrap();
    wait_for("node2 to catch up", Duration::from_secs(90), || {
        try_height(&url(2)).is_some_and(|h| h >= target)
    });
    let a = agora(&url(2), &["chain", "block", &target.to_string()]);
    let b = agora(&url(0), &["chain", "block", &target.to_string()]);
    assert_eq!(a["digest"], b["digest"]);
    assert_eq!(a["state_root"], b["state_root"]);
    assert_eq!(agora(&url(2), &["wallet", "balance", &acct])["state"]["balance"], "1235");
}
