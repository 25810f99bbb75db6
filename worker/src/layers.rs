//! The layers of both networks, on channels-last activations.
//!
//! An activation is `(B, H*W, C)`. Convolutions gather their 3x3 windows with
//! one `index_select` and multiply once (candle's CPU conv backward is a slow
//! naive transpose); max-pool routes the gradient to the first maximum of
//! each window as PyTorch does (candle's does not); BatchNorm sums its batch
//! statistics in f64 as PyTorch's CPU kernel does.

use candle_core::{D, DType, Device, Result, Tensor, Var};
use rand::Rng;

use crate::init::{InitScheme, LayerShape};
use crate::params::{Kind, Params};

/// An activation with its spatial size.
#[derive(Debug, Clone)]
pub struct Act {
    /// `(B, H*W, C)`.
    pub t: Tensor,
    pub h: usize,
    pub w: usize,
}

/// Whether a forward pass trains (batch statistics, running-stat updates)
/// and whether it tracks gradients of the network's own parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub train: bool,
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

/// What layers need while a network is built.
#[derive(Debug)]
pub struct Builder<'a, R: Rng> {
    pub params: &'a mut Params,
    pub rng: &'a mut R,
    pub scheme: InitScheme,
    pub device: &'a Device,
}

impl<R: Rng> Builder<'_, R> {
    fn sampled(&mut self, name: &str, dims: &[usize], fill: crate::init::Fill) -> Result<Var> {
        let n = dims.iter().product();
        let values = fill.sample(n, self.rng);
        let t = Tensor::from_vec(values, dims, self.device)?;
        self.params.add(name, t, Kind::Parameter)
    }

    fn constant(&mut self, name: &str, n: usize, value: f32, kind: Kind) -> Result<Var> {
        let t = Tensor::full(value, n, self.device)?;
        self.params.add(name, t, kind)
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
    k: usize,
    pad: usize,
    in_hw: (usize, usize),
}

impl Conv {
    /// A conv layer named `name` (PyTorch's `name.weight`, `name.bias`) for
    /// inputs of size `in_hw`.
    #[allow(clippy::too_many_arguments)]
    pub fn new<R: Rng>(
        b: &mut Builder<'_, R>,
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
        let weight = b.sampled(
            &format!("{name}.weight"),
            &[c_out, c_in, k, k],
            b.scheme.weight(shape),
        )?;
        let bias = if bias {
            Some(b.sampled(&format!("{name}.bias"), &[c_out], b.scheme.bias(shape))?)
        } else {
            None
        };
        let (h, w) = in_hw;
        let (ho, wo) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
        let mut index = Vec::with_capacity(ho * wo * k * k);
        for oy in 0..ho {
            for ox in 0..wo {
                for ky in 0..k {
                    for kx in 0..k {
                        let (iy, ix) = (
                            (oy + ky) as isize - pad as isize,
                            (ox + kx) as isize - pad as isize,
                        );
                        let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                        index.push(if inside {
                            iy as u32 * w as u32 + ix as u32
                        } else {
                            (h * w) as u32
                        });
                    }
                }
            }
        }
        let index = Tensor::from_vec(index, ho * wo * k * k, b.device)?;
        Ok(Self {
            weight,
            bias,
            index,
            k,
            pad,
            in_hw,
        })
    }

    pub fn forward(&self, x: &Act, pass: Pass) -> Result<Act> {
        assert_eq!((x.h, x.w), self.in_hw, "conv input size");
        let (b, hw, c) = x.t.dims3()?;
        let (ho, wo) = (
            x.h + 2 * self.pad + 1 - self.k,
            x.w + 2 * self.pad + 1 - self.k,
        );
        let weight = pass.param(&self.weight);
        let c_out = weight.dim(0)?;
        // (O, C, kh, kw) -> (kh*kw*C, O), matching the gathered columns.
        let wmat = weight
            .permute((2, 3, 1, 0))?
            .reshape((self.k * self.k * c, c_out))?;
        let cols = if self.k == 1 {
            x.t.reshape((b * hw, c))?
        } else {
            x.t.pad_with_zeros(1, 0, 1)?
                .contiguous()?
                .index_select(&self.index, 1)?
                .reshape((b * ho * wo, self.k * self.k * c))?
        };
        let mut out = cols.matmul(&wmat)?;
        if let Some(bias) = &self.bias {
            out = out.broadcast_add(&pass.param(bias))?;
        }
        Ok(Act {
            t: out.reshape((b, ho * wo, c_out))?,
            h: ho,
            w: wo,
        })
    }
}

