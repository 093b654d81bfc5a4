//! End to end on real processes: `agora devnet` starts 4 validator nodes on 127.0.0.1;
//! transfers go through the CLI and are finalized; a validator is killed with SIGKILL, the
//! others keep finalizing; it is restarted alone and catches up to the same chain.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agora");

/// A free block of ports: base..base+4 and base+100..base+104.
fn free_port_base() -> u16 {
    for attempt in 0..200u32 {
        let base = 20_000 + ((std::process::id().wrapping_mul(7919) + attempt * 97) % 30_000) as u16;
        let ok = (0..4).chain(100..104).all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if ok {
            return base;
        }
    }
    panic!("no free ports");
}

fn agora(node: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN).arg("--node").arg(node).arg("--json").args(args).output().expect("run agora");
    assert!(out.status.success(), "agora {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn try_height(node: &str) -> Option<u64> {
    let out = Command::new(BIN).args(["--node", node, "--json", "chain", "status"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()?["height"].as_u64()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pid of the node process running `config`.
fn pid_of(config: &Path) -> Option<i32> {
    let needle = config.to_string_lossy().to_string();
    for entry in std::fs::read_dir("/proc").ok()? {
        let entry = entry.ok()?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("node run") && cmd.contains(&needle) {
                return Some(pid);
            }
        }
    }
    None
}

struct Cleanup(Vec<Child>, PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        // Nodes stop within a few seconds of SIGTERM; anything still running after that is killed
        // so a failing test reports its failure instead of hanging.
        let deadline = Instant::now() + Duration::from_secs(15);
        for c in &mut self.0 {
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Any stray node of this devnet.
        for i in 0..4 {
            if let Some(pid) = pid_of(&self.1.join(format!("node{i}.toml"))) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

#[test]
fn devnet_finalizes_survives_a_killed_validator_and_catches_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let base = free_port_base();
    let devnet = Command::new(BIN)
        .args(["devnet", "--validators", "4", "--port-base", &base.to_string(), "--dir"])
        .arg(&net)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Cleanup(vec![devnet], net.clone());
    let url = |i: u16| format!("http://127.0.0.1:{}", base + i);
    wait_for("the devnet to finalize blocks", Duration::from_secs(90), || {
        (0..4).all(|i| try_height(&url(i)).is_some_and(|h| h >= 2))
    });

    // A transfer through the CLI, from the faucet to a fresh wallet.
    let wallet = dir.path().join("wallet");
    let acct = agora(&url(0), &["--data-dir", wallet.to_str().unwrap(), "init"])["account"]
        .as_str()
        .unwrap()
        .to_string();
    let faucet = net.join("faucet.key");
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
    let config2 = net.join("node2.toml");
    let pid = pid_of(&config2).expect("node2 is running");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let h0 = try_height(&url(0)).unwrap();
    wait_for("the chain to keep finalizing without node2", Duration::from_secs(60), || {
        try_height(&url(0)).is_some_and(|h| h >= h0 + 10)
    });
    let sent = agora(&url(0), &["--key", faucet.to_str().unwrap(), "wallet", "transfer", &acct, "1"]);
    assert_eq!(sent["status"]["status"], "finalized");

    // Restart it alone; it catches up and agrees on history.
    let restarted = Command::new(BIN)
        .arg("node")
        .arg("run")
        .arg("--config")
        .arg(&config2)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    guard.0.push(restarted);
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
