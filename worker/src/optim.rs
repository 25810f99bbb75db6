//! PyTorch's `Adam` (no weight decay, no amsgrad) with state that can be
//! saved and restored. candle-nn's `AdamW` keeps its moments private and
//! decays weights by default, so it cannot be checkpointed as the trainer
//! needs.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

use crate::tensors::NamedTensors;

/// Adam hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
}

/// Adam over one network's trainable parameters.
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    step: u64,
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

impl Adam {
    /// Zero moments for every trainable parameter of `params`.
    pub fn new(params: &NamedTensors, config: AdamConfig) -> Result<Self> {
        let slots = params
            .parameters()
            .map(|(name, var)| {
                Ok(Slot {
                    name: name.to_string(),
                    var: var.clone(),
                    exp_avg: var.zeros_like()?,
                    exp_avg_sq: var.zeros_like()?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            step: 0,
            slots,
        })
    }

    /// One update, as `torch.optim.Adam.step` (single-tensor path); a
    /// parameter without a gradient is left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
        } = self.config;
        let bias_correction1 = 1.0 - beta1.powi(self.step as i32);
        let bias_correction2_sqrt = (1.0 - beta2.powi(self.step as i32)).sqrt();
        let step_size = lr / bias_correction1;
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            slot.exp_avg = ((&slot.exp_avg * beta1)? + (grad * (1.0 - beta1))?)?;
            slot.exp_avg_sq = ((&slot.exp_avg_sq * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
            let denom = ((slot.exp_avg_sq.sqrt()? / bias_correction2_sqrt)? + eps)?;
            let update = ((&slot.exp_avg / denom)? * step_size)?;
            slot.var.set(&(slot.var.as_tensor() - update)?)?;
        }
        Ok(())
    }

    /// The number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Moments keyed by `prefix` + `exp_avg.` / `exp_avg_sq.` + parameter name.
    pub fn state(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.slots
            .iter()
            .flat_map(|s| {
                [
                    (format!("{prefix}exp_avg.{}", s.name), s.exp_avg.clone()),
                    (
                        format!("{prefix}exp_avg_sq.{}", s.name),
                        s.exp_avg_sq.clone(),
                    ),
                ]
            })
            .collect()
    }

    /// Restores what [`Adam::state`] saved, and the step count.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        step: u64,
    ) -> Result<()> {
        for slot in &mut self.slots {
            for (kind, target) in [
                ("exp_avg", &mut slot.exp_avg),
                ("exp_avg_sq", &mut slot.exp_avg_sq),
            ] {
                let key = format!("{prefix}{kind}.{}", slot.name);
                let value = tensors
                    .get(&key)
                    .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {key}")))?;
                if value.dims() != slot.var.dims() {
                    candle_core::bail!("tensor {key} has the wrong shape {:?}", value.dims());
                }
                *target = value.to_device(slot.var.device())?;
            }
        }
        self.step = step;
        Ok(())
    }
}
