//! Warm models and the runs a provider serves on them.
//!
//! Runs take turns on the machine through a fair (first come, first served) set of slots, so
//! under load every request waits its turn and none is starved. Each run decodes on its own KV
//! cache; requests are not batched yet, though `agora_ml::generate::llama` computes each row
//! the same however rows are grouped, so batching rows of different runs would change no
//! result. Each run streams its text as it is generated.

use crate::fingerprint::Fingerprint;
use agora_ml::embed::Embedder;
use agora_ml::generate::Llm;
use agora_ml::generate::model::{Request, Step};
use agora_ml::generate::sampler::Sampler;
use agora_runtime::ExecError;
use agora_runtime::items::generation::Generation;
use std::ops::ControlFlow;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};

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

/// Runs requests on warm models, a bounded number at a time.
#[derive(Clone)]
pub struct Engine {
    slots: Arc<Semaphore>,
}

/// Batch size for embedding requests (the batching plan sentence-transformers uses).
pub const EMBED_BATCH: usize = 32;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Engine {
    /// An engine running up to `parallel` requests at once.
    pub fn new(parallel: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(parallel.max(1))) }
    }

    /// Runs a chat request, sending each piece of text to `pieces` as soon as it is final (a
    /// piece never holds part of a stop string or half a character). `Ok(None)` if `pieces`
    /// was dropped (the client left): the run stops.
    pub async fn chat(
        &self,
        llm: Arc<Llm>,
        params: ChatParams,
        pieces: mpsc::Sender<String>,
    ) -> Result<Option<ChatRun>, ExecError> {
        let _slot = self.slots.clone().acquire_owned().await.expect("never closed");
        tokio::task::spawn_blocking(move || chat_blocking(&llm, &params, &pieces))
            .await
            .map_err(|e| ExecError::model(format!("the run panicked: {e}")))?
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

fn chat_blocking(
    llm: &Llm,
    p: &ChatParams,
    pieces: &mpsc::Sender<String>,
) -> Result<Option<ChatRun>, ExecError> {
    let prompt_tokens = llm.prompt_tokens(&p.prompt)?.len() as u64;
    let req = p.request(None);
    let mut fingerprints = vec![];
    let mut first = None;
    let mut streamer = Streamer::new(&p.stop);
    let mut observe = |s: Step<'_>| {
        first.get_or_insert_with(now_ms);
        fingerprints.extend(Fingerprint::at(s.index, s.logits));
        match streamer.next(s.text).map(|piece| pieces.blocking_send(piece)) {
            Some(Err(_)) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    };
    let Some(outcome) = llm.generate_observed(&req, Some(&mut observe))? else { return Ok(None) };
    let generation = outcome.generation;
    if let Some(rest) = streamer.finish(&generation.text)
        && pieces.blocking_send(rest).is_err()
    {
        return Ok(None);
    }
    let last = now_ms();
    Ok(Some(ChatRun { generation, prompt_tokens, fingerprints, times: (first.unwrap_or(last), last) }))
}

/// Decides which part of a growing completion can be sent: never text that a stop string
/// will cut, never an incomplete character.
struct Streamer<'a> {
    sent: usize,
    stops: &'a [String],
}

impl<'a> Streamer<'a> {
    fn new(stops: &'a [String]) -> Self {
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
        let mut s = Streamer::new(&stops);
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
