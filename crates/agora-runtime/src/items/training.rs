//! Training items: labelled examples in, checkpoints out.
//!
//! A training job's input items are [`Example`]s (the whole data set of the shard); its
//! output items are [`Checkpoint`]s taken every `checkpoint_every` steps. A checkpoint holds
//! everything needed to continue training bit for bit: the weights, the optimizer state, the
//! step and the data cursor. That is what lets an auditor replay one segment — from
//! checkpoint i−1 to checkpoint i — without redoing the whole job.
//!
//! Encodings (canonical, little-endian):
//! - `Example`: `u32` label · `u32` count + f32 features.
//! - `Tensor`: name (`u32` length + UTF-8) · `u32` rank + `u32` dims · f32 values
//!   (their number is the product of the dims).
//! - `Checkpoint`: `u8` version (1) · `u32` step · `u32` epoch · `u32` position ·
//!   f32 mean loss of the segment · `u32` count + parameter tensors · `u32` count + optimizer
//!   tensors.

use super::{ItemError, put_f32s, take_f32s};
use agora_core::codec::{Decode, DecodeError, Encode, Reader, encode_len};

/// Most features one example may have.
pub const MAX_FEATURES: usize = 1 << 16;
/// Most classes a training data set may have: labels are `0..MAX_CLASSES`. The label sizes
/// the output layer, so an unbounded one (`u32::MAX`) would size a tensor of 2³² rows.
pub const MAX_CLASSES: u32 = 1 << 12;
/// Most tensors a checkpoint may hold in each of its two lists.
pub const MAX_TENSORS: usize = 64;
/// Most values one tensor may hold (64 Mi floats, 256 MiB).
pub const MAX_TENSOR_VALUES: usize = 1 << 26;
const VERSION: u8 = 1;

/// One labelled training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Class index.
    pub label: u32,
    /// Feature values.
    pub features: Vec<f32>,
}

impl Encode for Example {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.label.encode_to(out);
        encode_len(self.features.len(), out);
        put_f32s(&self.features, out);
    }
}

impl Decode for Example {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let label = u32::decode_from(r)?;
        if label >= MAX_CLASSES {
            return Err(DecodeError::new(
                "Example.label",
                agora_core::codec::DecodeErrorKind::TooLong {
                    len: label.into(),
                    max: (MAX_CLASSES - 1).into(),
                },
            ));
        }
        let n = r.length(MAX_FEATURES, 4, "Example.features")?;
        Ok(Example { label, features: take_f32s(r, n, "Example.features")? })
    }
}

impl Example {
    /// Decodes an example item.
    pub fn from_item(bytes: &[u8]) -> Result<Self, ItemError> {
        Ok(Self::decode(bytes)?)
    }
}

/// A named f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Name, e.g. `fc1.weight` or `fc1.weight.m`.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<u32>,
    /// Values in row-major order.
    pub data: Vec<f32>,
}

impl Encode for Tensor {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.name.encode_to(out);
        encode_len(self.shape.len(), out);
        for d in &self.shape {
            d.encode_to(out);
        }
        put_f32s(&self.data, out);
    }
}

impl Decode for Tensor {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let name = r.string(128, "Tensor.name")?;
        let shape: Vec<u32> = r.vec(8, "Tensor.shape")?;
        let count = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
            .filter(|&n| n <= MAX_TENSOR_VALUES)
            .ok_or(DecodeError::invalid("Tensor", "too many values"))?;
        Ok(Tensor { name, shape, data: take_f32s(r, count, "Tensor.data")? })
    }
}

/// Training state after a number of optimizer steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Optimizer steps taken since initialisation.
    pub step: u32,
    /// Data cursor: the epoch the next batch comes from.
    pub epoch: u32,
    /// Data cursor: the position of the next batch in that epoch's shuffled order.
    pub position: u32,
    /// Mean training loss over the steps since the previous checkpoint (informative).
    pub loss: f32,
    /// Model parameters.
    pub params: Vec<Tensor>,
    /// Optimizer state (e.g. AdamW first and second moments), named after their parameter.
    pub optimizer: Vec<Tensor>,
}

impl Encode for Checkpoint {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        for v in [self.step, self.epoch, self.position] {
            v.encode_to(out);
        }
        out.extend_from_slice(&self.loss.to_le_bytes());
        encode_len(self.params.len(), out);
        for t in &self.params {
            t.encode_to(out);
        }
        encode_len(self.optimizer.len(), out);
        for t in &self.optimizer {
            t.encode_to(out);
        }
    }
}

impl Decode for Checkpoint {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.tag("Checkpoint.version")? != VERSION {
            return Err(DecodeError::invalid("Checkpoint", "unknown version"));
        }
        let step = u32::decode_from(r)?;
        let epoch = u32::decode_from(r)?;
        let position = u32::decode_from(r)?;
        let loss = f32::from_le_bytes(r.array("Checkpoint.loss")?);
        let params = r.vec(MAX_TENSORS, "Checkpoint.params")?;
        let optimizer = r.vec(MAX_TENSORS, "Checkpoint.optimizer")?;
        Ok(Checkpoint { step, epoch, position, loss, params, optimizer })
    }
}

impl Checkpoint {
    /// Decodes a checkpoint item.
    pub fn from_item(bytes: &[u8]) -> Result<Self, ItemError> {
        Ok(Self::decode(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_beyond_the_class_limit_are_refused() {
        // A label sizes the output layer: u32::MAX would mean a [2³², hidden] tensor.
        let huge = Example { label: u32::MAX, features: vec![1.0] };
        let err = Example::from_item(&huge.encode()).unwrap_err().to_string();
        assert!(err.contains("Example.label"), "{err}");
        let last = Example { label: MAX_CLASSES - 1, features: vec![1.0] };
        assert_eq!(Example::from_item(&last.encode()).unwrap(), last);
    }

    #[test]
    fn round_trips_and_bounds() {
        let e = Example { label: 3, features: vec![0.0, 0.5, 1.0] };
        assert_eq!(Example::from_item(&e.encode()).unwrap(), e);
        let t = Tensor { name: "w".into(), shape: vec![2, 2], data: vec![1.0, 2.0, 3.0, 4.0] };
        let c = Checkpoint {
            step: 10,
            epoch: 1,
            position: 64,
            loss: 0.25,
            params: vec![t.clone()],
            optimizer: vec![Tensor { name: "w.m".into(), ..t }],
        };
        assert_eq!(Checkpoint::from_item(&c.encode()).unwrap(), c);
        // A shape whose product overflows is rejected before allocating.
        let mut huge = Vec::new();
        "w".encode_to(&mut huge);
        encode_len(2, &mut huge);
        u32::MAX.encode_to(&mut huge);
        u32::MAX.encode_to(&mut huge);
        assert!(Tensor::decode(&huge).is_err());
    }
}
