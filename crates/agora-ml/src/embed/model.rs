//! A BERT sentence-embedding model as sentence-transformers runs it: tokenize (max length
//! 256, pad to the longest in the batch), encode, mean-pool over the attention mask,
//! L2-normalise.

use agora_runtime::ExecError;
use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2 (the shipped tokenizer.json
/// says 128, which would pad every sentence to 128 tokens; the model card says 256).
pub const MAX_TOKENS: usize = 256;

/// A loaded embedding model.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

fn model_err(what: &str, e: impl std::fmt::Display) -> ExecError {
    ExecError::model(format!("{what}: {e}"))
}

/// Most attention heads a BERT configuration may declare.
const MAX_HEADS: usize = 256;

/// Checks the configuration values candle's BERT uses before it reads any tensor: a positive
/// head count that divides the hidden size (candle divides by it).
fn check_config(config: &Config) -> Result<(), ExecError> {
    let (hidden, heads) = (config.hidden_size, config.num_attention_heads);
    if !(1..=MAX_HEADS).contains(&heads) || hidden == 0 || hidden % heads != 0 {
        return Err(ExecError::model(format!(
            "config.json: hidden_size {hidden} over num_attention_heads {heads} is not a whole head width (heads must be 1..={MAX_HEADS})"
        )));
    }
    Ok(())
}

impl Embedder {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `dir`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ExecError> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map_err(|e| model_err(&format!("reading {}", dir.join(name).display()), e))
        };
        Self::from_files(&read("config.json")?, read("model.safetensors")?, &read("tokenizer.json")?, device)
    }

    /// Builds the model from the bytes of its three files. Model bundles are requester-chosen,
    /// so hostile bytes give an error, never a panic: the configuration is checked before
    /// candle divides by its head count, and every tensor's shape must match the file's.
    pub fn from_files(
        config: &[u8],
        weights: Vec<u8>,
        tokenizer: &[u8],
        device: &Device,
    ) -> Result<Self, ExecError> {
        let config: Config =
            serde_json::from_slice(config).map_err(|e| model_err("parsing config.json", e))?;
        check_config(&config)?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, device)
            .map_err(|e| model_err("reading model.safetensors", e))?;
        let model = BertModel::load(vb, &config).map_err(|e| model_err("loading the BERT weights", e))?;
        let mut tokenizer =
            Tokenizer::from_bytes(tokenizer).map_err(|e| model_err("parsing tokenizer.json", e))?;
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..tokenizer.get_padding().cloned().unwrap_or_default()
        };
        tokenizer.with_padding(Some(padding));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| model_err("configuring truncation", e))?;
        Ok(Embedder { model, tokenizer, device: device.clone() })
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The number of tokens the model reads for each text: its special tokens included,
    /// after truncation to [`MAX_TOKENS`], padding excluded (what usage is counted in).
    pub fn count_tokens(&self, texts: &[&str]) -> Result<Vec<usize>, ExecError> {
        let enc =
            self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| model_err("tokenizing", e))?;
        Ok(enc.iter().map(|e| e.get_attention_mask().iter().filter(|m| **m == 1).count()).collect())
    }

    /// Embeds one batch: L2-normalised mean-pooled vectors, one per text, in order.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ExecError> {
        let enc =
            self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| model_err("tokenizing", e))?;
        let (b, len) = (enc.len(), enc.first().map_or(0, |e| e.get_ids().len()));
        let ids: Vec<u32> = enc.iter().flat_map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<u32> = enc.iter().flat_map(|e| e.get_attention_mask().to_vec()).collect();
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (b, len), &self.device)?;
            let mask = Tensor::from_vec(mask, (b, len), &self.device)?;
            let hidden = self.model.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?;
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        };
        run().map_err(|e| model_err("running the encoder", e))
    }

    /// Embeds `texts` under the batching plan: sort by length (longest first, as
    /// sentence-transformers does), cut into batches of `batch_size`, restore the order.
    pub fn embed(&self, texts: &[&str], batch_size: usize) -> Result<Vec<Vec<f32>>, ExecError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].chars().count()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, v) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_head_count_is_an_error_not_a_division_by_zero() {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write_tiny_bert(dir.path(), 1).unwrap();
        Embedder::load(dir.path(), &Device::Cpu).expect("the fixture loads");
        let path = dir.path().join("config.json");
        let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for heads in [0, 3, 100_000] {
            config["num_attention_heads"] = heads.into();
            std::fs::write(&path, config.to_string()).unwrap();
            let err = Embedder::load(dir.path(), &Device::Cpu).err().expect("refused").to_string();
            assert!(err.contains("num_attention_heads"), "{err}");
        }
    }
}
