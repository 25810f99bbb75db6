//! A network's named tensors, in PyTorch `state_dict` order and names:
//! trainable parameters and BatchNorm running statistics.

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

/// The named tensors of one network.
#[derive(Debug, Default)]
pub struct NamedTensors {
    entries: Vec<(String, Var, Kind)>,
}

impl NamedTensors {
    /// Registers a tensor under its PyTorch name and returns its variable.
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

    /// Copies of every tensor, keyed by `prefix` + name.
    pub fn snapshot(&self, prefix: &str) -> Result<HashMap<String, Tensor>> {
        self.iter()
            .map(|(n, v, _)| Ok((format!("{prefix}{n}"), v.as_tensor().copy()?)))
            .collect()
    }

    /// Sets every tensor from `tensors[prefix + name]`; all must be present
    /// with the registered shape.
    pub fn load(&self, tensors: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        for (name, var, _) in self.iter() {
            let key = format!("{prefix}{name}");
            let value = tensors
                .get(&key)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {key}")))?;
            if value.dims() != var.dims() {
                candle_core::bail!(
                    "tensor {key} has shape {:?}, expected {:?}",
                    value.dims(),
                    var.dims()
                );
            }
            var.set(&value.to_dtype(var.dtype())?.to_device(var.device())?)?;
        }
        Ok(())
    }
}
