//! Fused CPU kernels for the layers whose candle composition is slow on CPU
//! (reductions over non-last dimensions go through a per-element divmod
//! path, and every small op allocates): convolution, BatchNorm with
//! ReLU, bias addition and 2x2 max-pooling. Each has a forward and a
//! backward pass as candle custom ops. `layers` uses them on CPU and the
//! plain tensor-op composition on other devices; the tests below hold the
//! two to the same numbers.

use std::borrow::Cow;
use std::sync::Arc;

use pulp::{Arch, Simd, WithSimd};

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Storage, Tensor,
};

use crate::layers::conv_index;

mod winograd;

/// The f32 values of a CPU storage in a contiguous layout.
fn values<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused kernels need contiguous input".into()))?;
    Ok(&s.as_slice::<f32>()?[start..end])
}

/// Runs `f` on the f32 values of a CPU tensor.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("fused kernels run on CPU tensors only");
    };
    Ok(f(values(cpu, layout)?))
}

fn tensor(values: Vec<f32>, shape: impl Into<Shape>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(values, shape, like.device())
}

/// A 2D convolution (stride 1, zero padding, no bias) for a pack of trials:
/// channels-last `(K*B, HW, C)` (trial after trial, B items each) by
/// PyTorch-layout weights `(K, O, C, k, k)`, giving `(K*B, P, O)`. Output
/// position `p` reads input position `index[p*T + t]` through tap `t` (or
/// zeros where that is `HW`, the padding). A direct convolution: each
/// trial's outputs are summed in registers, 16 at a time, over its taps and
/// input channels ([`window_products`]), so each trial computes exactly what
/// it would alone. A 3x3 kernel with padding 1 between multiples of 16
/// channels computes its output, its input gradient (a convolution of the
/// same kind) and its weight gradient through [`winograd`] instead, with
/// the same promise. The
/// backward pass computes each gradient only where it is needed (no weight
/// gradient through a network held fixed, no input gradient for the
/// data).
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// For each output position and tap, the input row to read (or the padding row).
    index: Arc<Vec<u32>>,
    /// For each input position and tap, the output that reads it (or the
    /// output count, past the outputs): the map of the input gradient, a
    /// convolution of the output gradient.
    inverse: Arc<Vec<u32>>,
    /// Window positions per output (9 for a 3x3 kernel).
    taps: usize,
    /// For a 3x3 kernel with padding 1, the tiling of its output and
    /// gradients by [`winograd`] (used where the channels fit).
    winograd: Option<winograd::Tiles>,
}

/// The sizes of a packed convolution.
#[derive(Debug, Clone, Copy)]
struct ConvDims {
    pack: usize,
    items: usize,
    hw: usize,
    c: usize,
    o: usize,
}

impl ConvDims {
    fn of(x: &Shape, w: &Shape) -> Result<Self> {
        let (kb, hw, c) = x.dims3()?;
        let (pack, o) = (w.dims()[0], w.dims()[1]);
        Ok(Self {
            pack,
            items: kb / pack,
            hw,
            c,
            o,
        })
    }
}

impl Conv2d {
    /// The `k`x`k` convolution with zero padding `pad` of an `h`x`w` input.
    pub fn new((h, w): (usize, usize), k: usize, pad: usize) -> Self {
        let (index, taps, hw) = (conv_index((h, w), k, pad), k * k, h * w);
        let positions = index.len() / taps;
        let mut inverse = vec![positions as u32; hw * taps];
        for (p, window) in index.chunks_exact(taps).enumerate() {
            for (t, &i) in window.iter().enumerate() {
                if let Some(slot) = inverse.get_mut(i as usize * taps + t) {
                    *slot = p as u32;
                }
            }
        }
        Self {
            index: Arc::new(index),
            inverse: Arc::new(inverse),
            taps,
            winograd: (k == 3 && pad == 1).then(|| winograd::Tiles::new(h, w)),
        }
    }

    fn positions(&self) -> usize {
        self.index.len() / self.taps
    }
}

/// Outputs each kernel loop sums at once (two 8-float AVX registers).
const LANES: usize = 16;

