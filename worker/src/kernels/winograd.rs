//! A 3x3 convolution with padding 1 by Winograd's minimal filtering
//! F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016): each 2x2 block of outputs is made from the 4x4 block
//! of inputs around it in 16 products per input and output channel instead
//! of 36, so 2.25 times fewer multiplications.
//!
//! Per trial: the weights `g` of each (output, input) pair become
//! `U = G g Gᵀ`; each 4x4 input tile `d` (zeros past the edges) becomes
//! `V = Bᵀ d B`; at each of a tile's 16 positions ξ, `M[ξ]` is the sum over
//! input channels of `V[ξ] U[ξ]`; the outputs are `Aᵀ M A`. Four tiles go
//! through these steps at a time, in buffers that stay in the first-level
//! cache, with 16 outputs summed in registers as in [`add_product`]. The
//! same values go through the same operations in the same order whatever
//! the batch or pack, so a trial gets the same bits alone or packed; the
//! results differ from the direct convolution's only by rounding.
//!
//! The weight gradient is the transpose of those steps (Lavin and Gray's
//! F(3x3, 2x2) on the same tiles): the 2x2 output gradient of each tile
//! becomes `A dY Aᵀ`, its products with the tile's `V` are summed over
//! every tile at each ξ, and each pair's sums `S` give `Gᵀ S G`.

use std::ops::Range;

use pulp::{Arch, Simd, WithSimd};

use super::{LANES, add_product};

/// Tiles transformed and multiplied together.
const GROUP: usize = 4;

/// Tiles transformed together for the weight gradient, their sums kept in
/// registers across them.
const CHUNK: usize = 16;

/// The tiling of an `h`x`w` input (and output) into 2x2 output blocks.
#[derive(Debug, Clone, Copy)]
pub struct Tiles {
    h: usize,
    w: usize,
}

impl Tiles {
    pub fn new(h: usize, w: usize) -> Self {
        Self { h, w }
    }

    fn across(self) -> usize {
        self.w.div_ceil(2)
    }

    fn count(self) -> usize {
        self.h.div_ceil(2) * self.across()
    }

    /// The top-left output position (row, column) of `tile`.
    fn origin(self, tile: usize) -> (usize, usize) {
        (2 * (tile / self.across()), 2 * (tile % self.across()))
    }

    /// The position (`row * w + column`) of each of `tile`'s 2x2 outputs,
    /// row-major; None past the edge.
    fn outputs(self, tile: usize) -> [Option<usize>; 4] {
        let (ty, tx) = self.origin(tile);
        let mut at = [None; 4];
        for (n, at) in at.iter_mut().enumerate() {
            let (y, x) = (ty + n / 2, tx + n % 2);
            if y < self.h && x < self.w {
                *at = Some(y * self.w + x);
            }
        }
        at
    }
}

// The tile transforms below are plain functions of `simd`, always inlined:
// a closure or `std::array::from_fn` here would be compiled without the
// SIMD instructions of the caller and call each of them out of line.

/// `Bᵀ r` of one column or row `r`.
#[inline(always)]
fn bt<S: Simd>(simd: S, r: [S::f32s; 4]) -> [S::f32s; 4] {
    [
        simd.sub_f32s(r[0], r[2]),
        simd.add_f32s(r[1], r[2]),
        simd.sub_f32s(r[2], r[1]),
        simd.sub_f32s(r[1], r[3]),
    ]
}

/// `Bᵀ d B` of a 4x4 tile `d` (row-major): [`bt`] down each column, then
/// along each row.
#[inline(always)]
fn input_tile<S: Simd>(simd: S, d: [S::f32s; 16]) -> [S::f32s; 16] {
    let mut t = d;
    for j in 0..4 {
        let column = bt(simd, [d[j], d[4 + j], d[8 + j], d[12 + j]]);
        for (i, v) in column.into_iter().enumerate() {
            t[i * 4 + j] = v;
        }
    }
    let mut v = d;
    for i in 0..4 {
        let row = bt(simd, [t[i * 4], t[i * 4 + 1], t[i * 4 + 2], t[i * 4 + 3]]);
        v[i * 4..][..4].copy_from_slice(&row);
    }
    v
}

