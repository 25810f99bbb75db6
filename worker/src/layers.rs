//! The layers of both networks, on channels-last activations.
//!
//! An activation is `(K*B, H*W, C)`: a pack of K trials trained as one
//! computation, trial after trial, B items each (K = 1 for a trial alone).
//! Every weight has the trials as its first dimension, and each trial
//! computes exactly what it computes alone. Convolutions read their 3x3
//! windows through a map of input positions: on CPU a direct convolution
//! kernel, elsewhere one `index_select` and one matrix product (candle's
//! CPU conv backward is a slow naive transpose); max-pool routes the
//! gradient to the first maximum of each window as PyTorch does (candle's
//! does not); BatchNorm sums its batch statistics in f64 as PyTorch's CPU
//! kernel does.

use candle_core::{D, Device, Result, Tensor, Var};
use rand::Rng;

use crate::init::{Fill, InitScheme, LayerShape};
use crate::kernels::{self, BatchNormRelu, BiasAdd, Conv2d, MaxPool2};
use crate::tensors::{Kind, NamedTensors};

/// An activation with its spatial size.
#[derive(Debug, Clone)]
pub struct Act {
    /// `(B, H*W, C)`.
    pub t: Tensor,
    /// Height in cells.
    pub h: usize,
    /// Width in cells.
    pub w: usize,
}

/// Whether a forward pass trains (batch statistics, running-stat updates)
/// and whether it tracks gradients of the network's own parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Training mode: batch statistics in BatchNorm, running statistics updated.
    pub train: bool,
    /// Whether gradients flow into the parameters (off for a network held fixed).
    pub track_params: bool,
}

impl Pass {
    /// Evaluation: running statistics, no parameter gradients.
    pub const EVAL: Pass = Pass {
        train: false,
        track_params: false,
    };

    fn param(self, var: &Var) -> Tensor {
        if self.track_params {
            var.as_tensor().clone()
        } else {
            var.as_detached_tensor()
        }
    }
}

/// Where a network's weights come from.
pub enum Weights<'a> {
    /// Drawn for one trial from its generator, with the network's init scheme.
    Drawn {
        /// The trial's generator.
        rng: &'a mut dyn Rng,
        /// The network's init scheme.
        scheme: InitScheme,
    },
    /// Taken from networks that exist.
    Taken(Taken<'a>),
}

/// Networks whose tensors a new network takes.
#[derive(Debug)]
pub enum Taken<'a> {
    /// The tensors of networks of one trial each, stacked into a pack.
    Stacked(&'a [&'a NamedTensors]),
    /// Trials `start..start + len` of a pack's network, copied.
    Slice {
        /// The pack's network.
        net: &'a NamedTensors,
        /// The first trial taken.
        start: usize,
        /// Trials taken.
        len: usize,
    },
}

impl Taken<'_> {
    /// The tensor named `name` of the stacked or sliced networks.
    fn tensor(&self, name: &str) -> Result<Tensor> {
        match self {
            Taken::Stacked(nets) => NamedTensors::stacked(nets, name),
            Taken::Slice { net, start, len } => net
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {name}")))?
                .narrow(0, *start, *len),
        }
    }

    /// Trials taken.
    fn pack(&self) -> usize {
        match self {
            Taken::Stacked(nets) => nets.len(),
            Taken::Slice { len, .. } => *len,
        }
    }
}

impl std::fmt::Debug for Weights<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Weights::Drawn { scheme, .. } => write!(f, "Drawn({scheme})"),
            Weights::Taken(taken) => write!(f, "{taken:?}"),
        }
    }
}

/// What layers need while a network is built.
#[derive(Debug)]
pub struct Builder<'a, 'w> {
    /// Where the network's tensors are registered.
    pub tensors: &'a mut NamedTensors,
    /// Where the weights come from.
    pub weights: Weights<'w>,
    /// Where the tensors live.
    pub device: &'a Device,
}

impl Builder<'_, '_> {
    /// Trials in the pack being built.
    pub fn pack(&self) -> usize {
        match &self.weights {
            Weights::Drawn { .. } => 1,
            Weights::Taken(taken) => taken.pack(),
        }
    }