/// Weights laid out for [`window_products`]: for each block of [`LANES`]
/// outputs, for each tap `t` and input `i`, the weights `at(t, i, o)` of the
/// block's outputs `o` (zero past the last output).
fn lane_rows(
    taps: usize,
    inputs: usize,
    outputs: usize,
    at: impl Fn(usize, usize, usize) -> f32,
) -> Vec<f32> {
    let mut rows = vec![0f32; outputs.div_ceil(LANES) * taps * inputs * LANES];
    let mut rows_of = rows.chunks_exact_mut(LANES);
    for first in (0..outputs).step_by(LANES) {
        for t in 0..taps {
            for i in 0..inputs {
                let row = rows_of.next().expect("a row per block, tap and input");
                for (o, v) in (first..outputs).zip(row) {
                    *v = at(t, i, o);
                }
            }
        }
    }
    rows
}

/// `values` as rows of `to` values (the first `width` of each from
/// `values`, the rest zero).
fn widened(values: &[f32], width: usize, to: usize) -> Cow<'_, [f32]> {
    if width == to {
        return Cow::Borrowed(values);
    }
    let mut out = vec![0f32; values.len() / width * to];
    for (src, dst) in values.chunks_exact(width).zip(out.chunks_exact_mut(to)) {
        dst[..width].copy_from_slice(src);
    }
    Cow::Owned(out)
}

/// `acc += v * w` over 16 lanes, fused: one rounding, in one instruction
/// where the CPU has it (FMA with AVX2; NEON) and through `f32::mul_add`
/// where it has not, so every instruction set gives the same bits.
#[inline(always)]
fn add_product<S: Simd>(simd: S, acc: &mut [f32; LANES], v: f32, w: &[f32; LANES]) {
    let v = simd.splat_f32s(v);
    let (acc, _) = S::as_mut_simd_f32s(acc);
    let (w, _) = S::as_simd_f32s(w);
    for (a, w) in acc.iter_mut().zip(w) {
        *a = simd.mul_add_f32s(v, *w, *a);
    }
}

/// For each item of `x` (`rows_in` rows of `inputs` values each) and each
/// output row `r` of `out` (`map.len() / taps` rows of `outputs` values):
/// `out[r][o] = sum over taps t, then inputs i, of x[map[r*taps + t]][i] *
/// w(t, i, o)`, a map entry of `rows_in` or more reading zeros. `weights`
/// come from [`lane_rows`]. Four output rows by 16 outputs are summed in
/// registers at a time, in the same order whatever the batch or pack.
fn window_products(
    x: &[f32],
    inputs: usize,
    map: &[u32],
    taps: usize,
    weights: &[f32],
    outputs: usize,
    out: &mut [f32],
) {
    if !out.is_empty() {
        Arch::new().dispatch(WindowProducts {
            x,
            inputs,
            map,
            taps,
            weights,
            outputs,
            out,
        });
    }
}

/// The arguments of [`window_products`]; its loops run in
/// [`WithSimd::with_simd`], compiled for the SIMD instructions the CPU has
/// (AVX2 on most x86-64), where the loops over 16 lanes vectorise.
struct WindowProducts<'a> {
    x: &'a [f32],
    inputs: usize,
    map: &'a [u32],
    taps: usize,
    weights: &'a [f32],
    outputs: usize,
    out: &'a mut [f32],
}

impl WithSimd for WindowProducts<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self {
            x,
            inputs,
            map,
            taps,
            weights,
            outputs,
            out,
        } = self;
        let rows_out = map.len() / taps;
        let rows_in = x.len() / (out.len() / (rows_out * outputs) * inputs);
        let zeros = vec![0f32; inputs];
        for (item, out) in x
            .chunks_exact(rows_in * inputs)
            .zip(out.chunks_exact_mut(rows_out * outputs))
        {
            for (block, weights) in weights.chunks_exact(taps * inputs * LANES).enumerate() {
                let first = block * LANES;
                let width = (outputs - first).min(LANES);
                for r0 in (0..rows_out).step_by(4) {
                    let mut acc = [[0f32; LANES]; 4];
                    for (t, weights) in weights.chunks_exact(inputs * LANES).enumerate() {
                        let rows: [&[f32]; 4] =
                            std::array::from_fn(|j| match map.get((r0 + j) * taps + t) {
                                Some(&i) if (i as usize) < rows_in => {
                                    &item[i as usize * inputs..][..inputs]
                                }
                                _ => &zeros[..],
                            });
                        for (i, w) in weights.chunks_exact(LANES).enumerate() {
                            let w = w.try_into().expect("a lane row");
                            for (acc, row) in acc.iter_mut().zip(rows) {
                                add_product(simd, acc, row[i], w);
                            }
                        }
                    }
                    for (r, acc) in (r0..rows_out).zip(&acc) {
                        out[r * outputs + first..][..width].copy_from_slice(&acc[..width]);
                    }
                }
            }
        }
    }
}

