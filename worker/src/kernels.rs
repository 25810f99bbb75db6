//! Fused CPU kernels for the layers whose candle composition is slow on CPU
//! (reductions over non-last dimensions go through a per-element divmod
//! path, and every small op allocates): convolution, BatchNorm with
//! ReLU, bias addition and 2x2 max-pooling. Each has a forward and a
//! backward pass as candle custom ops. `layers` uses them on CPU and the
//! plain tensor-op composition on other devices; the tests below hold the
//! two to the same numbers.

use std::sync::Arc;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Storage, Tensor,
};

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
/// PyTorch-layout weights `(K, O, C, k, k)`, giving `(K*B, P, O)`. Per
/// trial, windows gathered by `index` (`index[p*T + t]` is the input
/// position of tap `t` of output `p`, or `HW` for padding), then one matrix
/// product: each trial computes exactly what it would alone. The backward
/// pass computes the input gradient only when the input needs one.
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// For each output position and tap, the input row to read (or the padding row).
    pub index: Arc<Vec<u32>>,
    /// Window positions per output (9 for a 3x3 kernel).
    pub taps: usize,
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
    /// `(B*P, T*C)` windows of one trial's `(B, HW, C)` input.
    fn columns(&self, x: &[f32], d: ConvDims) -> Vec<f32> {
        let (hw, c) = (d.hw, d.c);
        let mut cols = Vec::with_capacity(d.items * self.index.len() * c);
        for item in x.chunks_exact(hw * c) {
            for &i in self.index.iter() {
                let i = i as usize;
                if i < hw {
                    cols.extend_from_slice(&item[i * c..(i + 1) * c]);
                } else {
                    cols.resize(cols.len() + c, 0.0);
                }
            }
        }
        cols
    }

    /// `(T*C, O)` weights from one trial's `(O, C, T)`.
    fn weight_matrix(&self, w: &[f32], d: ConvDims) -> Vec<f32> {
        let (c, o) = (d.c, d.o);
        let mut wmat = vec![0f32; self.taps * c * o];
        for oi in 0..o {
            for ci in 0..c {
                for t in 0..self.taps {
                    wmat[(t * c + ci) * o + oi] = w[(oi * c + ci) * self.taps + t];
                }
            }
        }
        wmat
    }

    fn rows(&self, d: ConvDims) -> usize {
        d.items * self.index.len() / self.taps
    }
}

fn view(values: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), values).expect("matching sizes")
}

