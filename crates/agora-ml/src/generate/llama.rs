//! A llama-architecture decoder over quantized GGUF weights whose logits at a position are
//! the same bits however the sequence reached it: decoded token by token, prefilled as a
//! prompt, or teacher-forced along a whole completion in one pass.
//!
//! That property is what lets an auditor check a served completion at the cost of a prefill
//! rather than of a generation: one forward pass over prompt plus completion yields the
//! logits of every step, and each must equal what the provider saw while decoding (see
//! `agora_serve::audit`). candle's `quantized_llama` cannot give it: it returns only the last
//! position's logits, and its attention runs masked GEMMs whose summation order depends on
//! how many positions are fed at once (prefilling a prompt in one pass moved the logits by up
//! to 0.88 against token by token, `crates/agora-ml/CALIBRATION.md`).
//!
//! Here every operation is computed row by row with an order that does not depend on the
//! number of rows:
//! - the matmuls run candle's quantized kernel (`k_quants::matmul`, for float weights too),
//!   which converts each input row on its own and computes each output element with the same
//!   `vec_dot` for any row count;
//! - RMS norm, SiLU, the residual adds and the embedding lookup are per row or per element;
//! - rotary embeddings and attention are computed here, in plain Rust, per row and per head,
//!   over exactly the positions up to the row's own, in a fixed order.
//!
//! The weights are those of candle's `quantized_llama` (the GGUF llama layout), loaded the
//! same way; mixture-of-experts files are refused.

use candle_core::quantized::{QMatMul, QTensor, gguf_file};
use candle_core::{Device, Module, Result, Tensor, bail};
use candle_nn::Embedding;
use candle_transformers::quantized_nn::RmsNorm;

/// Longest context accepted when the file names none.
const DEFAULT_CONTEXT: usize = 4096;

struct Layer {
    attention_norm: RmsNorm,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: RmsNorm,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
}

/// The shape of the network, from the file's metadata.
#[derive(Debug, Clone, Copy)]
struct Shape {
    dim: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    context: usize,
    rope_base: f32,
    /// NEOX rotary pairs `(i, i + d/2)`; otherwise llama's interleaved `(2i, 2i + 1)`.
    neox: bool,
}

/// A loaded model: immutable, shared by every run (each run has its own [`Cache`]).
pub struct Weights {
    embeddings: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QMatMul,
    shape: Shape,
    vocab: usize,
}

/// One run's keys and values: per layer, `[position][kv head][head dim]` row-major.
pub struct Cache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl Cache {
    /// Positions fed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn metadata<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value> {
    ct.metadata.get(key).ok_or_else(|| candle_core::Error::Msg(format!("cannot find {key} in metadata")))
}

/// Reads tensor `name`, which must have the dims `want` (outer first).
fn tensor<R: std::io::Seek + std::io::Read>(
    ct: &gguf_file::Content,
    reader: &mut R,
    name: &str,
    want: &[usize],
    device: &Device,
) -> Result<QTensor> {
    let t = ct.tensor(reader, name, device)?;
    if t.shape().dims() != want {
        bail!("tensor {name} has shape {:?}, the model's metadata needs {want:?}", t.shape().dims());
    }
    Ok(t)
}

/// A matmul by `weights` through candle's quantized kernel, whatever their type: it computes
/// each output element on its own row (`QMatMul::from_qtensor` would dequantize float weights
/// to a GEMM whose rounding depends on the row count).
fn row_wise(weights: QTensor) -> QMatMul {
    QMatMul::QTensor(std::sync::Arc::new(weights))
}

