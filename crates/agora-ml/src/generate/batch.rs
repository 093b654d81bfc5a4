//! Continuous batching: several runs of one model decoded together, each step of every run
//! one row of a shared forward pass.
//!
//! A run joins between steps (its whole prompt is fed with the others' next tokens) and leaves
//! as soon as it ends, so a long answer never holds back a short one and a new request does
//! not wait for the runs before it to finish. Every row attends only to its own run's cache,
//! and [`super::llama::Weights::forward_batch`] computes each row the same bits whatever else
//! is in the batch: a batched run chooses exactly the tokens, from exactly the logits, that
//! it would alone, so batching changes nothing an auditor replays.

use super::llama::Cache;
use super::model::{Decoding, Llm, Next, Outcome, Request, Step};
use agora_runtime::ExecError;
use candle_core::Tensor;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Where a batched run reports: each token as it is chosen, then its end.
pub trait RunSink: Send {
    /// One token of the run; `Break` stops it (then [`RunSink::done`] gets `Ok(None)`).
    fn step(&mut self, step: Step<'_>) -> ControlFlow<()>;
    /// The run's outcome, `Ok(None)` if [`RunSink::step`] stopped it.
    fn done(self: Box<Self>, outcome: Result<Option<Outcome>, ExecError>);
}

struct Active {
    run: Decoding,
    cache: Cache,
    /// What the next step feeds: the prompt, then each chosen token.
    feed: Vec<u32>,
    sink: Box<dyn RunSink>,
}

/// Runs of one model decoded together.
pub struct Batch {
    llm: Arc<Llm>,
    active: Vec<Active>,
}

impl Batch {
    /// An empty batch of `llm`'s runs.
    pub fn new(llm: Arc<Llm>) -> Self {
        Self { llm, active: vec![] }
    }

    /// Runs in the batch.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Whether no run is in the batch.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Adds a run of `req`, whose prompt is fed with the next [`Batch::step`]. A request the
    /// model refuses (a prompt too long) ends at once, through `sink`.
    pub fn admit(&mut self, req: &Request<'_>, sink: Box<dyn RunSink>) {
        let started = self
            .llm
            .prompt_tokens(req.prompt)
            .and_then(|prompt| Ok((Decoding::new(&self.llm, req, prompt.len())?, prompt)));
        match started {
            Ok((run, feed)) => {
                self.active.push(Active { run, cache: self.llm.weights().cache(), feed, sink })
            }
            Err(e) => sink.done(Err(e)),
        }
    }

    /// Feeds every run's pending tokens in one forward pass and advances each run by one
    /// token; runs that end leave the batch. A failure of the pass ends every run with it.
    pub fn step(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let logits = match self.forward() {
            Ok(logits) => logits,
            Err(e) => {
                for a in self.active.drain(..) {
                    a.sink.done(Err(ExecError::model(format!("running the model: {e}"))));
                }
                return;
            }
        };
        let mut kept = Vec::with_capacity(self.active.len());
        for (mut a, logits) in self.active.drain(..).zip(logits) {
            let mut report = |s: Step<'_>| a.sink.step(s);
            match a.run.step(&self.llm, logits, Some(&mut report)) {
                Ok(Next::Feed(token)) => {
                    a.feed = vec![token];
                    kept.push(a);
                }
                Ok(Next::Done(outcome)) => a.sink.done(Ok(Some(outcome))),
                Ok(Next::Stopped) => a.sink.done(Ok(None)),
                Err(e) => a.sink.done(Err(e)),
            }
        }
        self.active = kept;
    }

    /// The logits after each run's pending tokens, one row per run.
    fn forward(&mut self) -> candle_core::Result<Vec<Vec<f32>>> {
        let weights = self.llm.weights();
        let mut runs: Vec<(&[u32], &mut Cache)> =
            self.active.iter_mut().map(|a| (&a.feed[..], &mut a.cache)).collect();
        let hidden = weights.forward_batch(&mut runs)?;
        let last: Vec<u32> = runs
            .iter()
            .scan(0u32, |end, (ids, _)| {
                *end += ids.len() as u32;
                Some(*end - 1)
            })
            .collect();
        let rows = hidden.index_select(&Tensor::new(&last[..], hidden.device())?, 0)?;
        weights.logits(&rows)?.to_vec2::<f32>()
    }
}