/// The weight gradient of [`window_products`], laid out as [`lane_rows`]:
/// for each tap `t`, input `i` and output `o`, the sum over items, then
/// output rows `r` in order, of `x[map[r*taps + t]][i] * g[r][o]` (padding
/// taps skipped). Four inputs by 16 outputs are summed in registers at a
/// time.
fn window_gradient(
    x: &[f32],
    inputs: usize,
    map: &[u32],
    taps: usize,
    g: &[f32],
    outputs: usize,
) -> Vec<f32> {
    let blocks = outputs.div_ceil(LANES);
    let mut out = vec![0f32; blocks * taps * inputs * LANES];
    if !g.is_empty() {
        Arch::new().dispatch(WindowGradient {
            x: &widened(x, inputs, inputs.next_multiple_of(4)),
            inputs,
            map,
            taps,
            g: &widened(g, outputs, blocks * LANES),
            out: &mut out,
        });
    }
    out
}

/// The arguments of [`window_gradient`], the rows of `x` and `g` widened to
/// multiples of 4 and 16 values (zeros), for the loops of
/// [`WithSimd::with_simd`] (as [`WindowProducts`]).
struct WindowGradient<'a> {
    x: &'a [f32],
    inputs: usize,
    map: &'a [u32],
    taps: usize,
    g: &'a [f32],
    out: &'a mut [f32],
}

