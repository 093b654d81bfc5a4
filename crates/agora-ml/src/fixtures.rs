//! Tiny randomly initialised models in the real file formats, so tests and demos exercise
//! the exact loading and inference paths without downloading anything:
//!
//! - [`write_tiny_bert`]: a 2-layer BERT (`config.json`, `model.safetensors`) with a
//!   WordPiece `tokenizer.json` shaped like MiniLM's (including its `Fixed(128)` padding,
//!   which the embedder must override);
//! - [`write_tiny_llama`]: a 2-layer llama GGUF with byte-level BPE tokenizer metadata and
//!   ChatML control tokens, quantized as asked (e.g. Q4_1, like SmolLM2 ships);
//! - [`blobs`]: a synthetic classification data set.
//!
//! All weights come from our seeded PRNG, so a fixture's bytes depend only on its seed.

use agora_runtime::items::training::Example;
use agora_runtime::rng::Rng;
use candle_core::quantized::{QTensor, gguf_file};

/// The weight types a llama fixture can be written in ([`write_tiny_llama`]).
pub use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// A fixture could not be written.
pub type FixtureResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn random(rng: &mut Rng, shape: &[usize], scale: f64) -> candle_core::Result<Tensor> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| ((rng.next_f64() * 2.0 - 1.0) * scale) as f32).collect();
    Tensor::from_vec(data, shape, &Device::Cpu)
}

/// Hidden size of the tiny BERT.
pub const TINY_BERT_HIDDEN: usize = 32;

/// Words of the tiny WordPiece vocabulary beyond single letters and `##` letters.
const WORDS: [&str; 24] = [
    "the", "a", "cat", "dog", "sat", "on", "mat", "sea", "ship", "sails", "code", "runs", "fast", "slow",
    "is", "and", "of", "to", "in", "it", "blue", "red", "computer", "network",
];

fn wordpiece_vocab() -> Vec<String> {
    let mut v: Vec<String> =
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    v.extend(".,!?'-0123456789".chars().map(String::from));
    v.extend(('a'..='z').map(String::from));
    v.extend(('a'..='z').map(|c| format!("##{c}")));
    v.extend(WORDS.iter().map(|w| w.to_string()));
    v
}

/// Writes a tiny BERT model directory (`config.json`, `model.safetensors`, `tokenizer.json`).
pub fn write_tiny_bert(dir: &Path, seed: u64) -> FixtureResult {
    std::fs::create_dir_all(dir)?;
    let vocab = wordpiece_vocab();
    let (h, inter, layers, positions) = (TINY_BERT_HIDDEN, 64, 2, 512);
    let config = serde_json::json!({
        "vocab_size": vocab.len(), "hidden_size": h, "num_hidden_layers": layers, "num_attention_heads": 4,
        "intermediate_size": inter, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
        "max_position_embeddings": positions, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "classifier_dropout": null, "model_type": "bert"
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;

    let mut rng = Rng::new(seed);
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let norm = |t: &mut HashMap<String, Tensor>, p: &str| -> candle_core::Result<()> {
        t.insert(format!("{p}.weight"), Tensor::ones(h, candle_core::DType::F32, &Device::Cpu)?);
        t.insert(format!("{p}.bias"), Tensor::zeros(h, candle_core::DType::F32, &Device::Cpu)?);
        Ok(())
    };
    t.insert("embeddings.word_embeddings.weight".into(), random(&mut rng, &[vocab.len(), h], 0.5)?);
    t.insert("embeddings.position_embeddings.weight".into(), random(&mut rng, &[positions, h], 0.1)?);
    t.insert("embeddings.token_type_embeddings.weight".into(), random(&mut rng, &[2, h], 0.1)?);
    norm(&mut t, "embeddings.LayerNorm")?;
    for l in 0..layers {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", inter, h),
            ("output.dense", h, inter),
        ] {
            t.insert(format!("{p}.{name}.weight"), random(&mut rng, &[out, inp], 0.2)?);
            t.insert(format!("{p}.{name}.bias"), random(&mut rng, &[out], 0.02)?);
        }
        norm(&mut t, &format!("{p}.attention.output.LayerNorm"))?;
        norm(&mut t, &format!("{p}.output.LayerNorm"))?;
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors"))?;

    let ids: tokenizers::models::bpe::Vocab =
        vocab.iter().enumerate().map(|(i, w)| (w.clone(), i as u32)).collect();
    let wp = WordPiece::builder().vocab(ids).unk_token("[UNK]".into()).build()?;
    let mut tok = Tokenizer::new(wp);
    tok.with_normalizer(Some(BertNormalizer::default()))?;
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(BertProcessing::new(("[SEP]".into(), 3), ("[CLS]".into(), 2))));
    tok.with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
    // Shaped like MiniLM's shipped tokenizer.json: fixed padding and truncation at 128.
    tok.with_padding(Some(PaddingParams { strategy: PaddingStrategy::Fixed(128), ..Default::default() }));
    tok.with_truncation(Some(TruncationParams { max_length: 128, ..Default::default() }))?;
    tok.save(dir.join("tokenizer.json"), false)?;
    Ok(())
}

/// Shape of the tiny llama: embedding width, FFN width, layers, heads, KV heads.
pub const TINY_LLAMA: (usize, usize, usize, usize, usize) = (64, 128, 2, 4, 2);

fn bpe_tokens() -> (Vec<String>, Vec<String>) {
    let mut tokens: Vec<String> =
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].iter().map(|s| s.to_string()).collect();
    let mut alphabet: Vec<char> =
        tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    tokens.extend(alphabet.iter().map(char::to_string));
    let merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s"];
    tokens.extend(merges.iter().map(|m| m.replace(' ', "")));
    (tokens, merges.iter().map(|m| m.to_string()).collect())
}