/// `Aᵀ r = (r0 + r1 + r2, r1 - r2 - r3)` of one column or row `r`.
#[inline(always)]
fn at<S: Simd>(simd: S, r: [S::f32s; 4]) -> [S::f32s; 2] {
    [
        simd.add_f32s(simd.add_f32s(r[0], r[1]), r[2]),
        simd.sub_f32s(simd.sub_f32s(r[1], r[2]), r[3]),
    ]
}

/// `Aᵀ m A` of a 4x4 tile `m` (row-major), the 2x2 outputs row-major:
/// [`at`] down each column, then along each row.
#[inline(always)]
fn output_tile<S: Simd>(simd: S, m: [S::f32s; 16]) -> [S::f32s; 4] {
    let mut t = [m[0]; 8];
    for j in 0..4 {
        let [t0, t1] = at(simd, [m[j], m[4 + j], m[8 + j], m[12 + j]]);
        (t[j], t[4 + j]) = (t0, t1);
    }
    let [y0, y1] = at(simd, [t[0], t[1], t[2], t[3]]);
    let [y2, y3] = at(simd, [t[4], t[5], t[6], t[7]]);
    [y0, y1, y2, y3]
}

/// Whether [`convolve`] takes `c` inputs to `o` outputs: whole SIMD
/// registers of channels on every instruction set.
pub fn fits(c: usize, o: usize) -> bool {
    c.is_multiple_of(LANES) && o.is_multiple_of(LANES)
}

/// `A (r0, r1) = (r0, r0 + r1, r0 - r1, -r1)` of one column or row.
#[inline(always)]
fn a<S: Simd>(simd: S, r0: S::f32s, r1: S::f32s) -> [S::f32s; 4] {
    [
        r0,
        simd.add_f32s(r0, r1),
        simd.sub_f32s(r0, r1),
        simd.sub_f32s(simd.splat_f32s(0.0), r1),
    ]
}

/// `A r Aᵀ` of a 2x2 tile `r` (row-major) into 4x4: [`a`] down each
/// column, then along each row. The transpose of [`output_tile`], for
/// gradients.
#[inline(always)]
fn gradient_tile<S: Simd>(simd: S, r: [S::f32s; 4]) -> [S::f32s; 16] {
    let columns = [a(simd, r[0], r[2]), a(simd, r[1], r[3])];
    let mut u = [r[0]; 16];
    for i in 0..4 {
        u[i * 4..][..4].copy_from_slice(&a(simd, columns[0][i], columns[1][i]));
    }
    u
}

/// `Gᵀ r = (r0 + (r1 + r2) / 2, (r1 - r2) / 2, (r1 + r2) / 2 + r3)` of one
/// column or row `r`.
#[inline(always)]
fn gt<S: Simd>(simd: S, r: [S::f32s; 4]) -> [S::f32s; 3] {
    let half = simd.splat_f32s(0.5);
    let sum = simd.mul_f32s(simd.add_f32s(r[1], r[2]), half);
    [
        simd.add_f32s(r[0], sum),
        simd.mul_f32s(simd.sub_f32s(r[1], r[2]), half),
        simd.add_f32s(sum, r[3]),
    ]
}

/// `Gᵀ s G` of a 4x4 tile `s` (row-major) into 3x3: [`gt`] down each
/// column, then along each row. The transpose of the weights' transform,
/// for their gradient.
#[inline(always)]
fn weight_tile<S: Simd>(simd: S, s: [S::f32s; 16]) -> [S::f32s; 9] {
    let mut columns = [[s[0]; 3]; 4];
    for (j, column) in columns.iter_mut().enumerate() {
        *column = gt(simd, [s[j], s[4 + j], s[8 + j], s[12 + j]]);
    }
    let mut out = [s[0]; 9];
    for i in 0..3 {
        let row = [columns[0][i], columns[1][i], columns[2][i], columns[3][i]];
        out[i * 3..][..3].copy_from_slice(&gt(simd, row));
    }
    out
}