impl WithSimd for WindowGradient<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self {
            x,
            inputs,
            map,
            taps,
            g,
            out,
        } = self;
        let (wide_inputs, rows_out) = (inputs.next_multiple_of(4), map.len() / taps);
        let wide = out.len() / (taps * inputs);
        let items = g.len() / (rows_out * wide);
        let rows_in = x.len() / (items * wide_inputs);
        for (block, out) in out.chunks_exact_mut(taps * inputs * LANES).enumerate() {
            for (t, out) in out.chunks_exact_mut(inputs * LANES).enumerate() {
                for i0 in (0..inputs).step_by(4) {
                    let mut acc = [[0f32; LANES]; 4];
                    for (item, g) in x
                        .chunks_exact(rows_in * wide_inputs)
                        .zip(g.chunks_exact(rows_out * wide))
                    {
                        for (window, g) in map.chunks_exact(taps).zip(g.chunks_exact(wide)) {
                            let i = window[t] as usize;
                            if i >= rows_in {
                                continue;
                            }
                            let v: &[f32; 4] = item[i * wide_inputs + i0..][..4]
                                .try_into()
                                .expect("four inputs");
                            let g = g[block * LANES..][..LANES].try_into().expect("a lane row");
                            for (acc, &v) in acc.iter_mut().zip(v) {
                                add_product(simd, acc, v, g);
                            }
                        }
                    }
                    for (out, acc) in out.chunks_exact_mut(LANES).skip(i0).zip(&acc) {
                        out.copy_from_slice(acc);
                    }
                }
            }
        }
    }
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d-channels-last"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = ConvDims::of(l1.shape(), l2.shape())?;
        let (x, w) = (values(s1, l1)?, values(s2, l2)?);
        let (taps, p) = (self.taps, self.positions());
        let (per_x, per_w, per_out) = (d.items * d.hw * d.c, d.o * d.c * taps, d.items * p * d.o);
        let mut out = vec![0f32; d.pack * per_out];
        for (t, out) in out.chunks_exact_mut(per_out).enumerate() {
            let (x, w) = (&x[t * per_x..][..per_x], &w[t * per_w..][..per_w]);
            if let Some(tiles) = self.winograd.filter(|_| winograd::fits(d.c, d.o)) {
                winograd::convolve(tiles, x, d.c, w, d.o, out);
                continue;
            }
            let weights = lane_rows(taps, d.c, d.o, |tap, ci, oi| {
                w[(oi * d.c + ci) * taps + tap]
            });
            window_products(x, d.c, &self.index, taps, &weights, d.o, out);
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((d.pack * d.items, p, d.o)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = ConvDims::of(x.shape(), w.shape())?;
        let (taps, p, (hw, c, o)) = (self.taps, self.positions(), (d.hw, d.c, d.o));
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let (per_x, per_w, per_g) = (d.items * hw * c, o * c * taps, d.items * p * o);
        let dw = if w.track_op() {
            let mut dw = vec![0f32; d.pack * per_w];
            with_values(x, |x| {
                for (t, dw) in dw.chunks_exact_mut(per_w).enumerate() {
                    let (x, g) = (&x[t * per_x..][..per_x], &g[t * per_g..][..per_g]);
                    if let Some(tiles) = self.winograd.filter(|_| winograd::fits(c, o)) {
                        winograd::weight_gradient(tiles, x, c, g, o, dw);
                        continue;
                    }
                    let rows = window_gradient(x, c, &self.index, taps, g, o);
                    for (oi, dw) in dw.chunks_exact_mut(c * taps).enumerate() {
                        let rows = &rows[oi / LANES * taps * c * LANES + oi % LANES..];
                        for (ci, dw) in dw.chunks_exact_mut(taps).enumerate() {
                            for (tap, v) in dw.iter_mut().enumerate() {
                                *v = rows[(tap * c + ci) * LANES];
                            }
                        }
                    }
                }
            })?;
            Some(tensor(dw, w.shape(), w)?)
        } else {
            None
        };
        if !x.track_op() {
            return Ok((None, dw));
        }
        let mut dx = vec![0f32; d.pack * per_x];
        with_values(w, |w| {
            for (t, dx) in dx.chunks_exact_mut(per_x).enumerate() {
                let (g, w) = (&g[t * per_g..][..per_g], &w[t * per_w..][..per_w]);
                if let Some(tiles) = self.winograd.filter(|_| winograd::fits(o, c)) {
                    // The same-size convolution of the output gradient by
                    // the kernel turned half a turn, inputs and outputs
                    // swapped: `(C, O, 3, 3)`.
                    let mut turned = vec![0f32; per_w];
                    for (ci, turned) in turned.chunks_exact_mut(o * taps).enumerate() {
                        for (oi, turned) in turned.chunks_exact_mut(taps).enumerate() {
                            for (tap, v) in turned.iter_mut().enumerate() {
                                *v = w[(oi * c + ci) * taps + taps - 1 - tap];
                            }
                        }
                    }
                    winograd::convolve(tiles, g, o, &turned, c, dx);
                    continue;
                }
                let weights = lane_rows(taps, o, c, |tap, oi, ci| w[(oi * c + ci) * taps + tap]);
                window_products(g, o, &self.inverse, taps, &weights, c, dx);
            }
        })?;
        Ok((Some(tensor(dx, x.shape(), x)?), dw))
    }
}

/// Per trial and channel, the batch mean and biased variance of a pack's
/// `(K*N, C)` values (trial after trial), summed in f64 as PyTorch's CPU
/// BatchNorm does: `K*C` values each.
pub fn batch_stats(x: &Tensor, pack: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let (kn, c) = x.dims2()?;
    let n = kn / pack;
    with_values(x, |x| {
        let (mut means, mut vars) = (Vec::with_capacity(pack * c), Vec::with_capacity(pack * c));
        for rows in x.chunks_exact(n * c) {
            let mut mean = vec![0f64; c];
            for row in rows.chunks_exact(c) {
                for (m, &v) in mean.iter_mut().zip(row) {
                    *m += f64::from(v);
                }
            }
            mean.iter_mut().for_each(|m| *m /= n as f64);
            let mut var = vec![0f64; c];
            for row in rows.chunks_exact(c) {
                for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                    *s += (f64::from(v) - m).powi(2);
                }
            }
            var.iter_mut().for_each(|s| *s /= n as f64);
            means.extend(mean);
            vars.extend(var);
        }
        (means, vars)
    })
}

