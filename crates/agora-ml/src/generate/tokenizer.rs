//! Rebuilds a GPT-2-style BPE tokenizer from GGUF metadata, so a GGUF file alone is a model.
//!
//! GGUF files of llama-architecture models carry `tokenizer.ggml.model = "gpt2"`, the token
//! strings, the merges and the special token ids. That is exactly a byte-level BPE: the
//! tokenizer is the BPE model with a ByteLevel pre-tokenizer (no prefix space, GPT-2 regex)
//! and ByteLevel decoder, and the control tokens (`<|im_start|>` …) registered as special
//! so they are matched whole in prompts and skipped in completions.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF's token type for control tokens.
const TOKEN_TYPE_CONTROL: i32 = 3;

/// A tokenizer and the token ids that end a completion.
pub struct GgufTokenizer {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// End-of-sequence ids: the GGUF's EOS, plus `<|im_end|>` and `<|endoftext|>` if present.
    pub eos: Vec<u32>,
}

fn get<'a>(content: &'a Content, key: &str) -> Result<&'a Value, String> {
    content.metadata.get(key).ok_or_else(|| format!("the GGUF has no {key} metadata"))
}

/// Builds the tokenizer from `content`'s metadata.
pub fn tokenizer_from_gguf(content: &Content) -> Result<GgufTokenizer, String> {
    let model = get(content, "tokenizer.ggml.model")?.to_string().map_err(|e| e.to_string())?;
    if model != "gpt2" {
        return Err(format!("tokenizer model {model:?} is not supported (only byte-level BPE, \"gpt2\")"));
    }
    let strings = |key: &str| -> Result<Vec<String>, String> {
        get(content, key)?
            .to_vec()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| e.to_string()))
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or(format!("bad merge {m:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v.to_vec().map_err(|e| e.to_string())?.iter().map(|t| t.to_i32().unwrap_or(1)).collect(),
        None => Vec::new(),
    };
    let special: Vec<AddedToken> = tokens
        .iter()
        .enumerate()
        .filter(|(i, t)| {
            types.get(*i) == Some(&TOKEN_TYPE_CONTROL) || (t.starts_with("<|") && t.ends_with("|>"))
        })
        .map(|(_, t)| AddedToken::from(t.clone(), true))
        .collect();
    tokenizer.add_special_tokens(special).map_err(|e| e.to_string())?;

    let mut eos = Vec::new();
    if let Some(v) = content.metadata.get("tokenizer.ggml.eos_token_id") {
        eos.push(v.to_u32().map_err(|e| e.to_string())?);
    }
    for name in ["<|im_end|>", "<|endoftext|>"] {
        if let Some(id) = tokens.iter().position(|t| t == name) {
            eos.push(id as u32);
        }
    }
    eos.sort_unstable();
    eos.dedup();
    if eos.is_empty() {
        return Err("the GGUF names no end-of-sequence token".into());
    }
    Ok(GgufTokenizer { tokenizer, eos })
}
