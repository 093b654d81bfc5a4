//! A quantized llama-architecture model loaded from one GGUF file, and its decode loop.

use super::sampler::Sampler;
use super::tokenizer::{GgufTokenizer, tokenizer_from_gguf};
use agora_runtime::ExecError;
use agora_runtime::items::generation::{Divergence, Generation, StopReason};
use agora_runtime::rng::Rng;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
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
}

/// A loaded GGUF model with its tokenizer.
pub struct Llm {
    weights: ModelWeights,
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
        let weights = ModelWeights::from_gguf(content, reader, device)
            .map_err(|e| model_err("loading the weights", e))?;
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
    /// token at a time. The two differ only by float rounding (other matmul shapes), which
    /// is how the audit thresholds are calibrated against kernel drift.
    pub fn prompt_logits(&self, prompt: &str, one_pass: bool) -> Result<Vec<f32>, ExecError> {
        let ids = self.encode(&chatml(prompt))?;
        let mut weights = self.weights.clone();
        let mut run = || -> candle_core::Result<Vec<f32>> {
            let chunks: Vec<&[u32]> = if one_pass { vec![&ids] } else { ids.chunks(1).collect() };
            let mut pos = 0;
            let mut logits = None;
            for chunk in chunks {
                let input = Tensor::new(chunk, &self.device)?.unsqueeze(0)?;
                logits = Some(weights.forward(&input, pos)?);
                pos += chunk.len();
            }
            logits.expect("a non-empty prompt").squeeze(0)?.to_vec1::<f32>()
        };
        run().map_err(|e| model_err("running the model", e))
    }

    /// The chat-templated `prompt`'s token ids, or [`ExecError::BadParams`] if there are more
    /// than [`MAX_PROMPT_TOKENS`] of them.
    pub fn prompt_tokens(&self, prompt: &str) -> Result<Vec<u32>, ExecError> {
        let ids = self.encode(&chatml(prompt))?;
        if ids.len() > MAX_PROMPT_TOKENS {
            return Err(ExecError::BadParams(format!(
                "the prompt is {} tokens, more than the limit of {MAX_PROMPT_TOKENS}",
                ids.len()
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
        let mut weights = self.weights.clone();
        let mut rng = Rng::new(req.seed);
        let forward = |weights: &mut ModelWeights, ids: &[u32], pos: usize| -> Result<Vec<f32>, ExecError> {
            let mut run = || -> candle_core::Result<Vec<f32>> {
                let input = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
                weights.forward(&input, pos)?.squeeze(0)?.to_vec1::<f32>()
            };
            run().map_err(|e| model_err("running the model", e))
        };
        let mut logits = forward(&mut weights, &prompt, 0)?;
        let mut tokens: Vec<u32> = Vec::new();
        let mut divergences = Vec::new();
        let (text, stop) = loop {
            let step = tokens.len();
            // The sampler consumes the logits; an observer sees a copy.
            let seen = observe.is_some().then(|| logits.clone());
            let choice = req.sampler.choose(logits, &mut rng);
            let token = match req.follow.and_then(|f| f.get(step)) {
                Some(&claimed) => {
                    let margin = choice.margin(claimed).ok_or_else(|| {
                        ExecError::BadAudit(format!(
                            "claimed token {claimed} is outside the vocabulary of {}",
                            self.vocab
                        ))
                    })?;
                    if claimed != choice.token {
                        divergences.push(Divergence {
                            step: step as u32,
                            claimed,
                            recomputed: choice.token,
                            margin,
                        });
                    }
                    claimed
                }
                None => choice.token,
            };
            tokens.push(token);
            let eos = self.tok.eos.contains(&token);
            let text = self.decode(if eos { &tokens[..tokens.len() - 1] } else { &tokens })?;
            if let (Some(observe), Some(seen)) = (observe.as_mut(), seen.as_ref())
                && observe(Step { index: step, token, text: &text, logits: seen }).is_break()
            {
                return Ok(None);
            }
            if eos {
                break (text, StopReason::Eos);
            }
            if let Some(cut) = req.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                break (text[..cut].to_string(), StopReason::StopString);
            }
            if tokens.len() >= req.max_new_tokens {
                break (text, StopReason::MaxTokens);
            }
            logits = forward(&mut weights, &[token], prompt.len() + step)?;
        };
        Ok(Some(Outcome { generation: Generation { text, tokens, stop }, divergences }))
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
