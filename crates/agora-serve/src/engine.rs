//! Warm models and the runs a provider serves on them.
//!
//! Chat runs of one model are decoded together by its batcher thread (continuous batching,
//! [`agora_ml::generate::batch`]): a request joins the batch at the next step, up to the
//! engine's batch size (the rest wait their turn, first come first served), and leaves it as
//! soon as it ends. Every run is computed the same bits as alone, so batching changes nothing
//! an auditor replays. Embedding requests take turns through a fair set of slots. Each run
//! streams its text as it is generated.

use crate::fingerprint::Fingerprint;
use agora_ml::embed::Embedder;
use agora_ml::generate::Llm;
use agora_ml::generate::batch::{Batch, RunSink};
use agora_ml::generate::model::{Outcome, Request, Step};
use agora_ml::generate::sampler::Sampler;
use agora_runtime::ExecError;
use agora_runtime::items::generation::Generation;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// A loaded model, shared by every request of the sessions that serve it.
#[derive(Clone)]
pub enum Model {
    /// A language model.
    Chat(Arc<Llm>),
    /// A sentence-embedding model.
    Embed(Arc<Embedder>),
}

/// A chat request's parameters.
pub struct ChatParams {
    /// The user turn.
    pub prompt: String,
    /// Most new tokens.
    pub max_tokens: u32,
    /// Temperature × 1000 (0: greedy).
    pub temperature_milli: u32,
    /// Sampling seed.
    pub seed: u64,
    /// Stop strings.
    pub stop: Vec<String>,
}

impl ChatParams {
    /// The parameters of a chat request, or `None` for another kind of request.
    pub fn of(body: &crate::wire::ServeBody) -> Option<Self> {
        match body.clone() {
            crate::wire::ServeBody::Chat { prompt, max_tokens, temperature_milli, seed, stop } => {
                Some(ChatParams { prompt, max_tokens, temperature_milli, seed, stop })
            }
            crate::wire::ServeBody::Embed { .. } => None,
        }
    }

    /// What a provider that alters answers serves instead of these parameters (a test hook's
    /// cheat, see [`crate::server::Server::altering`]): a draw at temperature 1.5 from another
    /// seed. Its tokens are not the ones the request asked for, but its fingerprints are the
    /// model's own, so only a replay of the tokens can tell.
    pub fn altered(self) -> Self {
        ChatParams { temperature_milli: 1_500, seed: !self.seed, ..self }
    }

    /// The model's request for these parameters: generated afresh, or (with `follow`) replayed
    /// teacher-forced along those tokens.
    pub fn request<'a>(&'a self, follow: Option<&'a [u32]>) -> Request<'a> {
        Request {
            prompt: &self.prompt,
            max_new_tokens: self.max_tokens as usize,
            stop: &self.stop,
            sampler: Sampler::from_milli(self.temperature_milli),
            seed: self.seed,
            follow,
        }
    }
}

/// A finished chat run.
pub struct ChatRun {
    /// The completion.
    pub generation: Generation,
    /// Tokens the model read: the chat-templated prompt.
    pub prompt_tokens: u64,
    /// Fingerprints of the computation.
    pub fingerprints: Vec<Fingerprint>,
    /// Unix ms of the first and last token.
    pub times: (u64, u64),
}

/// A finished embeddings run.
pub struct EmbedRun {
    /// One vector per input.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the model read.
    pub prompt_tokens: u64,
}

/// Runs requests on warm models: chat runs batched per model, embeddings a bounded number at
/// a time.
#[derive(Clone)]
pub struct Engine {
    slots: Arc<Semaphore>,
    batch: usize,
    /// Per model (by address), the queue of its batcher thread.
    batchers: Arc<Mutex<HashMap<usize, std::sync::mpsc::Sender<ChatJob>>>>,
}

/// A chat request on its way to a batcher, with where its text and its end go.
struct ChatJob {
    params: ChatParams,
    pieces: mpsc::UnboundedSender<String>,
    reply: oneshot::Sender<Result<Option<ChatRun>, ExecError>>,
}

