//! PyTorch's `Adam` (no weight decay, no amsgrad) with state that can be
//! saved and restored. candle-nn's `AdamW` keeps its moments private and
//! decays weights by default, so it cannot be checkpointed as the trainer
//! needs.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

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

/// One trial's scalars of one update, in f32 as the update computes.
#[derive(Debug, Clone, Copy)]
struct Scalars {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias_correction2_sqrt: f32,
    step_size: f32,
    eps: f32,
}

impl Scalars {
    /// Trial's scalars at its step `step` (counted from 1).
    fn new(c: &AdamConfig, step: u64) -> Self {
        Self {
            beta1: c.beta1 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            bias_correction2_sqrt: (1.0 - c.beta2.powi(step as i32)).sqrt() as f32,
            step_size: (c.lr / (1.0 - c.beta1.powi(step as i32))) as f32,
            eps: c.eps as f32,
        }
    }
}

impl Slot {
    /// The update of every trial's slice of the slot, in plain loops over
    /// the values (on CPU: one pass instead of a dozen tensor operations).
    fn update_values(&mut self, grad: &Tensor, trials: &[Scalars]) -> Result<()> {
        let values = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let g = values(grad)?;
        let (mut m, mut v) = (values(&self.exp_avg)?, values(&self.exp_avg_sq)?);
        let mut p = values(self.var.as_tensor())?;
        let per_trial = p.len() / trials.len();
        for (s, (((p, m), v), g)) in trials.iter().zip(
            p.chunks_exact_mut(per_trial)
                .zip(m.chunks_exact_mut(per_trial))
                .zip(v.chunks_exact_mut(per_trial))
                .zip(g.chunks_exact(per_trial)),
        ) {
            for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                *m = *m * s.beta1 + g * s.one_minus_beta1;
                *v = *v * s.beta2 + g * g * s.one_minus_beta2;
                let denom = v.sqrt() / s.bias_correction2_sqrt + s.eps;
                *p -= *m / denom * s.step_size;
            }
        }
        let (shape, device) = (self.var.shape(), self.var.device());
        self.exp_avg = Tensor::from_vec(m, shape, device)?;
        self.exp_avg_sq = Tensor::from_vec(v, shape, device)?;
        self.var.set(&Tensor::from_vec(p, shape, device)?)
    }

    /// The same update as tensor operations (off the CPU).
    fn update_tensors(&mut self, grad: &Tensor, s: &ScalarTensors) -> Result<()> {
        self.exp_avg =
            (self.exp_avg.broadcast_mul(&s.beta1)? + grad.broadcast_mul(&s.one_minus_beta1)?)?;
        self.exp_avg_sq = (self.exp_avg_sq.broadcast_mul(&s.beta2)?
            + grad.sqr()?.broadcast_mul(&s.one_minus_beta2)?)?;
        let denom = self
            .exp_avg_sq
            .sqrt()?
            .broadcast_div(&s.bias_correction2_sqrt)?
            .broadcast_add(&s.eps)?;
        let update = (&self.exp_avg / denom)?.broadcast_mul(&s.step_size)?;
        self.var.set(&(self.var.as_tensor() - update)?)
    }
}

/// Every trial's [`Scalars`] as tensors shaped to broadcast over parameters
/// of one rank.
struct ScalarTensors {
    beta1: Tensor,
    one_minus_beta1: Tensor,
    beta2: Tensor,
    one_minus_beta2: Tensor,
    bias_correction2_sqrt: Tensor,
    step_size: Tensor,
    eps: Tensor,
}

impl ScalarTensors {
    fn new(trials: &[Scalars], rank: usize, device: &Device) -> Result<Self> {
        let shape: Vec<usize> = std::iter::once(trials.len())
            .chain(std::iter::repeat_n(1, rank - 1))
            .collect();
        let per_trial = |f: fn(&Scalars) -> f32| {
            let values: Vec<f32> = trials.iter().map(f).collect();
            Tensor::from_vec(values, shape.as_slice(), device)
        };
        Ok(Self {
            beta1: per_trial(|s| s.beta1)?,
            one_minus_beta1: per_trial(|s| s.one_minus_beta1)?,
            beta2: per_trial(|s| s.beta2)?,
            one_minus_beta2: per_trial(|s| s.one_minus_beta2)?,
            bias_correction2_sqrt: per_trial(|s| s.bias_correction2_sqrt)?,
            step_size: per_trial(|s| s.step_size)?,
            eps: per_trial(|s| s.eps)?,
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
        let trials = self.next_step();
        let mut by_rank: HashMap<usize, ScalarTensors> = HashMap::new();
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            if slot.var.device().is_cpu() {
                slot.update_values(grad, &trials)?;
                continue;
            }
            let s = match by_rank.entry(slot.var.rank()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(ScalarTensors::new(
                    &trials,
                    slot.var.rank(),
                    slot.var.device(),
                )?),
            };
            slot.update_tensors(grad, s)?;
        }
        Ok(())
    }

    /// Counts one more step for every trial and returns each trial's
    /// scalars for it.
    fn next_step(&mut self) -> Vec<Scalars> {
        self.steps.iter_mut().for_each(|s| *s += 1);
        self.configs
            .iter()
            .zip(&self.steps)
            .map(|(c, &step)| Scalars::new(c, step))
            .collect()
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

#[cfg(test)]
mod tests {
    //! The CPU update in plain loops against the tensor-op update that runs
    //! on other devices: the same bits.

    use candle_core::{Device, Tensor};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::tensors::Kind;

    #[test]
    fn the_cpu_update_equals_the_tensor_ops() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut random = |dims: &[usize]| {
            let n = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() - 0.5).collect();
            Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
        };
        // A pack of three trials, each with its own hyperparameters and
        // step count, over parameters of ranks 2 and 5.
        let configs =
            [(1e-3, 0.9, 0.999), (3e-4, 0.5, 0.99), (1e-2, 0.0, 0.9)].map(|(lr, beta1, beta2)| {
                AdamConfig {
                    lr,
                    beta1,
                    beta2,
                    eps: 1e-8,
                }
            });
        let init = [("w", &[3, 16][..]), ("conv", &[3, 4, 2, 3, 3][..])]
            .map(|(name, dims)| (name, random(dims)));
        // Each optimiser over its own copy of the parameters.
        let optimiser = || {
            let mut params = NamedTensors::default();
            for (name, value) in &init {
                params
                    .add(name, value.copy().unwrap(), Kind::Parameter)
                    .unwrap();
            }
            let mut adam = Adam::new(&params, configs[0]).unwrap();
            adam.configs = configs.to_vec();
            adam.steps = vec![0, 4, 9];
            adam
        };
        let (mut values, mut tensors) = (optimiser(), optimiser());
        for _ in 0..3 {
            let grads: Vec<Tensor> = values.slots.iter().map(|s| random(s.var.dims())).collect();
            // Both updates with the same trials' scalars for this step.
            let trials = values.next_step();
            for ((a, b), grad) in values.slots.iter_mut().zip(&mut tensors.slots).zip(&grads) {
                a.update_values(grad, &trials).unwrap();
                let s = ScalarTensors::new(&trials, b.var.rank(), &Device::Cpu).unwrap();
                b.update_tensors(grad, &s).unwrap();
                for (x, y) in [
                    (a.var.as_tensor(), b.var.as_tensor()),
                    (&a.exp_avg, &b.exp_avg),
                    (&a.exp_avg_sq, &b.exp_avg_sq),
                ] {
                    let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
                    let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
                    assert_eq!(x, y, "{}", a.name);
                }
            }
        }
    }
}
