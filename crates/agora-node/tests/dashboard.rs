//! The web dashboard in real headless Chromium, and `/metrics`, on a real devnet (4
//! validators, 2 providers). `tests/browser/dashboard.mjs` (playwright-core driving the
//! system's `/usr/bin/chromium`) opens a validator's dashboard, checks the overview lists the
//! devnet's validators and providers, and opens the jobs page; the test then submits a
//! WebAssembly job, which must appear on that open page by itself and reach "settled" on its
//! own page, with its state proofs matching finalized headers. The script also opens the
//! explorer, market and governance pages and each provider node's dashboard (which reads the
//! chain of its upstream), fails on any console error, uncaught exception or failed request,
//! and keeps a screenshot of every page in `$CARGO_TARGET_DIR/test-artifacts/dashboard/`.
//!
//! Needs Node.js, Chromium and the script's one package:
//! `apt-get install chromium nodejs npm && npm ci --prefix crates/agora-node/tests/browser`.
//! Without them the test says "skipped" and passes, unless `AGORA_REQUIRE_BROWSER=1`.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MONTECARLO: &[u8] = include_bytes!("../../../examples/wasm/montecarlo.wasm");

/// How long the job may take to settle once submitted, seconds (passed to the script).
const SETTLE_TIMEOUT_S: u64 = 180;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What this machine lacks to run the browser test, if anything.
fn missing_browser() -> Option<String> {
    let mut missing = vec![];
    if !Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()) {
        missing.push("Node.js (`node` on PATH)".to_string());
    }
    if !browser_dir().join("node_modules/playwright-core/package.json").exists() {
        missing.push(format!("playwright-core in {}/node_modules", browser_dir().display()));
    }
    if !chromium().exists() {
        missing.push(format!("Chromium at {}", chromium().display()));
    }
    (!missing.is_empty()).then(|| {
        format!(
            "missing {}; install with: apt-get install chromium nodejs npm && \
             npm ci --prefix crates/agora-node/tests/browser",
            missing.join(", ")
        )
    })
}

/// Where the screenshots go: `$CARGO_TARGET_DIR/test-artifacts/dashboard`, or the target
/// directory this test binary was built in (`target/debug/deps/dashboard-…` → `target`).
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.ancestors().nth(3).map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
    });
    target.join("test-artifacts").join("dashboard")
}