/// One item's input with a border of zeros, one wide at the top and left
/// and up to whole tiles at the bottom and right, so that no tile reads
/// past an edge.
struct Padded {
    tiles: Tiles,
    c: usize,
    /// Positions per padded row.
    pw: usize,
    values: Vec<f32>,
}

impl Padded {
    fn new(tiles: Tiles, c: usize) -> Self {
        let (ph, pw) = (2 * tiles.h.div_ceil(2) + 2, 2 * tiles.across() + 2);
        Self {
            tiles,
            c,
            pw,
            values: vec![0f32; ph * pw * c],
        }
    }

    /// Copies in one item's input, `(H*W, C)`; the border stays zero.
    fn fill(&mut self, x: &[f32]) {
        let (w, c, pw) = (self.tiles.w, self.c, self.pw);
        for (row, x) in x.chunks_exact(w * c).enumerate() {
            self.values[((row + 1) * pw + 1) * c..][..w * c].copy_from_slice(x);
        }
    }

    /// `V` of the tiles of `range`: the k-th one's row ξ at `(ξ * room + k)
    /// * c` of `v`, which has room for `room` tiles.
    #[inline(always)]
    fn transform<S: Simd>(&self, simd: S, range: Range<usize>, room: usize, v: &mut [f32]) {
        let cq = self.c / (size_of::<S::f32s>() / size_of::<f32>());
        let (xs, _) = S::as_simd_f32s(&self.values);
        let (vs, _) = S::as_mut_simd_f32s(v);
        for (k, tile) in range.enumerate() {
            let (ty, tx) = self.tiles.origin(tile);
            let corner = (ty * self.pw + tx) * cq;
            for q in 0..cq {
                let mut d = [xs[corner]; 16];
                for (n, d) in d.iter_mut().enumerate() {
                    *d = xs[corner + (n / 4 * self.pw + n % 4) * cq + q];
                }
                for (xi, t) in input_tile(simd, d).into_iter().enumerate() {
                    vs[(xi * room + k) * cq + q] = t;
                }
            }
        }
    }
}

/// The transformed weights `U` of one trial, `w` being `(O, C, 3, 3)`:
/// for each ξ, the rows of [`super::lane_rows`] (one tap, `c` inputs, `o`
/// outputs, a whole number of blocks of [`LANES`]).
fn transformed_weights(w: &[f32], c: usize, o: usize) -> Vec<f32> {
    let mut u = vec![0f32; 16 * o * c];
    for (at, g) in w.chunks_exact(9).enumerate() {
        let (oi, ci) = (at / c, at % c);
        let row = (oi / LANES * c + ci) * LANES + oi % LANES;
        // G g: 4 rows of 3.
        let mut gg = [[0f32; 3]; 4];
        for j in 0..3 {
            let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
            gg[0][j] = g0;
            gg[1][j] = (g0 + g1 + g2) * 0.5;
            gg[2][j] = (g0 - g1 + g2) * 0.5;
            gg[3][j] = g2;
        }
        // (G g) Gᵀ: 4 by 4.
        for (i, [g0, g1, g2]) in gg.into_iter().enumerate() {
            let values = [g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2];
            for (j, value) in values.into_iter().enumerate() {
                u[(i * 4 + j) * o * c + row] = value;
            }
        }
    }
    u
}

/// The convolution of one trial's items `x` (`(N, H*W, C)`) by its weights
/// `w` (`(O, C, 3, 3)`), into `out` (`(N, H*W, O)`).
pub fn convolve(tiles: Tiles, x: &[f32], c: usize, w: &[f32], o: usize, out: &mut [f32]) {
    if !out.is_empty() {
        Arch::new().dispatch(Convolve {
            tiles,
            x,
            c,
            u: &transformed_weights(w, c, o),
            o,
            out,
        });
    }
}

/// The arguments of [`convolve`], its loops run in [`WithSimd::with_simd`]
/// (as [`super::WindowProducts`]).
struct Convolve<'a> {
    tiles: Tiles,
    x: &'a [f32],
    c: usize,
    u: &'a [f32],
    o: usize,
    out: &'a mut [f32],
}

