//! Audits in a child process: a requester's model can fail only the child, never the node.
//!
//! A model is requester-chosen bytes. Its loader sizes allocations from headers, its
//! computation runs as long as its parameters say. The loaders check what they can (GGUF and
//! BERT headers, model size caps) and the executors bound what they run, but a validator's
//! process also runs consensus: one abort there stops the chain's progress on that node. So a
//! node that isolates audits (every validator does) loads the model and recomputes the sample
//! in a child process of its own binary (`agora sandbox audit`), which sets its limits before
//! it reads anything (address space, CPU seconds, no core dumps, a lower scheduling priority),
//! and which the node kills at a wall deadline. Whatever ends the child early — an abort, the kernel's
//! limits, a panic, garbage on its stdout — is the auditor's failure to audit ([`Unable`]), so
//! it reports nothing rather than an accusation.
//!
//! Protocol: the parent writes one request to the child's stdin (a length-prefixed JSON header,
//! then the fetched input and claimed items, each as index, length and bytes) and reads one
//! JSON [`Answer`] from its stdout, of at most [`MAX_ANSWER`] bytes. A serving window's audit
//! ([`run_serving`]) sends the answers to replay as claimed items (JSON [`Claim`]s, indexed by
//! receipt offset) and no inputs.

use super::auditor::Unable;
use super::runtimes::{load_executor, unpack};
use super::sessions::open_model;
use agora_core::{Hash, JobKind};
use agora_runtime::ExecError;
use agora_runtime::audit::AuditOutcome;
use agora_runtime::executor::{AuditRequest, Executor, TaskContext};
use agora_serve::audit::{Claim, recheck};
use agora_serve::engine::Model;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest answer read from a child: verdicts with their details and the metering.
pub const MAX_ANSWER: usize = 16 << 20;
/// Largest request header a child reads.
const MAX_HEADER: u32 = 1 << 20;
/// Scheduling priority of the child: below the node's API and consensus.
const CHILD_NICE: i32 = 10;

/// What a child may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address space, bytes: every mapping counts, the heap, a memory-mapped model and a wasm
    /// instance's reservation alike.
    pub memory_bytes: u64,
    /// CPU time across all its threads, seconds.
    pub cpu_seconds: u64,
    /// Wall time before it is killed.
    pub wall: Duration,
}

/// What the child is told to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    kind: JobKind,
    model: Hash,
    /// The model blob's file (the node's store verified it when storing it).
    model_file: PathBuf,
    /// Where unpacked models live.
    models_dir: PathBuf,
    /// The lease's task (none for a serving window's replay).
    ctx: Option<TaskContext>,
    /// Check the inputs ([`check_inputs`]) instead of recomputing the sample.
    #[serde(default)]
    check_inputs: bool,
    /// Replay a serving window's answers ([`replay`]) instead of recomputing a lease's sample.
    #[serde(default)]
    serving: bool,
    indices: Vec<u32>,
    inputs: u32,
    claimed: u32,
}

/// What the child answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    /// The recomputation ran; a verdict per sampled item.
    Outcome(AuditOutcome),
    /// The provider's claims could not even be replayed: its fault.
    BadClaims(String),
    /// The recomputation failed here (model, resources, inputs): not the provider's fault.
    Failed(String),
    /// Checking inputs: every one is usable by the model.
    Usable,
    /// Checking inputs: this one is not (why).
    Unusable(String),
    /// A serving window's answers replayed: a verdict per receipt offset.
    Replayed(Vec<Replayed>),
}

/// The verdict on one replayed answer of a serving window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replayed {
    /// The receipt's offset in its window.
    pub index: u32,
    /// Whether the replay reproduced it.
    pub matches: bool,
    /// What was measured.
    pub detail: String,
}

/// Replays a serving window's sampled answers on the session's `model`, here: a replay that
/// cannot run is this node's failure, never the provider's.
pub fn replay(model: &Model, claims: &[(u32, Claim)]) -> Answer {
    let mut out = Vec::with_capacity(claims.len());
    for (index, claim) in claims {
        match recheck(model, claim) {
            Ok(v) => out.push(Replayed { index: *index, matches: v.matches, detail: v.detail }),
            Err(e) => return Answer::Failed(format!("replaying receipt {index}: {e}")),
        }
    }
    Answer::Replayed(out)
}

/// Recomputes an audit's sample with `executor`, here: claims that cannot even be replayed are
/// the provider's fault, any other failure is this node's.
pub fn recompute(executor: &dyn Executor, ctx: &TaskContext, request: &AuditRequest) -> Answer {
    match agora_runtime::audit::audit(executor, ctx, request) {
        Ok(outcome) => Answer::Outcome(outcome),
        Err(e @ ExecError::BadAudit(_)) => Answer::BadClaims(e.to_string()),
        Err(e) => Answer::Failed(format!("recomputing: {e}")),
    }
}