impl Weights {
    /// Loads the weights of a GGUF llama whose header passed `super::header::check`.
    pub fn from_gguf<R: std::io::Seek + std::io::Read>(
        ct: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Self> {
        let u = |key: &str| metadata(ct, key).and_then(|v| v.to_u32()).map(|v| v as usize);
        if u("llama.expert_count").unwrap_or(0) > 1 {
            bail!("mixture-of-experts models are not supported");
        }
        let (dim, heads, kv_heads) = (
            u("llama.embedding_length")?,
            u("llama.attention.head_count")?,
            u("llama.attention.head_count_kv")?,
        );
        let head_dim = dim / heads;
        if u("llama.rope.dimension_count")? != head_dim || !head_dim.is_multiple_of(2) {
            bail!("rotary embeddings must cover the whole (even) head width {head_dim}");
        }
        let arch =
            metadata(ct, "general.architecture").and_then(|v| v.to_string().cloned()).unwrap_or_default();
        // llama.cpp's mapping of architectures to rotary conventions (as candle's loader).
        let neox = matches!(
            arch.as_str(),
            "qwen" | "qwen2" | "qwen3" | "falcon" | "phi2" | "phi3" | "stablelm" | "starcoder2" | "olmo2"
        );
        let shape = Shape {
            dim,
            heads,
            kv_heads,
            head_dim,
            context: u("llama.context_length").unwrap_or(DEFAULT_CONTEXT),
            rope_base: metadata(ct, "llama.rope.freq_base").and_then(|v| v.to_f32()).unwrap_or(10_000.0),
            neox,
        };
        let eps = f64::from(metadata(ct, "llama.attention.layer_norm_rms_epsilon")?.to_f32()?);
        let norm = |reader: &mut R, name: &str| {
            RmsNorm::from_qtensor(tensor(ct, reader, name, &[dim], device)?, eps)
        };
        let embedding_q = ct.tensor(reader, "token_embd.weight", device)?;
        let vocab = match embedding_q.shape().dims() {
            [vocab, d] if *d == dim => *vocab,
            dims => bail!("token_embd.weight has shape {dims:?}, not [vocab, {dim}]"),
        };
        let embeddings = Embedding::new(embedding_q.dequantize(device)?, dim);
        let output = match ct.tensor_infos.contains_key("output.weight") {
            true => tensor(ct, reader, "output.weight", &[vocab, dim], device)?,
            false => embedding_q,
        };
        let kv_dim = kv_heads * head_dim;
        let mut layers = Vec::new();
        for i in 0..u("llama.block_count")? {
            let mut q = |name: &str, dims: &[usize]| -> Result<QMatMul> {
                Ok(row_wise(tensor(ct, reader, &format!("blk.{i}.{name}.weight"), dims, device)?))
            };
            let (wq, wk, wv, wo) = (
                q("attn_q", &[dim, dim])?,
                q("attn_k", &[kv_dim, dim])?,
                q("attn_v", &[kv_dim, dim])?,
                q("attn_output", &[dim, dim])?,
            );
            let ffn = ct
                .tensor_infos
                .get(&format!("blk.{i}.ffn_up.weight"))
                .map(|t| t.shape.dims()[0])
                .ok_or_else(|| candle_core::Error::Msg(format!("blk.{i}.ffn_up.weight is missing")))?;
            let (gate, up, down) =
                (q("ffn_gate", &[ffn, dim])?, q("ffn_up", &[ffn, dim])?, q("ffn_down", &[dim, ffn])?);
            layers.push(Layer {
                attention_norm: norm(reader, &format!("blk.{i}.attn_norm.weight"))?,
                ffn_norm: norm(reader, &format!("blk.{i}.ffn_norm.weight"))?,
                wq,
                wk,
                wv,
                wo,
                gate,
                up,
                down,
            });
        }
        Ok(Weights {
            embeddings,
            layers,
            norm: norm(reader, "output_norm.weight")?,
            output: row_wise(output),
            shape,
            vocab,
        })
    }

    /// Tokens the model reads and scores.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Most positions (prompt plus completion) one run may feed.
    pub fn context(&self) -> usize {
        self.shape.context
    }

    /// An empty cache for a run.
    pub fn cache(&self) -> Cache {
        let n = self.layers.len();
        Cache { keys: vec![Vec::new(); n], values: vec![Vec::new(); n], len: 0 }
    }

    /// Feeds `ids` at the positions after those already in `cache` and returns their final
    /// (normalised) hidden states, one row per id. Row `i` is the same bits whether `ids`
    /// came in one call or one id per call.
    pub fn forward(&self, ids: &[u32], cache: &mut Cache) -> Result<Tensor> {
        self.forward_batch(&mut [(ids, cache)])
    }

    /// Feeds several runs at once, each its `ids` after what its cache holds, and returns the
    /// final hidden states of every fed id, the runs' rows one after the other. The runs share
    /// the matmuls and each row attends only to its own run's cache, so every row is the same
    /// bits as when its run is fed alone ([`Weights::forward`]), whatever else is in the
    /// batch. Nothing is fed if any run does not fit the context.
    pub fn forward_batch(&self, runs: &mut [(&[u32], &mut Cache)]) -> Result<Tensor> {
        for (ids, cache) in runs.iter() {
            if ids.is_empty() || cache.len + ids.len() > self.shape.context {
                bail!(
                    "{} positions after {} do not fit the model's context of {}",
                    ids.len(),
                    cache.len,
                    self.shape.context
                );
            }
        }
        let device = self.embeddings.embeddings().device();
        let all: Vec<u32> = runs.iter().flat_map(|(ids, _)| ids.iter().copied()).collect();
        let ropes: Vec<Rope> = runs.iter().map(|(ids, c)| Rope::new(&self.shape, c.len, ids.len())).collect();
        let mut x = self.embeddings.forward(&Tensor::new(&all[..], device)?)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = layer.attention_norm.forward(&x)?;
            let mut q = layer.wq.forward(&h)?.to_vec2::<f32>()?;
            let mut k = layer.wk.forward(&h)?.to_vec2::<f32>()?;
            let v = layer.wv.forward(&h)?.to_vec2::<f32>()?;
            let mut attended = Vec::with_capacity(all.len() * self.shape.dim);
            let mut first = 0;
            for ((ids, cache), rope) in runs.iter_mut().zip(&ropes) {
                let rows = first..first + ids.len();
                let start = cache.len;
                for (row, (q, k)) in q[rows.clone()].iter_mut().zip(&mut k[rows.clone()]).enumerate() {
                    rope.apply(row, q);
                    rope.apply(row, k);
                }
                for (k, v) in k[rows.clone()].iter().zip(&v[rows.clone()]) {
                    cache.keys[l].extend_from_slice(k);
                    cache.values[l].extend_from_slice(v);
                }
                for (row, q) in q[rows].iter().enumerate() {
                    let positions = start + row + 1;
                    attended.extend(attend(&self.shape, q, &cache.keys[l], &cache.values[l], positions));
                }
                first += ids.len();
            }
            let attended = Tensor::from_vec(attended, (all.len(), self.shape.dim), device)?;
            x = (layer.wo.forward(&attended)? + x)?;
            let h = layer.ffn_norm.forward(&x)?;
            let mlp = (candle_nn::ops::silu(&layer.gate.forward(&h)?)? * layer.up.forward(&h)?)?;
            x = (layer.down.forward(&mlp)? + x)?;
        }
        for (ids, cache) in runs.iter_mut() {
            cache.len += ids.len();
        }
        self.norm.forward(&x)
    }