    fn sampled(
        &mut self,
        name: &str,
        dims: &[usize],
        fill: impl FnOnce(InitScheme) -> Fill,
    ) -> Result<Var> {
        let t = match &mut self.weights {
            Weights::Drawn { rng, scheme } => {
                let values = fill(*scheme).sample(dims.iter().product(), &mut **rng);
                Tensor::from_vec(values, [&[1], dims].concat(), self.device)?
            }
            Weights::Taken(taken) => taken.tensor(name)?,
        };
        self.tensors.add(name, t, Kind::Parameter)
    }

    fn constant(&mut self, name: &str, n: usize, value: f32, kind: Kind) -> Result<Var> {
        let t = match &self.weights {
            Weights::Drawn { .. } => Tensor::full(value, (1, n), self.device)?,
            Weights::Taken(taken) => taken.tensor(name)?,
        };
        self.tensors.add(name, t, kind)
    }
}

/// A 2D convolution with a square kernel, stride 1 and zero padding.
#[derive(Debug)]
pub struct Conv {
    weight: Var,
    bias: Option<Var>,
    /// For each output position and kernel tap, the input position read
    /// (or `H*W`, a zero row, for padding).
    index: Tensor,
    /// The CPU kernel, its window maps built once.
    kernel: Conv2d,
    /// `(P, T)`: 1 where output position `p`'s tap `t` falls on the input,
    /// 0 on padding.
    on_input: Tensor,
    k: usize,
    pad: usize,
    in_hw: (usize, usize),
}

impl Conv {
    /// A conv layer named `name` (PyTorch's `name.weight`, `name.bias`) for
    /// inputs of size `in_hw`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        b: &mut Builder<'_, '_>,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        pad: usize,
        bias: bool,
        is_output: bool,
        in_hw: (usize, usize),
    ) -> Result<Self> {
        let shape = LayerShape {
            fan_in: c_in * k * k,
            fan_out: c_out * k * k,
            is_output,
        };
        let weight = b.sampled(&format!("{name}.weight"), &[c_out, c_in, k, k], |s| {
            s.weight(shape)
        })?;
        let bias = if bias {
            Some(b.sampled(&format!("{name}.bias"), &[c_out], |s| s.bias(shape))?)
        } else {
            None
        };
        let index = conv_index(in_hw, k, pad);
        let index_tensor = Tensor::from_vec(index.clone(), index.len(), b.device)?;
        let padding = (in_hw.0 * in_hw.1) as u32;
        let on_input: Vec<f32> = index
            .iter()
            .map(|&i| if i == padding { 0.0 } else { 1.0 })
            .collect();
        let on_input = Tensor::from_vec(on_input, (index.len() / (k * k), k * k), b.device)?;
        Ok(Self {
            weight,
            bias,
            index: index_tensor,
            kernel: Conv2d::new(in_hw, k, pad),
            on_input,
            k,
            pad,
            in_hw,
        })
    }

    /// The conv of an activation (its bias added, if it has one).
    pub fn forward(&self, x: &Act, pass: Pass) -> Result<Act> {
        let weight = pass.param(&self.weight);
        let out = self.convolve(x, &weight)?;
        self.biased(out, pass)
    }

    /// The conv of `x` with per-item features `v` `(K*B, Cv)` appended to
    /// every position as its last `Cv` input channels, without building
    /// that input: the conv of `x` by the weights' first channels, plus at
    /// each position the sum, over the taps its window has on the input
    /// (padding ones drop out), of `v` by those taps' weights of the last
    /// channels. Equal to the conv of the concatenation up to rounding, with
    /// the `Cv` channels' share of the arithmetic done once per item instead
    /// of once per position.
    pub fn forward_appended(&self, x: &Act, v: &Tensor, pass: Pass) -> Result<Act> {
        let weight = pass.param(&self.weight);
        let (pack, o, c, _, _) = weight.dims5()?;
        let (kb, cx) = (x.t.dim(0)?, x.t.dim(2)?);
        let (cv, taps) = (c - cx, self.k * self.k);
        let out = self.convolve(x, &weight.narrow(2, 0, cx)?)?;
        // Per item and tap, v by that tap's weights: (T, K*B*O).
        let by_tap = weight
            .narrow(2, cx, cv)?
            .reshape((pack, o, cv, taps))?
            .permute((0, 2, 3, 1))?
            .reshape((pack, cv, taps * o))?;
        let per_tap = v
            .reshape((pack, kb / pack, cv))?
            .matmul(&by_tap)?
            .reshape((kb, taps, o))?
            .transpose(0, 1)?
            .reshape((taps, kb * o))?;
        // Summed over each position's taps on the input: (K*B, P, O).
        let positions = self.on_input.dim(0)?;
        let appended = self
            .on_input
            .matmul(&per_tap)?
            .reshape((positions, kb, o))?
            .transpose(0, 1)?
            .contiguous()?;
        self.biased(
            Act {
                t: (out.t + appended)?,
                ..out
            },
            pass,
        )
    }

    /// The conv of `x` by `weight` (no bias), `(K*B, P, O)`.
    fn convolve(&self, x: &Act, weight: &Tensor) -> Result<Act> {
        assert_eq!((x.h, x.w), self.in_hw, "conv input size");
        let b = x.t.dim(0)?;
        let (ho, wo) = (
            x.h + 2 * self.pad + 1 - self.k,
            x.w + 2 * self.pad + 1 - self.k,
        );
        let c_out = weight.dim(1)?;
        let out = if x.t.device().is_cpu() {
            x.t.contiguous()?
                .apply_op2(&weight.contiguous()?, self.kernel.clone())?
        } else {
            generic::conv(&x.t, weight, &self.index)?.reshape((b, ho * wo, c_out))?
        };
        Ok(Act {
            t: out,
            h: ho,
            w: wo,
        })
    }

    /// `out` with the layer's bias added, if it has one.
    fn biased(&self, out: Act, pass: Pass) -> Result<Act> {
        let Some(bias) = &self.bias else {
            return Ok(out);
        };
        let (b, p, c) = out.t.dims3()?;
        let t = add_bias(&out.t.reshape((b * p, c))?, &pass.param(bias))?.reshape((b, p, c))?;
        Ok(Act { t, ..out })
    }
}

