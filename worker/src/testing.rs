//! Test helpers: two computations of the same thing held to the same
//! numbers, forward and backward.

use candle_core::{Device, Tensor, Var};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Asserts `a` and `b` have the same shape and values within 1e-5
/// (absolute plus relative).
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
/// the same upstream gradient, random but drawn from a fixed seed, so that
/// a comparison gives the same answer on every run.
pub fn assert_same(what: &str, fused: &Tensor, plain: &Tensor, inputs: &[&Var]) {
    assert_close(&format!("{what} forward"), fused, plain);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let r: Vec<f32> = (0..fused.elem_count()).map(|_| rng.random()).collect();
    let r = Tensor::from_vec(r, fused.shape(), &Device::Cpu).unwrap();
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
