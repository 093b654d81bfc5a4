//! The OpenAI-compatible gateway, driven by the official OpenAI Python SDK against a devnet of
//! real node processes: models listed, embeddings with the model's dimension and sensible
//! similarities, chat completions streamed and unstreamed, errors in OpenAI's shape (bad key
//! 401, bad request 400, unknown model 404); in job mode every answer backed by a settled,
//! paid job, in session mode (the devnet default) the same answers streamed as they are
//! generated, with usage counted as the model's tokenizer does and a receipt that verifies
//! offline.
//!
//! Needs the real models (`AGORA_MODELS_DIR`, see the README) and `pip install openai`; without
//! them it says what is missing and passes, unless `AGORA_REQUIRE_MODELS=1` (as in CI).

mod common;

use common::{Net, agora};
use std::process::Command;

fn missing_prerequisite() -> Option<String> {
    if std::env::var_os("AGORA_MODELS_DIR").is_none() {
        return Some("set AGORA_MODELS_DIR to a provisioned models directory (`agora models pull …`)".into());
    }
    let sdk = Command::new("python3").args(["-c", "import openai"]).output();
    if !sdk.is_ok_and(|o| o.status.success()) {
        return Some("the OpenAI Python SDK is missing: `python3 -m pip install openai`".into());
    }
    None
}

#[test]
fn the_openai_sdk_gets_verified_embeddings_and_chat_completions() {
    if let Some(why) = missing_prerequisite() {
        assert!(std::env::var("AGORA_REQUIRE_MODELS").as_deref() != Ok("1"), "cannot run: {why}");
        println!("skipped: {why}");
        return;
    }
    let net = Net::start(3, 2, &[]);
    let key = std::fs::read_to_string(net.dir.join("gateway-api.key")).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai/check.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("{}/v1", net.validators[0]))
        .arg(key.trim())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the SDK check failed:\n{}\n{stdout}\nnode logs:{}",
        String::from_utf8_lossy(&out.stderr),
        net.logs_tail()
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    println!("{seen:#}");

    // Each answer names the job behind it; that job settled and paid its provider.
    let v = &net.validators[0];
    for which in ["embed_job", "chat_job"] {
        let job = seen[which]["job"].as_u64().unwrap_or_else(|| panic!("{which} has no job: {seen}"));
        let status = agora(v, &["job", "status", &job.to_string()]);
        assert_eq!(status["finished"], true, "{status}");
        let paid: u128 = seen[which]["paid"].as_str().unwrap().parse().unwrap();
        assert!(paid > 0, "{which} paid nothing: {seen}");
        assert!(seen[which]["detection_probability"].as_f64().unwrap() > 0.0, "{seen}");
    }
    // Sessions: usage counts the templated prompt as the model's own tokenizer does, and the
    // receipt verifies offline.
    let streamed = &seen["session_stream"];
    let models = std::path::PathBuf::from(std::env::var_os("AGORA_MODELS_DIR").unwrap());
    let llm =
        agora_ml::generate::Llm::load(&models.join("smollm2-135m-instruct/model.gguf"), &agora_ml::device())
            .unwrap();
    let prompt = streamed["prompt"].as_str().unwrap();
    assert_eq!(
        streamed["prompt_tokens"].as_u64(),
        Some(llm.prompt_tokens(prompt).unwrap().len() as u64),
        "{seen}"
    );
    let receipt = net.dir.join("receipt.json");
    std::fs::write(&receipt, streamed["agora"].to_string()).unwrap();
    let offline = agora(v, &["session", "verify", receipt.to_str().unwrap(), "--chain-id", "agora-devnet"]);
    assert_eq!(offline["valid"], true, "{offline}");
    assert_eq!(offline["receipt"]["receipt"]["usage"]["completion_tokens"], streamed["completion_tokens"]);

    // What the key spent is recorded against its budget.
    let config = net.validator_config(0);
    let keys = agora(v, &["gateway", "key", "ls", "--config", config.to_str().unwrap()]);
    let spent: u128 = keys[0]["spent"].as_str().unwrap().parse().unwrap();
    assert!(spent > 0, "{keys}");

    // A client that gives up still pays: its job runs on in a task of its own, counted at its
    // maximum cost once submitted and reconciled to its actual cost once it settles.
    let spend_file = net.dir.join("node0").join("gateway").join("devnet.spent");
    let spend = || -> (u128, Vec<String>) {
        let s: serde_json::Value = std::fs::read_to_string(&spend_file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let settled = s["settled"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
        (settled, s["open"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default())
    };
    let (settled_before, open_before) = spend();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let abandoned = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{v}/v1/chat/completions"))
            .bearer_auth(key.trim())
            .json(&serde_json::json!({
                "model": "smollm2-135m-instruct",
                "messages": [{"role": "user", "content": "Say hi."}],
                "max_tokens": 4,
                "agora": {"mode": "job"}
            }))
            // Far less than a job takes: its audit window alone is 20 blocks.
            .timeout(std::time::Duration::from_millis(300))
            .send()
            .await
    });
    if let Ok(resp) = abandoned {
        let status = resp.status();
        let body = rt.block_on(resp.text()).unwrap_or_default();
        panic!("the verified answer came within 300 ms, before the client gave up: {status} {body}");
    }
    // (The sessions stay open, counted at their escrow, until they end.)
    common::wait_for("the abandoned job to be reconciled", std::time::Duration::from_secs(180), || {
        let (settled, open) = spend();
        settled > settled_before && open.iter().all(|id| open_before.contains(id))
    });
}