/// For each output position of a `k`x`k` convolution with padding `pad`
/// over an `h`x`w` input, and each kernel tap in row-major order, the input
/// position read, or `h*w` where the tap falls on padding.
pub fn conv_index((h, w): (usize, usize), k: usize, pad: usize) -> Vec<u32> {
    let (ho, wo) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
    let mut index = Vec::with_capacity(ho * wo * k * k);
    for oy in 0..ho {
        for ox in 0..wo {
            for ky in 0..k {
                for kx in 0..k {
                    let (iy, ix) = ((oy + ky).checked_sub(pad), (ox + kx).checked_sub(pad));
                    index.push(match (iy, ix) {
                        (Some(iy), Some(ix)) if iy < h && ix < w => (iy * w + ix) as u32,
                        _ => (h * w) as u32,
                    });
                }
            }
        }
    }
    index
}

/// BatchNorm2d (eps 1e-5, momentum 0.1) over channels-last activations,
/// with each trial's own batch and running statistics.
#[derive(Debug)]
pub struct BatchNorm {
    weight: Var,
    bias: Var,
    running_mean: Var,
    running_var: Var,
}

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

impl BatchNorm {
    /// Registers `{name}.weight`, `.bias`, `.running_mean`, `.running_var` for `c` channels.
    pub fn new(b: &mut Builder<'_, '_>, name: &str, c: usize) -> Result<Self> {
        Ok(Self {
            weight: b.constant(&format!("{name}.weight"), c, 1.0, Kind::Parameter)?,
            bias: b.constant(&format!("{name}.bias"), c, 0.0, Kind::Parameter)?,
            running_mean: b.constant(&format!("{name}.running_mean"), c, 0.0, Kind::Buffer)?,
            running_var: b.constant(&format!("{name}.running_var"), c, 1.0, Kind::Buffer)?,
        })
    }

