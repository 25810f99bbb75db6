//! A network's named tensors, in PyTorch `state_dict` order and names:
//! trainable parameters and BatchNorm running statistics.
//!
//! Every tensor holds a pack of trials along a leading dimension: a network
//! of one trial has `(1, ...)` tensors, and its `state_dict` tensors (for
//! checkpoints and fixtures) are those without the leading dimension.

use std::collections::HashMap;

use candle_core::{Result, Tensor, Var};

/// Whether a tensor is learnt by the optimiser or is a BatchNorm buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Learnt by the optimiser.
    Parameter,
    /// A BatchNorm running statistic.
    Buffer,
}

/// The named tensors of one network, for a pack of trials.
#[derive(Debug, Default)]
pub struct NamedTensors {
    entries: Vec<(String, Var, Kind)>,
}

impl NamedTensors {
    /// Registers a tensor (trials first) under its PyTorch name and returns
    /// its variable.
    pub fn add(&mut self, name: &str, value: Tensor, kind: Kind) -> Result<Var> {
        assert!(self.get(name).is_none(), "tensor {name} registered twice");
        let var = Var::from_tensor(&value)?;
        self.entries.push((name.to_string(), var.clone(), kind));
        Ok(var)
    }

    /// The variable registered as `name`.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.entries
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v)
    }

    /// All tensors with their names and kinds, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var, Kind)> {
        self.entries.iter().map(|(n, v, k)| (n.as_str(), v, *k))
    }

    /// The trainable parameters with their names, in registration order.
    pub fn parameters(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.iter()
            .filter(|(_, _, k)| *k == Kind::Parameter)
            .map(|(n, v, _)| (n, v))
    }

    /// Copies of trial `k`'s tensors in their `state_dict` shapes, keyed by
    /// `prefix` + name.
    pub fn snapshot(&self, k: usize, prefix: &str) -> Result<HashMap<String, Tensor>> {
        self.iter()
            .map(|(n, v, _)| Ok((format!("{prefix}{n}"), trial(v.as_tensor(), k)?)))
            .collect()
    }

    /// Sets every tensor of a network of one trial from
    /// `tensors[prefix + name]`, in its `state_dict` shape; all must be
    /// present.
    pub fn load(&self, tensors: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        for (name, var, _) in self.iter() {
            let key = format!("{prefix}{name}");
            let value = tensors
                .get(&key)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {key}")))?;
            var.set(&as_pack_of_one(value, var.as_tensor(), &key)?)?;
        }
        Ok(())
    }

    /// Sets each network of `targets` (one trial each) to its trial of this
    /// pack, in order.
    pub fn unstack_into(&self, targets: &[&NamedTensors]) -> Result<()> {
        for (k, target) in targets.iter().enumerate() {
            for ((_, packed, _), (_, own, _)) in self.entries.iter().zip(&target.entries) {
                own.set(&packed.as_tensor().narrow(0, k, 1)?)?;
            }
        }
        Ok(())
    }

    /// The tensor named `name` of every network in `packs`, stacked along
    /// the trials.
    pub fn stacked(packs: &[&NamedTensors], name: &str) -> Result<Tensor> {
        let parts = packs
            .iter()
            .map(|p| {
                p.get(name)
                    .map(|v| v.as_tensor().clone())
                    .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {name}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }
}

/// Trial `k` of a packed tensor, copied, without the trials dimension.
pub fn trial(packed: &Tensor, k: usize) -> Result<Tensor> {
    packed.narrow(0, k, 1)?.squeeze(0)?.copy()
}

/// `value`, a tensor of one trial in its `state_dict` shape, as a pack of
/// one shaped like `like` on `like`'s device.
pub fn as_pack_of_one(value: &Tensor, like: &Tensor, key: &str) -> Result<Tensor> {
    if like.dim(0)? != 1 || value.dims() != &like.dims()[1..] {
        candle_core::bail!(
            "tensor {key} has shape {:?}, expected {:?}",
            value.dims(),
            &like.dims()[1..]
        );
    }
    value
        .to_dtype(like.dtype())?
        .to_device(like.device())?
        .unsqueeze(0)
}
