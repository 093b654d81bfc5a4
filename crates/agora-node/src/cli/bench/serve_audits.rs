//! `agora bench serve-audits`: do window audits catch a serving provider that alters answers,
//! and what do they cost?
//!
//! A devnet whose providers all alter `--cheat-bps` of the chat answers they serve (a draw at a
//! high temperature from another seed, receipted and committed as if honest), except provider
//! 0, serves many chat requests through the gateway's `/v1`. The gateway's session spans two
//! providers; a convicted cheater is replaced by the next. Once every window has settled, the
//! bench reads every receipt the gateway kept, tells the altered answers by the cheat's own
//! rule ([`agora_serve::server::alters`]), and every window and audit from the chain:
//!
//! * **Detection**: the share of altered answers the chain never paid for (their windows were
//!   refunded, or never committed because their provider was convicted first), the cheaters
//!   convicted, and, for every audited window holding an altered answer, whether the audit
//!   found it. The honest provider must never be convicted.
//! * **Overhead**: the tokens the auditors replayed (every sampled answer, once per auditor that
//!   reported) over the tokens served, times what a replay costs against generating the same
//!   answer, both measured in this process on the gateway's kept answers.

use crate::api::types::MAX_SESSION_WINDOWS;
use crate::client::NodeClient;
use crate::devnet::{Devnet, gateway_api_key_path};
use crate::gateway::sessions::{Kept, kept_records};
use crate::provider::sessions::{DEFAULT_WINDOW, WindowPolicy};
use agora_core::manifest::VerificationPolicy;
use agora_core::session::SessionId;
use agora_core::{AccountId, JobKind};
use agora_ledger::events::AuditOutcome;
use agora_ledger::sessions::WindowStatus;
use agora_runtime::provision::catalog::SMOLLM2;
use agora_serve::audit::recheck;
use agora_serve::engine::{ChatParams, Model};
use agora_serve::server::alters;
use clap::Args;
use futures::StreamExt;
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// `agora bench serve-audits` options.
#[derive(Debug, Args)]
pub struct ServeAuditsBenchArgs {
    /// Validators in the devnet.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Providers; all but provider 0 alter answers.
    #[arg(long, default_value_t = 3)]
    pub providers: usize,
    /// Chat requests served (every window of an untrusted provider is replayed: on 2 cores,
    /// 120 take more than 25 minutes).
    #[arg(long, default_value_t = 120)]
    pub requests: usize,
    /// Most tokens each answer generates.
    #[arg(long, default_value_t = 24)]
    pub max_tokens: u32,
    /// Share of answers a cheater alters, bps (500 = 5%, the share the issue sizes audits for).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub cheat_bps: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Answers that make a provider's window due (the providers' default).
    #[arg(long, default_value_t = DEFAULT_WINDOW.receipts,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::provider::sessions::WINDOW_RECEIPTS)))]
    pub window_receipts: u32,
    /// Longest an answer waits for its window (the providers' default is 30s).
    #[arg(long, default_value = "30s", value_parser = crate::cli::devnet::parse_window_age)]
    pub window_max_age: u64,
    /// Kept answers replayed and generated in this process for the cost of a replay.
    #[arg(long, default_value_t = 6)]
    pub cost_samples: usize,
}