/// Checks the request's input items with `executor` ([`agora_runtime::executor::first_unusable`]),
/// here: the check of a provider's statement that an input item cannot be computed.
pub fn check_inputs(executor: &dyn Executor, ctx: &TaskContext, request: &AuditRequest) -> Answer {
    let items = request.inputs.iter().map(|(i, bytes)| (*i, bytes.as_slice()));
    match agora_runtime::executor::first_unusable(executor, ctx, items) {
        Ok(None) => Answer::Usable,
        Ok(Some((index, reason))) => Answer::Unusable(format!("input item {index} is unusable: {reason}")),
        Err(e) => Answer::Failed(format!("checking the inputs: {e}")),
    }
}

/// One audit to run in a child.
pub struct Audit<'a> {
    /// The job kind.
    pub kind: JobKind,
    /// The model's hash.
    pub model: Hash,
    /// The model blob's file.
    pub model_file: PathBuf,
    /// Where unpacked models live.
    pub models_dir: PathBuf,
    /// The task.
    pub ctx: &'a TaskContext,
    /// The fetched items.
    pub request: &'a AuditRequest,
    /// Check the inputs instead of recomputing ([`check_inputs`]).
    pub check_inputs: bool,
}

/// Runs `audit` in a child process of `exe` under `limits`. An answer from the child is
/// returned as it is; a child that did not answer (killed, aborted, timed out, garbled) is
/// [`Unable`].
pub async fn run(exe: &std::path::Path, audit: Audit<'_>, limits: Limits) -> anyhow::Result<Answer> {
    let header = Header {
        kind: audit.kind,
        model: audit.model,
        model_file: audit.model_file,
        models_dir: audit.models_dir,
        ctx: Some(audit.ctx.clone()),
        check_inputs: audit.check_inputs,
        serving: false,
        indices: audit.request.indices.clone(),
        inputs: audit.request.inputs.len() as u32,
        claimed: audit.request.claimed.len() as u32,
    };
    let mut request = Vec::new();
    write_request(&mut request, &header, audit.request)?;
    exchange(exe, &request, limits).await
}

/// A serving window's replay to run in a child.
pub struct ServingAudit<'a> {
    /// The session's runtime.
    pub kind: JobKind,
    /// The model's hash.
    pub model: Hash,
    /// The model blob's file.
    pub model_file: PathBuf,
    /// Where unpacked models live.
    pub models_dir: PathBuf,
    /// The answers to replay, by receipt offset.
    pub claims: &'a [(u32, Claim)],
}

