//! The candle GAN against real PyTorch: outputs, losses, first-step
//! gradients, and every parameter and running statistic after each of three
//! training steps, for the default and the smart init (tolerances from the
//! fixtures' README). On the CPU by default; `EXP025_TEST_DEVICE=cuda:0`
//! runs them on a GPU (a build with `--features cuda`; deploy/cuda/gpu-check.sh).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use worker::gan::{Gan, GanConfig};
use worker::init::InitScheme;
use worker::layers::{Pass, bce_with_logits};
use worker::optim::AdamConfig;
use worker::tensors::NamedTensors;

/// The device under test: `EXP025_TEST_DEVICE`, or the CPU.
fn device() -> Device {
    let name = std::env::var("EXP025_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    worker::device::parse(&name).unwrap()
}

/// A fixture file, on the device under test. The crate's folder is read at
/// run time where cargo (or the GPU check, running the built test on another
/// machine) sets it.
fn fixture(name: &str) -> HashMap<String, Tensor> {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let path = crate_dir.join("tests/fixtures").join(name);
    candle_core::safetensors::load(&path, &device()).unwrap()
}

/// NCHW boards (B, 2, 22, 10) -> channels-last (B, 220, 2).
fn channels_last(t: &Tensor) -> Tensor {
    let b = t.dim(0).unwrap();
    t.permute((0, 2, 3, 1))
        .unwrap()
        .reshape((b, 220, 2))
        .unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Element-wise `|a - b| <= atol + rtol * |b|`.
fn assert_close(what: &str, got: &Tensor, want: &Tensor, atol: f32, rtol: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let (g, w) = (values(got), values(want));
    let worst = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs() - (atol + rtol * b.abs()))
        .fold(f32::NEG_INFINITY, f32::max);
    assert!(worst <= 0.0, "{what}: exceeds tolerance by {worst}");
}

/// Per tensor: `max|a - b| <= 1e-4 * max|b| + 1e-8` (gradients).
fn assert_grad_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let (g, w) = (values(got), values(want));
    let max_diff = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let max_ref = w.iter().map(|b| b.abs()).fold(0.0, f32::max);
    assert!(
        max_diff <= 1e-4 * max_ref + 1e-8,
        "{what}: max diff {max_diff} against max |ref| {max_ref}"
    );
}

/// Every tensor of `params` against `f[prefix + name]`; every float tensor
/// of the fixture under `prefix` must be compared.
fn assert_state(f: &HashMap<String, Tensor>, params: &NamedTensors, prefix: &str) {
    let mut compared = 0;
    for (key, got) in params.snapshot(0, prefix).unwrap() {
        assert_close(&key, &got, &f[&key], 1e-6, 1e-5);
        compared += 1;
    }
    let expected = f
        .keys()
        .filter(|k| k.starts_with(prefix) && !k.ends_with("num_batches_tracked"))
        .count();
    assert_eq!(compared, expected, "tensors compared under {prefix}");
}

fn assert_step_matches_pytorch(file: &str, init: InitScheme, glob_relu: bool) {
    let f = fixture(file);
    let config = GanConfig {
        gen_init: init,
        disc_init: init,
        glob_relu,
        adam: AdamConfig {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
    };
    let mut gan = Gan::new(&config, &mut ChaCha8Rng::seed_from_u64(0), &device()).unwrap();
    gan.generator.tensors.load(&f, "init.gen.").unwrap();
    gan.discriminator.tensors.load(&f, "init.disc.").unwrap();
    let (x, y, z) = (channels_last(&f["x"]), channels_last(&f["y"]), &f["z"]);

    let out_eval = gan.generator.forward(&x, z, Pass::EVAL).unwrap();
    assert_close(
        "gen_out_eval",
        &out_eval,
        &channels_last(&f["gen_out_eval"]),
        1e-5,
        1e-5,
    );
    let real = gan.discriminator.forward(&x, &y, Pass::EVAL).unwrap();
    assert_close(
        "disc_logits_real",
        &real,
        &f["disc_logits_real"],
        1e-5,
        1e-5,
    );
    let fake_in = channels_last(&f["gen_out_train"]);
    let fake = gan.discriminator.forward(&x, &fake_in, Pass::EVAL).unwrap();
    assert_close(
        "disc_logits_fake",
        &fake,
        &f["disc_logits_fake"],
        1e-5,
        1e-5,
    );
    let loss_g = bce_with_logits(&fake, 1.0, 1).unwrap().squeeze(0).unwrap();
    assert_close("loss_g", &loss_g, &f["loss_g"], 1e-5, 1e-5);

    for k in 1..=3 {
        let out = gan.step(&x, &y, &f[&format!("z_step{k}")]).unwrap();
        let at = |name: &str| &f[&format!("step{k}.{name}")];
        assert_close(
            &format!("step{k}.y_fake"),
            &out.y_fake,
            &channels_last(at("y_fake")),
            1e-5,
            1e-5,
        );
        for (name, got) in [
            ("loss_d_real", out.loss_d_real[0]),
            ("loss_d_fake", out.loss_d_fake[0]),
            ("loss_g", out.loss_g[0]),
            ("loss_d", out.loss_d_real[0] + out.loss_d_fake[0]),
        ] {
            let want: f32 = at(name).to_scalar().unwrap();
            assert!(
                (got - want).abs() <= 1e-5 + 1e-5 * want.abs(),
                "step{k}.{name}: {got} vs {want}"
            );
        }
        if k == 1 {
            for (net, params, grads) in [
                ("disc", &gan.discriminator.tensors, &out.disc_grads),
                ("gen", &gan.generator.tensors, &out.gen_grads),
            ] {
                for (name, var) in params.parameters() {
                    let key = format!("grad1.{net}.{name}");
                    let got = grads
                        .get(var.as_tensor())
                        .unwrap_or_else(|| panic!("no gradient for {key}"));
                    assert_grad_close(&key, &got.squeeze(0).unwrap(), &f[&key]);
                }
            }
        }
        assert_state(&f, &gan.generator.tensors, &format!("step{k}.gen."));
        assert_state(&f, &gan.discriminator.tensors, &format!("step{k}.disc."));
    }
    let out_eval = gan.generator.forward(&x, z, Pass::EVAL).unwrap();
    assert_close(
        "step3.gen_out_eval",
        &out_eval,
        &channels_last(&f["step3.gen_out_eval"]),
        1e-5,
        1e-5,
    );
}

#[test]
fn default_init_steps_match_pytorch() {
    assert_step_matches_pytorch("gan_step_default.safetensors", InitScheme::Default, false);
}

#[test]
fn smart_init_steps_match_pytorch() {
    assert_step_matches_pytorch("gan_step_smart.safetensors", InitScheme::Smart, true);
}