    /// The logits of `hidden` states (`rows × vocab`), each row computed on its own.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.output.forward(&hidden.contiguous()?)
    }

    /// The logits of the last row of `hidden`.
    pub fn last_logits(&self, hidden: &Tensor) -> Result<Vec<f32>> {
        let rows = hidden.dim(0)?;
        self.logits(&hidden.narrow(0, rows - 1, 1)?)?.squeeze(0)?.to_vec1()
    }
}

/// Rotary angles for a run of rows.
struct Rope {
    /// `[row][pair]` cosines and sines.
    cos: Vec<f32>,
    sin: Vec<f32>,
    pairs: usize,
    heads_dim: usize,
    neox: bool,
}

impl Rope {
    fn new(s: &Shape, start: usize, rows: usize) -> Self {
        let pairs = s.head_dim / 2;
        let theta: Vec<f32> =
            (0..pairs).map(|i| 1.0 / s.rope_base.powf((2 * i) as f32 / s.head_dim as f32)).collect();
        let angles = (start..start + rows).flat_map(|p| theta.iter().map(move |t| p as f32 * t));
        let (cos, sin) = angles.map(|a| (a.cos(), a.sin())).unzip();
        Rope { cos, sin, pairs, heads_dim: s.head_dim, neox: s.neox }
    }