/// Runs a serving window's replay ([`replay`]) in a child process of `exe` under `limits`, as
/// [`run`] does a lease's recomputation.
pub async fn run_serving(
    exe: &std::path::Path,
    audit: ServingAudit<'_>,
    limits: Limits,
) -> anyhow::Result<Answer> {
    let claimed = audit
        .claims
        .iter()
        .map(|(i, c)| Ok((*i, serde_json::to_vec(c)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let header = Header {
        kind: audit.kind,
        model: audit.model,
        model_file: audit.model_file,
        models_dir: audit.models_dir,
        ctx: None,
        check_inputs: false,
        serving: true,
        indices: audit.claims.iter().map(|(i, _)| *i).collect(),
        inputs: 0,
        claimed: claimed.len() as u32,
    };
    let request = AuditRequest { indices: header.indices.clone(), inputs: vec![], claimed };
    let mut bytes = Vec::new();
    write_request(&mut bytes, &header, &request)?;
    exchange(exe, &bytes, limits).await
}

/// Starts `exe sandbox audit` under `limits`, writes `request` to it and reads its [`Answer`].
async fn exchange(exe: &std::path::Path, request: &[u8], limits: Limits) -> anyhow::Result<Answer> {
    let mut child = tokio::process::Command::new(exe)
        .args(["sandbox", "audit", "--memory-bytes", &limits.memory_bytes.to_string()])
        .args(["--cpu-seconds", &limits.cpu_seconds.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the audit process")?;
    let (mut stdin, mut stdout, stderr) = (
        child.stdin.take().expect("piped"),
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    // Its log is drained to the end (a full pipe would stall it), keeping the last lines.
    let log = tokio::spawn(tail_of(stderr));
    let exchange = async {
        let write = async {
            // A child that dies early closes its stdin: its exit status says why.
            let _ = stdin.write_all(request).await;
            drop(stdin);
        };
        let mut answer = Vec::new();
        let mut out = (&mut stdout).take(MAX_ANSWER as u64 + 1);
        let ((), read) = tokio::join!(write, out.read_to_end(&mut answer));
        read?;
        if answer.len() > MAX_ANSWER {
            let _ = child.kill().await;
            anyhow::bail!("it answered more than {MAX_ANSWER} bytes");
        }
        let status = child.wait().await?;
        anyhow::Ok((status, answer))
    };
    let (status, answer) = match tokio::time::timeout(limits.wall, exchange).await {
        Ok(done) => done.map_err(|e| Unable(format!("the audit process failed: {e:#}")))?,
        Err(_) => {
            bail!(Unable(format!("the audit process took longer than {:?} and was killed", limits.wall)))
        }
    };
    if !status.success() {
        let tail = log.await.unwrap_or_default();
        bail!(Unable(format!("the audit process ended with {status}: {tail}")));
    }
    serde_json::from_slice(&answer)
        .map_err(|e| Unable(format!("the audit process answered garbage: {e}")).into())
}

/// The last 400 characters of what `stderr` writes until it closes.
async fn tail_of(mut stderr: tokio::process::ChildStderr) -> String {
    let mut tail = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > 8192 {
            tail.drain(..tail.len() - 4096);
        }
    }
    let text = String::from_utf8_lossy(&tail);
    text.chars().rev().take(400).collect::<Vec<_>>().into_iter().rev().collect::<String>().trim().to_string()
}

/// Limits this process (the child) to `memory_bytes` of address space and `cpu_seconds` of CPU
/// time, with no core dumps, at a lower priority. Hard limits: they cannot be raised again.
pub fn limit_this_process(memory_bytes: u64, cpu_seconds: u64) -> anyhow::Result<()> {
    use rustix::process::{Resource, Rlimit, setpriority_process, setrlimit};
    let cap = |n: u64| Rlimit { current: Some(n), maximum: Some(n) };
    setrlimit(Resource::As, cap(memory_bytes)).context("limiting memory")?;
    setrlimit(Resource::Cpu, cap(cpu_seconds)).context("limiting CPU time")?;
    setrlimit(Resource::Core, cap(0)).context("turning core dumps off")?;
    setpriority_process(None, CHILD_NICE).context("lowering the priority")?;
    Ok(())
}

fn write_request(out: &mut Vec<u8>, header: &Header, request: &AuditRequest) -> anyhow::Result<()> {
    let header = serde_json::to_vec(header)?;
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    for (index, bytes) in request.inputs.iter().chain(&request.claimed) {
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    Ok(())
}

fn read_items(input: &mut impl Read, count: u32) -> anyhow::Result<Vec<(u32, Vec<u8>)>> {
    (0..count)
        .map(|_| {
            let mut index = [0u8; 4];
            let mut len = [0u8; 8];
            input.read_exact(&mut index)?;
            input.read_exact(&mut len)?;
            let len = u64::from_le_bytes(len);
            if len > super::auditor::MAX_AUDIT_RESPONSE as u64 {
                bail!("an item of {len} bytes is beyond what an auditor fetches");
            }
            let mut bytes = vec![0u8; len as usize];
            input.read_exact(&mut bytes)?;
            Ok((u32::from_le_bytes(index), bytes))
        })
        .collect()
}

/// The child's side (`agora sandbox audit`): reads one request from `input`, loads the model,
/// recomputes, and writes the [`Answer`] to `output`.
pub fn serve(input: &mut impl Read, output: &mut impl Write) -> anyhow::Result<()> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_HEADER {
        bail!("a request header of {len} bytes is beyond {MAX_HEADER}");
    }
    let mut header = vec![0u8; len as usize];
    input.read_exact(&mut header)?;
    let header: Header = serde_json::from_slice(&header)?;
    let request = AuditRequest {
        indices: header.indices,
        inputs: read_items(input, header.inputs)?,
        claimed: read_items(input, header.claimed)?,
    };
    let bytes = std::fs::read(&header.model_file).with_context(|| format!("reading model {}", header.model));
    let answer = match (header.serving, header.ctx) {
        (true, _) => match bytes
            .and_then(|b| unpack(&b, &header.models_dir, header.model))
            .and_then(|dir| open_model(header.kind, &dir))
        {
            Err(e) => Answer::Failed(format!("loading the model: {e:#}")),
            Ok(model) => match request
                .claimed
                .iter()
                .map(|(i, c)| Ok((*i, serde_json::from_slice(c)?)))
                .collect::<anyhow::Result<Vec<(u32, Claim)>>>()
            {
                Ok(claims) => replay(&model, &claims),
                Err(e) => Answer::Failed(format!("reading the answers to replay: {e:#}")),
            },
        },
        (false, None) => Answer::Failed("a lease's recomputation needs its task".into()),
        (false, Some(ctx)) => {
            match bytes.and_then(|b| load_executor(header.kind, b, &header.models_dir, header.model)) {
                Err(e) => Answer::Failed(format!("loading the runtime: {e:#}")),
                Ok(executor) if header.check_inputs => check_inputs(executor.as_ref(), &ctx, &request),
                Ok(executor) => recompute(executor.as_ref(), &ctx, &request),
            }
        }
    };
    serde_json::to_writer(&mut *output, &answer)?;
    output.flush()?;
    Ok(())
}
