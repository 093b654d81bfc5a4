//! `agora bench serve`: serving sessions through the gateway's `/v1`, on a local devnet of
//! real node processes (4 validators and 2 providers by default), with the OpenAI wire format.
//!
//! * **Time to first token**: streamed chat requests one after another on a warm session,
//!   from sending the request to the first piece of text; p50 and p95.
//! * **Streaming throughput**: tokens per second between a completion's first and last piece,
//!   against the same model generating the same completion in this process, measured in the
//!   same run (the ratio the issue asks for).
//! * **Embeddings**: single-text requests one after another; p50 and p95.
//! * **Concurrency**: many streamed chat clients at once; each must get its tokens streamed and
//!   its completion; reported are the slowest first token and the slowest completion.

use super::percentile;
use crate::devnet::{Devnet, gateway_api_key_path};
use agora_runtime::provision::catalog::{MINILM, SMOLLM2};
use clap::Args;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// `agora bench serve` options.
#[derive(Debug, Args)]
pub struct ServeBenchArgs {
    /// Validators in the devnet.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Providers in the devnet.
    #[arg(long, default_value_t = 2)]
    pub providers: usize,
    /// Streamed chat requests timed one after another.
    #[arg(long, default_value_t = 20)]
    pub requests: usize,
    /// Tokens each timed completion generates.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// Single-text embedding requests timed.
    #[arg(long, default_value_t = 40)]
    pub embeds: usize,
    /// Concurrent chat clients in the concurrency run.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Longest an answer waits for its window. Each committed window of an untrusted provider
    /// is audited, and on one machine the validators' replays share the provider's cores: a
    /// window age longer than the run (e.g. `30m`) measures serving without that load.
    #[arg(long, default_value = "2s", value_parser = crate::cli::devnet::parse_window_age)]
    pub window_max_age: u64,
    /// Chat runs each provider decodes together (1 runs them one at a time, as before
    /// continuous batching: compare the concurrency run's first tokens).
    #[arg(long, default_value_t = crate::config::DEFAULT_SERVE_BATCH,
          value_parser = crate::cli::devnet::serve_batch())]
    pub batch: usize,
    /// Least time, ms, between an empty block and its parent (0 builds empty blocks as fast as
    /// rounds go, as before pacing: the validators then take most of the cores).
    #[arg(long, default_value_t = crate::config::default_empty_block_interval_ms(),
          value_parser = crate::cli::devnet::empty_block_interval())]
    pub empty_block_interval_ms: u64,
}

/// What `agora bench serve` measured.
#[derive(Debug, Serialize)]
pub struct ServeBenchReport {
    /// Validators.
    pub validators: usize,
    /// Providers.
    pub providers: usize,
    /// The validators' empty-block interval, ms.
    pub empty_block_interval_ms: u64,
    /// Time to first token, p50, ms.
    pub ttft_p50_ms: f64,
    /// Time to first token, p95, ms.
    pub ttft_p95_ms: f64,
    /// The same model in this process: prefill to first token, median, ms (what serving adds
    /// the rest of the time to first token to).
    pub local_ttft_ms: f64,
    /// Streamed tokens per second through `/v1`, median.
    pub stream_tokens_per_s: f64,
    /// The same model generating in this process, tokens per second.
    pub local_tokens_per_s: f64,
    /// Streamed over local.
    pub stream_over_local: f64,
    /// One-text embeddings request, p50, ms.
    pub embed_p50_ms: f64,
    /// One-text embeddings request, p95, ms.
    pub embed_p95_ms: f64,
    /// Concurrent clients.
    pub clients: usize,
    /// Chat runs each provider decoded together.
    pub batch: usize,
    /// Of them, those that got their tokens streamed and their completion.
    pub clients_served: usize,
    /// Their median first token, ms.
    pub concurrent_ttft_p50_ms: f64,
    /// The slowest first token among them, ms.
    pub concurrent_ttft_max_ms: f64,
    /// The slowest completion among them, ms.
    pub concurrent_total_max_ms: f64,
}

const PROMPT: &str = "Write a short story about a lighthouse keeper and a storm.";

/// One streamed completion's timing.
struct Streamed {
    ttft: Duration,
    /// First to last piece.
    span: Duration,
    tokens: u64,
    pieces: usize,
}