/// What `agora bench serve-audits` found.
#[derive(Debug, Default, Serialize)]
pub struct ServeAuditsReport {
    /// Chat requests answered.
    pub answers: usize,
    /// Cheating providers that served.
    pub cheaters: usize,
    /// Of them, convicted.
    pub cheaters_convicted: usize,
    /// Answers the cheaters altered.
    pub altered: usize,
    /// Of them, answers in windows the chain paid for (the cheat paid).
    pub altered_paid: usize,
    /// 1 − altered_paid / altered.
    pub detection: f64,
    /// Cheaters' windows holding an altered answer.
    pub altered_windows: usize,
    /// Of them, windows the draw audited.
    pub altered_windows_audited: usize,
    /// Of those, windows whose audit sampled an altered answer.
    pub altered_windows_sampled: usize,
    /// Windows holding an altered answer whose audit found fraud (every one that sampled one).
    pub altered_windows_caught: usize,
    /// The caught windows the chain's stated chances imply: Σ over the altered windows of the
    /// audit probability the draw gave each times the chance its sample holds an altered answer.
    pub stated_caught: f64,
    /// (caught − stated) / standard deviation of the binomial sum.
    pub z_score: f64,
    /// Audits that sampled an altered answer and did not find fraud, with their outcome and
    /// verdicts (the devnet's logs are kept to read why).
    pub missed_audits: Vec<String>,
    /// Windows the honest provider committed.
    pub honest_windows: usize,
    /// Of them, audited.
    pub honest_windows_audited: usize,
    /// Whether the honest provider was convicted (must be false).
    pub honest_convicted: bool,
    /// The chain's audit probability for the honest provider's next window, ppm.
    pub honest_audit_ppm_now: u32,
    /// The share of answers a cheater alters.
    pub cheat_fraction: f64,
    /// Answers a provider altering that share serves, at the honest provider's audit
    /// probability now (small windows sampled whole), before it is caught with 99% probability.
    pub answers_to_99pct: f64,
    /// Tokens (prompt and completion) served.
    pub served_tokens: u64,
    /// Tokens the auditors replayed.
    pub replayed_tokens: u64,
    /// replayed_tokens / served_tokens.
    pub token_overhead: f64,
    /// A replay's time over generating the same answer (this process, same answers).
    pub replay_over_generate: f64,
    /// token_overhead × replay_over_generate: the auditors' compute over the serving compute.
    pub compute_overhead: f64,
}

/// Runs `agora bench serve-audits`.
pub async fn serve_audits(g: &super::Global, a: ServeAuditsBenchArgs) -> anyhow::Result<()> {
    if a.providers < 2 {
        anyhow::bail!("--providers must be at least 2: provider 0 is honest, the others alter answers");
    }
    let d = super::BenchDevnet {
        validators: a.validators,
        providers: a.providers,
        cheaters: a.providers - 1,
        cheat_bps: a.cheat_bps,
        cheat_answers: true,
        window: WindowPolicy { receipts: a.window_receipts, max_age_ms: a.window_max_age },
        ..Default::default()
    };
    // An audit that sampled an altered answer and passed it is a bug: its logs say why.
    let missed = |r: &ServeAuditsReport| !r.missed_audits.is_empty();
    let r = super::with_devnet(d, missed, async |net, _| measure(g, &a, net).await).await?;
    super::print(g.json, &r, |r| r.text(a.validators));
    Ok(())
}

impl ServeAuditsReport {
    /// The report for people.
    fn text(&self, validators: usize) -> String {
        let missed = if self.missed_audits.is_empty() {
            "every audit that sampled an altered answer caught it".to_string()
        } else {
            format!("MISSED: {}", self.missed_audits.join("; "))
        };
        format!(
            "serving audits on a {validators}-validator devnet; provider 0 honest, {} altering {:.1}% of answers; {} answers\n\
             detection    {} of {} altered answers paid for: {:.1}% detected (target ≥ 99%); {} of {} cheaters convicted\n\
             windows      {} of the cheaters' held an altered answer: {} audited, {} caught; the chain's stated chances imply {:.1} (z = {:+.2}); {missed}\n\
             lifetime     at the honest provider's audit probability now ({:.1}% a window), a provider altering {:.1}% of answers is caught with 99% probability within {:.0} answers\n\
             honest       {} windows, {} audited, convicted: {}\n\
             overhead     {} of {} tokens replayed ({:.1}%); a replay costs {:.2}× generating: {:.1}% of serving compute (target ≤ 3%)",
            self.cheaters,
            self.cheat_fraction * 100.0,
            self.answers,
            self.altered_paid,
            self.altered,
            self.detection * 100.0,
            self.cheaters_convicted,
            self.cheaters,
            self.altered_windows,
            self.altered_windows_audited,
            self.altered_windows_caught,
            self.stated_caught,
            self.z_score,
            f64::from(self.honest_audit_ppm_now) / 1e4,
            self.cheat_fraction * 100.0,
            self.answers_to_99pct,
            self.honest_windows,
            self.honest_windows_audited,
            self.honest_convicted,
            self.replayed_tokens,
            self.served_tokens,
            self.token_overhead * 100.0,
            self.replay_over_generate,
            self.compute_overhead * 100.0,
        )
    }
}

