//! The MLP classifier (inputs → hidden → ReLU → classes) and its AdamW optimizer, with the
//! full training state convertible to and from a checkpoint item.
//!
//! AdamW is written out here rather than taken from `candle_nn` because its moments must go
//! into checkpoints; the update is candle's (decoupled weight decay:
//! `w ← w·(1 − lr·λ) − lr·m̂/(√v̂ + ε)`). Initialisation is U(±1/√fan_in) from our seeded
//! PRNG, since candle's CPU RNG cannot be seeded.

use agora_runtime::ExecError;
use agora_runtime::items::training::{Checkpoint, Tensor as ItemTensor};
use agora_runtime::rng::{Rng, derive_seed};
use candle_core::{Device, Tensor, Var};

/// AdamW β1.
pub const BETA1: f64 = 0.9;
/// AdamW β2.
pub const BETA2: f64 = 0.999;
/// AdamW ε.
pub const EPS: f64 = 1e-8;
/// AdamW decoupled weight decay λ (candle's default).
pub const WEIGHT_DECAY: f64 = 0.01;

const NAMES: [&str; 4] = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"];

/// Parameters and optimizer state.
pub struct TrainState {
    /// Steps taken.
    pub step: u32,
    params: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

fn shapes(inputs: usize, hidden: usize, classes: usize) -> [Vec<usize>; 4] {
    [vec![hidden, inputs], vec![hidden], vec![classes, hidden], vec![classes]]
}

impl TrainState {
    /// Fresh parameters drawn from `seed`, zero moments.
    pub fn init(
        seed: u64,
        inputs: usize,
        hidden: usize,
        classes: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let mut rng = Rng::new(derive_seed("agora/ml/train-init", &[seed]));
        let mut params = Vec::new();
        for shape in shapes(inputs, hidden, classes) {
            let fan_in = if shape.len() == 2 {
                shape[1]
            } else if params.len() == 1 {
                inputs
            } else {
                hidden
            };
            let bound = 1.0 / (fan_in as f64).sqrt();
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32).collect();
            params.push(Var::from_tensor(&Tensor::from_vec(data, shape, device)?)?);
        }
        let zeros =
            params.iter().map(|p| p.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(TrainState { step: 0, params, m: zeros.clone(), v: zeros })
    }

    /// Restores the state saved in `ckpt`, checking it fits the model's shape.
    pub fn from_checkpoint(
        ckpt: &Checkpoint,
        inputs: usize,
        hidden: usize,
        classes: usize,
        device: &Device,
    ) -> Result<Self, ExecError> {
        let expect = shapes(inputs, hidden, classes);
        let load = |list: &[ItemTensor], suffix: &str| -> Result<Vec<Tensor>, ExecError> {
            if list.len() != 4 {
                return Err(ExecError::BadAudit(format!(
                    "checkpoint holds {} tensors, expected 4",
                    list.len()
                )));
            }
            list.iter()
                .zip(NAMES.iter().zip(&expect))
                .map(|(t, (name, shape))| {
                    let dims: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
                    if t.name != format!("{name}{suffix}") || dims != *shape {
                        return Err(ExecError::BadAudit(format!(
                            "checkpoint tensor {:?} {:?} does not fit {name}{suffix} {shape:?}",
                            t.name, t.shape
                        )));
                    }
                    Tensor::from_vec(t.data.clone(), dims, device).map_err(ExecError::model)
                })
                .collect()
        };
        let params =
            load(&ckpt.params, "")?.iter().map(Var::from_tensor).collect::<candle_core::Result<Vec<_>>>();
        let moments = &ckpt.optimizer;
        let (m, v): (Vec<ItemTensor>, Vec<ItemTensor>) = (
            moments.iter().step_by(2).cloned().collect(),
            moments.iter().skip(1).step_by(2).cloned().collect(),
        );
        Ok(TrainState {
            step: ckpt.step,
            params: params.map_err(ExecError::model)?,
            m: load(&m, ".m")?,
            v: load(&v, ".v")?,
        })
    }

    /// The checkpoint of this state at cursor `(epoch, position)`.
    pub fn checkpoint(&self, epoch: u32, position: u32, loss: f32) -> candle_core::Result<Checkpoint> {
        let item = |t: &Tensor, name: String| -> candle_core::Result<ItemTensor> {
            Ok(ItemTensor {
                name,
                shape: t.dims().iter().map(|&d| d as u32).collect(),
                data: t.flatten_all()?.to_vec1::<f32>()?,
            })
        };
        let params = self
            .params
            .iter()
            .zip(NAMES)
            .map(|(p, n)| item(p.as_tensor(), n.to_string()))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut optimizer = Vec::with_capacity(8);
        for ((m, v), n) in self.m.iter().zip(&self.v).zip(NAMES) {
            optimizer.push(item(m, format!("{n}.m"))?);
            optimizer.push(item(v, format!("{n}.v"))?);
        }
        Ok(Checkpoint { step: self.step, epoch, position, loss, params, optimizer })
    }

    /// Class scores for a batch of features.
    pub fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let p = |i: usize| self.params[i].as_tensor();
        let h = x.matmul(&p(0).t()?)?.broadcast_add(p(1))?.relu()?;
        h.matmul(&p(2).t()?)?.broadcast_add(p(3))
    }

    /// One AdamW step on a batch; returns the batch loss.
    pub fn step(&mut self, x: &Tensor, y: &Tensor, lr: f64) -> candle_core::Result<f32> {
        let loss = candle_nn::loss::cross_entropy(&self.logits(x)?, y)?;
        let grads = loss.backward()?;
        self.step += 1;
        let t = f64::from(self.step);
        let (c1, c2) = (1.0 - BETA1.powf(t), 1.0 - BETA2.powf(t));
        for i in 0..self.params.len() {
            let w = self.params[i].as_tensor();
            let g = grads.get(w).ok_or_else(|| candle_core::Error::Msg("missing gradient".into()))?;
            self.m[i] = ((&self.m[i] * BETA1)? + (g * (1.0 - BETA1))?)?;
            self.v[i] = ((&self.v[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let m_hat = (&self.m[i] / c1)?;
            let v_hat = (&self.v[i] / c2)?;
            let update = (m_hat / (v_hat.sqrt()? + EPS)?)?;
            let next = ((w * (1.0 - lr * WEIGHT_DECAY))? - (update * lr)?)?;
            self.params[i].set(&next)?;
        }
        loss.to_scalar::<f32>()
    }
}