/// `relu?((x - mean) * inv_std * gamma + beta)` on a pack's `(K*N, C)`
/// (trial after trial), with `gamma` and `beta` of shape `(K, C)`. With
/// `batch_stats`, the backward pass also differentiates through each
/// trial's batch mean and variance (training mode).
#[derive(Debug, Clone)]
pub struct BatchNormRelu {
    /// Per trial and channel, the mean used to normalise (`K*C`).
    pub mean: Vec<f32>,
    /// Per trial and channel, 1 / sqrt(var + eps) (`K*C`).
    pub inv_std: Vec<f32>,
    /// Whether a ReLU follows.
    pub relu: bool,
    /// Whether the statistics are the batch's own (training), so the gradient flows through them.
    pub batch_stats: bool,
}

impl CustomOp3 for BatchNormRelu {
    fn name(&self) -> &'static str {
        "batch-norm-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, gamma, beta) = (values(s1, l1)?, values(s2, l2)?, values(s3, l3)?);
        let (pack, c) = l2.shape().dims2()?;
        let per_trial = x.len() / pack;
        let mut out = Vec::with_capacity(x.len());
        for (t, x) in x.chunks_exact(per_trial).enumerate() {
            let at = |v: &[f32], j: usize| v[t * c + j];
            // y = x * scale + shift, PyTorch's CPU form of the transform.
            let scale: Vec<f32> = (0..c)
                .map(|j| at(&self.inv_std, j) * at(gamma, j))
                .collect();
            let shift: Vec<f32> = (0..c)
                .map(|j| at(beta, j) - at(&self.mean, j) * scale[j])
                .collect();
            // A loop per case, over zipped rows, so that each vectorises.
            for row in x.chunks_exact(c) {
                let y = row
                    .iter()
                    .zip(&scale)
                    .zip(&shift)
                    .map(|((v, s), b)| v * s + b);
                if self.relu {
                    out.extend(y.map(|y| y.max(0.0)));
                } else {
                    out.extend(y);
                }
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (kn, c) = x.dims2()?;
        let pack = gamma.dim(0)?;
        let n = kn / pack;
        let gamma_v: Vec<f32> = gamma.flatten_all()?.to_vec1()?;
        // Upstream gradient through the ReLU (zero where the output is 0,
        // as in PyTorch) and the normalised input.
        let g: Vec<f32> = with_values(grad, |g| {
            with_values(res, |r| {
                g.iter()
                    .zip(r)
                    .map(|(&g, &r)| if self.relu && r <= 0.0 { 0.0 } else { g })
                    .collect()
            })
        })??;
        let xhat: Vec<f32> = with_values(x, |x| {
            let mut xhat = x.to_vec();
            for (t, rows) in xhat.chunks_exact_mut(n * c).enumerate() {
                let (mean, inv_std) = (&self.mean[t * c..][..c], &self.inv_std[t * c..][..c]);
                for row in rows.chunks_exact_mut(c) {
                    for ((v, m), s) in row.iter_mut().zip(mean).zip(inv_std) {
                        *v = (*v - m) * s;
                    }
                }
            }
            xhat
        })?;
        let (mut sum_g, mut sum_gx) = (vec![0f64; pack * c], vec![0f64; pack * c]);
        let mut dx = Vec::with_capacity(kn * c);
        // Loops over zipped rows, a loop per case, so that each vectorises
        // (across channels: each channel's sums keep their row order).
        for (t, (g, xhat)) in g
            .chunks_exact(n * c)
            .zip(xhat.chunks_exact(n * c))
            .enumerate()
        {
            let (sum_g, sum_gx) = (&mut sum_g[t * c..][..c], &mut sum_gx[t * c..][..c]);
            for (gr, xr) in g.chunks_exact(c).zip(xhat.chunks_exact(c)) {
                for (((sg, sgx), &g), &x) in sum_g.iter_mut().zip(sum_gx.iter_mut()).zip(gr).zip(xr)
                {
                    *sg += f64::from(g);
                    *sgx += f64::from(g) * f64::from(x);
                }
            }
            let scale: Vec<f32> = (0..c)
                .map(|j| gamma_v[t * c + j] * self.inv_std[t * c + j])
                .collect();
            let mean =
                |sums: &[f64]| -> Vec<f32> { sums.iter().map(|s| (s / n as f64) as f32).collect() };
            let (mean_g, mean_gx) = (mean(sum_g), mean(sum_gx));
            for (gr, xr) in g.chunks_exact(c).zip(xhat.chunks_exact(c)) {
                if self.batch_stats {
                    dx.extend(
                        gr.iter()
                            .zip(xr)
                            .zip(&scale)
                            .zip(mean_g.iter().zip(&mean_gx))
                            .map(|(((g, x), s), (mg, mgx))| s * (g - mg - x * mgx)),
                    );
                } else {
                    dx.extend(gr.iter().zip(&scale).map(|(g, s)| s * g));
                }
            }
        }
        let to_f32 = |v: Vec<f64>| v.into_iter().map(|s| s as f32).collect::<Vec<_>>();
        Ok((
            Some(tensor(dx, (kn, c), x)?),
            Some(tensor(to_f32(sum_gx), (pack, c), x)?),
            Some(tensor(to_f32(sum_g), (pack, c), x)?),
        ))
    }
}

/// `x + bias` for a pack's `(K*N, C)` (trial after trial) and `(K, C)`.
#[derive(Debug, Clone, Copy)]
pub struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, b) = (values(s1, l1)?, values(s2, l2)?);
        let (pack, c) = l2.shape().dims2()?;
        let mut out = x.to_vec();
        for (rows, b) in out.chunks_exact_mut(x.len() / pack).zip(b.chunks_exact(c)) {
            for row in rows.chunks_exact_mut(c) {
                for (v, b) in row.iter_mut().zip(b) {
                    *v += b;
                }
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (pack, c) = bias.dims2()?;
        let sums = with_values(grad, |g| {
            let mut sums = vec![0f32; pack * c];
            for (rows, sums) in g.chunks_exact(g.len() / pack).zip(sums.chunks_exact_mut(c)) {
                for row in rows.chunks_exact(c) {
                    for (s, v) in sums.iter_mut().zip(row) {
                        *s += v;
                    }
                }
            }
            sums
        })?;
        Ok((Some(grad.clone()), Some(tensor(sums, (pack, c), bias)?)))
    }
}

