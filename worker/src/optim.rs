//! PyTorch's `Adam` (no weight decay, no amsgrad) with state that can be
//! saved and restored. candle-nn's `AdamW` keeps its moments private and
//! decays weights by default, so it cannot be checkpointed as the trainer
//! needs.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};

use crate::tensors::{NamedTensors, as_pack_of_one, trial};

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

/// Adam over one network's trainable parameters, for a pack of trials:
/// each trial with its own hyperparameters and step count, its update
/// exactly what it would be alone.
#[derive(Debug)]
pub struct Adam {
    configs: Vec<AdamConfig>,
    steps: Vec<u64>,
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// Per-trial scalars of one update, shaped to broadcast over a parameter.
struct Scalars {
    beta1: Tensor,
    one_minus_beta1: Tensor,
    beta2: Tensor,
    one_minus_beta2: Tensor,
    bias_correction2_sqrt: Tensor,
    step_size: Tensor,
    eps: Tensor,
}

impl Scalars {
    fn new(configs: &[AdamConfig], steps: &[u64], rank: usize, device: &Device) -> Result<Self> {
        let shape: Vec<usize> = std::iter::once(configs.len())
            .chain(std::iter::repeat_n(1, rank - 1))
            .collect();
        let per_trial = |f: &dyn Fn(&AdamConfig, u64) -> f64| {
            let values: Vec<f32> = configs
                .iter()
                .zip(steps)
                .map(|(c, &s)| f(c, s) as f32)
                .collect();
            Tensor::from_vec(values, shape.as_slice(), device)
        };
        Ok(Self {
            beta1: per_trial(&|c, _| c.beta1)?,
            one_minus_beta1: per_trial(&|c, _| 1.0 - c.beta1)?,
            beta2: per_trial(&|c, _| c.beta2)?,
            one_minus_beta2: per_trial(&|c, _| 1.0 - c.beta2)?,
            bias_correction2_sqrt: per_trial(&|c, s| (1.0 - c.beta2.powi(s as i32)).sqrt())?,
            step_size: per_trial(&|c, s| c.lr / (1.0 - c.beta1.powi(s as i32)))?,
            eps: per_trial(&|c, _| c.eps)?,
        })
    }
}

impl Adam {
    /// Zero moments for every trainable parameter of `params`, a network of
    /// one trial.
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
            configs: vec![config],
            steps: vec![0],
            slots,
        })
    }

    /// One optimiser for `params`, the stacked network of `trials`' own.
    pub fn stack(trials: &[&Adam], params: &NamedTensors) -> Result<Self> {
        let slots = params
            .parameters()
            .enumerate()
            .map(|(i, (name, var))| {
                let moment = |pick: fn(&Slot) -> &Tensor| {
                    let parts: Vec<&Tensor> = trials.iter().map(|t| pick(&t.slots[i])).collect();
                    Tensor::cat(&parts, 0)
                };
                Ok(Slot {
                    name: name.to_string(),
                    var: var.clone(),
                    exp_avg: moment(|s| &s.exp_avg)?,
                    exp_avg_sq: moment(|s| &s.exp_avg_sq)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            configs: trials.iter().flat_map(|t| t.configs.clone()).collect(),
            steps: trials.iter().flat_map(|t| t.steps.clone()).collect(),
            slots,
        })
    }

    /// Sets each optimiser of `targets` (one trial each) to its trial of
    /// this pack, in order.
    pub fn unstack_into(&self, targets: &mut [&mut Adam]) -> Result<()> {
        for (k, target) in targets.iter_mut().enumerate() {
            target.steps[0] = self.steps[k];
            for (packed, own) in self.slots.iter().zip(&mut target.slots) {
                own.exp_avg = packed.exp_avg.narrow(0, k, 1)?.copy()?;
                own.exp_avg_sq = packed.exp_avg_sq.narrow(0, k, 1)?.copy()?;
            }
        }
        Ok(())
    }

    /// One update of every trial, as `torch.optim.Adam.step` (single-tensor
    /// path); a parameter without a gradient is left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps.iter_mut().for_each(|s| *s += 1);
        let mut scalars: HashMap<usize, Scalars> = HashMap::new();
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let rank = slot.var.rank();
            let s = match scalars.entry(rank) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(Scalars::new(
                    &self.configs,
                    &self.steps,
                    rank,
                    slot.var.device(),
                )?),
            };
            slot.exp_avg = (slot.exp_avg.broadcast_mul(&s.beta1)?
                + grad.broadcast_mul(&s.one_minus_beta1)?)?;
            slot.exp_avg_sq = (slot.exp_avg_sq.broadcast_mul(&s.beta2)?
                + grad.sqr()?.broadcast_mul(&s.one_minus_beta2)?)?;
            let denom = slot
                .exp_avg_sq
                .sqrt()?
                .broadcast_div(&s.bias_correction2_sqrt)?
                .broadcast_add(&s.eps)?;
            let update = (&slot.exp_avg / denom)?.broadcast_mul(&s.step_size)?;
            slot.var.set(&(slot.var.as_tensor() - update)?)?;
        }
        Ok(())
    }

    /// The number of steps trial `k` has taken.
    pub fn steps(&self, k: usize) -> u64 {
        self.steps[k]
    }

    /// Trial `k`'s moments keyed by `prefix` + `exp_avg.` / `exp_avg_sq.` +
    /// parameter name, in the parameters' `state_dict` shapes.
    pub fn state(&self, k: usize, prefix: &str) -> Result<HashMap<String, Tensor>> {
        let mut state = HashMap::new();
        for s in &self.slots {
            state.insert(format!("{prefix}exp_avg.{}", s.name), trial(&s.exp_avg, k)?);
            state.insert(
                format!("{prefix}exp_avg_sq.{}", s.name),
                trial(&s.exp_avg_sq, k)?,
            );
        }
        Ok(state)
    }

    /// Restores what [`Adam::state`] saved, and the step count, into an
    /// optimiser of one trial.
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
                *target = as_pack_of_one(value, slot.var.as_tensor(), &key)?;
            }
        }
        self.steps = vec![step];
        Ok(())
    }
}
