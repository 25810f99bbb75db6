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

use pulp::{Arch, Simd, WithSimd};

use super::{LANES, add_product};

/// Tiles transformed and multiplied together.
const GROUP: usize = 4;

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
}

/// `Bᵀ d B` of a 4x4 tile `d` (row-major), through `add` and `sub`:
/// `Bᵀ r = (r0 - r2, r1 + r2, r2 - r1, r1 - r3)` down each column, then
/// along each row.
#[inline(always)]
fn input_tile<T: Copy>(d: [T; 16], add: impl Fn(T, T) -> T, sub: impl Fn(T, T) -> T) -> [T; 16] {
    let bt = |r: [T; 4]| {
        [
            sub(r[0], r[2]),
            add(r[1], r[2]),
            sub(r[2], r[1]),
            sub(r[1], r[3]),
        ]
    };
    let mut t = d;
    for j in 0..4 {
        for (i, v) in bt([d[j], d[4 + j], d[8 + j], d[12 + j]])
            .into_iter()
            .enumerate()
        {
            t[i * 4 + j] = v;
        }
    }
    let mut v = d;
    for (i, row) in v.chunks_exact_mut(4).enumerate() {
        row.copy_from_slice(&bt([t[i * 4], t[i * 4 + 1], t[i * 4 + 2], t[i * 4 + 3]]));
    }
    v
}

/// `Aᵀ m A` of a 4x4 tile `m` (row-major), the 2x2 outputs row-major:
/// `Aᵀ r = (r0 + r1 + r2, r1 - r2 - r3)` down each column, then along each
/// row.
#[inline(always)]
fn output_tile<T: Copy>(m: [T; 16], add: impl Fn(T, T) -> T, sub: impl Fn(T, T) -> T) -> [T; 4] {
    let at = |r: [T; 4]| [add(add(r[0], r[1]), r[2]), sub(sub(r[1], r[2]), r[3])];
    let mut t = [m[0]; 8];
    for j in 0..4 {
        let [t0, t1] = at([m[j], m[4 + j], m[8 + j], m[12 + j]]);
        (t[j], t[4 + j]) = (t0, t1);
    }
    let ([y0, y1], [y2, y3]) = (at([t[0], t[1], t[2], t[3]]), at([t[4], t[5], t[6], t[7]]));
    [y0, y1, y2, y3]
}

/// Whether [`convolve`] takes `c` inputs to `o` outputs: whole SIMD
/// registers of channels on every instruction set.
pub fn fits(c: usize, o: usize) -> bool {
    c.is_multiple_of(LANES) && o.is_multiple_of(LANES)
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
        // Channels per register, and registers per row of inputs and outputs.
        let lanes = size_of::<S::f32s>() / size_of::<f32>();
        let (cq, oq) = (c / lanes, o / lanes);
        // An item's input with a border of zeros, one wide at the top and
        // left and up to whole tiles at the bottom and right.
        let (ph, pw) = (2 * tiles.h.div_ceil(2) + 2, 2 * tiles.across() + 2);
        let mut padded = vec![0f32; ph * pw * c];
        let (add, sub) = (|a, b| simd.add_f32s(a, b), |a, b| simd.sub_f32s(a, b));
        // V of the group's tiles: tile k's row ξ at (k * 16 + ξ) * c; then
        // M: tile k's row ξ at (k * 16 + ξ) * o.
        let (mut v, mut m) = (vec![0f32; GROUP * 16 * c], vec![0f32; GROUP * 16 * o]);
        for (x, out) in x.chunks_exact(hw * c).zip(out.chunks_exact_mut(hw * o)) {
            for (row, x) in x.chunks_exact(tiles.w * c).enumerate() {
                padded[((row + 1) * pw + 1) * c..][..tiles.w * c].copy_from_slice(x);
            }
            let (xs, _) = S::as_simd_f32s(&padded);
            let (outs, _) = S::as_mut_simd_f32s(out);
            for first in (0..count).step_by(GROUP) {
                let group = (count - first).min(GROUP);
                let (vs, _) = S::as_mut_simd_f32s(&mut v);
                for k in 0..group {
                    let (ty, tx) = tiles.origin(first + k);
                    let rows: [&[S::f32s]; 4] =
                        std::array::from_fn(|i| &xs[((ty + i) * pw + tx) * cq..][..4 * cq]);
                    let tile = &mut vs[k * 16 * cq..][..16 * cq];
                    for q in 0..cq {
                        let d = std::array::from_fn(|n| rows[n / 4][n % 4 * cq + q]);
                        for (xi, t) in input_tile(d, add, sub).into_iter().enumerate() {
                            tile[xi * cq + q] = t;
                        }
                    }
                }
                for xi in 0..16 {
                    let u = &u[xi * o * c..][..o * c];
                    // Every tile of a group is summed (past the last, over
                    // values left from an earlier group, never stored), so
                    // that the sums stay in registers.
                    let rows: [&[f32]; GROUP] =
                        std::array::from_fn(|k| &v[(k * 16 + xi) * c..][..c]);
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
                    let (ty, tx) = tiles.origin(first + k);
                    for q in 0..oq {
                        let tile = std::array::from_fn(|xi| ms[(k * 16 + xi) * oq + q]);
                        for (n, y) in output_tile(tile, add, sub).into_iter().enumerate() {
                            let (oy, ox) = (ty + n / 2, tx + n % 2);
                            if oy < tiles.h && ox < tiles.w {
                                outs[(oy * tiles.w + ox) * oq + q] = y;
                            }
                        }
                    }
                }
            }
        }
    }
}
