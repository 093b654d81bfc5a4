//! Shared helpers of the end-to-end tests: run the `agora` binary, start a devnet of real
//! processes on 127.0.0.1, wait for conditions, and clean up every process on drop.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `agora` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_agora");

/// Runs `agora --node NODE --json ARGS` and returns its JSON output; panics with stderr on failure.
pub fn agora(node: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN).arg("--node").arg(node).arg("--json").args(args).output().expect("run agora");
    assert!(out.status.success(), "agora {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs `agora --node NODE ARGS`, expecting failure; returns stderr.
pub fn agora_fails(node: &str, args: &[&str]) -> String {
    let out = Command::new(BIN).arg("--node").arg(node).args(args).output().expect("run agora");
    assert!(
        !out.status.success(),
        "agora {args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The finalized height a node reports, if it answers.
pub fn try_height(node: &str) -> Option<u64> {
    try_status(node, "height")
}

/// A numeric field of `agora chain status` (`height`, `epoch`), if the node answers.
pub fn try_status(node: &str, field: &str) -> Option<u64> {
    let out = Command::new(BIN).args(["--node", node, "--json", "chain", "status"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()?[field].as_u64()
}

/// Polls `f` every 200 ms until it holds; panics after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pid of the node process running `config`.
pub fn pid_of(config: &Path) -> Option<i32> {
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

/// Sends `signal` to `pid`.
pub fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
}

/// A devnet started with `agora devnet`, and any extra node processes a test starts. Dropping
/// it stops them all (SIGTERM, then SIGKILL for anything left), so a failing test reports its
/// failure instead of leaking processes.
pub struct Net {
    /// The devnet's directory.
    pub dir: PathBuf,
    /// Validator API URLs.
    pub validators: Vec<String>,
    /// Provider API URLs.
    pub providers: Vec<String>,
    children: Vec<Child>,
    _tmp: tempfile::TempDir,
}

impl Net {
    /// Starts `agora devnet` with `validators`, `providers` and `extra` arguments and waits until
    /// it reports ready (blocks finalized, providers registered with asks on the book).
    pub fn start(validators: usize, providers: usize, extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net");
        let base = agora_node::devnet::free_port_base(validators, providers).unwrap();
        let mut child = Command::new(BIN)
            .args(["--json", "devnet", "--port-base", &base.to_string()])
            .args(["--validators", &validators.to_string(), "--providers", &providers.to_string()])
            .args(extra)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut net = Net {
            dir: dir.clone(),
            validators: (0..validators).map(|i| format!("http://127.0.0.1:{}", base + i as u16)).collect(),
            providers: (0..providers).map(|i| format!("http://127.0.0.1:{}", base + 50 + i as u16)).collect(),
            children: vec![child],
            _tmp: tmp,
        };
        // The devnet prints one JSON line once everything is ready (or exits on failure).
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(line.contains("\"nodes\""), "the devnet did not start: {line:?}; logs: {}", net.logs_tail());
        net.children[0].stdout = None;
        net
    }

    /// Path of validator `i`'s config.
    pub fn validator_config(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}.toml"))
    }

    /// Path of provider `i`'s config.
    pub fn provider_config(&self, i: usize) -> PathBuf {
        self.dir.join(format!("provider{i}.toml"))
    }

    /// The owners of every pin in node `name`'s content store (`node0`, `provider1`, …): one
    /// entry per pin, read from the store's marker files.
    pub fn pin_owners(&self, name: &str) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.dir.join(name).join("blobs/pins")) else { return vec![] };
        dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .flat_map(|text| {
                text.lines().filter_map(|l| l.split(' ').next().map(str::to_owned)).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Provider `i`'s account (from its key file).
    pub fn provider_account(&self, i: usize) -> String {
        let seed = std::fs::read_to_string(self.dir.join(format!("provider{i}/node.key"))).unwrap();
        agora_core::SecretKey::from_hex(seed.trim()).unwrap().public().to_string()
    }

    /// The faucet's key file.
    pub fn faucet(&self) -> PathBuf {
        self.dir.join("faucet.key")
    }

    /// Starts `agora node run --config CONFIG` as an extra process, stopped on drop.
    pub fn run_node(&mut self, config: &Path) {
        let child = Command::new(BIN)
            .args(["node", "run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// A new funded wallet in `dir`; returns its account.
    pub fn funded_wallet(&self, dir: &Path, amount: u128) -> String {
        let v = &self.validators[0];
        let acct =
            agora(v, &["--data-dir", dir.to_str().unwrap(), "init"])["account"].as_str().unwrap().to_string();
        let sent = agora(
            v,
            &["--key", self.faucet().to_str().unwrap(), "wallet", "transfer", &acct, &amount.to_string()],
        );
        assert_eq!(sent["status"]["status"], "finalized", "{sent}");
        acct
    }

    /// The last lines of every node log, for failure messages.
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return out };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
                    .collect();
                let tail = lines[lines.len().saturating_sub(8)..].join("\n");
                out += &format!("\n--- {}\n{tail}", p.display());
            }
        }
        out
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &self.children {
            signal(c.id() as i32, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for c in &mut self.children {
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Any node of this devnet still running (e.g. restarted by hand).
        kill_nodes_under(&self.dir);
    }
}

/// SIGKILLs every `agora node run` process whose command line names a path under `dir`.
pub fn kill_nodes_under(dir: &Path) {
    let dir = dir.to_string_lossy().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("node run") && cmd.contains(&dir) {
                signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}