    /// BatchNorm followed by ReLU when `relu`.
    pub fn forward(&self, x: &Act, pass: Pass, relu: bool) -> Result<Act> {
        let (kb, hw, c) = x.t.dims3()?;
        let pack = self.weight.dim(0)?;
        let n = kb * hw / pack;
        let flat = x.t.reshape((kb * hw, c))?;
        let (gamma, beta) = (pass.param(&self.weight), pass.param(&self.bias));
        let out = if !flat.device().is_cpu() {
            let per_trial = flat.reshape((pack, n, c))?;
            let (mean, var) = if pass.train {
                let (mean, var) = generic::batch_stats(&per_trial)?;
                self.update_running(&mean.squeeze(1)?, &var.squeeze(1)?, n)?;
                (mean, var)
            } else {
                (
                    self.running_mean.as_detached_tensor().unsqueeze(1)?,
                    self.running_var.as_detached_tensor().unsqueeze(1)?,
                )
            };
            generic::normalize(&per_trial, &mean, &var, &gamma, &beta, relu)?
        } else {
            let (mean, var) = if pass.train {
                let (mean, var) = kernels::batch_stats(&flat, pack)?;
                let as_tensor = |v: &[f64]| {
                    Tensor::from_vec(
                        v.iter().map(|&m| m as f32).collect::<Vec<_>>(),
                        (pack, c),
                        flat.device(),
                    )
                };
                self.update_running(&as_tensor(&mean)?, &as_tensor(&var)?, n)?;
                (mean, var)
            } else {
                let host = |v: &Var| -> Result<Vec<f64>> {
                    Ok(v.flatten_all()?
                        .to_vec1::<f32>()?
                        .into_iter()
                        .map(f64::from)
                        .collect())
                };
                (host(&self.running_mean)?, host(&self.running_var)?)
            };
            flat.contiguous()?.apply_op3(
                &gamma.contiguous()?,
                &beta.contiguous()?,
                BatchNormRelu {
                    mean: mean.iter().map(|&m| m as f32).collect(),
                    inv_std: var
                        .iter()
                        .map(|&v| (1.0 / (v + BN_EPS).sqrt()) as f32)
                        .collect(),
                    relu,
                    batch_stats: pass.train,
                },
            )?
        };
        Ok(Act {
            t: out.reshape((kb, hw, c))?,
            h: x.h,
            w: x.w,
        })
    }

    /// `running = 0.9 * running + 0.1 * batch`, with the unbiased variance,
    /// for `(K, C)` batch statistics over `n` values per trial.
    fn update_running(&self, mean: &Tensor, var: &Tensor, n: usize) -> Result<()> {
        let n = n as f64;
        let unbiased = (var.detach() * (n / (n - 1.0)))?;
        self.running_mean.set(
            &((self.running_mean.as_tensor() * (1.0 - BN_MOMENTUM))?
                + (mean.detach() * BN_MOMENTUM)?)?,
        )?;
        self.running_var.set(
            &((self.running_var.as_tensor() * (1.0 - BN_MOMENTUM))? + (unbiased * BN_MOMENTUM)?)?,
        )
    }
}

/// A fully connected layer on `(K*B, in)`.
#[derive(Debug)]
pub struct Linear {
    weight: Var,
    bias: Var,
}

impl Linear {
    /// Registers `{name}.weight` and `{name}.bias`, drawn by the scheme.
    pub fn new(
        b: &mut Builder<'_, '_>,
        name: &str,
        n_in: usize,
        n_out: usize,
        is_output: bool,
    ) -> Result<Self> {
        let shape = LayerShape {
            fan_in: n_in,
            fan_out: n_out,
            is_output,
        };
        Ok(Self {
            weight: b.sampled(&format!("{name}.weight"), &[n_out, n_in], |s| {
                s.weight(shape)
            })?,
            bias: b.sampled(&format!("{name}.bias"), &[n_out], |s| s.bias(shape))?,
        })
    }