impl WithSimd for Convolve<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self {
            tiles,
            x,
            c,
            u,
            o,
            out,
        } = self;
        let (hw, count) = (tiles.h * tiles.w, tiles.count());
        // Channels per register, and registers per row of outputs.
        let oq = o / (size_of::<S::f32s>() / size_of::<f32>());
        let mut padded = Padded::new(tiles, c);
        // V of the group's tiles: tile k's row ξ at (ξ * GROUP + k) * c;
        // then M: tile k's row ξ at (k * 16 + ξ) * o.
        let (mut v, mut m) = (vec![0f32; GROUP * 16 * c], vec![0f32; GROUP * 16 * o]);
        for (x, out) in x.chunks_exact(hw * c).zip(out.chunks_exact_mut(hw * o)) {
            padded.fill(x);
            let (outs, _) = S::as_mut_simd_f32s(out);
            for first in (0..count).step_by(GROUP) {
                let group = (count - first).min(GROUP);
                padded.transform(simd, first..first + group, GROUP, &mut v);
                for xi in 0..16 {
                    let u = &u[xi * o * c..][..o * c];
                    // Every tile of a group is summed (past the last, over
                    // values left from an earlier group, never stored), so
                    // that the sums stay in registers.
                    let mut rows = [&v[..0]; GROUP];
                    for (k, row) in rows.iter_mut().enumerate() {
                        *row = &v[(xi * GROUP + k) * c..][..c];
                    }
                    for (block, u) in u.chunks_exact(c * LANES).enumerate() {
                        let mut acc = [[0f32; LANES]; GROUP];
                        for (ci, w) in u.chunks_exact(LANES).enumerate() {
                            let w = w.try_into().expect("a lane row");
                            for (acc, row) in acc.iter_mut().zip(rows) {
                                add_product(simd, acc, row[ci], w);
                            }
                        }
                        for (k, acc) in acc.iter().enumerate().take(group) {
                            m[(k * 16 + xi) * o + block * LANES..][..LANES].copy_from_slice(acc);
                        }
                    }
                }
                let (ms, _) = S::as_simd_f32s(&m);
                for k in 0..group {
                    let at = tiles.outputs(first + k);
                    for q in 0..oq {
                        let mut tile = [ms[0]; 16];
                        for (xi, t) in tile.iter_mut().enumerate() {
                            *t = ms[(k * 16 + xi) * oq + q];
                        }
                        for (y, at) in output_tile(simd, tile).into_iter().zip(at) {
                            if let Some(p) = at {
                                outs[p * oq + q] = y;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The weight gradient of [`convolve`] for one trial, `(O, C, 3, 3)`, from
/// its items' inputs `x` (`(N, H*W, C)`) and output gradients `g` (`(N,
/// H*W, O)`): the forward's steps transposed. Each tile's 2x2 output
/// gradient `dY` (zeros past the edges) becomes `A dY Aᵀ`; at each of the
/// 16 positions ξ, its products with the tile's `V` are summed over items,
/// then tiles, in order (the same order whatever the batch or pack); the
/// sums `S` of each (output, input) pair give `Gᵀ S G`, into `dw`.
pub fn weight_gradient(tiles: Tiles, x: &[f32], c: usize, g: &[f32], o: usize, dw: &mut [f32]) {
    Arch::new().dispatch(WeightSums {
        tiles,
        x,
        c,
        g,
        o,
        dw,
    });
}

/// The arguments of [`weight_gradient`], its loops run in
/// [`WithSimd::with_simd`] (as [`Convolve`]).
struct WeightSums<'a> {
    tiles: Tiles,
    x: &'a [f32],
    c: usize,
    g: &'a [f32],
    o: usize,
    dw: &'a mut [f32],
}

impl WithSimd for WeightSums<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self {
            tiles,
            x,
            c,
            g,
            o,
            dw,
        } = self;
        let (hw, count) = (tiles.h * tiles.w, tiles.count());
        // The sum of output oi and input ci at ξ: sums[(ξ * c + ci) * o + oi].
        let mut sums = vec![0f32; 16 * c * o];
        let oq = o / (size_of::<S::f32s>() / size_of::<f32>());
        let zero = simd.splat_f32s(0.0);
        let mut padded = Padded::new(tiles, c);
        // V and A dY Aᵀ of the chunk's tiles: tile k's row ξ at (ξ * CHUNK
        // + k) * c and (ξ * CHUNK + k) * o.
        let (mut v, mut u) = (vec![0f32; CHUNK * 16 * c], vec![0f32; CHUNK * 16 * o]);
        for (x, g) in x.chunks_exact(hw * c).zip(g.chunks_exact(hw * o)) {
            padded.fill(x);
            let (gs, _) = S::as_simd_f32s(g);
            for first in (0..count).step_by(CHUNK) {
                let chunk = (count - first).min(CHUNK);
                padded.transform(simd, first..first + chunk, CHUNK, &mut v);
                let (us, _) = S::as_mut_simd_f32s(&mut u);
                for k in 0..chunk {
                    let at = tiles.outputs(first + k);
                    for q in 0..oq {
                        let mut dy = [zero; 4];
                        for (dy, at) in dy.iter_mut().zip(at) {
                            if let Some(p) = at {
                                *dy = gs[p * oq + q];
                            }
                        }
                        for (xi, t) in gradient_tile(simd, dy).into_iter().enumerate() {
                            us[(xi * CHUNK + k) * oq + q] = t;
                        }
                    }
                }
                for xi in 0..16 {
                    let v = &v[xi * CHUNK * c..][..chunk * c];
                    let u = &u[xi * CHUNK * o..][..chunk * o];
                    for c0 in (0..c).step_by(4) {
                        for block in (0..o).step_by(LANES) {
                            let sums = &mut sums[(xi * c + c0) * o + block..];
                            let mut acc = [[0f32; LANES]; 4];
                            for (j, acc) in acc.iter_mut().enumerate() {
                                acc.copy_from_slice(&sums[j * o..][..LANES]);
                            }
                            for (v, u) in v.chunks_exact(c).zip(u.chunks_exact(o)) {
                                let w = u[block..][..LANES].try_into().expect("a lane row");
                                for (acc, &v) in acc.iter_mut().zip(&v[c0..][..4]) {
                                    add_product(simd, acc, v, w);
                                }
                            }
                            for (j, acc) in acc.iter().enumerate() {
                                sums[j * o..][..LANES].copy_from_slice(acc);
                            }
                        }
                    }
                }
            }
        }
        // Gᵀ S G of each input's sums, a register of outputs at a time.
        let (ss, _) = S::as_simd_f32s(&sums);
        let mut taps = vec![0f32; 9 * o];
        for ci in 0..c {
            let (ts, _) = S::as_mut_simd_f32s(&mut taps);
            for q in 0..oq {
                let mut s = [zero; 16];
                for (xi, s) in s.iter_mut().enumerate() {
                    *s = ss[(xi * c + ci) * oq + q];
                }
                for (tap, t) in weight_tile(simd, s).into_iter().enumerate() {
                    ts[tap * oq + q] = t;
                }
            }
            for (oi, dw) in dw.chunks_exact_mut(9 * c).enumerate() {
                for (tap, v) in dw[ci * 9..][..9].iter_mut().enumerate() {
                    *v = taps[tap * o + oi];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The promise that every instruction set gives the same bits: each
    //! kernel run on the CPU's own instructions and on pulp's scalar
    //! fallback (the path of a CPU without SIMD).

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::kernels::tests::{assert_same_bits_on_both_paths, uniform};

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // The pooled board (odd sides, so tiles past the edge), 16 to 32
        // channels, two items.
        let (tiles, items, c, o) = (Tiles::new(11, 5), 2, 16, 32);
        let hw = 11 * 5;
        let x = uniform(items * hw * c, &mut rng);
        let u = transformed_weights(&uniform(o * c * 9, &mut rng), c, o);
        let g = uniform(items * hw * o, &mut rng);
        assert_same_bits_on_both_paths(items * hw * o, |path, out| {
            path.run(Convolve {
                tiles,
                x: &x,
                c,
                u: &u,
                o,
                out,
            })
        });
        assert_same_bits_on_both_paths(o * c * 9, |path, dw| {
            path.run(WeightSums {
                tiles,
                x: &x,
                c,
                g: &g,
                o,
                dw,
            })
        });
    }
}