/// Streams one chat completion from `base` and times it.
async fn stream_chat(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    max_tokens: u32,
) -> anyhow::Result<Streamed> {
    let start = Instant::now();
    let resp = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": SMOLLM2, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens, "stream": true}))
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "the gateway answered {}", resp.status());
    let mut bytes = resp.bytes_stream();
    let (mut buf, mut first, mut last, mut pieces, mut tokens) = (String::new(), None, None, 0, 0);
    while let Some(chunk) = bytes.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(nl) = buf.find('\n') {
            let line: String = buf.drain(..=nl).collect();
            let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                let (Some(first), Some(last)) = (first, last) else { anyhow::bail!("no text streamed") };
                return Ok(Streamed { ttft: first, span: last - first, tokens, pieces });
            }
            let v: Value = serde_json::from_str(data)?;
            anyhow::ensure!(v.get("error").is_none(), "the stream failed: {v}");
            if v["choices"][0]["delta"]["content"].as_str().is_some_and(|p| !p.is_empty()) {
                let now = start.elapsed();
                first.get_or_insert(now);
                last = Some(now);
                pieces += 1;
            }
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                tokens = n;
            }
        }
    }
    anyhow::bail!("the stream ended without [DONE]")
}

/// Tokens per second of `s` between its first and last piece (the first token's time is the
/// prefill's, counted in the time to first token).
fn rate(s: &Streamed) -> f64 {
    s.tokens.saturating_sub(1) as f64 / s.span.as_secs_f64().max(1e-9)
}

/// The same model generating the same completion in this process: its time to first token
/// (ms) and tokens per second between its first and last token, medians of three runs.
fn local_rate(data_dir: &std::path::Path, max_tokens: u32) -> anyhow::Result<(f64, f64)> {
    let p = crate::requester::prepare::provisioner(data_dir)
        .ensure(SMOLLM2)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let llm = agora_ml::generate::Llm::load(&p.dir.join("model.gguf"), &agora_ml::device())?;
    let req = agora_ml::generate::model::Request {
        prompt: PROMPT,
        max_new_tokens: max_tokens as usize,
        stop: &[],
        sampler: agora_ml::generate::sampler::Sampler::Greedy,
        seed: 0,
        follow: None,
    };
    let (mut rates, mut ttfts) = (vec![], vec![]);
    for _ in 0..3 {
        let start = Instant::now();
        let (mut first, mut last, mut n) = (None, None, 0u64);
        let mut observe = |_: agora_ml::generate::model::Step<'_>| {
            let now = Instant::now();
            first.get_or_insert(now);
            last = Some(now);
            n += 1;
            std::ops::ControlFlow::Continue(())
        };
        llm.generate_observed(&req, Some(&mut observe))?;
        let span = last.zip(first).map_or(Duration::ZERO, |(l, f)| l - f);
        rates.push(n.saturating_sub(1) as f64 / span.as_secs_f64().max(1e-9));
        ttfts.push(first.map_or(0.0, |f| (f - start).as_secs_f64() * 1e3));
    }
    rates.sort_by(f64::total_cmp);
    ttfts.sort_by(f64::total_cmp);
    Ok((ttfts[1], rates[1]))
}

/// Runs `agora bench serve`.
pub async fn serve(g: &super::Global, a: ServeBenchArgs) -> anyhow::Result<()> {
    let window = crate::provider::sessions::WindowPolicy {
        max_age_ms: a.window_max_age,
        ..crate::devnet::DEVNET_WINDOW
    };
    let d = super::BenchDevnet {
        validators: a.validators,
        providers: a.providers,
        window,
        serve_batch: a.batch,
        empty_block_interval_ms: a.empty_block_interval_ms,
        ..Default::default()
    };
    let r = super::with_devnet(d, |_| false, async |net, _| measure(g, &a, net).await).await?;
    super::print(g.json, &r, |r| {
        format!(
            "serving on a {}-validator, {}-provider devnet (an empty block every {} ms at most), through /v1:\n\
             time to first token  p50 {:.0} ms, p95 {:.0} ms (target p50 ≤ 100 ms; the model alone here: {:.0} ms)\n\
             streaming            {:.1} tokens/s, local {:.1} tokens/s: {:.2}× (target ≥ 0.9×)\n\
             embeddings (1 text)  p50 {:.1} ms, p95 {:.1} ms (target p50 ≤ 30 ms)\n\
             {} concurrent clients (batch {}): {} served, first token p50 {:.0} ms, slowest {:.0} ms, slowest completion {:.0} ms",
            r.validators,
            r.providers,
            r.empty_block_interval_ms,
            r.ttft_p50_ms,
            r.ttft_p95_ms,
            r.local_ttft_ms,
            r.stream_tokens_per_s,
            r.local_tokens_per_s,
            r.stream_over_local,
            r.embed_p50_ms,
            r.embed_p95_ms,
            r.clients,
            r.batch,
            r.clients_served,
            r.concurrent_ttft_p50_ms,
            r.concurrent_ttft_max_ms,
            r.concurrent_total_max_ms
        )
    });
    Ok(())
}

