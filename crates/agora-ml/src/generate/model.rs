//! A quantized llama-architecture model loaded from one GGUF file, and its decode loop.
//!
//! A replay that follows claimed tokens (an audit) feeds the prompt and the claimed completion
//! in one teacher-forced pass, which costs a prefill rather than a generation, and reads each
//! step's logits from that pass. [`super::llama`] makes those logits the same bits the
//! generating run saw token by token, so the replay is exact, not merely close.

use super::llama::{Cache, Weights};
use super::sampler::Sampler;
use super::tokenizer::{GgufTokenizer, tokenizer_from_gguf};
use agora_runtime::ExecError;
use agora_runtime::items::generation::{Divergence, Generation, StopReason};
use agora_runtime::rng::Rng;
use candle_core::{Device, Tensor};
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::Path;

/// The chat template SmolLM2-Instruct (and other ChatML models) were tuned on.
pub fn chatml(prompt: &str) -> String {
    format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
}

/// Most prompt tokens accepted (the rest of SmolLM2's 8,192-token context is for output).
pub const MAX_PROMPT_TOKENS: usize = 4096;

fn model_err(what: &str, e: impl std::fmt::Display) -> ExecError {
    ExecError::model(format!("{what}: {e}"))
}

/// What to generate for one prompt.
pub struct Request<'a> {
    /// The user's prompt (the chat template is applied here).
    pub prompt: &'a str,
    /// Most new tokens.
    pub max_new_tokens: usize,
    /// Stop strings.
    pub stop: &'a [String],
    /// Greedy or seeded sampling.
    pub sampler: Sampler,
    /// The item's sampling seed.
    pub seed: u64,
    /// Claimed tokens to follow (an audit replay), or none for a normal run.
    pub follow: Option<&'a [u32]>,
}

/// A generation and, when following claimed tokens, where the model disagreed.
pub struct Outcome {
    /// The generation (following the claimed tokens while they last).
    pub generation: Generation,
    /// Steps where the model would have chosen another token than the claimed one.
    pub divergences: Vec<Divergence>,
    /// Tokens the model read before the completion: the chat-templated prompt.
    pub prompt_tokens: usize,
}

/// A loaded GGUF model with its tokenizer.
pub struct Llm {
    weights: Weights,
    tok: GgufTokenizer,
    vocab: usize,
    device: Device,
}

impl Llm {
    /// Loads a GGUF file (weights and tokenizer).
    pub fn load(path: &Path, device: &Device) -> Result<Self, ExecError> {
        let file =
            std::fs::File::open(path).map_err(|e| model_err(&format!("opening {}", path.display()), e))?;
        Self::read(&mut std::io::BufReader::new(file), device)
    }