/// Writes a tiny llama GGUF with tokenizer metadata; 2-D weights are stored as `dtype`.
pub fn write_tiny_llama(path: &Path, seed: u64, dtype: GgmlDType) -> FixtureResult {
    use gguf_file::Value;
    let (dim, ffn, layers, heads, kv_heads) = TINY_LLAMA;
    let kv_dim = dim / heads * kv_heads;
    let (tokens, merges) = bpe_tokens();
    let vocab = tokens.len();
    let types: Vec<Value> =
        tokens.iter().map(|t| Value::I32(if t.starts_with("<|") { 3 } else { 1 })).collect();
    let strings = |v: &[String]| Value::Array(v.iter().map(|s| Value::String(s.clone())).collect());
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.attention.head_count", Value::U32(heads as u32)),
        ("llama.attention.head_count_kv", Value::U32(kv_heads as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.block_count", Value::U32(layers as u32)),
        ("llama.context_length", Value::U32(512)),
        ("llama.embedding_length", Value::U32(dim as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.rope.dimension_count", Value::U32((dim / heads) as u32)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.merges", strings(&merges)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.tokens", strings(&tokens)),
    ];
    let mut rng = Rng::new(seed);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    // 2-D weights are quantized; 1-D RMS-norm weights stay F32 and sit near 1, as in trained
    // models.
    let mut add = |name: String, shape: &[usize], scale: f64, rng: &mut Rng| -> candle_core::Result<()> {
        let t = random(rng, shape, scale)?;
        let q = if shape.len() == 2 {
            QTensor::quantize(&t, dtype)?
        } else {
            QTensor::quantize(&(t + 1.0)?, GgmlDType::F32)?
        };
        tensors.push((name, q));
        Ok(())
    };
    add("token_embd.weight".into(), &[vocab, dim], 1.0, &mut rng)?;
    for l in 0..layers {
        let p = format!("blk.{l}");
        add(format!("{p}.attn_norm.weight"), &[dim], 0.1, &mut rng)?;
        add(format!("{p}.attn_q.weight"), &[dim, dim], 0.2, &mut rng)?;
        add(format!("{p}.attn_k.weight"), &[kv_dim, dim], 0.2, &mut rng)?;
        add(format!("{p}.attn_v.weight"), &[kv_dim, dim], 0.2, &mut rng)?;
        add(format!("{p}.attn_output.weight"), &[dim, dim], 0.2, &mut rng)?;
        add(format!("{p}.ffn_norm.weight"), &[dim], 0.1, &mut rng)?;
        add(format!("{p}.ffn_gate.weight"), &[ffn, dim], 0.2, &mut rng)?;
        add(format!("{p}.ffn_down.weight"), &[dim, ffn], 0.2, &mut rng)?;
        add(format!("{p}.ffn_up.weight"), &[ffn, dim], 0.2, &mut rng)?;
    }
    add("output_norm.weight".into(), &[dim], 0.1, &mut rng)?;
    add("output.weight".into(), &[vocab, dim], 1.0, &mut rng)?;
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    gguf_file::write(&mut out, &md, &ts)?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}

/// `n` examples of `features` features in `classes` Gaussian-ish clusters around random
/// centres, with feature values in 0–16 like the digits data.
pub fn blobs(n: usize, features: usize, classes: usize, seed: u64) -> Vec<Example> {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> =
        (0..classes).map(|_| (0..features).map(|_| (rng.next_f64() * 16.0) as f32).collect()).collect();
    (0..n)
        .map(|i| {
            let label = (i % classes) as u32;
            let features = centres[label as usize]
                .iter()
                .map(|c| {
                    let noise = (rng.next_f64() + rng.next_f64() + rng.next_f64() - 1.5) * 4.0;
                    (c + noise as f32).clamp(0.0, 16.0)
                })
                .collect();
            Example { label, features }
        })
        .collect()
}