/// A child process stopped on drop (SIGTERM, so the browser script closes Chromium, then
/// SIGKILL), so a failing assertion does not leak it.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_some() {
            return;
        }
        signal(self.0.id() as i32, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of one series (`name{labels}`, as the exposition spells it) in a metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `GET {node}/metrics`: the Prometheus text, after checking its media type.
fn metrics(rt: &tokio::runtime::Runtime, node: &str) -> String {
    rt.block_on(async {
        let resp = reqwest::get(format!("{node}/metrics")).await.expect("GET /metrics");
        assert!(resp.status().is_success(), "GET {node}/metrics: {}", resp.status());
        let ct = resp.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{node}/metrics content type {ct}");
        resp.text().await.unwrap()
    })
}

#[test]
fn dashboard_in_headless_chromium_follows_a_job_to_settlement() {
    if let Some(why) = missing_browser() {
        let required = std::env::var("AGORA_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(!required, "AGORA_REQUIRE_BROWSER=1 but the browser test cannot run: {why}");
        println!("skipped: the dashboard browser test cannot run here: {why}");
        return;
    }
    let started = Instant::now();
    let out = artifacts_dir();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();

    let net = Net::start(4, 2, &[]);
    let v = net.validators[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let work = tempfile::tempdir().unwrap();
    let w = work.path().join("wallet");
    let wallet = w.to_str().unwrap();
    net.funded_wallet(&w, 1_000_000_000);
    let providers: Vec<String> = (0..2).map(|i| net.provider_account(i)).collect();
    std::fs::write(work.path().join("montecarlo.wasm"), MONTECARLO).unwrap();
    let lines: String = (0..20).map(|i| format!("samples={}\n", 2_000 + i * 10)).collect();
    std::fs::write(work.path().join("pi.txt"), lines).unwrap();
    let job_file = work.path().join("pi.toml");
    std::fs::write(
        &job_file,
        "kind = \"wasm\"\nmodel = \"montecarlo.wasm\"\ninputs = [\"pi.txt\"]\ninput_format = \"lines\"\n\n\
         [market]\nmax_price = 1000\nshards = 2\ndeadline = \"20m\"\n",
    )
    .unwrap();

    // /metrics before any job: the chain's families, no settled job yet.
    let before = metrics(&rt, &v);
    for family in [
        "agora_node_info",
        "agora_chain_height",
        "agora_chain_committee_size",
        "agora_supply",
        "agora_validators",
        "agora_providers",
        "agora_market_open_orders",
        "agora_jobs",
        "agora_leases",
        "agora_audits",
        "agora_finality_latency_seconds",
        "agora_chain_transactions_total",
        "agora_store_bytes",
    ] {
        assert!(before.contains(&format!("# TYPE {family} ")), "/metrics lacks {family}:\n{before}");
    }
    assert!(sample(&before, "agora_chain_height").unwrap() >= 1.0, "{before}");
    assert_eq!(sample(&before, "agora_chain_committee_size"), Some(4.0), "{before}");
    assert_eq!(sample(&before, "agora_validators"), Some(4.0), "{before}");
    assert_eq!(sample(&before, "agora_providers{state=\"active\"}"), Some(2.0), "{before}");
    assert_eq!(sample(&before, "agora_jobs{state=\"settled\"}"), Some(0.0), "{before}");
    assert!(sample(&before, "agora_finality_latency_seconds_count").unwrap() >= 1.0, "{before}");

    // The browser opens the dashboard and waits on the jobs page for the job's id.
    let script = browser_dir().join("dashboard.mjs");
    println!("dashboard: screenshots go to {}", out.display());
    let mut browser = Stopped(
        Command::new("node")
            .arg(&script)
            .args(["--url", &v, "--validators", "4", "--providers", &providers.join(",")])
            .args(["--job", "-", "--also", &net.providers.join(",")])
            .args(["--timeout", &SETTLE_TIMEOUT_S.to_string()])
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run node"),
    );
    let (ready_tx, ready) = mpsc::channel();
    let stdout = browser.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if line == "dashboard: ready for a job" {
                let _ = ready_tx.send(());
            }
        }
    });
    let mut stderr = browser.0.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let fail = |browser: &mut Stopped, errors: std::thread::JoinHandle<String>, what: &str| -> ! {
        let status = browser.0.wait().ok();
        panic!(
            "{what} (script exit: {status:?}); screenshots in {}\n{}\nnode logs:{}",
            out.display(),
            errors.join().unwrap_or_default(),
            net.logs_tail()
        )
    };
    if ready.recv_timeout(Duration::from_secs(120)).is_err() {
        signal(browser.0.id() as i32, nix::sys::signal::Signal::SIGTERM);
        fail(&mut browser, errors, "the dashboard script did not get to the jobs page");
    }

    // Submit the job now, while the jobs page is open; `job wait` shares the input keys with
    // the providers and follows the job to settlement alongside the browser.
    let id = agora(&v, &["--data-dir", wallet, "job", "submit", job_file.to_str().unwrap()])["job"]
        .as_u64()
        .unwrap();
    println!("dashboard: submitted job {id}");
    let mut stdin = browser.0.stdin.take().unwrap();
    writeln!(stdin, "{id}").unwrap();
    drop(stdin);
    let wait_err = work.path().join("job-wait.err");
    let mut waiter = Stopped(
        Command::new(BIN)
            .args(["--node", &v, "--json", "--data-dir", wallet, "job", "wait", &id.to_string()])
            .args(["--timeout", &(SETTLE_TIMEOUT_S + 60).to_string()])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&wait_err).unwrap())
            .spawn()
            .unwrap(),
    );

    let deadline = Instant::now() + Duration::from_secs(SETTLE_TIMEOUT_S + 120);
    let status = loop {
        if let Some(status) = browser.0.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            signal(browser.0.id() as i32, nix::sys::signal::Signal::SIGTERM);
            fail(&mut browser, errors, "the dashboard script did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        fail(&mut browser, errors, "the dashboard test in Chromium failed");
    }
    let mut waited = String::new();
    waiter.0.stdout.take().unwrap().read_to_string(&mut waited).unwrap();
    let ok = waiter.0.wait().unwrap().success();
    assert!(ok, "job wait failed: {}", std::fs::read_to_string(&wait_err).unwrap_or_default());
    let r: serde_json::Value = serde_json::from_str(&waited).unwrap();
    for s in r["shards"].as_array().unwrap() {
        assert!(s["status"].as_str().unwrap().starts_with("Done"), "{r}");
    }

    // /metrics after: the job counts as settled, its leases as settled, and a provider timed
    // its runtime.
    let after = metrics(&rt, &v);
    assert_eq!(sample(&after, "agora_jobs{state=\"settled\"}"), Some(1.0), "{after}");
    assert!(sample(&after, "agora_leases{status=\"settled\"}").unwrap() >= 2.0, "{after}");
    assert!(sample(&after, "agora_market_matches_total{class=\"cpu.x86_64\"}").unwrap() >= 2.0, "{after}");
    let computed: f64 = net
        .providers
        .iter()
        .map(|p| {
            sample(&metrics(&rt, p), "agora_runtime_seconds_count{phase=\"compute\",kind=\"wasm\"}")
                .unwrap_or(0.0)
        })
        .sum();
    assert!(computed >= 2.0, "the providers timed {computed} wasm computations");

    let mut shots: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".png"))
        .collect();
    shots.sort();
    for expected in ["01-overview.png", "02-jobs.png", "04-job-settled.png", "06-explorer-lease.png"] {
        assert!(shots.iter().any(|s| s == expected), "no {expected} among {shots:?}");
    }
    println!(
        "dashboard: ok in {:.0} s; {} screenshots in {}: {}",
        started.elapsed().as_secs_f64(),
        shots.len(),
        out.display(),
        shots.join(", ")
    );
    drop(net);
}