    /// `x W^T + b`, each trial's items by its own weights: one batched
    /// product.
    pub fn forward(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        let weight = pass.param(&self.weight);
        let (pack, n_out, n_in) = weight.dims3()?;
        let kb = x.dim(0)?;
        let y = x
            .reshape((pack, kb / pack, n_in))?
            .matmul(&weight.t()?)?
            .reshape((kb, n_out))?;
        add_bias(&y, &pass.param(&self.bias))
    }
}

/// Element-wise ReLU.
pub fn relu(x: &Act) -> Result<Act> {
    Ok(Act {
        t: x.t.relu()?,
        h: x.h,
        w: x.w,
    })
}

/// MaxPool2d(2): floor on odd sizes; the gradient goes to the first maximum
/// of each window in row-major order, as in PyTorch (candle's own pool
/// scales it by the number of ties instead).
pub fn max_pool2(x: &Act) -> Result<Act> {
    let t = if x.t.device().is_cpu() {
        x.t.contiguous()?.apply_op1(MaxPool2 { h: x.h, w: x.w })?
    } else {
        generic::max_pool2(x)?
    };
    Ok(Act {
        t,
        h: x.h / 2,
        w: x.w / 2,
    })
}

/// `x + bias` for a pack's `(K*N, C)` and `(K, C)`.
fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        x.contiguous()?.apply_op2(&bias.contiguous()?, BiasAdd)
    } else {
        let (kn, c) = x.dims2()?;
        let pack = bias.dim(0)?;
        x.reshape((pack, kn / pack, c))?
            .broadcast_add(&bias.unsqueeze(1)?)?
            .reshape((kn, c))
    }
}

/// The layers as plain candle tensor ops: what runs on GPUs, and the
/// reference the fused CPU kernels are tested against.
pub(crate) mod generic {
    use candle_core::{DType, Result, Tensor};

    use super::{Act, BN_EPS};

    /// Convolution of a pack's `(K*B, HW, C)` by `(K, O, C, k, k)` weights
    /// to `(K*B*P, O)`: windows gathered with one `index_select` over a
    /// zero-padded input, then one batched matrix product.
    pub fn conv(x: &Tensor, weight: &Tensor, index: &Tensor) -> Result<Tensor> {
        let (kb, hw, c) = x.dims3()?;
        let (pack, o, _, k, _) = weight.dims5()?;
        let b = kb / pack;
        // (K, O, C, kh, kw) -> (K, kh*kw*C, O), matching the gathered columns.
        let wmat = weight
            .permute((0, 3, 4, 2, 1))?
            .reshape((pack, k * k * c, o))?;
        let taps = k * k;
        let positions = index.dim(0)? / taps;
        let cols = x
            .reshape((pack, b, hw, c))?
            .pad_with_zeros(2, 0, 1)?
            .contiguous()?
            .index_select(index, 2)?
            .reshape((pack, b * positions, taps * c))?;
        cols.matmul(&wmat)?.reshape((kb * positions, o))
    }

    /// Each trial's batch mean and biased variance `(K, 1, C)` of a pack's
    /// `(K, N, C)`, summed in f64.
    pub fn batch_stats(x: &Tensor) -> Result<(Tensor, Tensor)> {
        let x64 = x.to_dtype(DType::F64)?;
        let mean = x64.mean_keepdim(1)?;
        let var = x64.broadcast_sub(&mean)?.sqr()?.mean_keepdim(1)?;
        Ok((mean.to_dtype(DType::F32)?, var.to_dtype(DType::F32)?))
    }

    /// `relu?((x - mean) / sqrt(var + eps) * gamma + beta)` on `(K, N, C)`,
    /// with `(K, 1, C)` statistics and `(K, C)` gamma and beta; returns
    /// `(K*N, C)`.
    pub fn normalize(
        x: &Tensor,
        mean: &Tensor,
        var: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        relu: bool,
    ) -> Result<Tensor> {
        let (pack, n, c) = x.dims3()?;
        let inv_std = (var + BN_EPS)?.sqrt()?.recip()?;
        let scale = inv_std.broadcast_mul(&gamma.unsqueeze(1)?)?;
        let out = x
            .broadcast_sub(mean)?
            .broadcast_mul(&scale)?
            .broadcast_add(&beta.unsqueeze(1)?)?
            .reshape((pack * n, c))?;
        if relu { out.relu() } else { Ok(out) }
    }