/// 2x2 max-pooling of `(B, H*W, C)` to `(B, (H/2)*(W/2), C)`, flooring odd
/// sizes; the gradient goes to the first maximum of each window in
/// row-major order, as in PyTorch.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2 {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
}

impl MaxPool2 {
    /// For each output position of an item (row-major), the offsets of its
    /// window's four taps in row-major order, `c` values each.
    fn windows(&self, c: usize) -> impl Iterator<Item = [usize; 4]> {
        let (h2, w2, w) = (self.h / 2, self.w / 2, self.w);
        (0..h2).flat_map(move |oy| {
            (0..w2).map(move |ox| {
                let top = (2 * oy * w + 2 * ox) * c;
                [top, top + c, top + w * c, top + w * c + c]
            })
        })
    }

    /// For each output value, the input offset (within its item) of the
    /// window's first maximum.
    fn argmax(&self, x: &[f32], c: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.h / 2 * (self.w / 2) * c);
        for taps in self.windows(c) {
            let [first, rest @ ..] = taps.map(|t| &x[t..][..c]);
            for (j, &v) in first.iter().enumerate() {
                let (mut best, mut max) = (taps[0] + j, v);
                for (&t, values) in taps[1..].iter().zip(rest) {
                    if values[j] > max {
                        (best, max) = (t + j, values[j]);
                    }
                }
                out.push(best);
            }
        }
        out
    }
}

impl CustomOp1 for MaxPool2 {
    fn name(&self) -> &'static str {
        "max-pool-2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, hw, c) = l.shape().dims3()?;
        let x = values(s, l)?;
        let mut out = Vec::with_capacity(b * (self.h / 2) * (self.w / 2) * c);
        // The value at each window's first maximum, as [`MaxPool2::argmax`]
        // picks it, without keeping where it was.
        let first_max = |m: f32, v: f32| if v > m { v } else { m };
        for item in x.chunks_exact(hw * c) {
            for taps in self.windows(c) {
                let [w0, w1, w2, w3] = taps.map(|t| &item[t..][..c]);
                out.extend(
                    w0.iter()
                        .zip(w1)
                        .zip(w2)
                        .zip(w3)
                        .map(|(((&v0, &v1), &v2), &v3)| {
                            first_max(first_max(first_max(v0, v1), v2), v3)
                        }),
                );
            }
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((b, (self.h / 2) * (self.w / 2), c)),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (b, hw, c) = arg.dims3()?;
        let mut dx = vec![0f32; b * hw * c];
        with_values(arg, |x| {
            with_values(grad, |g| {
                let per_item = g.len() / b;
                for n in 0..b {
                    let item = &x[n * hw * c..(n + 1) * hw * c];
                    let dst = &mut dx[n * hw * c..(n + 1) * hw * c];
                    for (&i, &gv) in self.argmax(item, c).iter().zip(&g[n * per_item..]) {
                        dst[i] += gv;
                    }
                }
            })
        })??;
        Ok(Some(tensor(dx, (b, hw, c), arg)?))
    }
}