async fn measure(
    g: &super::Global,
    a: &ServeAuditsBenchArgs,
    net: &Devnet,
) -> anyhow::Result<ServeAuditsReport> {
    let base = net.validator_urls()[0].clone();
    let key = std::fs::read_to_string(gateway_api_key_path(&net.dir))?.trim().to_string();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let pb = if g.json { ProgressBar::hidden() } else { ProgressBar::new(a.requests as u64) };
    pb.set_message("answers");
    let served: Vec<anyhow::Result<SessionId>> = futures::stream::iter(0..a.requests)
        .map(|i| {
            let (http, base, key, pb) = (&http, &base, &key, &pb);
            async move {
                let s = chat(http, base, key, i, a.max_tokens).await;
                pb.inc(1);
                s
            }
        })
        .buffer_unordered(a.concurrency.max(1))
        .collect()
        .await;
    pb.finish_and_clear();
    let sessions: BTreeSet<SessionId> = served.into_iter().collect::<anyhow::Result<_>>()?;

    let client = NodeClient::new(&base);
    let gateway_dir = net.dir.join(&net.configs[0].data_dir);
    let honest = crate::config::load_key(&net.configs[a.validators].key_file)?.public();
    let mut kept = vec![];
    for id in &sessions {
        let records = kept_records(&gateway_dir, *id)?;
        settled(&client, *id, &records).await?;
        kept.push((*id, records));
    }
    let all: Vec<Kept> = kept.iter().flat_map(|(_, k)| k.iter().cloned()).collect();
    let (data_dir, bps, samples) = (g.data_dir.clone(), a.cheat_bps, a.cost_samples);
    let (altered, replay_over_generate) = tokio::task::spawn_blocking(move || {
        replays(&data_dir, &all, |k| k.provider != honest && picked(k, bps), samples)
    })
    .await??;
    let mut r = tally(&client, honest, &altered, &kept).await?;
    r.cheat_fraction = f64::from(a.cheat_bps) / 1e4;
    r.answers_to_99pct = answers_to_detect(0.99, r.cheat_fraction, r.honest_audit_ppm_now);
    r.replay_over_generate = replay_over_generate;
    r.compute_overhead = r.token_overhead * r.replay_over_generate;
    Ok(r)
}

/// Whether the cheat's rule altered the answer `k` of a provider altering `bps`.
fn picked(k: &Kept, bps: u32) -> bool {
    alters(&k.receipt.receipt.request, bps)
}

/// Answers a provider altering `fraction` of them serves before it is caught with probability
/// `target`, when each window is audited with `ppm` and small windows are sampled whole.
fn answers_to_detect(target: f64, fraction: f64, ppm: u32) -> f64 {
    let per_answer = fraction * f64::from(ppm) / 1e6;
    if per_answer <= 0.0 { f64::INFINITY } else { (1.0 - target).ln() / (1.0 - per_answer).ln() }
}

/// One chat request through `/v1` (a 503 is retried, as the gateway asks); its session.
async fn chat(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    i: usize,
    max_tokens: u32,
) -> anyhow::Result<SessionId> {
    let prompt = format!("Write a short note to a friend about day {i} of a long voyage.");
    let body = json!({"model": SMOLLM2, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens});
    for attempt in 0.. {
        let resp =
            http.post(format!("{base}/v1/chat/completions")).bearer_auth(key).json(&body).send().await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempt < 5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        anyhow::ensure!(status.is_success(), "the gateway answered {status}: {v}");
        anyhow::ensure!(v["agora"]["mode"] == "session", "not served from a session: {}", v["agora"]);
        return v["agora"]["session"].as_u64().ok_or_else(|| anyhow::anyhow!("no session in {}", v["agora"]));
    }
    unreachable!("the loop returns")
}

/// Waits until session `id` has nothing left to settle: every provider still serving it has
/// committed what it served (as `kept` shows), and no window is held.
async fn settled(client: &NodeClient, id: SessionId, kept: &[Kept]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let s = client.session(id).await?;
        let served = |p: &AccountId| kept.iter().filter(|k| k.provider == *p).count() as u64;
        let committed = s.session.members.iter().all(|m| m.removed || m.next_seq >= served(&m.provider));
        if committed && s.windows.iter().all(|w| w.window.status != WindowStatus::Held) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "session {id}'s windows did not settle in 15 minutes");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Counts answers, windows and audits over the `kept` receipts of each session; `altered` are