fn view_mut(values: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), values).expect("matching sizes")
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
        let (rows, k) = (self.rows(d), self.taps * d.c);
        let mut out = vec![0f32; d.pack * rows * d.o];
        for (t, dst) in out.chunks_exact_mut(rows * d.o).enumerate() {
            let cols = self.columns(&x[t * d.items * d.hw * d.c..][..d.items * d.hw * d.c], d);
            let wmat = self.weight_matrix(&w[t * d.o * k..][..d.o * k], d);
            general_mat_mul(
                1.0,
                &view(&cols, rows, k),
                &view(&wmat, k, d.o),
                0.0,
                &mut view_mut(dst, rows, d.o),
            );
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((d.pack * d.items, self.index.len() / self.taps, d.o)),
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
        let (rows, k) = (self.rows(d), self.taps * d.c);
        let (hw, c, o) = (d.hw, d.c, d.o);
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let per_x = d.items * hw * c;
        let mut dw = vec![0f32; d.pack * o * k];
        with_values(x, |x| {
            for (t, dw) in dw.chunks_exact_mut(o * k).enumerate() {
                let cols = self.columns(&x[t * per_x..][..per_x], d);
                let g = view(&g[t * rows * o..][..rows * o], rows, o);
                let dwmat = view(&cols, rows, k).t().dot(&g);
                for ((tap, ci), oi) in (0..self.taps)
                    .flat_map(|tap| (0..c).map(move |ci| (tap, ci)))
                    .flat_map(|tc| (0..o).map(move |oi| (tc, oi)))
                {
                    dw[(oi * c + ci) * self.taps + tap] = dwmat[[tap * c + ci, oi]];
                }
            }
        })?;
        let dw = tensor(dw, w.shape(), w)?;
        if !x.track_op() {
            return Ok((None, Some(dw)));
        }
        let mut dx = vec![0f32; d.pack * per_x];
        with_values(w, |w| {
            for (t, dx) in dx.chunks_exact_mut(per_x).enumerate() {
                let wmat = self.weight_matrix(&w[t * o * k..][..o * k], d);
                let g = view(&g[t * rows * o..][..rows * o], rows, o);
                let dcols = g.dot(&view(&wmat, k, o).t());
                let dcols = dcols.as_slice().expect("a fresh standard-layout array");
                let per_item = self.index.len() * c;
                for (n, item) in dcols.chunks_exact(per_item).enumerate() {
                    let dst = &mut dx[n * hw * c..(n + 1) * hw * c];
                    for (row, &i) in item.chunks_exact(c).zip(self.index.iter()) {
                        let i = i as usize;
                        if i < hw {
                            for (d, v) in dst[i * c..(i + 1) * c].iter_mut().zip(row) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        })?;
        Ok((Some(tensor(dx, x.shape(), x)?), Some(dw)))
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
        let mut out = vec![0f32; x.len()];
        for (t, (out, x)) in out
            .chunks_exact_mut(per_trial)
            .zip(x.chunks_exact(per_trial))
            .enumerate()
        {
            let at = |v: &[f32], j: usize| v[t * c + j];
            // y = x * scale + shift, PyTorch's CPU form of the transform.
            let scale: Vec<f32> = (0..c)
                .map(|j| at(&self.inv_std, j) * at(gamma, j))
                .collect();
            let shift: Vec<f32> = (0..c)
                .map(|j| at(beta, j) - at(&self.mean, j) * scale[j])
                .collect();
            for (o, row) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for j in 0..c {
                    let y = row[j] * scale[j] + shift[j];
                    o[j] = if self.relu { y.max(0.0) } else { y };
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
            x.chunks_exact(n * c)
                .enumerate()
                .flat_map(|(t, rows)| {
                    rows.chunks_exact(c).flat_map(move |row| {
                        (0..c)
                            .map(move |j| (row[j] - self.mean[t * c + j]) * self.inv_std[t * c + j])
                    })
                })
                .collect()
        })?;
        let (mut sum_g, mut sum_gx) = (vec![0f64; pack * c], vec![0f64; pack * c]);
        let mut dx = Vec::with_capacity(kn * c);
        for (t, (g, xhat)) in g
            .chunks_exact(n * c)
            .zip(xhat.chunks_exact(n * c))
            .enumerate()
        {
            let (sum_g, sum_gx) = (&mut sum_g[t * c..][..c], &mut sum_gx[t * c..][..c]);
            for (gr, xr) in g.chunks_exact(c).zip(xhat.chunks_exact(c)) {
                for j in 0..c {
                    sum_g[j] += f64::from(gr[j]);
                    sum_gx[j] += f64::from(gr[j]) * f64::from(xr[j]);
                }
            }
            for (gr, xr) in g.chunks_exact(c).zip(xhat.chunks_exact(c)) {
                for j in 0..c {
                    let scale = gamma_v[t * c + j] * self.inv_std[t * c + j];
                    dx.push(if self.batch_stats {
                        let mean_g = sum_g[j] / n as f64;
                        let mean_gx = sum_gx[j] / n as f64;
                        scale * (gr[j] - mean_g as f32 - xr[j] * mean_gx as f32)
                    } else {
                        scale * gr[j]
                    });
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
        let out = x
            .chunks_exact(x.len() / pack)
            .zip(b.chunks_exact(c))
            .flat_map(|(rows, b)| {
                rows.chunks_exact(c)
                    .flat_map(move |row| row.iter().zip(b).map(|(v, b)| v + b))
            })
            .collect();
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
    /// For each output value, the input offset (within its item) of the
    /// window's first maximum.
    fn argmax(&self, x: &[f32], c: usize) -> Vec<usize> {
        let (h2, w2) = (self.h / 2, self.w / 2);
        let mut out = Vec::with_capacity(h2 * w2 * c);
        for oy in 0..h2 {
            for ox in 0..w2 {
                let top = (2 * oy * self.w + 2 * ox) * c;
                let taps = [top, top + c, top + self.w * c, top + self.w * c + c];
                out.extend((0..c).map(|j| {
                    let mut best = taps[0] + j;
                    for &t in &taps[1..] {
                        if x[t + j] > x[best] {
                            best = t + j;
                        }
                    }
                    best
                }));
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
        let out = x
            .chunks_exact(hw * c)
            .flat_map(|item| {
                self.argmax(item, c)
                    .into_iter()
                    .map(|i| item[i])
                    .collect::<Vec<_>>()
            })
            .collect();
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

    /// Values on a coarse grid, so that max-pool windows hold ties.
    fn coarse(dims: &[usize], rng: &mut ChaCha8Rng) -> Var {
        let n = dims.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| f32::from(rng.random_range(-3i8..4)) * 0.5)
            .collect();
        Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
    }

    fn fine(dims: &[usize], rng: &mut ChaCha8Rng) -> Var {
        let n = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() - 0.5).collect();
        Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
    }

    fn assert_close(what: &str, a: &Tensor, b: &Tensor) {
        assert_eq!(a.dims(), b.dims(), "{what}");
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 + 1e-5 * y.abs(),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// Compares two outputs and the gradients they send to `inputs` under
    /// the same random upstream gradient.
    fn assert_same(what: &str, fused: &Tensor, plain: &Tensor, inputs: &[&Var]) {
        assert_close(&format!("{what} forward"), fused, plain);
        let r = Tensor::rand(0f32, 1f32, fused.shape(), &Device::Cpu).unwrap();
        let gf = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (k, v) in inputs.iter().enumerate() {
            let (a, b) = (
                gf.get(v.as_tensor()).unwrap(),
                gp.get(v.as_tensor()).unwrap(),
            );
            assert_close(&format!("{what} gradient {k}"), a, b);
        }
    }

    #[test]
    fn conv_matches_index_select_and_matmul() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (pack, k, pad, (h, w)) in [
            (1, 3, 1, (22, 10)),
            (3, 3, 1, (22, 10)),
            (2, 3, 0, (11, 5)),
            (3, 1, 0, (22, 10)),
        ] {
            let x = fine(&[pack * 2, h * w, 3], &mut rng);
            let weight = fine(&[pack, 4, 3, k, k], &mut rng);
            let (ho, wo) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
            let index = conv_index((h, w), k, pad);
            let fused = x
                .apply_op2(
                    &weight,
                    super::Conv2d {
                        index: std::sync::Arc::new(index.clone()),
                        taps: k * k,
                    },
                )
                .unwrap()
                .reshape((pack * 2 * ho * wo, 4))
                .unwrap();
            let index = Tensor::from_vec(index, ho * wo * k * k, &Device::Cpu).unwrap();
            let plain = generic::conv(&x, &weight, &index).unwrap();
            assert_same(
                &format!("conv pack{pack} k{k} pad{pad}"),
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