    /// Loads a GGUF model from `reader`. Every size it allocates is bounded by the header
    /// checks in [`super::header`] or by the file's own length, so hostile bytes give an
    /// error, never an abort.
    pub fn read<R: std::io::Read + std::io::Seek>(
        reader: &mut R,
        device: &Device,
    ) -> Result<Self, ExecError> {
        let content = super::header::read(reader)?;
        let tok = tokenizer_from_gguf(&content).map_err(|e| model_err("rebuilding the tokenizer", e))?;
        let vocab = tok.tokenizer.get_vocab_size(true);
        let weights =
            Weights::from_gguf(&content, reader, device).map_err(|e| model_err("loading the weights", e))?;
        Ok(Llm { weights, tok, vocab, device: device.clone() })
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The end-of-sequence token ids.
    pub fn eos(&self) -> &[u32] {
        &self.tok.eos
    }

    /// Token ids of `text` (special tokens written out in the text are recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ExecError> {
        Ok(self.tok.tokenizer.encode(text, false).map_err(|e| model_err("tokenizing", e))?.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String, ExecError> {
        self.tok.tokenizer.decode(ids, true).map_err(|e| model_err("detokenizing", e))
    }

    /// The logits after the chat-templated `prompt`, prefilled in one forward pass or one
    /// token at a time. [`super::llama`] makes the two the same bits; the calibration example
    /// shows it on real models.
    pub fn prompt_logits(&self, prompt: &str, one_pass: bool) -> Result<Vec<f32>, ExecError> {
        let ids = self.encode(&chatml(prompt))?;
        let mut cache = self.weights.cache();
        let mut run = || -> candle_core::Result<Vec<f32>> {
            let chunks: Vec<&[u32]> = if one_pass { vec![&ids] } else { ids.chunks(1).collect() };
            let mut hidden = None;
            for chunk in chunks {
                hidden = Some(self.weights.forward(chunk, &mut cache)?);
            }
            self.weights.last_logits(&hidden.expect("a non-empty prompt"))
        };
        run().map_err(|e| model_err("running the model", e))
    }

    /// The chat-templated `prompt`'s token ids, or [`ExecError::BadParams`] if there are more
    /// than [`MAX_PROMPT_TOKENS`] of them or than the model's context holds.
    pub fn prompt_tokens(&self, prompt: &str) -> Result<Vec<u32>, ExecError> {
        let ids = self.encode(&chatml(prompt))?;
        let limit = MAX_PROMPT_TOKENS.min(self.weights.context());
        if ids.len() > limit {
            return Err(ExecError::BadParams(format!(
                "the prompt is {} tokens, more than the limit of {limit} (the model's context is {})",
                ids.len(),
                self.weights.context()
            )));
        }
        Ok(ids)
    }

    /// Runs the decode loop for one prompt. Each call starts from an empty KV cache, on its
    /// own copy of the (shared, reference-counted) weights.
    pub fn generate(&self, req: &Request<'_>) -> Result<Outcome, ExecError> {
        Ok(self.generate_observed(req, None)?.expect("nothing cancels an unobserved run"))
    }

    /// [`Llm::generate`], reporting each token to `observe` as soon as it is chosen (for
    /// streaming). The observer can stop the run: then `Ok(None)`.
    pub fn generate_observed(
        &self,
        req: &Request<'_>,
        mut observe: Option<&mut Observer<'_>>,
    ) -> Result<Option<Outcome>, ExecError> {
        let prompt = self.prompt_tokens(req.prompt)?;
        let mut run = Decoding::new(self, req, prompt.len())?;
        // Every claimed token but the last is fed with the prompt, in one pass.
        let fed = [&prompt[..], run.claimed_ahead()].concat();
        let mut source = Logits::new(&self.weights, &fed, prompt.len() - 1)?;
        let mut logits = source.next(None)?;
        loop {
            match run.step(self, logits, observe.as_deref_mut())? {
                Next::Feed(token) => logits = source.next(Some(token))?,
                Next::Done(outcome) => return Ok(Some(outcome)),
                Next::Stopped => return Ok(None),
            }
        }
    }

    /// The weights, for runs that feed them directly ([`super::batch`]).
    pub(super) fn weights(&self) -> &Weights {
        &self.weights
    }
}

/// What a run does after choosing a token.
pub(super) enum Next {
    /// Feed the token and choose the next from the logits that follow.
    Feed(u32),
    /// The run is over.
    Done(Outcome),
    /// The observer stopped the run.
    Stopped,
}

/// One run's decode loop, a step at a time: chooses each token from the logits it is given
/// (or follows the claimed one), reports it, and stops at an end-of-sequence token, a stop
/// string, or its token budget. Where the logits come from (one run's passes, or a batch's
/// shared ones) is the caller's business; they are the same bits either way.
pub(super) struct Decoding {
    sampler: Sampler,
    rng: Rng,
    stop: Vec<String>,
    /// The claimed tokens to follow, cut to the budget.
    claimed: Vec<u32>,
    max_new_tokens: usize,
    prompt_tokens: usize,
    tokens: Vec<u32>,
    divergences: Vec<Divergence>,
}

impl Decoding {
    /// A run of `req` after a prompt of `prompt` tokens (which the context holds).
    pub(super) fn new(llm: &Llm, req: &Request<'_>, prompt: usize) -> Result<Self, ExecError> {
        // A run ends where the model's context does: the n-th new token is chosen after
        // feeding the prompt and n − 1 tokens. So a claim that runs past the context is cut
        // there, and differs from its replay, rather than making the replay fail.
        let max_new_tokens = req.max_new_tokens.min(llm.weights.context() + 1 - prompt);
        let claimed = req.follow.map_or(&[][..], |f| &f[..f.len().min(max_new_tokens)]);
        // A claimed token the model cannot read is the claim's fault, found before any is fed.
        if let Some(bad) = claimed.iter().find(|&&t| t as usize >= llm.weights.vocab()) {
            return Err(ExecError::BadAudit(format!(
                "claimed token {bad} is outside the vocabulary of {}",
                llm.weights.vocab()
            )));
        }
        Ok(Decoding {
            sampler: req.sampler,
            rng: Rng::new(req.seed),
            stop: req.stop.to_vec(),
            claimed: claimed.to_vec(),
            max_new_tokens,
            prompt_tokens: prompt,
            tokens: vec![],
            divergences: vec![],
        })
    }

    /// The claimed tokens that may be fed before the first step: all but the last.
    pub(super) fn claimed_ahead(&self) -> &[u32] {
        &self.claimed[..self.claimed.len().saturating_sub(1)]
    }

    /// Chooses the next token from `logits`, reports it to `observe`, and says what follows.
    pub(super) fn step(
        &mut self,
        llm: &Llm,
        logits: Vec<f32>,
        observe: Option<&mut Observer<'_>>,
    ) -> Result<Next, ExecError> {
        let step = self.tokens.len();
        // The sampler consumes the logits; an observer sees a copy.
        let seen = observe.is_some().then(|| logits.clone());
        let choice = self.sampler.choose(logits, &mut self.rng);
        let token = match self.claimed.get(step) {
            Some(&claimed) => {
                let margin = choice.margin(claimed).ok_or_else(|| {
                    ExecError::BadAudit(format!(
                        "claimed token {claimed} is outside the vocabulary of {}",
                        llm.vocab
                    ))
                })?;
                if claimed != choice.token {
                    let recomputed = choice.token;
                    self.divergences.push(Divergence { step: step as u32, claimed, recomputed, margin });
                }
                claimed
            }
            None => choice.token,
        };
        self.tokens.push(token);
        let eos = llm.tok.eos.contains(&token);
        let text = llm.decode(if eos { &self.tokens[..self.tokens.len() - 1] } else { &self.tokens })?;
        if let (Some(observe), Some(seen)) = (observe, seen.as_ref())
            && observe(Step { index: step, token, text: &text, logits: seen }).is_break()
        {
            return Ok(Next::Stopped);
        }
        let stop = if eos {
            Some((text, StopReason::Eos))
        } else if let Some(cut) = self.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            Some((text[..cut].to_string(), StopReason::StopString))
        } else if self.tokens.len() >= self.max_new_tokens {
            Some((text, StopReason::MaxTokens))
        } else {
            None
        };
        Ok(match stop {
            None => Next::Feed(token),
            Some((text, stop)) => Next::Done(Outcome {
                generation: Generation { text, tokens: std::mem::take(&mut self.tokens), stop },
                divergences: std::mem::take(&mut self.divergences),
                prompt_tokens: self.prompt_tokens,
            }),
        })
    }
}

/// Where each step's logits come from: the rows of a forward pass, from a given row on, while
/// they last; then one fed token at a time.
struct Logits<'a> {
    weights: &'a Weights,
    cache: Cache,
    /// The pass's final hidden states from the first row read, and the next row to project.
    rows: Tensor,
    next: usize,
    /// Projected rows not yet read.
    projected: VecDeque<Vec<f32>>,
}