async fn measure(g: &super::Global, a: &ServeBenchArgs, net: &Devnet) -> anyhow::Result<ServeBenchReport> {
    let base = net.validator_urls()[0].clone();
    let key = std::fs::read_to_string(gateway_api_key_path(&net.dir))?.trim().to_string();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let bar = if g.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
    bar.set_message("opening the sessions (first requests)");
    stream_chat(&http, &base, &key, 8).await?;
    embed(&http, &base, &key).await?;

    bar.set_message("time to first token and streaming");
    let mut ttft = vec![];
    let mut rates = vec![];
    for _ in 0..a.requests {
        let s = stream_chat(&http, &base, &key, a.max_tokens).await?;
        anyhow::ensure!(s.pieces > 1, "the completion came in one piece");
        ttft.push(s.ttft.as_secs_f64() * 1e3);
        rates.push(rate(&s));
        bar.tick();
    }
    bar.set_message("embeddings");
    let mut embeds = vec![];
    for _ in 0..a.embeds {
        embeds.push(embed(&http, &base, &key).await?.as_secs_f64() * 1e3);
        bar.tick();
    }
    bar.set_message(format!("{} concurrent clients", a.clients));
    let runs = futures::future::join_all((0..a.clients).map(|_| {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        async move {
            let start = Instant::now();
            let s = stream_chat(&http, &base, &key, 16).await;
            s.map(|s| (s.ttft, start.elapsed()))
        }
    }))
    .await;
    let served: Vec<_> = runs.into_iter().filter_map(Result::ok).collect();
    let mut firsts: Vec<f64> = served.iter().map(|s| s.0.as_secs_f64() * 1e3).collect();
    firsts.sort_by(f64::total_cmp);
    bar.set_message("the same model locally");
    let (max_tokens, data_dir) = (a.max_tokens, g.data_dir.clone());
    let (local_ttft, local) =
        tokio::task::spawn_blocking(move || local_rate(&data_dir, max_tokens)).await??;
    bar.finish_and_clear();
    for v in [&mut ttft, &mut rates, &mut embeds] {
        v.sort_by(f64::total_cmp);
    }
    let stream = percentile(&rates, 0.5);
    Ok(ServeBenchReport {
        validators: a.validators,
        providers: a.providers,
        empty_block_interval_ms: a.empty_block_interval_ms,
        ttft_p50_ms: percentile(&ttft, 0.5),
        ttft_p95_ms: percentile(&ttft, 0.95),
        local_ttft_ms: local_ttft,
        stream_tokens_per_s: stream,
        local_tokens_per_s: local,
        stream_over_local: stream / local,
        embed_p50_ms: percentile(&embeds, 0.5),
        embed_p95_ms: percentile(&embeds, 0.95),
        clients: a.clients,
        batch: a.batch,
        clients_served: served.len(),
        concurrent_ttft_p50_ms: percentile(&firsts, 0.5),
        concurrent_ttft_max_ms: firsts.last().copied().unwrap_or(0.0),
        concurrent_total_max_ms: served.iter().map(|s| s.1.as_secs_f64() * 1e3).fold(0.0, f64::max),
    })
}

/// Times one single-text embeddings request.
async fn embed(http: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let resp = http
        .post(format!("{base}/v1/embeddings"))
        .bearer_auth(key)
        .json(&json!({"model": MINILM, "input": "A lighthouse keeper watches the storm."}))
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "the gateway answered {}", resp.status());
    let v: Value = resp.json().await?;
    anyhow::ensure!(v["agora"]["mode"] == "session", "not served from a session: {}", v["agora"]);
    Ok(start.elapsed())
}