    /// 2x2 max-pool as a masked sum with a detached first-maximum mask.
    pub fn max_pool2(x: &Act) -> Result<Tensor> {
        let (b, _, c) = x.t.dims3()?;
        let (h2, w2) = (x.h / 2, x.w / 2);
        let grid =
            x.t.reshape((b, x.h, x.w, c))?
                .narrow(1, 0, 2 * h2)?
                .narrow(2, 0, 2 * w2)?
                .reshape((b, h2, 2, w2, 2, c))?
                .permute((0, 1, 3, 2, 4, 5))?
                .reshape((b, h2 * w2, 4, c))?;
        let first_max = grid.detach().argmax_keepdim(2)?;
        let taps = Tensor::arange(0u32, 4, x.t.device())?.reshape((1, 1, 4, 1))?;
        let mask = first_max.broadcast_eq(&taps)?.to_dtype(grid.dtype())?;
        (grid * mask)?.sum(2)
    }
}

/// Flattens `(K*B, H*W, C)` in PyTorch's C, H, W order to `(K*B, C*H*W)`.
pub fn flatten_chw(x: &Act) -> Result<Tensor> {
    let (b, hw, c) = x.t.dims3()?;
    x.t.transpose(1, 2)?.reshape((b, c * hw))
}

/// `BCEWithLogitsLoss` (mean) against a constant target, per trial: `(K)`
/// losses of a pack's `(K*B)` logits.
pub fn bce_with_logits(logits: &Tensor, target: f64, pack: usize) -> Result<Tensor> {
    let kb = logits.dim(0)?;
    bce_with_logits_items(logits, target)?
        .reshape((pack, kb / pack))?
        .mean(1)
}

/// Per-item BCE with logits against a constant target, in PyTorch's stable
/// form `max(x, 0) - x*t + log(1 + exp(-|x|))` (candle's own overflows).
pub fn bce_with_logits_items(logits: &Tensor, target: f64) -> Result<Tensor> {
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    (logits.relu()? - (logits * target)?)? + softplus
}

/// Softmax over the channel (last) dimension.
pub fn softmax_channels(x: &Act) -> Result<Act> {
    Ok(Act {
        t: candle_nn::ops::softmax(&x.t, D::Minus1)?,
        h: x.h,
        w: x.w,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::init::InitScheme;
    use crate::testing::assert_same;

    #[test]
    fn appended_features_equal_the_conv_of_the_concatenation() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut tensors = NamedTensors::default();
        let mut b = Builder {
            tensors: &mut tensors,
            weights: Weights::Drawn {
                rng: &mut rng,
                scheme: InitScheme::Default,
            },
            device: &device,
        };
        let (hw, items, cx, cv) = ((6, 4), 3, 3, 4);
        let conv = Conv::new(&mut b, "c", cx + cv, 5, 3, 1, true, false, hw).unwrap();
        let random = |dims: &[usize]| {
            Var::from_tensor(&Tensor::randn(0f32, 1., dims, &device).unwrap()).unwrap()
        };
        let (x, v) = (random(&[items, 24, cx]), random(&[items, cv]));
        let pass = Pass {
            train: true,
            track_params: true,
        };
        let appended = conv
            .forward_appended(
                &Act {
                    t: x.as_tensor().clone(),
                    h: 6,
                    w: 4,
                },
                &v,
                pass,
            )
            .unwrap()
            .t;
        let repeated = v
            .reshape((items, 1, cv))
            .unwrap()
            .broadcast_as((items, 24, cv))
            .unwrap();
        let concatenated = Tensor::cat(&[x.as_tensor(), &repeated], 2).unwrap();
        let plain = conv
            .forward(
                &Act {
                    t: concatenated,
                    h: 6,
                    w: 4,
                },
                pass,
            )
            .unwrap()
            .t;
        let bias = conv.bias.as_ref().expect("a bias");
        assert_same(
            "appended features",
            &appended,
            &plain,
            &[&x, &v, &conv.weight, bias],
        );
    }
}
