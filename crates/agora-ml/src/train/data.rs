//! A training data set on the device, and the seeded order in which batches are drawn.
//!
//! Features are scaled by the largest feature value in the data set (digits: 16), so the
//! same data always gives the same inputs. Each epoch visits the examples in a permutation
//! drawn from `(seed, epoch)`; a batch never straddles two epochs (the tail that does not
//! fill a batch is skipped), so the cursor is just `(epoch, position)`.

use agora_runtime::ExecError;
use agora_runtime::items::training::Example;
use agora_runtime::rng::{Rng, derive_seed};
use candle_core::{Device, Tensor};

/// The examples as device tensors, with their shape.
pub struct Dataset {
    features: Tensor,
    labels: Tensor,
    /// Number of examples.
    pub len: usize,
    /// Features per example.
    pub inputs: usize,
    /// Number of classes (largest label + 1).
    pub classes: usize,
}

impl Dataset {
    /// Decodes example items into device tensors.
    pub fn from_items(items: &[(u32, &[u8])], device: &Device) -> Result<Self, ExecError> {
        let examples = items
            .iter()
            .map(|&(index, bytes)| {
                Example::from_item(bytes).map_err(|e| ExecError::BadInput { index, reason: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inputs = examples.first().map_or(0, |e| e.features.len());
        if inputs == 0 {
            return Err(ExecError::BadParams("training needs at least one example with features".into()));
        }
        if let Some(i) = examples.iter().position(|e| e.features.len() != inputs) {
            return Err(ExecError::BadInput {
                index: items[i].0,
                reason: format!("expected {inputs} features"),
            });
        }
        let classes = examples.iter().map(|e| e.label as usize).max().unwrap_or(0) + 1;
        let scale = examples.iter().flat_map(|e| e.features.iter()).fold(0f32, |m, v| m.max(v.abs()));
        let scale = if scale > 0.0 { scale } else { 1.0 };
        let flat: Vec<f32> = examples.iter().flat_map(|e| e.features.iter().map(|v| v / scale)).collect();
        let labels: Vec<u32> = examples.iter().map(|e| e.label).collect();
        let len = examples.len();
        let err = |e: candle_core::Error| ExecError::model(e);
        Ok(Dataset {
            features: Tensor::from_vec(flat, (len, inputs), device).map_err(err)?,
            labels: Tensor::from_vec(labels, len, device).map_err(err)?,
            len,
            inputs,
            classes,
        })
    }

    /// The batch of `indices`: features `[b, inputs]` and labels `[b]`.
    pub fn batch(&self, indices: &[u32]) -> candle_core::Result<(Tensor, Tensor)> {
        let idx = Tensor::new(indices, self.features.device())?;
        Ok((self.features.index_select(&idx, 0)?, self.labels.index_select(&idx, 0)?))
    }
}

/// Where the next batch comes from, and the permutation of the current epoch.
pub struct Cursor {
    seed: u64,
    len: usize,
    batch: usize,
    /// Current epoch.
    pub epoch: u32,
    /// Position of the next batch in the epoch's order.
    pub position: u32,
    order: Vec<u32>,
}

impl Cursor {
    /// A cursor at `(epoch, position)` over `len` examples in batches of `batch`.
    pub fn new(seed: u64, len: usize, batch: usize, epoch: u32, position: u32) -> Self {
        let mut c = Cursor { seed, len, batch, epoch, position, order: Vec::new() };
        c.order = c.permutation(epoch);
        c
    }

    fn permutation(&self, epoch: u32) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.len as u32).collect();
        Rng::new(derive_seed("agora/ml/train-order", &[self.seed, u64::from(epoch)])).shuffle(&mut order);
        order
    }

    /// The next batch's example indices; advances the cursor.
    pub fn next_batch(&mut self) -> Vec<u32> {
        if self.position as usize + self.batch > self.len {
            self.epoch += 1;
            self.position = 0;
            self.order = self.permutation(self.epoch);
        }
        let start = self.position as usize;
        self.position += self.batch as u32;
        self.order[start..start + self.batch].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_wraps_and_resumes() {
        let mut a = Cursor::new(7, 10, 4, 0, 0);
        let first: Vec<Vec<u32>> = (0..3).map(|_| a.next_batch()).collect();
        assert_eq!((a.epoch, a.position), (1, 4), "the tail of 2 is skipped");
        let mut epoch0: Vec<u32> = first[..2].concat();
        epoch0.sort();
        epoch0.dedup();
        assert_eq!(epoch0.len(), 8, "no repeats within an epoch");
        let mut resumed = Cursor::new(7, 10, 4, 0, 4);
        assert_eq!(resumed.next_batch(), first[1]);
        assert_eq!(resumed.next_batch(), first[2]);
    }
}