/// the answers (provider, seq) that were altered.
async fn tally(
    client: &NodeClient,
    honest: AccountId,
    altered: &BTreeSet<(AccountId, u64)>,
    kept: &[(SessionId, Vec<Kept>)],
) -> anyhow::Result<ServeAuditsReport> {
    let mut r = ServeAuditsReport { altered: altered.len(), ..Default::default() };
    let params = client.params().await?;
    let (mut cheaters, mut convicted) = (BTreeSet::new(), BTreeSet::new());
    let (mut expected, mut variance) = (0.0f64, 0.0f64);
    let mut honest_value = agora_core::Amount::ZERO;
    for (id, records) in kept {
        // Each answer's tokens, by (provider, seq).
        let tokens: BTreeMap<(AccountId, u64), u64> = records
            .iter()
            .map(|k| {
                let u = &k.receipt.receipt.usage;
                ((k.provider, k.receipt.receipt.seq), u.prompt_tokens + u.completion_tokens)
            })
            .collect();
        r.served_tokens += tokens.values().sum::<u64>();
        r.answers += records.len();
        cheaters.extend(records.iter().map(|k| k.provider).filter(|p| *p != honest));
        let detail = client.session(*id).await?;
        let listed = |p: &AccountId| detail.windows.iter().filter(|w| w.provider == *p).count();
        if let Some(m) = detail.session.members.iter().find(|m| listed(&m.provider) >= MAX_SESSION_WINDOWS) {
            anyhow::bail!(
                "{} committed more windows than the session API lists ({MAX_SESSION_WINDOWS}): run fewer --requests",
                m.provider
            );
        }
        convicted.extend(detail.session.members.iter().filter(|m| m.removed).map(|m| m.provider));
        for w in &detail.windows {
            let (first, n) = (w.first_seq, w.window.commitment.receipts);
            let is_altered = |offset: u32| altered.contains(&(w.provider, first + u64::from(offset)));
            let altered_in = (0..n).filter(|o| is_altered(*o)).count();
            if w.window.status == WindowStatus::Paid {
                r.altered_paid += altered_in;
            }
            let audit = match w.window.audit {
                Some(audit_id) => Some(client.audit(audit_id).await?),
                None => None,
            };
            if let Some(audit) = &audit {
                let auditors = audit.assignments.iter().filter(|x| x.verdict.is_some()).count() as u64;
                let sampled: u64 =
                    audit.items.iter().filter_map(|o| tokens.get(&(w.provider, first + u64::from(*o)))).sum();
                r.replayed_tokens += sampled * auditors;
            }
            if w.provider == honest {
                r.honest_windows += 1;
                r.honest_windows_audited += usize::from(audit.is_some());
                honest_value = w.window.charge.max(honest_value);
                continue;
            }
            if altered_in == 0 {
                continue;
            }
            // The chance the chain gave this window of being caught: audited, and a sampled
            // receipt among the altered ones.
            let k = agora_ledger::audits::sample_size(
                &params,
                JobKind::Generate,
                VerificationPolicy::Standard,
                n,
            );
            let p = f64::from(w.window.audit_ppm) / 1e6 * (1.0 - miss(n, altered_in as u32, k));
            (expected, variance) = (expected + p, variance + p * (1.0 - p));
            r.altered_windows += 1;
            let Some(audit) = audit else { continue };
            r.altered_windows_audited += 1;
            let caught = audit.outcome == Some(AuditOutcome::Fraud);
            r.altered_windows_caught += usize::from(caught);
            if audit.items.iter().any(|o| is_altered(*o)) {
                r.altered_windows_sampled += 1;
                if !caught {
                    let verdicts: Vec<_> = audit.assignments.iter().map(|x| (x.auditor, x.verdict)).collect();
                    let id = w.window.audit.expect("audited");
                    r.missed_audits.push(format!("audit {id}: {:?}, verdicts {verdicts:?}", audit.outcome));
                }
            }
        }
    }
    r.cheaters = cheaters.len();
    r.cheaters_convicted = cheaters.intersection(&convicted).count();
    r.honest_convicted = convicted.contains(&honest);
    r.detection = if r.altered == 0 { 1.0 } else { 1.0 - r.altered_paid as f64 / r.altered as f64 };
    r.stated_caught = expected;
    r.z_score =
        if variance > 0.0 { (r.altered_windows_caught as f64 - expected) / variance.sqrt() } else { 0.0 };
    r.token_overhead = r.replayed_tokens as f64 / r.served_tokens.max(1) as f64;
    let provider = client.provider(&honest).await?;
    r.honest_audit_ppm_now = agora_ledger::audits::probability_for(
        &params,
        &provider.trust,
        provider.collateral.saturating_sub(provider.reserved),
        honest_value,
        VerificationPolicy::Standard,
    );
    anyhow::ensure!(r.altered > 0, "no answer was altered: serve more requests or raise --cheat-bps");
    Ok(r)
}

