//! Serving sessions on a devnet of real node processes, through the gateway's `/v1`: answers
//! come from a warm session with a receipt, a stream whose provider is killed mid-way
//! completes on the session's other provider, and a provider that leaves its receipts out of
//! its windows is proven to have done so from the gateway's receipts and slashed; every
//! completion the gateway kept rechecks on the session's model; and a provider that alters its
//! answers is convicted by the window audit that replays them, its windows refunded.
//!
//! Needs the real models (`AGORA_MODELS_DIR`, see the README); without them it says what is
//! missing and passes, unless `AGORA_REQUIRE_MODELS=1` (as in CI).

mod common;

use common::{Net, agora, pid_of, signal, wait_for};
use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::MutexGuard;
use std::time::Duration;

const CHAT: &str = "smollm2-135m-instruct";

fn request(prompt: &str, max_tokens: u32, stream: bool) -> Value {
    json!({"model": CHAT, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "stream": stream})
}

/// A chat completion; a 503 ("retry": a busy machine, while the devnet's audits replay
/// answers on the same two cores) is retried, as the gateway tells clients to.
async fn complete(v: &str, key: &str, body: &Value) -> Value {
    for attempt in 0.. {
        let resp = reqwest::Client::new()
            .post(format!("{v}/v1/chat/completions"))
            .bearer_auth(key)
            .json(body)
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempt < 2 {
            continue;
        }
        assert!(status.is_success(), "{status}: {answer}");
        return answer;
    }
    unreachable!()
}

/// Streams a completion; calls `first` when the first piece of text arrives. Returns the text
/// and the last chunk (which carries the usage and the receipt).
async fn stream(v: &str, key: &str, body: &Value, first: impl FnOnce()) -> (String, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{v}/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut bytes = resp.bytes_stream();
    let (mut buf, mut text, mut last, mut first) = (String::new(), String::new(), Value::Null, Some(first));
    while let Some(chunk) = bytes.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(nl) = buf.find('\n') {
            let line: String = buf.drain(..=nl).collect();
            let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                return (text, last);
            }
            let v: Value = serde_json::from_str(data).unwrap();
            assert!(v.get("error").is_none(), "the stream failed: {v}");
            if let Some(piece) = v["choices"][0]["delta"]["content"].as_str().filter(|p| !p.is_empty()) {
                text.push_str(piece);
                if let Some(f) = first.take() {
                    f();
                }
            }
            last = v;
        }
    }
    panic!("the stream ended without [DONE]; text so far: {text:?}")
}

fn session_of(v: &str, id: u64) -> Value {
    agora(v, &["session", "show", &id.to_string()])
}