/// BatchNorm2d (eps 1e-5, momentum 0.1) over channels-last activations.
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
    pub fn new<R: Rng>(b: &mut Builder<'_, R>, name: &str, c: usize) -> Result<Self> {
        Ok(Self {
            weight: b.constant(&format!("{name}.weight"), c, 1.0, Kind::Parameter)?,
            bias: b.constant(&format!("{name}.bias"), c, 0.0, Kind::Parameter)?,
            running_mean: b.constant(&format!("{name}.running_mean"), c, 0.0, Kind::Buffer)?,
            running_var: b.constant(&format!("{name}.running_var"), c, 1.0, Kind::Buffer)?,
        })
    }

    pub fn forward(&self, x: &Act, pass: Pass) -> Result<Act> {
        let (b, hw, c) = x.t.dims3()?;
        let flat = x.t.reshape((b * hw, c))?;
        let (mean, var) = if pass.train {
            let n = (b * hw) as f64;
            let x64 = flat.to_dtype(DType::F64)?;
            let mean = x64.mean_keepdim(0)?;
            let var = x64.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
            let (mean, var) = (mean.to_dtype(DType::F32)?, var.to_dtype(DType::F32)?);
            let unbiased = (var.detach() * (n / (n - 1.0)))?.reshape(c)?;
            self.running_mean.set(
                &((self.running_mean.as_tensor() * (1.0 - BN_MOMENTUM))?
                    + (mean.detach().reshape(c)? * BN_MOMENTUM)?)?,
            )?;
            self.running_var.set(
                &((self.running_var.as_tensor() * (1.0 - BN_MOMENTUM))?
                    + (unbiased * BN_MOMENTUM)?)?,
            )?;
            (mean, var)
        } else {
            (
                self.running_mean.as_detached_tensor().reshape((1, c))?,
                self.running_var.as_detached_tensor().reshape((1, c))?,
            )
        };
        let inv_std = (var + BN_EPS)?.sqrt()?.recip()?;
        let scale = inv_std.broadcast_mul(&pass.param(&self.weight).reshape((1, c))?)?;
        let out = flat
            .broadcast_sub(&mean)?
            .broadcast_mul(&scale)?
            .broadcast_add(&pass.param(&self.bias).reshape((1, c))?)?;
        Ok(Act {
            t: out.reshape((b, hw, c))?,
            h: x.h,
            w: x.w,
        })
    }
}

/// A fully connected layer on `(B, in)`.
#[derive(Debug)]
pub struct Linear {
    weight: Var,
    bias: Var,
}

impl Linear {
    pub fn new<R: Rng>(
        b: &mut Builder<'_, R>,
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
            weight: b.sampled(
                &format!("{name}.weight"),
                &[n_out, n_in],
                b.scheme.weight(shape),
            )?,
            bias: b.sampled(&format!("{name}.bias"), &[n_out], b.scheme.bias(shape))?,
        })
    }

    pub fn forward(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        x.matmul(&pass.param(&self.weight).t()?)?
            .broadcast_add(&pass.param(&self.bias))
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
/// of each window in row-major order, as in PyTorch.
pub fn max_pool2(x: &Act) -> Result<Act> {
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
    Ok(Act {
        t: (grid * mask)?.sum(2)?,
        h: h2,
        w: w2,
    })
}

/// Flattens `(B, H*W, C)` in PyTorch's C, H, W order to `(B, C*H*W)`.
pub fn flatten_chw(x: &Act) -> Result<Tensor> {
    let (b, hw, c) = x.t.dims3()?;
    x.t.transpose(1, 2)?.reshape((b, c * hw))
}

/// `BCEWithLogitsLoss` (mean) against a constant target.
pub fn bce_with_logits(logits: &Tensor, target: f64) -> Result<Tensor> {
    bce_with_logits_items(logits, target)?.mean_all()
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