/// Batch size for embedding requests (the batching plan sentence-transformers uses).
pub const EMBED_BATCH: usize = 32;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Engine {
    /// An engine decoding up to `batch` chat runs of a model together and running up to
    /// `parallel` embedding requests at once.
    pub fn new(parallel: usize, batch: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(parallel.max(1))),
            batch: batch.max(1),
            batchers: Arc::default(),
        }
    }

    /// Runs a chat request, sending each piece of text to `pieces` as soon as it is final (a
    /// piece never holds part of a stop string or half a character; a run sends at most one a
    /// token, so the channel holds at most a completion's worth). `Ok(None)` if `pieces` was
    /// dropped (the client left): the run stops.
    pub async fn chat(
        &self,
        llm: Arc<Llm>,
        params: ChatParams,
        pieces: mpsc::UnboundedSender<String>,
    ) -> Result<Option<ChatRun>, ExecError> {
        let stopped = || ExecError::model("the model's batcher stopped");
        let (reply, done) = oneshot::channel();
        let job = ChatJob { params, pieces, reply };
        // A batcher that died (a panic in a step) is replaced once.
        if let Err(std::sync::mpsc::SendError(job)) = self.batcher(&llm, false).send(job) {
            self.batcher(&llm, true).send(job).map_err(|_| stopped())?;
        }
        done.await.map_err(|_| stopped())?
    }

    /// The queue of `llm`'s batcher, started on first use or when `fresh` is asked for (a
    /// batcher holds its model and lives as long as the engine).
    fn batcher(&self, llm: &Arc<Llm>, fresh: bool) -> std::sync::mpsc::Sender<ChatJob> {
        let key = Arc::as_ptr(llm) as usize;
        let mut batchers = self.batchers.lock().expect("not poisoned");
        if fresh {
            batchers.remove(&key);
        }
        let llm = llm.clone();
        batchers
            .entry(key)
            .or_insert_with(|| {
                let (jobs, queue) = std::sync::mpsc::channel();
                let batch = self.batch;
                std::thread::Builder::new()
                    .name("agora-batcher".into())
                    .spawn(move || run_batcher(llm, &queue, batch))
                    .expect("spawns a thread");
                jobs
            })
            .clone()
    }

    /// Embeds `inputs`.
    pub async fn embed(&self, embedder: Arc<Embedder>, inputs: Vec<String>) -> Result<EmbedRun, ExecError> {
        let _slot = self.slots.clone().acquire_owned().await.expect("never closed");
        tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let prompt_tokens = embedder.count_tokens(&texts)?.iter().map(|n| *n as u64).sum();
            Ok(EmbedRun { vectors: embedder.embed(&texts, EMBED_BATCH)?, prompt_tokens })
        })
        .await
        .map_err(|e| ExecError::model(format!("the run panicked: {e}")))?
    }
}

/// A batcher: admits queued jobs between steps, up to `capacity` runs, and steps the batch
/// until it is empty; then waits for the next job. Ends when the engine is gone.
fn run_batcher(llm: Arc<Llm>, queue: &std::sync::mpsc::Receiver<ChatJob>, capacity: usize) {
    let mut batch = Batch::new(llm);
    loop {
        if batch.is_empty() {
            match queue.recv() {
                Ok(job) => admit(&mut batch, job),
                Err(_) => return,
            }
        }
        while batch.len() < capacity {
            match queue.try_recv() {
                Ok(job) => admit(&mut batch, job),
                Err(_) => break,
            }
        }
        batch.step();
    }
}

/// Adds `job` to `batch` (a prompt the model refuses is answered at once, through the sink).
fn admit(batch: &mut Batch, job: ChatJob) {
    let ChatJob { params, pieces, reply } = job;
    let sink = ChatSink {
        streamer: Streamer::new(params.stop.clone()),
        pieces,
        reply,
        fingerprints: vec![],
        first: None,
    };
    batch.admit(&params.request(None), Box::new(sink));
}

/// Where a batched chat run's tokens go: fingerprinted, streamed as final text, and at the end
/// returned as a [`ChatRun`].
struct ChatSink {
    streamer: Streamer,
    pieces: mpsc::UnboundedSender<String>,
    reply: oneshot::Sender<Result<Option<ChatRun>, ExecError>>,
    fingerprints: Vec<Fingerprint>,
    first: Option<u64>,
}