/// Rows projected to logits at a time (a `rows × vocab` buffer).
const PROJECT_ROWS: usize = 16;

impl<'a> Logits<'a> {
    /// Feeds `ids` (not empty) in one pass; rows from `first` on are read in order.
    fn new(weights: &'a Weights, ids: &[u32], first: usize) -> Result<Self, ExecError> {
        let mut cache = weights.cache();
        let run = |cache: &mut Cache| -> candle_core::Result<Tensor> {
            let hidden = weights.forward(ids, cache)?;
            hidden.narrow(0, first, ids.len() - first)
        };
        let rows = run(&mut cache).map_err(|e| model_err("running the model", e))?;
        Ok(Logits { weights, cache, rows, next: 0, projected: VecDeque::new() })
    }

    /// The next step's logits: the next row of the pass, or else those after feeding `token`
    /// (the token chosen at the step before).
    fn next(&mut self, token: Option<u32>) -> Result<Vec<f32>, ExecError> {
        let mut run = || -> candle_core::Result<Option<Vec<f32>>> {
            if self.projected.is_empty() {
                let left = self.rows.dim(0)? - self.next;
                if left > 0 {
                    let n = left.min(PROJECT_ROWS);
                    let rows = self.weights.logits(&self.rows.narrow(0, self.next, n)?)?;
                    self.projected.extend(rows.to_vec2::<f32>()?);
                    self.next += n;
                }
            }
            if let Some(row) = self.projected.pop_front() {
                return Ok(Some(row));
            }
            match token {
                Some(t) => Ok(Some(self.weights.last_logits(&self.weights.forward(&[t], &mut self.cache)?)?)),
                None => Ok(None),
            }
        };
        run()
            .map_err(|e| model_err("running the model", e))?
            .ok_or_else(|| ExecError::model("no token to feed"))
    }
}

/// What [`Llm::generate_observed`] calls after each token; `Break` stops the run.
pub type Observer<'a> = dyn FnMut(Step<'_>) -> ControlFlow<()> + 'a;

/// One token of a run, as [`Llm::generate_observed`] reports it.
pub struct Step<'a> {
    /// Position of the token in the completion.
    pub index: usize,
    /// The token chosen.
    pub token: u32,
    /// The completion's text so far, without an end-of-sequence token (stop strings are cut
    /// only from the final text).
    pub text: &'a str,
    /// The logits the token was chosen from.
    pub logits: &'a [f32],
}