/// Held by each test for its whole run: two devnets of real models at once on a 2-core
/// machine starve each other's answers past the gateway's timeouts.
static ONE_DEVNET_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether the real models are provisioned (if not, the test says so and passes, unless CI
/// requires them).
fn models_provisioned() -> bool {
    if std::env::var_os("AGORA_MODELS_DIR").is_some() {
        return true;
    }
    let why = "set AGORA_MODELS_DIR to a provisioned models directory (`agora models pull …`)";
    assert!(std::env::var("AGORA_REQUIRE_MODELS").as_deref() != Ok("1"), "cannot run: {why}");
    println!("skipped: {why}");
    false
}

/// The devnet turn, a 3-validator, 2-provider devnet whose provider1 cheats as `cheat` asks,
/// the gateway's API key and node (validator 0), and the honest and cheating providers'
/// accounts; `None` when the real models are not provisioned. Bind the turn first, so that it
/// is released last, after the devnet has stopped.
fn serving_devnet(cheat: &[&str]) -> Option<(MutexGuard<'static, ()>, Net, String, String, String, String)> {
    if !models_provisioned() {
        return None;
    }
    // A test that failed while holding the turn does not block the other.
    let turn = ONE_DEVNET_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let net = Net::start(3, 2, cheat);
    let key = std::fs::read_to_string(net.dir.join("gateway-api.key")).unwrap().trim().to_string();
    let v = net.validators[0].clone();
    let (honest, cheater) = (net.provider_account(0), net.provider_account(1));
    Some((turn, net, key, v, honest, cheater))
}

/// The session's member entry for `provider`.
fn member(session: &Value, provider: &str) -> Value {
    let members = session["session"]["members"].as_array().unwrap();
    members.iter().find(|m| m["provider"] == provider).cloned().unwrap_or(Value::Null)
}

#[test]
fn sessions_stream_fail_over_and_convict_a_provider_that_omits_receipts() {
    // provider1 cheats: it serves, but never commits its receipts.
    let cheat = ["--cheaters", "1", "--cheat-serving", "--session-duration", "45s"];
    let Some((_turn, net, key, v, honest, cheater)) = serving_devnet(&cheat) else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Answers come from the session's providers in turn, each with a receipt of its own.
    let prompt = "Write three sentences about the sea.";
    let mut served_by = vec![];
    let mut reference = String::new();
    let mut session = 0;
    // Until both have served, and the cheater served last (so the honest one is next).
    while served_by.len() < 3 || served_by.last() != Some(&cheater) {
        assert!(served_by.len() < 8, "turns do not alternate: {served_by:?}");
        let a = rt.block_on(complete(&v, &key, &request(prompt, 40, false)));
        assert_eq!(a["agora"]["mode"], "session", "{a}");
        session = a["agora"]["session"].as_u64().unwrap();
        served_by.push(a["agora"]["provider"].as_str().unwrap().to_string());
        let text = a["choices"][0]["message"]["content"].as_str().unwrap().to_string();
        assert!(reference.is_empty() || text == reference, "greedy decoding is the same on both providers");
        reference = text;
        assert!(a["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{a}");
    }
    assert!(served_by.contains(&honest) && served_by.contains(&cheater), "{served_by:?}");

    // The honest provider commits its receipts; the cheater commits none.
    let honest_served = served_by.iter().filter(|p| **p == honest).count() as u64;
    wait_for("the honest provider's windows", Duration::from_secs(60), || {
        member(&session_of(&v, session), &honest)["next_seq"] == honest_served
    });

    // Its first windows are audited (it has no trust record yet): the auditors fetch the
    // sampled records, replay each answer on the session's model, and pass them.
    wait_for("a clean audit of the honest provider's window", Duration::from_secs(120), || {
        let p = agora(&v, &["provider", "status", &honest]);
        p["provider"]["trust"]["audits_passed"].as_u64().unwrap_or(0) >= 1
    });
    let s = session_of(&v, session);
    let audited =
        s["windows"].as_array().unwrap().iter().filter(|w| w["provider"] == honest && !w["audit"].is_null());
    assert!(audited.count() >= 1, "{s}");

    // The next request goes to the honest provider, which is killed once the stream is under
    // way: the answer completes on the other provider, without repeating or losing text.
    assert_eq!(served_by.last(), Some(&cheater), "turns alternate: the next is the honest provider's");
    let pid = pid_of(&net.provider_config(0)).expect("provider0 runs");
    let (text, last) = rt.block_on(stream(&v, &key, &request(prompt, 40, true), || {
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }));
    assert_eq!(text, reference, "the stream completed exactly once");
    assert_eq!(last["agora"]["provider"], cheater.as_str(), "{last}");
    assert!(last["choices"][0]["finish_reason"].is_string(), "{last}");
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{last}");

    // The receipt checks out offline.
    let receipt = net.dir.join("receipt.json");
    std::fs::write(&receipt, last.to_string()).unwrap();
    let verdict = agora(&v, &["session", "verify", receipt.to_str().unwrap(), "--chain-id", "agora-devnet"]);
    assert_eq!(verdict["valid"], true, "{verdict}");

    // The killed provider fails in each of its turns until the gateway dismisses it from the
    // session (three failures in a row); the answers keep coming from the other.
    let left = || !member(&session_of(&v, session), &honest)["left_ms"].is_null();
    for _ in 0..8 {
        if left() {
            break;
        }
        let a = rt.block_on(complete(&v, &key, &request(prompt, 8, false)));
        assert_eq!(a["agora"]["provider"], cheater.as_str(), "{a}");
    }
    wait_for("the gateway to dismiss the killed provider", Duration::from_secs(30), left);

    // Every completion the gateway (on node0) was served replays exactly on the session's
    // model: the cheater leaves receipts out, but computes honestly.
    let gateway_dir = net.dir.join("node0");
    let args = ["--data-dir", gateway_dir.to_str().unwrap(), "session", "recheck", &session.to_string()];
    let rechecked = agora(&v, &args);
    let all = rechecked.as_array().unwrap();
    assert!(all.len() > served_by.len(), "every completion is rechecked: {rechecked}");
    assert!(all.iter().all(|r| r["passed"] == true), "{rechecked}");

    // Once no window can hold the cheater's receipts, the gateway proves the omission.
    wait_for("the omission to be proven", Duration::from_secs(180), || {
        member(&session_of(&v, session), &cheater)["removed"] == true
    });
    let p = agora(&v, &["provider", "status", &cheater]);
    assert!(p["provider"]["ejected_until"].as_u64().unwrap() > 0, "{p}");
    assert!(p["provider"]["trust"]["frauds"].as_u64().unwrap() >= 1, "{p}");
    let s = session_of(&v, session);
    assert_eq!(member(&s, &honest)["removed"], false, "the honest provider committed everything: {s}");
}

#[test]
fn a_provider_that_alters_answers_is_convicted_by_a_window_audit_and_its_windows_refunded() {
    // provider1 alters every chat answer it serves (a draw at a high temperature), and
    // receipts and commits it as if honest: only a replay on the model can tell.
    let cheat = ["--cheaters", "1", "--cheat-answers", "--cheat-bps", "10000"];
    let Some((_turn, net, key, v, honest, cheater)) = serving_devnet(&cheat) else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Both providers serve, in turn; greedy answers differ only where the cheater altered them.
    let prompt = "Write three sentences about the sea.";
    let (mut answers, mut session) = (vec![], 0);
    while !(answers.iter().any(|(p, _)| *p == honest) && answers.iter().any(|(p, _)| *p == cheater)) {
        assert!(answers.len() < 6, "turns do not alternate: {answers:?}");
        let a = rt.block_on(complete(&v, &key, &request(prompt, 32, false)));
        assert_eq!(a["agora"]["mode"], "session", "{a}");
        session = a["agora"]["session"].as_u64().unwrap();
        let text = a["choices"][0]["message"]["content"].as_str().unwrap().to_string();
        answers.push((a["agora"]["provider"].as_str().unwrap().to_string(), text));
    }
    let text_of = |who: &str| answers.iter().find(|(p, _)| p == who).map(|(_, t)| t.clone()).unwrap();
    assert_ne!(text_of(&honest), text_of(&cheater), "the cheater's answer is not the greedy one");

    // The gateway's own recheck already tells them apart, and exits non-zero.
    let gateway_dir = net.dir.join("node0");
    let args = ["--data-dir", gateway_dir.to_str().unwrap(), "session", "recheck", &session.to_string()];
    let out =
        std::process::Command::new(common::BIN).args(["--node", &v, "--json"]).args(args).output().unwrap();
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rechecked: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rechecked.as_array().unwrap().len(), answers.len(), "{rechecked}");
    for r in rechecked.as_array().unwrap() {
        assert_eq!(r["passed"], r["provider"] == honest.as_str(), "{r}");
    }

    // The cheater's window is audited (it has no trust record): the auditors replay its
    // answer, report fraud, and the chain convicts it, refunds its windows and slashes it.
    wait_for("the window audit to convict the cheater", Duration::from_secs(240), || {
        member(&session_of(&v, session), &cheater)["removed"] == true
    });
    let s = session_of(&v, session);
    let windows = s["windows"].as_array().unwrap();
    let of = |who: &str| windows.iter().filter(|w| w["provider"] == who).collect::<Vec<_>>();
    let (cheats, honest_windows) = (of(&cheater), of(&honest));
    assert!(!cheats.is_empty(), "{s}");
    assert!(cheats.iter().all(|w| w["status"] == "refunded"), "the cheater is paid nothing: {s}");
    assert!(cheats.iter().any(|w| !w["audit"].is_null()), "an audit convicted it, not a challenge: {s}");
    assert!(honest_windows.iter().all(|w| w["status"] != "refunded"), "{s}");
    assert_eq!(member(&s, &cheater)["cap"], member(&s, &cheater)["charged"], "{s}");
    let p = agora(&v, &["provider", "status", &cheater]);
    assert!(p["provider"]["ejected_until"].as_u64().unwrap() > 0, "{p}");
    assert!(p["provider"]["trust"]["frauds"].as_u64().unwrap() >= 1, "{p}");
    assert_eq!(member(&s, &honest)["removed"], false, "{s}");

    // The honest provider's records of an audited window go to its assigned auditors only.
    let audited =
        honest_windows.iter().find_map(|w| w["audit"].as_u64()).expect("untrusted windows are audited");
    rt.block_on(records_refused_to_strangers(&net.providers[0], audited));
}

/// A window's sampled records (the requests and answers of a session) are served to the
/// auditors the chain assigned, never to someone who asks: a request without the auditor's
/// headers, one whose signature is not the named auditor's, and one properly signed by an
/// account that is not assigned are all refused, and nothing of the records comes back.
async fn records_refused_to_strangers(provider: &str, audit: u64) {
    use agora_core::SecretKey;
    use agora_node::protocol::{AUDITOR_HEADER, SIGNATURE_HEADER, audit_request_message};
    let url = format!("{provider}/agent/audit/{audit}/records");
    let http = reqwest::Client::new();
    let (stranger, other) = (SecretKey::from_seed([77; 32]), SecretKey::from_seed([78; 32]));
    let message = audit_request_message(audit);
    let asks = [
        (None, None, 400),
        (Some(stranger.public()), Some(other.sign(&message)), 401),
        (Some(stranger.public()), Some(stranger.sign(&message)), 403),
    ];
    for (who, signature, status) in asks {
        let mut req = http.get(&url);
        if let (Some(who), Some(sig)) = (who, signature) {
            req = req.header(AUDITOR_HEADER, who.to_string()).header(SIGNATURE_HEADER, sig.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{}", resp.text().await.unwrap_or_default());
    }
}