impl RunSink for ChatSink {
    fn step(&mut self, s: Step<'_>) -> ControlFlow<()> {
        self.first.get_or_insert_with(now_ms);
        self.fingerprints.extend(Fingerprint::at(s.index, s.logits));
        match self.streamer.next(s.text).map(|piece| self.pieces.send(piece)) {
            Some(Err(_)) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }

    fn done(mut self: Box<Self>, outcome: Result<Option<Outcome>, ExecError>) {
        let run = outcome.map(|outcome| {
            let outcome = outcome?;
            let (generation, prompt_tokens) = (outcome.generation, outcome.prompt_tokens as u64);
            if let Some(rest) = self.streamer.finish(&generation.text)
                && self.pieces.send(rest).is_err()
            {
                return None;
            }
            let last = now_ms();
            let fingerprints = std::mem::take(&mut self.fingerprints);
            Some(ChatRun {
                generation,
                prompt_tokens,
                fingerprints,
                times: (self.first.unwrap_or(last), last),
            })
        });
        let _ = self.reply.send(run);
    }
}

/// Decides which part of a growing completion can be sent: never text that a stop string
/// will cut, never an incomplete character.
struct Streamer {
    sent: usize,
    stops: Vec<String>,
}

impl Streamer {
    fn new(stops: Vec<String>) -> Self {
        Self { sent: 0, stops }
    }

    /// The text to send now, given the completion so far.
    fn next(&mut self, text: &str) -> Option<String> {
        if text.len() < self.sent || !text.is_char_boundary(self.sent) {
            return None;
        }
        let mut end = match self.stops.iter().filter_map(|s| text.find(s.as_str())).min() {
            Some(cut) => cut,
            None => {
                // Hold back an ending that could be the start of a stop string.
                let held = self
                    .stops
                    .iter()
                    .flat_map(|s| s.char_indices().skip(1).map(move |(i, _)| &s[..i]))
                    .filter(|prefix| text.ends_with(prefix))
                    .map(str::len)
                    .max()
                    .unwrap_or(0);
                text.len() - held
            }
        };
        // An incomplete UTF-8 sequence decodes as U+FFFD until its last byte arrives.
        while text[..end].ends_with('\u{FFFD}') {
            end -= '\u{FFFD}'.len_utf8();
        }
        (end > self.sent).then(|| {
            let piece = text[self.sent..end].to_string();
            self.sent = end;
            piece
        })
    }

    /// What remains of the final text after what was sent.
    fn finish(&mut self, text: &str) -> Option<String> {
        (text.len() > self.sent && text.is_char_boundary(self.sent)).then(|| {
            let rest = text[self.sent..].to_string();
            self.sent = text.len();
            rest
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(steps: &[&str], stops: &[&str], last: &str) -> Vec<String> {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = Streamer::new(stops);
        let mut out: Vec<String> = steps.iter().filter_map(|t| s.next(t)).collect();
        out.extend(s.finish(last));
        out
    }

    #[test]
    fn pieces_concatenate_to_the_final_text() {
        let out = stream(&["He", "Hello", "Hello wor", "Hello world"], &[], "Hello world");
        assert_eq!(out, vec!["He", "llo", " wor", "ld"]);
    }

    #[test]
    fn a_stop_string_is_never_sent_even_in_part() {
        // "\n\nUser" stops; "\n" and "\n\n" are held back until they turn out to be text.
        let steps = ["Yes", "Yes\n", "Yes\n\n", "Yes\n\nUs", "Yes\n\nUser"];
        let out = stream(&steps, &["\n\nUser"], "Yes");
        assert_eq!(out.concat(), "Yes");
        let out = stream(&["a", "a\n", "a\nb"], &["\n\nUser"], "a\nb");
        assert_eq!(out, vec!["a", "\nb"]);
    }

    #[test]
    fn half_a_character_waits_for_the_rest() {
        let out = stream(&["caf", "caf\u{FFFD}", "café"], &[], "café");
        assert_eq!(out, vec!["caf", "é"]);
    }
}