    /// Rotates every head of one row (`[head][head dim]`).
    fn apply(&self, row: usize, x: &mut [f32]) {
        let cos = &self.cos[row * self.pairs..][..self.pairs];
        let sin = &self.sin[row * self.pairs..][..self.pairs];
        for head in x.chunks_exact_mut(self.heads_dim) {
            for i in 0..self.pairs {
                let (a, b) = if self.neox { (i, i + self.pairs) } else { (2 * i, 2 * i + 1) };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}

/// A dot product in a fixed order: eight interleaved partial sums (which the compiler keeps
/// in vector registers without reordering anything), then those sums in a fixed tree.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Causal attention of one row's queries (`[head][head dim]`) over the first `positions`
/// cached keys and values; returns the row's `[head][head dim]` output.
fn attend(s: &Shape, q: &[f32], keys: &[f32], values: &[f32], positions: usize) -> Vec<f32> {
    let (hd, kv_dim) = (s.head_dim, s.kv_heads * s.head_dim);
    let group = s.heads / s.kv_heads;
    let scale = (hd as f32).sqrt();
    let mut out = vec![0f32; s.heads * hd];
    let mut scores = vec![0f32; positions];
    for (h, (q, out)) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)).enumerate() {
        let kv = (h / group) * hd;
        for (p, score) in scores.iter_mut().enumerate() {
            *score = dot(q, &keys[p * kv_dim + kv..][..hd]) / scale;
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for score in &mut scores {
            *score = (*score - max).exp();
            sum += *score;
        }
        for (p, weight) in scores.iter().enumerate() {
            let weight = weight / sum;
            for (o, v) in out.iter_mut().zip(&values[p * kv_dim + kv..][..hd]) {
                *o += weight * v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{GgmlDType, write_tiny_llama};

    fn load(dtype: GgmlDType) -> (tempfile::TempDir, Weights) {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_llama(&dir.path().join("model.gguf"), 7, dtype).unwrap();
        let mut f = std::fs::File::open(dir.path().join("model.gguf")).unwrap();
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let w = Weights::from_gguf(&ct, &mut f, &Device::Cpu).unwrap();
        (dir, w)
    }

    #[test]
    fn every_position_is_the_same_bits_however_it_was_fed() {
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_1, GgmlDType::F32] {
            let (_dir, w) = load(dtype);
            let ids: Vec<u32> = (0..40).map(|i| (i * 7 + 3) % 60).collect();
            let mut one = w.cache();
            let all = w.logits(&w.forward(&ids, &mut one).unwrap()).unwrap().to_vec2::<f32>().unwrap();
            let mut step = w.cache();
            let mut chunked = w.cache();
            w.forward(&ids[..17], &mut chunked).unwrap();
            for (i, id) in ids.iter().enumerate() {
                let row = w.last_logits(&w.forward(&[*id], &mut step).unwrap()).unwrap();
                assert_eq!(row, all[i], "{dtype:?}: position {i} token by token");
            }
            let rest =
                w.logits(&w.forward(&ids[17..], &mut chunked).unwrap()).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(rest[..], all[17..], "{dtype:?}: a prompt then the rest in one pass");
            assert_eq!((one.len(), step.len(), chunked.len()), (40, 40, 40));
        }
    }

    #[test]
    fn a_run_batched_with_others_is_the_same_bits_as_alone() {
        for dtype in [GgmlDType::Q8_0, GgmlDType::F32] {
            let (_dir, w) = load(dtype);
            let seq = |seed: u32, n: u32| -> Vec<u32> { (0..n).map(|i| (i * seed + 3) % 60).collect() };
            let (a, b, c) = (seq(7, 30), seq(11, 9), seq(5, 21));
            let alone = |ids: &[u32]| {
                let mut cache = w.cache();
                w.logits(&w.forward(ids, &mut cache).unwrap()).unwrap().to_vec2::<f32>().unwrap()
            };
            // a: a prompt of 12 then one token a step; b: all at once in the first batch;
            // c: joins at the third step with a prompt of 19, then one token a step.
            let (mut ca, mut cb, mut cc) = (w.cache(), w.cache(), w.cache());
            let mut got: [Vec<Vec<f32>>; 3] = Default::default();
            let mut rows = |runs: &mut [(&[u32], &mut Cache)], which: &[usize]| {
                let logits = w.logits(&w.forward_batch(runs).unwrap()).unwrap().to_vec2::<f32>().unwrap();
                let mut at = 0;
                for ((ids, _), &i) in runs.iter().zip(which) {
                    got[i].extend_from_slice(&logits[at..at + ids.len()]);
                    at += ids.len();
                }
            };
            rows(&mut [(&a[..12], &mut ca), (&b[..], &mut cb)], &[0, 1]);
            for step in 12..30 {
                if step < 14 {
                    rows(&mut [(&a[step..=step], &mut ca)], &[0]);
                } else if step == 14 {
                    rows(&mut [(&a[step..=step], &mut ca), (&c[..19], &mut cc)], &[0, 2]);
                } else {
                    let j = step - 14 + 18;
                    if j < c.len() {
                        rows(&mut [(&c[j..=j], &mut cc), (&a[step..=step], &mut ca)], &[2, 0]);
                    } else {
                        rows(&mut [(&a[step..=step], &mut ca)], &[0]);
                    }
                }
            }
            assert_eq!(got[0], alone(&a), "{dtype:?}: a");
            assert_eq!(got[1], alone(&b), "{dtype:?}: b");
            assert_eq!(got[2], alone(&c), "{dtype:?}: c");
            // A run that does not fit the context feeds nobody.
            let mut d = w.cache();
            let too_long = vec![1; w.context() + 1];
            assert!(w.forward_batch(&mut [(&a[..1], &mut d), (&too_long[..], &mut w.cache())]).is_err());
            assert!(d.is_empty());
        }
    }

    #[test]
    fn computes_what_candles_llama_computes() {
        let (dir, w) = load(GgmlDType::Q8_0);
        let mut f = std::fs::File::open(dir.path().join("model.gguf")).unwrap();
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let mut candle =
            candle_transformers::models::quantized_llama::ModelWeights::from_gguf(ct, &mut f, &Device::Cpu)
                .unwrap();
        let ids: Vec<u32> = (0..24).map(|i| (i * 5 + 1) % 60).collect();
        let theirs: Vec<f32> = candle
            .forward(&Tensor::new(&ids[..], &Device::Cpu).unwrap().unsqueeze(0).unwrap(), 0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let ours = w.last_logits(&w.forward(&ids, &mut w.cache()).unwrap()).unwrap();
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-3, "largest logit difference {worst}");
    }

    #[test]
    fn a_run_past_the_context_is_an_error_not_a_panic() {
        let (_dir, w) = load(GgmlDType::Q8_0);
        let mut cache = w.cache();
        let err = w.forward(&vec![1; w.context() + 1], &mut cache).unwrap_err().to_string();
        assert!(err.contains("context"), "{err}");
        assert!(w.forward(&[], &mut cache).is_err());
        assert!(cache.is_empty());
    }
}