/// The chance that `k` receipts drawn without replacement from `n`, `bad` of them altered,
/// miss every altered one.
fn miss(n: u32, bad: u32, k: u32) -> f64 {
    (0..k.min(n)).map(|i| f64::from(n.saturating_sub(bad + i)) / f64::from(n - i)).product()
}

/// Replays on the session's model in this process, as auditors do: every answer the cheat's
/// rule `chosen` picked, to keep only those the replay refutes (a draw at a high temperature is
/// now and then the model's own answer: nothing was altered), and up to `samples` honest ones,
/// generated afresh too, for what a replay costs against generating the same answer.
fn replays(
    data_dir: &std::path::Path,
    kept: &[Kept],
    chosen: impl Fn(&Kept) -> bool,
    samples: usize,
) -> anyhow::Result<(BTreeSet<(AccountId, u64)>, f64)> {
    let p = crate::requester::prepare::provisioner(data_dir)
        .ensure(SMOLLM2)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let model = crate::provider::sessions::open_model(JobKind::Generate, &p.dir)?;
    let Model::Chat(llm) = &model else { anyhow::bail!("{SMOLLM2} is not a chat model") };
    let mut altered = BTreeSet::new();
    for k in kept.iter().filter(|k| chosen(k)) {
        let claim =
            k.claim().ok_or_else(|| anyhow::anyhow!("the gateway kept no completion for a receipt"))?;
        if !recheck(&model, &claim)?.matches {
            altered.insert((k.provider, k.receipt.receipt.seq));
        }
    }
    let (mut replay, mut generate) = (Duration::ZERO, Duration::ZERO);
    let honest = kept.iter().filter(|k| !chosen(k)).filter_map(Kept::claim).take(samples);
    for claim in honest {
        let params =
            ChatParams::of(&claim.body).ok_or_else(|| anyhow::anyhow!("a kept chat is not a chat"))?;
        let start = Instant::now();
        anyhow::ensure!(recheck(&model, &claim)?.matches, "an honest answer did not replay");
        replay += start.elapsed();
        let start = Instant::now();
        llm.generate_observed(&params.request(None), None)?;
        generate += start.elapsed();
    }
    anyhow::ensure!(!generate.is_zero(), "no kept chat answer to time");
    Ok((altered, replay.as_secs_f64() / generate.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_window_sample_never_misses_and_an_empty_one_always_does() {
        assert_eq!(miss(4, 1, 4), 0.0);
        assert_eq!(miss(4, 0, 4), 1.0);
        assert_eq!(miss(10, 3, 0), 1.0);
        // 1 of 2 altered, one drawn: a coin toss.
        assert!((miss(2, 1, 1) - 0.5).abs() < 1e-12);
        // 5 of 100 altered, 90 drawn: only the draws leaving all five out miss.
        let exact = (0..5).map(|i| f64::from(10 - i) / f64::from(100 - i)).product::<f64>();
        assert!((miss(100, 5, 90) - exact).abs() < 1e-12);
    }

    #[test]
    fn answers_to_detect_follow_the_per_answer_chance() {
        // 5% altered, every window audited: 90 answers for 99%.
        assert_eq!(answers_to_detect(0.99, 0.05, 1_000_000).ceil(), 90.0);
        // At the 1% audit floor, about 9,200.
        let n = answers_to_detect(0.99, 0.05, 10_000);
        assert!((9_200.0..9_220.0).contains(&n), "{n}");
        assert!(answers_to_detect(0.99, 0.05, 0).is_infinite());
    }
}