#[cfg(test)]
mod tests {
    //! Each fused kernel against the tensor-op composition that runs on
    //! other devices: the same outputs and the same gradients.

    use candle_core::{Device, Tensor, Var};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::layers::{Act, conv_index, generic};
    use crate::testing::assert_same;

    /// Values on a coarse grid, so that max-pool windows hold ties.
    fn coarse(dims: &[usize], rng: &mut ChaCha8Rng) -> Var {
        let n = dims.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| f32::from(rng.random_range(-3i8..4)) * 0.5)
            .collect();
        Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
    }

    /// `n` values uniform in [-0.5, 0.5).
    pub(super) fn uniform(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random::<f32>() - 0.5).collect()
    }

    /// Where a kernel runs: on the CPU's own SIMD instructions (the
    /// dispatch the layers use) or on pulp's scalar fallback, the path of
    /// a CPU without SIMD.
    #[derive(Clone, Copy)]
    pub(super) enum Path {
        Native,
        Scalar,
    }

    impl Path {
        pub(super) fn run<K: pulp::WithSimd>(self, kernel: K) -> K::Output {
            match self {
                Path::Native => pulp::Arch::new().dispatch(kernel),
                Path::Scalar => kernel.with_simd(pulp::Scalar::new()),
            }
        }
    }

    /// Runs `kernel` (writing `len` values) on both [`Path`]s and asserts
    /// the same bits. On a CPU without SIMD both are the scalar path, and
    /// the comparison shows nothing; x86-64 with AVX2 and aarch64 have it.
    #[track_caller]
    pub(super) fn assert_same_bits_on_both_paths(len: usize, kernel: impl Fn(Path, &mut [f32])) {
        let [native, scalar] = [Path::Native, Path::Scalar].map(|path| {
            let mut out = vec![0f32; len];
            kernel(path, &mut out);
            out.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        });
        assert_eq!(native, scalar);
    }

    fn fine(dims: &[usize], rng: &mut ChaCha8Rng) -> Var {
        let v = uniform(dims.iter().product(), rng);
        Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
    }

    /// The direct kernel gives the same bits on the CPU's own
    /// instructions as on pulp's scalar fallback; [`super::winograd`]'s
    /// tests hold its kernels to the same.
    #[test]
    fn the_direct_kernel_gives_the_same_bits_on_every_instruction_set() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        // 26 inputs to 20 outputs (past one block of 16), 3x3 with padding
        // 1 on the pooled board, two items.
        let (items, (h, w), inputs, outputs, taps) = (2, (11, 5), 26, 20, 9);
        let map = conv_index((h, w), 3, 1);
        let x = uniform(items * h * w * inputs, &mut rng);
        let raw = uniform(taps * inputs * outputs, &mut rng);
        let weights = super::lane_rows(taps, inputs, outputs, |t, i, o| {
            raw[(t * inputs + i) * outputs + o]
        });
        assert_same_bits_on_both_paths(items * h * w * outputs, |path, out| {
            path.run(super::WindowProducts {
                x: &x,
                inputs,
                map: &map,
                taps,
                weights: &weights,
                outputs,
                out,
            })
        });
    }

    #[test]
    fn conv_matches_index_select_and_matmul() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // The model's shapes (16 outputs; 26 inputs; 2 outputs of a 1x1
        // head; 16 to 16 channels 3x3 with padding 1, by Winograd's method,
        // on the board and on the pooled board, whose sides are odd) and
        // odd ones: outputs past one block of 16 (by either method, and
        // two blocks of inputs or outputs by Winograd's), inputs not a
        // multiple of 4, positions not a multiple of 4.
        for (pack, items, k, pad, (h, w), (c, o)) in [
            (1, 2, 3, 1, (22, 10), (3, 4)),
            (3, 2, 3, 1, (22, 10), (26, 16)),
            (3, 2, 3, 1, (22, 10), (16, 16)),
            (2, 5, 3, 1, (11, 5), (16, 16)),
            (2, 2, 3, 0, (11, 5), (16, 20)),
            (3, 2, 1, 0, (22, 10), (16, 2)),
            (2, 2, 3, 1, (3, 3), (5, 33)),
            (2, 3, 3, 1, (3, 3), (32, 16)),
            (2, 2, 3, 1, (11, 5), (16, 32)),
        ] {
            let x = fine(&[pack * items, h * w, c], &mut rng);
            let weight = fine(&[pack, o, c, k, k], &mut rng);
            let (ho, wo) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
            let index = conv_index((h, w), k, pad);
            let fused = x
                .apply_op2(&weight, super::Conv2d::new((h, w), k, pad))
                .unwrap()
                .reshape((pack * items * ho * wo, o))
                .unwrap();
            let index = Tensor::from_vec(index, ho * wo * k * k, &Device::Cpu).unwrap();
            let plain = generic::conv(&x, &weight, &index).unwrap();
            assert_same(
                &format!("conv pack{pack} k{k} pad{pad} {c}->{o}"),
                &fused,
                &plain,
                &[&x, &weight],
            );
        }
    }

    #[test]
    fn batch_norm_relu_matches_tensor_ops_in_both_modes() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for pack in [1, 3] {
            let x = fine(&[pack * 880, 5], &mut rng);
            let gamma = fine(&[pack, 5], &mut rng);
            let beta = fine(&[pack, 5], &mut rng);
            let per_trial = x.reshape((pack, 880, 5)).unwrap();
            for (train, relu) in [(true, true), (true, false), (false, true)] {
                let (mean, var) = if train {
                    generic::batch_stats(&per_trial).unwrap()
                } else {
                    (
                        fine(&[pack, 1, 5], &mut rng).as_detached_tensor(),
                        (fine(&[pack, 1, 5], &mut rng).as_detached_tensor() + 1.0).unwrap(),
                    )
                };
                let plain =
                    generic::normalize(&per_trial, &mean, &var, &gamma, &beta, relu).unwrap();
                let host = |t: &Tensor| -> Vec<f64> {
                    t.flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                        .into_iter()
                        .map(f64::from)
                        .collect()
                };
                let (mean, var) = if train {
                    super::batch_stats(&x, pack).unwrap()
                } else {
                    (host(&mean), host(&var))
                };
                let op = super::BatchNormRelu {
                    mean: mean.iter().map(|&m| m as f32).collect(),
                    inv_std: var
                        .iter()
                        .map(|&v| (1.0 / (v + 1e-5).sqrt()) as f32)
                        .collect(),
                    relu,
                    batch_stats: train,
                };
                let fused = x.apply_op3(&gamma, &beta, op).unwrap();
                assert_same(
                    &format!("bn pack={pack} train={train} relu={relu}"),
                    &fused,
                    &plain,
                    &[&x, &gamma, &beta],
                );
            }
        }
    }

    #[test]
    fn bias_add_matches_broadcast_add() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x = fine(&[3 * 30, 7], &mut rng);
        let b = fine(&[3, 7], &mut rng);
        let fused = x.apply_op2(&b, super::BiasAdd).unwrap();
        let plain = x
            .reshape((3, 30, 7))
            .unwrap()
            .broadcast_add(&b.unsqueeze(1).unwrap())
            .unwrap()
            .reshape((90, 7))
            .unwrap();
        assert_same("bias add", &fused, &plain, &[&x, &b]);
    }

    #[test]
    fn max_pool_matches_the_first_max_mask_on_ties_and_odd_sizes() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for (h, w) in [(22, 10), (11, 5)] {
            let x = coarse(&[3, h * w, 4], &mut rng);
            let fused = x.apply_op1(super::MaxPool2 { h, w }).unwrap();
            let plain = generic::max_pool2(&Act {
                t: x.as_tensor().clone(),
                h,
                w,
            })
            .unwrap();
            assert_same(&format!("max pool {h}x{w}"), &fused, &plain, &[&x]);
        }
    }
}
